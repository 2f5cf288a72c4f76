//! The monitor's command line: the same operations as the web UI, as
//! aligned (coloured on a terminal) tables for people and `--json` for
//! scripts.

use std::{collections::BTreeMap, io::Write, time::Duration};

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use owo_colors::{OwoColorize, Style};
use serde::Serialize;

use crate::{
    config::{ColorMode, LogSettings},
    domain::{EndpointId, EventId, EventType, JobId, Label, TenantId},
    endpoints::BreakerState,
    jobs::{JobRecord, JobState},
    sources::{EventTypeFrom, Verify},
    store::{events::EventRead, Cursor, JobFilter, JobSummary, Requeue, WorkerInfo},
};

use super::{
    console::{
        parse_time, Console, ConsoleError, EndpointHealth, Health, Selection, SourceActivity, BULK_REQUEUE_RATE,
    },
    views::relative,
};

/// `hook-slinger-monitor`: watch webhook jobs and workers, requeue failures.
#[derive(Debug, Parser)]
#[command(name = "hook-slinger-monitor", version)]
pub struct Cli {
    /// What to do; `serve` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// One CLI command.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the web UI on MONITOR_HOST:MONITOR_PORT (the default).
    Serve,
    /// List jobs, newest first.
    Jobs {
        /// queued, delivering, scheduled, succeeded, failed or held.
        #[arg(long)]
        state: Option<String>,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only this destination host.
        #[arg(long)]
        host: Option<String>,
        /// Continue after this cursor (printed after a full page).
        #[arg(long)]
        cursor: Option<String>,
        /// Jobs per page (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one job with its request and every attempt.
    Show {
        /// The job id.
        job_id: String,
    },
    /// Requeue a failed job, or every failed job with --all-failed.
    Requeue {
        /// The job id.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        job_id: Option<String>,
        /// Requeue every failed job (optionally only a group, tag or host).
        #[arg(long)]
        all_failed: bool,
        /// With --all-failed: only this group.
        #[arg(long, requires = "all_failed")]
        group: Option<String>,
        /// With --all-failed: only this tag.
        #[arg(long, requires = "all_failed")]
        tag: Option<String>,
        /// With --all-failed: only this destination host.
        #[arg(long, requires = "all_failed")]
        host: Option<String>,
    },
    /// List live (and recently gone) workers.
    Workers,
    /// Counts per state, queue depth, last hour's deliveries, workers.
    Stats,
    /// List endpoints with their health (last hour's success rate),
    /// breaker, held deliveries and latest failure: one tenant's, or every
    /// tenant's.
    Endpoints {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List events, newest first: one tenant's, or every tenant's (that
    /// has endpoints).
    Events {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only events of this type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Events at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Requeue an endpoint's failed deliveries of events created in a
    /// window.
    Recover {
        /// The endpoint id (`ep_...`).
        endpoint_id: String,
        /// Start of the window: an RFC 3339 time or an age such as 24h.
        #[arg(long)]
        since: String,
        /// End of the window, the same way; now when left out.
        #[arg(long)]
        until: Option<String>,
        /// The endpoint's tenant; looked up when left out.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List a tenant's sources (providers that send to us) with their
    /// ingest URL, scheme (`none`: unverified) and the last hour's
    /// requests: accepted, duplicate, rate limited, refused by reason.
    Sources {
        /// The tenant.
        tenant: String,
    },
}

/// A command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument is not valid.
    #[error("{0}")]
    Usage(String),
    /// No such job.
    #[error("no such job: {0}")]
    NotFound(String),
    /// No such endpoint (for that tenant, when one was named).
    #[error("no such endpoint: {0}")]
    NoEndpoint(String),
    /// The job is not in a state that allows the action.
    #[error("job {id} is {state} and on its way; only failed jobs can be requeued, and jobs stuck for longer than RECONCILE_AFTER")]
    Refused {
        /// The job.
        id: String,
        /// Its state.
        state: JobState,
    },
    /// Redis failed.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// Writing the output failed.
    #[error("could not write the output")]
    Io(#[from] std::io::Error),
    /// JSON encoding failed.
    #[error("could not encode the output")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Whether to colour tables: on a terminal, unless `LOG_COLOR`/`NO_COLOR` say no.
pub fn use_color(log: &LogSettings) -> bool {
    use std::io::IsTerminal;
    match log.color {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => std::io::stdout().is_terminal(),
    }
}

/// How output is written.
pub struct Output<'a> {
    /// Where.
    pub out: &'a mut dyn Write,
    /// JSON instead of tables.
    pub json: bool,
    /// ANSI colours in tables.
    pub color: bool,
}

/// Runs one command other than `serve`.
pub async fn execute(command: Command, console: &Console, o: &mut Output<'_>) -> Result<(), CliError> {
    match command {
        Command::Serve => Err(CliError::Usage("`serve` is run by the binary, not here".to_owned())),
        Command::Jobs { state, group, tag, host, cursor, limit } => {
            let filter = JobFilter {
                state: state.map(|s| s.parse()).transpose().map_err(|e: crate::jobs::UnknownState| usage(e))?,
                group: label(group)?,
                tag: label(tag)?,
                host: host.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
                id: None,
            };
            let cursor: Option<Cursor> = cursor.map(|c| c.parse()).transpose().map_err(usage)?;
            let page = console.list(&filter, cursor.as_ref(), limit).await?;
            jobs(o, &page.jobs, page.next.map(|c| c.to_string()))
        }
        Command::Show { job_id } => {
            let id = parse_id(&job_id)?;
            let job = console.job(&id).await?.ok_or(CliError::NotFound(job_id))?;
            show(o, &job)
        }
        Command::Requeue { job_id: Some(job_id), .. } => {
            let id = parse_id(&job_id)?;
            match console.requeue(&id).await? {
                Requeue::Requeued => {
                    if o.json {
                        json_line(o, &serde_json::json!({"job_id": job_id, "requeued": true, "state": "scheduled"}))
                    } else {
                        Ok(writeln!(
                            o.out,
                            "{} {job_id}: a fresh retry cycle starts now",
                            paint(o.color, "requeued", ok())
                        )?)
                    }
                }
                Requeue::NotStuck(state) => Err(CliError::Refused { id: job_id, state }),
                Requeue::Missing => Err(CliError::NotFound(job_id)),
            }
        }
        Command::Requeue { job_id: None, group, tag, host, .. } => {
            let selection = Selection {
                group: label(group)?,
                tag: label(tag)?,
                host: host.map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()),
            };
            // Slice by slice, each slice's ramp run out before the next
            // starts, so the receivers see BULK_REQUEUE_RATE jobs a second.
            let mut n = 0;
            loop {
                let slice = console.requeue_all_failed(&selection).await?;
                n += slice.requeued;
                if !slice.more {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(slice.requeued / u64::from(BULK_REQUEUE_RATE))).await;
            }
            if o.json {
                json_line(o, &serde_json::json!({"requeued": n}))
            } else {
                Ok(writeln!(o.out, "{} {n} failed jobs", paint(o.color, "requeued", ok()))?)
            }
        }
        Command::Workers => workers(o, &console.workers().await?),
        Command::Stats => stats(o, console).await,
        Command::Endpoints { tenant } => {
            let mut all = Vec::new();
            for tenant in tenants(console, tenant).await? {
                all.extend(console.all_endpoints(&tenant).await?);
            }
            endpoints(o, &all)
        }
        Command::Events { tenant, event_type, limit } => {
            let event_type = event_type.map(|t| EventType::parse(t.trim())).transpose().map_err(usage)?;
            let mut all = Vec::new();
            for tenant in tenants(console, tenant).await? {
                let page = console.event_page(&tenant, event_type.as_ref(), None, limit).await?;
                all.extend(page.into_iter().map(|(id, ev)| (tenant.clone(), id, ev)));
            }
            all.sort_by_key(|e| std::cmp::Reverse(e.2.created_at));
            all.truncate(limit);
            events(o, &all)
        }
        Command::Recover { endpoint_id, since, until, tenant } => {
            recover(o, console, endpoint_id, since, until, tenant).await
        }
        Command::Sources { tenant } => {
            let tenant = TenantId::parse(tenant.trim()).map_err(|e| CliError::Usage(format!("tenant: {e}")))?;
            sources(o, &console.all_sources(&tenant).await?)
        }
    }
}

/// The named tenant, or every tenant with endpoints.
async fn tenants(console: &Console, tenant: Option<String>) -> Result<Vec<TenantId>, CliError> {
    match tenant {
        Some(t) => Ok(vec![TenantId::parse(t.trim()).map_err(|e| CliError::Usage(format!("tenant: {e}")))?]),
        None => Ok(console.tenants().await?.into_iter().filter_map(|(t, _)| TenantId::parse(&t).ok()).collect()),
    }
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

fn label(raw: Option<String>) -> Result<Option<Label>, CliError> {
    Label::parse_optional(raw.unwrap_or_default().trim()).map_err(|e| CliError::Usage(format!("label: {e}")))
}

fn parse_id(raw: &str) -> Result<JobId, CliError> {
    JobId::parse(raw.trim()).map_err(usage)
}

fn json_line(o: &mut Output<'_>, value: &impl Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *o.out, value)?;
    writeln!(o.out)?;
    Ok(())
}

fn ok() -> Style {
    Style::new().green().bold()
}

fn paint(color: bool, text: &str, style: Style) -> String {
    if color {
        text.style(style).to_string()
    } else {
        text.to_owned()
    }
}

fn state_style(state: JobState) -> Style {
    match state {
        JobState::Queued => Style::new().blue(),
        JobState::Delivering => Style::new().magenta(),
        JobState::Scheduled => Style::new().yellow(),
        JobState::Succeeded => Style::new().green(),
        JobState::Failed => Style::new().red().bold(),
        JobState::Held => Style::new().cyan(),
    }
}

/// A table whose columns are padded to their widest cell; colour is added
/// after padding so escape codes do not upset the alignment.
struct Table {
    head: Vec<&'static str>,
    rows: Vec<Vec<(String, Option<Style>)>>,
}

impl Table {
    fn write(&self, o: &mut Output<'_>) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, (cell, _)) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let head: Vec<String> = self.head.iter().zip(&widths).map(|(h, w)| format!("{h:<w$}")).collect();
        writeln!(o.out, "{}", paint(o.color, head.join("  ").trim_end(), Style::new().bold().dimmed()))?;
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|((cell, style), w)| {
                    let padded = format!("{cell}{}", " ".repeat(w - cell.chars().count()));
                    match style {
                        Some(s) => paint(o.color, &padded, *s),
                        None => padded,
                    }
                })
                .collect();
            writeln!(o.out, "{}", cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

fn plain(s: impl Into<String>) -> (String, Option<Style>) {
    (s.into(), None)
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| relative(Utc::now(), t)).unwrap_or_else(|| "-".to_owned())
}

fn last_result(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.chars().take(48).collect(),
        (None, None) => "-".to_owned(),
    }
}

/// A job row as printed by `jobs --json`.
#[derive(Serialize)]
struct JobRow<'a> {
    job_id: &'a str,
    state: JobState,
    group: Option<&'a str>,
    tag: Option<&'a str>,
    host: &'a str,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    next_attempt_at: Option<DateTime<Utc>>,
}

fn jobs(o: &mut Output<'_>, rows: &[JobSummary], next: Option<String>) -> Result<(), CliError> {
    if o.json {
        let jobs: Vec<JobRow> = rows
            .iter()
            .map(|j| JobRow {
                job_id: &j.id,
                state: j.state,
                group: j.group.as_deref(),
                tag: j.tag.as_deref(),
                host: &j.host,
                attempts: j.attempts,
                last_status: j.last_status,
                last_error: j.last_error.as_deref(),
                created_at: j.created_at,
                updated_at: j.updated_at,
                next_attempt_at: j.next_attempt_at,
            })
            .collect();
        return json_line(o, &serde_json::json!({"jobs": jobs, "next_cursor": next}));
    }
    let table = Table {
        head: vec!["JOB ID", "STATE", "GROUP", "TAG", "HOST", "ATTEMPTS", "LAST", "CREATED", "UPDATED"],
        rows: rows
            .iter()
            .map(|j| {
                vec![
                    plain(&j.id),
                    (j.state.to_string(), Some(state_style(j.state))),
                    plain(j.group.as_deref().unwrap_or("-")),
                    plain(j.tag.as_deref().unwrap_or("-")),
                    plain(&j.host),
                    plain(j.attempts.to_string()),
                    plain(last_result(j.last_status, j.last_error.as_deref())),
                    plain(when(Some(j.created_at))),
                    plain(when(Some(j.updated_at))),
                ]
            })
            .collect(),
    };
    table.write(o)?;
    match next {
        Some(c) => writeln!(o.out, "\n{} jobs; more with --cursor '{c}'", rows.len())?,
        None => writeln!(o.out, "\n{} jobs", rows.len())?,
    }
    Ok(())
}

fn show(o: &mut Output<'_>, job: &JobRecord) -> Result<(), CliError> {
    let masked = job.spec.to_auth.as_ref().map(|_| "(set, hidden)");
    if o.json {
        return json_line(
            o,
            &serde_json::json!({
                "job_id": job.id.as_str(),
                "state": job.state,
                "group": job.spec.group.as_ref().map(|l| l.as_str()),
                "tag": job.spec.tag.as_ref().map(|l| l.as_str()),
                "to_url": job.spec.to_url.to_string(),
                "has_auth": job.spec.to_auth.is_some(),
                "payload": job.spec.payload,
                "created_at": job.created_at,
                "updated_at": job.updated_at,
                "attempts": job.attempts,
                "cycle": job.cycle,
                "next_attempt_at": job.next_attempt_at,
                "last_status": job.last_status,
                "last_error": job.last_error,
                "attempt_log": job.attempt_log,
                "delivery": job.spec.delivery,
            }),
        );
    }
    let c = o.color;
    let key = |k: &str| paint(c, &format!("{k:<12}"), Style::new().dimmed());
    writeln!(o.out, "{} {}", key("job"), paint(c, job.id.as_str(), Style::new().bold()))?;
    writeln!(o.out, "{} {}", key("state"), paint(c, job.state.as_str(), state_style(job.state)))?;
    writeln!(o.out, "{} {}", key("to_url"), job.spec.to_url)?;
    if let Some(d) = &job.spec.delivery {
        writeln!(o.out, "{} {}", key("tenant"), d.tenant)?;
        writeln!(o.out, "{} {} ({})", key("event"), d.event_id, d.event_type)?;
        writeln!(o.out, "{} {}", key("endpoint"), d.endpoint_id)?;
    }
    writeln!(o.out, "{} {}", key("to_auth"), masked.unwrap_or("-"))?;
    writeln!(o.out, "{} {}", key("group"), job.spec.group.as_ref().map(|l| l.as_str()).unwrap_or("-"))?;
    writeln!(o.out, "{} {}", key("tag"), job.spec.tag.as_ref().map(|l| l.as_str()).unwrap_or("-"))?;
    writeln!(o.out, "{} {} ({})", key("created"), job.created_at.to_rfc3339(), when(Some(job.created_at)))?;
    writeln!(o.out, "{} {} (cycle {})", key("attempts"), job.attempts, job.cycle)?;
    if let Some(at) = job.next_attempt_at {
        writeln!(o.out, "{} {} ({})", key("next retry"), at.to_rfc3339(), when(Some(at)))?;
    }
    writeln!(o.out, "{}", key("payload"))?;
    writeln!(o.out, "{}\n", serde_json::to_string_pretty(&job.spec.payload)?)?;
    let table = Table {
        head: vec!["#", "CYCLE", "STARTED", "DURATION", "RESULT", "WORKER"],
        rows: job
            .attempt_log
            .iter()
            .map(|a| {
                let good = a.status.is_some_and(|s| (200..300).contains(&s));
                vec![
                    plain(a.attempt.to_string()),
                    plain(a.cycle.to_string()),
                    plain(a.started_at.format("%Y-%m-%d %H:%M:%S").to_string()),
                    plain(format!("{} ms", a.duration_ms)),
                    (
                        last_result(a.status, a.error.as_deref()),
                        Some(if good { Style::new().green() } else { Style::new().red() }),
                    ),
                    plain(&a.worker),
                ]
            })
            .collect(),
    };
    table.write(o)?;
    Ok(())
}

/// A worker as printed by `workers --json`.
#[derive(Serialize)]
struct WorkerRow<'a> {
    name: &'a str,
    alive: bool,
    host: &'a str,
    pid: u32,
    started_at: DateTime<Utc>,
    last_beat: DateTime<Utc>,
    in_flight: u64,
    delivered: u64,
    failed: u64,
}

fn worker_rows(workers: &[WorkerInfo]) -> Vec<WorkerRow<'_>> {
    workers
        .iter()
        .map(|w| WorkerRow {
            name: &w.beat.name,
            alive: w.alive,
            host: &w.beat.host,
            pid: w.beat.pid,
            started_at: w.beat.started_at,
            last_beat: w.beat.last_beat,
            in_flight: w.beat.in_flight,
            delivered: w.beat.delivered,
            failed: w.beat.failed,
        })
        .collect()
}

fn workers(o: &mut Output<'_>, workers: &[WorkerInfo]) -> Result<(), CliError> {
    if o.json {
        return json_line(o, &worker_rows(workers));
    }
    let table = Table {
        head: vec!["WORKER", "STATUS", "HOST", "PID", "STARTED", "LAST BEAT", "IN FLIGHT", "DELIVERED", "FAILED"],
        rows: worker_rows(workers)
            .into_iter()
            .map(|w| {
                vec![
                    plain(w.name),
                    if w.alive {
                        ("live".to_owned(), Some(Style::new().green()))
                    } else {
                        ("gone".to_owned(), Some(Style::new().red()))
                    },
                    plain(w.host),
                    plain(w.pid.to_string()),
                    plain(when(Some(w.started_at))),
                    plain(when(Some(w.last_beat))),
                    plain(w.in_flight.to_string()),
                    plain(w.delivered.to_string()),
                    plain(w.failed.to_string()),
                ]
            })
            .collect(),
    };
    table.write(o)?;
    writeln!(o.out, "\n{} workers", workers.len())?;
    Ok(())
}

async fn stats(o: &mut Output<'_>, console: &Console) -> Result<(), CliError> {
    let ov = console.overview().await?;
    let delivered: u64 = ov.minutes.iter().map(|m| m.delivered).sum();
    let failed_attempts: u64 = ov.minutes.iter().map(|m| m.failed_attempts).sum();
    let failed: u64 = ov.minutes.iter().map(|m| m.failed).sum();
    if o.json {
        let counts: serde_json::Map<String, serde_json::Value> =
            ov.counts.iter().map(|(s, n)| (s.as_str().to_owned(), (*n).into())).collect();
        return json_line(
            o,
            &serde_json::json!({
                "counts": counts,
                "queue_depth": ov.queue_depth,
                "oldest_queued_at": ov.oldest_queued,
                "live_workers": ov.live_workers(),
                "last_hour": {"delivered": delivered, "failed_attempts": failed_attempts, "failed": failed},
                "per_minute": ov.minutes.iter().map(|m| serde_json::json!({
                    "minute": m.minute, "delivered": m.delivered,
                    "failed_attempts": m.failed_attempts, "failed": m.failed,
                })).collect::<Vec<_>>(),
                "retention_seconds": {"succeeded": ov.retention.succeeded.as_secs(), "failed": ov.retention.failed.as_secs()},
            }),
        );
    }
    let table = Table {
        head: vec!["STATE", "JOBS"],
        rows: ov
            .counts
            .iter()
            .map(|(s, n)| vec![(s.to_string(), Some(state_style(*s))), plain(n.to_string())])
            .collect(),
    };
    table.write(o)?;
    let age = ov.oldest_queued.map(|t| relative(ov.now, t)).unwrap_or_else(|| "-".to_owned());
    writeln!(o.out, "\nqueue depth       {}", ov.queue_depth)?;
    writeln!(o.out, "oldest waiting    {age}")?;
    writeln!(o.out, "live workers      {} ({} gone)", ov.live_workers(), ov.workers.len() - ov.live_workers())?;
    writeln!(o.out, "last hour         {delivered} delivered, {failed_attempts} failed attempts, {failed} failed")?;
    writeln!(o.out, "deliveries/min    {}", sparkline(ov.minutes.iter().map(|m| m.delivered)))?;
    writeln!(
        o.out,
        "retention         succeeded {}, failed {}",
        words(ov.retention.succeeded),
        words(ov.retention.failed)
    )?;
    Ok(())
}

/// An endpoint as printed by `endpoints --json` (without its secrets).
#[derive(Serialize)]
struct EndpointRow<'a> {
    endpoint_id: &'a str,
    tenant: &'a str,
    url: &'a str,
    event_types: Vec<&'a str>,
    filter: Option<&'a serde_json::Map<String, serde_json::Value>>,
    disabled: bool,
    description: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    max_in_flight: u32,
    rate_limit: Option<u32>,
    ordered: bool,
    last_hour: LastHour,
    health: &'static str,
    breaker: Breaker,
    in_flight: u64,
    waiting: u64,
    held: u64,
    last_failure: Option<Failed<'a>>,
}

/// An endpoint's breaker as `endpoints --json` prints it.
#[derive(Serialize)]
struct Breaker {
    /// `closed`, `open` or `half_open`.
    state: &'static str,
    open_until: Option<DateTime<Utc>>,
    consecutive_failures: u64,
}

#[derive(Serialize)]
struct LastHour {
    attempts: u64,
    succeeded: u64,
    success_rate: Option<f64>,
}

#[derive(Serialize)]
struct Failed<'a> {
    at: DateTime<Utc>,
    error: &'a str,
}

