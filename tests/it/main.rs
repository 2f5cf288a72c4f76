//! Integration tests: real app, real workers, real Redis, real receivers.
//! One binary, so the crate links once.

mod apalis_workarounds;
mod api;
mod delivery;
mod helpers;
mod hostile;
mod metrics;
mod monitor;
mod openapi;
mod processes;
mod rules;
mod stranded;
