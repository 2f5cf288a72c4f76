//! The monitor's HTML, rendered on the server with maud, which escapes
//! every interpolated string: payloads, labels, URLs and error messages
//! are all caller-controlled.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use poem::{http::StatusCode, web::Html, IntoResponse, Response};

use secrecy::ExposeSecret;

use crate::{
    domain::{EventId, TenantId},
    endpoints::{BreakerState, Endpoint, FlowNow, Window},
    events::EventWithDeliveries,
    jobs::{DeliveryRef, JobRecord, JobState},
    sources::{Encoding, EventTypeFrom, Scheme, Source, Verify},
    store::{
        events::EventRead,
        sources::{LoggedRequest, LOGGED},
        JobSummary, MinuteStats, WorkerInfo,
    },
};

use super::{
    assets,
    console::{EndpointHealth, Health, Overview, SourceActivity, SourceCounts, HEALTH_SAMPLE},
};

/// Which navigation entry is highlighted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Overview,
    Jobs,
    Workers,
    Tenants,
    None,
}

/// What every page's frame needs.
pub(super) struct Frame<'a> {
    pub nav: Nav,
    pub csrf: &'a str,
    pub logged_in: bool,
    pub flash: Option<(bool, String)>,
}

fn page(title: &str, frame: &Frame, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Hook Slinger monitor" }
                link rel="stylesheet" href={ "/assets/monitor.css?v=" (assets::VERSION) };
                script src={ "/assets/monitor.js?v=" (assets::VERSION) } defer {}
            }
            body {
                header.top {
                    div.bar {
                        a.brand href="/" { "Hook " span { "Slinger" } }
                        nav {
                            a.on[frame.nav == Nav::Overview] href="/" { "Overview" }
                            a.on[frame.nav == Nav::Jobs] href="/jobs" { "Jobs" }
                            a.on[frame.nav == Nav::Workers] href="/workers" { "Workers" }
                            a.on[frame.nav == Nav::Tenants] href="/tenants" { "Tenants" }
                        }
                        div.right {
                            span { span.live-dot {} span #live-stamp { "live" } }
                            @if frame.logged_in {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(frame.csrf);
                                    button type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main {
                    @if let Some((ok, msg)) = &frame.flash {
                        div.flash.bad[!ok] role="status" { (msg) }
                    }
                    (body)
                }
            }
        }
    }
}

fn respond(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// A state as a coloured badge.
fn badge(state: JobState) -> Markup {
    let label = match state {
        JobState::Scheduled => "retry scheduled",
        other => other.as_str(),
    };
    html! { span class={ "badge " (state.as_str()) } { (label) } }
}

/// "12 s ago", with the exact time on hover.
fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> Markup {
    html! { span title=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) { (relative(now, t)) } }
}

/// A duration between two times, said the short way people read it.
pub(super) fn relative(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (n, future) = if secs < 0 { (-secs, true) } else { (secs, false) };
    let text = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h {} min", n / 3600, n % 3600 / 60),
        _ => format!("{} d {} h", n / 86_400, n % 86_400 / 3600),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

fn duration_words(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// Overview: counts, throughput chart, queue and workers.
pub(super) fn overview(frame: &Frame, o: &Overview, recent_failures: &[JobSummary]) -> Response {
    let card = |state: JobState, label: &str| {
        html! {
            a class={ "card " (state.as_str()) } href={ "/jobs?state=" (state.as_str()) } {
                div.k { (label) } div.n { (o.count(state)) }
            }
        }
    };
    let body = html! {
        h1 { "Overview" }
        div data-live {
            div.cards {
                (card(JobState::Queued, "Queued"))
                (card(JobState::Delivering, "Delivering"))
                (card(JobState::Scheduled, "Retry scheduled"))
                (card(JobState::Succeeded, "Succeeded"))
                (card(JobState::Failed, "Failed"))
                (card(JobState::Held, "Held"))
            }
            div.cards {
                div.card.neutral { div.k { "Queue depth" } div.n { (o.queue_depth) }
                    div.small.muted { "attempts on the queue" } }
                div.card.neutral { div.k { "Oldest waiting" }
                    div.n { @match o.oldest_queued { Some(t) => (relative(o.now, t).trim_end_matches(" ago")), None => "—" } }
                    div.small.muted { "queued job's age" } }
                a.card.neutral href="/workers" { div.k { "Live workers" } div.n { (o.live_workers()) }
                    div.small.muted { (o.workers.len() - o.live_workers()) " gone" } }
                div.card.neutral #awaiting-reconcile { div.k { "Awaiting reconciler" } div.n { (o.awaiting_reconcile) }
                    div.small.muted { "stuck jobs a worker will put back on their way (normally 0)" } }
            }
            div.grid2 {
                div.panel.chart {
                    h2 { "Deliveries per minute, last hour" }
                    (chart(&o.minutes))
                }
                div.panel {
                    h2 { "Retention" }
                    dl.kv {
                        dt { "Succeeded jobs kept" } dd { (duration_words(o.retention.succeeded)) }
                        dt { "Failed jobs kept" } dd { (duration_words(o.retention.failed)) }
                    }
                    p.small.muted { "Set with RETENTION_SUCCEEDED and RETENTION_FAILED (seconds). \
                        Finished jobs are deleted with their attempt log when their time is up." }
                }
            }
            div.panel {
                h2 { "Latest failures" }
                (jobs_table(o.now, recent_failures))
                p.small { a href="/jobs?state=failed" { "All failed jobs →" } }
            }
        }
    };
    respond(page("Overview", frame, body))
}

/// Deliveries (green) and failed attempts (red) per minute as inline SVG.
fn chart(minutes: &[MinuteStats]) -> Markup {
    let (w, h, pad) = (600.0_f64, 140.0_f64, 18.0_f64);
    let max = minutes.iter().map(|m| m.delivered.max(m.failed_attempts)).max().unwrap_or(0).max(1) as f64;
    let slot = w / minutes.len().max(1) as f64;
    let bar = (slot / 2.0 - 1.0).max(1.0);
    let total_ok: u64 = minutes.iter().map(|m| m.delivered).sum();
    let total_err: u64 = minutes.iter().map(|m| m.failed_attempts).sum();
    html! {
        svg viewBox={ "0 0 " (w) " " (h + pad) } role="img" aria-label="deliveries and failures per minute" {
            line x1="0" y1=(h) x2=(w) y2=(h) stroke="#e4e7ec" {}
            text x="0" y="10" font-size="10" fill="#667085" { (max as u64) "/min" }
            @for (i, m) in minutes.iter().enumerate() {
                @let x = i as f64 * slot;
                @let ok_h = m.delivered as f64 / max * (h - 14.0);
                @let err_h = m.failed_attempts as f64 / max * (h - 14.0);
                g {
                    title { (m.minute.format("%H:%M")) " UTC — " (m.delivered) " delivered, "
                        (m.failed_attempts) " failed attempts, " (m.failed) " failed for good" }
                    rect x=(x) y="0" width=(slot) height=(h) fill="transparent" {}
                    rect x=(x + 0.5) y=(h - ok_h) width=(bar) height=(ok_h) fill="#10b981" rx="1" {}
                    rect x=(x + 0.5 + bar) y=(h - err_h) width=(bar) height=(err_h) fill="#ef4444" rx="1" {}
                }
            }
            @if let (Some(first), Some(last)) = (minutes.first(), minutes.last()) {
                text x="0" y=(h + 13.0) font-size="10" fill="#667085" { (first.minute.format("%H:%M")) }
                text x=(w) y=(h + 13.0) font-size="10" fill="#667085" text-anchor="end" { (last.minute.format("%H:%M")) " UTC" }
            }
        }
        div.legend {
            span { span.sw.ok {} "delivered (" (total_ok) ")" }
            span { span.sw.err {} "failed attempts (" (total_err) ")" }
        }
    }
}

fn jobs_table(now: DateTime<Utc>, jobs: &[JobSummary]) -> Markup {
    html! {
        @if jobs.is_empty() {
            div.empty { "No jobs here." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "Job" } th { "Group" } th { "Tag" } th.hide-sm { "Destination" } th { "State" }
                    th.num { "Attempts" } th.hide-sm { "Last result" } th { "Created" } th.hide-sm { "Updated" }
                } }
                tbody {
                    @for j in jobs {
                        tr {
                            td.mono { a href={ "/jobs/" (j.id) } title=(j.id) { (short_id(&j.id)) } }
                            td { (j.group.as_deref().unwrap_or("—")) }
                            td { (j.tag.as_deref().unwrap_or("—")) }
                            td.hide-sm { (j.host) }
                            td { (badge(j.state)) @if let Some(at) = j.next_attempt_at {
                                " " span.small.muted { (relative(now, at)) } } }
                            td.num { (j.attempts) }
                            td.hide-sm.wrap { (result(j.last_status, j.last_error.as_deref())) }
                            td { (ago(now, j.created_at)) }
                            td.hide-sm { (ago(now, j.updated_at)) }
                        }
                    }
                }
            } }
        }
    }
}