fn endpoint_row(h: &EndpointHealth) -> EndpointRow<'_> {
    let ep = &h.endpoint;
    let now = &h.stats.now;
    EndpointRow {
        endpoint_id: ep.id.as_str(),
        tenant: ep.tenant.as_str(),
        url: ep.url.as_url().as_str(),
        event_types: ep.event_types.iter().map(|t| t.as_str()).collect(),
        filter: ep.filter.as_ref().map(|f| f.as_json()),
        disabled: ep.disabled,
        description: &ep.description,
        created_at: ep.created_at,
        updated_at: ep.updated_at,
        max_in_flight: ep.max_in_flight,
        rate_limit: ep.rate_limit,
        ordered: ep.ordered,
        last_hour: LastHour {
            attempts: h.stats.hour.attempts(),
            succeeded: h.stats.hour.succeeded,
            success_rate: h.success_rate(),
        },
        health: h.health().as_str(),
        breaker: Breaker {
            state: now.breaker.as_str(),
            // Only while it means something: past it, the breaker is half open.
            open_until: now.open_until.filter(|_| now.breaker == BreakerState::Open),
            consecutive_failures: now.consecutive_failures,
        },
        in_flight: now.in_flight,
        waiting: now.waiting,
        held: now.held,
        last_failure: h.last_failure.as_ref().map(|f| Failed { at: f.at, error: &f.error }),
    }
}

