//! Events: accepting one (stored with the count of endpoints it matches,
//! in one bounded round trip, off which nothing else waits), expanding it
//! into one delivery per matching endpoint (`expand`, run by workers, in
//! pages, resumable), and reading it back with its deliveries.

mod envelope;
mod expand;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    domain::{EventId, EventType, JobId, NewEvent, TenantId},
    jobs::{AttemptRef, JobRecord, QueueTask},
    queue::Queue,
    store::{
        coalesce::Coalescer,
        events::{EventAccepted, EventRead, EventWrite, Origin, INLINE_DELIVERIES},
        IdempotencyClaim, JobStore, StoreError,
    },
};

pub use envelope::{request, Undeliverable};
pub use expand::{expand, EXPANSION_LEASE, EXPANSION_PAGE};

/// Why an event operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// The answer to a posted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Stored (or seen before, `replay`): its id and how many endpoints it
    /// matched.
    Accepted {
        /// The event id.
        event_id: EventId,
        /// Endpoints matched: one delivery each.
        deliveries: u64,
        /// When it was accepted.
        created_at: DateTime<Utc>,
        /// True when this is the first answer again.
        replay: bool,
    },
    /// The idempotency key was used with another body.
    Conflict,
}

/// An event with its deliveries.
#[derive(Debug, Clone)]
pub struct EventWithDeliveries {
    /// The event's id.
    pub id: EventId,
    /// The event.
    pub event: EventRead,
    /// Its deliveries made so far, oldest first (at most
    /// [`MAX_LISTED_DELIVERIES`]).
    pub deliveries: Vec<JobRecord>,
}

/// Deliveries shown with an event at most.
pub const MAX_LISTED_DELIVERIES: usize = 1_000;

/// One posted event on its way to the store.
struct Pending {
    tenant: TenantId,
    id: EventId,
    event: NewEvent,
    payload: String,
    now: DateTime<Utc>,
    idempotency: Option<IdempotencyClaim>,
    ids: Vec<JobId>,
    origin: Option<Origin>,
}

/// Event operations over one store and queue.
#[derive(Clone)]
pub struct EventService {
    store: JobStore,
    timeout: Duration,
    /// Per shard: concurrent requests' events are stored together, and the
    /// first attempts of the deliveries made with them queued together
    /// (see `store::coalesce`), as jobs are.
    commits: Arc<Vec<Coalescer<Pending, EventAccepted>>>,
}

impl EventService {
    /// `timeout` bounds each operation.
    pub fn new(store: JobStore, queue: Queue, timeout: Duration) -> Self {
        Self::replicated(store, queue, timeout, 0)
    }

    /// The same, answering only once `wait_replicas` replicas
    /// (`REDIS_WAIT_REPLICAS`) have each stored event, as jobs are.
    pub fn replicated(store: JobStore, queue: Queue, timeout: Duration, wait_replicas: u32) -> Self {
        let commits = store
            .shards()
            .all()
            .map(|shard| {
                let (store, queue) = (store.clone(), queue.clone());
                Coalescer::new(move |batch: Vec<Pending>| {
                    let (store, queue) = (store.clone(), queue.clone());
                    async move { commit(&store, &queue, shard, (timeout, wait_replicas), batch).await }
                })
            })
            .collect();
        Self { store, timeout, commits: Arc::new(commits) }
    }

    async fn bounded<T>(&self, op: impl std::future::Future<Output = Result<T, EventError>>) -> Result<T, EventError> {
        tokio::time::timeout(self.timeout, op).await.unwrap_or(Err(EventError::Timeout(self.timeout)))
    }