/// The uuid's first block is enough to tell rows apart; the full id is on hover.
fn short_id(id: &str) -> String {
    match id.len() {
        0..=44 => id.to_owned(),
        n => format!("{}…", &id[..n - 28]),
    }
}

fn result(status: Option<u16>, error: Option<&str>) -> Markup {
    html! {
        @match (status, error) {
            (Some(s), _) if (200..300).contains(&s) => span.badge.ok { (s) },
            (Some(s), e) => { span.badge.err { (s) } @if let Some(e) = e { " " span.small.muted { (e) } } },
            (None, Some(e)) => span.small { (e) },
            (None, None) => span.muted { "—" },
        }
    }
}

/// The jobs page's filter values, echoed back into the form.
#[derive(Default)]
pub(super) struct JobsQueryView {
    pub state: String,
    pub group: String,
    pub tag: String,
    pub host: String,
    pub id: String,
    pub limit: usize,
}

impl JobsQueryView {
    fn link(&self, cursor: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("state", &self.state), ("group", &self.group), ("tag", &self.tag), ("host", &self.host)] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if self.id.is_empty() {
            q.append_pair("limit", &self.limit.to_string());
        } else {
            q.append_pair("id", &self.id);
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        format!("/jobs?{}", q.finish())
    }
}

/// The jobs list with filters, paging and bulk actions.
pub(super) fn jobs(
    frame: &Frame,
    now: DateTime<Utc>,
    q: &JobsQueryView,
    problem: Option<&str>,
    rows: &[JobSummary],
    next: Option<&str>,
    paged: bool,
) -> Response {
    let body = html! {
        h1 { "Jobs" }
        div.panel {
            form.filters method="get" action="/jobs" {
                label { "State" select name="state" {
                    option value="" selected[q.state.is_empty()] { "any" }
                    @for st in JobState::ALL {
                        option value=(st.as_str()) selected[q.state == st.as_str()] { (st.as_str()) }
                    }
                } }
                label { "Group" input name="group" value=(q.group) size="12"; }
                label { "Tag" input name="tag" value=(q.tag) size="12"; }
                label { "Destination host" input name="host" value=(q.host) size="16"; }
                label { "Job id" input name="id" value=(q.id) size="24"; }
                label { "Per page" select name="limit" {
                    @for n in [25usize, 50, 100, 200] { option value=(n) selected[q.limit == n] { (n) } }
                } }
                button.primary type="submit" { "Filter" }
                a.btn href="/jobs" { "Clear" }
            }
        }
        @if let Some(p) = problem { div.flash.bad { (p) } }
        div.panel data-live {
            (jobs_table(now, rows))
            div.pager {
                span.small.muted { (rows.len()) " jobs on this page, newest first" }
                span.actions {
                    @if paged { a.btn href=(q.link(None)) { "⟲ Newest" } }
                    @if let Some(c) = next { a.btn href=(q.link(Some(c))) rel="next" { "Older →" } }
                }
            }
        }
        div.grid2 {
            div.panel {
                h2 { "Requeue all failed jobs" }
                form.filters method="post" action="/bulk/requeue" data-confirm="Requeue every matching failed job?" {
                    (csrf_field(frame.csrf))
                    label { "Group (optional)" input name="group" value=(q.group) size="12"; }
                    label { "Tag (optional)" input name="tag" value=(q.tag) size="12"; }
                    label { "Host (optional)" input name="host" value=(q.host) size="14"; }
                    button.primary type="submit" { "Requeue failed" }
                }
            }
            div.panel {
                h2 { "Delete succeeded jobs" }
                form.filters method="post" action="/bulk/purge" data-confirm="Delete these succeeded jobs for good?" {
                    (csrf_field(frame.csrf))
                    label { "Created more than" select name="older_than" {
                        option value="3600" { "1 hour ago" }
                        option value="21600" { "6 hours ago" }
                        option value="86400" selected { "1 day ago" }
                        option value="604800" { "7 days ago" }
                        option value="0" { "any time (all)" }
                    } }
                    button.danger type="submit" { "Delete" }
                }
            }
        }
    };
    respond(page("Jobs", frame, body))
}