fn endpoints(o: &mut Output<'_>, rows: &[EndpointHealth]) -> Result<(), CliError> {
    if o.json {
        let endpoints: Vec<EndpointRow> = rows.iter().map(endpoint_row).collect();
        return json_line(o, &serde_json::json!({ "endpoints": endpoints }));
    }
    let table = Table {
        head: vec![
            "TENANT",
            "ENDPOINT",
            "URL",
            "TYPES",
            "FILTER",
            "HEALTH 1H",
            "BREAKER",
            "HELD",
            "LAST FAILURE",
            "STATUS",
        ],
        rows: rows
            .iter()
            .map(|h| {
                let r = endpoint_row(h);
                let types = if r.event_types.is_empty() { "*".to_owned() } else { r.event_types.join(",") };
                let filter = r.filter.map(|f| serde_json::Value::Object(f.clone()).to_string());
                let style = match h.health() {
                    Health::Healthy => Some(Style::new().green()),
                    Health::Failing => Some(Style::new().red()),
                    Health::NoTraffic => None,
                };
                let rate = match r.last_hour.success_rate {
                    Some(rate) => format!("{} {:.0}% of {}", r.health, rate * 100.0, r.last_hour.attempts),
                    None => r.health.to_owned(),
                };
                let breaker = match (h.stats.now.breaker, r.breaker.open_until) {
                    (BreakerState::Open, Some(t)) => format!("open until {}", t.format("%H:%M:%S")),
                    (state, _) => state.as_str().to_owned(),
                };
                let breaker = match r.breaker.consecutive_failures {
                    0 => breaker,
                    n => format!("{breaker} ({n} failed in a row)"),
                };
                let breaker_style = match h.stats.now.breaker {
                    BreakerState::Closed => None,
                    BreakerState::Open => Some(Style::new().red()),
                    BreakerState::HalfOpen => Some(Style::new().yellow()),
                };
                let held_style = (r.held > 0).then(|| Style::new().cyan());
                let failure = r.last_failure.as_ref().map(|f| {
                    format!("{} {}", relative(Utc::now(), f.at), f.error.chars().take(48).collect::<String>())
                });
                vec![
                    plain(r.tenant),
                    plain(r.endpoint_id),
                    plain(r.url),
                    plain(types),
                    plain(filter.unwrap_or_else(|| "-".to_owned())),
                    (rate, style),
                    (breaker, breaker_style),
                    (r.held.to_string(), held_style),
                    plain(failure.unwrap_or_else(|| "-".to_owned())),
                    if r.disabled {
                        ("disabled".to_owned(), Some(Style::new().red()))
                    } else {
                        ("enabled".to_owned(), Some(Style::new().green()))
                    },
                ]
            })
            .collect(),
    };
    table.write(o)?;
    writeln!(o.out, "\n{} endpoints", rows.len())?;
    Ok(())
}

