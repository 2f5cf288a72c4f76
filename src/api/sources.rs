//! `/api/v1/tenants/{tenant}/sources`: a tenant's webhook sources
//! (providers that send to us); `/ingest/{source_id}`: where they send.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{param::Path, payload::Json, types::Example, ApiResponse, Object, OpenApi, Tags};
use serde_json::Value;

use crate::{
    domain::{SourceId, TenantId},
    sources::{Encoding, EventTypeFrom, IngestError, Source, SourceCounts, SourceInput, SourceService, VerifyDoc},
    store::{
        sources::{Activity, LoggedRequest},
        StoreError,
    },
};

use super::{
    auth::TokenAuth,
    body::{JsonBody, RawBody},
    errors::ErrorBody,
    problem::Problem,
};

#[derive(Tags)]
enum ApiTags {
    /// A tenant's sources: providers (GitHub, Stripe, any Standard
    /// Webhooks sender, a home-grown HMAC) whose webhooks we verify, store
    /// and fan out to the tenant's endpoints as events.
    Sources,
}

/// How a source's requests are verified.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct VerifyRequest {
    /// `github` (`X-Hub-Signature-256`), `stripe` (`Stripe-Signature`),
    /// `standard-webhooks` (`webhook-id`/`-timestamp`/`-signature`),
    /// `hmac-sha256` (your `header`, `encoding`, `prefix`) or `none`
    /// (accept anything: must be chosen explicitly).
    #[oai(validator(pattern = r"^(github|stripe|standard-webhooks|hmac-sha256|none)$"))]
    scheme: String,
    /// The provider's secret; required except for `none`. Stripe's key is
    /// the whole string, `whsec_` included; Standard Webhooks' is the
    /// base64 after `whsec_` (the bare base64 is accepted too). Never shown
    /// again.
    #[oai(nullable, skip_serializing_if_is_none, validator(min_length = 1, max_length = 1024))]
    secret: Option<String>,
    /// The secret being rotated out, accepted beside `secret` until
    /// `previous_secret_expires_at` (default: 24 hours after this change).
    #[oai(nullable, skip_serializing_if_is_none, validator(min_length = 1, max_length = 1024))]
    previous_secret: Option<String>,
    /// When `previous_secret` stops being accepted.
    #[oai(nullable, skip_serializing_if_is_none)]
    previous_secret_expires_at: Option<DateTime<Utc>>,
    /// `stripe` and `standard-webhooks`: how far the signed timestamp may
    /// be from our clock, either way, 1-86,400 (default 300).
    #[oai(nullable, skip_serializing_if_is_none, validator(minimum(value = "1"), maximum(value = "86400")))]
    tolerance_seconds: Option<u32>,
    /// `hmac-sha256`: the header carrying the signature (required).
    #[oai(nullable, skip_serializing_if_is_none)]
    header: Option<String>,
    /// `hmac-sha256`: `hex` (default) or `base64`.
    #[oai(nullable, skip_serializing_if_is_none, validator(pattern = r"^(hex|base64)$"))]
    encoding: Option<String>,
    /// `hmac-sha256`: text before the signature, e.g. `sha256=`.
    #[oai(nullable, skip_serializing_if_is_none, validator(max_length = 64))]
    prefix: Option<String>,
    /// `hmac-sha256`: a header carrying the provider's delivery id, by
    /// which replays are recognised.
    #[oai(nullable, skip_serializing_if_is_none)]
    id_header: Option<String>,
}

/// Where a request's event type is read: exactly one of the two.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct EventTypeFromView {
    /// A header, e.g. `X-GitHub-Event`.
    #[oai(skip_serializing_if_is_none)]
    header: Option<String>,
    /// An RFC 6901 pointer into the JSON body, e.g. `/type`.
    #[oai(skip_serializing_if_is_none)]
    json_pointer: Option<String>,
}

impl From<EventTypeFrom> for EventTypeFromView {
    fn from(f: EventTypeFrom) -> Self {
        match f {
            EventTypeFrom::Header(h) => Self { header: Some(h), json_pointer: None },
            EventTypeFrom::JsonPointer(p) => Self { header: None, json_pointer: Some(p) },
        }
    }
}

