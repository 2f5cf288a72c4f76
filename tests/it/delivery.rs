//! End to end: accepted jobs are delivered, retried on our schedule,
//! failed, requeued; N workers deliver each job once.

use std::{collections::HashMap, time::Duration};

use hook_slinger::jobs::JobState;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn delivers_exact_body_and_headers() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let payload = json!({"order": 17, "items": ["a", "b"], "nested": {"ok": true}});
    let id = app
        .accept(&json!({"to_url": rx.url("/hooks/in?src=test"), "to_auth": "Bearer receiver-secret", "group": "shop", "payload": payload}))
        .await;
    // Delivered long before the 30 s heartbeat (APALIS.md #8 workaround).
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    let r = &got[0];
    assert_eq!(r.path, "/hooks/in");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(), payload);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer receiver-secret"));
    assert_eq!(r.header("x-hook-slinger-job-id"), Some(id.as_str()));
    assert!(r.header("user-agent").unwrap().starts_with("hook-slinger/"));

    let rec = app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await;
    assert_eq!(rec.attempts, 1);
    let (status, v) = app.get_job(&id).await;
    assert_eq!(status, 200);
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["attempt_log"][0]["status"], 200);
    assert!(v["attempt_log"][0]["started_at"].is_string());
    assert!(v["attempt_log"][0]["duration_ms"].is_u64());
    assert_eq!(v["has_auth"], true);
    assert!(v.get("to_auth").is_none(), "the receiver's secret is never shown");

    // No to_auth: no Authorization header at all.
    app.accept(&json!({"to_url": rx.url("/plain"), "to_auth": "", "payload": {}})).await;
    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].header("authorization"), None);
    worker.shutdown().await;
}

