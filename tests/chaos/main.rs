//! Fault and load scenarios with numbers (`make chaos`): workers killed and
//! stopped under load, the worker holding an ordered endpoint's delivery
//! killed, Redis restarted, a Redis Cluster master killed, receivers that
//! refuse or never answer, a 100,000-job backlog, and GitHub-style
//! providers retrying signed requests to a source through a Redis stall and
//! a worker SIGKILL (`ingest_stall`). Each scenario prints one line
//! (`scenario=... sent=... accepted=... delivered=... lost=0 duplicates=...`)
//! and appends it as JSON to `target/chaos/results.jsonl`.
//!
//! They take minutes, so each is `#[ignore]`d: a plain run reports them as
//! skipped, never as passed; `make chaos` runs them (`--run-ignored
//! ignored-only`), one at a time.

#[path = "../it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

#[path = "../it/cluster/harness.rs"]
#[allow(dead_code)]
mod cluster;

mod support;

mod black_hole;
mod cluster_failover;
mod expansion_sigkill;
mod ingest_stall;
mod ordered_sigkill;
mod queued_100k;
mod redis_restart;
mod refused;
mod sigkill;
mod sigterm;
mod stall;
