//! apalis-redis 1.0.0 on a Redis Cluster: a worker over
//! `RedisStorage<_, RedisConn>` with a hash-tagged queue (every key of the
//! queue in one slot), pushing with `push_tasks` as `Queue::push` does,
//! consuming and acking.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_core::{
    backend::ext::BackendExt,
    task::{builder::TaskBuilder, task_id::TaskId},
};
use hook_slinger::{
    config::Settings,
    queue::{self, poll::WakeOrInterval, workarounds},
    store::{self, RedisConn},
};
use redis::AsyncCommands;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::TestCluster;

/// The one key outside the queue's slot that apalis-redis 1.0.0 writes in
/// the scripts a worker runs (`register_worker.lua`).
const APALIS_QUEUES_LIST: &str = "core:apalis:queues:list";

/// Settings whose queue's slot is served by a different master than
/// `core:apalis:queues:list`, so a script touching both must cross nodes.
fn settings_apart_from_the_queues_list(cluster: &TestCluster, extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![("QUEUE_SHARDS", "1")];
    vars.extend_from_slice(extra);
    let s = cluster.settings(&vars);
    // Shard 0's hash tag is `{0}` (slot 13907), served by the third master
    // of an evenly split cluster; the list's slot (2813) by the first.
    let queue = queue::apalis_config(&s).queue.to_string();
    assert_ne!(cluster.master_of(&queue), cluster.master_of(APALIS_QUEUES_LIST), "{queue} is beside the list");
    s
}

type Seen = Arc<Mutex<BTreeSet<u32>>>;

/// What a probe worker's handler does: record the task, or hang forever
/// (a worker that will be killed mid-task).
#[derive(Clone, Default)]
struct Probe {
    seen: Seen,
    hang: bool,
}

async fn probe_task(n: u32, probe: Data<Probe>) -> Result<(), BoxDynError> {
    if probe.hang {
        futures::future::pending::<()>().await;
    }
    probe.seen.lock().unwrap().insert(n);
    Ok(())
}

/// Pushes tasks `range` the way `Queue::push` does.
async fn push(conn: &RedisConn, config: &apalis_redis::Config, range: std::ops::Range<u32>) {
    let tasks: Vec<_> = range
        .clone()
        .map(|i| {
            TaskBuilder::new(serde_json::to_vec(&i).unwrap()).task_id(TaskId::from_string(format!("t{i}"))).build()
        })
        .collect();
    let (queued, scheduled) = apalis_redis::queries::push_tasks(&mut conn.clone(), config, &tasks).await.unwrap();
    assert_eq!(queued + scheduled, range.len() as u32, "push_tasks over the cluster connection");
}

/// Runs one apalis worker named `name` over the cluster connection until
/// `stop`, polling every 50 ms.
fn spawn_probe_worker(
    conn: &RedisConn,
    config: &apalis_redis::Config,
    name: &str,
    probe: Probe,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), apalis_core::error::WorkerError>> {
    let backend =
        apalis_redis::RedisStorage::<u32, RedisConn>::new(conn.clone()).with_config(config.clone()).poll_with_strategy(
            WakeOrInterval::new(queue::wake::stream(Arc::new(Notify::new())), Duration::from_millis(50)),
        );
    let worker = WorkerBuilder::new(name).backend(backend).data(probe).build(probe_task);
    let stop = stop.clone();
    tokio::spawn(worker.run_until(async move {
        stop.cancelled().await;
        Ok::<(), apalis_core::error::WorkerError>(())
    }))
}

/// Pushes `n` tasks, runs one apalis worker until all of them are acked
/// (in apalis's done set) or 15 s pass, and returns what the handler saw
/// and how the worker ended (`None`: it was still running and was stopped).
async fn push_and_consume(
    settings: &Settings,
    n: u32,
) -> (BTreeSet<u32>, Option<Result<(), apalis_core::error::WorkerError>>) {
    let conn = store::connect(&settings.redis).unwrap();
    assert!(matches!(conn, RedisConn::Cluster(_)));
    let config = queue::apalis_config(settings);
    push(&conn, &config, 0..n).await;
    let probe = Probe::default();
    let stop = CancellationToken::new();
    let mut run =
        spawn_probe_worker(&conn, &config, &format!("probe-{}", uuid::Uuid::new_v4().simple()), probe.clone(), &stop);
    let ended = wait_acked(&conn, &config, n, &mut run).await;
    stop.cancel();
    if ended.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
    }
    let seen = probe.seen.lock().unwrap().clone();
    (seen, ended)
}

