//! Flow control, through the HTTP API, with real receivers that are slow,
//! dead or refusing: rate limits across workers, isolation from a dead
//! endpoint (and a dead host), the circuit breaker, ordered delivery,
//! auto-disable with held deliveries, operational webhooks, stats.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::{
    fanout::{api, endpoint, event},
    helpers::{settings, spawn_app, spawn_worker, Receiver, Reply, TestApp},
    rules::verify_with_standardwebhooks,
};

fn tenant(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// The most arrivals within any `window` (a sliding window starting at
/// each arrival).
fn most_within(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len()).map(|i| sorted[i..].iter().take_while(|t| **t - sorted[i] < window).count()).max().unwrap_or(0)
}

/// The deliveries of an event, as the API shows them.
async fn deliveries(app: &TestApp, t: &str, event_id: &str) -> Vec<Value> {
    let (status, ev) = api(app, Method::GET, &format!("/api/v1/tenants/{t}/events/{event_id}"), None).await;
    assert_eq!(status, 200, "{ev}");
    ev["deliveries"].as_array().unwrap().clone()
}

async fn get_endpoint(app: &TestApp, t: &str, id: &str) -> Value {
    let (status, ep) = api(app, Method::GET, &format!("/api/v1/tenants/{t}/endpoints/{id}"), None).await;
    assert_eq!(status, 200, "{ep}");
    ep
}

