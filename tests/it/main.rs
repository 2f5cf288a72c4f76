//! Integration tests: real app, real workers, real Redis, real receivers.
//! One binary, so the crate links once.

mod apalis_workarounds;
mod api;
mod cluster;
mod delivery;
mod fanout;
mod flow;
mod helpers;
mod hostile;
mod latency;
mod metrics;
mod monitor;
mod openapi;
mod original;
mod processes;
mod rules;
mod sources;
mod stranded;
mod wait_replicas;
