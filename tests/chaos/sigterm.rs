//! SIGTERM to one of two worker processes during load: it finishes the
//! deliveries it has in flight and exits 0; nothing is lost, and no job that
//! was already delivered is delivered again.

use std::time::{Duration, Instant};

use hook_slinger::jobs::JobState;
use serde_json::json;

use crate::{helpers::*, support::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn sigterm_during_load_finishes_in_flight_and_loses_nothing() {
    let started = Instant::now();
    let tally = Tally::start().await;
    // Every delivery takes 200 ms, so the stopped worker has many in flight.
    tally.set_delay(Duration::from_millis(200));
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker_env = [("WORKER_CONCURRENCY", "16"), ("SHUTDOWN_TIMEOUT", "20")];
    let mut stopped = WorkerProcess::start(&s, &worker_env);
    let mut other = WorkerProcess::start(&s, &worker_env);

    let url = tally.url("/sigterm");
    let base = app.base.clone();
    let sender = tokio::spawn(async move { post_jobs(&base, 1_500, 16, |_| url.clone()).await });
    assert!(tally.wait_total(400, Duration::from_secs(120)).await, "deliveries did not start");
    let in_flight_at_term = tally.in_flight();
    let term_at = Instant::now();
    stopped.signal("-TERM");
    let status = stopped.wait(Duration::from_secs(30)).await.expect("worker exits within SHUTDOWN_TIMEOUT");
    let exit_after = term_at.elapsed();

    let sent = sender.await.unwrap();
    let all = tally.wait_all(&sent.accepted, Duration::from_secs(120)).await;
    if all {
        app.wait_count(JobState::Succeeded, sent.accepted.len() as u64, Duration::from_secs(60)).await;
    }
    // Records: every job succeeded on its first attempt, so no delivery
    // was cut off and repeated.
    let mut repeated = 0;
    for id in &sent.accepted {
        let rec = app.record(id).await;
        if rec.state != JobState::Succeeded || rec.attempts != 1 {
            repeated += 1;
        }
    }
    other.signal("-TERM");
    let other_status = other.wait(Duration::from_secs(30)).await;
    let outcome = Outcome::measure(
        "sigterm",
        &sent,
        &tally,
        started,
        json!({
            "in_flight_at_term": in_flight_at_term,
            "exit_after_s": (exit_after.as_secs_f64() * 10.0).round() / 10.0,
            "aborted_requests": tally.aborted(),
            "jobs_not_done_in_one_attempt": repeated,
        }),
    );
    outcome.report();
    assert!(status.success(), "stopped worker exit status {status:?}");
    assert!(other_status.is_some_and(|s| s.success()), "second worker exit status {other_status:?}");
    assert_eq!(sent.accepted.len(), 1_500, "every job is accepted: {:?}", sent.outcomes);
    assert_eq!(outcome.lost, 0);
    assert_eq!(outcome.duplicates, 0, "a graceful stop re-sends nothing");
    assert_eq!(tally.aborted(), 0, "no delivery was cut off");
    assert_eq!(repeated, 0);
}
