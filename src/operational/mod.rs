//! Operational webhooks: what the operator hears about endpoints and
//! deliveries (`OPERATIONAL_WEBHOOK_URL`, signed Standard Webhooks style
//! with `OPERATIONAL_WEBHOOK_SECRET`).
//!
//! Each one is a plain job to that URL, so it has our retries, attempt log,
//! monitor and requeue. They cannot feed each other: only deliveries of
//! events and endpoint changes raise them, and an operational job is
//! neither (its own failures raise nothing).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{
    config::OperationalWebhook,
    domain::{EndpointId, EventId, TenantId},
    jobs::JobSpec,
    store::{JobStore, NewRecord, StoreError},
};

/// Something the operator is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationalEvent {
    /// An endpoint was disabled (`reason`: `consecutive_failures` when we
    /// did it, `manual` when a person or a client did).
    EndpointDisabled {
        /// Whose.
        endpoint: EndpointRef,
        /// Why.
        reason: &'static str,
        /// Its consecutive failed attempts then.
        consecutive_failures: u64,
    },
    /// An endpoint was enabled again.
    EndpointEnabled {
        /// Whose.
        endpoint: EndpointRef,
    },
    /// A delivery failed `FAILING_AFTER` attempts and goes on retrying.
    AttemptFailing(AttemptNews),
    /// A delivery failed for good.
    AttemptExhausted(AttemptNews),
    /// A delivery that had been reported failing got through.
    AttemptRecovered(AttemptNews),
}

/// An endpoint, by tenant and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRef {
    /// The tenant.
    pub tenant: TenantId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
}

/// A delivery's news.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptNews {
    /// The tenant.
    pub tenant: TenantId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event.
    pub event_id: EventId,
    /// The delivery (its job id).
    pub delivery_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last answer's status, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl OperationalEvent {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EndpointDisabled { .. } => "endpoint.disabled",
            Self::EndpointEnabled { .. } => "endpoint.enabled",
            Self::AttemptFailing(_) => "message.attempt.failing",
            Self::AttemptExhausted(_) => "message.attempt.exhausted",
            Self::AttemptRecovered(_) => "message.attempt.recovered",
        }
    }

    /// The body: `{"type", "timestamp", "data": {"tenant", "endpoint_id", ...}}`.
    pub fn envelope(&self, now: DateTime<Utc>) -> Map<String, Value> {
        let data = match self {
            Self::EndpointDisabled { endpoint, reason, consecutive_failures } => {
                let mut d = to_map(endpoint);
                d.insert("reason".to_owned(), json!(reason));
                d.insert("consecutive_failures".to_owned(), json!(consecutive_failures));
                d
            }
            Self::EndpointEnabled { endpoint } => to_map(endpoint),
            Self::AttemptFailing(n) | Self::AttemptExhausted(n) | Self::AttemptRecovered(n) => to_map(n),
        };
        let mut body = Map::new();
        body.insert("type".to_owned(), json!(self.kind()));
        body.insert("timestamp".to_owned(), json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        body.insert("data".to_owned(), Value::Object(data));
        body
    }
}

fn to_map(v: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Sends operational events, or drops them when no
/// `OPERATIONAL_WEBHOOK_URL` is set.
#[derive(Clone)]
pub struct Operator {
    store: JobStore,
    to: Option<OperationalWebhook>,
}

impl Operator {
    /// The operator's channel from `settings.flow.operational`.
    pub fn new(store: JobStore, to: Option<OperationalWebhook>) -> Self {
        Self { store, to }
    }

    /// The secrets operational jobs are signed with.
    pub fn secrets(&self) -> &[crate::delivery::SigningSecret] {
        self.to.as_ref().map(|t| t.secrets.as_slice()).unwrap_or_default()
    }

    /// Stores the event as a job due now. Returns whether one was stored.
    /// The job is `scheduled` for this very moment rather than queued, so
    /// any worker's scheduler picks it up without this process touching
    /// the queue.
    pub async fn notify(&self, event: OperationalEvent) -> Result<bool, StoreError> {
        let Some(to) = &self.to else { return Ok(false) };
        let now = Utc::now();
        let spec = JobSpec {
            v: JobSpec::VERSION,
            to_url: to.url.clone(),
            to_auth: None,
            group: None,
            tag: None,
            payload: event.envelope(now),
            max_retries: None,
            delivery: None,
            operational: true,
        };
        let shards = self.store.shards();
        let id = shards.mint(None, None, shards.pick());
        let due = now + chrono::Duration::milliseconds(1);
        self.store.create(&[NewRecord { id: &id, spec: &spec, due: Some(due), task: None }], None, now).await?;
        tracing::info!(kind = event.kind(), job_id = %id, "operational event queued");
        Ok(true)
    }

    /// [`Operator::notify`], logging instead of failing: an operational
    /// event must never fail what raised it. Returns whether one was stored.
    pub async fn tell(&self, event: OperationalEvent) -> bool {
        let kind = event.kind();
        self.notify(event).await.unwrap_or_else(|e| {
            tracing::warn!(kind, error.message = %e, "could not store an operational event");
            false
        })
    }
}
