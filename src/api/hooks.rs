//! `/hook_slinger/`: accept a job, read it, requeue it.

use chrono::{DateTime, SecondsFormat, Utc};
use poem::web::Data;
use poem_openapi::{
    param::{Header, Path},
    payload::Json,
    types::Example,
    ApiResponse, Object, OpenApi, Tags,
};

use crate::{
    delivery::DestinationPolicy,
    domain::{FieldError, JobId, Limits, NewJob, NewJobError},
    jobs::{Attempt, JobRecord},
    metrics::AppMetrics,
    service::{HookService, Idempotent, ServiceError, Written},
    store::{IdempotencyClaim, Requeue},
};

use super::{
    auth::TokenAuth,
    body::JsonBody,
    errors::{ErrorBody, FieldProblem, ValidationBody},
};

#[derive(Tags)]
enum ApiTags {
    /// Webhook jobs.
    Webhooks,
}

// Documentation only: the body is parsed by `domain::NewJob` (see
// `body.rs`), so every rule here restates one of its rules, for the
// document. Rules that depend on settings (`MAX_RETRIES_LIMIT`, `MAX_DELAY`)
// and those the derive cannot state are added in `document.rs`.
/// A webhook job to deliver. Unknown fields are ignored; `deliver_at` and
/// `delay_seconds` exclude each other (one of them may be null).
#[derive(Debug, Object)]
#[oai(example)]
struct HookRequest {
    /// Absolute `http` or `https` URL the payload is POSTed to, written
    /// `scheme://host[:port][/path][?query][#fragment]`, without credentials
    /// (send those with `to_auth`). The pattern is the plain form: a host
    /// name of letters, digits, `-` and `_`, and RFC 3986 characters after
    /// it. Also accepted: an IP literal (dotted IPv4 or `[IPv6]`) outside the
    /// ranges the server refuses (loopback, private and other special-purpose
    /// ranges, unless `ALLOW_PRIVATE_DESTINATIONS`), a host name in another
    /// script (sent in punycode), other characters in the path
    /// (percent-encoded) and surrounding whitespace (ignored).
    #[oai(validator(
        min_length = 8,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_-]+\.)*[A-Za-z][A-Za-z0-9_-]*\.?(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*(\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(#([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"
    ))]
    to_url: String,
    /// Sent verbatim as the outbound `Authorization` header when not empty
    /// (empty or null: none). It becomes a header, so no control characters,
    /// and at most 8,192 bytes of UTF-8.
    #[oai(nullable, skip_serializing_if_is_none, validator(max_length = 8192, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"))]
    to_auth: Option<String>,
    /// Label (1-64 of `A-Z a-z 0-9 - _ . :`); starts the job id. Empty or
    /// null: no tag.
    #[oai(nullable, skip_serializing_if_is_none, validator(max_length = 64, pattern = r"^[A-Za-z0-9._:-]*$"))]
    tag: Option<String>,
    /// Label (1-64 of `A-Z a-z 0-9 - _ . :`); starts the job id. Empty or
    /// null: no group.
    #[oai(nullable, skip_serializing_if_is_none, validator(max_length = 64, pattern = r"^[A-Za-z0-9._:-]*$"))]
    group: Option<String>,
    /// The JSON object POSTed to `to_url` (`{}` is fine).
    payload: std::collections::BTreeMap<String, serde_json::Value>,
    /// Retries for this job instead of `MAX_RETRIES`, from 0 to
    /// `MAX_RETRIES_LIMIT`; null: `MAX_RETRIES`.
    #[oai(nullable, skip_serializing_if_is_none, validator(minimum(value = "0")))]
    max_retries: Option<u32>,
    /// Deliver no earlier than this time (RFC 3339); a past time means now,
    /// and it may be at most `MAX_DELAY` ahead. Null: now.
    #[oai(nullable, skip_serializing_if_is_none)]
    deliver_at: Option<DateTime<Utc>>,
    /// Or: deliver after this many seconds, from 0 to `MAX_DELAY`. Null:
    /// now.
    #[oai(nullable, skip_serializing_if_is_none, validator(minimum(value = "0")))]
    delay_seconds: Option<f64>,
}

/// Up to `BATCH_MAX` jobs in one request.
#[derive(Debug, Object)]
struct BatchRequest {
    /// The jobs, each as for `POST /hook_slinger/`: 1 to `BATCH_MAX`.
    #[oai(validator(min_items = 1))]
    jobs: Vec<HookRequest>,
}

