//! Page and action handlers: each parses the request, calls one
//! [`Console`] operation and renders a view or redirects.

use std::time::Duration;

use chrono::Utc;
use poem::{
    handler,
    http::StatusCode,
    web::{Data, Form, Path, Query, Redirect},
    IntoResponse, Response,
};

use crate::{
    domain::{EndpointId, EventId, EventType, JobId, Label, SourceId, TenantId},
    endpoints::EndpointError,
    jobs::JobState,
    store::{Cursor, JobFilter, Requeue, RetryNow},
};

use super::{
    auth::{CsrfForm, Session},
    console::{self, Console, ConsoleError, Selection, ENDPOINTS_PAGE},
    views::{self, Frame, JobsQueryView, Nav},
};

/// Redis trouble becomes a page that says so; the cause is logged.
fn unavailable(e: ConsoleError) -> poem::Error {
    if e.is_not_found() {
        let what = if matches!(e, ConsoleError::Source(_)) { "No such source." } else { "No such endpoint." };
        return poem::Error::from_response(views::error_page(StatusCode::NOT_FOUND, what));
    }
    if let ConsoleError::PurgeAge(_) | ConsoleError::Endpoint(EndpointError::Invalid(_) | EndpointError::Refused(_)) = e
    {
        return poem::Error::from_response(views::error_page(StatusCode::BAD_REQUEST, &e.to_string()));
    }
    tracing::error!(error.message = %e, error.cause_chain = ?e, "monitor request failed");
    poem::Error::from_response(views::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Redis is unavailable; this page will work again once it answers.",
    ))
}

/// Outcome messages after an action, chosen from a fixed list so that
/// nothing from the URL is echoed as a message.
#[derive(serde::Deserialize, Default)]
pub(super) struct Done {
    done: Option<String>,
    n: Option<u64>,
}

impl Done {
    fn flash(&self) -> Option<(bool, String)> {
        let n = self.n.unwrap_or(0);
        Some(match self.done.as_deref()? {
            "requeued" => (true, "Requeued: a fresh retry cycle starts now.".to_owned()),
            "not_failed" => (
                false,
                "Not requeued: only failed jobs, and jobs stuck for longer than RECONCILE_AFTER, can be requeued \
                 (it was requeued already, or it is on its way)."
                    .to_owned(),
            ),
            "retrying" => (true, "The next attempt is due now.".to_owned()),
            "not_scheduled" => (false, "Only jobs waiting for a retry, and stuck jobs, can be retried now.".to_owned()),
            "deleted" => (true, "The job was deleted.".to_owned()),
            "requeued_all" => (true, format!("{n} failed jobs requeued; they come due over the next seconds.")),
            "requeued_some" => {
                (true, format!("{n} failed jobs requeued (the most one request takes); requeue again for the rest."))
            }
            "purged" => (true, format!("{n} succeeded jobs deleted.")),
            "disabled" => (true, "The endpoint is disabled: it matches no new event.".to_owned()),
            "enabled" => (true, "The endpoint is enabled again; deliveries held for it are on their way.".to_owned()),
            "rotated" => {
                (true, "The endpoint has a new secret; the old one keeps signing beside it for 24 hours.".to_owned())
            }
            "recovered" => (true, format!("{n} failed deliveries requeued.")),
            _ => return None,
        })
    }
}

fn frame<'a>(nav: Nav, session: &'a Session, done: &Done) -> Frame<'a> {
    Frame { nav, csrf: &session.csrf, logged_in: session.logged_in, flash: done.flash() }
}

#[handler]
pub(super) async fn overview(
    console: Data<&Console>,
    session: Session,
    Query(done): Query<Done>,
) -> poem::Result<Response> {
    let o = console.overview().await.map_err(unavailable)?;
    let failed = JobFilter { state: Some(JobState::Failed), ..JobFilter::default() };
    let recent = console.list(&failed, None, 10).await.map_err(unavailable)?;
    Ok(views::overview(&frame(Nav::Overview, &session, &done), &o, &recent.jobs))
}

/// The jobs page's query string.
#[derive(serde::Deserialize, Default)]
pub(super) struct JobsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    cursor: String,
    limit: Option<usize>,
    done: Option<String>,
    n: Option<u64>,
}

