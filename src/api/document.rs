//! The OpenAPI document as served: poem-openapi's, plus the rules its derive
//! cannot state.
//!
//! The request types in `hooks` and `listing` carry every rule a validator
//! attribute can express. What is left is added here, in one place: the
//! limits this deployment runs with (`MAX_RETRIES_LIMIT`, `MAX_DELAY`,
//! `BATCH_MAX`), `format: uri` on `to_url` (poem-openapi takes formats from
//! the Rust type, and the field stays a `String` for its validators), and
//! that `deliver_at` and `delay_seconds` exclude each other.

use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{json, Value};

use crate::config::Settings;

/// What this deployment lets a request ask for.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeployedLimits {
    max_retries: u32,
    max_delay: Duration,
    batch_max: usize,
}

impl From<&Settings> for DeployedLimits {
    fn from(s: &Settings) -> Self {
        let intake = &s.api.intake;
        Self { max_retries: intake.max_retries_limit, max_delay: intake.max_delay, batch_max: intake.batch_max }
    }
}

/// JSON that keeps its keys in document order (serde_json's `Value` sorts
/// them, which would shuffle every property list in `/docs`).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Doc {
    Object(IndexMap<String, Doc>),
    Array(Vec<Doc>),
    Scalar(Value),
}

impl Doc {
    /// The object at `path`; a missing one is a renamed type or field,
    /// which the tests catch.
    fn at(&mut self, path: &[&str]) -> &mut IndexMap<String, Doc> {
        let mut node = self;
        for key in path {
            node = match node {
                Doc::Object(map) => map.get_mut(*key),
                _ => None,
            }
            .unwrap_or_else(|| panic!("the OpenAPI document has no {path:?}"));
        }
        match node {
            Doc::Object(map) => map,
            _ => panic!("{path:?} in the OpenAPI document is not an object"),
        }
    }
}

fn set(map: &mut IndexMap<String, Doc>, key: &str, value: Value) {
    map.insert(key.to_owned(), Doc::Scalar(value));
}

/// `spec` (poem-openapi's document) with this deployment's limits and the
/// rules above.
pub(super) fn served(spec: &str, limits: DeployedLimits) -> String {
    let mut doc: Doc = serde_json::from_str(spec).expect("poem-openapi writes JSON");
    let job = ["components", "schemas", "HookRequest"];
    let property = |name: &'static str| [&job[..], &["properties", name]].concat();

    set(doc.at(&property("to_url")), "format", json!("uri"));
    set(doc.at(&property("max_retries")), "maximum", json!(limits.max_retries));
    set(doc.at(&property("delay_seconds")), "maximum", json!(limits.max_delay.as_secs_f64()));
    // Both present is refused unless one of them is null.
    set(
        doc.at(&job),
        "not",
        json!({
            "required": ["deliver_at", "delay_seconds"],
            "properties": {"deliver_at": {"type": "string"}, "delay_seconds": {"type": "number"}},
        }),
    );
    set(doc.at(&["components", "schemas", "BatchRequest", "properties", "jobs"]), "maxItems", json!(limits.batch_max));

    // Events take the same schedule rules as jobs.
    let event = ["components", "schemas", "EventRequest"];
    set(
        doc.at(&[&event[..], &["properties", "delay_seconds"]].concat()),
        "maximum",
        json!(limits.max_delay.as_secs_f64()),
    );
    set(
        doc.at(&event),
        "not",
        json!({
            "required": ["deliver_at", "delay_seconds"],
            "properties": {"deliver_at": {"type": "string"}, "delay_seconds": {"type": "number"}},
        }),
    );
    // poem-openapi refuses unknown fields (`deny_unknown_fields`) without
    // saying so in the schema.
    for strict in ["EndpointRequest", "EndpointPatch", "RotateRequest", "RecoverRequest"] {
        set(doc.at(&["components", "schemas", strict]), "additionalProperties", json!(false));
    }
    // An endpoint's custom headers: the rules `endpoints::EndpointInput`
    // applies, which a map's schema cannot state by itself.
    for body in ["EndpointRequest", "EndpointPatch"] {
        let headers = doc.at(&["components", "schemas", body, "properties", "headers"]);
        set(headers, "maxProperties", json!(crate::endpoints::MAX_HEADERS));
        set(
            headers,
            "propertyNames",
            json!({"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "not": {"pattern": reserved_headers()}}),
        );
        set(
            headers,
            "additionalProperties",
            json!({"type": "string", "maxLength": 4096, "pattern": "^[\\x20-\\x7E]*$"}),
        );
    }

    serde_json::to_string_pretty(&doc).expect("a JSON tree serialises")
}

/// A pattern matching the headers an endpoint may not set, in any case.
fn reserved_headers() -> String {
    let names: Vec<String> = crate::endpoints::RESERVED_HEADERS
        .iter()
        .map(|name| {
            name.chars()
                .map(|c| match c.is_ascii_alphabetic() {
                    true => format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()),
                    false => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^({})$", names.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> String {
        super::super::api_service().spec()
    }

    #[test]
    fn a_round_trip_changes_nothing_but_the_order_is_kept() {
        let spec = spec();
        let doc: Doc = serde_json::from_str(&spec).unwrap();
        let again = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), serde_json::from_str::<Value>(&spec).unwrap());
        let mut doc = doc;
        let fields: Vec<&str> =
            doc.at(&["components", "schemas", "HookRequest", "properties"]).keys().map(String::as_str).collect();
        assert_eq!(fields[..2], ["to_url", "to_auth"], "declaration order, as poem-openapi wrote it");
    }

    #[test]
    fn adds_the_deployed_limits() {
        let limits = DeployedLimits { max_retries: 7, max_delay: Duration::from_secs(90), batch_max: 3 };
        let v: Value = serde_json::from_str(&served(&spec(), limits)).unwrap();
        let job = &v["components"]["schemas"]["HookRequest"];
        assert_eq!(job["properties"]["max_retries"]["maximum"], 7);
        assert_eq!(job["properties"]["delay_seconds"]["maximum"], 90.0);
        assert_eq!(job["properties"]["to_url"]["format"], "uri");
        assert_eq!(job["properties"]["to_url"]["type"], "string");
        assert_eq!(v["components"]["schemas"]["BatchRequest"]["properties"]["jobs"]["maxItems"], 3);
    }
}
