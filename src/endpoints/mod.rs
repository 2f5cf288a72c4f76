//! Registered endpoints: a tenant's receivers, what each wants (event
//! types, a payload filter), how each is signed (secrets and rotation), and
//! the operations on them shared by the API, the monitor and the CLI.
//!
//! The records and the matching index live in `store::endpoints`; this
//! module decides what a valid endpoint is and what each change means.

mod input;
mod secrets;
mod service;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{EndpointId, EventType, PayloadFilter, TargetUrl, TenantId};

/// What flow control reports about an endpoint (kept by the store).
pub use crate::store::flows::{BreakerState, EndpointStats, FlowNow, Window};
pub use input::{EndpointInput, InputError, MAX_HEADERS, MAX_IN_FLIGHT, RESERVED_HEADERS};
pub use secrets::{EndpointSecret, PreviousSecret};
pub use service::{EndpointError, EndpointService, Recovered};

/// An endpoint as stored (one JSON document per endpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ep_<hex>`.
    pub id: EndpointId,
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// Where deliveries are POSTed.
    pub url: TargetUrl,
    /// The current signing secret.
    pub secret: EndpointSecret,
    /// Secrets replaced by a rotation that still sign until they expire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_secrets: Vec<PreviousSecret>,
    /// The event types it receives; empty: every type.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    /// Only events whose payload matches, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<PayloadFilter>,
    /// Extra request headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// Free JSON for the caller.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// A disabled endpoint matches no new event; deliveries already made
    /// for it are kept `held` until it is enabled again.
    #[serde(default)]
    pub disabled: bool,
    /// Deliveries per second at most, across every worker (flow control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Attempts out at once at most, across every worker (flow control).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Deliver one at a time, in the order the deliveries were made (flow
    /// control).
    #[serde(default)]
    pub ordered: bool,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// `max_in_flight` when not given: enough for a healthy receiver to keep
/// up, few enough that a dead one holds a sixth of a default worker's 64
/// slots at most.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

impl Endpoint {
    /// The secrets that sign a delivery made at `now`: the current one and
    /// every previous one still in its grace period.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &EndpointSecret> {
        std::iter::once(&self.secret)
            .chain(self.previous_secrets.iter().filter(move |p| p.expires_at > now).map(|p| &p.secret))
    }

    /// The matching index entries this endpoint belongs in: one per event
    /// type (or the wildcard), none while disabled; see `store::endpoints`.
    pub fn subscriptions(&self) -> Subscriptions {
        Subscriptions {
            filtered: self.filter.is_some(),
            types: if self.disabled {
                Some(Vec::new())
            } else if self.event_types.is_empty() {
                None
            } else {
                Some(self.event_types.clone())
            },
        }
    }
}

/// Which index entries an endpoint has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    /// Whether a filter must be checked for each event.
    pub filtered: bool,
    /// The event types; `None`: every type.
    pub types: Option<Vec<EventType>>,
}