/// Shows `to_auth` only as its scheme, never the secret.
fn mask_auth(auth: &str) -> String {
    match auth.split_once(' ') {
        Some((scheme, _)) if scheme.len() <= 16 => format!("{scheme} ••••••••"),
        _ => "••••••••".to_owned(),
    }
}

/// One job: request, attempts and actions.
/// `stuck_after` is `RECONCILE_AFTER`: past it, a job that made no progress
/// may be requeued by hand (the store decides for sure).
pub(super) fn job(frame: &Frame, now: DateTime<Utc>, job: &JobRecord, stuck_after: std::time::Duration) -> Response {
    let payload = serde_json::to_string_pretty(&job.spec.payload).unwrap_or_default();
    let id = job.id.as_str();
    let body = html! {
        p.small { a href="/jobs" { "← Jobs" } }
        h1.mono { (id) }
        div data-live {
            div.grid2 {
                div.panel {
                    h2 { "Status" }
                    dl.kv {
                        dt { "State" } dd #job-state { (badge(job.state)) }
                        dt { "Attempts" } dd { (job.attempts) " (cycle " (job.cycle) ", " (job.cycle_attempts) " in this cycle)" }
                        dt { "Last result" } dd { (result(job.last_status, job.last_error.as_deref())) }
                        @if let Some(at) = job.next_attempt_at {
                            dt { "Next retry" } dd { (ago(now, at)) " · " (at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        }
                        dt { "Created" } dd { (ago(now, job.created_at)) " · " (job.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        dt { "Updated" } dd { (ago(now, job.updated_at)) }
                    }
                    div.actions {
                        @let idle = (now - job.updated_at).to_std().is_ok_and(|age| age > stuck_after);
                        @if job.state == JobState::Failed
                            || (idle && matches!(job.state, JobState::Queued | JobState::Delivering)) {
                            form.inline method="post" action={ "/jobs/" (id) "/requeue" } {
                                (csrf_field(frame.csrf)) button.primary #requeue type="submit" { "Requeue" }
                            }
                        }
                        @if job.state == JobState::Scheduled {
                            form.inline method="post" action={ "/jobs/" (id) "/retry" } {
                                (csrf_field(frame.csrf)) button.primary #retry-now type="submit" { "Retry now" }
                            }
                        }
                        form.inline method="post" action={ "/jobs/" (id) "/delete" } data-confirm="Delete this job and its history?" {
                            (csrf_field(frame.csrf)) button.danger #delete type="submit" { "Delete" }
                        }
                    }
                }
                div.panel {
                    h2 { "Request" }
                    dl.kv {
                        dt { "to_url" } dd.mono { (job.spec.to_url) }
                        @if job.spec.delivery.is_none() {
                            dt { "to_auth" } dd.mono { @match &job.spec.to_auth { Some(a) => (mask_auth(a.expose_secret())), None => span.muted { "none" } } }
                            dt { "Group" } dd { (job.spec.group.as_ref().map(|l| l.as_str()).unwrap_or("—")) }
                            dt { "Tag" } dd { (job.spec.tag.as_ref().map(|l| l.as_str()).unwrap_or("—")) }
                        }
                    }
                }
            }
            div.panel {
                h2 { "Attempts" }
                @if let Some(why) = &job.stop_reason {
                    p.muted { "Stopped: " (why) }
                }
                @if job.state == JobState::Held {
                    p.muted #held-note { "Held: its endpoint is disabled. Enabling the endpoint sends it, \
                        without spending an attempt." }
                }
                @if job.attempt_log.is_empty() {
                    div.empty { "No attempt yet." }
                } @else {
                    div.table-wrap { table #attempts {
                        thead { tr { th.num { "#" } th.num { "Cycle" } th { "Started" } th.num { "Duration" } th { "Result" } th.hide-sm { "Worker" } } }
                        tbody {
                            @for a in job.attempt_log.iter().rev() {
                                tr {
                                    td.num { (a.attempt) } td.num { (a.cycle) }
                                    td { (ago(now, a.started_at)) }
                                    td.num { (a.duration_ms) " ms" }
                                    td.wrap {
                                        (result(a.status, a.error.as_deref()))
                                        @if let Some(body) = &a.response_body {
                                            // The first bytes the receiver answered (maud escapes them).
                                            pre.small.response { code { (body.chars().take(512).collect::<String>()) @if a.response_truncated || body.chars().count() > 512 { " …" } } }
                                        }
                                    }
                                    td.hide-sm.mono.small { (a.worker) }
                                }
                            }
                        }
                    } }
                }
            }
        }
        @match &job.spec.delivery {
            // A delivery's body is its event's envelope, kept with the event.
            Some(d) => (delivery_panel(d)),
            None => div.panel {
                h2 { "Payload" }
                pre.payload { code { (payload) } }
            },
        }
    };
    respond(page(id, frame, body))
}

/// The worker registry.
pub(super) fn workers(frame: &Frame, now: DateTime<Utc>, workers: &[WorkerInfo]) -> Response {
    let body = html! {
        h1 { "Workers" }
        div.panel data-live {
            @if workers.is_empty() {
                div.empty { "No worker has sent a heartbeat recently. Start one with " code { "hook-slinger-worker" } "." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th { "Worker" } th { "Status" } th.hide-sm { "Host" } th.num.hide-sm { "PID" } th { "Started" }
                        th { "Last heartbeat" } th.num { "In flight" } th.num { "Delivered" } th.num { "Failed" }
                    } }
                    tbody {
                        @for w in workers {
                            tr {
                                td.mono.small { (w.beat.name) }
                                td { @if w.alive { span.badge.alive { "live" } } @else { span.badge.gone { "gone" } } }
                                td.hide-sm { (w.beat.host) } td.num.hide-sm { (w.beat.pid) }
                                td { (ago(now, w.beat.started_at)) }
                                td { (ago(now, w.beat.last_beat)) }
                                td.num { (w.beat.in_flight) } td.num { (w.beat.delivered) } td.num { (w.beat.failed) }
                            }
                        }
                    }
                } }
            }
            p.small.muted { "Workers beat every second. One silent for 5 s is shown as gone and dropped after 30 s." }
        }
    };
    respond(page("Workers", frame, body))
}

