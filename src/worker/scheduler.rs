//! Moves due work onto the apalis queue, puts stranded jobs back on their
//! way (the reconciler), and keeps the queue healthy.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    jobs::{JobState, QueueTask},
    metrics::WorkerMetrics,
    queue::{workarounds, Queue},
    store::{JobStore, WorkerBeat},
};

use super::Runtime;

/// Due retries handed to the queue per round.
const DUE_BATCH: usize = 500;

/// Finished jobs past retention deleted per round (bounded, so one round
/// never blocks Redis for long; a large backlog goes over several rounds).
const EXPIRE_BATCH: usize = 1_000;

/// How often finished tasks' queue copies are swept, expired jobs deleted
/// and the reconciler run.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A worker heartbeat older than this shows the worker as gone in the
/// monitor; its registry entry disappears after [`REGISTRY_TTL`].
const REGISTRY_TTL: Duration = Duration::from_secs(30);

/// Who this worker process is, for the worker registry the monitor reads.
pub struct Identity {
    name: String,
    host: String,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl Identity {
    /// The unique name of this worker process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names this process: prefix, host, pid and start time.
    pub fn new(prefix: &str) -> Self {
        Self {
            name: workarounds::unique_worker_name(prefix, 0),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            started_at: chrono::Utc::now(),
        }
    }
}

/// Runs [`tick`] every `interval` until `stop`; every second also
/// reconciles, sweeps, expires and sends this process's heartbeat.
pub async fn run(
    store: JobStore,
    queue: Queue,
    interval: Duration,
    me: Identity,
    rt: Arc<Runtime>,
    stop: CancellationToken,
) {
    let mut last_sweep = Instant::now() - SWEEP_EVERY;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = store.forget_worker(&me.name).await;
                return;
            }
            () = tokio::time::sleep(interval) => {}
        }
        tick(&store, &queue, &rt.metrics).await;
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            if reconcile(&store, &queue, &rt.metrics).await > 0 {
                // Queue what was just made due without waiting a round.
                tick(&store, &queue, &rt.metrics).await;
            }
            let beat = WorkerBeat {
                name: me.name.clone(),
                host: me.host.clone(),
                pid: std::process::id(),
                started_at: me.started_at,
                last_beat: chrono::Utc::now(),
                in_flight: rt.counters.in_flight.load(Ordering::Relaxed),
                delivered: rt.counters.delivered.load(Ordering::Relaxed),
                failed: rt.counters.failed.load(Ordering::Relaxed),
            };
            if let Err(e) = store.beat(&beat, REGISTRY_TTL).await {
                tracing::debug!(error.message = %e, "heartbeat failed");
            }
            for shard in 0..queue.shards() {
                if let Err(e) = workarounds::sweep_finished(&store.connection(), queue.config_of(shard)).await {
                    tracing::debug!(error.message = %e, "sweep failed; will retry");
                }
            }
            match store.expire_finished(EXPIRE_BATCH).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "deleted finished jobs past their retention"),
                Err(e) => tracing::debug!(error.message = %e, "could not expire finished jobs"),
            }
            if let Err(e) = store.events().expire(EXPIRE_BATCH).await {
                tracing::debug!(error.message = %e, "could not expire events");
            }
            take_over_expansions(&store, &queue).await;
            match store.flows().release_enabled(HELD_RELEASED).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(released = n, "released held deliveries of endpoints enabled again"),
                Err(e) => tracing::debug!(error.message = %e, "could not release held deliveries"),
            }
        }
    }
}

/// Expansions whose expander went quiet (killed, or its task lost) are
/// finished here, by whichever worker sees them first; two at once are
/// harmless (see `events::expand`).
async fn take_over_expansions(store: &JobStore, queue: &Queue) {
    let overdue = match store.events().overdue_expansions(EXPANSIONS_TAKEN).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error.message = %e, "could not look for stalled expansions");
            return;
        }
    };
    for (tenant, event) in overdue {
        tracing::warn!(%tenant, event_id = %event, "taking over an expansion whose expander went quiet");
        let (store, queue) = (store.clone(), queue.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::events::expand(&store, &queue, &tenant, &event, None).await {
                tracing::warn!(error.message = %e, "expansion failed; it will be taken up again");
            }
        });
    }
}

/// Held deliveries of re-enabled endpoints released per shard per pass
/// (the call that enables an endpoint releases most; this finishes what a
/// crash cut short).
const HELD_RELEASED: usize = 1_000;

/// Stalled expansions taken over per shard per pass.
const EXPANSIONS_TAKEN: usize = 10;

/// One reconciler pass over every shard (see `store`'s module doc): jobs
/// that lost their way forward become due again. Returns how many.
async fn reconcile(store: &JobStore, queue: &Queue, metrics: &WorkerMetrics) -> u64 {
    let mut total = 0;
    for shard in 0..queue.shards() {
        total += reconcile_shard(store, queue, shard, metrics).await;
    }
    total
}

/// One shard's reconciler pass; errors are logged and the pass is tried
/// again next second.
async fn reconcile_shard(store: &JobStore, queue: &Queue, shard: usize, metrics: &WorkerMetrics) -> u64 {
    match store.reconcile(&queue.task_lookup(shard)).await {
        Ok(r) => {
            metrics.reconciled(JobState::Queued, r.queued);
            metrics.reconciled(JobState::Delivering, r.delivering);
            if r.total() > 0 {
                tracing::warn!(
                    queued = r.queued,
                    delivering = r.delivering,
                    "reconciled jobs that had lost their way forward; they are due now"
                );
            }
            r.total()
        }
        Err(e) => {
            tracing::debug!(error.message = %e, "reconciler pass failed; will retry");
            0
        }
    }
}

/// One round over every shard: hand due retries to the queue, then promote
/// due queue tasks in safe chunks. Errors are logged and retried next round
/// (Redis may be restarting).
pub async fn tick(store: &JobStore, queue: &Queue, metrics: &WorkerMetrics) {
    for shard in 0..queue.shards() {
        tick_shard(store, queue, shard, metrics).await;
    }
}

async fn tick_shard(store: &JobStore, queue: &Queue, shard: usize, metrics: &WorkerMetrics) {
    let lookup = queue.task_lookup(shard);
    loop {
        match store.lease_due(DUE_BATCH, &lookup).await {
            Ok(leased) => {
                let tasks = leased.tasks;
                let n: usize = tasks.iter().map(QueueTask::len).sum();
                if leased.reconciled > 0 {
                    metrics.reconciled(JobState::Scheduled, leased.reconciled);
                    tracing::warn!(jobs = leased.reconciled, "handed out again due jobs whose queue task was lost");
                }
                if let Err(e) = queue.push(shard, &tasks).await {
                    tracing::warn!(error.message = %e, "could not queue due retries; they come due again after their lease");
                    break;
                }
                if n < DUE_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(error.message = %e, "could not read due retries");
                break;
            }
        }
    }
    if let Err(e) = workarounds::promote_due_in_chunks(&store.connection(), queue.config_of(shard)).await {
        tracing::debug!(error.message = %e, "could not promote due queue tasks");
    }
}
