//! The worker as a real process: SIGKILL mid-delivery, SIGTERM during one.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hook_slinger::{config::Settings, jobs::JobState};

use crate::helpers::*;

fn worker_process(s: &Settings, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hook-slinger-worker"))
        // An empty directory: no developer's .env leaks into the test.
        .current_dir(dir)
        .env_clear()
        .env("REDIS_URL", &s.redis.url)
        .env("QUEUE_NAME", &s.redis.queue)
        .env("QUEUE_SHARDS", s.redis.shards.to_string())
        .env("HEARTBEAT_INTERVAL", s.worker.heartbeat_interval.as_secs_f64().to_string())
        .env("ORPHAN_AFTER", s.worker.orphan_after.as_secs_f64().to_string())
        .env("HTTP_TIMEOUT", s.worker.http_timeout.as_secs_f64().to_string())
        .env("SHUTDOWN_TIMEOUT", "20")
        .env("LOG_LEVEL", "info")
        .env("LOG_COLOR", "never")
        .env("ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("WORKER_METRICS_PORT", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("worker binary runs")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

#[tokio::test]
async fn killed_worker_jobs_are_delivered_by_another() {
    let rx = Receiver::start().await;
    // The first delivery hangs, so the worker is killed in the middle of it.
    rx.script([Reply { status: 200, delay: Duration::from_secs(60), ..Default::default() }]);
    let s = settings(&[("HEARTBEAT_INTERVAL", "1"), ("ORPHAN_AFTER", "3")]);
    let app = spawn_app(s.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut victim = worker_process(&s, dir.path());
    let id = app.accept(&job_body(&rx.url("/hang"))).await;
    app.wait_state(&id, JobState::Delivering, Duration::from_secs(10)).await;
    signal(&victim, "-KILL");
    victim.wait().unwrap();
    let killed_at = Instant::now();

    let rescuer = spawn_worker(&s);
    let rec = app.wait_state(&id, JobState::Succeeded, Duration::from_secs(30)).await;
    assert!(killed_at.elapsed() < Duration::from_secs(30), "recovered in {:?}", killed_at.elapsed());
    assert_eq!(rec.attempts, 1, "the interrupted attempt was never recorded; the rescue is attempt 1");
    rescuer.shutdown().await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_deliveries_and_exits_zero() {
    let rx = Receiver::start().await;
    rx.script([Reply { status: 200, delay: Duration::from_millis(1500), ..Default::default() }]);
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = worker_process(&s, dir.path());
    let id = app.accept(&job_body(&rx.url("/slow"))).await;
    app.wait_state(&id, JobState::Delivering, Duration::from_secs(10)).await;
    signal(&worker, "-TERM");
    let status = tokio::task::spawn_blocking(move || worker.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    let rec = app.record(&id).await;
    assert_eq!(rec.state, JobState::Succeeded, "the in-flight delivery finished before exit");
    assert_eq!(rx.received().len(), 1);

    // A job accepted after the worker stopped waits, untouched, for the next one.
    let later = app.accept(&job_body(&rx.url("/later"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.record(&later).await.state, JobState::Queued);
}
