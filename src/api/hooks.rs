//! `/hook_slinger/`: accept a job, read it, requeue it.

use chrono::{DateTime, SecondsFormat, Utc};
use poem::web::Data;
use poem_openapi::{param::Path, payload::Json, types::Example, ApiResponse, Object, OpenApi, Tags};

use crate::{
    domain::{FieldError, JobId, NewJob, NewJobError},
    jobs::{Attempt, JobRecord},
    service::{HookService, ServiceError},
    store::Requeue,
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

/// A webhook job to deliver. Unknown fields are ignored.
#[derive(Debug, Object)]
#[oai(example)]
struct HookRequest {
    /// Absolute http or https URL the payload is POSTed to.
    to_url: String,
    /// Sent verbatim as the outbound `Authorization` header when not empty.
    to_auth: Option<String>,
    /// Optional label (1-64 of `A-Z a-z 0-9 - _ . :`); starts the job id.
    tag: Option<String>,
    /// Optional label (1-64 of `A-Z a-z 0-9 - _ . :`); starts the job id.
    group: Option<String>,
    /// The JSON object POSTed to `to_url` (`{}` is fine).
    payload: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Example for HookRequest {
    fn example() -> Self {
        Self {
            to_url: "https://example.com/webhooks".to_owned(),
            to_auth: Some("Bearer receiver-secret".to_owned()),
            tag: Some("Dhaka".to_owned()),
            group: Some("Bangladesh".to_owned()),
            payload: [("greetings".to_owned(), serde_json::json!("Hello, world!"))].into(),
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
}

/// One delivery attempt.
#[derive(Object)]
struct AttemptView {
    /// 1-based over the job's life.
    attempt: u32,
    /// Retry cycle (0, then +1 per requeue).
    cycle: u32,
    /// When it started.
    started_at: DateTime<Utc>,
    /// How long it took.
    duration_ms: u64,
    /// The receiver's HTTP status, if it answered.
    status: Option<u16>,
    /// What went wrong, if anything.
    error: Option<String>,
    /// The worker that made it.
    worker: String,
}

/// A job's state and history.
#[derive(Object)]
struct JobView {
    /// The id.
    job_id: String,
    /// `queued`, `delivering`, `scheduled` (retry waiting), `succeeded` or `failed`.
    state: String,
    /// Group label.
    group: Option<String>,
    /// Tag label.
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
    next_attempt_at: Option<DateTime<Utc>>,
    /// Last HTTP status received.
    last_status: Option<u16>,
    /// Last error.
    last_error: Option<String>,
    /// Every attempt, oldest first.
    attempt_log: Vec<AttemptView>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            attempt: a.attempt,
            cycle: a.cycle,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status: a.status,
            error: a.error,
            worker: a.worker,
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
    /// Missing fields or fields of the wrong type or value; each is listed.
    #[oai(status = 422)]
    Invalid(Json<ValidationBody>),
    /// Redis is unavailable; nothing was stored. Safe to retry.
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
    Found(Json<JobView>),
    /// Missing or bad token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Wrong token.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such job (or it expired).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Redis is unavailable.
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
    /// Only failed jobs can be requeued.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Redis is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn unavailable(e: &ServiceError) -> Json<ErrorBody> {
    tracing::error!(error.message = %e, error.cause_chain = ?e, "redis unavailable");
    Json(ErrorBody::new("Webhook registration failed: Redis is unavailable. Nothing was stored; retry later."))
}

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
    #[oai(path = "/hook_slinger/", method = "post", operation_id = "create_job")]
    async fn create(
        &self,
        _auth: TokenAuth,
        service: Data<&HookService>,
        body: JsonBody<HookRequest>,
    ) -> CreateResponse {
        let job = match NewJob::parse(body.0) {
            Ok(job) => job,
            Err(NewJobError::Fields(errors)) => return CreateResponse::Invalid(field_problems(errors)),
            Err(e @ NewJobError::InvalidUrl(_)) => {
                return CreateResponse::BadRequest(Json(ErrorBody::new(e.to_string())))
            }
            Err(e @ NewJobError::NotAnObject) => {
                return CreateResponse::Invalid(field_problems(vec![FieldError {
                    field: "body",
                    kind: "type",
                    message: e.to_string(),
                }]))
            }
        };
        match service.accept(job).await {
            Ok(accepted) => CreateResponse::Accepted(Json(Accepted {
                status: "queued".to_owned(),
                ok: true,
                message: "Webhook registration successful.".to_owned(),
                job_id: accepted.id.to_string(),
                queued_at: accepted.queued_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            })),
            Err(e) => CreateResponse::Unavailable(unavailable(&e)),
        }
    }

    /// A job's state, attempt count and every attempt.
    #[oai(path = "/hook_slinger/:job_id", method = "get", operation_id = "get_job")]
    async fn get(&self, _auth: TokenAuth, service: Data<&HookService>, job_id: Path<String>) -> GetResponse {
        let Ok(id) = JobId::parse(&job_id.0) else {
            return GetResponse::NotFound(not_found());
        };
        match service.get(&id).await {
            Ok(Some(record)) => GetResponse::Found(Json(record.into())),
            Ok(None) => GetResponse::NotFound(not_found()),
            Err(e) => GetResponse::Unavailable(unavailable(&e)),
        }
    }

    /// Requeue a failed job: a fresh retry cycle, same id, earlier attempts kept.
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
            Ok(Requeue::NotFailed(state)) => RequeueResponse::Conflict(Json(ErrorBody::new(format!(
                "Job is {state}; only failed jobs can be requeued."
            )))),
            Ok(Requeue::Missing) => RequeueResponse::NotFound(not_found()),
            Err(e) => RequeueResponse::Unavailable(unavailable(&e)),
        }
    }
}
