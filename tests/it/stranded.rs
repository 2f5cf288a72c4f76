//! Nothing stranded: every job answered 202 ends delivered or visibly
//! failed, whatever stopped half-way. Each test breaks the way forward one
//! particular way and fails without the fix for that way.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use apalis_core::task::{builder::TaskBuilder, task_id::TaskId};
use chrono::Utc;
use futures::StreamExt;
use hook_slinger::{
    domain::JobId,
    jobs::{JobSpec, JobState, QueueTask},
    queue,
    store::{Claim, JobStore, NewRecord},
};
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::helpers::*;

/// Stores a job the way a half-finished accept leaves it: the record is
/// written (at `at`), its queue task never is.
async fn store_without_task(store: &JobStore, url: &str, at: chrono::DateTime<Utc>) -> JobId {
    let spec: JobSpec = serde_json::from_value(json!({"v": 1, "to_url": url, "payload": {"stranded": true}})).unwrap();
    let id = JobId::mint(None, None);
    store.create(&[NewRecord { id: &id, spec: &spec, due: None, task: None }], None, at).await.unwrap();
    id
}

/// How often each job id reached the receiver.
fn deliveries(rx: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in rx.received() {
        *counts.entry(r.job_id()).or_default() += 1;
    }
    counts
}

/// Sub-millisecond delays used to land between the parser's clock and the
/// store's: the job was stored `queued` but, having a due time, was never
/// queued. One clock per request decides now. The reconciler is held off
/// (RECONCILE_AFTER = 300 s) so that it cannot hide a regression.
#[tokio::test]
async fn sub_millisecond_delays_are_delivered_exactly_once() {
    let rx = Receiver::start().await;
    let s = settings(&[("RECONCILE_AFTER", "300")]);
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let url = rx.url("/soon");
    let delays = [0.0, 0.0005, 0.001, 0.0015];

    let singles: Vec<String> = futures::stream::iter(0..400usize)
        .map(|i| {
            let body = json!({"to_url": url, "payload": {"i": i}, "delay_seconds": delays[i % delays.len()]});
            let app = &app;
            async move { app.accept(&body).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let jobs: Vec<Value> =
        (0..500).map(|i| json!({"to_url": url, "payload": {"b": i}, "delay_seconds": 0.001})).collect();
    let resp = app
        .http
        .post(format!("{}/hook_slinger/batch", app.base))
        .header("Authorization", format!("Token {TOKEN}"))
        .json(&json!({ "jobs": jobs }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let batch: Value = resp.json().await.unwrap();
    let accepted: Vec<String> = singles
        .into_iter()
        .chain(batch["results"].as_array().unwrap().iter().map(|r| r["job_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(accepted.len(), 900);

    rx.wait_for(900, Duration::from_secs(30)).await;
    // Let any duplicate arrive before counting.
    app.wait_count(JobState::Succeeded, 900, Duration::from_secs(10)).await;
    let counts = deliveries(&rx);
    let lost: Vec<&String> = accepted.iter().filter(|id| !counts.contains_key(*id)).collect();
    let twice = counts.values().filter(|&&n| n > 1).count();
    println!("sub_ms_delays: sent=900 accepted=900 delivered={} lost={} duplicates={twice}", counts.len(), lost.len());
    assert!(lost.is_empty(), "{} accepted jobs never delivered, e.g. {:?}", lost.len(), lost.first());
    assert_eq!(twice, 0);
    worker.shutdown().await;
}

/// A record stored without its queue task (a Redis stall between the two
/// writes, an app killed between them) is found by the reconciler after
/// RECONCILE_AFTER and delivered once.
#[tokio::test]
async fn a_queued_job_without_its_task_is_reconciled() {
    let rx = Receiver::start().await;
    let s = settings(&[("RECONCILE_AFTER", "1")]);
    let app = spawn_app(s.clone()).await;
    let id = store_without_task(&app.store, &rx.url("/lost"), Utc::now()).await;
    // A job with its task, accepted normally, is not touched twice.
    let normal = app.accept(&job_body(&rx.url("/normal"))).await;
    let stuck = app.store.awaiting_reconcile(&queue_of(&s).task_lookups()).await.unwrap();
    assert_eq!(stuck.total(), 0, "nothing counts as stuck before RECONCILE_AFTER");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stuck = app.store.awaiting_reconcile(&queue_of(&s).task_lookups()).await.unwrap();
    assert_eq!((stuck.queued, stuck.total()), (1, 1), "the monitor's count sees the stranded job, and only it");

    let started = Instant::now();
    let worker = spawn_worker(&s);
    let rec = app.wait_state(id.as_str(), JobState::Succeeded, Duration::from_secs(10)).await;
    app.wait_state(&normal, JobState::Succeeded, Duration::from_secs(10)).await;
    assert_eq!(rec.attempts, 1);
    assert!(started.elapsed() < Duration::from_secs(5), "reconciled within a pass: {:?}", started.elapsed());
    let counts = deliveries(&rx);
    assert_eq!((counts[id.as_str()], counts[&normal]), (1, 1));
    let after = app.store.awaiting_reconcile(&queue_of(&s).task_lookups()).await.unwrap();
    assert_eq!(after.total(), 0);
    worker.shutdown().await;
}

fn queue_of(s: &hook_slinger::config::Settings) -> queue::Queue {
    let conn = hook_slinger::store::connect(&s.redis).unwrap();
    queue::Queue::new(conn, s)
}

/// A worker SIGKILLed between claim and finish, its apalis task already
/// acknowledged (simulated: the claim is taken directly and no task exists):
/// the lease runs out and the reconciler makes the attempt due again.
#[tokio::test]
async fn a_claim_whose_worker_vanished_is_reconciled() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let id = store_without_task(&app.store, &rx.url("/vanished"), Utc::now()).await;
    let claim = app.store.claim(&id, 0, 1, "ghost", "ghost-token", Duration::from_millis(500)).await.unwrap();
    assert!(matches!(claim, Claim::Ready { .. }));
    assert_eq!(app.record(id.as_str()).await.state, JobState::Delivering);

    let worker = spawn_worker(&s);
    let rec = app.wait_state(id.as_str(), JobState::Succeeded, Duration::from_secs(10)).await;
    assert_eq!(rec.attempts, 1, "the vanished attempt was never recorded; the rescue is attempt 1");
    assert_eq!(rec.attempt_log[0].cycle, 0, "same cycle: the lost attempt is made again, not a new cycle");
    assert_eq!(deliveries(&rx)[id.as_str()], 1);
    // The ghost's late result is refused: it no longer holds the claim.
    let late = attempt(1);
    let next = hook_slinger::store::NextStep::Failed("late".into());
    let flow = format!("h:{}", rx.addr);
    let verdict = hook_slinger::store::flows::Verdict::Fail;
    assert!(app.store.finish(&id, 1, "ghost-token", &late, next, &flow, verdict).await.unwrap().is_none());
    assert_eq!(app.record(id.as_str()).await.state, JobState::Succeeded);
    worker.shutdown().await;
}

/// A task whose handler keeps failing on an infrastructure error until
/// apalis gives up on it (its last allowed run, attempt 25, goes to the dead
/// set): the job does not stay `delivering`. The error is real: the
/// `succeeded` index key holds a string, so recording the attempt fails in
/// Redis.
#[tokio::test]
async fn a_task_apalis_gives_up_on_does_not_leave_the_job_delivering() {
    let rx = Receiver::start().await;
    let s = settings(&[("HTTP_TIMEOUT", "1")]);
    let app = spawn_app(s.clone()).await;
    let id = store_without_task(&app.store, &rx.url("/infra"), Utc::now()).await;
    let mut conn = app.store.connection();
    let shard = app.store.shards().of_job(&id);
    let index_key = app.store.state_key_in(shard, JobState::Succeeded);
    let _: () = conn.set(&index_key, "not a sorted set").await.unwrap();
    // The task arrives on its last run: one more failure and apalis drops it.
    let cfg = queue::apalis_config_for(&s, shard);
    let task = QueueTask::DeliverV1 { job_id: id.clone(), cycle: 0, attempt: 1 };
    let built = TaskBuilder::new(serde_json::to_vec(&task).unwrap())
        .task_id(TaskId::from_string(task.task_id()))
        .attempt(24)
        .build();
    apalis_redis::queries::push_tasks(&mut conn, &cfg, &[built]).await.unwrap();

    let worker = spawn_worker(&s);
    rx.wait_for(1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !conn.sismember::<_, _, bool>(cfg.dead_jobs_set(), task.task_id()).await.unwrap()
        && conn.hexists::<_, _, bool>(cfg.job_data_hash(), task.task_id()).await.unwrap()
    {
        assert!(Instant::now() < deadline, "apalis never gave up on the task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = format!("{}job:{}", app.store.prefix_of(&id), id);
    let state: String = conn.hget(&key, "state").await.unwrap();
    assert_eq!(state, "delivering", "the failed recording left it delivering");
    // Redis is healthy again; the job must find its way without apalis.
    let _: () = conn.del(&index_key).await.unwrap();
    let rec = app.wait_state(id.as_str(), JobState::Succeeded, Duration::from_secs(20)).await;
    assert_eq!(rec.attempts, 1);
    assert_eq!(deliveries(&rx)[id.as_str()], 2, "at-least-once: the unrecorded delivery is made again");
    worker.shutdown().await;
}

/// Requeue and retry-now act on a job stuck in a non-terminal state for
/// longer than RECONCILE_AFTER, and refuse one that is on its way.
#[tokio::test]
async fn requeue_and_retry_now_act_on_stuck_jobs_only() {
    let rx = Receiver::start().await;
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let fresh = store_without_task(&app.store, &rx.url("/fresh"), Utc::now()).await;
    let old = store_without_task(&app.store, &rx.url("/old"), Utc::now() - chrono::Duration::minutes(5)).await;

    let (status, body) = app.requeue(fresh.as_str()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("RECONCILE_AFTER"), "{body}");
    let (status, body) = app.requeue(old.as_str()).await;
    assert_eq!(status, 202, "{body}");
    let rec = app.record(old.as_str()).await;
    assert_eq!((rec.state, rec.cycle), (JobState::Scheduled, 1));

    // A worker's claim is on its way until its lease runs out.
    let held = store_without_task(&app.store, &rx.url("/held"), Utc::now() - chrono::Duration::minutes(5)).await;
    app.store.claim(&held, 0, 1, "w", "t", Duration::from_secs(60)).await.unwrap();
    assert_eq!(app.requeue(held.as_str()).await.0, 409, "a live lease is not stuck");
    assert_eq!(
        app.store.retry_now(&held).await.unwrap(),
        hook_slinger::store::RetryNow::NotScheduled(JobState::Delivering)
    );

    let worker = spawn_worker(&s);
    app.wait_state(old.as_str(), JobState::Succeeded, Duration::from_secs(10)).await;
    worker.shutdown().await;
}