/// Parses the filters; a bad one is reported and the rest still apply.
fn parse_filter(q: &JobsQuery) -> (JobFilter, Option<Cursor>, Vec<String>) {
    let mut problems = Vec::new();
    let mut label = |name: &str, raw: &str| match Label::parse_optional(raw.trim()) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!("{name}: {e}"));
            None
        }
    };
    let group = label("Group", &q.group);
    let tag = label("Tag", &q.tag);
    let state = match q.state.as_str() {
        "" => None,
        s => s.parse().map_err(|e: crate::jobs::UnknownState| problems.push(e.to_string())).ok(),
    };
    let id = match q.id.trim() {
        "" => None,
        raw => JobId::parse(raw).map_err(|e| problems.push(e.to_string())).ok(),
    };
    let host = Some(q.host.trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
    let cursor = match q.cursor.as_str() {
        "" => None,
        raw => raw.parse().map_err(|e: crate::store::CursorError| problems.push(e.to_string())).ok(),
    };
    (JobFilter { state, group, tag, host, id }, cursor, problems)
}

#[handler]
pub(super) async fn jobs(
    console: Data<&Console>,
    session: Session,
    Query(q): Query<JobsQuery>,
) -> poem::Result<Response> {
    let (filter, cursor, problems) = parse_filter(&q);
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let page = console.list(&filter, cursor.as_ref(), limit).await.map_err(unavailable)?;
    let view = JobsQueryView {
        state: q.state.clone(),
        group: q.group.clone(),
        tag: q.tag.clone(),
        host: q.host.clone(),
        id: q.id.clone(),
        limit,
    };
    let done = Done { done: q.done.clone(), n: q.n };
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    let next = page.next.map(|c| c.to_string());
    Ok(views::jobs(
        &frame(Nav::Jobs, &session, &done),
        Utc::now(),
        &view,
        problem.as_deref(),
        &page.jobs,
        next.as_deref(),
        cursor.is_some(),
    ))
}

fn job_id(raw: &str) -> poem::Result<JobId> {
    JobId::parse(raw).map_err(|_| poem::Error::from_response(views::error_page(StatusCode::NOT_FOUND, "No such job.")))
}

#[handler]
pub(super) async fn job(
    console: Data<&Console>,
    session: Session,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> poem::Result<Response> {
    let id = job_id(&id)?;
    match console.job(&id).await.map_err(unavailable)? {
        Some(record) => {
            let stuck_after = console.store().reconcile_after();
            Ok(views::job(&frame(Nav::Jobs, &session, &done), Utc::now(), &record, stuck_after))
        }
        None => Ok(views::error_page(StatusCode::NOT_FOUND, "No such job (it may have expired or been deleted).")),
    }
}

fn back_to_job(id: &JobId, done: &str) -> Response {
    Redirect::see_other(format!("/jobs/{id}?done={done}")).into_response()
}

#[handler]
pub(super) async fn requeue(
    console: Data<&Console>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let id = job_id(&id)?;
    Ok(match console.requeue(&id).await.map_err(unavailable)? {
        Requeue::Requeued => back_to_job(&id, "requeued"),
        Requeue::NotStuck(_) => back_to_job(&id, "not_failed"),
        Requeue::Missing => views::error_page(StatusCode::NOT_FOUND, "No such job."),
    })
}

#[handler]
pub(super) async fn retry_now(
    console: Data<&Console>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let id = job_id(&id)?;
    Ok(match console.retry_now(&id).await.map_err(unavailable)? {
        RetryNow::Done => back_to_job(&id, "retrying"),
        RetryNow::NotScheduled(_) => back_to_job(&id, "not_scheduled"),
        RetryNow::Missing => views::error_page(StatusCode::NOT_FOUND, "No such job."),
    })
}

#[handler]
pub(super) async fn delete(
    console: Data<&Console>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let id = job_id(&id)?;
    console.delete(&id).await.map_err(unavailable)?;
    Ok(Redirect::see_other("/jobs?done=deleted").into_response())
}

/// The bulk requeue form.
#[derive(serde::Deserialize)]
pub(super) struct BulkRequeueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    host: String,
}

#[handler]
pub(super) async fn requeue_all(
    console: Data<&Console>,
    session: Session,
    Form(form): Form<BulkRequeueForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let bad = |e: crate::domain::LabelError| {
        poem::Error::from_response(views::error_page(StatusCode::BAD_REQUEST, &format!("Bad label: {e}")))
    };
    let selection = Selection {
        group: Label::parse_optional(form.group.trim()).map_err(bad)?,
        tag: Label::parse_optional(form.tag.trim()).map_err(bad)?,
        host: Some(form.host.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
    };
    let done = console.requeue_all_failed(&selection).await.map_err(unavailable)?;
    let outcome = if done.more { "requeued_some" } else { "requeued_all" };
    Ok(Redirect::see_other(format!("/jobs?state=failed&done={outcome}&n={}", done.requeued)).into_response())
}

/// The bulk delete form.
#[derive(serde::Deserialize)]
pub(super) struct PurgeForm {
    #[serde(default)]
    csrf: String,
    older_than: u64,
}

#[handler]
pub(super) async fn purge(
    console: Data<&Console>,
    session: Session,
    Form(form): Form<PurgeForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let n = console.purge_succeeded(Duration::from_secs(form.older_than)).await.map_err(unavailable)?;
    Ok(Redirect::see_other(format!("/jobs?state=succeeded&done=purged&n={n}")).into_response())
}

#[handler]
pub(super) async fn workers(console: Data<&Console>, session: Session) -> poem::Result<Response> {
    let workers = console.workers().await.map_err(unavailable)?;
    Ok(views::workers(&frame(Nav::Workers, &session, &Done::default()), Utc::now(), &workers))
}

#[handler]
pub(super) fn health() -> poem::web::Json<serde_json::Value> {
    poem::web::Json(serde_json::json!({"status": "ok"}))
}

#[handler]
pub(super) async fn ready(console: Data<&Console>) -> Response {
    match console.ready().await {
        Ok(()) => poem::web::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error.message = %e, "monitor not ready");
            poem::web::Json(serde_json::json!({"detail": "Redis is unavailable."}))
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
    }
}

