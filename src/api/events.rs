//! `/api/v1/tenants/{tenant}/events`: post an event to every endpoint of
//! the tenant that wants it; read events with their deliveries.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    param::{Header, Path, Query},
    payload::Json,
    types::Example,
    ApiResponse, Object, OpenApi, Tags,
};
use serde_json::Value;

use crate::{
    domain::{EventId, EventType, NewEvent, TenantId},
    events::{EventService, Posted},
    jobs::JobRecord,
    store::{events::EventRead, IdempotencyClaim},
};

use super::{
    auth::TokenAuth,
    body::JsonBody,
    errors::ErrorBody,
    hooks::{fingerprint, AttemptView, Intake},
    problem::Problem,
};

#[derive(Tags)]
enum ApiTags {
    /// Events: each is delivered to every endpoint of its tenant that
    /// subscribes to its type and whose filter matches its payload.
    Events,
}

/// An event to deliver.
#[derive(Debug, Object)]
#[oai(example)]
struct EventRequest {
    /// Its type, e.g. `order.created` (1-128 of `A-Z a-z 0-9 - _ . : /`).
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:/-]{1,128}$"))]
    event_type: String,
    /// Any JSON (null too): the `data` of the envelope each endpoint
    /// receives.
    payload: Value,
    /// The caller's id for the event (1-256 printable ASCII, no spaces):
    /// the same id again returns the first answer and delivers nothing new.
    /// Every delivery carries it as `webhook-id`. Generated when absent or
    /// null.
    #[oai(nullable, skip_serializing_if_is_none, validator(pattern = r"^[!-~]{1,256}$"))]
    event_id: Option<String>,
    /// Deliver after this many seconds (0 to `MAX_DELAY`); excludes
    /// `deliver_at`.
    #[oai(nullable, skip_serializing_if_is_none, validator(minimum(value = "0")))]
    delay_seconds: Option<f64>,
    /// Or: deliver no earlier than this time (RFC 3339; a past time means
    /// now; at most `MAX_DELAY` ahead).
    #[oai(nullable, skip_serializing_if_is_none)]
    deliver_at: Option<DateTime<Utc>>,
}

impl Example for EventRequest {
    fn example() -> Self {
        Self {
            event_type: "order.created".to_owned(),
            payload: serde_json::json!({"order_id": "o_123", "customer": {"tier": "gold"}, "amount": 4200}),
            event_id: Some("order-o_123-created".to_owned()),
            delay_seconds: None,
            deliver_at: None,
        }
    }
}

