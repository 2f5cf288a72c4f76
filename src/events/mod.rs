//! Events: accepting one (stored with the count of endpoints it matches,
//! in one bounded round trip, off which nothing else waits), expanding it
//! into one delivery per matching endpoint (`expand`, run by workers, in
//! pages, resumable), and reading it back with its deliveries.

mod envelope;
mod expand;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    domain::{EventId, EventType, NewEvent, TenantId},
    jobs::{JobRecord, QueueTask},
    queue::Queue,
    store::{
        events::{EventAccepted, EventRead, EventWrite},
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

/// Event operations over one store and queue.
#[derive(Clone)]
pub struct EventService {
    store: JobStore,
    queue: Queue,
    timeout: Duration,
}

impl EventService {
    /// `timeout` bounds each operation.
    pub fn new(store: JobStore, queue: Queue, timeout: Duration) -> Self {
        Self { store, queue, timeout }
    }

    async fn bounded<T>(&self, op: impl std::future::Future<Output = Result<T, EventError>>) -> Result<T, EventError> {
        tokio::time::timeout(self.timeout, op).await.unwrap_or(Err(EventError::Timeout(self.timeout)))
    }

    /// Stores an event and asks a worker to expand it. Once stored it is
    /// accepted: if the request to expand is lost, the event's expansion
    /// lease runs out and any worker takes it up (`EXPANSION_LEASE`).
    #[tracing::instrument(name = "post_event", skip_all, fields(tenant = %tenant, event_type = %event.event_type))]
    pub async fn post(
        &self,
        tenant: TenantId,
        event: NewEvent,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Posted, EventError> {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
        let id = event.event_id.clone().unwrap_or_else(EventId::mint);
        let payload = event.payload.to_string();
        let write = EventWrite {
            tenant: &tenant,
            id: &id,
            event_type: &event.event_type,
            payload,
            now,
            due: event.deliver_at.filter(|at| at.timestamp_millis() > now.timestamp_millis()),
            idempotency: idempotency.as_ref().map(|c| (c.key.as_str(), c.fingerprint.as_str(), c.ttl)),
            lease: EXPANSION_LEASE,
        };
        let accepted = self.bounded(async { Ok(self.store.events().accept(&write).await?) }).await?;
        Ok(match accepted {
            EventAccepted::New { id, matched, created_at } => {
                tracing::info!(event_id = %id, deliveries = matched, "event accepted");
                if matched > 0 {
                    self.prompt(&tenant, &id, matched).await;
                }
                Posted::Accepted { event_id: id, deliveries: matched, created_at, replay: false }
            }
            EventAccepted::Duplicate { id, matched, created_at } => {
                Posted::Accepted { event_id: id, deliveries: matched, created_at, replay: true }
            }
            EventAccepted::Conflict => Posted::Conflict,
        })
    }

    /// Puts the expansion task on the tenant's shard's queue; a failure only
    /// delays the expansion until its lease runs out.
    async fn prompt(&self, tenant: &TenantId, id: &EventId, matched: u64) {
        let task = QueueTask::ExpandV1 {
            id: format!("x.{}", uuid::Uuid::new_v4().simple()),
            tenant: tenant.clone(),
            event_id: id.clone(),
            expected: matched,
        };
        let shard = self.store.shard_of_tenant(tenant);
        match tokio::time::timeout(self.timeout, self.queue.push(shard, &[task])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error.message = %e, "event stored but its expansion not queued; a worker takes it up after the lease")
            }
            Err(_) => tracing::warn!("queueing the expansion timed out; a worker takes it up after the lease"),
        }
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
            let mut out = Vec::with_capacity(ids.len());
            for (id, _) in ids {
                if let Some(ev) = self.store.events().get(tenant, &id).await? {
                    out.push((id, ev));
                }
            }
            Ok(out)
        })
        .await
    }
}