/// An event as printed by `events --json`.
#[derive(Serialize)]
struct EventRow<'a> {
    event_id: &'a str,
    tenant: &'a str,
    event_type: &'a str,
    created_at: DateTime<Utc>,
    deliver_at: Option<DateTime<Utc>>,
    matched: u64,
    made: u64,
    expanded: bool,
}

fn events(o: &mut Output<'_>, rows: &[(TenantId, EventId, EventRead)]) -> Result<(), CliError> {
    let rows: Vec<EventRow> = rows
        .iter()
        .map(|(tenant, id, ev)| EventRow {
            event_id: id.as_str(),
            tenant: tenant.as_str(),
            event_type: &ev.event_type,
            created_at: ev.created_at,
            deliver_at: ev.deliver_at,
            matched: ev.matched,
            made: ev.made,
            expanded: ev.expanded,
        })
        .collect();
    if o.json {
        return json_line(o, &serde_json::json!({ "events": rows }));
    }
    let table = Table {
        head: vec!["TENANT", "EVENT ID", "TYPE", "CREATED", "MATCHED", "MADE", "EXPANSION"],
        rows: rows
            .iter()
            .map(|e| {
                vec![
                    plain(e.tenant),
                    plain(e.event_id),
                    plain(e.event_type),
                    plain(when(Some(e.created_at))),
                    plain(e.matched.to_string()),
                    plain(e.made.to_string()),
                    if e.expanded {
                        ("done".to_owned(), Some(Style::new().green()))
                    } else {
                        ("expanding".to_owned(), Some(Style::new().yellow()))
                    },
                ]
            })
            .collect(),
    };
    table.write(o)?;
    writeln!(o.out, "\n{} events", rows.len())?;
    Ok(())
}