/// One item's outcome in a batch.
#[derive(Object)]
struct BatchItem {
    /// Position in the request.
    index: u32,
    /// Whether this job was accepted.
    ok: bool,
    /// The job's id, when accepted.
    #[oai(skip_serializing_if_is_none)]
    job_id: Option<String>,
    /// When it was accepted.
    #[oai(skip_serializing_if_is_none)]
    queued_at: Option<String>,
    /// When it will be delivered, if scheduled.
    #[oai(skip_serializing_if_is_none)]
    deliver_at: Option<String>,
    /// The HTTP status this item alone would have got (202, 400, 422).
    status: u16,
    /// Why it was refused: one entry per bad field.
    #[oai(skip_serializing_if_is_none)]
    errors: Option<Vec<FieldProblem>>,
}

/// A batch's outcome: one result per item, in order.
#[derive(Object)]
struct BatchAccepted {
    /// Items accepted.
    accepted: u32,
    /// Items refused.
    rejected: u32,
    /// One result per item.
    results: Vec<BatchItem>,
}

impl Example for HookRequest {
    fn example() -> Self {
        Self {
            to_url: "https://example.com/webhooks".to_owned(),
            to_auth: Some("Bearer receiver-secret".to_owned()),
            tag: Some("Dhaka".to_owned()),
            group: Some("Bangladesh".to_owned()),
            payload: [("greetings".to_owned(), serde_json::json!("Hello, world!"))].into(),
            max_retries: None,
            deliver_at: None,
            delay_seconds: None,
        }
    }
}

/// The job was stored and queued.
#[derive(Object)]
struct Accepted {
    /// Always `queued`.
    status: String,
    /// Always true.
    ok: bool,
    /// `Webhook registration successful.`
    message: String,
    /// `<group>_<tag>_<uuid>`, leaving out absent labels.
    job_id: String,
    /// When this request was accepted (RFC 3339, UTC).
    queued_at: String,
    /// When the job will be delivered, for `deliver_at` / `delay_seconds`.
    #[oai(skip_serializing_if_is_none)]
    deliver_at: Option<String>,
}

impl Accepted {
    fn from_service(a: crate::service::Accepted) -> Self {
        Self {
            status: "queued".to_owned(),
            ok: true,
            message: "Webhook registration successful.".to_owned(),
            job_id: a.id.to_string(),
            queued_at: rfc3339(a.queued_at),
            deliver_at: a.deliver_at.map(rfc3339),
        }
    }
}

/// RFC 3339 with `+00:00` rather than `Z`: Python's
/// `datetime.fromisoformat` before 3.11, which the original's clients run
/// on, rejects `Z`. Milliseconds (three digits), which it also reads.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// One delivery attempt.
#[derive(Object)]
pub(super) struct AttemptView {
    /// 1-based over the job's life.
    attempt: u32,
    /// Retry cycle (0, then +1 per requeue).
    cycle: u32,
    /// When it started.
    started_at: DateTime<Utc>,
    /// How long it took.
    duration_ms: u64,
    /// The receiver's HTTP status, if it answered.
    #[oai(skip_serializing_if_is_none)]
    status: Option<u16>,
    /// What went wrong, if anything.
    #[oai(skip_serializing_if_is_none)]
    error: Option<String>,
    /// The worker that made it.
    worker: String,
    /// Selected response headers, when the receiver answered.
    #[oai(skip_serializing_if_is_none)]
    response_headers: Option<std::collections::BTreeMap<String, String>>,
    /// The first 4 KiB of the response body.
    #[oai(skip_serializing_if_is_none)]
    response_body: Option<String>,
    /// True when the body was longer than what was kept.
    response_truncated: bool,
}

