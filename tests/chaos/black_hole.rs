//! A receiver that accepts connections and never answers. The worker's
//! `HTTP_TIMEOUT` cuts every attempt off, the jobs fail after their retries,
//! the slots they held come back, and jobs for other destinations keep
//! flowing meanwhile.

use std::time::{Duration, Instant};

use hook_slinger::jobs::JobState;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{helpers::*, support::*};

const ENV: &[(&str, &str)] = &[
    ("HTTP_TIMEOUT", "3"),
    ("MAX_RETRIES", "2"),
    ("INTERVAL", "0.5"),
    ("BACKOFF", "fixed"),
    ("WORKER_CONCURRENCY", "16"),
];
const HOLES: u64 = 8;
const HEALTHY: u64 = 800;

/// Accepts connections and holds them open without reading or answering.
async fn black_hole(stop: CancellationToken) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                conn = listener.accept() => if let Ok((sock, _)) = conn {
                    // Bounded: a worker opens one connection per attempt.
                    if held.len() < 10_000 { held.push(sock); }
                },
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a chaos scenario (minutes): `make chaos` runs it"]
async fn receiver_that_never_answers_does_not_hold_the_worker() {
    let started = Instant::now();
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let hole = black_hole(stop.clone()).await;
    let tally = Tally::start().await;
    let s = settings(ENV);
    let app = spawn_app(s.clone()).await;
    let _worker = WorkerProcess::start(&s, ENV);

    // One black-hole job in every 100, the rest healthy, sent at ~100 jobs/s
    // so that healthy traffic runs during every stuck attempt.
    let healthy_url = tally.url("/healthy");
    let hole_url = format!("http://{hole}/never");
    let mut healthy = Sent::default();
    let mut holes = Vec::new();
    let http = client();
    for i in 0..(HEALTHY + HOLES) {
        let hole_job = i % 100 == 50;
        let body = json!({"to_url": if hole_job { &hole_url } else { &healthy_url }, "payload": {"i": i}});
        let r = post_one(&http, &app.base, &body).await;
        match r {
            Ok((202, Some(id))) if hole_job => holes.push(id),
            Ok((202, Some(id))) => {
                healthy.sent += 1;
                healthy.accepted.push(id);
            }
            other => panic!("job {i} refused: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = tally.wait_all(&healthy.accepted, Duration::from_secs(60)).await;
    let healthy_done = started.elapsed();

    // Black-hole jobs: failed after 1 + MAX_RETRIES attempts, each cut off
    // at HTTP_TIMEOUT.
    let mut hole_attempts = Vec::new();
    let mut longest_ms = 0;
    for id in &holes {
        let rec = app.wait_state(id, JobState::Failed, Duration::from_secs(60)).await;
        hole_attempts.push(rec.attempts);
        for a in &rec.attempt_log {
            longest_ms = longest_ms.max(a.duration_ms);
            assert!(a.status.is_none() && a.error.is_some(), "{a:?}");
        }
    }
    // Healthy deliveries never stopped for as long as one stuck attempt.
    let arrivals = tally.arrivals();
    let longest_gap = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();

    // The slots came back: a fresh burst is delivered at once.
    let after = post_jobs(&app.base, 100, 16, |_| tally.url("/after")).await;
    let burst = Instant::now();
    let after_ok = tally.wait_all(&after.accepted, Duration::from_secs(10)).await;
    let burst_took = burst.elapsed();

    healthy.sent += after.sent;
    healthy.accepted.extend(after.accepted.iter().cloned());
    let outcome = Outcome::measure(
        "black_hole",
        &healthy,
        &tally,
        started,
        json!({
            "black_hole_jobs": holes.len(),
            "black_hole_attempts": hole_attempts,
            "longest_attempt_ms": longest_ms,
            "longest_gap_between_healthy_deliveries_ms": longest_gap.as_millis() as u64,
            "healthy_done_after_s": healthy_done.as_secs(),
            "burst_of_100_after_ms": burst_took.as_millis() as u64,
        }),
    );
    outcome.report();
    assert!(all && after_ok, "healthy jobs were all delivered");
    assert_eq!(outcome.lost, 0);
    assert!(hole_attempts.iter().all(|&a| a == 3), "1 + MAX_RETRIES attempts each: {hole_attempts:?}");
    assert!((2_900..4_500).contains(&longest_ms), "HTTP_TIMEOUT (3 s) cuts attempts off: {longest_ms} ms");
    assert!(longest_gap < Duration::from_secs(2), "healthy traffic stalled for {longest_gap:?}");
    assert!(burst_took < Duration::from_secs(5), "freed slots took {burst_took:?}");
}
