use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    new_job::{missing, schedule, wrong_type},
    EventId, EventType, FieldError, Limits,
};

/// An event as a caller posted it, fully checked.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened, e.g. `order.created`; endpoints subscribe by it.
    pub event_type: EventType,
    /// The event's data: any JSON value (the envelope's `data`).
    pub payload: Value,
    /// The caller's id for the event (its idempotency key), if it gave one.
    pub event_id: Option<EventId>,
    /// Deliver no earlier than this; `None` means now.
    pub deliver_at: Option<DateTime<Utc>>,
}

impl NewEvent {
    /// Checks a parsed JSON body; unknown fields are ignored. Every bad
    /// field is reported.
    pub fn parse(body: Value, limits: &Limits, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let Value::Object(mut obj) = body else {
            return Err(vec![FieldError {
                field: "body",
                kind: "type",
                message: "request body must be a JSON object".to_owned(),
            }]);
        };
        let mut errors = Vec::new();
        let event_type = match obj.remove("event_type") {
            None | Some(Value::Null) => {
                errors.push(missing("event_type"));
                None
            }
            Some(Value::String(s)) => EventType::parse(&s)
                .map_err(|e| errors.push(FieldError { field: "event_type", kind: "value", message: e.to_string() }))
                .ok(),
            Some(other) => {
                errors.push(wrong_type("event_type", "a string", &other));
                None
            }
        };
        // `null` is a payload like any other; only a missing one is refused.
        let payload = match obj.remove("payload") {
            None => {
                errors.push(missing("payload"));
                None
            }
            Some(v) => Some(v),
        };
        let event_id = match obj.remove("event_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => EventId::parse(&s)
                .map_err(|e| errors.push(FieldError { field: "event_id", kind: "value", message: e.to_string() }))
                .ok(),
            Some(other) => {
                errors.push(wrong_type("event_id", "a string", &other));
                None
            }
        };
        let deliver_at = schedule(&mut obj, limits, now, &mut errors);
        match (event_type, payload) {
            (Some(event_type), Some(payload)) if errors.is_empty() => {
                Ok(Self { event_type, payload, event_id, deliver_at })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    const LIMITS: Limits = Limits { max_retries: 10, max_delay: Duration::from_secs(3600) };

    #[test]
    fn reads_an_event_and_names_every_bad_field() {
        let now = Utc::now();
        let e = NewEvent::parse(
            json!({"event_type": "order.created", "payload": {"id": 1}, "event_id": "o-1", "delay_seconds": 5}),
            &LIMITS,
            now,
        )
        .unwrap();
        assert_eq!(e.event_type.as_str(), "order.created");
        assert_eq!(e.event_id.unwrap().as_str(), "o-1");
        assert_eq!(e.deliver_at, Some(now + chrono::Duration::seconds(5)));
        let errs = NewEvent::parse(json!({"event_type": "a b", "event_id": 3}), &LIMITS, now).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["event_type", "payload", "event_id"]);
    }
}