async fn recover(
    o: &mut Output<'_>,
    console: &Console,
    endpoint_id: String,
    since: String,
    until: Option<String>,
    tenant: Option<String>,
) -> Result<(), CliError> {
    let now = Utc::now();
    let id = EndpointId::parse(endpoint_id.trim()).map_err(|e| CliError::Usage(format!("endpoint: {e}")))?;
    let since = parse_time(&since, now).map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    let until = match until {
        Some(u) => parse_time(&u, now).map_err(|e| CliError::Usage(format!("--until: {e}")))?,
        None => now,
    };
    if until < since {
        return Err(CliError::Usage("--until is before --since".to_owned()));
    }
    let tenant = match tenant {
        Some(t) => TenantId::parse(t.trim()).map_err(|e| CliError::Usage(format!("tenant: {e}")))?,
        None => console.tenant_of(&id).await?.ok_or_else(|| CliError::NoEndpoint(endpoint_id.clone()))?,
    };
    let n = match console.recover(&tenant, &id, since, until).await {
        Err(e) if e.is_not_found() => return Err(CliError::NoEndpoint(endpoint_id)),
        other => other?,
    };
    if o.json {
        return json_line(
            o,
            &serde_json::json!({"endpoint_id": id.as_str(), "tenant": tenant.as_str(), "since": since,
                "until": until, "recovered": n}),
        );
    }
    Ok(writeln!(
        o.out,
        "{} {n} failed deliveries of {id} (tenant {tenant}) for events created {} to {}",
        paint(o.color, "recovered", ok()),
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )?)
}

