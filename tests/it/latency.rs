//! Issue #18: at low, steady load an idle worker must never wait for its
//! apalis heartbeat to take work (APALIS.md #11).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hook_slinger::queue;
use redis::AsyncCommands;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const RATE_PER_S: u64 = 100;
const SECONDS: u64 = 20;
/// Far above a normal delivery (a few ms), far below a stall (which lasts
/// until the next heartbeat: 30 s in the test settings).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// One app and one worker at a steady 100 jobs/s for 20 s, sent on a fixed
/// schedule whatever the deliveries do (open loop). Each payload carries
/// its send time; no delivery may arrive more than a second after it.
///
/// The stall needs a poll-interval tick whose fetch is in flight when a job
/// is pushed, and the worker to see that fetch's empty answer and the job's
/// wake-up in one poll. A 1 ms poll interval and two runtime threads (as
/// in the worker process) make that happen within seconds; with the
/// production 100 ms interval it took about a minute at 200/s in the
/// benchmark. With apalis's `Strategy` in `worker::run_once` this test
/// fails: the worker stops partway through and only the 30 s heartbeat
/// would wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_low_load_never_waits_for_a_heartbeat() {
    let rx = Receiver::start().await;
    let s = settings(&[("WORKER_POLL_INTERVAL_MS", "1")]);
    let app = Arc::new(spawn_app(s.clone()).await);
    let worker = spawn_worker(&s);
    let url = rx.url("/latency");

    let epoch = Instant::now();
    let n = (RATE_PER_S * SECONDS) as usize;
    let mut schedule = tokio::time::interval(Duration::from_secs(1) / RATE_PER_S as u32);
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..n {
        schedule.tick().await;
        let app = app.clone();
        let sent_us = epoch.elapsed().as_micros() as u64;
        let body = serde_json::json!({"to_url": url, "payload": {"i": i, "sent_us": sent_us}});
        posts.spawn(async move { app.accept(&body).await });
    }
    posts.join_all().await;

    // Whatever has not arrived a second after the last send waited too long.
    let got = rx.wait_up_to(n, MAX_WAIT + Duration::from_millis(500)).await;
    let mut waits: Vec<Duration> = got
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("the payload comes back as sent");
            let sent = epoch + Duration::from_micros(v["sent_us"].as_u64().expect("sent_us"));
            r.at.saturating_duration_since(sent)
        })
        .collect();
    waits.sort();
    let pct = |p: f64| waits.get(((waits.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default();
    eprintln!(
        "{n} jobs at {RATE_PER_S}/s: delivered {}, p50 {:?}, p99 {:?}, max {:?}",
        waits.len(),
        pct(0.5),
        pct(0.99),
        waits.last().copied().unwrap_or_default()
    );
    let slow = waits.iter().filter(|w| **w > MAX_WAIT).count();
    assert_eq!(got.len(), n, "{} of {n} jobs not delivered within {MAX_WAIT:?} of the last send", n - got.len());
    assert_eq!(slow, 0, "{slow} of {n} deliveries waited more than {MAX_WAIT:?}");
    worker.shutdown().await;
}

/// Pub/sub drops messages published while nobody is subscribed (before the
/// first subscription, during a reconnect). The listener signals once it
/// is subscribed, so the worker fetches then instead of at its next poll.
#[tokio::test]
async fn the_wake_listener_signals_once_subscribed() {
    let s = settings(&[]);
    let client = redis::Client::open(s.redis.url.as_str()).unwrap();
    let notify = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let listener = tokio::spawn(queue::wake::listen(
        vec![client.clone()],
        vec![(s.redis.queue.clone(), notify.clone())],
        stop.clone(),
    ));

    tokio::time::timeout(Duration::from_secs(5), notify.notified())
        .await
        .expect("a signal once subscribed, with nothing published");
    // Then a signal per message, as before.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = conn.publish(queue::wake::channel(&s.redis.queue), 1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("a signal per message");
    stop.cancel();
    listener.await.unwrap();
}
