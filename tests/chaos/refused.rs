//! A receiver that refuses connections for 30 s, then answers: every job is
//! delivered, each after the attempts its retry schedule allows
//! (`BACKOFF=linear`, `INTERVAL=1`: waits of 1, 2, 3, ... s), and none after
//! its success.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use hook_slinger::jobs::JobState;
use serde_json::json;

use crate::{helpers::*, support::*};

const RETRY: &[(&str, &str)] = &[
    ("MAX_RETRIES", "10"),
    ("INTERVAL", "1"),
    ("BACKOFF", "linear"),
    ("BACKOFF_JITTER", "false"),
    ("HTTP_TIMEOUT", "2"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn receiver_refusing_for_30s_then_healthy_gets_everything() {
    let started = Instant::now();
    // A port nobody listens on (yet): connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = settings(RETRY);
    let app = spawn_app(s.clone()).await;
    let _worker = WorkerProcess::start(&s, RETRY);
    let sent = post_jobs(&app.base, 200, 16, |_| format!("http://127.0.0.1:{port}/refused")).await;

    tokio::time::sleep(Duration::from_secs(30).saturating_sub(started.elapsed())).await;
    let tally = Tally::start_on(&format!("127.0.0.1:{port}")).await;
    let up_after = started.elapsed();
    let all = tally.wait_all(&sent.accepted, Duration::from_secs(60)).await;
    if all {
        app.wait_count(JobState::Succeeded, sent.accepted.len() as u64, Duration::from_secs(30)).await;
    }

    let mut attempts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut schedule_errors = Vec::new();
    for id in &sent.accepted {
        let rec = app.record(id).await;
        *attempts.entry(rec.attempts).or_default() += 1;
        let log = &rec.attempt_log;
        if rec.state != JobState::Succeeded || log.len() != rec.attempts as usize || rec.attempts > 11 {
            schedule_errors.push(format!("{id}: {} after {} attempts ({} logged)", rec.state, rec.attempts, log.len()));
            continue;
        }
        let (last, earlier) = log.split_last().unwrap();
        if last.status != Some(200) || earlier.iter().any(|a| a.status.is_some() || a.error.is_none()) {
            schedule_errors.push(format!("{id}: refused attempts must fail, the last must get 200: {log:?}"));
        }
        for (n, pair) in log.windows(2).enumerate() {
            // Before retry n+1 the wait is INTERVAL × (n+1).
            let ended = pair[0].started_at + chrono::Duration::milliseconds(pair[0].duration_ms as i64);
            let waited = (pair[1].started_at - ended).num_milliseconds();
            let due = 1_000 * (n as i64 + 1);
            if waited < due - 50 || waited > due + 1_500 {
                schedule_errors
                    .push(format!("{id}: waited {waited} ms before retry {}, schedule says {due} ms", n + 1));
            }
        }
    }
    let outcome = Outcome::measure(
        "refused_30s",
        &sent,
        &tally,
        started,
        json!({"receiver_up_after_s": up_after.as_secs(), "attempts_histogram": attempts, "schedule_errors": schedule_errors.len()}),
    );
    outcome.report();
    assert_eq!(sent.accepted.len(), 200);
    assert_eq!(outcome.lost, 0);
    assert_eq!(outcome.duplicates, 0);
    assert!(schedule_errors.is_empty(), "{:#?}", &schedule_errors[..schedule_errors.len().min(10)]);
    // Up after ~30 s: attempt 8 starts at 28 s, attempt 9 at 36 s (plus
    // request times), so most jobs take 9 attempts.
    assert!(attempts.keys().all(|a| (8..=10).contains(a)), "attempts {attempts:?}");
}
