//! The error answers of the tenant API (endpoints, events): one enum, so
//! each handler returns `Result<_, Problem>` and every service error is
//! mapped here, once.

use poem_openapi::{payload::Json, ApiResponse};

use crate::{endpoints::EndpointError, events::EventError, sources::SourceError, store::StoreError};

use super::errors::ErrorBody;

/// A request the tenant API refused or could not serve. 401 and 403 come
/// from the token check, 413 from the body reader.
// 401, 403 and 413 come from extractors; listed for the OpenAPI document.
#[allow(dead_code)]
#[derive(ApiResponse, Debug)]
pub(super) enum Problem {
    /// The request is not valid; `detail` names each bad field (for a
    /// filter, the path of the bad operator).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or malformed token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Wrong token.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such tenant, endpoint or event (an id of another tenant is not
    /// found either).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The `Idempotency-Key` was used before with a different body, or the
    /// endpoint kept changing under the request.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Body larger than `MAX_PAYLOAD_BYTES`.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// A stored record could not be read (logged).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Redis is unavailable or did not answer within `REDIS_TIMEOUT`; for
    /// a write, it may or may not have happened: retrying is safe (an
    /// event with the same `event_id` is stored once).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl Problem {
    pub(super) fn bad(detail: impl Into<String>) -> Self {
        Self::BadRequest(Json(ErrorBody::new(detail)))
    }

    pub(super) fn not_found(what: &str) -> Self {
        Self::NotFound(Json(ErrorBody::new(format!("No such {what}."))))
    }

    fn store(e: &StoreError, timed_out: bool) -> Self {
        tracing::error!(error.message = %e, error.cause_chain = ?e, "store operation failed");
        match e {
            StoreError::Corrupt { .. } => Self::Internal(Json(ErrorBody::new("A stored record could not be read."))),
            StoreError::NotReplicated { .. } => Self::Unavailable(Json(ErrorBody::new(
                "Stored, but fewer replicas than REDIS_WAIT_REPLICAS confirmed it in time, so a Redis failover could \
                 still lose it; it will be delivered unless that happens. Retry with the same event_id (or \
                 Idempotency-Key) to get it delivered exactly once.",
            ))),
            _ if timed_out => Self::unavailable("Redis did not answer in time (REDIS_TIMEOUT)"),
            _ => Self::unavailable("Redis is unavailable"),
        }
    }

    fn unavailable(why: &str) -> Self {
        Self::Unavailable(Json(ErrorBody::new(format!(
            "{why}; a write may or may not have happened. Retry: the same request (with the same event_id or \
             Idempotency-Key) is applied once."
        ))))
    }
}

impl From<EndpointError> for Problem {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::Invalid(_) | EndpointError::Refused(_) => Self::bad(e.to_string()),
            EndpointError::NotFound => Self::not_found("endpoint"),
            EndpointError::Busy => Self::Conflict(Json(ErrorBody::new(e.to_string()))),
            EndpointError::Store(s) => Self::store(&s, false),
            EndpointError::Timeout(_) => {
                tracing::error!("endpoint operation timed out");
                Self::unavailable("Redis did not answer in time (REDIS_TIMEOUT)")
            }
        }
    }
}

impl From<EventError> for Problem {
    fn from(e: EventError) -> Self {
        match e {
            EventError::Store(s) => Self::store(&s, false),
            EventError::Timeout(_) => {
                tracing::error!("event operation timed out");
                Self::unavailable("Redis did not answer in time (REDIS_TIMEOUT)")
            }
        }
    }
}

impl From<SourceError> for Problem {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Invalid(_) => Self::bad(e.to_string()),
            SourceError::NotFound => Self::not_found("source"),
            SourceError::Busy => Self::Conflict(Json(ErrorBody::new(e.to_string()))),
            SourceError::Store(s) => Self::store(&s, false),
            SourceError::Timeout(_) => {
                tracing::error!("source operation timed out");
                Self::unavailable("Redis did not answer in time (REDIS_TIMEOUT)")
            }
        }
    }
}
