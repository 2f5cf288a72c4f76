//! One test per apalis-redis 1.0.0 workaround (APALIS.md). Each fails when
//! its workaround is removed. (#1, the hard-coded retry schedule, is covered
//! by `delivery::retries_on_linear_schedule_then_fails_then_requeue_delivers`;
//! #8, polling, by every delivery test: the heartbeat there is 30 s.)

use std::time::{Duration, Instant};

use hook_slinger::{
    domain::JobId,
    jobs::{JobSpec, JobState, QueueTask},
    queue,
    store::NewRecord,
};
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::*;

/// APALIS.md #2: ~8,000 due tasks crash apalis's fetch. 20,000 jobs, each
/// on a task of its own, queued while no worker runs must all be delivered
/// by one worker. (The app puts jobs accepted together on shared tasks, so
/// the backlog is built here: stored jobs, then one task per job.)
#[tokio::test]
async fn backlog_of_20000_jobs_is_drained_by_one_worker() {
    let rx = Receiver::start().await;
    let s = settings(&[("WORKER_CONCURRENCY", "64")]);
    let app = spawn_app(s.clone()).await;
    let n = 20_000usize;
    let spec: JobSpec = serde_json::from_value(json!({"v": 1, "to_url": rx.url("/bulk"), "payload": {}})).unwrap();
    let ids: Vec<JobId> = (0..n).map(|_| JobId::mint(None, None)).collect();
    let q = queue::Queue::new(app.store.connection(), &s);
    for chunk in ids.chunks(1_000) {
        let records: Vec<NewRecord> =
            chunk.iter().map(|id| NewRecord { id, spec: &spec, due: None, task: None }).collect();
        app.store.create(&records, None, chrono::Utc::now()).await.unwrap();
        let tasks: Vec<QueueTask> =
            chunk.iter().map(|id| QueueTask::DeliverV1 { job_id: id.clone(), cycle: 0, attempt: 1 }).collect();
        q.push(0, &tasks).await.unwrap();
    }
    let cfg = queue::apalis_config(&s);
    let mut conn = app.store.connection();
    let due: u64 = conn.zcard(cfg.scheduled_jobs_set()).await.unwrap();
    assert!(due >= 9_000, "the backlog sits in apalis's scheduled set ({due}), enough to break its fetch");

    let worker = spawn_worker(&s);
    app.wait_count(JobState::Succeeded, n as u64, Duration::from_secs(120)).await;
    assert_eq!(rx.received().len(), n);
    worker.shutdown().await;
}

/// APALIS.md #3: finished tasks' queue copies are swept, so Redis does not
/// grow by every job ever run.
#[tokio::test]
async fn finished_tasks_are_swept_from_the_queue() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(app.accept(&job_body(&rx.url("/"))).await);
    }
    app.wait_count(JobState::Succeeded, 50, Duration::from_secs(10)).await;
    let cfg = queue::apalis_config(&s);
    let mut conn = app.store.connection();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let data: u64 = conn.hlen(cfg.job_data_hash()).await.unwrap();
        let done: u64 = conn.scard(cfg.done_jobs_set()).await.unwrap();
        let meta: bool = conn.exists(format!("{}:{}.0.1", cfg.job_meta_hash(), ids[0])).await.unwrap();
        if data == 0 && done == 0 && !meta {
            break;
        }
        assert!(Instant::now() < deadline, "queue still holds {data} task bodies, {done} done ids, meta {meta}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Our own records keep the history.
    assert_eq!(app.record(&ids[0]).await.attempt_log.len(), 1);
    worker.shutdown().await;
}

/// APALIS.md #5: a stopped worker stays registered; a new one under the
/// same name is refused. A restart must work at once.
#[tokio::test]
async fn a_worker_restarted_at_once_takes_work() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let first = spawn_worker(&s);
    app.accept(&job_body(&rx.url("/1"))).await;
    rx.wait_for(1, Duration::from_secs(5)).await;
    first.shutdown().await;

    let second = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/2"))).await;
    app.wait_state(&id, JobState::Succeeded, Duration::from_secs(5)).await;
    second.shutdown().await;
}

/// APALIS.md #6: a Redis restart ends apalis's run loop; the worker must come
/// back by itself and deliver what is accepted afterwards.
#[tokio::test]
async fn worker_survives_a_redis_restart() {
    let mut redis = OwnRedis::start();
    let rx = Receiver::start().await;
    let s = settings(&[("REDIS_URL", &redis.url()), ("REDIS_TIMEOUT", "1")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let first = app.accept(&job_body(&rx.url("/before"))).await;
    app.wait_state(&first, JobState::Succeeded, Duration::from_secs(5)).await;

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let second = loop {
        let resp = app.post_job(&job_body(&rx.url("/after"))).await;
        if resp.status() == 202 {
            let v: serde_json::Value = resp.json().await.unwrap();
            break v["job_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "app did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    app.wait_state(&second, JobState::Succeeded, Duration::from_secs(30)).await;
    worker.shutdown().await;
}
