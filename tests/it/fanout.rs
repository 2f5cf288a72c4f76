//! Endpoints, events and fan-out, through the HTTP API, with real
//! receivers and a real worker.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use hook_slinger::{
    domain::{EventId, TenantId},
    jobs::JobState,
};

use crate::{
    helpers::{settings, spawn_app, spawn_worker, Receiver, Reply, TestApp, TOKEN},
    rules::verify_with_standardwebhooks,
};

pub(crate) async fn api(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req =
        app.http.request(method, format!("{}{path}", app.base)).header("Authorization", format!("Token {TOKEN}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) async fn endpoint(app: &TestApp, tenant: &str, body: Value) -> Value {
    let (status, ep) = api(app, Method::POST, &format!("/api/v1/tenants/{tenant}/endpoints"), Some(body)).await;
    assert_eq!(status, 201, "{ep}");
    ep
}

pub(crate) async fn event(app: &TestApp, tenant: &str, body: Value) -> Value {
    let (status, answer) = api(app, Method::POST, &format!("/api/v1/tenants/{tenant}/events"), Some(body)).await;
    assert_eq!(status, 202, "{answer}");
    answer
}

fn at(rx: &Receiver, path: &str) -> Vec<crate::helpers::Received> {
    rx.received().into_iter().filter(|r| r.path == path).collect()
}

#[tokio::test]
async fn an_event_reaches_exactly_the_matching_endpoints_each_signed_with_its_own_secret() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = format!("acme-{}", uuid::Uuid::new_v4().simple());
    let other = format!("other-{}", uuid::Uuid::new_v4().simple());
    let typed = endpoint(
        &app,
        &t,
        json!({"url": rx.url("/typed"), "event_types": ["order.created"], "headers": {"X-Team": "billing"}}),
    )
    .await;
    let every = endpoint(&app, &t, json!({"url": rx.url("/every")})).await;
    endpoint(&app, &t, json!({"url": rx.url("/paid"), "event_types": ["order.paid"]})).await;
    let gold = endpoint(&app, &t, json!({"url": rx.url("/gold"), "filter": {"customer.tier": "gold"}})).await;
    endpoint(&app, &t, json!({"url": rx.url("/silver"), "filter": {"customer.tier": "silver"}})).await;
    endpoint(&app, &t, json!({"url": rx.url("/off"), "disabled": true})).await;
    endpoint(&app, &other, json!({"url": rx.url("/other")})).await;

    let answer =
        event(&app, &t, json!({"event_type": "order.created", "payload": {"customer": {"tier": "gold"}, "n": 1}}))
            .await;
    assert_eq!(answer["deliveries"], 3, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_owned();
    rx.wait_for(3, Duration::from_secs(10)).await;
    // Anything misrouted would have arrived by now, with the three.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut paths: Vec<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/every", "/gold", "/typed"]);

    for (ep, path) in [(&typed, "/typed"), (&every, "/every"), (&gold, "/gold")] {
        let r = &at(&rx, path)[0];
        assert_eq!(r.header("webhook-id"), Some(event_id.as_str()), "webhook-id is the event id for every endpoint");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["data"], json!({"customer": {"tier": "gold"}, "n": 1}));
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 1);
        verify_with_standardwebhooks(ep["secret"].as_str().unwrap(), r);
    }
    assert_eq!(at(&rx, "/typed")[0].header("x-team"), Some("billing"));

    // The event and its deliveries, through the API.
    let path = format!("/api/v1/tenants/{t}/events/{event_id}");
    let mut deliveries = Vec::new();
    for _ in 0..50 {
        let (status, ev) = api(&app, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{ev}");
        deliveries = ev["deliveries"].as_array().unwrap().clone();
        if deliveries.iter().all(|d| d["state"] == "succeeded") && deliveries.len() == 3 {
            assert_eq!(ev["event_type"], "order.created");
            assert_eq!(ev["matched"], 3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d["state"] == "succeeded" && d["attempt_log"].as_array().unwrap().len() == 1));
    let (_, list) = api(&app, Method::GET, &format!("/api/v1/tenants/{t}/events?event_type=order.created"), None).await;
    assert_eq!(list["data"][0]["event_id"], event_id.as_str());
    let (_, list) = api(&app, Method::GET, &format!("/api/v1/tenants/{t}/events?event_type=order.paid"), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (_, tenants) = api(&app, Method::GET, "/api/v1/tenants", None).await;
    assert!(
        tenants["data"].as_array().unwrap().iter().any(|x| x["tenant"] == t.as_str() && x["endpoints"] == 6),
        "{tenants}"
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn payload_filters_match_as_documented() {
    let rx = Receiver::start().await;
    let app = spawn_app(settings(&[])).await;
    let t = format!("f-{}", uuid::Uuid::new_v4().simple());
    let payload = json!({
        "customer": {"tier": "gold", "email": "ann@example.com"},
        "amount": 150, "country": "DE", "items": [{"sku": "a1"}], "vip": false, "note": null
    });
    let cases = [
        (json!({"customer.tier": "gold"}), true),
        (json!({"customer": {"tier": "gold"}}), true),
        (json!({"customer.tier": {"$neq": "gold"}}), false),
        (json!({"amount": {"$gte": 100, "$lt": 200}}), true),
        (json!({"amount": {"$gt": 150}}), false),
        (json!({"amount": {"$lte": 150}}), true),
        (json!({"country": {"$in": ["DE", "FR"]}}), true),
        (json!({"country": {"$nin": ["DE", "FR"]}}), false),
        (json!({"missing": {"$exists": false}}), true),
        (json!({"note": {"$exists": true}}), true),
        (json!({"customer.email": {"$startsWith": "ann@"}}), true),
        (json!({"items.0.sku": "a1"}), true),
        (json!({"$or": [{"country": "US"}, {"vip": false}]}), true),
        (json!({"$and": [{"country": "DE"}, {"vip": true}]}), false),
        (json!({"$not": {"country": "DE"}}), false),
        (json!({"amount": {"$not": {"$lt": 100}}}), true),
        (json!({"amount": "150"}), false),
    ];
    for (i, (filter, _)) in cases.iter().enumerate() {
        endpoint(&app, &t, json!({"url": rx.url(&format!("/{i}")), "filter": filter})).await;
    }
    let want = cases.iter().filter(|(_, m)| *m).count();
    let answer = event(&app, &t, json!({"event_type": "x", "payload": payload})).await;
    assert_eq!(answer["deliveries"], want as u64, "accept counts the matches");
    let worker = spawn_worker(&settings_of(&app));
    rx.wait_for(want, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, (filter, matches)) in cases.iter().enumerate() {
        assert_eq!(at(&rx, &format!("/{i}")).len(), usize::from(*matches), "filter {filter}");
    }
    worker.shutdown().await;

    let (status, body) = api(
        &app,
        Method::POST,
        &format!("/api/v1/tenants/{t}/endpoints"),
        Some(json!({"url": rx.url("/x"), "filter": {"customer": {"tier": {"$gtx": 1}}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("customer.tier.$gtx"), "{body}");
}

/// The settings the app was built with (same queue), for a worker.
pub(crate) fn settings_of(app: &TestApp) -> hook_slinger::config::Settings {
    settings(&[("QUEUE_NAME", app.queue())])
}

#[tokio::test]
async fn an_event_id_is_delivered_once_and_answers_the_same() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = format!("i-{}", uuid::Uuid::new_v4().simple());
    endpoint(&app, &t, json!({"url": rx.url("/a")})).await;
    let body = json!({"event_type": "a.b", "payload": {"n": 1}, "event_id": "order-1"});
    let first = event(&app, &t, body.clone()).await;
    let again = event(&app, &t, json!({"event_type": "a.b", "payload": {"n": 2}, "event_id": "order-1"})).await;
    assert_eq!(first, again);
    assert_eq!(first["event_id"], "order-1");
    // Idempotency-Key: same body replays, another body conflicts.
    let post = |key: &'static str, body: Value| {
        let (http, url) = (app.http.clone(), format!("{}/api/v1/tenants/{t}/events", app.base));
        async move {
            let r = http
                .post(url)
                .header("Authorization", format!("Token {TOKEN}"))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let k = json!({"event_type": "a.b", "payload": {"n": 3}});
    let (s1, a1) = post("k1", k.clone()).await;
    let (s2, a2) = post("k1", k.clone()).await;
    let (s3, _) = post("k1", json!({"event_type": "a.b", "payload": {"n": 4}})).await;
    assert_eq!((s1, s2, s3), (202, 202, 409));
    assert_eq!(a1, a2);
    rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 2, "one delivery per event, however often it was posted");
    worker.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_its_grace_period() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = format!("r-{}", uuid::Uuid::new_v4().simple());
    let ep = endpoint(&app, &t, json!({"url": rx.url("/a")})).await;
    let id = ep["id"].as_str().unwrap();
    let old = ep["secret"].as_str().unwrap().to_owned();
    let rotate = format!("/api/v1/tenants/{t}/endpoints/{id}/secret/rotate");
    let (status, rotated) = api(&app, Method::POST, &rotate, Some(json!({"grace_seconds": 3600}))).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    event(&app, &t, json!({"event_type": "a", "payload": {}})).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-signature").unwrap().split(' ').count(), 2);
    verify_with_standardwebhooks(&new, &got[0]);
    verify_with_standardwebhooks(&old, &got[0]);

    let (status, _) = api(&app, Method::POST, &rotate, Some(json!({"grace_seconds": 0}))).await;
    assert_eq!(status, 200);
    let (_, now) = api(&app, Method::GET, &format!("/api/v1/tenants/{t}/endpoints/{id}"), None).await;
    event(&app, &t, json!({"event_type": "a", "payload": {}})).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let sig = got[1].header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "the first rotation's old secret is still in its grace: {sig}");
    verify_with_standardwebhooks(now["secret"].as_str().unwrap(), &got[1]);
    worker.shutdown().await;
}

#[tokio::test]
async fn recover_resends_an_endpoints_failed_deliveries_in_the_window() {
    let rx = Receiver::start().await;
    let s = settings(&[("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let t = format!("rc-{}", uuid::Uuid::new_v4().simple());
    let ep = endpoint(&app, &t, json!({"url": rx.url("/down")})).await;
    let id = ep["id"].as_str().unwrap();
    rx.set_default(Reply::status(500));
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    for n in 0..3 {
        event(&app, &t, json!({"event_type": "a", "payload": {"n": n}})).await;
    }
    rx.wait_for(3, Duration::from_secs(10)).await;
    app.wait_count(JobState::Failed, 3, Duration::from_secs(10)).await;
    rx.set_default(Reply::status(200));
    let recover = format!("/api/v1/tenants/{t}/endpoints/{id}/recover");
    let (status, none) =
        api(&app, Method::POST, &recover, Some(json!({"since": chrono::Utc::now() + chrono::Duration::seconds(60)})))
            .await;
    assert_eq!((status, none["recovered"].as_u64()), (202, Some(0)), "no event in that window");
    let (status, done) = api(&app, Method::POST, &recover, Some(json!({"since": since}))).await;
    assert_eq!((status, done["recovered"].as_u64()), (202, Some(3)), "{done}");
    rx.wait_for(6, Duration::from_secs(10)).await;
    app.wait_count(JobState::Succeeded, 3, Duration::from_secs(10)).await;
    worker.shutdown().await;
}

/// Recover pages through an endpoint's deliveries 500 at a time: with
/// exactly a page of failures, every one is sent again and the walk ends
/// (it once went on forever after a full page).
#[tokio::test]
async fn recover_ends_when_the_deliveries_fill_whole_pages() {
    let rx = Receiver::start().await;
    // Every delivery must fail, not wait behind an open breaker.
    let s = settings(&[("MAX_RETRIES", "0"), ("BREAKER_FAILURES", "0"), ("ENDPOINT_DISABLE_AFTER_FAILURES", "0")]);
    let app = spawn_app(s.clone()).await;
    let t = format!("rp-{}", uuid::Uuid::new_v4().simple());
    let ep = endpoint(&app, &t, json!({"url": rx.url("/down")})).await;
    let id = ep["id"].as_str().unwrap();
    rx.set_default(Reply::status(500));
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let n = 500;
    futures::future::join_all((0..n).map(|i| event(&app, &t, json!({"event_type": "a", "payload": {"n": i}})))).await;
    let worker = spawn_worker(&s);
    app.wait_count(JobState::Failed, n, Duration::from_secs(60)).await;
    rx.set_default(Reply::status(200));
    let recover = format!("/api/v1/tenants/{t}/endpoints/{id}/recover");
    let answer = api(&app, Method::POST, &recover, Some(json!({"since": since})));
    let (status, done) = tokio::time::timeout(Duration::from_secs(30), answer).await.expect("recover ends");
    assert_eq!((status, done["recovered"].as_u64()), (202, Some(n)), "{done}");
    app.wait_count(JobState::Succeeded, n, Duration::from_secs(60)).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn another_tenants_endpoints_and_events_are_not_found() {
    let rx = Receiver::start().await;
    let app = spawn_app(settings(&[])).await;
    let (a, b) = (format!("a-{}", uuid::Uuid::new_v4().simple()), format!("b-{}", uuid::Uuid::new_v4().simple()));
    let ep = endpoint(&app, &a, json!({"url": rx.url("/a")})).await;
    let id = ep["id"].as_str().unwrap();
    let ev = event(&app, &a, json!({"event_type": "x", "payload": {}, "event_id": "e-1"})).await;
    assert_eq!(ev["deliveries"], 1);
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/tenants/{b}/endpoints/{id}"), None),
        (Method::PATCH, format!("/api/v1/tenants/{b}/endpoints/{id}"), Some(json!({"disabled": true}))),
        (Method::DELETE, format!("/api/v1/tenants/{b}/endpoints/{id}"), None),
        (Method::POST, format!("/api/v1/tenants/{b}/endpoints/{id}/secret/rotate"), Some(json!({}))),
        (
            Method::POST,
            format!("/api/v1/tenants/{b}/endpoints/{id}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        (Method::GET, format!("/api/v1/tenants/{b}/events/e-1"), None),
        (Method::GET, format!("/api/v1/tenants/{a}/endpoints/ep_00000000000000000000000000000000"), None),
    ] {
        let (status, body) = api(&app, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body["detail"].is_string());
    }
    let (status, body) = api(&app, Method::GET, &format!("/api/v1/tenants/{a}/endpoints/nonsense"), None).await;
    assert_eq!(status, 400, "a malformed id is bad input: {body}");
    let (_, list) = api(&app, Method::GET, &format!("/api/v1/tenants/{b}/endpoints"), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    // The endpoint is untouched, and an event posted to b matches nothing.
    let (status, still) = api(&app, Method::GET, &format!("/api/v1/tenants/{a}/endpoints/{id}"), None).await;
    assert_eq!((status, &still["disabled"]), (200, &json!(false)));
    assert_eq!(event(&app, &b, json!({"event_type": "x", "payload": {}})).await["deliveries"], 0);
    // Bad input is a 400 with a message.
    for body in [
        json!({}),
        json!({"url": "ftp://x"}),
        json!({"url": rx.url("/"), "rate_limit": 0}),
        json!({"url": rx.url("/"), "colour": "red"}),
    ] {
        let (status, answer) =
            api(&app, Method::POST, &format!("/api/v1/tenants/{a}/endpoints"), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["detail"].is_string());
    }
    let (status, _) =
        api(&app, Method::POST, &format!("/api/v1/tenants/{a}/events"), Some(json!({"payload": {}}))).await;
    assert_eq!(status, 400);
    // Delete, and the tenant is gone with its last endpoint.
    let (status, _) = api(&app, Method::DELETE, &format!("/api/v1/tenants/{a}/endpoints/{id}"), None).await;
    assert_eq!(status, 204);
    let (_, tenants) = api(&app, Method::GET, "/api/v1/tenants", None).await;
    assert!(!tenants["data"].as_array().unwrap().iter().any(|x| x["tenant"] == a.as_str()));
}

/// A crash between pages: an expander makes one page and dies; another
/// takes over from the cursor. Every endpoint gets exactly one delivery.
#[tokio::test]
async fn an_expansion_resumed_after_a_crash_makes_each_delivery_once() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let t = format!("x-{}", uuid::Uuid::new_v4().simple());
    let tenant = TenantId::parse(&t).unwrap();
    let n = 1_200;
    let services = hook_slinger::endpoints::EndpointService::new(
        app.store.clone(),
        s.destinations.clone(),
        Duration::from_secs(5),
    );
    for i in 0..n {
        let input =
            hook_slinger::endpoints::EndpointInput::parse(json!({"url": rx.url(&format!("/{i}"))}), true).unwrap();
        services.create(tenant.clone(), input).await.unwrap();
    }
    // No worker yet: the event waits, expanding.
    let answer = event(&app, &t, json!({"event_type": "big", "payload": {"k": 1}, "event_id": "big-1"})).await;
    assert_eq!(answer["deliveries"], n);
    let event_id = EventId::parse("big-1").unwrap();
    let shard = app.store.shard_of_tenant(&tenant);
    let ids: Vec<_> = (0..500).map(|_| app.store.shards().mint(None, None, shard)).collect();
    let page = app.store.events().expand(&tenant, &event_id, &ids, Duration::from_millis(1), 32).await.unwrap();
    assert!(!page.done);
    assert_eq!(page.due_now.len(), 500);
    // That expander "dies" without queueing its page; its lease (1 ms) runs
    // out, a worker takes the expansion over, and the reconciler queues the
    // orphaned page.
    let worker = spawn_worker(&settings(&[("QUEUE_NAME", app.queue()), ("RECONCILE_AFTER", "1")]));
    let got = rx.wait_for(n as usize, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut paths: Vec<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(got.len(), n as usize);
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n as usize, "every endpoint got it, none twice: {} received", rx.received().len());
    assert_eq!(rx.received().len(), n as usize);
    worker.shutdown().await;
}
