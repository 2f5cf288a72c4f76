//! SIGKILL of one of two worker processes in the middle of a 5,000-job run:
//! every accepted job is delivered at least once (the survivor recovers the
//! dead one's in-flight jobs after `ORPHAN_AFTER`).

use std::time::{Duration, Instant};

use hook_slinger::jobs::JobState;
use serde_json::json;

use crate::{helpers::*, support::*};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn sigkill_one_of_two_workers_during_5000_jobs() {
    let started = Instant::now();
    let tally = Tally::start().await;
    // Slow enough answers that the victim dies with deliveries in flight.
    tally.set_delay(Duration::from_millis(20));
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    // Named apart, so the attempt logs tell who delivered what.
    let mut victim = WorkerProcess::start(&s, &[("WORKER_NAME_PREFIX", "victim")]);
    let _survivor = WorkerProcess::start(&s, &[("WORKER_NAME_PREFIX", "survivor")]);

    let url = tally.url("/sigkill");
    let base = app.base.clone();
    let sender = tokio::spawn(async move { post_jobs(&base, 5_000, 32, |_| url.clone()).await });
    assert!(tally.wait_total(1_000, Duration::from_secs(120)).await, "deliveries did not start");
    let in_flight_at_kill = tally.in_flight();
    victim.signal("-KILL");
    victim.wait(Duration::from_secs(10)).await.expect("killed worker exits");
    let delivered_at_kill = tally.total();

    let sent = sender.await.unwrap();
    let all = tally.wait_all(&sent.accepted, Duration::from_secs(180)).await;
    if all {
        app.wait_count(JobState::Succeeded, sent.accepted.len() as u64, Duration::from_secs(60)).await;
    }
    // Who made the recorded attempts (an attempt cut off by the kill is
    // never recorded; its job is re-sent by the survivor).
    let (mut by_victim, mut by_survivor) = (0u64, 0u64);
    for id in &sent.accepted {
        for a in app.record(id).await.attempt_log {
            if a.worker.starts_with("victim") {
                by_victim += 1;
            } else {
                by_survivor += 1;
            }
        }
    }
    let outcome = Outcome::measure(
        "sigkill",
        &sent,
        &tally,
        started,
        json!({
            "delivered_at_kill": delivered_at_kill,
            "in_flight_at_kill": in_flight_at_kill,
            "attempts_by_victim": by_victim,
            "attempts_by_survivor": by_survivor,
            "answers": sent.outcomes,
        }),
    );
    outcome.report();
    assert_eq!(sent.accepted.len(), 5_000, "every job is accepted: {:?}", sent.outcomes);
    assert_eq!(outcome.lost, 0);
    assert!(by_victim > 0 && by_survivor > 0, "both workers delivered: {by_victim} / {by_survivor}");
}
