use serde_json::{Map, Value};

use super::{JobId, Label, LabelError, TargetUrl, TargetUrlError};

/// A webhook job as a caller asked for it, fully checked.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Where to POST.
    pub to_url: TargetUrl,
    /// Sent verbatim as the outbound `Authorization` header.
    pub to_auth: Option<String>,
    /// Optional group label.
    pub group: Option<Label>,
    /// Optional tag label.
    pub tag: Option<Label>,
    /// The JSON object POSTed to `to_url`.
    pub payload: Map<String, Value>,
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
    pub fn parse(body: Value) -> Result<Self, NewJobError> {
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

        match (to_url, payload) {
            (Some(to_url), Some(payload)) if errors.is_empty() => Ok(Self { to_url, to_auth, group, tag, payload }),
            _ => Err(NewJobError::Fields(errors)),
        }
    }

    /// Mints the id this job will keep for its whole life.
    pub fn mint_id(&self) -> JobId {
        JobId::mint(self.group.as_ref(), self.tag.as_ref())
    }
}

/// True when the fields other than `to_url` would parse, so that a bad URL
/// alone gets the original's 400 rather than a 422 list.
fn obj_fields_ok(obj: &Map<String, Value>) -> bool {
    let string_or_absent = |k: &str| matches!(obj.get(k), None | Some(Value::Null) | Some(Value::String(_)));
    let labels_ok = ["group", "tag"].iter().all(|k| match obj.get(*k) {
        Some(Value::String(s)) => Label::parse_optional(s).is_ok(),
        _ => string_or_absent(k),
    });
    string_or_absent("to_auth") && labels_ok && matches!(obj.get("payload"), Some(Value::Object(_)))
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

fn missing(field: &'static str) -> FieldError {
    FieldError { field, kind: "missing", message: "field required".to_owned() }
}

fn wrong_type(field: &'static str, expected: &str, got: &Value) -> FieldError {
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

    #[test]
    fn parses_the_original_example() {
        let job = NewJob::parse(json!({
            "to_url": "https://webhook.site/x", "to_auth": "", "tag": "Dhaka", "group": "Bangladesh",
            "payload": {"greetings": "Hello, world!"}, "unknown": 1
        }))
        .unwrap();
        assert_eq!(job.to_auth, None);
        assert_eq!(job.group.unwrap().as_str(), "Bangladesh");
    }

    #[test]
    fn bad_url_alone_is_the_original_400_case() {
        let err = NewJob::parse(json!({"to_url": "ftp://x", "payload": {}})).unwrap_err();
        assert_eq!(err, NewJobError::InvalidUrl(TargetUrlError::Scheme));
        assert_eq!(err.to_string(), "Parameter 'to_url' is not a valid URL.");
    }

    #[test]
    fn lists_every_bad_field() {
        let NewJobError::Fields(errors) = NewJob::parse(json!({"to_url": 5, "tag": "a b", "payload": []})).unwrap_err()
        else {
            panic!("expected field errors")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["to_url", "tag", "payload"]);
    }

    #[test]
    fn missing_fields_are_named() {
        let NewJobError::Fields(errors) = NewJob::parse(json!({})).unwrap_err() else { panic!() };
        assert_eq!(
            errors.iter().map(|e| (e.field, e.kind)).collect::<Vec<_>>(),
            [("to_url", "missing"), ("payload", "missing")]
        );
    }

    #[test]
    fn refuses_header_injection_in_to_auth() {
        assert!(NewJob::parse(json!({"to_url": "http://a/", "to_auth": "x\r\ny: z", "payload": {}})).is_err());
    }
}