/// A source as printed by `sources --json` (without its secrets).
#[derive(Serialize)]
struct SourceRow<'a> {
    source_id: &'a str,
    tenant: &'a str,
    name: &'a str,
    ingest_url: String,
    scheme: &'static str,
    /// False for the `none` scheme: requests are accepted unsigned.
    verified: bool,
    default_event_type: &'a str,
    event_type_from: Option<&'a EventTypeFrom>,
    rate_limit: Option<u32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_hour: SourceHour,
    last_request_at: Option<DateTime<Utc>>,
}

/// A source's requests over the last hour, as `sources --json` prints them.
#[derive(Serialize)]
struct SourceHour {
    accepted: u64,
    duplicate: u64,
    rate_limited: u64,
    refused: u64,
    refused_by_reason: BTreeMap<String, u64>,
}

fn source_row(a: &SourceActivity) -> SourceRow<'_> {
    let s = &a.source;
    let c = &a.counts;
    SourceRow {
        source_id: s.id.as_str(),
        tenant: s.tenant.as_str(),
        name: &s.name,
        ingest_url: s.ingest_path(),
        scheme: s.verify.scheme_name(),
        verified: !matches!(s.verify, Verify::None),
        default_event_type: s.default_event_type.as_str(),
        event_type_from: s.event_type_from.as_ref(),
        rate_limit: s.rate_limit,
        created_at: s.created_at,
        updated_at: s.updated_at,
        last_hour: SourceHour {
            accepted: c.accepted,
            duplicate: c.duplicate,
            rate_limited: c.rate_limited,
            refused: c.refused_total(),
            refused_by_reason: c.refused.iter().cloned().collect(),
        },
        last_request_at: a.last_request_at(),
    }
}

