use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::{JobId, Label, LabelError, TargetUrl, TargetUrlError};

/// A webhook job as a caller asked for it, fully checked.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Where to POST.
    pub to_url: TargetUrl,
    /// Sent verbatim as the outbound `Authorization` header.
    pub to_auth: Option<SecretString>,
    /// Optional group label.
    pub group: Option<Label>,
    /// Optional tag label.
    pub tag: Option<Label>,
    /// The JSON object POSTed to `to_url`.
    pub payload: Map<String, Value>,
    /// Retries this job asks for instead of the server's default.
    pub max_retries: Option<u32>,
    /// Deliver no earlier than this (`deliver_at` or `delay_seconds`);
    /// `None` means now.
    pub deliver_at: Option<DateTime<Utc>>,
}

/// What a request may ask for, set by the operator.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most retries a job may ask for.
    pub max_retries: u32,
    /// How far ahead a delivery may be scheduled.
    pub max_delay: Duration,
}

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name in the request body.
    pub field: &'static str,
    /// A stable machine-readable kind: `missing`, `type`, `value`.
    pub kind: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// Why a request body is not a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewJobError {
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// `to_url` is a string but not a URL we can deliver to; the original
    /// answered this case with 400 and a fixed message, which we keep.
    #[error("Parameter 'to_url' is not a valid URL.")]
    InvalidUrl(TargetUrlError),
    /// One or more fields are missing or of the wrong type or value.
    #[error("request body has {} invalid field(s)", .0.len())]
    Fields(Vec<FieldError>),
}

impl NewJob {
    /// Upper bound on `to_auth`, so it cannot be used to smuggle a payload
    /// into headers.
    pub const MAX_AUTH_LEN: usize = 8 * 1024;

    /// Checks a parsed JSON body; unknown fields are ignored, as in the
    /// original.
    pub fn parse(body: Value, limits: &Limits, now: DateTime<Utc>) -> Result<Self, NewJobError> {
        let Value::Object(mut obj) = body else {
            return Err(NewJobError::NotAnObject);
        };
        let mut errors = Vec::new();

        let to_url = match obj.remove("to_url") {
            None | Some(Value::Null) => {
                errors.push(missing("to_url"));
                None
            }
            Some(Value::String(s)) => match TargetUrl::parse(&s) {
                Ok(url) => Some(url),
                Err(why) if errors.is_empty() && obj_fields_ok(&obj) => {
                    return Err(NewJobError::InvalidUrl(why));
                }
                Err(why) => {
                    errors.push(FieldError {
                        field: "to_url",
                        kind: "value",
                        message: format!("Parameter 'to_url' is not a valid URL: {why}"),
                    });
                    None
                }
            },
            Some(other) => {
                errors.push(wrong_type("to_url", "a string", &other));
                None
            }
        };

        let to_auth = match optional_string(&mut obj, "to_auth", &mut errors) {
            Some(s) if s.len() > Self::MAX_AUTH_LEN => {
                errors.push(FieldError {
                    field: "to_auth",
                    kind: "value",
                    message: format!("must be at most {} bytes", Self::MAX_AUTH_LEN),
                });
                None
            }
            Some(s) if s.chars().any(|c| c.is_control()) => {
                errors.push(FieldError {
                    field: "to_auth",
                    kind: "value",
                    message: "must not contain control characters (it becomes an HTTP header)".to_owned(),
                });
                None
            }
            other => other,
        };
        let group = label(&mut obj, "group", &mut errors);
        let tag = label(&mut obj, "tag", &mut errors);

        let payload = match obj.remove("payload") {
            None | Some(Value::Null) => {
                errors.push(missing("payload"));
                None
            }
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                errors.push(wrong_type("payload", "a JSON object", &other));
                None
            }
        };

