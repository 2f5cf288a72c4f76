//! A source's fields as a caller sent them, checked field by field so that
//! every mistake is named; and `verify`'s document form, shared by the API
//! and the stored record.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{EventType, SourceId, TenantId};

use super::{
    verify::{Encoding, Previous, ProviderSecret, Scheme, Signed, Verify, DEFAULT_TOLERANCE_SECONDS},
    EventTypeFrom, Source, FALLBACK_EVENT_TYPE,
};

/// `verify` as written in JSON: the scheme's name and its settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyDoc {
    /// `github`, `stripe`, `standard-webhooks`, `hmac-sha256` or `none`.
    pub scheme: String,
    /// The provider's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secret being rotated out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// When `previous_secret` stops being accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Stripe and Standard Webhooks: the accepted clock difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_seconds: Option<u32>,
    /// `hmac-sha256`: the signature's header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac-sha256`: `hex` or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `hmac-sha256`: text before the MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `hmac-sha256`: a header with the provider's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_header: Option<String>,
}

/// The longest `tolerance_seconds`: a day.
const MAX_TOLERANCE: u32 = 86_400;
/// How long a `previous_secret` without `previous_secret_expires_at` stays
/// valid.
const DEFAULT_ROTATION_GRACE: Duration = Duration::hours(24);
/// Highest per-source rate limit (requests per second).
pub const MAX_RATE_LIMIT: u32 = 100_000;
/// Longest name.
const MAX_NAME: usize = 128;

fn header_name(raw: &str) -> Result<String, String> {
    poem::http::HeaderName::from_bytes(raw.as_bytes())
        .map(|h| h.as_str().to_owned())
        .map_err(|_| "must be an HTTP header name".to_owned())
}

impl From<Verify> for VerifyDoc {
    fn from(v: Verify) -> Self {
        match v {
            Verify::None => Self { scheme: "none".to_owned(), ..Self::default() },
            Verify::Signed(s) => {
                let mut doc = Self {
                    scheme: s.scheme.name().to_owned(),
                    secret: Some(s.secret.expose().to_owned()),
                    previous_secret: s.previous.as_ref().map(|p| p.secret.expose().to_owned()),
                    previous_secret_expires_at: s.previous.as_ref().map(|p| p.expires_at),
                    ..Self::default()
                };
                match s.scheme {
                    Scheme::Stripe | Scheme::StandardWebhooks => doc.tolerance_seconds = Some(s.tolerance_seconds),
                    Scheme::HmacSha256 { header, encoding, prefix, id_header } => {
                        doc.header = Some(header);
                        doc.encoding = Some(encoding);
                        doc.prefix = Some(prefix);
                        doc.id_header = id_header;
                    }
                    Scheme::Github => {}
                }
                doc
            }
        }
    }
}