/// Declares a request body with the shared source fields after its own.
macro_rules! source_body {
    ($(#[$doc:meta])* $name:ident { $($own:tt)* }) => {
        $(#[$doc])*
        #[derive(Debug, Object)]
        #[oai(example, deny_unknown_fields)]
        struct $name {
            $($own)*
    /// The event type when `event_type_from` finds none (default
    /// `webhook`).
    #[oai(skip_serializing_if_is_none, validator(pattern = r"^[A-Za-z0-9_.:/-]{1,128}$"))]
    default_event_type: Option<String>,
    /// Where each request's event type is read; a value that is not a
    /// valid event type falls back to `default_event_type`.
    #[oai(nullable, skip_serializing_if_is_none)]
    event_type_from: Option<EventTypeFromView>,
    /// Requests per second accepted at most, 1-100,000; more are answered
    /// 429 with `Retry-After`. Null: `SOURCE_RATE_LIMIT`.
    #[oai(nullable, skip_serializing_if_is_none, validator(minimum(value = "1"), maximum(value = "100000")))]
    rate_limit: Option<u32>,
        }
    };
}

source_body! {
    /// A source to register. Unknown fields are refused.
    SourceRequest {
        /// For people, 1-128 bytes.
        #[oai(validator(min_length = 1, max_length = 128))]
        name: String,
        /// How its requests are verified.
        verify: VerifyRequest,
    }
}

source_body! {
    /// The fields to change: only those present change, null clears;
    /// `verify` replaces the whole verification.
    SourcePatch {
        /// For people, 1-128 bytes.
        #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 128))]
        name: Option<String>,
        /// How its requests are verified.
        #[oai(skip_serializing_if_is_none)]
        verify: Option<VerifyRequest>,
    }
}

impl Example for SourceRequest {
    fn example() -> Self {
        Self {
            name: "GitHub: acme/shop".to_owned(),
            verify: VerifyRequest {
                scheme: "github".to_owned(),
                secret: Some("my-github-webhook-secret".to_owned()),
                previous_secret: None,
                previous_secret_expires_at: None,
                tolerance_seconds: None,
                header: None,
                encoding: None,
                prefix: None,
                id_header: None,
            },
            default_event_type: Some("github.push".to_owned()),
            event_type_from: Some(EventTypeFromView { header: Some("X-GitHub-Event".to_owned()), json_pointer: None }),
            rate_limit: None,
        }
    }
}

impl Example for SourcePatch {
    fn example() -> Self {
        Self { name: None, verify: None, default_event_type: None, event_type_from: None, rate_limit: Some(50) }
    }
}

/// How a source verifies, secrets left out.
#[derive(Object)]
struct VerifyView {
    /// The scheme.
    scheme: String,
    /// When the previous secret stops being accepted, during a rotation.
    #[oai(skip_serializing_if_is_none)]
    previous_secret_expires_at: Option<DateTime<Utc>>,
    /// `stripe` and `standard-webhooks`.
    #[oai(skip_serializing_if_is_none)]
    tolerance_seconds: Option<u32>,
    /// `hmac-sha256`.
    #[oai(skip_serializing_if_is_none)]
    header: Option<String>,
    /// `hmac-sha256`.
    #[oai(skip_serializing_if_is_none)]
    encoding: Option<String>,
    /// `hmac-sha256`.
    #[oai(skip_serializing_if_is_none)]
    prefix: Option<String>,
    /// `hmac-sha256`.
    #[oai(skip_serializing_if_is_none)]
    id_header: Option<String>,
}

/// A source.
#[derive(Object)]
struct SourceView {
    /// `src_` + 32 hex digits.
    id: String,
    /// Its tenant.
    tenant: String,
    /// Its name.
    name: String,
    /// The path providers POST to (no API token): `/ingest/{id}`.
    ingest_url: String,
    /// How requests are verified (secrets are never shown).
    verify: VerifyView,
    /// The event type when `event_type_from` finds none.
    default_event_type: String,
    /// Where each request's event type is read.
    #[oai(skip_serializing_if_is_none)]
    event_type_from: Option<EventTypeFromView>,
    /// Requests per second at most; absent: `SOURCE_RATE_LIMIT`.
    #[oai(skip_serializing_if_is_none)]
    rate_limit: Option<u32>,
    /// Created at.
    created_at: DateTime<Utc>,
    /// Last change.
    updated_at: DateTime<Utc>,
}

impl From<Source> for SourceView {
    fn from(s: Source) -> Self {
        let doc = VerifyDoc::from(s.verify.clone());
        Self {
            ingest_url: s.ingest_path(),
            id: s.id.to_string(),
            tenant: s.tenant.to_string(),
            name: s.name,
            verify: VerifyView {
                scheme: doc.scheme,
                previous_secret_expires_at: doc.previous_secret_expires_at,
                tolerance_seconds: doc.tolerance_seconds,
                header: doc.header,
                encoding: doc.encoding.map(|e| match e {
                    Encoding::Hex => "hex".to_owned(),
                    Encoding::Base64 => "base64".to_owned(),
                }),
                prefix: doc.prefix,
                id_header: doc.id_header,
            },
            default_event_type: s.default_event_type.to_string(),
            event_type_from: s.event_type_from.map(Into::into),
            rate_limit: s.rate_limit,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A tenant's sources, oldest first.
#[derive(Object)]
struct SourceList {
    /// The sources.
    data: Vec<SourceView>,
}

/// One request a source received.
#[derive(Object)]
struct RequestView {
    /// When.
    at: DateTime<Utc>,
    /// `accepted`, `duplicate` (a replayed delivery id: not delivered
    /// again) or `refused`.
    result: String,
    /// For a refusal: `missing_signature`, `malformed_signature`,
    /// `wrong_signature` or `stale_timestamp`.
    #[oai(skip_serializing_if_is_none)]
    reason: Option<String>,
    /// The event made of it (for a duplicate, the first one): see
    /// `GET .../events/{event_id}` for its deliveries.
    #[oai(skip_serializing_if_is_none)]
    event_id: Option<String>,
    /// The provider's delivery id.
    #[oai(skip_serializing_if_is_none)]
    delivery_id: Option<String>,
    /// The body's size in bytes.
    bytes: u64,
}

impl From<LoggedRequest> for RequestView {
    fn from(r: LoggedRequest) -> Self {
        Self {
            at: DateTime::from_timestamp_millis(r.at).unwrap_or_default(),
            result: r.result,
            reason: r.reason,
            event_id: r.event_id,
            delivery_id: r.delivery_id,
            bytes: r.bytes,
        }
    }
}

/// Counts over the last hour.
#[derive(Object)]
struct HourCounts {
    /// Accepted and stored.
    accepted: u64,
    /// Replays of a delivery id already accepted.
    duplicate: u64,
    /// Answered 429.
    rate_limited: u64,
    /// Answered 401, by reason.
    refused: BTreeMap<String, u64>,
}

/// A source's recent requests.
#[derive(Object)]
struct ActivityView {
    /// Counts over the last hour (in 5-minute steps).
    last_hour: HourCounts,
    /// The latest requests (at most 100), newest first.
    latest: Vec<RequestView>,
}

impl From<Activity> for ActivityView {
    fn from(a: Activity) -> Self {
        let counts = SourceCounts::of(&a.last_hour);
        Self {
            last_hour: HourCounts {
                accepted: counts.accepted,
                duplicate: counts.duplicate,
                rate_limited: counts.rate_limited,
                refused: counts.refused.into_iter().collect(),
            },
            latest: a.latest.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    /// Registered: send the provider to `ingest_url`.
    #[oai(status = 201)]
    Ok(Json<SourceView>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted; its events stay.
    #[oai(status = 204)]
    Ok,
}

/// An accepted request.
#[derive(Object)]
struct IngestAccepted {
    /// The event made of it (for a duplicate, the first one).
    event_id: String,
    /// Endpoints it matched: one delivery each.
    deliveries: u64,
    /// A replayed delivery id: not delivered again.
    duplicate: bool,
}

/// A refused request.
#[derive(Object)]
struct IngestRefused {
    /// What went wrong.
    detail: String,
    /// `missing_signature`, `malformed_signature`, `wrong_signature` or
    /// `stale_timestamp`.
    reason: String,
}

// 413 comes from the body extractor; listed for the OpenAPI document.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum IngestAnswer {
    /// Stored durably (or a replay of a delivery id already stored); its
    /// deliveries follow in the background.
    #[oai(status = 202)]
    Accepted(Json<IngestAccepted>),
    /// The signature is missing, malformed, wrong or stale: nothing was
    /// stored; the refusal is counted.
    #[oai(status = 401)]
    Refused(Json<IngestRefused>),
    /// No such source.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Body larger than `MAX_PAYLOAD_BYTES`.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// Over the source's rate limit.
    #[oai(status = 429)]
    TooMany(
        Json<ErrorBody>,
        /// Seconds until a request is accepted again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Redis is unavailable or slow: nothing may have been stored; the
    /// provider should retry (a replay is recognised by its delivery id).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl From<IngestError> for IngestAnswer {
    fn from(e: IngestError) -> Self {
        let body = |detail: String| Json(ErrorBody::new(detail));
        match e {
            IngestError::NotFound => Self::NotFound(body("No such source.".to_owned())),
            IngestError::Limited(wait) => Self::TooMany(
                body("Too many requests for this source (its rate_limit); retry after Retry-After seconds.".to_owned()),
                wait.as_secs_f64().ceil().max(1.0) as u64,
            ),
            IngestError::Refused(r) => {
                Self::Refused(Json(IngestRefused { detail: r.explain().to_owned(), reason: r.as_str().to_owned() }))
            }
            other => {
                tracing::error!(error.message = %other, error.cause_chain = ?other, "ingest failed");
                let unreplicated = matches!(
                    other,
                    IngestError::Event(crate::events::EventError::Store(StoreError::NotReplicated { .. }))
                );
                Self::Unavailable(body(if unreplicated {
                    "Stored, but fewer replicas than REDIS_WAIT_REPLICAS confirmed it in time, so a Redis failover \
                     could still lose it. Retry: a redelivery with the same delivery id is recognised and delivered \
                     once."
                        .to_owned()
                } else {
                    "Redis is unavailable or did not answer in time; the request may not be stored. Retry.".to_owned()
                }))
            }
        }
    }
}

fn tenant(raw: &str) -> Result<TenantId, Problem> {
    TenantId::parse(raw).map_err(|e| Problem::bad(format!("tenant: {e}")))
}

/// A tenant and source from a path; a malformed one cannot exist.
fn ids(tenant: &str, id: &str) -> Result<(TenantId, SourceId), Problem> {
    let t = TenantId::parse(tenant).map_err(|_| Problem::not_found("source"))?;
    let id = SourceId::parse(id).map_err(|_| Problem::not_found("source"))?;
    Ok((t, id))
}

fn input(body: Value, creating: bool) -> Result<SourceInput, Problem> {
    SourceInput::parse(body, creating, Utc::now()).map_err(|e| Problem::bad(e.to_string()))
}

pub(super) struct SourcesApi;

#[OpenApi(tag = "ApiTags::Sources")]
impl SourcesApi {
    /// Register a source.
    ///
    /// Point the provider at `ingest_url` with the same secret. Each
    /// verified request becomes an event of this tenant.
    #[oai(path = "/api/v1/tenants/:tenant/sources", method = "post", operation_id = "create_source")]
    async fn create(
        &self,
        _auth: TokenAuth,
        service: Data<&SourceService>,
        /// The tenant: 1-64 of `A-Z a-z 0-9 - _ .`.
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
        tenant: Path<String>,
        body: JsonBody<SourceRequest>,
    ) -> Result<Created, Problem> {
        let tenant = self::tenant(&tenant.0)?;
        Ok(Created::Ok(Json(service.create(tenant, input(body.0, true)?).await?.into())))
    }

    /// List a tenant's sources.
    #[oai(path = "/api/v1/tenants/:tenant/sources", method = "get", operation_id = "list_sources")]
    async fn list(
        &self,
        _auth: TokenAuth,
        service: Data<&SourceService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
    ) -> Result<Json<SourceList>, Problem> {
        let tenant = self::tenant(&tenant.0)?;
        Ok(Json(SourceList { data: service.list(&tenant).await?.into_iter().map(Into::into).collect() }))
    }

    /// Read a source.
    #[oai(path = "/api/v1/tenants/:tenant/sources/:id", method = "get", operation_id = "get_source")]
    async fn get(
        &self,
        _auth: TokenAuth,
        service: Data<&SourceService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `src_` + 32 hex digits.
        #[oai(validator(pattern = r"^src_[0-9a-f]{32}$"))]
        id: Path<String>,
    ) -> Result<Json<SourceView>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        Ok(Json(service.get(&tenant, &id).await?.into()))
    }

    /// A source's requests: counts over the last hour (accepted,
    /// duplicates, rate limited, refused by reason) and the latest ones.
    #[oai(path = "/api/v1/tenants/:tenant/sources/:id/requests", method = "get", operation_id = "get_source_requests")]
    async fn requests(
        &self,
        _auth: TokenAuth,
        service: Data<&SourceService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `src_` + 32 hex digits.
        #[oai(validator(pattern = r"^src_[0-9a-f]{32}$"))]
        id: Path<String>,
    ) -> Result<Json<ActivityView>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        Ok(Json(service.activity(&tenant, &id).await?.into()))
    }

    /// Change a source.
    ///
    /// Only the fields present change; `verify` replaces the whole
    /// verification (rotate with `previous_secret`).
    #[oai(path = "/api/v1/tenants/:tenant/sources/:id", method = "patch", operation_id = "update_source")]
    async fn update(
        &self,
        _auth: TokenAuth,
        service: Data<&SourceService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `src_` + 32 hex digits.
        #[oai(validator(pattern = r"^src_[0-9a-f]{32}$"))]
        id: Path<String>,
        body: JsonBody<SourcePatch>,
    ) -> Result<Json<SourceView>, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        Ok(Json(service.update(&tenant, &id, input(body.0, false)?).await?.into()))
    }

    /// Delete a source.
    #[oai(path = "/api/v1/tenants/:tenant/sources/:id", method = "delete", operation_id = "delete_source")]
    async fn delete(
        &self,
        _auth: TokenAuth,
        service: Data<&SourceService>,
        #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))] tenant: Path<String>,
        /// `src_` + 32 hex digits.
        #[oai(validator(pattern = r"^src_[0-9a-f]{32}$"))]
        id: Path<String>,
    ) -> Result<Deleted, Problem> {
        let (tenant, id) = ids(&tenant.0, &id.0)?;
        service.delete(&tenant, &id).await?;
        Ok(Deleted::Ok)
    }

    /// Receive a provider's webhook.
    ///
    /// No API token: the request is verified by the source's scheme. The
    /// body is kept byte for byte with the headers; the event's `data` is
    /// the JSON body, or the body as a string when it is not JSON.
    #[oai(path = "/ingest/:source_id", method = "post", operation_id = "ingest")]
    async fn ingest(
        &self,
        service: Data<&SourceService>,
        /// The source's id.
        source_id: Path<String>,
        body: RawBody,
        req: &poem::Request,
    ) -> IngestAnswer {
        let Ok(id) = SourceId::parse(&source_id.0) else {
            return IngestError::NotFound.into();
        };
        match service.ingest(&id, req.headers(), &body.0).await {
            Ok(done) => IngestAnswer::Accepted(Json(IngestAccepted {
                event_id: done.event_id.to_string(),
                deliveries: done.deliveries,
                duplicate: done.duplicate,
            })),
            Err(e) => e.into(),
        }
    }
}