/// A job's state and history.
#[derive(Object)]
struct JobView {
    /// The id.
    job_id: String,
    /// `queued`, `delivering`, `scheduled` (retry waiting, or held back by
    /// flow control), `succeeded`, `failed` or `held` (a delivery kept while
    /// its endpoint is disabled).
    state: String,
    /// Group label.
    #[oai(skip_serializing_if_is_none)]
    group: Option<String>,
    /// Tag label.
    #[oai(skip_serializing_if_is_none)]
    tag: Option<String>,
    /// Destination.
    to_url: String,
    /// Whether an outbound Authorization header is sent (its value is never shown).
    has_auth: bool,
    /// Accepted at.
    created_at: DateTime<Utc>,
    /// Last state change.
    updated_at: DateTime<Utc>,
    /// Attempts made, over the job's life.
    attempts: u32,
    /// Retry cycle (0, then +1 per requeue).
    cycle: u32,
    /// When the next attempt is due (state `scheduled`).
    #[oai(skip_serializing_if_is_none)]
    next_attempt_at: Option<DateTime<Utc>>,
    /// Last HTTP status received.
    #[oai(skip_serializing_if_is_none)]
    last_status: Option<u16>,
    /// Last error.
    #[oai(skip_serializing_if_is_none)]
    last_error: Option<String>,
    /// Why the job stopped without being delivered (state `failed`).
    #[oai(skip_serializing_if_is_none)]
    stop_reason: Option<String>,
    /// Retries this job allows (its own `max_retries`, when it asked for one).
    #[oai(skip_serializing_if_is_none)]
    max_retries: Option<u32>,
    /// Every attempt, oldest first; the latest 100 when there were more
    /// (`attempts` has the full count).
    attempt_log: Vec<AttemptView>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            attempt: a.attempt,
            cycle: a.cycle,
            // Whole milliseconds, like every other time we return (Python
            // before 3.11 reads at most six fractional digits).
            started_at: DateTime::from_timestamp_millis(a.started_at.timestamp_millis()).unwrap_or(a.started_at),
            duration_ms: a.duration_ms,
            status: a.status,
            error: a.error,
            worker: a.worker,
            response_headers: a.response_headers,
            response_body: a.response_body,
            response_truncated: a.response_truncated,
        }
    }
}