impl TryFrom<VerifyDoc> for Verify {
    type Error = String;
    /// Every problem, each naming its field, joined by `; `.
    fn try_from(doc: VerifyDoc) -> Result<Self, String> {
        let mut errors = Vec::new();
        let hmac_only = [
            ("header", doc.header.is_some()),
            ("encoding", doc.encoding.is_some()),
            ("prefix", doc.prefix.is_some()),
            ("id_header", doc.id_header.is_some()),
        ];
        let scheme = match doc.scheme.as_str() {
            "none" => None,
            "github" => Some(Scheme::Github),
            "stripe" => Some(Scheme::Stripe),
            "standard-webhooks" => Some(Scheme::StandardWebhooks),
            "hmac-sha256" => {
                let header = match doc.header.as_deref().map(header_name) {
                    None => {
                        errors.push("verify.header: required for hmac-sha256".to_owned());
                        None
                    }
                    Some(Err(e)) => {
                        errors.push(format!("verify.header: {e}"));
                        None
                    }
                    Some(Ok(h)) => Some(h),
                };
                let id_header = match doc.id_header.as_deref().map(header_name).transpose() {
                    Ok(h) => h,
                    Err(e) => {
                        errors.push(format!("verify.id_header: {e}"));
                        None
                    }
                };
                let prefix = doc.prefix.clone().unwrap_or_default();
                if prefix.len() > 64 || !prefix.chars().all(|c| c.is_ascii_graphic()) {
                    errors.push("verify.prefix: at most 64 visible ASCII characters".to_owned());
                }
                header.map(|header| Scheme::HmacSha256 {
                    header,
                    encoding: doc.encoding.unwrap_or_default(),
                    prefix,
                    id_header,
                })
            }
            other => {
                errors.push(format!(
                    "verify.scheme: {other:?} is not one of github, stripe, standard-webhooks, hmac-sha256, none"
                ));
                None
            }
        };
        if doc.scheme != "hmac-sha256" {
            for (field, set) in hmac_only {
                if set {
                    errors.push(format!("verify.{field}: only for the hmac-sha256 scheme"));
                }
            }
        }
        let tolerance_seconds = doc.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS);
        if !(1..=MAX_TOLERANCE).contains(&tolerance_seconds) {
            errors.push(format!("verify.tolerance_seconds: from 1 to {MAX_TOLERANCE}"));
        }
        if doc.scheme == "none" {
            for (field, set) in [("secret", doc.secret.is_some()), ("previous_secret", doc.previous_secret.is_some())] {
                if set {
                    errors.push(format!("verify.{field}: the none scheme checks nothing and takes no secret"));
                }
            }
            return if errors.is_empty() { Ok(Verify::None) } else { Err(errors.join("; ")) };
        }
        let Some(scheme) = scheme else { return Err(errors.join("; ")) };
        let secret = match doc.secret.as_deref().map(|s| ProviderSecret::parse(s, &scheme)) {
            None => {
                errors.push(format!("verify.secret: required for {}", scheme.name()));
                None
            }
            Some(Err(e)) => {
                errors.push(format!("verify.secret: {e}"));
                None
            }
            Some(Ok(s)) => Some(s),
        };
        let previous = match (doc.previous_secret.as_deref(), doc.previous_secret_expires_at) {
            (None, None) => None,
            (None, Some(_)) => {
                errors.push("verify.previous_secret_expires_at: only with previous_secret".to_owned());
                None
            }
            (Some(_), None) => {
                errors.push("verify.previous_secret_expires_at: required with previous_secret".to_owned());
                None
            }
            (Some(raw), Some(expires_at)) => match ProviderSecret::parse(raw, &scheme) {
                Ok(secret) => Some(Previous { secret, expires_at }),
                Err(e) => {
                    errors.push(format!("verify.previous_secret: {e}"));
                    None
                }
            },
        };
        match secret {
            Some(secret) if errors.is_empty() => {
                Ok(Verify::Signed(Signed { scheme, secret, previous, tolerance_seconds }))
            }
            _ => Err(errors.join("; ")),
        }
    }
}

/// Fields a caller set; `None` leaves a field as it is (on a change) or at
/// its default (on creation). For clearable fields the inner `None` clears.
#[derive(Debug, Clone, Default)]
pub struct SourceInput {
    /// Name.
    pub name: Option<String>,
    /// Verification.
    pub verify: Option<Verify>,
    /// Default event type.
    pub default_event_type: Option<EventType>,
    /// Where the event type is read.
    pub event_type_from: Option<Option<EventTypeFrom>>,
    /// Requests per second at most.
    pub rate_limit: Option<Option<u32>>,
}

/// Why a body is not a valid source (each field's problem, `; `-joined).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InputError(pub Vec<String>);

/// Fields that come back in a source's JSON but cannot be set; a body that
/// round-trips a GET answer may carry them, and they are ignored.
const READ_ONLY: [&str; 5] = ["id", "tenant", "ingest_url", "created_at", "updated_at"];

impl SourceInput {
    /// Parses a creation body (`name` and `verify` required) or a change
    /// (every field optional; `verify` replaces the whole verification).
    /// `now` dates a `previous_secret` given without its expiry.
    pub fn parse(body: Value, creating: bool, now: DateTime<Utc>) -> Result<Self, InputError> {
        let Value::Object(obj) = body else {
            return Err(InputError(vec!["the body must be a JSON object".to_owned()]));
        };
        let mut errors = Vec::new();
        let mut input = Self::default();
        for (field, value) in obj {
            let mut bad = |why: String| errors.push(format!("{field}: {why}"));
            match field.as_str() {
                "name" => match value {
                    Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_NAME => input.name = Some(s),
                    _ => bad(format!("must be a string of 1 to {MAX_NAME} characters")),
                },
                "verify" => match serde_json::from_value::<VerifyDoc>(value) {
                    Ok(mut doc) => {
                        if doc.previous_secret.is_some() && doc.previous_secret_expires_at.is_none() {
                            doc.previous_secret_expires_at = Some(now + DEFAULT_ROTATION_GRACE);
                        }
                        match Verify::try_from(doc) {
                            Ok(v) => input.verify = Some(v),
                            Err(e) => errors.push(e),
                        }
                    }
                    Err(e) => bad(format!("{e}")),
                },
                "default_event_type" => match value.as_str().map(EventType::parse) {
                    Some(Ok(t)) => input.default_event_type = Some(t),
                    Some(Err(e)) => bad(e.to_string()),
                    None => bad("must be a string".to_owned()),
                },
                "event_type_from" => match value {
                    Value::Null => input.event_type_from = Some(None),
                    v => match serde_json::from_value::<EventTypeFrom>(v) {
                        Ok(EventTypeFrom::Header(h)) => match header_name(&h) {
                            Ok(h) => input.event_type_from = Some(Some(EventTypeFrom::Header(h))),
                            Err(e) => bad(format!("header: {e}")),
                        },
                        Ok(EventTypeFrom::JsonPointer(p)) if p.is_empty() || p.starts_with('/') => {
                            input.event_type_from = Some(Some(EventTypeFrom::JsonPointer(p)))
                        }
                        Ok(EventTypeFrom::JsonPointer(_)) => {
                            bad("json_pointer: must be empty or start with '/' (RFC 6901)".to_owned())
                        }
                        Err(_) => bad(r#"must be {"header": "<name>"} or {"json_pointer": "/path"}"#.to_owned()),
                    },
                },
                "rate_limit" => match value {
                    Value::Null => input.rate_limit = Some(None),
                    v => match v.as_u64() {
                        Some(n) if (1..=u64::from(MAX_RATE_LIMIT)).contains(&n) => {
                            input.rate_limit = Some(Some(n as u32))
                        }
                        _ => bad(format!("must be an integer from 1 to {MAX_RATE_LIMIT}, or null")),
                    },
                },
                f if READ_ONLY.contains(&f) => {}
                _ => bad("unknown field".to_owned()),
            }
        }
        if creating {
            if input.name.is_none() && !errors.iter().any(|e| e.starts_with("name:")) {
                errors.push("name: required".to_owned());
            }
            if input.verify.is_none() && !errors.iter().any(|e| e.starts_with("verify")) {
                errors.push(
                    "verify: required; {\"scheme\": \"none\"} accepts unsigned requests and must be chosen explicitly"
                        .to_owned(),
                );
            }
        }
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(InputError(errors))
        }
    }