fn not_found(message: &str) -> poem::Error {
    poem::Error::from_response(views::error_page(StatusCode::NOT_FOUND, message))
}

fn tenant_id(raw: &str) -> poem::Result<TenantId> {
    TenantId::parse(raw).map_err(|_| not_found("No such tenant."))
}

fn endpoint_ids(tenant: &str, id: &str) -> poem::Result<(TenantId, EndpointId)> {
    Ok((tenant_id(tenant)?, EndpointId::parse(id).map_err(|_| not_found("No such endpoint."))?))
}

#[handler]
pub(super) async fn tenants(
    console: Data<&Console>,
    session: Session,
    Query(done): Query<Done>,
) -> poem::Result<Response> {
    let tenants = console.tenants().await.map_err(unavailable)?;
    Ok(views::tenants(&frame(Nav::Tenants, &session, &done), &tenants))
}

/// The endpoints page's query string.
#[derive(serde::Deserialize, Default)]
pub(super) struct EndpointsQuery {
    #[serde(default)]
    after: String,
    done: Option<String>,
    n: Option<u64>,
}

#[handler]
pub(super) async fn endpoints(
    console: Data<&Console>,
    session: Session,
    Path(tenant): Path<String>,
    Query(q): Query<EndpointsQuery>,
) -> poem::Result<Response> {
    let tenant = tenant_id(&tenant)?;
    // A cursor that is not an endpoint id starts from the first page.
    let after = EndpointId::parse(&q.after).ok();
    let page = console.endpoint_page(&tenant, after.as_ref(), ENDPOINTS_PAGE).await.map_err(unavailable)?;
    let next = (page.len() == ENDPOINTS_PAGE).then(|| page.last().map(|h| h.endpoint.id.to_string())).flatten();
    let done = Done { done: q.done, n: q.n };
    Ok(views::endpoints(
        &frame(Nav::Tenants, &session, &done),
        Utc::now(),
        &tenant,
        &page,
        next.as_deref(),
        after.is_some(),
    ))
}

/// Deliveries listed on an endpoint's page.
const ENDPOINT_DELIVERIES: usize = 50;