/// A path segment, percent-encoded: event ids may hold `/`, `?` or `#`.
fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

fn endpoints_href(tenant: &TenantId) -> String {
    format!("/tenants/{tenant}/endpoints")
}

fn endpoint_href(tenant: &TenantId, id: impl std::fmt::Display) -> String {
    format!("/tenants/{tenant}/endpoints/{id}")
}

fn event_href(tenant: &TenantId, id: &EventId) -> String {
    format!("/tenants/{tenant}/events/{}", segment(id.as_str()))
}

fn sources_href(tenant: &TenantId) -> String {
    format!("/tenants/{tenant}/sources")
}

fn source_href(tenant: &TenantId, id: impl std::fmt::Display) -> String {
    format!("/tenants/{tenant}/sources/{}", segment(&id.to_string()))
}

/// A job page's stand-in for the payload when the job is a delivery.
fn delivery_panel(d: &DeliveryRef) -> Markup {
    html! {
        div.panel #delivery {
            h2 { "Delivery of an event" }
            dl.kv {
                dt { "Tenant" } dd { a href=(endpoints_href(&d.tenant)) { (d.tenant) } }
                dt { "Event" } dd.mono { a href=(event_href(&d.tenant, &d.event_id)) { (d.event_id) } }
                dt { "Event type" } dd.mono { (d.event_type) }
                dt { "Endpoint" } dd.mono { a href=(endpoint_href(&d.tenant, &d.endpoint_id)) { (d.endpoint_id) } }
            }
            p.small.muted { "The body is the event's payload in the Standard Webhooks envelope, \
                signed with the endpoint's secrets when it is sent." }
        }
    }
}

/// Every tenant with endpoints.
pub(super) fn tenants(frame: &Frame, tenants: &[(String, u64)]) -> Response {
    let body = html! {
        h1 { "Tenants" }
        div.panel {
            @if tenants.is_empty() {
                div.empty { "No tenant has an endpoint yet. Register one with " code { "POST /api/v1/tenants/{tenant}/endpoints" } "." }
            } @else {
                div.table-wrap { table #tenants {
                    thead { tr { th { "Tenant" } th.num { "Endpoints" } th { "" } th { "" } } }
                    tbody {
                        @for (tenant, n) in tenants {
                            tr {
                                td { a href={ "/tenants/" (tenant) "/endpoints" } { (tenant) } }
                                td.num { (n) }
                                td { a href={ "/tenants/" (tenant) "/events" } { "Events" } }
                                td { a href={ "/tenants/" (tenant) "/sources" } { "Sources" } }
                            }
                        }
                    }
                } }
            }
        }
    };
    respond(page("Tenants", frame, body))
}

fn types_text(ep: &Endpoint) -> String {
    if ep.event_types.is_empty() {
        "every type".to_owned()
    } else {
        ep.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn filter_text(ep: &Endpoint) -> Option<String> {
    ep.filter.as_ref().map(|f| serde_json::Value::Object(f.as_json().clone()).to_string())
}

fn last_failure(now: DateTime<Utc>, h: &EndpointHealth) -> Markup {
    html! {
        @match &h.last_failure {
            Some(f) => { (ago(now, f.at)) " " span.small.muted { (f.error) } },
            None => span.muted { "—" },
        }
    }
}

fn enabled_badge(ep: &Endpoint) -> Markup {
    html! {
        @if ep.disabled { span.badge.gone { "disabled" } } @else { span.badge.alive { "enabled" } }
    }
}

/// The last hour's success rate and what it means in one word.
fn health(h: &EndpointHealth) -> Markup {
    let hour = &h.stats.hour;
    let word = h.health();
    let class = match word {
        Health::Healthy => "ok",
        Health::Failing => "err",
        Health::NoTraffic => "idle",
    };
    html! {
        span class={ "badge " (class) } { (word.as_str()) }
        @if let Some(r) = hour.success_rate() {
            " " span title={ (hour.succeeded) " of " (hour.attempts()) " attempts succeeded" } {
                (format!("{:.0} %", r * 100.0)) " " span.small.muted { "of " (hour.attempts()) }
            }
        }
    }
}

/// A breaker's state (with when an open one tries again) and the failures
/// in a row that opened it or may.
fn breaker(now: &FlowNow) -> Markup {
    html! {
        @match (now.breaker, now.open_until) {
            (BreakerState::Open, Some(t)) => span.badge.err title=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
                "open until " (t.format("%H:%M:%S"))
            },
            (BreakerState::Open, None) => span.badge.err { "open" },
            (BreakerState::HalfOpen, _) => span.badge.scheduled { "half open" },
            (BreakerState::Closed, _) => span.badge.ok { "closed" },
        }
        @if now.consecutive_failures > 0 {
            " " span.small.muted { (now.consecutive_failures) " failed in a row" }
        }
    }
}

/// One row of the attempts table.
fn window_row(label: &str, id: &str, w: &Window) -> Markup {
    let ms = |q: f64| w.duration_quantile(q).map(|d| format!("{d} ms")).unwrap_or_else(|| "—".to_owned());
    html! {
        tr id=(id) {
            td { (label) }
            td.num { (w.attempts()) }
            td.num { (w.succeeded) }
            td.num { @match w.success_rate() { Some(r) => (format!("{:.1} %", r * 100.0)), None => "—" } }
            td.num { (ms(0.5)) }
            td.num { (ms(0.99)) }
        }
    }
}

/// What an operator must know about a disabled endpoint with held
/// deliveries, and the button that sends them.
fn held_banner(csrf: &str, h: &EndpointHealth, back: &str) -> Markup {
    let ep = &h.endpoint;
    let held = h.stats.now.held;
    html! {
        div.flash.bad.held-banner #{ "held-" (ep.id) } role="alert" {
            "Endpoint " span.mono { (ep.id) } " is disabled; " (held)
            @if held == 1 { " delivery is held." } @else { " deliveries are held." }
            " Enable it to send them. "
            form.inline method="post" action={ (endpoint_href(&ep.tenant, &ep.id)) "/enable" } {
                (csrf_field(csrf)) input type="hidden" name="back" value=(back);
                button.primary #{ "release-" (ep.id) } type="submit" { "Enable" }
            }
        }
    }
}

