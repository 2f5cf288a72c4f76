//! Deliveries done right: retry rules, Retry-After, per-job retries,
//! signing, idempotency, delays, the SSRF guard, response capture, batches.
//! Every test talks to a real loopback receiver that misbehaves on purpose.

use std::time::{Duration, Instant};

use hook_slinger::jobs::JobState;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn other_4xx_and_410_are_final_transient_ones_retry() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(404), Reply::status(410), Reply::status(429), Reply::status(408), Reply::status(200)]);
    let s = settings(&[("MAX_RETRIES", "3"), ("INTERVAL", "0.1")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let not_found = app.accept(&job_body(&rx.url("/404"))).await;
    let rec = app.wait_state(&not_found, JobState::Failed, Duration::from_secs(5)).await;
    assert_eq!(rec.attempts, 1, "404 is not retried");
    assert!(rec.stop_reason.as_deref().unwrap().contains("404"), "{:?}", rec.stop_reason);
    let gone = app.accept(&job_body(&rx.url("/410"))).await;
    let rec = app.wait_state(&gone, JobState::Failed, Duration::from_secs(5)).await;
    assert_eq!(rec.attempts, 1);
    assert!(rec.stop_reason.as_deref().unwrap().contains("410 Gone"));
    let busy = app.accept(&job_body(&rx.url("/429"))).await;
    let rec = app.wait_state(&busy, JobState::Succeeded, Duration::from_secs(5)).await;
    assert_eq!(rec.attempt_log.iter().map(|a| a.status.unwrap()).collect::<Vec<_>>(), [429, 408, 200]);
    let (_, v) = app.get_job(&not_found).await;
    assert!(v["stop_reason"].as_str().unwrap().contains("not retried"), "{v}");
    worker.shutdown().await;
}

#[tokio::test]
async fn retry_on_4xx_restores_retrying_but_not_410() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(404), Reply::status(200), Reply::status(410)]);
    let s = settings(&[("RETRY_ON_4XX", "true"), ("INTERVAL", "0.1")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/"))).await;
    assert_eq!(app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await.attempts, 2);
    let id = app.accept(&job_body(&rx.url("/"))).await;
    assert_eq!(app.wait_state(&id, JobState::Failed, Duration::from_secs(5)).await.attempts, 1);
    worker.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_bounded() {
    let rx = Receiver::start().await;
    // INTERVAL is long: only Retry-After can bring the retry this soon.
    rx.script([Reply { status: 503, retry_after: Some(1), ..Default::default() }]);
    rx.script([Reply { status: 429, retry_after: Some(3600), ..Default::default() }]);
    let s = settings(&[("INTERVAL", "60"), ("MAX_RETRY_AFTER", "1.5")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/"))).await;
    let rec = app.wait_state(&id, JobState::Succeeded, Duration::from_secs(10)).await;
    let got = rx.received();
    assert_eq!(got.len(), 3);
    let first = got[1].at - got[0].at;
    let second = got[2].at - got[1].at;
    assert!(first >= Duration::from_millis(950) && first < Duration::from_millis(2500), "{first:?}");
    assert!(second >= Duration::from_millis(1400) && second < Duration::from_millis(3000), "capped: {second:?}");
    assert_eq!(rec.attempt_log[0].response_headers.as_ref().unwrap()["retry-after"], "1");
    worker.shutdown().await;
}

#[tokio::test]
async fn a_job_may_ask_for_its_own_retries_within_the_cap() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let s = settings(&[("MAX_RETRIES", "5"), ("INTERVAL", "0.05"), ("MAX_RETRIES_LIMIT", "10")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&json!({"to_url": rx.url("/"), "payload": {}, "max_retries": 1})).await;
    let rec = app.wait_state(&id, JobState::Failed, Duration::from_secs(5)).await;
    assert_eq!(rec.attempts, 2);
    assert!(rec.stop_reason.unwrap().contains("out of retries"));
    let resp = app.post_job(&json!({"to_url": rx.url("/"), "payload": {}, "max_retries": 11})).await;
    assert_eq!(resp.status(), 422);
    worker.shutdown().await;
}

#[tokio::test]
async fn deliveries_are_signed_with_every_secret() {
    let rx = Receiver::start().await;
    let secrets = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    let s = settings(&[("SIGNING_SECRET", secrets), ("MAX_RETRIES", "1"), ("INTERVAL", "0.1")]);
    rx.script([Reply::status(500)]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&json!({"to_url": rx.url("/signed"), "payload": {"amount": 42, "text": "héllo"}})).await;
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    for r in &got {
        assert_eq!(r.header("webhook-id"), Some(id.as_str()), "webhook-id is the job id, stable across retries");
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 30);
        let sigs: Vec<&str> = r.header("webhook-signature").unwrap().split(' ').collect();
        assert_eq!(sigs.len(), 2, "one signature per secret");
        for (secret, sig) in secrets.split(',').zip(&sigs) {
            let expected = hook_slinger::delivery::SigningSecret::parse(secret).unwrap().sign(&id, ts, &r.body);
            assert_eq!(*sig, expected);
        }
        verify_with_standardwebhooks(secrets.split(',').next().unwrap(), r);
    }
    app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await;
    worker.shutdown().await;
}

/// Verifies a delivery with the reference implementation (the
/// `standardwebhooks` package from PyPI), run as a separate program.
pub fn verify_with_standardwebhooks(secret: &str, r: &Received) {
    let python = std::env::var("STANDARDWEBHOOKS_PYTHON").unwrap_or_else(|_| "target/pyenv/bin/python".to_owned());
    let have =
        std::process::Command::new(&python).args(["-c", "import standardwebhooks"]).status().is_ok_and(|s| s.success());
    if !have {
        assert!(std::env::var("CI").is_err(), "CI must have the standardwebhooks package (make test installs it)");
        eprintln!("skipping the independent check: no {python} with standardwebhooks (run make test)");
        return;
    }
    let script = "import sys, json\nfrom standardwebhooks.webhooks import Webhook\n\
                  secret, wid, ts, sig = sys.argv[1:5]\nbody = sys.stdin.buffer.read()\n\
                  Webhook(secret).verify(body, {'webhook-id': wid, 'webhook-timestamp': ts, 'webhook-signature': sig})\n\
                  print('verified')";
    let mut child = std::process::Command::new(&python)
        .args(["-c", script, secret])
        .arg(r.header("webhook-id").unwrap())
        .arg(r.header("webhook-timestamp").unwrap())
        .arg(r.header("webhook-signature").unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
        "standardwebhooks refused the signature"
    );
}

#[tokio::test]
async fn idempotency_key_returns_the_first_answer_and_enqueues_once() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let body = json!({"to_url": rx.url("/once"), "payload": {"n": 1}});
    let post = |key: &'static str, body: Value| {
        let app_base = app.base.clone();
        let http = app.http.clone();
        async move {
            let resp = http
                .post(format!("{app_base}/hook_slinger/"))
                .header("Authorization", format!("Token {TOKEN}"))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    // Ten at once: one job.
    let answers = futures::future::join_all((0..10).map(|_| post("order-17", body.clone()))).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, v)| {
            assert_eq!(*status, 202, "{v}");
            v["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "concurrent duplicates make one job");
    let first = &answers[0].1;
    assert!(answers.iter().all(|(_, v)| v["queued_at"] == first["queued_at"]), "the first answer is replayed");
    let (status, v) = post("order-17", json!({"to_url": rx.url("/once"), "payload": {"n": 2}})).await;
    assert_eq!(status, 409, "{v}");
    let (status, other) = post("order-18", body.clone()).await;
    assert_eq!(status, 202);
    assert_ne!(other["job_id"], first["job_id"]);

    let worker = spawn_worker(&s);
    rx.wait_for(2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 2, "one delivery per key");
    worker.shutdown().await;
}

#[tokio::test]
async fn delayed_jobs_wait_for_their_time() {
    let rx = Receiver::start().await;
    let s = settings(&[("MAX_DELAY", "60")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let posted = Instant::now();
    let resp = app.post_job(&json!({"to_url": rx.url("/later"), "payload": {}, "delay_seconds": 1.5})).await;
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    assert!(v["deliver_at"].is_string(), "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let (_, job) = app.get_job(&id).await;
    assert_eq!(job["state"], "scheduled");
    assert!(job["next_attempt_at"].is_string());
    let got = rx.wait_for(1, Duration::from_secs(6)).await;
    let waited = got[0].at - posted;
    assert!(waited >= Duration::from_millis(1400), "delivered after {waited:?}");
    app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await;

    // A time in the past means now; too far ahead is refused.
    let past =
        app.accept(&json!({"to_url": rx.url("/now"), "payload": {}, "deliver_at": "2020-01-01T00:00:00Z"})).await;
    app.wait_state(&past, JobState::Succeeded, Duration::from_secs(5)).await;
    let far = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    assert_eq!(app.post_job(&json!({"to_url": rx.url("/"), "payload": {}, "deliver_at": far})).await.status(), 422);
    worker.shutdown().await;
}

#[tokio::test]
async fn ssrf_guard_refuses_internal_destinations() {
    let rx = Receiver::start().await;
    let s = settings(&[("ALLOW_PRIVATE_DESTINATIONS", "false"), ("MAX_RETRIES", "2")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    // IP literals: refused at the door.
    for url in [
        rx.url("/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]:8080/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let resp = app.post_job(&json!({"to_url": url, "payload": {}})).await;
        assert_eq!(resp.status(), 400, "{url}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap().contains("ALLOW_PRIVATE_DESTINATIONS"), "{v}");
    }
    // A name that resolves to loopback: refused at delivery, on the
    // address actually resolved, and not retried.
    let id = app.accept(&json!({"to_url": format!("http://localhost:{}/", rx.addr.port()), "payload": {}})).await;
    let rec = app.wait_state(&id, JobState::Failed, Duration::from_secs(5)).await;
    assert_eq!(rec.attempts, 1);
    assert!(rec.last_error.unwrap().contains("loopback"));
    assert!(rx.received().is_empty(), "nothing reached the internal receiver");
    worker.shutdown().await;

    // An allow-list opens exactly what it names.
    let s = settings(&[("ALLOW_PRIVATE_DESTINATIONS", "false"), ("ALLOWED_DESTINATION_CIDRS", "127.0.0.0/8,::1/128")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&json!({"to_url": format!("http://localhost:{}/", rx.addr.port()), "payload": {}})).await;
    app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await;
    assert_eq!(app.post_job(&json!({"to_url": "http://10.0.0.1/", "payload": {}})).await.status(), 400);
    worker.shutdown().await;
}

#[tokio::test]
async fn responses_are_captured_and_cut_off() {
    let rx = Receiver::start().await;
    rx.script([
        Reply { status: 500, body_len: 100_000, ..Default::default() },
        Reply { status: 200, endless: true, ..Default::default() },
    ]);
    let s = settings(&[("INTERVAL", "0.1"), ("HTTP_TIMEOUT", "5")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/"))).await;
    let rec = app.wait_state(&id, JobState::Succeeded, Duration::from_secs(10)).await;
    let first = &rec.attempt_log[0];
    assert_eq!(first.response_body.as_ref().unwrap().len(), 4096);
    assert!(first.response_truncated);
    assert_eq!(first.response_headers.as_ref().unwrap()["x-request-id"], "rx-1");
    let second = &rec.attempt_log[1];
    assert_eq!(second.status, Some(200));
    assert!(second.duration_ms < 4000, "an endless body is cut off, not read until the timeout");
    assert!(second.response_truncated);
    let (_, v) = app.get_job(&id).await;
    assert_eq!(v["attempt_log"][0]["response_body"].as_str().unwrap().len(), 4096);

    // The worker is still healthy.
    let next = app.accept(&job_body(&rx.url("/after"))).await;
    app.wait_state(&next, JobState::Succeeded, Duration::from_secs(5)).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn batches_accept_each_valid_item_and_explain_the_rest() {
    let rx = Receiver::start().await;
    let s = settings(&[("BATCH_MAX", "5")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let batch = |jobs: Value| {
        app.http
            .post(format!("{}/hook_slinger/batch", app.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .json(&json!({ "jobs": jobs }))
            .send()
    };
    let resp = batch(json!([
        {"to_url": rx.url("/a"), "payload": {"i": 0}, "tag": "t"},
        {"to_url": "ftp://nope", "payload": {}},
        {"to_url": rx.url("/b"), "payload": {"i": 2}},
        {"payload": {}}
    ]))
    .await
    .unwrap();
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(2), Some(2)), "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.iter().map(|r| r["status"].as_u64().unwrap()).collect::<Vec<_>>(), [202, 400, 202, 422]);
    assert!(results[0]["job_id"].as_str().unwrap().starts_with("t_"));
    assert_eq!(results[3]["errors"][0]["loc"][1], "to_url");
    for r in [&results[0], &results[2]] {
        app.wait_state(r["job_id"].as_str().unwrap(), JobState::Succeeded, Duration::from_secs(5)).await;
    }
    let too_many: Vec<Value> = (0..6).map(|_| json!({"to_url": rx.url("/"), "payload": {}})).collect();
    assert_eq!(batch(Value::Array(too_many)).await.unwrap().status(), 422);
    worker.shutdown().await;
}

#[tokio::test]
async fn exponential_backoff_grows_and_is_capped() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500));
    let s = settings(&[("BACKOFF", "exponential"), ("INTERVAL", "0.5"), ("MAX_INTERVAL", "1.5"), ("MAX_RETRIES", "3")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/"))).await;
    app.wait_state(&id, JobState::Failed, Duration::from_secs(15)).await;
    let got = rx.received();
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 0.5, 1.0, then 2.0 capped at 1.5 s. Each gap is at least its wait (the
    // schedule guarantees it) and under the next step's, with half a second
    // of room for a loaded machine's scheduling.
    let ms = Duration::from_millis;
    assert!(gaps[0] >= ms(500) && gaps[0] < ms(1000), "{gaps:?}");
    assert!(gaps[1] >= ms(1000) && gaps[1] < ms(1500), "{gaps:?}");
    assert!(gaps[2] >= ms(1500) && gaps[2] < ms(2000), "capped below the uncapped 2 s: {gaps:?}");
    worker.shutdown().await;
}
