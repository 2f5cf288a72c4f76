//! `GET /hook_slinger/`: page through jobs newest first, with the same
//! filters and cursors as the monitor.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem::{endpoint::BoxEndpoint, http::Method, web::Data};
use poem_openapi::{
    param::Query,
    payload::Json,
    registry::{MetaApi, MetaPath, Registry},
    ApiResponse, Object, OpenApi, Tags,
};

use crate::{
    domain::{JobId, Label},
    jobs::JobState,
    service::HookService,
    store::{Cursor, JobFilter, JobSummary, MAX_PAGE},
};

use super::{auth::TokenAuth, errors::ErrorBody};

#[derive(Tags)]
enum ApiTags {
    /// Webhook jobs.
    Webhooks,
}

/// One job in a listing (without payload and attempt log; read the job for those).
#[derive(Object)]
struct JobSummaryView {
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
    /// Destination host.
    host: String,
    /// Attempts made, over the job's life.
    attempts: u32,
    /// Last HTTP status received.
    #[oai(skip_serializing_if_is_none)]
    last_status: Option<u16>,
    /// Last error.
    #[oai(skip_serializing_if_is_none)]
    last_error: Option<String>,
    /// Accepted at.
    created_at: DateTime<Utc>,
    /// Last state change.
    updated_at: DateTime<Utc>,
    /// When the next attempt is due (state `scheduled`).
    #[oai(skip_serializing_if_is_none)]
    next_attempt_at: Option<DateTime<Utc>>,
}