#[handler]
pub(super) async fn endpoint(
    console: Data<&Console>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> poem::Result<Response> {
    let (tenant, id) = endpoint_ids(&tenant, &id)?;
    let (state, deliveries) = console.endpoint(&tenant, &id, ENDPOINT_DELIVERIES).await.map_err(unavailable)?;
    Ok(views::endpoint(&frame(Nav::Tenants, &session, &done), Utc::now(), &state, &deliveries))
}

/// An endpoint action's form: the CSRF token and which page to go back to.
#[derive(serde::Deserialize)]
pub(super) struct EndpointForm {
    #[serde(default)]
    csrf: String,
    /// `endpoint` for the endpoint's page; anything else: the tenant's
    /// endpoints (never a URL, so the form cannot redirect elsewhere).
    #[serde(default)]
    back: String,
    /// For recover: an RFC 3339 time or an age such as `24h`.
    #[serde(default)]
    since: String,
}

fn back_to_endpoint(tenant: &TenantId, id: &EndpointId, back: &str, done: &str, n: Option<u64>) -> Response {
    let n = n.map(|n| format!("&n={n}")).unwrap_or_default();
    let page = if back == "endpoint" { format!("/{id}") } else { String::new() };
    Redirect::see_other(format!("/tenants/{tenant}/endpoints{page}?done={done}{n}")).into_response()
}

async fn set_disabled(
    console: &Console,
    session: &Session,
    (tenant, id): (String, String),
    form: &EndpointForm,
    disabled: bool,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let (tenant, id) = endpoint_ids(&tenant, &id)?;
    console.set_disabled(&tenant, &id, disabled).await.map_err(unavailable)?;
    let done = if disabled { "disabled" } else { "enabled" };
    Ok(back_to_endpoint(&tenant, &id, &form.back, done, None))
}

#[handler]
pub(super) async fn disable(
    console: Data<&Console>,
    session: Session,
    Path(ids): Path<(String, String)>,
    Form(form): Form<EndpointForm>,
) -> poem::Result<Response> {
    set_disabled(&console, &session, ids, &form, true).await
}

#[handler]
pub(super) async fn enable(
    console: Data<&Console>,
    session: Session,
    Path(ids): Path<(String, String)>,
    Form(form): Form<EndpointForm>,
) -> poem::Result<Response> {
    set_disabled(&console, &session, ids, &form, false).await
}

#[handler]
pub(super) async fn rotate(
    console: Data<&Console>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<EndpointForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let (tenant, id) = endpoint_ids(&tenant, &id)?;
    console.rotate(&tenant, &id).await.map_err(unavailable)?;
    Ok(back_to_endpoint(&tenant, &id, &form.back, "rotated", None))
}

#[handler]
pub(super) async fn recover(
    console: Data<&Console>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<EndpointForm>,
) -> poem::Result<Response> {
    session.check_csrf(&form.csrf)?;
    let (tenant, id) = endpoint_ids(&tenant, &id)?;
    let now = Utc::now();
    let since = console::parse_time(&form.since, now)
        .map_err(|e| poem::Error::from_response(views::error_page(StatusCode::BAD_REQUEST, &format!("Since: {e}"))))?;
    let n = console.recover(&tenant, &id, since, now).await.map_err(unavailable)?;
    Ok(back_to_endpoint(&tenant, &id, &form.back, "recovered", Some(n)))
}

/// The events page's query string.
#[derive(serde::Deserialize, Default)]
pub(super) struct EventsQuery {
    #[serde(default, rename = "type")]
    event_type: String,
    /// `<created ms>:<event id>` of the previous page's last event.
    #[serde(default)]
    before: String,
}

/// Events per page.
const EVENTS_PAGE: usize = 50;

#[handler]
pub(super) async fn events(
    console: Data<&Console>,
    session: Session,
    Path(tenant): Path<String>,
    Query(q): Query<EventsQuery>,
) -> poem::Result<Response> {
    let tenant = tenant_id(&tenant)?;
    let (event_type, problem) = match q.event_type.trim() {
        "" => (None, None),
        raw => match EventType::parse(raw) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(format!("Type: {e}"))),
        },
    };
    let before = q.before.split_once(':').and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_owned())));
    let paged = before.is_some();
    let page = console.event_page(&tenant, event_type.as_ref(), before, EVENTS_PAGE).await.map_err(unavailable)?;
    let next = (page.len() == EVENTS_PAGE)
        .then(|| page.last().map(|(id, ev)| format!("{}:{id}", ev.created_at.timestamp_millis())))
        .flatten();
    let view = views::EventsView { tenant: &tenant, event_type: q.event_type.trim(), problem, next, paged };
    Ok(views::events(&frame(Nav::Tenants, &session, &Done::default()), Utc::now(), &view, &page))
}

#[handler]
pub(super) async fn event(
    console: Data<&Console>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> poem::Result<Response> {
    let tenant = tenant_id(&tenant)?;
    let id = EventId::parse(&id).map_err(|_| not_found("No such event."))?;
    match console.event(&tenant, &id).await.map_err(unavailable)? {
        Some(event) => Ok(views::event(&frame(Nav::Tenants, &session, &Done::default()), Utc::now(), &tenant, &event)),
        None => Err(not_found("No such event (it may have expired).")),
    }
}

fn source_ids(tenant: &str, id: &str) -> poem::Result<(TenantId, SourceId)> {
    Ok((tenant_id(tenant)?, SourceId::parse(id).map_err(|_| not_found("No such source."))?))
}

#[handler]
pub(super) async fn sources(
    console: Data<&Console>,
    session: Session,
    Path(tenant): Path<String>,
) -> poem::Result<Response> {
    let tenant = tenant_id(&tenant)?;
    let rows = console.all_sources(&tenant).await.map_err(unavailable)?;
    Ok(views::sources(&frame(Nav::Tenants, &session, &Done::default()), Utc::now(), &tenant, &rows))
}

#[handler]
pub(super) async fn source(
    console: Data<&Console>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> poem::Result<Response> {
    let (tenant, id) = source_ids(&tenant, &id)?;
    let source = console.source(&tenant, &id).await.map_err(unavailable)?;
    let frame = frame(Nav::Tenants, &session, &Done::default());
    Ok(views::source(&frame, Utc::now(), &source, console.source_rate_limit()))
}
