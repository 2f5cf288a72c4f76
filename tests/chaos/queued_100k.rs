//! 100,000 jobs queued while no worker runs, then three worker processes:
//! all delivered (the backlog is far past the ~8,000 due tasks that break
//! apalis-redis's fetch, APALIS.md #2).

use std::time::{Duration, Instant};

use hook_slinger::jobs::JobState;
use serde_json::json;

use crate::{helpers::*, support::*};

const JOBS: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn hundred_thousand_queued_then_three_workers() {
    let started = Instant::now();
    // A Redis of its own, in memory: 100,000 records stay off the shared one.
    let redis = ScratchRedis::in_memory();
    let tally = Tally::start().await;
    let s = settings(&[("REDIS_URL", &redis.url())]);
    let app = spawn_app(s.clone()).await;
    let sent = post_batches(&app.base, JOBS, 1_000, &tally.url("/bulk")).await;
    let queued_in = started.elapsed();
    assert_eq!(tally.total(), 0, "no worker runs yet");

    let drain = Instant::now();
    let env = [("WORKER_CONCURRENCY", "64")];
    let workers: Vec<_> = (0..3).map(|_| WorkerProcess::start(&s, &env)).collect();
    let all = tally.wait_all(&sent.accepted, Duration::from_secs(600)).await;
    let drained_in = drain.elapsed();
    if all {
        app.wait_count(JobState::Succeeded, sent.accepted.len() as u64, Duration::from_secs(60)).await;
    }
    drop(workers);
    let outcome = Outcome::measure(
        "queued_100k",
        &sent,
        &tally,
        started,
        json!({
            "queued_in_s": queued_in.as_secs(),
            "drained_in_s": drained_in.as_secs(),
            "jobs_per_s": (sent.accepted.len() as f64 / drained_in.as_secs_f64()).round(),
        }),
    );
    outcome.report();
    assert_eq!(sent.accepted.len() as u64, JOBS, "{:?}", sent.outcomes);
    assert_eq!(outcome.lost, 0);
}