    /// A new source of `tenant` from a checked creation body.
    pub fn create(self, id: SourceId, tenant: TenantId, now: DateTime<Utc>) -> Source {
        Source {
            id,
            tenant,
            name: self.name.unwrap_or_default(),
            verify: self.verify.unwrap_or(Verify::None),
            default_event_type: self
                .default_event_type
                .unwrap_or_else(|| EventType::parse(FALLBACK_EVENT_TYPE).expect("a valid type")),
            event_type_from: self.event_type_from.flatten(),
            rate_limit: self.rate_limit.flatten(),
            created_at: now,
            updated_at: now,
        }
    }

    /// `source` with these changes.
    pub fn apply(self, mut source: Source, now: DateTime<Utc>) -> Source {
        if let Some(name) = self.name {
            source.name = name;
        }
        if let Some(verify) = self.verify {
            source.verify = verify;
        }
        if let Some(t) = self.default_event_type {
            source.default_event_type = t;
        }
        if let Some(from) = self.event_type_from {
            source.event_type_from = from;
        }
        if let Some(rate) = self.rate_limit {
            source.rate_limit = rate;
        }
        source.updated_at = now;
        source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_bad_field_is_named() {
        let e = SourceInput::parse(
            json!({"name": "", "verify": {"scheme": "github"}, "event_type_from": {"json_pointer": "type"}, "x": 1}),
            true,
            Utc::now(),
        )
        .unwrap_err()
        .to_string();
        for part in ["name:", "verify.secret: required", "event_type_from: json_pointer", "x: unknown field"] {
            assert!(e.contains(part), "{part} missing from {e}");
        }
        let e = SourceInput::parse(json!({"name": "n"}), true, Utc::now()).unwrap_err().to_string();
        assert!(e.contains("verify: required"), "{e}");
        let e = SourceInput::parse(json!({"name": "n", "verify": {"scheme": "none", "secret": "s"}}), true, Utc::now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no secret"), "{e}");
        let e = SourceInput::parse(
            json!({"verify": {"scheme": "standard-webhooks", "secret": "plain"}}),
            false,
            Utc::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("whsec_"), "{e}");
    }

    #[test]
    fn verify_round_trips_through_its_document() {
        let now = Utc::now();
        let input = SourceInput::parse(
            json!({"name": "gh", "verify": {"scheme": "hmac-sha256", "secret": "s", "header": "X-Sig", "encoding": "base64",
                   "previous_secret": "old"}, "event_type_from": {"header": "X-Event"}}),
            true,
            now,
        )
        .unwrap();
        let v = input.verify.clone().unwrap();
        let doc = VerifyDoc::from(v.clone());
        assert_eq!(doc.header.as_deref(), Some("x-sig"));
        assert_eq!(doc.previous_secret_expires_at, Some(now + DEFAULT_ROTATION_GRACE));
        assert_eq!(Verify::try_from(doc).unwrap(), v);
        assert_eq!(input.event_type_from, Some(Some(EventTypeFrom::Header("x-event".to_owned()))));
    }
}
