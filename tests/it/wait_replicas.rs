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

/// The same for an event and for a provider's request to a source: 503
/// naming REDIS_WAIT_REPLICAS, delivered once all the same, and the retry
/// (same `event_id`, same delivery id) makes nothing new.
#[tokio::test]
async fn events_and_ingests_without_a_replica_answer_503_and_are_delivered_once() {
    let redis = OwnRedis::start();
    let s = settings(&[("REDIS_URL", &redis.url()), ("REDIS_WAIT_REPLICAS", "1"), ("REDIS_TIMEOUT", "1")]);
    let app = spawn_app(s.clone()).await;
    let _worker = spawn_worker(&s);
    let rx = Receiver::start().await;
    let (status, _) = crate::fanout::api(
        &app,
        reqwest::Method::POST,
        "/api/v1/tenants/wr/endpoints",
        Some(json!({"url": rx.url("/wr")})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, src) = crate::fanout::api(
        &app,
        reqwest::Method::POST,
        "/api/v1/tenants/wr/sources",
        Some(json!({"name": "wr", "verify": {"scheme": "none"}})),
    )
    .await;
    assert_eq!(status, 201, "{src}");
    let event = json!({"event_type": "x", "event_id": "unreplicated-event", "payload": {"n": 1}});
    let ingest_url = format!("{}{}", app.base, src["ingest_url"].as_str().unwrap());
    for _ in 0..2 {
        let (status, v) =
            crate::fanout::api(&app, reqwest::Method::POST, "/api/v1/tenants/wr/events", Some(event.clone())).await;
        assert_eq!(status, 503, "{v}");
        assert!(v["detail"].as_str().unwrap_or_default().contains("REDIS_WAIT_REPLICAS"), "{v}");
        let resp = app
            .http
            .post(&ingest_url)
            .header("Idempotency-Key", "unreplicated-ingest")
            .body(r#"{"n": 2}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        let v: Value = resp.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap_or_default().contains("REDIS_WAIT_REPLICAS"), "{v}");
    }
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 2, "each delivered once");
    let data: Vec<Value> =
        got.iter().map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"].clone()).collect();
    assert!(data.contains(&json!(1)) && data.contains(&json!(2)), "{data:?}");
}