    /// Stores an event with its deliveries, or, when it matches more than
    /// [`INLINE_DELIVERIES`] endpoints, asks a worker to expand it. Once
    /// stored it is accepted: if queueing fails, the reconciler queues the
    /// deliveries (`RECONCILE_AFTER`) and any worker takes up the expansion
    /// when its lease runs out (`EXPANSION_LEASE`).
    pub async fn post(
        &self,
        tenant: TenantId,
        event: NewEvent,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Posted, EventError> {
        self.post_from(tenant, event, idempotency, None).await
    }

    /// [`Self::post`] for an event ingested by a source: the request is
    /// stored with the event, and counted and logged for the source, in
    /// the same step.
    #[tracing::instrument(name = "post_event", skip_all, fields(tenant = %tenant, event_type = %event.event_type))]
    pub async fn post_from(
        &self,
        tenant: TenantId,
        event: NewEvent,
        idempotency: Option<IdempotencyClaim>,
        origin: Option<Origin>,
    ) -> Result<Posted, EventError> {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
        let shard = self.store.shard_of_tenant(&tenant);
        let ids = (0..INLINE_DELIVERIES).map(|_| self.store.shards().mint(None, None, shard)).collect();
        let pending = Pending {
            id: event.event_id.clone().unwrap_or_else(EventId::mint),
            payload: event.payload.to_string(),
            tenant,
            event,
            now,
            idempotency,
            ids,
            origin,
        };
        let accepted = self.bounded(async { Ok(self.commits[shard].submit(pending).await?) }).await?;
        Ok(match accepted {
            EventAccepted::New { id, matched, created_at, .. } => {
                tracing::info!(event_id = %id, deliveries = matched, "event accepted");
                Posted::Accepted { event_id: id, deliveries: matched, created_at, replay: false }
            }
            EventAccepted::Duplicate { id, matched, created_at } => {
                Posted::Accepted { event_id: id, deliveries: matched, created_at, replay: true }
            }
            EventAccepted::Conflict => Posted::Conflict,
        })
    }

    /// Reads an event with its deliveries.
    pub async fn get(&self, tenant: &TenantId, id: &EventId) -> Result<Option<EventWithDeliveries>, EventError> {
        self.bounded(async {
            let Some(event) = self.store.events().get(tenant, id).await? else {
                return Ok(None);
            };
            let ids = self.store.events().deliveries(tenant, id, MAX_LISTED_DELIVERIES).await?;
            let deliveries = self.store.get_many(&ids).await?;
            Ok(Some(EventWithDeliveries { id: id.clone(), event, deliveries }))
        })
        .await
    }

    /// A page of a tenant's events, newest first; see
    /// [`crate::store::events::EventStore::list`].
    pub async fn list(
        &self,
        tenant: &TenantId,
        event_type: Option<&EventType>,
        since: Option<DateTime<Utc>>,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(EventId, EventRead)>, EventError> {
        self.bounded(async {
            let ids = self.store.events().list(tenant, event_type, since, before, limit).await?;
            // The reads share the connection's pipeline: one round trip, not one per event.
            let events = self.store.events();
            let found = futures::future::try_join_all(ids.iter().map(|(id, _)| events.get(tenant, id))).await?;
            Ok(ids.into_iter().zip(found).filter_map(|((id, _), ev)| Some((id, ev?))).collect())
        })
        .await
    }
}

/// Stores several requests' events in one round trip, then queues in one
/// more the first attempts of the deliveries made with them
/// ([`QueueTask::MAX_ATTEMPTS`] per task) and an expansion task for each
/// event left to expand. A failed push is logged, not returned: the events
/// are stored, and the reconciler and the expansion lease take them on.
/// With `wait_replicas` above 0 the write must also reach that many
/// replicas before the callers hear it succeeded.
async fn commit(
    store: &JobStore,
    queue: &Queue,
    shard: usize,
    (timeout, wait_replicas): (Duration, u32),
    batch: Vec<Pending>,
) -> Result<Vec<EventAccepted>, StoreError> {
    let writes: Vec<EventWrite<'_>> = batch
        .iter()
        .map(|p| EventWrite {
            tenant: &p.tenant,
            id: &p.id,
            event_type: &p.event.event_type,
            payload: &p.payload,
            now: p.now,
            due: p.event.deliver_at.filter(|at| at.timestamp_millis() > p.now.timestamp_millis()),
            idempotency: p.idempotency.as_ref().map(|c| (c.key.as_str(), c.fingerprint.as_str(), c.ttl)),
            ids: p.ids.clone(),
            origin: p.origin.as_ref(),
        })
        .collect();
    let accepted = store.events().accept_many(shard, &writes, EXPANSION_LEASE).await?;
    let replicated = match wait_replicas {
        0 => Ok(()),
        n => store.wait_replicas(shard, n, timeout / 2).await,
    };
    let first = |job_id: JobId| AttemptRef { job_id, cycle: 0, attempt: 1 };
    let mut named = Vec::new();
    let mut expansions = Vec::new();
    for (p, a) in batch.iter().zip(&accepted) {
        if let EventAccepted::New { id, matched, due_now, expanding, .. } = a {
            named.extend(due_now.iter().map(|(job, task)| (task.clone(), first(job.clone()))));
            if *expanding {
                expansions.push(QueueTask::ExpandV1 {
                    id: format!("x.{}", uuid::Uuid::new_v4().simple()),
                    tenant: p.tenant.clone(),
                    event_id: id.clone(),
                    expected: *matched,
                });
            }
        }
    }
    let mut tasks = QueueTask::batches(named);
    tasks.append(&mut expansions);
    if !tasks.is_empty() {
        match tokio::time::timeout(timeout, queue.push(shard, &tasks)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                error.message = %e,
                "events stored but not queued; the reconciler and the expansion lease take them on"
            ),
            Err(_) => tracing::warn!("queueing events timed out; the reconciler and the expansion lease take them on"),
        }
    }
    // Unconfirmed events are queued all the same: the master has them, and
    // if it keeps them they are delivered; the callers hear that a
    // failover could lose them.
    replicated?;
    Ok(accepted)
}
