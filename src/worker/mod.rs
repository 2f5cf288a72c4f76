//! The worker process: consumes attempts from the apalis queue, delivers
//! them, records the outcome and schedules retries, until told to stop.
//!
//! Three things run side by side:
//! - the apalis worker, restarted with a fresh name whenever it dies
//!   (a Redis disconnect ends apalis's `run()`: APALIS.md #6);
//! - the scheduler, which puts due retries on the queue and keeps apalis's
//!   scheduled set safe to fetch from (APALIS.md #2);
//! - the janitor step of the scheduler, which drops finished tasks' queue
//!   copies (APALIS.md #3).

mod flow;
mod handler;
mod scheduler;

use std::{
    future::Future,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use apalis::prelude::*;
use apalis_core::backend::ext::BackendExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{FlowSettings, Settings},
    delivery::{ClientError, Deliverer},
    endpoints::EndpointService,
    metrics::{self, WorkerMetrics},
    operational::Operator,
    queue::{self, poll::WakeOrInterval, workarounds, Queue, Storage},
    store::{self, JobStore},
};

pub use handler::deliver;

/// The worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The Redis URL is unusable.
    #[error("could not set up the redis connection")]
    Redis(#[from] redis::RedisError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What every delivery needs, shared by all in-flight tasks.
pub struct Runtime {
    /// Job records.
    pub store: JobStore,
    /// The queue (expansions put deliveries on it).
    pub queue: Queue,
    /// The outbound HTTP client.
    pub deliverer: Deliverer,
    /// Retry rules.
    pub retry: crate::delivery::RetryPolicy,
    /// This process's counters, reported in its heartbeat.
    pub counters: Counters,
    /// This process's Prometheus metrics.
    pub metrics: WorkerMetrics,
    /// How long a claimed attempt is this worker's: `HTTP_TIMEOUT` plus
    /// [`store::LEASE_GRACE`]. Past it the attempt may go to another worker
    /// and this one's result is refused.
    pub lease: Duration,
    /// This process's name (in the worker registry, and on every attempt
    /// it makes).
    pub name: String,
    /// `WORKER_CONCURRENCY` delivery slots: a task may carry many attempts,
    /// so apalis's task limit alone does not bound deliveries.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Endpoints (to disable one that keeps failing).
    pub endpoints: EndpointService,
    /// Where operational events go.
    pub operator: Operator,
    /// Flow control's limits.
    pub flow: FlowSettings,
}

/// How long disabling a failing endpoint may take.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-process delivery counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Deliveries running now.
    pub in_flight: AtomicU64,
    /// Attempts that got a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that did not.
    pub failed: AtomicU64,
}

/// Runs a worker until `shutdown` resolves, then lets in-flight deliveries
/// finish (bounded by `SHUTDOWN_TIMEOUT`) and returns.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), WorkerError> {
    let conn = store::connect(&settings.redis)?;
    let store = JobStore::new(conn.clone(), &settings);
    let queue = Queue::new(conn.clone(), &settings);
    let identity = scheduler::Identity::new(&settings.worker.name_prefix);
    let operator = Operator::new(store.clone(), settings.flow.operational.clone());
    let runtime = Arc::new(Runtime {
        endpoints: EndpointService::new(store.clone(), settings.destinations.clone(), ENDPOINT_TIMEOUT)
            .with_operator(operator.clone()),
        operator,
        flow: settings.flow.clone(),
        name: identity.name().to_owned(),
        store: store.clone(),
        queue: queue.clone(),
        deliverer: Deliverer::new(
            settings.worker.http_timeout,
            settings.destinations.clone(),
            settings.worker.signing_secrets.clone(),
        )?,
        retry: settings.worker.retry,
        counters: Counters::default(),
        metrics: WorkerMetrics::new(&settings.redis.queue),
        lease: settings.worker.http_timeout + store::LEASE_GRACE,
        slots: Arc::new(tokio::sync::Semaphore::new(settings.worker.concurrency)),
    });
    // Dropped when `run` returns, which stops the endpoint after the last
    // delivery has been counted.
    let _metrics = metrics::serve_worker(
        settings.worker.metrics_host,
        settings.worker.metrics_port,
        runtime.metrics.clone(),
        store.clone(),
        queue.clone(),
    )
    .await;

    let stop = CancellationToken::new();
    let wakes: Vec<Arc<Notify>> = (0..queue.shards()).map(|_| Arc::new(Notify::new())).collect();
    tokio::spawn(queue::wake::listen(
        queue::wake::nodes(&settings.redis)?,
        (0..queue.shards()).map(|k| (queue.config_of(k).queue.to_string(), wakes[k].clone())).collect(),
        stop.clone(),
    ));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new deliveries; finishing those in flight");
            stop.cancel();
        });
    }

    // A backlog that built up while no worker ran must be made safe before
    // apalis fetches for the first time.
    scheduler::tick(&store, &queue, &runtime.metrics).await;
    let scheduler = tokio::spawn(scheduler::run(
        store.clone(),
        queue.clone(),
        settings.worker.poll_interval,
        identity,
        runtime.clone(),
        stop.clone(),
    ));

    // One apalis worker per shard, all sharing this process's delivery
    // slots, so every shard is consumed and none can take them all.
    let shared = Arc::new(Consumers {
        settings: settings.clone(),
        conn: conn.clone(),
        queue: queue.clone(),
        runtime: runtime.clone(),
        store: store.clone(),
        stop: stop.clone(),
    });
    let consumers: Vec<_> = (0..queue.shards())
        .map(|shard| {
            let (shared, wake) = (shared.clone(), wakes[shard].clone());
            tokio::spawn(async move { consume(&shared, shard, &wake).await })
        })
        .collect();
    futures::future::join_all(consumers).await;
    stop.cancel();
    let _ = scheduler.await;
    tracing::info!("worker stopped");
    Ok(())
}

