//! `/api/v1/tenants/{tenant}/endpoints`: register a tenant's receivers,
//! change, rotate, recover; `/api/v1/tenants`: the tenants.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    types::Example,
    ApiResponse, Object, OpenApi, Tags,
};
use serde_json::Value;

use crate::{
    domain::{EndpointId, TenantId},
    endpoints::{BreakerState, Endpoint, EndpointInput, EndpointSecret, EndpointService, FlowNow, Window},
};

use super::{auth::TokenAuth, body::JsonBody, problem::Problem};

#[derive(Tags)]
enum ApiTags {
    /// A tenant's registered endpoints: each receives the events it
    /// subscribes to.
    Endpoints,
}

/// Declares a request body with the shared endpoint fields after its own
/// (poem-openapi cannot flatten a struct that refuses unknown fields).
macro_rules! endpoint_body {
    ($(#[$doc:meta])* $name:ident { $($own:tt)* }) => {
        $(#[$doc])*
        #[derive(Debug, Object)]
        #[oai(example, deny_unknown_fields)]
        struct $name {
            $($own)*

    /// Event types this endpoint receives (1-128 of `A-Z a-z 0-9 - _ . :
    /// /` each); absent, null or empty: every type.
    #[oai(nullable, skip_serializing_if_is_none, validator(max_items = 256, pattern = r"^[A-Za-z0-9_.:/-]{1,128}$"))]
    event_types: Option<Vec<String>>,
    /// Deliver only events whose payload matches: field paths
    /// (`customer.tier`) with `$eq $neq $gt $gte $lt $lte $in $nin $exists
    /// $startsWith`, combined with `$and $or $not`; a plain value means
    /// `$eq`. A bad operator is a 400 naming its path.
    #[oai(nullable, skip_serializing_if_is_none)]
    filter: Option<BTreeMap<String, Value>>,
    /// Extra request headers for every delivery: names are HTTP tokens,
    /// values visible ASCII (at most 4,096 bytes), at most 32 headers; the
    /// signature headers, `Content-Type`, `Content-Length`, `Host`,
    /// `User-Agent` and connection headers cannot be set.
    #[oai(nullable, skip_serializing_if_is_none)]
    headers: Option<BTreeMap<String, String>>,
    /// Free text, at most 1,024 bytes.
    #[oai(nullable, skip_serializing_if_is_none, validator(max_length = 1024))]
    description: Option<String>,
    /// Free JSON object, at most 8 KiB.
    #[oai(nullable, skip_serializing_if_is_none)]
    metadata: Option<BTreeMap<String, Value>>,
    /// A disabled endpoint matches no new event; its deliveries already
    /// made wait `held` and go out when it is enabled again.
    #[oai(skip_serializing_if_is_none)]
    disabled: Option<bool>,
    /// Deliveries per second at most, across every worker, 1-100,000;
    /// null: unlimited. A delivery over the limit waits without spending
    /// an attempt.
    #[oai(nullable, skip_serializing_if_is_none, validator(minimum(value = "1"), maximum(value = "100000")))]
    rate_limit: Option<u32>,
    /// Attempts out at once at most, across every worker, 1-1,000
    /// (default 10).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "1"), maximum(value = "1000")))]
    max_in_flight: Option<u32>,
    /// Deliver one at a time, in the order the deliveries were made; a
    /// failing delivery holds the ones behind it until it succeeds or
    /// fails for good.
    #[oai(skip_serializing_if_is_none)]
    ordered: Option<bool>,
        }
    };
}

endpoint_body! {
    /// An endpoint to register. Unknown fields are refused.
    EndpointRequest {
        /// Where deliveries are POSTed: an absolute `http(s)` URL that passes
        /// the SSRF guard (checked now and on every delivery); written as for
        /// jobs' `to_url`.
        #[oai(validator(min_length = 8, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*\.?(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*(\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(#([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"))]
        url: String,
        /// `whsec_` + base64 of at least 16 bytes; generated (24 random bytes)
        /// when absent. Change it with `secret/rotate`.
        #[oai(nullable, skip_serializing_if_is_none, validator(pattern = r"^whsec_([A-Za-z0-9+/]{4}){5,}([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"))]
        secret: Option<String>,
    }
}

endpoint_body! {
    /// The fields to change: only those present change, null clears.
    /// Unknown fields are refused.
    EndpointPatch {
        /// A new URL (see `url` at registration).
        #[oai(skip_serializing_if_is_none, validator(min_length = 8, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*\.?(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*(\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(#([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"))]
        url: Option<String>,
    }
}

impl Example for EndpointPatch {
    fn example() -> Self {
        Self {
            url: None,
            event_types: None,
            filter: None,
            headers: None,
            description: None,
            metadata: None,
            disabled: Some(true),
            rate_limit: None,
            max_in_flight: None,
            ordered: None,
        }
    }
}

impl Example for EndpointRequest {
    fn example() -> Self {
        Self {
            url: "https://example.com/webhooks".to_owned(),
            secret: None,
            event_types: Some(vec!["order.created".to_owned(), "order.paid".to_owned()]),
            filter: Some([("customer.tier".to_owned(), serde_json::json!({"$in": ["gold", "platinum"]}))].into()),
            headers: Some([("X-Team".to_owned(), "billing".to_owned())].into()),
            description: Some("Billing service".to_owned()),
            metadata: None,
            disabled: None,
            rate_limit: None,
            max_in_flight: None,
            ordered: None,
        }
    }
}

/// An endpoint.
#[derive(Object)]
struct EndpointView {
    /// `ep_` + 32 hex digits.
    id: String,
    /// Its tenant.
    tenant: String,
    /// Where deliveries go.
    url: String,
    /// The current signing secret (`whsec_...`).
    secret: String,
    /// Event types it receives; empty: every type.
    event_types: Vec<String>,
    /// Its payload filter; null: none.
    #[oai(nullable)]
    filter: Option<Value>,
    /// Extra request headers.
    headers: BTreeMap<String, String>,
    /// Free text.
    description: String,
    /// Free JSON.
    metadata: Value,
    /// Whether it is disabled.
    disabled: bool,
    /// Deliveries per second at most; null: unlimited.
    #[oai(nullable)]
    rate_limit: Option<u32>,
    /// Attempts out at once at most.
    max_in_flight: u32,
    /// Ordered delivery.
    ordered: bool,
    /// When the previous secrets of a rotation stop signing.
    previous_secrets_expire_at: Vec<DateTime<Utc>>,
    /// Created at.
    created_at: DateTime<Utc>,
    /// Last change.
    updated_at: DateTime<Utc>,
    /// Its circuit breaker (when one endpoint is read).
    #[oai(skip_serializing_if_is_none)]
    breaker: Option<BreakerView>,
}

/// An endpoint's circuit breaker.
#[derive(Object)]
struct BreakerView {
    /// `closed` (deliveries flow), `open` (they wait until `open_until`) or
    /// `half_open` (one probe decides).
    state: String,
    /// When an open breaker lets a probe through.
    #[oai(skip_serializing_if_is_none)]
    open_until: Option<DateTime<Utc>>,
    /// Failed attempts in a row, with no success in between.
    consecutive_failures: u64,
}

impl From<&FlowNow> for BreakerView {
    fn from(f: &FlowNow) -> Self {
        Self {
            state: f.breaker.as_str().to_owned(),
            open_until: f.open_until.filter(|_| f.breaker != BreakerState::Closed),
            consecutive_failures: f.consecutive_failures,
        }
    }
}

/// Attempts over a window.
#[derive(Object)]
struct WindowView {
    /// Deliveries that ended in the window, by how.
    deliveries: DeliveriesView,
    /// Attempts made.
    attempts: u64,
    /// Failed attempts that left a retry.
    failed_attempts: u64,
    /// Share of attempts that succeeded (0-1); null without attempts.
    success_rate: Option<f64>,
    /// Median attempt duration (ms, within 25 %).
    p50_ms: Option<u64>,
    /// 99th percentile attempt duration (ms, within 25 %).
    p99_ms: Option<u64>,
}

/// Deliveries by state.
#[derive(Object)]
struct DeliveriesView {
    /// Delivered.
    succeeded: u64,
    /// Out of retries.
    failed: u64,
}

impl From<&Window> for WindowView {
    fn from(w: &Window) -> Self {
        Self {
            deliveries: DeliveriesView { succeeded: w.succeeded, failed: w.exhausted },
            attempts: w.attempts(),
            failed_attempts: w.failed_attempts,
            success_rate: w.success_rate(),
            p50_ms: w.duration_quantile(0.5),
            p99_ms: w.duration_quantile(0.99),
        }
    }
}

/// Deliveries by state now.
#[derive(Object)]
struct NowView {
    /// Attempts out now.
    in_flight: u64,
    /// Waiting for flow control (rate limit, in-flight cap, breaker,
    /// order).
    waiting: u64,
    /// Kept while the endpoint is disabled.
    held: u64,
}

/// An endpoint's delivery statistics.
#[derive(Object)]
struct StatsView {
    /// The tenant.
    tenant: String,
    /// The endpoint.
    endpoint_id: String,
    /// The last hour.
    last_hour: WindowView,
    /// The last 24 hours.
    last_day: WindowView,
    /// Now.
    now: NowView,
    /// Its circuit breaker.
    breaker: BreakerView,
    /// Failed attempts in a row, with no success in between.
    consecutive_failures: u64,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id.to_string(),
            tenant: e.tenant.to_string(),
            url: e.url.to_string(),
            secret: e.secret.expose().to_owned(),
            event_types: e.event_types.into_iter().map(String::from).collect(),
            filter: e.filter.map(Value::from),
            headers: e.headers,
            description: e.description,
            metadata: Value::Object(e.metadata),
            disabled: e.disabled,
            rate_limit: e.rate_limit,
            max_in_flight: e.max_in_flight,
            ordered: e.ordered,
            breaker: None,
            previous_secrets_expire_at: e.previous_secrets.iter().map(|p| p.expires_at).collect(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A page of endpoints, oldest first.
#[derive(Object)]
struct EndpointPage {
    /// The endpoints.
    data: Vec<EndpointView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    next_cursor: Option<String>,
    /// True on the last page.
    done: bool,
}

/// A tenant.
#[derive(Object)]
struct TenantView {
    /// Its id.
    tenant: String,
    /// How many endpoints it has.
    endpoints: u64,
}

/// Every tenant (a tenant exists while it has an endpoint).
#[derive(Object)]
struct TenantList {
    /// The tenants, by name.
    data: Vec<TenantView>,
}

/// A secret rotation (`{}` takes the defaults).
#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[oai(example, deny_unknown_fields)]
struct RotateRequest {
    /// How long the old secret keeps signing beside the new one (default
    /// 86400, at most 30 days; 0: stops at once).
    #[serde(default = "default_grace")]
    #[oai(default = "default_grace", validator(minimum(value = "0"), maximum(value = "2592000")))]
    grace_seconds: u64,
    /// The new secret (`whsec_...`); generated when absent.
    #[serde(default)]
    #[oai(
        nullable,
        skip_serializing_if_is_none,
        validator(pattern = r"^whsec_([A-Za-z0-9+/]{4}){5,}([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$")
    )]
    secret: Option<String>,
}

fn default_grace() -> u64 {
    86_400
}

impl Example for RotateRequest {
    fn example() -> Self {
        Self { grace_seconds: 86_400, secret: None }
    }
}

/// The rotated secret.
#[derive(Object)]
struct Rotated {
    /// The new secret.
    secret: String,
    /// When the old one stops signing (absent with a grace of 0).
    #[oai(skip_serializing_if_is_none)]
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// Re-send failed deliveries.
#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[oai(example, deny_unknown_fields)]
struct RecoverRequest {
    /// From this time (RFC 3339): events created since.
    since: DateTime<Utc>,
    /// Until this time; absent or null: now.
    #[serde(default)]
    #[oai(nullable, skip_serializing_if_is_none)]
    until: Option<DateTime<Utc>>,
}

/// A JSON body parsed as `T` (its serde rules match its schema).
fn body_as<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Problem> {
    serde_json::from_value(body).map_err(|e| Problem::bad(format!("request body: {e}")))
}

impl Example for RecoverRequest {
    fn example() -> Self {
        // Fixed: the document must be the same every time it is built.
        let since =
            DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        Self { since, until: None }
    }
}

/// What a recover did.
#[derive(Object)]
struct RecoveredView {
    /// Failed deliveries given a fresh retry cycle.
    recovered: u64,
}

#[derive(ApiResponse)]
enum Created {
    /// Registered.
    #[oai(status = 201)]
    Ok(Json<EndpointView>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted; deliveries still on their way to it fail ("endpoint
    /// deleted").
    #[oai(status = 204)]
    Ok,
}

#[derive(ApiResponse)]
enum RecoverAccepted {
    /// The failed deliveries are due again now.
    #[oai(status = 202)]
    Ok(Json<RecoveredView>),
}

fn tenant(raw: &str) -> Result<TenantId, Problem> {
    TenantId::parse(raw).map_err(|e| Problem::bad(format!("tenant: {e}")))
}

/// A tenant and endpoint from a path; a malformed one cannot exist.
fn ids(tenant: &str, id: &str) -> Result<(TenantId, EndpointId), Problem> {
    let t = TenantId::parse(tenant).map_err(|_| Problem::not_found("endpoint"))?;
    let id = EndpointId::parse(id).map_err(|_| Problem::not_found("endpoint"))?;
    Ok((t, id))
}

fn input(body: Value, creating: bool) -> Result<EndpointInput, Problem> {
    EndpointInput::parse(body, creating).map_err(|e| Problem::bad(e.to_string()))
}

pub(super) struct EndpointsApi;

#[OpenApi(tag = "ApiTags::Endpoints")]
impl EndpointsApi {
    /// Register an endpoint.
    ///
    /// The tenant exists from its first endpoint on. The answer carries the
    /// signing secret: receivers verify `webhook-signature` with it
    /// (Standard Webhooks).
    #[oai(path = "/api/v1/tenants/:tenant/endpoints", method = "post", operation_id = "create_endpoint")]
    async fn create(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        /// The tenant: 1-64 of `A-Z a-z 0-9 - _ .`.
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
        tenant: Path<String>,
        body: JsonBody<EndpointRequest>,
    ) -> Result<Created, Problem> {
        let tenant = self::tenant(&tenant.0)?;
        let ep = service.create(tenant, input(body.0, true)?).await?;
        Ok(Created::Ok(Json(ep.into())))
    }

    /// List a tenant's endpoints.
    #[oai(path = "/api/v1/tenants/:tenant/endpoints", method = "get", operation_id = "list_endpoints")]
    async fn list(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// Page size, 1-500 (default 50).
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<usize>,
        /// `next_cursor` of the previous page.
        #[oai(validator(pattern = r"^(ep_[0-9a-f]{32})?$"))]
        after: Query<Option<String>>,
    ) -> Result<Json<EndpointPage>, Problem> {
        let Ok(tenant) = TenantId::parse(&tenant.0) else {
            return Ok(Json(EndpointPage { data: Vec::new(), next_cursor: None, done: true }));
        };
        let after = after
            .0
            .filter(|a| !a.is_empty())
            .map(|a| EndpointId::parse(&a))
            .transpose()
            .map_err(|_| Problem::bad("after: not a cursor"))?;
        let page = service.list(&tenant, after.as_ref(), limit.0).await?;
        let next_cursor = (page.len() == limit.0).then(|| page.last().map(|e| e.id.to_string())).flatten();
        let done = next_cursor.is_none();
        Ok(Json(EndpointPage { data: page.into_iter().map(Into::into).collect(), next_cursor, done }))
    }

    /// Read an endpoint.
    #[oai(path = "/api/v1/tenants/:tenant/endpoints/:id", method = "get", operation_id = "get_endpoint")]
    async fn get(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `ep_` + 32 hex digits.
        #[oai(validator(pattern = r"^ep_[0-9a-f]{32}$"))]
        id: Path<String>,
    ) -> Result<Json<EndpointView>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        let (ep, flow) = service.get_with_flow(&tenant, &id).await?;
        Ok(Json(EndpointView { breaker: Some((&flow).into()), ..ep.into() }))
    }

    /// An endpoint's delivery statistics.
    ///
    /// Attempts and deliveries over the last hour and day (success rate,
    /// p50/p99 attempt duration), deliveries in flight, waiting and held
    /// now, the breaker and the failures in a row.
    #[oai(path = "/api/v1/tenants/:tenant/endpoints/:id/stats", method = "get", operation_id = "get_endpoint_stats")]
    async fn stats(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `ep_` + 32 hex digits.
        #[oai(validator(pattern = r"^ep_[0-9a-f]{32}$"))]
        id: Path<String>,
    ) -> Result<Json<StatsView>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        let s = service.stats(&tenant, &id).await?;
        Ok(Json(StatsView {
            tenant: tenant.to_string(),
            endpoint_id: id.to_string(),
            last_hour: (&s.hour).into(),
            last_day: (&s.day).into(),
            now: NowView { in_flight: s.now.in_flight, waiting: s.now.waiting, held: s.now.held },
            breaker: (&s.now).into(),
            consecutive_failures: s.now.consecutive_failures,
        }))
    }

    /// Change an endpoint.
    ///
    /// Only the fields present change; null clears a field. Disabling takes
    /// it out of matching at once.
    #[oai(path = "/api/v1/tenants/:tenant/endpoints/:id", method = "patch", operation_id = "update_endpoint")]
    async fn update(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `ep_` + 32 hex digits.
        #[oai(validator(pattern = r"^ep_[0-9a-f]{32}$"))]
        id: Path<String>,
        body: JsonBody<EndpointPatch>,
    ) -> Result<Json<EndpointView>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        Ok(Json(service.update(&tenant, &id, input(body.0, false)?).await?.into()))
    }

    /// Delete an endpoint.
    #[oai(path = "/api/v1/tenants/:tenant/endpoints/:id", method = "delete", operation_id = "delete_endpoint")]
    async fn delete(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `ep_` + 32 hex digits.
        #[oai(validator(pattern = r"^ep_[0-9a-f]{32}$"))]
        id: Path<String>,
    ) -> Result<Deleted, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        service.delete(&tenant, &id).await?;
        Ok(Deleted::Ok)
    }

    /// Rotate an endpoint's signing secret.
    ///
    /// During `grace_seconds` each delivery carries one `v1,` signature per
    /// valid secret (new and old), then only the new one.
    #[oai(
        path = "/api/v1/tenants/:tenant/endpoints/:id/secret/rotate",
        method = "post",
        operation_id = "rotate_endpoint_secret"
    )]
    async fn rotate(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `ep_` + 32 hex digits.
        #[oai(validator(pattern = r"^ep_[0-9a-f]{32}$"))]
        id: Path<String>,
        body: JsonBody<RotateRequest>,
    ) -> Result<Json<Rotated>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        let body: RotateRequest = body_as(body.0)?;
        if body.grace_seconds > 2_592_000 {
            return Err(Problem::bad("grace_seconds: at most 2592000 (30 days)"));
        }
        let secret = body
            .secret
            .map(|s| EndpointSecret::parse(&s))
            .transpose()
            .map_err(|e| Problem::bad(format!("secret: {e}")))?;
        let grace = std::time::Duration::from_secs(body.grace_seconds);
        let ep = service.rotate(&tenant, &id, grace, secret).await?;
        let previous_secret_expires_at = ep.previous_secrets.iter().map(|p| p.expires_at).max();
        Ok(Json(Rotated { secret: ep.secret.expose().to_owned(), previous_secret_expires_at }))
    }

    /// Re-send an endpoint's failed deliveries.
    ///
    /// Every delivery to this endpoint that failed, of an event created in
    /// `[since, until]`, gets a fresh retry cycle, due now.
    #[oai(path = "/api/v1/tenants/:tenant/endpoints/:id/recover", method = "post", operation_id = "recover_endpoint")]
    async fn recover(
        &self,
        _auth: TokenAuth,
        service: Data<&EndpointService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `ep_` + 32 hex digits.
        #[oai(validator(pattern = r"^ep_[0-9a-f]{32}$"))]
        id: Path<String>,
        body: JsonBody<RecoverRequest>,
    ) -> Result<RecoverAccepted, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        let body: RecoverRequest = body_as(body.0)?;
        let until = body.until.unwrap_or_else(Utc::now);
        let done = service.recover(&tenant, &id, body.since, until).await?;
        Ok(RecoverAccepted::Ok(Json(RecoveredView { recovered: done.recovered })))
    }

    /// List the tenants.
    #[oai(path = "/api/v1/tenants", method = "get", operation_id = "list_tenants")]
    async fn tenants(&self, _auth: TokenAuth, service: Data<&EndpointService>) -> Result<Json<TenantList>, Problem> {
        let all = service.tenants().await?;
        Ok(Json(TenantList {
            data: all.into_iter().map(|(tenant, endpoints)| TenantView { tenant, endpoints }).collect(),
        }))
    }
}

fn default_limit() -> usize {
    50
}
