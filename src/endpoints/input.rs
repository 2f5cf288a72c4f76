//! An endpoint's fields as a caller sent them (to create one, or to change
//! one), checked field by field so that every mistake is named.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::{EndpointId, EventType, PayloadFilter, TargetUrl, TenantId};

use super::{Endpoint, EndpointSecret};

/// Fields a caller set; `None` leaves a field as it is (on a change) or at
/// its default (on creation). For clearable fields the inner `None` clears.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    /// New URL.
    pub url: Option<TargetUrl>,
    /// A secret of the caller's choosing (creation only).
    pub secret: Option<EndpointSecret>,
    /// Event types; empty: every type.
    pub event_types: Option<Vec<EventType>>,
    /// Payload filter.
    pub filter: Option<Option<PayloadFilter>>,
    /// Extra headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Description.
    pub description: Option<String>,
    /// Metadata.
    pub metadata: Option<Map<String, Value>>,
    /// Disabled or not.
    pub disabled: Option<bool>,
    /// Deliveries per second at most.
    pub rate_limit: Option<Option<u32>>,
    /// Ordered delivery.
    pub ordered: Option<bool>,
    /// Attempts in flight at most.
    pub max_in_flight: Option<u32>,
}

/// Why a body is not a valid endpoint (the message names the field, and for
/// a filter the path of the bad operator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InputError(pub Vec<String>);

/// Headers a caller may not set: ours (signatures, ids, the body's type and
/// length) and those that belong to the connection.
pub const RESERVED_HEADERS: [&str; 10] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "x-hook-slinger-job-id",
    "transfer-encoding",
    "connection",
    "user-agent",
];

/// Most custom headers per endpoint.
pub const MAX_HEADERS: usize = 32;
/// Longest description.
const MAX_DESCRIPTION: usize = 1024;
/// Largest metadata, as JSON.
const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Most event types per endpoint.
const MAX_TYPES: usize = 256;
/// Highest rate limit (deliveries per second).
pub const MAX_RATE_LIMIT: u32 = 100_000;
/// Highest `max_in_flight`.
pub const MAX_IN_FLIGHT: u32 = 1_000;

/// Fields that come back in an endpoint's JSON but cannot be set; a body
/// that round-trips a GET answer may carry them, and they are ignored.
const READ_ONLY: [&str; 6] = ["id", "tenant", "created_at", "updated_at", "previous_secrets", "breaker"];