fn sources(o: &mut Output<'_>, rows: &[SourceActivity]) -> Result<(), CliError> {
    if o.json {
        let sources: Vec<SourceRow> = rows.iter().map(source_row).collect();
        return json_line(o, &serde_json::json!({ "sources": sources }));
    }
    let table = Table {
        head: vec![
            "SOURCE ID",
            "NAME",
            "INGEST URL",
            "SCHEME",
            "ACCEPTED 1H",
            "DUPLICATE",
            "RATE LIMITED",
            "REFUSED",
            "LAST REQUEST",
        ],
        rows: rows
            .iter()
            .map(|a| {
                let r = source_row(a);
                let scheme = if r.verified {
                    plain(r.scheme)
                } else {
                    (format!("{} (unverified)", r.scheme), Some(Style::new().yellow().bold()))
                };
                let reasons: Vec<String> = a
                    .counts
                    .refused
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect();
                let refused = if reasons.is_empty() {
                    (r.last_hour.refused.to_string(), None)
                } else {
                    (format!("{} ({})", r.last_hour.refused, reasons.join(", ")), Some(Style::new().red()))
                };
                vec![
                    plain(r.source_id),
                    plain(r.name),
                    plain(r.ingest_url),
                    scheme,
                    plain(r.last_hour.accepted.to_string()),
                    plain(r.last_hour.duplicate.to_string()),
                    plain(r.last_hour.rate_limited.to_string()),
                    refused,
                    plain(when(r.last_request_at)),
                ]
            })
            .collect(),
    };
    table.write(o)?;
    writeln!(o.out, "\n{} sources", rows.len())?;
    Ok(())
}

