//! Expanding an event into its deliveries: the story of one expansion.

use std::time::Duration;

use crate::{
    domain::{EventId, JobId, TenantId},
    jobs::{AttemptRef, QueueTask},
    queue::Queue,
    store::{JobStore, StoreError},
};

/// Deliveries made per round trip: each page is one script call that
/// holds Redis for about a millisecond.
pub const EXPANSION_PAGE: usize = 500;

/// How long an expander may go without finishing a page before any other
/// worker takes the expansion over (from the `expanding` index).
pub const EXPANSION_LEASE: Duration = Duration::from_secs(15);

/// Makes every delivery of an event, page by page, and queues each page's
/// first attempts as it goes. Safe to run twice at once and to resume after
/// a crash: the cursor moves in the same script call that writes a page
/// (`store/lua/expand.lua`), so each endpoint gets exactly one delivery.
/// Deliveries written but not queued (a crash between the two) are
/// `queued` jobs without their task, which the reconciler queues.
/// `expected` (the number of endpoints the event matched when accepted)
/// sizes the first page, so a small fan-out does not send a page of unused
/// ids. Returns how many deliveries this call queued.
#[tracing::instrument(name = "expand", skip_all, fields(tenant = %tenant, event_id = %event))]
pub async fn expand(
    store: &JobStore,
    queue: &Queue,
    tenant: &TenantId,
    event: &EventId,
    expected: Option<u64>,
) -> Result<u64, StoreError> {
    let shard = store.shard_of_tenant(tenant);
    let mut made = 0u64;
    let mut size = expected.map_or(EXPANSION_PAGE, |n| (n as usize).clamp(1, EXPANSION_PAGE));
    loop {
        let ids: Vec<JobId> = (0..size).map(|_| store.shards().mint(None, None, shard)).collect();
        size = EXPANSION_PAGE;
        let page = store.events().expand(tenant, event, &ids, EXPANSION_LEASE, QueueTask::MAX_ATTEMPTS).await?;
        made += page.due_now.len() as u64;
        let first = |job_id: JobId| AttemptRef { job_id, cycle: 0, attempt: 1 };
        let tasks = QueueTask::batches(page.due_now.into_iter().map(|(id, task)| (task, first(id))));
        if !tasks.is_empty() {
            if let Err(e) = queue.push(shard, &tasks).await {
                tracing::warn!(error.message = %e, "deliveries stored but not queued; the reconciler will queue them");
            }
        }
        if page.done {
            break;
        }
    }
    tracing::info!(deliveries = made, "event expanded");
    Ok(made)
}