/// Enable/disable, rotate and recover for one endpoint; `back` names the
/// page the action returns to.
fn endpoint_actions(csrf: &str, ep: &Endpoint, back: &str) -> Markup {
    let base = endpoint_href(&ep.tenant, &ep.id);
    let id = &ep.id;
    html! {
        div.row-actions {
            @if ep.disabled {
                form.inline method="post" action={ (base) "/enable" } {
                    (csrf_field(csrf)) input type="hidden" name="back" value=(back);
                    button.primary #{ "enable-" (id) } type="submit" { "Enable" }
                }
            } @else {
                form.inline method="post" action={ (base) "/disable" }
                    data-confirm="Disable this endpoint? It will match no new event." {
                    (csrf_field(csrf)) input type="hidden" name="back" value=(back);
                    button.danger #{ "disable-" (id) } type="submit" { "Disable" }
                }
            }
            form.inline method="post" action={ (base) "/rotate" }
                data-confirm="Rotate the secret? The old one keeps signing for 24 hours." {
                (csrf_field(csrf)) input type="hidden" name="back" value=(back);
                button #{ "rotate-" (id) } type="submit" { "Rotate secret" }
            }
            form.inline method="post" action={ (base) "/recover" } title="Requeue failed deliveries of events created since" {
                (csrf_field(csrf)) input type="hidden" name="back" value=(back);
                input #{ "since-" (id) } name="since" value="24h" size="4" aria-label="since (24h, 30m, 7d or an RFC 3339 time)";
                button #{ "recover-" (id) } type="submit" { "Recover since" }
            }
        }
    }
}

/// A tenant's endpoints with their health and actions.
pub(super) fn endpoints(
    frame: &Frame,
    now: DateTime<Utc>,
    tenant: &TenantId,
    rows: &[EndpointHealth],
    next: Option<&str>,
    paged: bool,
) -> Response {
    let body = html! {
        p.small { a href="/tenants" { "← Tenants" } }
        h1 { "Endpoints of " (tenant) }
        p {
            a #events-link href={ "/tenants/" (tenant) "/events" } { "Recent events →" } " · "
            a #sources-link href=(sources_href(tenant)) { "Sources →" }
        }
        @for h in rows.iter().filter(|h| h.holds_deliveries()) { (held_banner(frame.csrf, h, "list")) }
        div.panel {
            @if rows.is_empty() {
                div.empty { "This tenant has no endpoints." }
            } @else {
                div.table-wrap { table #endpoints {
                    thead { tr {
                        th { "Endpoint" } th { "Event types" } th { "Filter" }
                        th { "Health, last hour" } th { "Breaker" } th { "Last failure" } th { "Status" } th { "Actions" }
                    } }
                    tbody {
                        @for h in rows {
                            @let ep = &h.endpoint;
                            tr #{ "row-" (ep.id) } {
                                td.wrap.wide {
                                    a.mono href=(endpoint_href(tenant, &ep.id)) { (ep.url) }
                                    br; span.small.muted.mono { (ep.id) }
                                }
                                td.mono.wrap.mid.types { (types_text(ep)) }
                                td.mono.wrap.mid.filter { @match filter_text(ep) { Some(f) => (f), None => span.muted { "—" } } }
                                td.health { (health(h)) }
                                td.breaker { (breaker(&h.stats.now)) }
                                td.wrap { (last_failure(now, h)) }
                                td.state { (enabled_badge(ep)) @if h.stats.now.held > 0 {
                                    " " span.small.muted { (h.stats.now.held) " held" } } }
                                td { (endpoint_actions(frame.csrf, ep, "list")) }
                            }
                        }
                    }
                } }
            }
            div.pager {
                span.small.muted { "Health is of every attempt in the last hour; the last failure of each endpoint's latest "
                    (HEALTH_SAMPLE) " deliveries." }
                span.actions {
                    @if paged { a.btn href=(endpoints_href(tenant)) { "⟲ First" } }
                    @if let Some(c) = next { a.btn href={ (endpoints_href(tenant)) "?after=" (c) } rel="next" { "More →" } }
                }
            }
        }
    };
    respond(page(&format!("Endpoints of {tenant}"), frame, body))
}