impl EndpointInput {
    /// Parses a creation body (`url` required) or a change (`creating` false:
    /// every field optional, `secret` refused: rotate it instead).
    pub fn parse(body: Value, creating: bool) -> Result<Self, InputError> {
        let Value::Object(obj) = body else {
            return Err(InputError(vec!["the body must be a JSON object".to_owned()]));
        };
        let mut errors = Vec::new();
        let mut input = Self::default();
        for (field, value) in obj {
            let mut bad = |why: String| errors.push(format!("{field}: {why}"));
            match field.as_str() {
                "url" => match value {
                    Value::String(s) => match TargetUrl::parse(&s) {
                        Ok(u) => input.url = Some(u),
                        Err(e) => bad(format!("not a valid URL: {e}")),
                    },
                    _ => bad("must be a string".to_owned()),
                },
                "secret" if !creating => bad("cannot be changed here; POST .../secret/rotate".to_owned()),
                "secret" => match value {
                    Value::Null => {}
                    Value::String(s) => match EndpointSecret::parse(&s) {
                        Ok(s) => input.secret = Some(s),
                        Err(e) => bad(e.to_string()),
                    },
                    _ => bad("must be a string".to_owned()),
                },
                "event_types" => match value {
                    Value::Null => input.event_types = Some(Vec::new()),
                    Value::Array(items) if items.len() <= MAX_TYPES => {
                        let mut types = Vec::new();
                        for (i, item) in items.iter().enumerate() {
                            match item.as_str().map(EventType::parse) {
                                Some(Ok(t)) if !types.contains(&t) => types.push(t),
                                Some(Ok(_)) => {}
                                Some(Err(e)) => bad(format!("item {i}: {e}")),
                                None => bad(format!("item {i}: must be a string")),
                            }
                        }
                        input.event_types = Some(types);
                    }
                    _ => bad(format!("must be an array of at most {MAX_TYPES} event types")),
                },
                "filter" => match value {
                    Value::Null => input.filter = Some(None),
                    Value::Object(m) if m.is_empty() => input.filter = Some(None),
                    v => match PayloadFilter::parse(v) {
                        Ok(f) => input.filter = Some(Some(f)),
                        Err(e) => errors.push(e.to_string()),
                    },
                },
                "headers" => match value {
                    Value::Null => input.headers = Some(BTreeMap::new()),
                    Value::Object(m) => match headers(m) {
                        Ok(h) => input.headers = Some(h),
                        Err(why) => bad(why),
                    },
                    _ => bad("must be an object of header names to string values".to_owned()),
                },
                "description" => match value {
                    Value::Null => input.description = Some(String::new()),
                    Value::String(s) if s.len() <= MAX_DESCRIPTION => input.description = Some(s),
                    _ => bad(format!("must be a string of at most {MAX_DESCRIPTION} bytes")),
                },
                "metadata" => match value {
                    Value::Null => input.metadata = Some(Map::new()),
                    Value::Object(m) if Value::Object(m.clone()).to_string().len() <= MAX_METADATA_BYTES => {
                        input.metadata = Some(m)
                    }
                    _ => bad(format!("must be a JSON object of at most {MAX_METADATA_BYTES} bytes")),
                },
                "disabled" => match value {
                    Value::Bool(b) => input.disabled = Some(b),
                    _ => bad("must be true or false".to_owned()),
                },
                "ordered" => match value {
                    Value::Bool(b) => input.ordered = Some(b),
                    _ => bad("must be true or false".to_owned()),
                },
                "rate_limit" => match value {
                    Value::Null => input.rate_limit = Some(None),
                    Value::Number(n) => match n.as_u64() {
                        Some(r) if (1..=u64::from(MAX_RATE_LIMIT)).contains(&r) => {
                            input.rate_limit = Some(Some(r as u32))
                        }
                        _ => bad(format!("must be a whole number of deliveries per second from 1 to {MAX_RATE_LIMIT}")),
                    },
                    _ => bad("must be a whole number or null".to_owned()),
                },
                "max_in_flight" => match value.as_u64() {
                    Some(n) if (1..=u64::from(MAX_IN_FLIGHT)).contains(&n) => input.max_in_flight = Some(n as u32),
                    _ => bad(format!("must be a whole number from 1 to {MAX_IN_FLIGHT}")),
                },
                f if READ_ONLY.contains(&f) => {}
                _ => bad("unknown field".to_owned()),
            }
        }
        if creating && input.url.is_none() && !errors.iter().any(|e| e.starts_with("url:")) {
            errors.push("url: is required".to_owned());
        }
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(InputError(errors))
        }
    }

    /// A new endpoint from a creation body.
    pub fn create(self, tenant: TenantId, now: DateTime<Utc>) -> Endpoint {
        let mut ep = Endpoint {
            id: EndpointId::mint(),
            tenant,
            url: self.url.clone().expect("parse requires url on creation"),
            secret: self.secret.clone().unwrap_or_else(EndpointSecret::generate),
            previous_secrets: Vec::new(),
            event_types: Vec::new(),
            filter: None,
            headers: BTreeMap::new(),
            description: String::new(),
            metadata: Map::new(),
            disabled: false,
            rate_limit: None,
            max_in_flight: super::DEFAULT_MAX_IN_FLIGHT,
            ordered: false,
            created_at: now,
            updated_at: now,
        };
        self.apply(&mut ep, now);
        ep
    }

    /// Applies a change.
    pub fn apply(self, ep: &mut Endpoint, now: DateTime<Utc>) {
        if let Some(v) = self.url {
            ep.url = v;
        }
        if let Some(v) = self.event_types {
            ep.event_types = v;
        }
        if let Some(v) = self.filter {
            ep.filter = v;
        }
        if let Some(v) = self.headers {
            ep.headers = v;
        }
        if let Some(v) = self.description {
            ep.description = v;
        }
        if let Some(v) = self.metadata {
            ep.metadata = v;
        }
        if let Some(v) = self.disabled {
            ep.disabled = v;
        }
        if let Some(v) = self.rate_limit {
            ep.rate_limit = v;
        }
        if let Some(v) = self.max_in_flight {
            ep.max_in_flight = v;
        }
        if let Some(v) = self.ordered {
            ep.ordered = v;
        }
        ep.updated_at = now;
    }
}

fn headers(m: Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    if m.len() > MAX_HEADERS {
        return Err(format!("at most {MAX_HEADERS} headers"));
    }
    let mut out = BTreeMap::new();
    for (name, value) in m {
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{name:?} is not a valid header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(format!("{name} is set by Hook Slinger and cannot be overridden"));
        }
        let Value::String(v) = value else {
            return Err(format!("{name}: the value must be a string"));
        };
        // Visible ASCII and spaces only: `HeaderValue` would also take
        // obs-text bytes, which receivers read differently.
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) || v.len() > 4096 {
            return Err(format!("{name}: not a valid header value (visible ASCII, at most 4096 bytes)"));
        }
        out.insert(name, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn creation_needs_a_url_and_names_each_bad_field() {
        let e =
            EndpointInput::parse(json!({"rate_limit": 0, "headers": {"Webhook-Signature": "x"}}), true).unwrap_err();
        let all = e.to_string();
        assert!(all.contains("rate_limit:") && all.contains("headers:") && all.contains("url: is required"), "{all}");
        let e = EndpointInput::parse(json!({"url": "http://a/", "filter": {"a": {"$gtx": 1}}}), true).unwrap_err();
        assert!(e.to_string().contains("a.$gtx"), "{e}");
        assert!(EndpointInput::parse(json!({"url": "http://a/", "colour": 1}), true).is_err());
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let input = EndpointInput::parse(json!({"url": "http://a/", "event_types": ["a.b"], "description": "x"}), true);
        let mut ep = input.unwrap().create(TenantId::parse("t").unwrap(), Utc::now());
        EndpointInput::parse(json!({"disabled": true, "filter": null}), false).unwrap().apply(&mut ep, Utc::now());
        assert!(ep.disabled);
        assert_eq!(ep.description, "x");
        assert_eq!(ep.event_types.len(), 1);
        assert!(EndpointInput::parse(json!({"secret": "whsec_x"}), false).is_err());
    }
}
