//! `REDIS_WAIT_REPLICAS` when no replica can confirm: the app says so (503)
//! instead of a 202 that a failover could take back, and the job, which
//! the master did store, is delivered all the same.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn wait_replicas_without_a_replica_answers_503_and_still_delivers() {
    // A Redis of the test's own: no replica will ever attach to it.
    let redis = OwnRedis::start();
    let s = settings(&[("REDIS_URL", &redis.url()), ("REDIS_WAIT_REPLICAS", "1"), ("REDIS_TIMEOUT", "1")]);
    let app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let rx = Receiver::start().await;
    let body = json!({"to_url": rx.url("/unreplicated"), "payload": {"n": 1}});
    let post = || {
        app.http
            .post(format!("{}/hook_slinger/", app.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .header("Idempotency-Key", "unreplicated-1")
            .json(&body)
            .send()
    };

    let started = Instant::now();
    let resp = post().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("REDIS_WAIT_REPLICAS") && detail.contains("Idempotency-Key"), "{v}");
    // WAIT gives up after half of REDIS_TIMEOUT.
    assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(1_500), "503 after {took:?}");

    // Stored on the master, so delivered, once, retry or not: the retry the
    // message suggests (same Idempotency-Key) is refused the same way and
    // stores nothing new.
    assert_eq!(post().await.unwrap().status(), 503);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let id = got[0].job_id();
    app.wait_state(&id, hook_slinger::jobs::JobState::Succeeded, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 1, "delivered once");
    let (status, page) = app.call(reqwest::Method::GET, "/hook_slinger/").await;
    assert_eq!(status, 200);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "one job stored: {page}");
}
