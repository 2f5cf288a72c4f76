//! Hook Slinger: accept webhooks with a 202, deliver them in the background
//! with retries, and let a person see and requeue every job.
//!
//! Module map:
//! - [`config`]: the one typed configuration, parsed at start.
//! - [`domain`]: request-level types parsed at the edge (ids, labels, URLs).
//! - [`jobs`]: job records, states, attempts and the queue's wire format.
//! - [`endpoints`]: a tenant's registered endpoints, their secrets and subscriptions.
//! - [`events`]: accepting events and expanding each into one delivery (a job) per matching endpoint.
//! - [`operational`]: operational webhooks to the operator (endpoint disabled, deliveries failing).
//! - [`store`]: our job records and indexes in Redis (the source of truth).
//! - [`queue`]: the apalis-redis queue and the workarounds for its defects.
//! - [`delivery`]: the outbound HTTP request and the retry policy.
//! - [`service`]: operations shared by the app, the worker and the monitor.
//! - [`api`]: the HTTP API (`hook-slinger-app`).
//! - [`worker`]: the delivering process (`hook-slinger-worker`).
//! - [`monitor`]: the web UI and CLI to watch and fix jobs (`hook-slinger-monitor`).
//! - [`secret`]: holding and comparing secrets (tokens, passwords, `to_auth`).
//! - [`metrics`]: Prometheus metrics of the app and the workers, and their `/metrics` endpoints.
//! - [`telemetry`], [`shutdown`]: logs and signals for every process.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod endpoints;
pub mod events;
pub mod jobs;
pub mod metrics;
pub mod monitor;
pub mod operational;
pub mod queue;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod worker;