impl From<JobRecord> for JobView {
    fn from(r: JobRecord) -> Self {
        Self {
            job_id: r.id.to_string(),
            state: r.state.to_string(),
            group: r.spec.group.map(String::from),
            tag: r.spec.tag.map(String::from),
            to_url: r.spec.to_url.to_string(),
            has_auth: r.spec.to_auth.is_some(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            attempts: r.attempts,
            cycle: r.cycle,
            next_attempt_at: r.next_attempt_at,
            last_status: r.last_status,
            last_error: r.last_error,
            stop_reason: r.stop_reason,
            max_retries: r.spec.max_retries,
            attempt_log: r.attempt_log.into_iter().map(Into::into).collect(),
        }
    }
}

/// A requeued job.
#[derive(Object)]
struct Requeued {
    /// Always `requeued`.
    status: String,
    /// Always true.
    ok: bool,
    /// The id.
    job_id: String,
    /// `scheduled`: its first attempt of the new cycle is due now.
    state: String,
}

// 401, 403 and 413 come from the TokenAuth and JsonBody extractors; the
// variants are listed so that the OpenAPI document shows every answer.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum CreateResponse {
    /// Stored and queued; delivery follows in the background.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
    /// Body is not JSON, or `to_url` is not a valid http(s) URL.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No `Authorization` header, or not `Token <token>` / `Bearer <token>`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The token is not one of `API_TOKEN` / `API_TOKENS`.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Body larger than `MAX_PAYLOAD_BYTES`.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The `Idempotency-Key` was used before with a different body.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Missing fields or fields of the wrong type or value; each is listed.
    #[oai(status = 422)]
    Invalid(Json<ValidationBody>),
    /// A stored record could not be read (logged).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Redis is unavailable or did not answer within `REDIS_TIMEOUT`. The
    /// message says whether anything may have been stored; retrying with the
    /// same `Idempotency-Key` is always safe.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

// 401, 403 and 413 come from the TokenAuth and JsonBody extractors; the
// variants are listed so that the OpenAPI document shows every answer.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum BatchResponse {
    /// Every valid item was stored and queued; see each item's result.
    #[oai(status = 202)]
    Accepted(Json<BatchAccepted>),
    /// Body is not JSON, or not `{"jobs": [...]}`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or bad token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Wrong token.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Body larger than `MAX_PAYLOAD_BYTES`.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// More than `BATCH_MAX` jobs, or none.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// A stored record could not be read (logged).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Redis is unavailable or did not answer within `REDIS_TIMEOUT`. The
    /// message says whether anything may have been stored; retrying with the
    /// same `Idempotency-Key` is always safe.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

// 401, 403 and 413 come from the TokenAuth and JsonBody extractors; the
// variants are listed so that the OpenAPI document shows every answer.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum GetResponse {
    /// The job.
    #[oai(status = 200)]
    Found(Json<Box<JobView>>),
    /// Missing or bad token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Wrong token.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such job (or it expired).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// A stored record could not be read (logged).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Redis is unavailable or did not answer within `REDIS_TIMEOUT`.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

// 401, 403 and 413 come from the TokenAuth and JsonBody extractors; the
// variants are listed so that the OpenAPI document shows every answer.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum RequeueResponse {
    /// A fresh retry cycle starts now.
    #[oai(status = 202)]
    Requeued(Json<Requeued>),
    /// Missing or bad token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Wrong token.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such job.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The job is on its way: only failed jobs, and jobs stuck in another
    /// state for longer than `RECONCILE_AFTER`, can be requeued.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// A stored record could not be read (logged).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Redis is unavailable or did not answer within `REDIS_TIMEOUT`.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// What a failed store operation tells the caller: whether anything may
/// have been stored, and whether to retry.
enum Failure {
    Unavailable(Json<ErrorBody>),
    Internal(Json<ErrorBody>),
}

/// Which kind of operation failed: a write that creates jobs, or anything else.
#[derive(Clone, Copy)]
enum Op {
    Accept,
    Other,
}

impl Failure {
    fn of(e: &ServiceError, op: Op) -> Self {
        tracing::error!(error.message = %e, error.cause_chain = ?e, "store operation failed");
        let detail = match (e.written(), op) {
            (Written::Yes, _) => return Self::Internal(Json(ErrorBody::new("A stored record could not be read."))),
            (Written::No, Op::Accept) => {
                "Webhook registration failed: Redis is unavailable. Nothing was stored; retry later."
            }
            (Written::Maybe, Op::Accept)
                if matches!(e, ServiceError::Store(crate::store::StoreError::NotReplicated { .. })) =>
            {
                "Webhook registration failed: the job was stored, but fewer replicas than REDIS_WAIT_REPLICAS \
                 confirmed it in time, so a Redis failover could still lose it; it will be delivered unless that \
                 happens. Retry with the same Idempotency-Key to get it delivered exactly once."
            }
            (Written::Maybe, Op::Accept) => {
                "Webhook registration failed: Redis did not answer in time (REDIS_TIMEOUT), so the job may or may \
                 not have been stored; a stored job will be delivered. Retry with the same Idempotency-Key to get \
                 it delivered exactly once."
            }
            (_, Op::Other) if matches!(e, ServiceError::Timeout(_)) => {
                "Redis did not answer in time (REDIS_TIMEOUT); retry later."
            }
            (_, Op::Other) => "Redis is unavailable; retry later.",
        };
        Self::Unavailable(Json(ErrorBody::new(detail)))
    }
}

/// Every response enum with 500 and 503 answers takes a [`Failure`].
macro_rules! answers_failures {
    ($($response:ty),*) => {$(
        impl From<Failure> for $response {
            fn from(f: Failure) -> Self {
                match f {
                    Failure::Unavailable(body) => Self::Unavailable(body),
                    Failure::Internal(body) => Self::Internal(body),
                }
            }
        }
    )*};
}
answers_failures!(CreateResponse, BatchResponse, GetResponse, RequeueResponse);

fn field_problems(errors: Vec<FieldError>) -> Json<ValidationBody> {
    Json(ValidationBody {
        detail: errors
            .into_iter()
            .map(|e| FieldProblem {
                loc: vec!["body".to_owned(), e.field.to_owned()],
                msg: e.message,
                kind: e.kind.to_owned(),
            })
            .collect(),
    })
}

/// Why a job request was refused, before it reached the store.
pub(super) enum Refusal {
    /// 400 with this message.
    BadRequest(String),
    /// 422 with these field errors.
    Invalid(Vec<FieldError>),
}

/// What the operator allows a request to ask for, and where it may deliver.
#[derive(Debug, Clone)]
pub(super) struct Intake {
    pub(super) limits: Limits,
    pub(super) destinations: DestinationPolicy,
    pub(super) idempotency_ttl: std::time::Duration,
    pub(super) batch_max: usize,
}

impl Intake {
    /// Parses a job and checks an IP-literal destination against the SSRF
    /// guard (names are checked when the worker resolves them).
    fn admit(&self, body: serde_json::Value) -> Result<NewJob, Refusal> {
        let job = NewJob::parse(body, &self.limits, Utc::now()).map_err(|e| match e {
            NewJobError::Fields(errors) => Refusal::Invalid(errors),
            e @ NewJobError::InvalidUrl(_) => Refusal::BadRequest(e.to_string()),
            e @ NewJobError::NotAnObject => {
                Refusal::Invalid(vec![FieldError { field: "body", kind: "type", message: e.to_string() }])
            }
        })?;
        if let Some(host) = job.to_url.as_url().host() {
            self.destinations
                .check_host(&host)
                .map_err(|b| Refusal::BadRequest(format!("Parameter 'to_url' is not allowed: {b}.")))?;
        }
        Ok(job)
    }
}

impl BatchItem {
    fn pending(index: usize) -> Self {
        Self {
            index: index as u32,
            ok: true,
            job_id: None,
            queued_at: None,
            deliver_at: None,
            status: 202,
            errors: None,
        }
    }

