//! What a delivery of an event sends: the Standard Webhooks envelope,
//! signed with the endpoint's secrets, to the endpoint's URL, as the event
//! and the endpoint are at the moment of the attempt.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::{
    delivery::{Outbound, Signing},
    endpoints::Endpoint,
    store::DeliveryRead,
};

/// Why a delivery has nothing to send any more; it fails for good (a
/// `recover` after the cause is fixed sends it again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undeliverable {
    /// The endpoint was deleted.
    #[error("endpoint deleted")]
    EndpointDeleted,
    /// The endpoint is disabled.
    #[error("endpoint disabled")]
    EndpointDisabled,
    /// The event is gone (retention).
    #[error("event expired")]
    EventExpired,
    /// The stored endpoint did not parse.
    #[error("endpoint record unreadable: {0}")]
    Corrupt(String),
}

/// The request for one attempt of a delivery: body
/// `{"type", "timestamp", "data"}`, `webhook-id` = the event id.
pub fn request(event_id: &str, read: &DeliveryRead, now: DateTime<Utc>) -> Result<Outbound, Undeliverable> {
    let json = read.endpoint.as_deref().ok_or(Undeliverable::EndpointDeleted)?;
    let endpoint: Endpoint = serde_json::from_str(json).map_err(|e| Undeliverable::Corrupt(e.to_string()))?;
    if endpoint.disabled {
        return Err(Undeliverable::EndpointDisabled);
    }
    let payload = read.payload.as_deref().ok_or(Undeliverable::EventExpired)?;
    // The payload is stored as JSON and goes out as it is, not parsed again.
    let body = format!(
        r#"{{"type":{},"timestamp":"{}","data":{payload}}}"#,
        serde_json::Value::String(read.event_type.clone()),
        read.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    Ok(Outbound {
        url: endpoint.url.clone(),
        body: body.into_bytes(),
        message_id: event_id.to_owned(),
        signing: Signing::With(endpoint.signing_secrets(now).map(|s| s.signing()).collect()),
        auth: None,
        headers: endpoint.headers.into_iter().collect(),
    })
}