/// Waits (up to 15 s) until apalis's done set holds `n` tasks; returns the
/// worker's result if it ended first.
async fn wait_acked(
    conn: &RedisConn,
    config: &apalis_redis::Config,
    n: u32,
    run: &mut tokio::task::JoinHandle<Result<(), apalis_core::error::WorkerError>>,
) -> Option<Result<(), apalis_core::error::WorkerError>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut conn = conn.clone();
    loop {
        let done: u32 = conn.scard(config.done_jobs_set()).await.unwrap_or(0);
        if done >= n || Instant::now() > deadline {
            return None;
        }
        tokio::select! {
            res = &mut *run => return Some(res.expect("the worker task does not panic")),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

#[tokio::test]
async fn apalis_worker_consumes_and_acks_on_a_cluster() {
    let cluster = TestCluster::start();
    let s = settings_apart_from_the_queues_list(&cluster, &[]);
    let (seen, ended) = push_and_consume(&s, 20).await;
    assert!(ended.is_none(), "the worker ended early: {ended:?}");
    assert_eq!(seen, (0..20).collect());
}

/// The rest of a worker's life on a cluster: heartbeats (`keep_alive.lua`),
/// recovery of a killed worker's tasks by another (`reenqueue_orphaned.lua`,
/// which builds in-flight set names from a KEYS prefix: same slot, so
/// allowed), and our own queue scripts (APALIS.md #2 and #3), whose
/// undeclared keys share the queue's slot too.
#[tokio::test]
async fn heartbeats_orphan_recovery_and_our_queue_scripts_work_on_a_cluster() {
    let cluster = TestCluster::start();
    let s = settings_apart_from_the_queues_list(&cluster, &[("HEARTBEAT_INTERVAL", "1"), ("ORPHAN_AFTER", "2")]);
    let conn = store::connect(&s.redis).unwrap();
    let config = queue::apalis_config(&s);
    let n = 5;
    push(&conn, &config, 0..n).await;
    // Every push lands in the scheduled set; ours moves them in chunks.
    assert_eq!(workarounds::promote_due_in_chunks(&conn, &config).await.unwrap(), u64::from(n));

    // A worker takes them all and is killed mid-task (its future dropped:
    // no goodbye, like SIGKILL).
    let stop = CancellationToken::new();
    let doomed = format!("doomed-{}", uuid::Uuid::new_v4().simple());
    let hung = spawn_probe_worker(&conn, &config, &doomed, Probe { hang: true, ..Probe::default() }, &stop);
    let inflight = format!("{}:{doomed}", config.inflight_jobs_set());
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.clone().scard::<_, u32>(&inflight).await.unwrap() < n {
        assert!(Instant::now() < deadline, "the doomed worker did not take the tasks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hung.abort();

    // Another worker recovers them at one of its heartbeats, once the dead
    // one has missed two, and acks them.
    let probe = Probe::default();
    let mut run = spawn_probe_worker(&conn, &config, "rescuer", probe.clone(), &stop);
    let ended = wait_acked(&conn, &config, n, &mut run).await;
    assert!(ended.is_none(), "the rescuing worker ended: {ended:?}");
    assert_eq!(*probe.seen.lock().unwrap(), (0..n).collect());
    // A few more heartbeats: keep_alive keeps working.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(!run.is_finished(), "the worker died between heartbeats: {:?}", run.await);
    stop.cancel();
    run.await.unwrap().unwrap();

    assert!(workarounds::sweep_finished(&conn, &config).await.unwrap() >= u64::from(n));
    let mut c = conn.clone();
    assert_eq!(c.scard::<_, u32>(config.done_jobs_set()).await.unwrap(), 0);
    assert_eq!(c.hlen::<_, u32>(config.job_data_hash()).await.unwrap(), 0);
}