fn deliveries_table(now: DateTime<Utc>, csrf: &str, rows: &[JobRecord], by_event: bool) -> Markup {
    html! {
        @if rows.is_empty() {
            div.empty { "No deliveries yet." }
        } @else {
            div.table-wrap { table #deliveries {
                thead { tr {
                    th { "Delivery" } @if by_event { th { "Endpoint" } } @else { th { "Event" } th { "Type" } }
                    th { "State" } th.num { "Attempts" } th { "Last result" } th { "Created" } th { "" }
                } }
                tbody {
                    @for j in rows {
                        tr {
                            td.mono { a href={ "/jobs/" (j.id) } title=(j.id) { (short_id(j.id.as_str())) } }
                            @match (&j.spec.delivery, by_event) {
                                (Some(d), true) => td.mono.wrap {
                                    a href=(endpoint_href(&d.tenant, &d.endpoint_id)) { (d.endpoint_id) }
                                    br; span.small.muted { (j.spec.to_url) }
                                },
                                (Some(d), false) => {
                                    td.mono { a href=(event_href(&d.tenant, &d.event_id)) { (d.event_id) } }
                                    td.mono { (d.event_type) }
                                },
                                (None, true) => td { "—" },
                                (None, false) => { td { "—" } td { "—" } },
                            }
                            td.state { (badge(j.state)) @if let Some(at) = j.next_attempt_at {
                                " " span.small.muted { (relative(now, at)) } } }
                            td.num { (j.attempts) }
                            td.wrap { (result(j.last_status, j.last_error.as_deref())) }
                            td { (ago(now, j.created_at)) }
                            td {
                                form.inline method="post" action={ "/jobs/" (j.id) "/requeue" } {
                                    (csrf_field(csrf)) button.requeue type="submit" { "Requeue" }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

/// One endpoint: its settings, health, actions and latest deliveries.
pub(super) fn endpoint(frame: &Frame, now: DateTime<Utc>, h: &EndpointHealth, deliveries: &[JobRecord]) -> Response {
    let ep = &h.endpoint;
    let grace: Vec<_> = ep.previous_secrets.iter().filter(|p| p.expires_at > now).collect();
    let body = html! {
        p.small { a href=(endpoints_href(&ep.tenant)) { "← Endpoints of " (ep.tenant) } }
        h1.mono { (ep.id) }
        @if h.holds_deliveries() { (held_banner(frame.csrf, h, "endpoint")) }
        div.grid2 {
            div.panel #endpoint {
                h2 { "Endpoint" }
                dl.kv {
                    dt { "Tenant" } dd { (ep.tenant) }
                    dt { "URL" } dd.mono { (ep.url) }
                    dt { "Event types" } dd.mono.types { (types_text(ep)) }
                    dt { "Filter" } dd.mono.filter { @match filter_text(ep) { Some(f) => (f), None => span.muted { "none" } } }
                    dt { "Status" } dd.state { (enabled_badge(ep)) }
                    dt { "Secret" } dd.mono {
                        "whsec_••••••••"
                        @if !grace.is_empty() {
                            " " span.small.muted { "+ " (grace.len()) " previous, signing until "
                                @for (i, p) in grace.iter().enumerate() { @if i > 0 { ", " } (p.expires_at.format("%Y-%m-%d %H:%M UTC")) } }
                        }
                    }
                    @if !ep.headers.is_empty() {
                        dt { "Headers" } dd.mono { (ep.headers.keys().cloned().collect::<Vec<_>>().join(", ")) " " span.small.muted { "(values hidden)" } }
                    }
                    dt { "Max in flight" } dd #max-in-flight { (ep.max_in_flight) }
                    dt { "Rate limit" } dd #rate-limit { @match ep.rate_limit { Some(r) => { (r) " per second" }, None => span.muted { "none" } } }
                    dt { "Ordered" } dd #ordered { @if ep.ordered { "yes" } @else { "no" } }
                    @if !ep.description.is_empty() { dt { "Description" } dd { (ep.description) } }
                    dt { "Created" } dd { (ago(now, ep.created_at)) " · " (ep.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                    dt { "Updated" } dd { (ago(now, ep.updated_at)) }
                }
                div.actions { (endpoint_actions(frame.csrf, ep, "endpoint")) }
            }
            div.panel #flow {
                h2 { "Health and flow" }
                dl.kv {
                    dt { "Health, last hour" } dd.health { (health(h)) }
                    dt { "Breaker" } dd.breaker { (breaker(&h.stats.now)) }
                    dt { "Failures in a row" } dd #consecutive-failures { (h.stats.now.consecutive_failures) }
                    dt { "In flight" } dd #in-flight { (h.stats.now.in_flight) " of " (ep.max_in_flight) }
                    dt { "Waiting" } dd #waiting { (h.stats.now.waiting) }
                    dt { "Held" } dd #held { (h.stats.now.held) }
                    dt { "Last failure" } dd { (last_failure(now, h)) }
                }
                p.small.muted { "Waiting: parked by flow control (ordered, breaker, in flight, rate limit). \
                    Held: kept while the endpoint is disabled. The last failure is of the latest "
                    (HEALTH_SAMPLE) " deliveries." }
            }
        }
        div.panel {
            h2 { "Attempts" }
            div.table-wrap { table #windows {
                thead { tr {
                    th { "Window" } th.num { "Attempts" } th.num { "Succeeded" } th.num { "Success rate" }
                    th.num { "p50" } th.num { "p99" }
                } }
                tbody {
                    (window_row("Last hour", "window-hour", &h.stats.hour))
                    (window_row("Last day", "window-day", &h.stats.day))
                }
            } }
            p.small.muted { "Durations are bucketed: within 25 %." }
        }
        div.panel data-live {
            h2 { "Latest deliveries" }
            (deliveries_table(now, frame.csrf, deliveries, false))
        }
    };
    respond(page(ep.id.as_str(), frame, body))
}

/// The events page's state, echoed back into its form and links.
pub(super) struct EventsView<'a> {
    pub tenant: &'a TenantId,
    pub event_type: &'a str,
    pub problem: Option<String>,
    pub next: Option<String>,
    pub paged: bool,
}

impl EventsView<'_> {
    fn link(&self, before: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !self.event_type.is_empty() {
            q.append_pair("type", self.event_type);
        }
        if let Some(b) = before {
            q.append_pair("before", b);
        }
        format!("/tenants/{}/events?{}", self.tenant, q.finish())
    }
}

/// A tenant's recent events.
pub(super) fn events(frame: &Frame, now: DateTime<Utc>, v: &EventsView, rows: &[(EventId, EventRead)]) -> Response {
    let tenant = v.tenant;
    let body = html! {
        p.small { a href=(endpoints_href(tenant)) { "← Endpoints of " (tenant) } }
        h1 { "Events of " (tenant) }
        div.panel {
            form.filters method="get" action={ "/tenants/" (tenant) "/events" } {
                label { "Event type" input name="type" value=(v.event_type) size="24"; }
                button.primary type="submit" { "Filter" }
                a.btn href={ "/tenants/" (tenant) "/events" } { "Clear" }
            }
        }
        @if let Some(p) = &v.problem { div.flash.bad { (p) } }
        div.panel data-live {
            @if rows.is_empty() {
                div.empty { "No events here." }
            } @else {
                div.table-wrap { table #events {
                    thead { tr {
                        th { "Event" } th { "Type" } th { "Created" } th.num { "Matched" } th.num { "Deliveries made" } th { "Expansion" }
                    } }
                    tbody {
                        @for (id, ev) in rows {
                            tr {
                                td.mono { a href=(event_href(tenant, id)) { (id) } }
                                td.mono { (ev.event_type) }
                                td { (ago(now, ev.created_at)) }
                                td.num { (ev.matched) }
                                td.num { (ev.made) }
                                td { @if ev.expanded { span.badge.ok { "done" } } @else { span.badge.scheduled { "expanding" } } }
                            }
                        }
                    }
                } }
            }
            div.pager {
                span.small.muted { (rows.len()) " events on this page, newest first" }
                span.actions {
                    @if v.paged { a.btn href=(v.link(None)) { "⟲ Newest" } }
                    @if let Some(c) = &v.next { a.btn href=(v.link(Some(c))) rel="next" { "Older →" } }
                }
            }
        }
    };
    respond(page(&format!("Events of {tenant}"), frame, body))
}

/// One event: its payload and its deliveries.
pub(super) fn event(frame: &Frame, now: DateTime<Utc>, tenant: &TenantId, e: &EventWithDeliveries) -> Response {
    let ev = &e.event;
    let payload = serde_json::from_str::<serde_json::Value>(&ev.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| ev.payload.clone());
    let body = html! {
        p.small { a href={ "/tenants/" (tenant) "/events" } { "← Events of " (tenant) } }
        h1.mono { (e.id) }
        div data-live {
            div.panel #event {
                h2 { "Event" }
                dl.kv {
                    dt { "Tenant" } dd { a href=(endpoints_href(tenant)) { (tenant) } }
                    dt { "Type" } dd.mono #event-type { (ev.event_type) }
                    dt { "Created" } dd { (ago(now, ev.created_at)) " · " (ev.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                    @if let Some(at) = ev.deliver_at {
                        dt { "Deliver at" } dd { (ago(now, at)) " · " (at.format("%Y-%m-%d %H:%M:%S UTC")) }
                    }
                    dt { "Endpoints matched" } dd { (ev.matched) }
                    dt { "Deliveries made" } dd #made { (ev.made) @if !ev.expanded { " " span.badge.scheduled { "expanding" } } }
                    @if let Some(o) = &ev.origin {
                        dt { "Ingested" } dd #ingested {
                            "by source " a.mono href=(source_href(tenant, &o.source)) { (o.source) }
                            @if !o.delivery_id.is_empty() { " (delivery id " span.mono { (o.delivery_id) } ")" }
                            " " span.small.muted { (o.raw.len()) " bytes received" }
                        }
                    }
                }
            }
            div.panel {
                h2 { "Deliveries" }
                (deliveries_table(now, frame.csrf, &e.deliveries, true))
            }
        }
        div.panel {
            h2 { "Payload" }
            pre.payload { code { (payload) } }
        }
    };
    respond(page(e.id.as_str(), frame, body))
}

/// A source's scheme, with a warning badge when it verifies nothing.
fn verification(v: &Verify) -> Markup {
    html! {
        span.mono.scheme { (v.scheme_name()) }
        @if matches!(v, Verify::None) {
            " " span.badge.warn.unverified title="Requests are not verified: whoever knows the ingest URL can post events" {
                "unverified"
            }
        }
    }
}

/// Refused requests: the total, then each reason that happened.
fn refused_cell(c: &SourceCounts) -> Markup {
    html! {
        span.refused-total { (c.refused_total()) }
        @for (reason, n) in c.refused.iter().filter(|(_, n)| *n > 0) {
            br; span.small.muted.reason { (reason) " " (n) }
        }
    }
}

/// A tenant's sources with their ingest URLs and last hour's counts.
pub(super) fn sources(frame: &Frame, now: DateTime<Utc>, tenant: &TenantId, rows: &[SourceActivity]) -> Response {
    let body = html! {
        p.small { a href="/tenants" { "← Tenants" } }
        h1 { "Sources of " (tenant) }
        p {
            a #endpoints-link href=(endpoints_href(tenant)) { "Endpoints →" } " · "
            a #events-link href={ "/tenants/" (tenant) "/events" } { "Recent events →" }
        }
        div.panel data-live {
            @if rows.is_empty() {
                div.empty { "This tenant has no sources. Register one with "
                    code { "POST /api/v1/tenants/" (tenant) "/sources" } "." }
            } @else {
                div.table-wrap { table #sources {
                    thead { tr {
                        th { "Source" } th { "Ingest URL" } th { "Verification" }
                        th.num { "Accepted" } th.num { "Duplicate" } th.num { "Rate limited" } th.num { "Refused" }
                        th title="When its latest request came" { "Latest" }
                    } }
                    tbody {
                        @for a in rows {
                            @let src = &a.source;
                            @let c = &a.counts;
                            tr #{ "row-" (src.id) } {
                                td.wrap.src {
                                    a.source-link href=(source_href(tenant, &src.id)) { (src.name) }
                                    br; span.small.muted.mono { (src.id) }
                                }
                                // It may break after `/ingest/` on a narrow screen, not inside the id.
                                td.mono.ingest {
                                    @let path = src.ingest_path();
                                    @match path.rsplit_once('/') {
                                        Some((head, id)) => { (head) "/" wbr; (id) },
                                        None => (path),
                                    }
                                }
                                td.verification { (verification(&src.verify)) }
                                td.num.accepted { (c.accepted) }
                                td.num.duplicate { (c.duplicate) }
                                td.num.rate-limited { (c.rate_limited) }
                                td.num.refused { (refused_cell(c)) }
                                td { @match a.last_request_at() { Some(t) => (ago(now, t)), None => span.muted { "—" } } }
                            }
                        }
                    }
                } }
            }
            div.pager {
                span.small.muted { "Counts are of the last hour, in 5-minute steps. Providers POST to the ingest URL \
                    on the API's address, without an API token." }
            }
        }
    };
    respond(page(&format!("Sources of {tenant}"), frame, body))
}

/// Where a source finds a provider's delivery id, by which replays are
/// recognised: the scheme's own place, else an `Idempotency-Key` header.
fn replay_key(v: &Verify) -> Markup {
    let own = match v {
        Verify::None => None,
        Verify::Signed(s) => match &s.scheme {
            Scheme::Github => Some(html! { span.mono { "X-GitHub-Delivery" } " header" }),
            Scheme::Stripe => Some(html! { "the body's " span.mono { "id" } }),
            Scheme::StandardWebhooks => Some(html! { span.mono { "webhook-id" } " header" }),
            Scheme::HmacSha256 { id_header: Some(h), .. } => Some(html! { span.mono { (h) } " header" }),
            Scheme::HmacSha256 { id_header: None, .. } => None,
        },
    };
    html! {
        @if let Some(own) = own { (own) ", else " }
        span.mono { "Idempotency-Key" } " header"
    }
}

/// A source's settings, secrets left out.
fn source_settings(now: DateTime<Utc>, src: &Source, default_rate: u32) -> Markup {
    html! {
        dl.kv {
            dt { "Id" } dd.mono { (src.id) }
            dt { "Tenant" } dd { a href=(endpoints_href(&src.tenant)) { (src.tenant) } }
            dt { "Ingest URL" } dd.mono #ingest-url { (src.ingest_path()) }
            dt { "Verification" } dd #verification { (verification(&src.verify)) }
            @if let Verify::Signed(s) = &src.verify {
                dt { "Secret" } dd.mono #secret {
                    "••••••••"
                    @if let Some(p) = s.previous.as_ref().filter(|p| p.expires_at > now) {
                        " " span.small.muted { "+ previous, accepted until " (p.expires_at.format("%Y-%m-%d %H:%M UTC")) }
                    }
                }
                @match &s.scheme {
                    Scheme::Stripe | Scheme::StandardWebhooks => {
                        dt { "Timestamp tolerance" } dd { (s.tolerance_seconds) " s" }
                    }
                    Scheme::HmacSha256 { header, encoding, prefix, .. } => {
                        dt { "Signature header" } dd.mono { (header) }
                        dt { "Encoding" } dd { @match encoding { Encoding::Hex => "hex", Encoding::Base64 => "base64" } }
                        dt { "Prefix" } dd.mono { @if prefix.is_empty() { span.muted { "none" } } @else { (prefix) } }
                    }
                    Scheme::Github => {}
                }
            }
            dt { "Replays recognised by" } dd { (replay_key(&src.verify)) }
            dt { "Default event type" } dd.mono { (src.default_event_type) }
            dt { "Event type from" } dd {
                @match &src.event_type_from {
                    Some(EventTypeFrom::Header(h)) => { "header " span.mono { (h) } },
                    Some(EventTypeFrom::JsonPointer(p)) => { "JSON pointer " span.mono { (p) } },
                    None => span.muted { "always the default" },
                }
            }
            dt { "Rate limit" } dd #rate-limit {
                @match (src.rate_limit, default_rate) {
                    (Some(r), _) => { (r) " per second" },
                    (None, 0) => span.muted { "none (SOURCE_RATE_LIMIT=0)" },
                    (None, d) => { (d) " per second " span.small.muted { "(SOURCE_RATE_LIMIT)" } },
                }
            }
            dt { "Created" } dd { (ago(now, src.created_at)) " · " (src.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
            dt { "Updated" } dd { (ago(now, src.updated_at)) }
        }
    }
}

/// A request's result as a badge.
fn request_result(result: &str) -> Markup {
    let class = match result {
        "accepted" => "ok",
        "refused" => "err",
        _ => "idle",
    };
    html! { span class={ "badge " (class) } { (result) } }
}

fn requests_table(now: DateTime<Utc>, tenant: &TenantId, rows: &[LoggedRequest]) -> Markup {
    html! {
        @if rows.is_empty() {
            div.empty { "No request yet." }
        } @else {
            div.table-wrap { table #requests {
                thead { tr {
                    th { "Time" } th { "Result" } th { "Reason" } th { "Event" } th { "Delivery id" } th.num { "Bytes" }
                } }
                tbody {
                    @for r in rows {
                        tr class={ "req " (r.result) } {
                            td { @match DateTime::from_timestamp_millis(r.at) { Some(t) => (ago(now, t)), None => "—" } }
                            td { (request_result(&r.result)) }
                            td.mono { @match &r.reason { Some(why) => (why), None => span.muted { "—" } } }
                            td.mono {
                                @match r.event_id.as_deref().map(|e| (e, EventId::parse(e))) {
                                    Some((_, Ok(id))) => a.event-link href=(event_href(tenant, &id)) { (id) },
                                    Some((raw, Err(_))) => (raw),
                                    None => span.muted { "—" },
                                }
                            }
                            td.mono { @match &r.delivery_id { Some(d) => (d), None => span.muted { "—" } } }
                            td.num { (r.bytes) }
                        }
                    }
                }
            } }
        }
    }
}

/// One source: its settings (never its secrets), its last hour's counts by
/// result and reason, and its latest requests, each accepted one linked to
/// its event and deliveries.
pub(super) fn source(frame: &Frame, now: DateTime<Utc>, a: &SourceActivity, default_rate: u32) -> Response {
    let src = &a.source;
    let c = &a.counts;
    let tenant = &src.tenant;
    let count_row = |id: &str, label: Markup, n: u64| {
        html! { tr id=(id) { td { (label) } td.num { (n) } } }
    };
    let body = html! {
        p.small { a href=(sources_href(tenant)) { "← Sources of " (tenant) } }
        h1 { (src.name) }
        @if matches!(src.verify, Verify::None) {
            div.flash.bad #unverified-warning role="alert" {
                "This source verifies nothing (scheme " span.mono { "none" } "): whoever knows its ingest URL can post \
                 events to tenant " (tenant) "."
            }
        }
        div data-live {
            div.grid2 {
                div.panel #source { h2 { "Source" } (source_settings(now, src, default_rate)) }
                div.panel {
                    h2 { "Last hour" }
                    div.table-wrap { table #counts {
                        thead { tr { th { "Result" } th.num { "Requests" } } }
                        tbody {
                            (count_row("count-accepted", html! { "Accepted" }, c.accepted))
                            (count_row("count-duplicate", html! { "Duplicate" }, c.duplicate))
                            (count_row("count-rate_limited", html! { "Rate limited" }, c.rate_limited))
                            (count_row("count-refused", html! { "Refused" }, c.refused_total()))
                            @for (reason, n) in &c.refused {
                                (count_row(&format!("count-refused-{reason}"), html! { span.small.muted { "└ " } span.mono { (reason) } }, *n))
                            }
                        }
                    } }
                    p.small.muted { "In 5-minute steps. Duplicates are replays of a delivery id already accepted: \
                        not delivered again. Rate-limited requests are answered 429 and only counted." }
                }
            }
            div.panel {
                h2 { "Latest requests" }
                (requests_table(now, tenant, &a.latest))
                p.small.muted { "The latest " (LOGGED) " requests, newest first. A refused request keeps only this line; \
                    an accepted one is its event (with the request's body and headers) and the event's deliveries." }
            }
        }
    };
    respond(page(&src.name, frame, body))
}