/// The event is durable; its deliveries follow in the background.
#[derive(Object)]
struct EventAccepted {
    /// The event's id.
    event_id: String,
    /// How many endpoints it matched: one delivery each.
    deliveries: u64,
    /// When it was accepted.
    created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum PostAnswer {
    /// Stored (or, for an `event_id` seen before, the first answer again).
    #[oai(status = 202)]
    Accepted(Json<EventAccepted>),
}

/// One delivery: the event to one endpoint (a job underneath: requeue it
/// at `/hook_slinger/{delivery_id}/requeue`).
#[derive(Object)]
struct DeliveryView {
    /// The job id.
    delivery_id: String,
    /// The endpoint.
    endpoint_id: String,
    /// Where it went when the event was fanned out.
    url: String,
    /// `queued`, `delivering`, `scheduled`, `succeeded`, `failed` or `held`
    /// (a delivery kept while its endpoint is disabled).
    state: String,
    /// Attempts made.
    attempts: u32,
    /// The last status.
    #[oai(skip_serializing_if_is_none)]
    last_status: Option<u16>,
    /// The last error.
    #[oai(skip_serializing_if_is_none)]
    last_error: Option<String>,
    /// When the next attempt is due.
    #[oai(skip_serializing_if_is_none)]
    next_attempt_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    attempt_log: Vec<AttemptView>,
}

impl From<JobRecord> for DeliveryView {
    fn from(r: JobRecord) -> Self {
        Self {
            delivery_id: r.id.to_string(),
            endpoint_id: r.spec.delivery.as_ref().map(|d| d.endpoint_id.to_string()).unwrap_or_default(),
            url: r.spec.to_url.to_string(),
            state: r.state.to_string(),
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at,
            attempt_log: r.attempt_log.into_iter().map(Into::into).collect(),
        }
    }
}

/// An event.
#[derive(Object)]
struct EventView {
    /// Its id.
    event_id: String,
    /// Its type.
    event_type: String,
    /// Its payload.
    payload: Value,
    /// When it was accepted.
    created_at: DateTime<Utc>,
    /// Deliver no earlier than this.
    #[oai(skip_serializing_if_is_none)]
    deliver_at: Option<DateTime<Utc>>,
    /// Endpoints it matched when accepted.
    matched: u64,
    /// Whether every delivery has been made (expansion runs in the
    /// background).
    expanded: bool,
    /// Its deliveries (the first 1,000), with state and attempt log; only
    /// in a single event's answer.
    #[oai(skip_serializing_if_is_none)]
    deliveries: Option<Vec<DeliveryView>>,
    /// For an event a source ingested: the request, as received; only in a
    /// single event's answer.
    #[oai(skip_serializing_if_is_none)]
    ingested: Option<IngestedView>,
}

/// The provider's request an event was made of.
#[derive(Object)]
struct IngestedView {
    /// The source that received it.
    source_id: String,
    /// The provider's delivery id, if it sent one.
    #[oai(skip_serializing_if_is_none)]
    delivery_id: Option<String>,
    /// The request's headers, `[name, value]` in the order received
    /// (`Authorization` and `Cookie` are not kept).
    headers: Vec<Vec<String>>,
    /// The body byte for byte, base64 (signatures can be checked again
    /// against it).
    body_base64: String,
}

impl EventView {
    fn of(id: EventId, ev: EventRead, deliveries: Option<Vec<JobRecord>>) -> Self {
        use base64::Engine;
        let ingested = ev.origin.filter(|_| deliveries.is_some()).map(|o| IngestedView {
            source_id: o.source,
            delivery_id: Some(o.delivery_id).filter(|d| !d.is_empty()),
            headers: serde_json::from_str(&o.headers).unwrap_or_default(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&o.raw),
        });
        Self {
            ingested,
            event_id: id.to_string(),
            event_type: ev.event_type,
            payload: serde_json::from_str(&ev.payload).unwrap_or(Value::Null),
            created_at: ev.created_at,
            deliver_at: ev.deliver_at,
            matched: ev.matched,
            expanded: ev.expanded,
            deliveries: deliveries.map(|d| d.into_iter().map(Into::into).collect()),
        }
    }
}

/// A page of events, newest first.
#[derive(Object)]
struct EventPage {
    /// The events (without deliveries).
    data: Vec<EventView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    next_cursor: Option<String>,
    /// True on the last page.
    done: bool,
}

pub(super) struct EventsApi;

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Post an event.
    ///
    /// Answers 202 once the event is durable, with how many endpoints it
    /// matched; workers then make one delivery per endpoint, each a POST of
    /// `{"type", "timestamp", "data"}` signed with that endpoint's secret
    /// (`webhook-id` = the event id). The same `event_id` (or
    /// `Idempotency-Key`) again returns the first answer and delivers
    /// nothing new.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/v1/tenants/:tenant/events", method = "post", operation_id = "create_event")]
    async fn post(
        &self,
        auth: TokenAuth,
        service: Data<&EventService>,
        intake: Data<&Intake>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// Up to 255 printable ASCII characters; empty: none.
        #[oai(name = "Idempotency-Key", validator(max_length = 255, pattern = r"^[\x20-\x7E]*$"))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<EventRequest>,
        req: &poem::Request,
    ) -> Result<PostAnswer, Problem> {
        // A header value that is not visible ASCII reads as no header; a key
        // the caller did send must not be dropped.
        if idempotency_key.0.is_none() && req.headers().contains_key("idempotency-key") {
            return Err(Problem::bad("Idempotency-Key must be up to 255 printable ASCII characters."));
        }
        let tenant = TenantId::parse(&tenant.0).map_err(|e| Problem::bad(format!("tenant: {e}")))?;
        let claim = idempotency_key.0.filter(|k| !k.is_empty()).map(|key| IdempotencyClaim {
            key: format!("{}:{key}", auth.0.token_id),
            fingerprint: fingerprint(&body.0),
            ttl: intake.idempotency_ttl,
        });
        let event = NewEvent::parse(body.0, &intake.limits, Utc::now()).map_err(|errors| {
            Problem::bad(errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))
        })?;
        match service.post(tenant, event, claim).await? {
            Posted::Accepted { event_id, deliveries, created_at, .. } => {
                Ok(PostAnswer::Accepted(Json(EventAccepted { event_id: event_id.to_string(), deliveries, created_at })))
            }
            Posted::Conflict => Err(Problem::Conflict(Json(ErrorBody::new(
                "This Idempotency-Key was already used with a different request body.",
            )))),
        }
    }

    /// Read an event with its deliveries.
    #[oai(path = "/api/v1/tenants/:tenant/events/:event_id", method = "get", operation_id = "get_event")]
    async fn get(
        &self,
        _auth: TokenAuth,
        service: Data<&EventService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// 1-256 printable ASCII characters.
        #[oai(validator(pattern = r"^[!-~]{1,256}$"))]
        event_id: Path<String>,
    ) -> Result<Json<EventView>, Problem> {
        let (Ok(tenant), Ok(id)) = (TenantId::parse(&tenant.0), EventId::parse(&event_id.0)) else {
            return Err(Problem::not_found("event"));
        };
        let found = service.get(&tenant, &id).await?.ok_or_else(|| Problem::not_found("event"))?;
        Ok(Json(EventView::of(found.id, found.event, Some(found.deliveries))))
    }

    /// List a tenant's events, newest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/v1/tenants/:tenant/events", method = "get", operation_id = "list_events")]
    async fn list(
        &self,
        _auth: TokenAuth,
        service: Data<&EventService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// Only events of this type.
        #[oai(validator(pattern = r"^[A-Za-z0-9_.:/-]{0,128}$"))]
        event_type: Query<Option<String>>,
        /// Only events accepted at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Page size, 1-500 (default 50).
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<usize>,
        /// `next_cursor` of the previous page.
        #[oai(validator(pattern = r"^([0-9]{1,15}:[!-~]{1,256})?$"))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<EventPage>, Problem> {
        let Ok(tenant) = TenantId::parse(&tenant.0) else {
            return Ok(Json(EventPage { data: Vec::new(), next_cursor: None, done: true }));
        };
        let event_type = event_type
            .0
            .filter(|t| !t.is_empty())
            .map(|t| EventType::parse(&t))
            .transpose()
            .map_err(|e| Problem::bad(format!("event_type: {e}")))?;
        let before = cursor
            .0
            .filter(|c| !c.is_empty())
            .map(|c| {
                let (ms, id) = c.split_once(':')?;
                Some((ms.parse::<i64>().ok()?, id.to_owned()))
            })
            .map(|c| c.ok_or_else(|| Problem::bad("cursor: not a cursor; pass next_cursor as returned")))
            .transpose()?;
        let page = service.list(&tenant, event_type.as_ref(), since.0, before, limit.0).await?;
        let next_cursor = (page.len() == limit.0)
            .then(|| page.last().map(|(id, ev)| format!("{}:{id}", ev.created_at.timestamp_millis())))
            .flatten();
        let done = next_cursor.is_none();
        Ok(Json(EventPage {
            data: page.into_iter().map(|(id, ev)| EventView::of(id, ev, None)).collect(),
            next_cursor,
            done,
        }))
    }
}

fn default_limit() -> usize {
    50
}
