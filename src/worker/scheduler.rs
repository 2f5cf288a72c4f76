//! Moves due work onto the apalis queue and keeps the queue healthy.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::{
    queue::{workarounds, Queue},
    store::JobStore,
};

/// Due retries handed to the queue per round.
const DUE_BATCH: usize = 500;

/// How long a due job handed to the queue stays leased before it is handed
/// out again (if the worker that leased it died before queueing it).
const DUE_LEASE: Duration = Duration::from_secs(30);

/// How often finished tasks' queue copies are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Runs [`tick`] every `interval` until `stop`.
pub async fn run(store: JobStore, queue: Queue, interval: Duration, stop: CancellationToken) {
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        tick(&store, &queue).await;
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            if let Err(e) = workarounds::sweep_finished(&store.connection(), queue.config()).await {
                tracing::debug!(error.message = %e, "sweep failed; will retry");
            }
        }
    }
}

/// One round: hand due retries to the queue, then promote due queue tasks
/// in safe chunks. Errors are logged and retried next round (Redis may be
/// restarting).
pub async fn tick(store: &JobStore, queue: &Queue) {
    loop {
        match store.lease_due(DUE_BATCH, DUE_LEASE).await {
            Ok(tasks) => {
                let n = tasks.len();
                if let Err(e) = queue.push(&tasks).await {
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
    if let Err(e) = workarounds::promote_due_in_chunks(&store.connection(), queue.config()).await {
        tracing::debug!(error.message = %e, "could not promote due queue tasks");
    }
}