/// The login form.
pub(super) fn login(problem: Option<&str>) -> Response {
    let frame = Frame { nav: Nav::None, csrf: "", logged_in: false, flash: problem.map(|p| (false, p.to_owned())) };
    let body = html! {
        div.panel.login {
            h1 { "Sign in" }
            form method="post" action="/login" {
                label { "User" input name="user" autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    respond(page("Sign in", &frame, body))
}

/// A page that only says what went wrong.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let frame = Frame { nav: Nav::None, csrf: "", logged_in: false, flash: None };
    let body = html! {
        div.panel { h1 { (status.canonical_reason().unwrap_or("Error")) } p { (message) } p { a href="/" { "Overview" } } }
    };
    respond(page("Error", &frame, body)).with_status(status).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_strings_are_escaped() {
        let markup = result(Some(500), Some("<script>alert(1)</script>")).into_string();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(markup.contains("&lt;script&gt;"), "{markup}");
    }

    #[test]
    fn auth_is_masked() {
        assert_eq!(mask_auth("Bearer secret"), "Bearer ••••••••");
        assert_eq!(mask_auth("secret"), "••••••••");
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc::now();
        assert_eq!(relative(now, now - chrono::Duration::seconds(5)), "5 s ago");
        assert_eq!(relative(now, now + chrono::Duration::seconds(120)), "in 2 min");
    }
}
