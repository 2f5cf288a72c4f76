//! Sources: providers (GitHub, Stripe, any Standard Webhooks sender, a
//! home-grown HMAC) that send their webhooks to us at `/ingest/{id}`. A
//! request is verified against the source's scheme, stored byte for byte
//! with its headers, and posted as an event of the source's tenant, so it
//! is fanned out to the tenant's endpoints with our retries, monitor and
//! recover.
//!
//! The records, counters and request log live in `store::sources`; this
//! module decides what a valid source is and what a request means.

mod counts;
mod input;
mod service;
mod verify;

use chrono::{DateTime, Utc};
use poem::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{EventType, SourceId, TenantId};

pub use counts::SourceCounts;
pub use input::{SourceInput, VerifyDoc};
pub use service::{IngestError, Ingested, SourceError, SourceService};
pub use verify::{Encoding, Previous, ProviderSecret, Refusal, Scheme, Signed, Verify, DEFAULT_TOLERANCE_SECONDS};

/// A source as stored (one JSON document per source).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// `src_<hex>`.
    pub id: SourceId,
    /// The tenant whose endpoints receive its events.
    pub tenant: TenantId,
    /// For people.
    pub name: String,
    /// How its requests are checked.
    pub verify: Verify,
    /// The event type when `event_type_from` finds none.
    pub default_event_type: EventType,
    /// Where a request's event type is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type_from: Option<EventTypeFrom>,
    /// Requests per second accepted at most; `None`: `SOURCE_RATE_LIMIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Where a request's event type is read: a header (GitHub's
/// `X-GitHub-Event`) or a string in the JSON body (Stripe's `/type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EventTypeFrom {
    /// A header's value (the name is kept lower case).
    Header(String),
    /// An RFC 6901 JSON pointer into the body.
    JsonPointer(String),
}

/// The event type when neither `event_type_from` nor `default_event_type`
/// gives one.
pub const FALLBACK_EVENT_TYPE: &str = "webhook";

impl Source {
    /// The path providers send to.
    pub fn ingest_path(&self) -> String {
        format!("/ingest/{}", self.id)
    }

    /// The event type of a request: from `event_type_from` when that finds
    /// a valid type, else `default_event_type`.
    pub fn event_type(&self, headers: &HeaderMap, body: Option<&Value>) -> EventType {
        let found = match &self.event_type_from {
            None => None,
            Some(EventTypeFrom::Header(name)) => {
                headers.get(name.as_str()).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned())
            }
            Some(EventTypeFrom::JsonPointer(pointer)) => {
                body.and_then(|b| b.pointer(pointer)).and_then(Value::as_str).map(str::to_owned)
            }
        };
        found.and_then(|t| EventType::parse(&t).ok()).unwrap_or_else(|| self.default_event_type.clone())
    }
}