/// What every shard's consumer shares.
struct Consumers {
    settings: Settings,
    conn: crate::store::RedisConn,
    queue: Queue,
    runtime: Arc<Runtime>,
    store: JobStore,
    stop: CancellationToken,
}

/// Consumes shard `shard`'s queue until `stop`, restarting its apalis
/// worker whenever it dies.
async fn consume(shared: &Consumers, shard: usize, wake: &Arc<Notify>) {
    let Consumers { settings, queue, store, stop, .. } = shared;
    let mut run_no = 0u32;
    while !stop.is_cancelled() {
        run_no += 1;
        let name = workarounds::unique_worker_name(&format!("{}-s{shard}", settings.worker.name_prefix), run_no);
        let queue_name = queue.config_of(shard).queue.to_string();
        tracing::info!(worker = %name, concurrency = settings.worker.concurrency, queue = %queue_name, "worker started");
        match run_once(shared, shard, &name, wake).await {
            Ok(()) => break,
            Err(e) if stop.is_cancelled() => {
                tracing::warn!(error.message = %e, "worker ended with an error during shutdown");
                break;
            }
            Err(e) => {
                // WORKAROUND(apalis-redis 1.0.0, APALIS.md #6): a Redis
                // disconnect ends apalis's run loop for good; start a new
                // worker (with a new name, see `unique_worker_name`) once
                // Redis answers. Tasks the dead one held are recovered by
                // apalis's orphan detection.
                tracing::error!(worker = %name, error.message = %e, error.cause_chain = ?e, "worker stopped on an error; restarting");
                wait_for_redis(store, stop).await;
            }
        }
    }
}

/// One apalis worker's life on shard `shard`. Boxed as `Send` so that the
/// worker can run on any runtime thread (naming the type here also settles
/// the higher-ranked lifetimes in apalis's builder types for the compiler).
fn run_once(
    shared: &Consumers,
    shard: usize,
    name: &str,
    wake: &Arc<Notify>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), apalis_core::error::WorkerError>> + Send>> {
    let Consumers { settings, conn, queue, runtime, stop, .. } = shared;
    // WORKAROUND(apalis-redis 1.0.0, APALIS.md #8): an idle worker only
    // looks for work at each heartbeat unless told to poll. We fetch when
    // woken (work was just pushed) and poll as a safety net, with a strategy
    // of our own (APALIS.md #11: apalis's combinator loses wake-ups).
    let strategy = WakeOrInterval::new(queue::wake::stream(wake.clone()), settings.worker.poll_interval);
    let backend = Storage::new(conn.clone()).with_config(queue.config_of(shard).clone()).poll_with_strategy(strategy);
    let worker = WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(settings.worker.concurrency)
        .data(runtime.clone())
        .build(deliver);
    let signal = {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            Ok::<(), apalis_core::error::WorkerError>(())
        }
    };
    let run = worker.run_until(signal);
    let grace = settings.worker.shutdown_timeout;
    let stop = stop.clone();
    Box::pin(async move {
        tokio::select! {
            res = run => res,
            () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                // In-flight tasks stay in this worker's in-flight set; apalis's
                // orphan recovery hands them to another worker later.
                tracing::warn!(timeout_s = grace.as_secs_f64(), "shutdown timeout reached with deliveries in flight; leaving them for recovery");
                Ok(())
            }
        }
    })
}

async fn wait_for_redis(store: &JobStore, stop: &CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        if store.ping().await.is_ok() {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