        let max_retries = match obj.remove("max_retries") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= u64::from(limits.max_retries) => Some(v as u32),
                _ => {
                    errors.push(FieldError {
                        field: "max_retries",
                        kind: "value",
                        message: format!("must be a whole number from 0 to {} (MAX_RETRIES_LIMIT)", limits.max_retries),
                    });
                    None
                }
            },
            Some(other) => {
                errors.push(wrong_type("max_retries", "a whole number", &other));
                None
            }
        };
        let deliver_at = schedule(&mut obj, limits, now, &mut errors);

        match (to_url, payload) {
            (Some(to_url), Some(payload)) if errors.is_empty() => {
                let to_auth = to_auth.map(SecretString::from);
                Ok(Self { to_url, to_auth, group, tag, payload, max_retries, deliver_at })
            }
            _ => Err(NewJobError::Fields(errors)),
        }
    }

    /// Mints the id this job will keep for its whole life.
    pub fn mint_id(&self) -> JobId {
        JobId::mint(self.group.as_ref(), self.tag.as_ref())
    }
}

/// `deliver_at` (RFC 3339) or `delay_seconds`, not both; a time in the past
/// means now; no further ahead than `limits.max_delay`.
pub(super) fn schedule(
    obj: &mut Map<String, Value>,
    limits: &Limits,
    now: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let at = match (obj.remove("deliver_at"), obj.remove("delay_seconds")) {
        (None | Some(Value::Null), None | Some(Value::Null)) => return None,
        (Some(Value::String(s)), None | Some(Value::Null)) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                errors.push(FieldError {
                    field: "deliver_at",
                    kind: "value",
                    message: format!("not an RFC 3339 time: {e}"),
                });
                return None;
            }
        },
        (Some(other), None | Some(Value::Null)) => {
            errors.push(wrong_type("deliver_at", "an RFC 3339 string", &other));
            return None;
        }
        (None | Some(Value::Null), Some(Value::Number(n))) => match n.as_f64() {
            Some(secs) if (0.0..=limits.max_delay.as_secs_f64()).contains(&secs) => {
                now + chrono::Duration::milliseconds((secs * 1000.0) as i64)
            }
            _ => {
                errors.push(FieldError {
                    field: "delay_seconds",
                    kind: "value",
                    message: format!("must be from 0 to {} seconds (MAX_DELAY)", limits.max_delay.as_secs()),
                });
                return None;
            }
        },
        (None | Some(Value::Null), Some(other)) => {
            errors.push(wrong_type("delay_seconds", "a number of seconds", &other));
            return None;
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError {
                field: "deliver_at",
                kind: "value",
                message: "send deliver_at or delay_seconds, not both".to_owned(),
            });
            return None;
        }
    };
    if at <= now {
        return None;
    }
    if (at - now).to_std().unwrap_or_default() > limits.max_delay {
        errors.push(FieldError {
            field: "deliver_at",
            kind: "value",
            message: format!("is more than {} seconds ahead (MAX_DELAY)", limits.max_delay.as_secs()),
        });
        return None;
    }
    Some(at)
}

/// True when the fields other than `to_url` would parse, so that a bad URL
/// alone gets the original's 400 rather than a 422 list.
fn obj_fields_ok(obj: &Map<String, Value>) -> bool {
    let string_or_absent = |k: &str| matches!(obj.get(k), None | Some(Value::Null) | Some(Value::String(_)));
    let labels_ok = ["group", "tag"].iter().all(|k| match obj.get(*k) {
        Some(Value::String(s)) => Label::parse_optional(s).is_ok(),
        _ => string_or_absent(k),
    });
    let delay_ok = matches!(obj.get("delay_seconds"), None | Some(Value::Null) | Some(Value::Number(_)));
    let retries_ok = matches!(obj.get("max_retries"), None | Some(Value::Null) | Some(Value::Number(_)));
    string_or_absent("to_auth")
        && string_or_absent("deliver_at")
        && delay_ok
        && retries_ok
        && labels_ok
        && matches!(obj.get("payload"), Some(Value::Object(_)))
}

fn optional_string(obj: &mut Map<String, Value>, field: &'static str, errors: &mut Vec<FieldError>) -> Option<String> {
    match obj.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(wrong_type(field, "a string", &other));
            None
        }
    }
}