#[tokio::test]
async fn any_2xx_is_success() {
    let rx = Receiver::start().await;
    rx.script([Reply::status(200), Reply::status(201), Reply::status(204)]);
    rx.set_default(Reply::status(500));
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.accept(&job_body(&rx.url("/"))).await);
        rx.wait_for(ids.len(), Duration::from_secs(5)).await;
    }
    for id in &ids {
        let rec = app.wait_state(id, JobState::Succeeded, Duration::from_secs(5)).await;
        assert_eq!(rec.attempts, 1, "2xx is not retried");
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn retries_on_linear_schedule_then_fails_then_requeue_delivers() {
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let s = settings(&[("MAX_RETRIES", "2"), ("INTERVAL", "0.4")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/flaky"))).await;

    let rec = app.wait_state(&id, JobState::Failed, Duration::from_secs(10)).await;
    let got = rx.received();
    assert_eq!(got.len(), 3, "first attempt + MAX_RETRIES");
    assert_eq!(rec.attempts, 3);
    // Linear: INTERVAL * n before retry n (poll granularity adds a little).
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(gap1 >= Duration::from_millis(400) && gap1 < Duration::from_millis(1200), "gap1 {gap1:?}");
    assert!(gap2 >= Duration::from_millis(800) && gap2 < Duration::from_millis(1600), "gap2 {gap2:?}");
    assert_eq!(rec.last_status, Some(503));
    assert!(rec.attempt_log.iter().all(|a| a.error.as_deref() == Some("receiver answered HTTP 503")));
    assert!(!rec.last_error.unwrap().contains("hello"), "failure messages never embed the payload");

    // WORKAROUND(APALIS.md #1): apalis-redis would re-run a failed task at
    // now+1 s, +2 s, ... up to 25 times. Nothing more may arrive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rx.received().len(), 3, "no retries beyond MAX_RETRIES");

    // Requeue: fresh cycle, same id, earlier attempts kept.
    rx.set_default(Reply::status(200));
    let (status, v) = app.requeue(&id).await;
    assert_eq!(status, 202, "{v}");
    let (status, _) = app.requeue(&id).await;
    assert_eq!(status, 409, "a double click does not deliver twice");
    let rec = app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await;
    assert_eq!(rec.attempts, 4);
    assert_eq!(rec.cycle, 1);
    assert_eq!(rec.attempt_log.len(), 4);
    assert_eq!(rec.attempt_log[3].status, Some(200));
    assert_eq!(rx.received().len(), 4);
    assert!(rx.received().iter().all(|r| r.job_id() == id), "same id across retries and requeues");
    worker.shutdown().await;
}

#[tokio::test]
async fn fixed_backoff_and_unreachable_receivers_are_retried() {
    // Port 9 (discard) refuses connections on loopback.
    let s = settings(&[("MAX_RETRIES", "2"), ("INTERVAL", "0.2"), ("BACKOFF", "fixed")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body("http://127.0.0.1:9/nothing-here")).await;
    let rec = app.wait_state(&id, JobState::Failed, Duration::from_secs(10)).await;
    assert_eq!(rec.attempts, 3);
    assert!(rec.attempt_log.iter().all(|a| a.status.is_none()));
    assert!(rec.last_error.unwrap().contains("connection"), "names the cause");
    let t: Vec<_> = rec.attempt_log.iter().map(|a| a.started_at).collect();
    let gap2 = (t[2] - t[1]).to_std().unwrap();
    assert!(gap2 < Duration::from_millis(700), "fixed backoff does not grow: {gap2:?}");
    worker.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_recorded_and_retried() {
    let rx = Receiver::start().await;
    rx.script([Reply { status: 200, delay: Duration::from_secs(3), ..Default::default() }]);
    let s = settings(&[("HTTP_TIMEOUT", "0.5"), ("MAX_RETRIES", "1")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/slow"))).await;
    let rec = app.wait_state(&id, JobState::Succeeded, Duration::from_secs(10)).await;
    assert_eq!(rec.attempts, 2);
    assert!(rec.attempt_log[0].error.as_deref().unwrap().contains("timed out"), "{:?}", rec.attempt_log[0]);
    assert!(rec.attempt_log[0].duration_ms < 1500);
    worker.shutdown().await;
}

#[tokio::test]
async fn two_workers_deliver_each_job_once() {
    let rx = Receiver::start().await;
    // Slow enough that one worker cannot take everything before the other polls.
    rx.set_default(Reply { status: 200, delay: Duration::from_millis(20), ..Default::default() });
    let s = settings(&[("WORKER_CONCURRENCY", "8")]);
    let app = spawn_app(s.clone()).await;
    let a = spawn_worker(&s);
    let b = spawn_worker(&s);
    let n = 300;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            app.service
                .accept(
                    hook_slinger::domain::NewJob::parse(job_body(&rx.url("/")), &LIMITS, chrono::Utc::now()).unwrap(),
                )
                .await
                .unwrap()
                .id,
        );
    }
    app.wait_count(JobState::Succeeded, n as u64, Duration::from_secs(30)).await;
    let got = rx.received();
    let mut per_job: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *per_job.entry(r.job_id()).or_default() += 1;
    }
    assert_eq!(per_job.len(), n);
    assert!(per_job.values().all(|&c| c == 1), "a job was delivered twice");
    let workers: std::collections::HashSet<String> = {
        let mut w = std::collections::HashSet::new();
        for id in &ids {
            w.insert(app.store.get(id).await.unwrap().unwrap().attempt_log[0].worker.clone());
        }
        w
    };
    assert_eq!(workers.len(), 2, "both workers took jobs");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn finished_jobs_expire_after_their_retention_with_their_indexes() {
    let rx = Receiver::start().await;
    let s = settings(&[("RETENTION_SUCCEEDED", "0.5"), ("RETENTION_FAILED", "3600"), ("MAX_RETRIES", "0")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let kept =
        app.accept(&json!({"to_url": "http://127.0.0.1:9/refused", "group": "g", "tag": "t", "payload": {}})).await;
    let gone = app.accept(&json!({"to_url": rx.url("/"), "group": "g", "tag": "t", "payload": {}})).await;
    app.wait_state(&kept, JobState::Failed, Duration::from_secs(5)).await;
    app.wait_state(&gone, JobState::Succeeded, Duration::from_secs(5)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.get_job(&gone).await.0 != 404 {
        assert!(std::time::Instant::now() < deadline, "succeeded job outlived its retention");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = app.store.connection();
    let p = app.store.prefix().to_owned();
    for index in ["all", "state:succeeded", "group:g", "tag:t", "host:127.0.0.1"] {
        let members: Vec<String> = redis::AsyncCommands::zrange(&mut conn, format!("{p}{index}"), 0, -1).await.unwrap();
        assert!(!members.contains(&gone), "{index} still lists the expired job");
    }
    let (status, v) = app.get_job(&kept).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("failed")), "failed jobs keep their own retention");
    worker.shutdown().await;
}

#[tokio::test]
async fn idle_workers_wake_when_work_arrives() {
    let rx = Receiver::start().await;
    // Polling alone would take up to 5 s; the wake-up makes it a round trip.
    let s = settings(&[("WORKER_POLL_INTERVAL_MS", "5000")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let n = rx.received().len() + 1;
        let posted = std::time::Instant::now();
        app.accept(&job_body(&rx.url("/"))).await;
        rx.wait_for(n, Duration::from_secs(10)).await;
        assert!(posted.elapsed() < Duration::from_millis(1000), "delivered after {:?}", posted.elapsed());
    }
    worker.shutdown().await;
}