/// Polls the endpoint until `check` holds, or panics after `within`.
async fn wait_endpoint(app: &TestApp, t: &str, id: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let ep = get_endpoint(app, t, id).await;
        if check(&ep) {
            return ep;
        }
        assert!(Instant::now() < deadline, "endpoint never got there: {ep}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rate_limit_holds_across_two_workers_without_burning_attempts() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let t = tenant("rate");
    endpoint(&app, &t, json!({"url": rx.url("/r"), "rate_limit": 5})).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(event(&app, &t, json!({"event_type": "tick", "payload": {"n": n}})).await["event_id"].clone());
    }
    let (w1, w2) = (spawn_worker(&s), spawn_worker(&s));
    let started = Instant::now();
    let got = rx.wait_for(20, Duration::from_secs(15)).await;
    let took = started.elapsed();
    let times: Vec<Instant> = got.iter().map(|r| r.at).collect();
    let peak = most_within(&times, Duration::from_secs(1));
    assert!(peak <= 5, "{peak} deliveries within one second; the limit is 5");
    // 20 at 5 per second: the first 5 at once, then 3 more windows.
    assert!(took >= Duration::from_millis(2900), "20 deliveries at 5/s took only {took:?}");
    for id in &ids {
        for d in deliveries(&app, &t, id.as_str().unwrap()).await {
            assert_eq!(d["state"], "succeeded", "{d}");
            assert_eq!(d["attempts"], 1, "waiting for the limit spends no attempt: {d}");
        }
    }
    w1.shutdown().await;
    w2.shutdown().await;
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_a_healthy_one() {
    let healthy = Receiver::start().await;
    let dead = Receiver::start().await;
    dead.set_default(Reply { status: 500, delay: Duration::from_secs(3), ..Default::default() });
    let s = settings(&[("WORKER_CONCURRENCY", "64"), ("MAX_RETRIES", "5")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("iso");
    endpoint(&app, &t, json!({"url": dead.url("/dead")})).await;
    endpoint(&app, &t, json!({"url": healthy.url("/ok")})).await;
    let posted = Instant::now();
    for n in 0..200 {
        event(&app, &t, json!({"event_type": "order.created", "payload": {"n": n}})).await;
    }
    let got = healthy.wait_up_to(200, Duration::from_secs(20)).await;
    let last = got.iter().map(|r| r.at).max().unwrap();
    assert_eq!(got.len(), 200, "the healthy endpoint got {} of 200", got.len());
    assert!(
        last - posted < Duration::from_secs(5),
        "the healthy endpoint's 200th delivery came {:?} after posting began",
        last - posted
    );
    // The dead one never had more than its max_in_flight (10) at once.
    let hits = dead.received().len();
    assert!(hits <= 20, "{hits} attempts reached the dead endpoint in a few seconds");
    worker.shutdown().await;
}

#[tokio::test]
async fn a_dead_host_does_not_starve_plain_jobs_to_another() {
    let healthy = Receiver::start().await;
    let dead = Receiver::start().await;
    dead.set_default(Reply { status: 500, delay: Duration::from_secs(3), ..Default::default() });
    let s = settings(&[("WORKER_CONCURRENCY", "64"), ("HOST_MAX_IN_FLIGHT", "8"), ("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    for _ in 0..100 {
        app.accept(&crate::helpers::job_body(&dead.url("/dead"))).await;
    }
    let posted = Instant::now();
    for _ in 0..100 {
        app.accept(&crate::helpers::job_body(&healthy.url("/ok"))).await;
    }
    let worker = spawn_worker(&s);
    let got = healthy.wait_for(100, Duration::from_secs(20)).await;
    let last = got.iter().map(|r| r.at).max().unwrap();
    assert!(last - posted < Duration::from_secs(2), "healthy jobs waited {:?} behind a dead host", last - posted);
    // A host not yet seen to answer quickly gets HOST_MAX_IN_FLIGHT at once
    // (per queue shard): the first round of the dead one's attempts is 8 a
    // shard, not 64.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let first_round = dead.received().len();
    let cap = 8 * s.redis.shards;
    assert!((1..=cap).contains(&first_round), "{first_round} attempts at once reached the dead host (cap {cap})");
    worker.shutdown().await;
}

#[tokio::test]
async fn a_host_that_turns_slow_is_capped_once_seen_hogging_slots() {
    let rx = Receiver::start().await;
    let s = settings(&[("WORKER_CONCURRENCY", "64"), ("HOST_MAX_IN_FLIGHT", "8"), ("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    // Quick at first: no cap (all 30 at once would be fine).
    for _ in 0..30 {
        app.accept(&crate::helpers::job_body(&rx.url("/quick"))).await;
    }
    rx.wait_for(30, Duration::from_secs(10)).await;
    // Then it hangs for 2 s per request. Jobs already claimed go at once;
    // those claimed once its attempts have been out for HOST_SLOW (1 s) get
    // at most 8 at a time.
    rx.set_default(Reply { status: 200, delay: Duration::from_secs(2), ..Default::default() });
    for _ in 0..20 {
        app.accept(&crate::helpers::job_body(&rx.url("/slow"))).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..48 {
        app.accept(&crate::helpers::job_body(&rx.url("/later"))).await;
    }
    let all = rx.wait_for(98, Duration::from_secs(40)).await;
    let later: Vec<Instant> = all.iter().filter(|r| r.path == "/later").map(|r| r.at).collect();
    assert_eq!(later.len(), 48);
    let peak = most_within(&later, Duration::from_millis(1900));
    let cap = 8 * s.redis.shards;
    assert!(peak <= cap, "{peak} slow attempts finished within 2 s once the host was seen slow (cap {cap})");
    worker.shutdown().await;
}

#[tokio::test]
async fn the_breaker_opens_waits_without_attempts_then_a_probe_closes_it() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let s = settings(&[("BREAKER_FAILURES", "3"), ("BREAKER_COOLDOWN", "2"), ("MAX_RETRIES", "10")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("brk");
    let ep = endpoint(&app, &t, json!({"url": rx.url("/b")})).await;
    let id = ep["id"].as_str().unwrap();
    assert_eq!(get_endpoint(&app, &t, id).await["breaker"]["state"], "closed");
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(event(&app, &t, json!({"event_type": "x", "payload": {"n": n}})).await["event_id"].clone());
    }
    let open = wait_endpoint(&app, &t, id, Duration::from_secs(10), |e| e["breaker"]["state"] == "open").await;
    assert!(open["breaker"]["consecutive_failures"].as_u64().unwrap() >= 3, "{open}");
    assert!(open["breaker"]["open_until"].is_string(), "{open}");
    // Open: nothing reaches the receiver, and no attempt is spent.
    let seen = rx.received().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.received().len(), seen, "an open breaker let attempts through");
    let (_, stats) = api(&app, Method::GET, &format!("/api/v1/tenants/{t}/endpoints/{id}/stats"), None).await;
    assert_eq!(stats["breaker"]["state"], "open", "{stats}");
    assert!(stats["now"]["waiting"].as_u64().unwrap() >= 1, "{stats}");

    // The receiver recovers (slowly); after the cooldown the breaker is
    // half-open and one probe goes alone; it succeeds, and the breaker
    // closes and lets the rest through.
    rx.set_default(Reply { status: 200, delay: Duration::from_millis(2500), ..Default::default() });
    let half = wait_endpoint(&app, &t, id, Duration::from_secs(10), |e| e["breaker"]["state"] == "half_open").await;
    assert!(half["breaker"]["consecutive_failures"].as_u64().unwrap() >= 3, "{half}");
    // The probe goes when a waiting delivery's wake comes due, which a
    // loaded machine may take a scheduler round or two to notice: wait for
    // it to be out, then check it is alone for a while (it takes 2.5 s).
    let stats_path = format!("/api/v1/tenants/{t}/endpoints/{id}/stats");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stats = api(&app, Method::GET, &stats_path, None).await.1;
    while stats["now"]["in_flight"] == 0 {
        assert!(Instant::now() < deadline, "no probe went out while half-open: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = api(&app, Method::GET, &stats_path, None).await.1;
    }
    for _ in 0..5 {
        assert_eq!(stats["now"]["in_flight"], 1, "one probe alone while half-open: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = api(&app, Method::GET, &stats_path, None).await.1;
    }
    rx.set_default(Reply::status(200));
    let closed = wait_endpoint(&app, &t, id, Duration::from_secs(10), |e| e["breaker"]["state"] == "closed").await;
    assert_eq!(closed["breaker"]["consecutive_failures"], 0, "{closed}");
    for e in &events {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = deliveries(&app, &t, e.as_str().unwrap()).await;
            if d[0]["state"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{d:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let attempts = rx.received().len();
    assert!(attempts <= 5 + 3 + 1, "{attempts} attempts: waiting must not spend attempts");
    worker.shutdown().await;
}

#[tokio::test]
async fn an_ordered_endpoint_gets_its_deliveries_in_order_across_a_retry() {
    let rx = Receiver::start().await;
    // Events 1-6; the third fails once.
    rx.script([Reply::status(200), Reply::status(200), Reply::status(500)]);
    let s = settings(&[("WORKER_CONCURRENCY", "16")]);
    let app = spawn_app(s.clone()).await;
    let t = tenant("ord");
    endpoint(&app, &t, json!({"url": rx.url("/o"), "ordered": true})).await;
    for n in 1..=6 {
        event(&app, &t, json!({"event_type": "seq", "payload": {"n": n}})).await;
    }
    let (w1, w2) = (spawn_worker(&s), spawn_worker(&s));
    let got = rx.wait_for(7, Duration::from_secs(20)).await;
    let seen: Vec<u64> =
        got.iter().map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"].as_u64().unwrap()).collect();
    assert_eq!(seen, [1, 2, 3, 3, 4, 5, 6]);
    w1.shutdown().await;
    w2.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_failing_in_a_row_is_disabled_its_deliveries_held_and_the_operator_told() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let ops = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let s = settings(&[
        ("ENDPOINT_DISABLE_AFTER_FAILURES", "4"),
        ("BREAKER_FAILURES", "0"),
        ("MAX_RETRIES", "10"),
        ("OPERATIONAL_WEBHOOK_URL", &ops.url("/ops")),
        ("OPERATIONAL_WEBHOOK_SECRET", secret),
    ]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("off");
    let ep = endpoint(&app, &t, json!({"url": rx.url("/d")})).await;
    let id = ep["id"].as_str().unwrap();
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(event(&app, &t, json!({"event_type": "x", "payload": {"n": n}})).await["event_id"].clone());
    }
    wait_endpoint(&app, &t, id, Duration::from_secs(15), |e| e["disabled"] == true).await;
    let got = ops.wait_for(1, Duration::from_secs(10)).await;
    let disabled = got
        .iter()
        .find(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "endpoint.disabled")
        .expect("an endpoint.disabled operational webhook");
    verify_with_standardwebhooks(secret, disabled);
    let body: Value = serde_json::from_slice(&disabled.body).unwrap();
    assert_eq!(body["data"]["tenant"], t.as_str());
    assert_eq!(body["data"]["endpoint_id"], id);
    assert_eq!(body["data"]["reason"], "consecutive_failures");

    // Deliveries still due are kept, not failed or dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut states = Vec::new();
        for e in &events {
            states.push(deliveries(&app, &t, e.as_str().unwrap()).await[0]["state"].clone());
        }
        if states.iter().all(|s| s == "held") {
            break;
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, stats) = api(&app, Method::GET, &format!("/api/v1/tenants/{t}/endpoints/{id}/stats"), None).await;
    assert_eq!(stats["now"]["held"], 3, "{stats}");

    // Enabled again with a healthy receiver: the held deliveries go out and
    // the operator hears.
    rx.set_default(Reply::status(200));
    let seen = rx.received().len();
    let (status, _) =
        api(&app, Method::PATCH, &format!("/api/v1/tenants/{t}/endpoints/{id}"), Some(json!({"disabled": false})))
            .await;
    assert_eq!(status, 200);
    rx.wait_for(seen + 3, Duration::from_secs(10)).await;
    let got = ops.wait_for(2, Duration::from_secs(10)).await;
    let enabled = got
        .iter()
        .find(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "endpoint.enabled")
        .expect("an endpoint.enabled operational webhook");
    verify_with_standardwebhooks(secret, enabled);
    worker.shutdown().await;
}

#[tokio::test]
async fn the_operator_hears_of_failing_exhausted_and_recovered_deliveries() {
    let rx = Receiver::start().await;
    let ops = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let s = settings(&[
        ("FAILING_AFTER", "2"),
        ("MAX_RETRIES", "2"),
        ("BREAKER_FAILURES", "0"),
        ("OPERATIONAL_WEBHOOK_URL", &ops.url("/ops")),
        ("OPERATIONAL_WEBHOOK_SECRET", secret),
    ]);
    let app = spawn_app(s.clone()).await;
    let t = tenant("news");
    endpoint(&app, &t, json!({"url": rx.url("/recovers")})).await;
    // Fails twice, then gets through on its last try.
    rx.script([Reply::status(500), Reply::status(500)]);
    let first = event(&app, &t, json!({"event_type": "x", "payload": {}})).await["event_id"].clone();
    let worker = spawn_worker(&s);
    rx.wait_for(3, Duration::from_secs(10)).await;
    let got = ops.wait_for(2, Duration::from_secs(10)).await;
    let kinds: Vec<String> = got
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["message.attempt.failing", "message.attempt.recovered"]);
    for r in &got {
        verify_with_standardwebhooks(secret, r);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["data"]["event_id"], first);
        assert_eq!(body["data"]["tenant"], t.as_str());
    }

    // Fails every time: failing, then exhausted.
    rx.set_default(Reply::status(500));
    event(&app, &t, json!({"event_type": "x", "payload": {}})).await;
    let got = ops.wait_for(4, Duration::from_secs(10)).await;
    let kinds: Vec<String> = got[2..]
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["message.attempt.failing", "message.attempt.exhausted"]);
    // The operator's own receiver failing raises nothing more (no loop).
    ops.set_default(Reply::status(500));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = ops.received().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ops.received().len(), before, "operational webhooks fed each other");
    worker.shutdown().await;
}

#[tokio::test]
async fn endpoint_stats_count_attempts_and_their_durations() {
    let rx = Receiver::start().await;
    let s = settings(&[("BREAKER_FAILURES", "0")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = tenant("stats");
    let ep = endpoint(&app, &t, json!({"url": rx.url("/s")})).await;
    let id = ep["id"].as_str().unwrap();
    rx.script([Reply::status(500)]);
    for n in 0..4 {
        event(&app, &t, json!({"event_type": "x", "payload": {"n": n}})).await;
    }
    rx.wait_for(5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, stats) = api(&app, Method::GET, &format!("/api/v1/tenants/{t}/endpoints/{id}/stats"), None).await;
    assert_eq!(status, 200, "{stats}");
    for window in ["last_hour", "last_day"] {
        let w = &stats[window];
        assert_eq!(w["attempts"], 5, "{stats}");
        assert_eq!(w["deliveries"]["succeeded"], 4, "{stats}");
        assert_eq!(w["failed_attempts"], 1, "{stats}");
        assert_eq!(w["success_rate"], 0.8, "{stats}");
        assert!(w["p50_ms"].is_u64() && w["p99_ms"].as_u64() >= w["p50_ms"].as_u64(), "{stats}");
    }
    assert_eq!(stats["consecutive_failures"], 0);
    assert_eq!(stats["breaker"]["state"], "closed");
    let (status, _) = api(
        &app,
        Method::GET,
        &format!("/api/v1/tenants/{t}/endpoints/ep_00000000000000000000000000000000/stats"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    worker.shutdown().await;
}