impl From<JobSummary> for JobSummaryView {
    fn from(j: JobSummary) -> Self {
        Self {
            job_id: j.id,
            state: j.state.to_string(),
            group: j.group,
            tag: j.tag,
            host: j.host,
            attempts: j.attempts,
            last_status: j.last_status,
            last_error: j.last_error,
            created_at: j.created_at,
            updated_at: j.updated_at,
            next_attempt_at: j.next_attempt_at,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Object)]
struct JobList {
    /// The jobs (possibly fewer than `limit`, even none, when filters match
    /// rarely: each page looks at a bounded number of jobs; keep following
    /// `next_cursor`).
    jobs: Vec<JobSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    next_cursor: Option<String>,
}

// 401 and 403 come from the TokenAuth extractor; the variants are listed so
// that the OpenAPI document shows every answer.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum ListResponse {
    /// A page of jobs.
    #[oai(status = 200)]
    Page(Json<JobList>),
    /// A filter or the cursor is not valid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or bad token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Wrong token.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Redis is unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// The query string, as received.
struct ListQuery {
    state: Option<String>,
    group: Option<String>,
    tag: Option<String>,
    host: Option<String>,
    job_id: Option<String>,
    cursor: Option<String>,
}

fn parse(q: ListQuery) -> Result<(JobFilter, Option<Cursor>), String> {
    let label = |name: &str, raw: Option<String>| {
        Label::parse_optional(raw.as_deref().unwrap_or_default()).map_err(|e| format!("Parameter '{name}' {e}."))
    };
    let state =
        q.state.filter(|s| !s.is_empty()).map(|s| s.parse::<JobState>()).transpose().map_err(|_| {
            "Parameter 'state' must be one of queued, delivering, scheduled, succeeded, failed.".to_owned()
        })?;
    let id = q
        .job_id
        .filter(|s| !s.is_empty())
        .map(|s| JobId::parse(&s))
        .transpose()
        .map_err(|_| "Parameter 'job_id' is not a job id.".to_owned())?;
    let filter = JobFilter {
        state,
        group: label("group", q.group)?,
        tag: label("tag", q.tag)?,
        host: q.host.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
        id,
    };
    let cursor =
        q.cursor.filter(|c| !c.is_empty()).map(|c| c.parse::<Cursor>()).transpose().map_err(|e| e.to_string())?;
    Ok((filter, cursor))
}

pub(super) struct ListingApi;

#[OpenApi(tag = "ApiTags::Webhooks")]
impl ListingApi {
    /// List jobs, newest first, filtered by state, group, tag, destination
    /// host or id, in pages. Follow `next_cursor` for older jobs: jobs
    /// accepted meanwhile never shift a page, so no job is repeated or
    /// skipped. `GET /hook_slinger` (no slash) is served the same.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/hook_slinger/", method = "get", operation_id = "list_jobs")]
    async fn list(
        &self,
        _auth: TokenAuth,
        service: Data<&HookService>,
        /// `queued`, `delivering`, `scheduled`, `succeeded`, `failed` or
        /// `held` (empty: any).
        #[oai(validator(pattern = r"^(queued|delivering|scheduled|succeeded|failed|held)?$"))]
        state: Query<Option<String>>,
        /// Only jobs with this group (empty: any).
        #[oai(validator(max_length = 64, pattern = r"^[A-Za-z0-9._:-]*$"))]
        group: Query<Option<String>>,
        /// Only jobs with this tag (empty: any).
        #[oai(validator(max_length = 64, pattern = r"^[A-Za-z0-9._:-]*$"))]
        tag: Query<Option<String>>,
        /// Only jobs sent to this host (no port; case and surrounding
        /// whitespace do not matter; empty: any).
        host: Query<Option<String>>,
        /// Only this job (empty: any).
        #[oai(validator(
            max_length = 166,
            pattern = r"^(([A-Za-z0-9._:-]*_)?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})?$"
        ))]
        job_id: Query<Option<String>>,
        /// `next_cursor` of the previous page (empty: the first page).
        #[oai(validator(max_length = 276, pattern = r"^(-?[0-9]{1,18}:[A-Za-z0-9._:-]{1,256})?$"))]
        cursor: Query<Option<String>>,
        /// Jobs per page, default 50: 0 counts as 1 and more than 500 as 500.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
    ) -> ListResponse {
        let q =
            ListQuery { state: state.0, group: group.0, tag: tag.0, host: host.0, job_id: job_id.0, cursor: cursor.0 };
        let (filter, after) = match parse(q) {
            Ok(parsed) => parsed,
            Err(detail) => return ListResponse::BadRequest(Json(ErrorBody::new(detail))),
        };
        let limit = (limit.0.unwrap_or(50) as usize).clamp(1, MAX_PAGE);
        match service.store().list(&filter, after.as_ref(), limit).await {
            Ok(page) => ListResponse::Page(Json(JobList {
                jobs: page.jobs.into_iter().map(Into::into).collect(),
                next_cursor: page.next.map(|c| c.to_string()),
            })),
            Err(e) => {
                tracing::error!(error.message = %e, error.cause_chain = ?e, "listing failed");
                ListResponse::Unavailable(Json(ErrorBody::new("Redis is unavailable; retry later.")))
            }
        }
    }
}

/// Several API objects served as one whose operations on a shared path are
/// documented together. poem-openapi writes each object's paths on their
/// own, so `POST /hook_slinger/` (in `hooks`) and `GET /hook_slinger/`
/// (here) would become two `paths` entries with the same key, and OpenAPI
/// readers keep only the last one. Routing is unaffected either way.
/// It also documents the collection path with its slash.
pub(super) struct SharedPaths<T>(pub T);

impl<T: OpenApi> OpenApi for SharedPaths<T> {
    fn meta() -> Vec<MetaApi> {
        let mut merged: Vec<MetaPath> = Vec::new();
        for mut path in T::meta().into_iter().flat_map(|api| api.paths) {
            // poem-openapi trims the slash off `/hook_slinger/`; the original
            // and every client use the slashed form, so that is what the
            // document shows (both are served).
            if path.path == "/hook_slinger" {
                path.path = "/hook_slinger/".to_owned();
            }
            match merged.iter_mut().find(|p| p.path == path.path) {
                Some(same) => same.operations.extend(path.operations),
                None => merged.push(path),
            }
        }
        vec![MetaApi { paths: merged }]
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn add_routes(self, route_table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {
        self.0.add_routes(route_table);
    }
}