fn label(obj: &mut Map<String, Value>, field: &'static str, errors: &mut Vec<FieldError>) -> Option<Label> {
    let raw = optional_string(obj, field, errors)?;
    Label::parse_optional(&raw).unwrap_or_else(|why: LabelError| {
        errors.push(FieldError { field, kind: "value", message: why.to_string() });
        None
    })
}

pub(super) fn missing(field: &'static str) -> FieldError {
    FieldError { field, kind: "missing", message: "field required".to_owned() }
}

pub(super) fn wrong_type(field: &'static str, expected: &str, got: &Value) -> FieldError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    FieldError { field, kind: "type", message: format!("expected {expected}, got {got}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMITS: Limits = Limits { max_retries: 25, max_delay: Duration::from_secs(86_400) };

    impl NewJob {
        fn parse_now(body: Value) -> Result<Self, NewJobError> {
            Self::parse(body, &LIMITS, Utc::now())
        }
    }

    #[test]
    fn schedules_within_limits() {
        let now = Utc::now();
        let job =
            NewJob::parse(json!({"to_url": "http://a/", "payload": {}, "delay_seconds": 60}), &LIMITS, now).unwrap();
        assert_eq!(job.deliver_at, Some(now + chrono::Duration::seconds(60)));
        let past = NewJob::parse(
            json!({"to_url": "http://a/", "payload": {}, "deliver_at": "2001-01-01T00:00:00Z"}),
            &LIMITS,
            now,
        )
        .unwrap();
        assert_eq!(past.deliver_at, None, "a time in the past means now");
        for bad in [
            json!({"delay_seconds": 90_000}),
            json!({"delay_seconds": -1}),
            json!({"deliver_at": "tomorrow"}),
            json!({"deliver_at": "2001-01-01T00:00:00Z", "delay_seconds": 1}),
        ] {
            let mut body = json!({"to_url": "http://a/", "payload": {}});
            body.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
            assert!(NewJob::parse(body.clone(), &LIMITS, now).is_err(), "{body}");
        }
    }

    #[test]
    fn max_retries_is_capped() {
        assert_eq!(
            NewJob::parse_now(json!({"to_url": "http://a/", "payload": {}, "max_retries": 0})).unwrap().max_retries,
            Some(0)
        );
        assert!(NewJob::parse_now(json!({"to_url": "http://a/", "payload": {}, "max_retries": 26})).is_err());
        assert!(NewJob::parse_now(json!({"to_url": "http://a/", "payload": {}, "max_retries": "3"})).is_err());
    }

    #[test]
    fn parses_the_original_example() {
        let job = NewJob::parse_now(json!({
            "to_url": "https://webhook.site/x", "to_auth": "", "tag": "Dhaka", "group": "Bangladesh",
            "payload": {"greetings": "Hello, world!"}, "unknown": 1
        }))
        .unwrap();
        assert!(job.to_auth.is_none());
        assert_eq!(job.group.unwrap().as_str(), "Bangladesh");
    }

    #[test]
    fn bad_url_alone_is_the_original_400_case() {
        let err = NewJob::parse_now(json!({"to_url": "ftp://x", "payload": {}})).unwrap_err();
        assert_eq!(err, NewJobError::InvalidUrl(TargetUrlError::Scheme));
        assert_eq!(err.to_string(), "Parameter 'to_url' is not a valid URL.");
    }

    #[test]
    fn lists_every_bad_field() {
        let NewJobError::Fields(errors) =
            NewJob::parse_now(json!({"to_url": 5, "tag": "a b", "payload": []})).unwrap_err()
        else {
            panic!("expected field errors")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["to_url", "tag", "payload"]);
    }

    #[test]
    fn missing_fields_are_named() {
        let NewJobError::Fields(errors) = NewJob::parse_now(json!({})).unwrap_err() else { panic!() };
        assert_eq!(
            errors.iter().map(|e| (e.field, e.kind)).collect::<Vec<_>>(),
            [("to_url", "missing"), ("payload", "missing")]
        );
    }

    #[test]
    fn refuses_header_injection_in_to_auth() {
        assert!(NewJob::parse_now(json!({"to_url": "http://a/", "to_auth": "x\r\ny: z", "payload": {}})).is_err());
    }
}