fn words(d: Duration) -> String {
    match d.as_secs() {
        s if s % 86_400 == 0 && s > 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s => format!("{s} s"),
    }
}

/// One character per minute, ▁ to █, scaled to the busiest minute.
fn sparkline(values: impl Iterator<Item = u64> + Clone) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.clone().max().unwrap_or(0).max(1);
    values.map(|v| BARS[((v * 7) / max) as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_busiest_minute() {
        assert_eq!(sparkline([0, 7, 14].into_iter()), "▁▄█");
    }

    #[test]
    fn requeue_needs_an_id_or_all_failed() {
        assert!(Cli::try_parse_from(["m", "requeue"]).is_err());
        assert!(Cli::try_parse_from(["m", "requeue", "--group", "g"]).is_err());
        assert!(Cli::try_parse_from(["m", "requeue", "--all-failed", "--group", "g"]).is_ok());
        assert!(Cli::try_parse_from(["m", "jobs", "--state", "failed", "--json"]).is_ok());
    }

    #[test]
    fn fan_out_commands_parse() {
        assert!(Cli::try_parse_from(["m", "endpoints", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["m", "events", "--tenant", "t", "--type", "order.created"]).is_ok());
        assert!(Cli::try_parse_from(["m", "recover", "ep_1", "--since", "24h", "--until", "1h"]).is_ok());
        assert!(Cli::try_parse_from(["m", "recover", "ep_1"]).is_err(), "--since is required");
        assert!(Cli::try_parse_from(["m", "sources", "acme", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["m", "sources"]).is_err(), "the tenant is required");
    }
}