    fn refused(index: usize, refusal: Refusal) -> Self {
        let (status, errors) = match refusal {
            Refusal::BadRequest(msg) => {
                (400, vec![FieldProblem { loc: vec!["body".into(), "to_url".into()], msg, kind: "value".into() }])
            }
            Refusal::Invalid(errors) => (422, field_problems(errors).0.detail),
        };
        Self { status, ok: false, errors: Some(errors), ..Self::pending(index) }
    }
}

/// A stable hash of a request body (serde_json sorts object keys), to tell a
/// repeated request from a different one under the same idempotency key.
pub(super) fn fingerprint(body: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn not_found() -> Json<ErrorBody> {
    Json(ErrorBody::new("No such job."))
}

pub(super) struct HooksApi;

#[OpenApi(tag = "ApiTags::Webhooks")]
impl HooksApi {
    /// Queue a webhook for delivery.
    ///
    /// Answers 202 as soon as the job is stored in Redis; a worker delivers
    /// it in the background and retries failures with backoff.
    /// `POST /hook_slinger` (no slash) is served the same, without a redirect.
    /// With an `Idempotency-Key` header, repeating the request (same token,
    /// same body, within `IDEMPOTENCY_TTL`) returns the first answer and
    /// enqueues nothing; the same key with another body is a 409.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/hook_slinger/", method = "post", operation_id = "create_job")]
    async fn create(
        &self,
        auth: TokenAuth,
        service: Data<&HookService>,
        intake: Data<&Intake>,
        metrics: Data<&AppMetrics>,
        /// Up to 255 printable ASCII characters; empty: none.
        #[oai(name = "Idempotency-Key", validator(max_length = 255, pattern = r"^[\x20-\x7E]*$"))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<HookRequest>,
        req: &poem::Request,
    ) -> CreateResponse {
        // poem-openapi reads a header value that is not visible ASCII as no
        // header at all; a key the caller did send must not be dropped.
        if idempotency_key.0.is_none() && req.headers().contains_key("idempotency-key") {
            return CreateResponse::BadRequest(Json(ErrorBody::new(
                "Idempotency-Key must be up to 255 printable ASCII characters.",
            )));
        }
        let fingerprint = fingerprint(&body.0);
        let job = match intake.admit(body.0) {
            Ok(job) => job,
            Err(Refusal::BadRequest(msg)) => return CreateResponse::BadRequest(Json(ErrorBody::new(msg))),
            Err(Refusal::Invalid(errors)) => return CreateResponse::Invalid(field_problems(errors)),
        };
        let result = match idempotency_key.0.filter(|k| !k.is_empty()) {
            None => service.accept(job).await.map(Idempotent::New),
            Some(key) => {
                let claim = IdempotencyClaim {
                    key: format!("{}:{key}", auth.0.token_id),
                    fingerprint,
                    ttl: intake.idempotency_ttl,
                };
                service.accept_idempotent(job, claim).await
            }
        };
        match result {
            Ok(Idempotent::New(a)) => {
                metrics.jobs_accepted(1);
                CreateResponse::Accepted(Json(Accepted::from_service(a)))
            }
            Ok(Idempotent::Replay(a)) => CreateResponse::Accepted(Json(Accepted::from_service(a))),
            Ok(Idempotent::Conflict) => CreateResponse::Conflict(Json(ErrorBody::new(
                "This Idempotency-Key was already used with a different request body.",
            ))),
            Err(e) => Failure::of(&e, Op::Accept).into(),
        }
    }

    /// Queue up to `BATCH_MAX` (1,000) webhooks in one request.
    ///
    /// Each item is checked on its own; valid items are stored in one Redis
    /// round trip and queued in one more. The answer lists one result per
    /// item, in order.
    #[oai(path = "/hook_slinger/batch", method = "post", operation_id = "create_jobs_batch")]
    async fn batch(
        &self,
        _auth: TokenAuth,
        service: Data<&HookService>,
        intake: Data<&Intake>,
        metrics: Data<&AppMetrics>,
        body: JsonBody<BatchRequest>,
    ) -> BatchResponse {
        let items = match body.0 {
            serde_json::Value::Object(mut o) => match o.remove("jobs") {
                Some(serde_json::Value::Array(items)) => items,
                _ => return BatchResponse::BadRequest(Json(ErrorBody::new("Send {\"jobs\": [...]}."))),
            },
            serde_json::Value::Array(items) => items,
            _ => return BatchResponse::BadRequest(Json(ErrorBody::new("Send {\"jobs\": [...]}."))),
        };
        if items.is_empty() || items.len() > intake.batch_max {
            return BatchResponse::Invalid(Json(ErrorBody::new(format!(
                "A batch holds 1 to {} jobs (BATCH_MAX); this one has {}.",
                intake.batch_max,
                items.len()
            ))));
        }
        let mut results: Vec<BatchItem> = Vec::with_capacity(items.len());
        let mut valid = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match intake.admit(item) {
                Ok(job) => {
                    valid.push(job);
                    results.push(BatchItem::pending(index));
                }
                Err(refusal) => results.push(BatchItem::refused(index, refusal)),
            }
        }
        let accepted = match service.accept_batch(valid).await {
            Ok(a) => a,
            Err(e) => return Failure::of(&e, Op::Accept).into(),
        };
        metrics.jobs_accepted(accepted.len() as u64);
        let mut accepted = accepted.into_iter();
        for slot in results.iter_mut().filter(|r| r.ok) {
            if let Some(a) = accepted.next() {
                slot.job_id = Some(a.id.to_string());
                slot.queued_at = Some(rfc3339(a.queued_at));
                slot.deliver_at = a.deliver_at.map(rfc3339);
            }
        }
        let ok = results.iter().filter(|r| r.ok).count() as u32;
        BatchResponse::Accepted(Json(BatchAccepted { accepted: ok, rejected: results.len() as u32 - ok, results }))
    }

    /// A job's state, attempt count and every attempt.
    #[oai(path = "/hook_slinger/:job_id", method = "get", operation_id = "get_job")]
    async fn get(&self, _auth: TokenAuth, service: Data<&HookService>, job_id: Path<String>) -> GetResponse {
        let Ok(id) = JobId::parse(&job_id.0) else {
            return GetResponse::NotFound(not_found());
        };
        match service.get(&id).await {
            Ok(Some(record)) => GetResponse::Found(Json(Box::new(record.into()))),
            Ok(None) => GetResponse::NotFound(not_found()),
            Err(e) => Failure::of(&e, Op::Other).into(),
        }
    }

    /// Requeue a failed or stuck job: a fresh retry cycle, same id, earlier attempts kept.
    ///
    /// Besides failed jobs, a job stuck in another state for longer than
    /// `RECONCILE_AFTER` (queued or overdue without progress, or held by a
    /// worker whose lease ran out) can be requeued; a job on its way gets 409.
    #[oai(path = "/hook_slinger/:job_id/requeue", method = "post", operation_id = "requeue_job")]
    async fn requeue(&self, _auth: TokenAuth, service: Data<&HookService>, job_id: Path<String>) -> RequeueResponse {
        let Ok(id) = JobId::parse(&job_id.0) else {
            return RequeueResponse::NotFound(not_found());
        };
        match service.requeue(&id).await {
            Ok(Requeue::Requeued) => RequeueResponse::Requeued(Json(Requeued {
                status: "requeued".to_owned(),
                ok: true,
                job_id: id.to_string(),
                state: "scheduled".to_owned(),
            })),
            Ok(Requeue::NotStuck(state)) => RequeueResponse::Conflict(Json(ErrorBody::new(format!(
                "Job is {state} and on its way; only failed jobs, and jobs stuck for longer than \
                 RECONCILE_AFTER, can be requeued."
            )))),
            Ok(Requeue::Missing) => RequeueResponse::NotFound(not_found()),
            Err(e) => Failure::of(&e, Op::Other).into(),
        }
    }
}
