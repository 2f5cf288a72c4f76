//! The monitor's operations, shared by its web pages and its CLI, so a
//! button and a command do exactly the same thing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use futures::{StreamExt, TryStreamExt};

pub use crate::sources::SourceCounts;

use crate::{
    config::{Retention, Settings},
    domain::{EndpointId, EventId, EventType, JobId, Label, SourceId, TenantId},
    endpoints::{BreakerState, Endpoint, EndpointError, EndpointInput, EndpointService, EndpointStats},
    events::{EventError, EventService, EventWithDeliveries},
    jobs::{Attempt, JobRecord, JobState},
    queue::{Queue, QueueError},
    service::{HookService, ServiceError},
    sources::{Source, SourceError, SourceService},
    store::{
        self,
        events::EventRead,
        sources::{Activity, LoggedRequest},
        Cursor, JobFilter, JobStore, MinuteStats, Page, Requeue, RetryNow, StoreError, WorkerInfo,
    },
};

/// A monitor operation failed (Redis is unavailable or a record is corrupt).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A job operation failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// An endpoint operation failed (`NotFound` included: see
    /// [`ConsoleError::is_not_found`]).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// An event operation failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A source operation failed (`NotFound` included: see
    /// [`ConsoleError::is_not_found`]).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A purge age (seconds) outside 0 to [`MAX_PURGE_AGE`].
    #[error("older_than={0}s: must be at most {max} seconds (ten years)", max = MAX_PURGE_AGE.as_secs())]
    PurgeAge(u64),
}

impl ConsoleError {
    /// True when the endpoint or source asked for does not exist (for
    /// that tenant).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Endpoint(EndpointError::NotFound) | Self::Source(SourceError::NotFound))
    }
}

/// Most jobs one bulk requeue request takes; the rest wait for the next.
pub const BULK_REQUEUE_MAX: usize = 10_000;

/// Jobs per second a bulk requeue makes due: 10,000 jobs come due over
/// ten seconds instead of in one burst at the receivers.
pub const BULK_REQUEUE_RATE: u32 = 1_000;

/// What a bulk requeue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkRequeued {
    /// Jobs requeued.
    pub requeued: u64,
    /// Matching failed jobs were left for another call ([`BULK_REQUEUE_MAX`]).
    pub more: bool,
}

/// The oldest age a purge may name: ten years, far beyond any retention.
pub const MAX_PURGE_AGE: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Everything the overview shows, read at one moment.
#[derive(Debug, Clone)]
pub struct Overview {
    /// When it was read.
    pub now: DateTime<Utc>,
    /// Jobs per state, in life-cycle order.
    pub counts: Vec<(JobState, u64)>,
    /// Attempts waiting on the apalis queue.
    pub queue_depth: u64,
    /// When the oldest job still waiting for its first attempt was accepted.
    pub oldest_queued: Option<DateTime<Utc>>,
    /// Deliveries and failures per minute over the last hour, oldest first.
    pub minutes: Vec<MinuteStats>,
    /// The worker registry.
    pub workers: Vec<WorkerInfo>,
    /// How long finished jobs are kept.
    pub retention: Retention,
    /// Jobs that lost their way forward and wait for a worker's reconciler
    /// (normally 0; see [`JobStore::awaiting_reconcile`]).
    pub awaiting_reconcile: u64,
}

impl Overview {
    /// Jobs in `state`.
    pub fn count(&self, state: JobState) -> u64 {
        self.counts.iter().find(|(s, _)| *s == state).map(|(_, n)| *n).unwrap_or(0)
    }

    /// Workers that beat recently.
    pub fn live_workers(&self) -> usize {
        self.workers.iter().filter(|w| w.alive).count()
    }
}

/// Which failed jobs a bulk requeue takes; unset parts match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only this group.
    pub group: Option<Label>,
    /// Only this tag.
    pub tag: Option<Label>,
    /// Only this destination host.
    pub host: Option<String>,
}

/// The monitor's handle on the jobs, endpoints and events; cheap to clone.
#[derive(Clone)]
pub struct Console {
    service: HookService,
    endpoints: EndpointService,
    events: EventService,
    sources: SourceService,
    queue: Queue,
    retention: Retention,
}

impl Console {
    /// Connects lazily to the Redis and queue named in `settings`.
    pub fn new(settings: &Settings) -> Result<Self, redis::RedisError> {
        let conn = store::connect(&settings.redis)?;
        let store = JobStore::new(conn.clone(), settings);
        let queue = Queue::new(conn, settings);
        let timeout = settings.redis.response_timeout;
        let operator = crate::operational::Operator::new(store.clone(), settings.flow.operational.clone());
        let endpoints =
            EndpointService::new(store.clone(), settings.destinations.clone(), timeout).with_operator(operator);
        let events = EventService::replicated(store.clone(), queue.clone(), timeout, settings.redis.wait_replicas);
        let sources = SourceService::new(store.clone(), events.clone(), timeout, &settings.api.intake);
        let service = HookService::new(store, queue.clone(), timeout, settings.redis.wait_replicas);
        Ok(Self { service, endpoints, events, sources, queue, retention: settings.retention })
    }

    /// The job store.
    pub fn store(&self) -> &JobStore {
        self.service.store()
    }

    /// Answers when Redis answers.
    pub async fn ready(&self) -> Result<(), ConsoleError> {
        Ok(self.service.ready().await?)
    }

    /// Counts, queue, throughput and workers.
    pub async fn overview(&self) -> Result<Overview, ConsoleError> {
        let now = Utc::now();
        let store = self.store();
        let (counts, queue_depth, oldest_queued, minutes, workers, awaiting) = futures::try_join!(
            async { Ok::<_, ConsoleError>(store.counts().await?) },
            async { Ok(self.queue.depth().await?) },
            async { Ok(store.oldest_queued().await?) },
            async { Ok(store.minute_stats(60, now).await?) },
            async { Ok(store.workers(now).await?) },
            async { Ok(store.awaiting_reconcile(&self.queue.task_lookups()).await?) },
        )?;
        Ok(Overview {
            now,
            counts,
            queue_depth,
            oldest_queued,
            minutes,
            workers,
            retention: self.retention,
            awaiting_reconcile: awaiting.total(),
        })
    }

    /// One page of jobs; see [`JobStore::list`].
    pub async fn list(&self, filter: &JobFilter, after: Option<&Cursor>, limit: usize) -> Result<Page, ConsoleError> {
        Ok(self.store().list(filter, after, limit).await?)
    }

    /// A job with its attempt log.
    pub async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, ConsoleError> {
        Ok(self.service.get(id).await?)
    }

    /// Requeues a failed job through [`HookService::requeue`], the function
    /// the API uses; a second requeue of the same job is refused, so a
    /// double click does not deliver twice.
    pub async fn requeue(&self, id: &JobId) -> Result<Requeue, ConsoleError> {
        Ok(self.service.requeue(id).await?)
    }

    /// Requeues failed jobs in `selection`, a page (one round trip) at a
    /// time, at most [`BULK_REQUEUE_MAX`] per call, spread so that they come
    /// due at [`BULK_REQUEUE_RATE`] per second rather than all at once.
    /// Returns how many were requeued and whether matching failed jobs
    /// remain (call again for the next slice).
    pub async fn requeue_all_failed(&self, selection: &Selection) -> Result<BulkRequeued, ConsoleError> {
        self.requeue_failed_upto(selection, BULK_REQUEUE_MAX).await
    }

    /// [`Console::requeue_all_failed`] with another bound than
    /// [`BULK_REQUEUE_MAX`] (tests use a small one).
    #[tracing::instrument(skip_all, fields(max = max))]
    pub async fn requeue_failed_upto(&self, selection: &Selection, max: usize) -> Result<BulkRequeued, ConsoleError> {
        let filter = JobFilter {
            state: Some(JobState::Failed),
            group: selection.group.clone(),
            tag: selection.tag.clone(),
            host: selection.host.clone(),
            id: None,
        };
        let spread = Duration::from_secs(1) / BULK_REQUEUE_RATE;
        let mut done = BulkRequeued::default();
        let mut after = None;
        loop {
            let room = max.saturating_sub(done.requeued as usize).max(1);
            let page = self.list(&filter, after.as_ref(), store::MAX_PAGE.min(room)).await?;
            let ids: Vec<JobId> = page.jobs.iter().filter_map(|job| JobId::parse(&job.id).ok()).collect();
            // Each page starts its ramp where the previous one ended.
            let outcomes = self.store().requeue_many(&ids, spread, done.requeued).await?;
            done.requeued += outcomes.iter().filter(|o| **o == Requeue::Requeued).count() as u64;
            match page.next {
                Some(next) if (done.requeued as usize) < max => after = Some(next),
                Some(_) => {
                    done.more = true;
                    break;
                }
                None => break,
            }
        }
        tracing::info!(requeued = done.requeued, more = done.more, "requeued failed jobs");
        Ok(done)
    }

    /// Makes a scheduled job's next attempt due now.
    pub async fn retry_now(&self, id: &JobId) -> Result<RetryNow, ConsoleError> {
        Ok(self.store().retry_now(id).await?)
    }

    /// Deletes a job and its history.
    pub async fn delete(&self, id: &JobId) -> Result<bool, ConsoleError> {
        Ok(self.store().delete(id).await?)
    }

    /// Deletes succeeded jobs created more than `older_than` ago. An age
    /// beyond [`MAX_PURGE_AGE`] is refused: it could not select anything,
    /// and unbounded it overflowed the clock (a panic near 8.3e12 s, and
    /// "delete everything" beyond).
    pub async fn purge_succeeded(&self, older_than: Duration) -> Result<u64, ConsoleError> {
        let before = chrono::Duration::from_std(older_than)
            .ok()
            .filter(|_| older_than <= MAX_PURGE_AGE)
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .ok_or(ConsoleError::PurgeAge(older_than.as_secs()))?;
        Ok(self.store().purge_finished(JobState::Succeeded, before).await?)
    }

    /// The worker registry.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ConsoleError> {
        Ok(self.store().workers(Utc::now()).await?)
    }
}

/// Latest deliveries of an endpoint read for its last failure, so that a
/// page of endpoints costs a bounded number of reads however busy they are.
pub const HEALTH_SAMPLE: usize = 50;

/// Endpoints per page on the monitor's endpoints page (and per read in the
/// CLI, which reads every page).
pub const ENDPOINTS_PAGE: usize = 50;

/// The last hour's success rate at or above which an endpoint is healthy.
pub const HEALTHY_RATE: f64 = 0.95;

/// An attempt that did not get a 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// The status and error, as one line.
    pub error: String,
}

/// An endpoint's health in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// At least [`HEALTHY_RATE`] of the last hour's attempts succeeded.
    Healthy,
    /// Fewer did, or its breaker is not closed.
    Failing,
    /// No attempt in the last hour.
    NoTraffic,
}

impl Health {
    /// The word in the UI, the table and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Failing => "failing",
            Self::NoTraffic => "no traffic",
        }
    }
}

/// An endpoint, its flow (breaker, in flight, held) and how its attempts
/// went.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its attempts over the last hour and day, and its flow now, as flow
    /// control counts them (every attempt, not a sample).
    pub stats: EndpointStats,
    /// The latest failed attempt among its latest [`HEALTH_SAMPLE`]
    /// deliveries, if any.
    pub last_failure: Option<Failure>,
}

fn succeeded(a: &Attempt) -> bool {
    a.status.is_some_and(|s| (200..300).contains(&s))
}

/// An attempt's outcome as one line: its error (which names the status when
/// there was one), else `HTTP <status>`.
fn outcome(a: &Attempt) -> String {
    match (a.status, a.error.as_deref()) {
        (_, Some(e)) => e.to_owned(),
        (Some(s), None) => format!("HTTP {s}"),
        (None, None) => "failed".to_owned(),
    }
}

/// The latest failed attempt in the attempt logs of `deliveries`.
fn last_failure(deliveries: &[JobRecord]) -> Option<Failure> {
    deliveries
        .iter()
        .flat_map(|d| &d.attempt_log)
        .filter(|a| !succeeded(a))
        .max_by_key(|a| a.started_at)
        .map(|a| Failure { at: a.started_at, error: outcome(a) })
}

impl EndpointHealth {
    /// `endpoint` with its `stats` and the latest failure among the attempt
    /// logs of `deliveries`.
    pub fn of(endpoint: Endpoint, stats: EndpointStats, deliveries: &[JobRecord]) -> Self {
        Self { endpoint, stats, last_failure: last_failure(deliveries) }
    }

    /// Succeeded attempts over all attempts in the last hour, 0 to 1; `None`
    /// without attempts.
    pub fn success_rate(&self) -> Option<f64> {
        self.stats.hour.success_rate()
    }

    /// The endpoint's health in one word: an open breaker is failing
    /// whatever the rate says (it stopped sending).
    pub fn health(&self) -> Health {
        match (self.success_rate(), self.stats.now.breaker) {
            (_, BreakerState::Open | BreakerState::HalfOpen) => Health::Failing,
            (None, _) => Health::NoTraffic,
            (Some(r), _) if r >= HEALTHY_RATE => Health::Healthy,
            (Some(_), _) => Health::Failing,
        }
    }

    /// Disabled with deliveries kept for it: enabling it sends them.
    pub fn holds_deliveries(&self) -> bool {
        self.endpoint.disabled && self.stats.now.held > 0
    }
}

/// A time given as a moment (RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC,
/// what a browser's datetime field sends) or as an age (`90s`, `30m`,
/// `24h`, `7d`) that is neither.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected an RFC 3339 time (2024-05-01T12:00:00Z) or an age such as 30m, 24h or 7d")]
pub struct BadTime(pub String);

/// Parses a time as [`BadTime`] describes; an age counts back from `now`.
pub fn parse_time(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, BadTime> {
    let raw = raw.trim();
    let bad = || BadTime(raw.to_owned());
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, format) {
            return Ok(t.and_utc());
        }
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = raw.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .and_then(chrono::Duration::try_seconds)
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(bad)
}

/// The endpoints, events and deliveries of fan-out.
impl Console {
    /// The endpoint operations.
    pub fn endpoints(&self) -> &EndpointService {
        &self.endpoints
    }

    /// The event operations.
    pub fn events(&self) -> &EventService {
        &self.events
    }

    /// Every tenant with endpoints, by name, with how many.
    pub async fn tenants(&self) -> Result<Vec<(String, u64)>, ConsoleError> {
        Ok(self.endpoints.tenants().await?)
    }

    async fn health(&self, endpoint: Endpoint) -> Result<EndpointHealth, ConsoleError> {
        let (tenant, id) = (&endpoint.tenant, &endpoint.id);
        let (stats, deliveries) = futures::try_join!(
            self.endpoints.stats(tenant, id),
            self.endpoints.recent_deliveries(tenant, id, HEALTH_SAMPLE),
        )?;
        Ok(EndpointHealth::of(endpoint, stats, &deliveries))
    }

    /// A page of a tenant's endpoints (oldest first, after `after`), each
    /// with its health.
    pub async fn endpoint_page(
        &self,
        tenant: &TenantId,
        after: Option<&EndpointId>,
        limit: usize,
    ) -> Result<Vec<EndpointHealth>, ConsoleError> {
        let page = self.endpoints.list(tenant, after, limit).await?;
        // A few endpoints at a time: each is a read of its stats (one
        // pipeline of its buckets, one of its flow), of its delivery index
        // and of its deliveries.
        futures::stream::iter(page).map(|ep| self.health(ep)).buffered(8).try_collect().await
    }

    /// Every endpoint of a tenant, page by page, each with its health.
    pub async fn all_endpoints(&self, tenant: &TenantId) -> Result<Vec<EndpointHealth>, ConsoleError> {
        let mut all: Vec<EndpointHealth> = Vec::new();
        loop {
            let after = all.last().map(|h| h.endpoint.id.clone());
            let page = self.endpoint_page(tenant, after.as_ref(), ENDPOINTS_PAGE).await?;
            let full = page.len() == ENDPOINTS_PAGE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// An endpoint with its health and its latest `limit` deliveries,
    /// newest first.
    pub async fn endpoint(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        limit: usize,
    ) -> Result<(EndpointHealth, Vec<JobRecord>), ConsoleError> {
        let (endpoint, stats, deliveries) = futures::try_join!(
            self.endpoints.get(tenant, id),
            self.endpoints.stats(tenant, id),
            self.endpoints.recent_deliveries(tenant, id, limit.max(HEALTH_SAMPLE)),
        )?;
        let health = EndpointHealth::of(endpoint, stats, &deliveries[..deliveries.len().min(HEALTH_SAMPLE)]);
        Ok((health, deliveries.into_iter().take(limit).collect()))
    }

    /// The tenant an endpoint belongs to, for callers that know only its
    /// id: one read per tenant until it is found.
    pub async fn tenant_of(&self, id: &EndpointId) -> Result<Option<TenantId>, ConsoleError> {
        for (name, _) in self.tenants().await? {
            let Ok(tenant) = TenantId::parse(&name) else { continue };
            match self.endpoints.get(&tenant, id).await {
                Ok(_) => return Ok(Some(tenant)),
                Err(EndpointError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Disables an endpoint (it matches no new event) or enables it again,
    /// through [`EndpointService::update`], the function the API uses.
    pub async fn set_disabled(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        disabled: bool,
    ) -> Result<Endpoint, ConsoleError> {
        let change = EndpointInput { disabled: Some(disabled), ..EndpointInput::default() };
        Ok(self.endpoints.update(tenant, id, change).await?)
    }

    /// Gives an endpoint a fresh secret; the old one signs beside it for
    /// [`ROTATION_GRACE`].
    pub async fn rotate(&self, tenant: &TenantId, id: &EndpointId) -> Result<Endpoint, ConsoleError> {
        Ok(self.endpoints.rotate(tenant, id, ROTATION_GRACE, None).await?)
    }

    /// Requeues an endpoint's failed deliveries whose events were created
    /// in `[since, until]`; returns how many.
    pub async fn recover(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<u64, ConsoleError> {
        Ok(self.endpoints.recover(tenant, id, since, until).await?.recovered)
    }

    /// A page of a tenant's events, newest first, of one type if given,
    /// before the cursor `(created ms, event id)`.
    pub async fn event_page(
        &self,
        tenant: &TenantId,
        event_type: Option<&EventType>,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(EventId, EventRead)>, ConsoleError> {
        Ok(self.events.list(tenant, event_type, None, before, limit).await?)
    }

    /// An event with its deliveries.
    pub async fn event(&self, tenant: &TenantId, id: &EventId) -> Result<Option<EventWithDeliveries>, ConsoleError> {
        Ok(self.events.get(tenant, id).await?)
    }
}

/// A source with its last hour's counts and its latest requests.
#[derive(Debug, Clone)]
pub struct SourceActivity {
    /// The source (its secrets are in it: never show them).
    pub source: Source,
    /// The last hour's counts.
    pub counts: SourceCounts,
    /// Its latest requests, newest first (at most
    /// [`store::sources::LOGGED`]).
    pub latest: Vec<LoggedRequest>,
}

impl SourceActivity {
    /// `source` with its `activity`.
    pub fn of(source: Source, activity: Activity) -> Self {
        Self { source, counts: SourceCounts::of(&activity.last_hour), latest: activity.latest }
    }

    /// When its latest logged request came (refused, accepted or
    /// duplicate; rate-limited requests are only counted).
    pub fn last_request_at(&self) -> Option<DateTime<Utc>> {
        self.latest.first().and_then(|r| DateTime::from_timestamp_millis(r.at))
    }
}

/// The sources that receive providers' webhooks.
impl Console {
    /// The source operations.
    pub fn sources(&self) -> &SourceService {
        &self.sources
    }

    /// `SOURCE_RATE_LIMIT`: requests per second a source without its own
    /// `rate_limit` accepts (0: no limit).
    pub fn source_rate_limit(&self) -> u32 {
        self.sources.default_rate_limit()
    }

    /// Every source of a tenant (oldest first), each with its activity. A
    /// source deleted while the list is read is left out.
    pub async fn all_sources(&self, tenant: &TenantId) -> Result<Vec<SourceActivity>, ConsoleError> {
        let listed = self.sources.list(tenant).await?;
        // A few sources at a time: each is one pipeline of its counters
        // and log.
        let read: Vec<Option<SourceActivity>> = futures::stream::iter(listed)
            .map(|source| async move {
                match self.sources.activity(tenant, &source.id).await {
                    Ok(activity) => Ok(Some(SourceActivity::of(source, activity))),
                    Err(SourceError::NotFound) => Ok(None),
                    Err(e) => Err(ConsoleError::from(e)),
                }
            })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
    }

    /// A source of `tenant` with its activity (another tenant's source is
    /// not found).
    pub async fn source(&self, tenant: &TenantId, id: &SourceId) -> Result<SourceActivity, ConsoleError> {
        let (source, activity) = futures::try_join!(self.sources.get(tenant, id), self.sources.activity(tenant, id))?;
        Ok(SourceActivity::of(source, activity))
    }
}

/// How long a secret replaced from the monitor keeps signing beside the new
/// one, so receivers have a day to switch.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::{FlowNow, Window};

    fn attempt(status: Option<u16>, error: Option<&str>, ago_min: i64, now: DateTime<Utc>) -> Attempt {
        Attempt {
            attempt: 1,
            cycle: 0,
            started_at: now - chrono::Duration::minutes(ago_min),
            duration_ms: 1,
            status,
            error: error.map(str::to_owned),
            worker: "w".into(),
            response_headers: None,
            response_body: None,
            response_truncated: false,
        }
    }

    #[test]
    fn times_are_moments_or_ages() {
        let now = Utc::now();
        assert_eq!(parse_time("24h", now), Ok(now - chrono::Duration::hours(24)));
        assert_eq!(parse_time(" 30m ", now), Ok(now - chrono::Duration::minutes(30)));
        assert_eq!(parse_time("7d", now), Ok(now - chrono::Duration::days(7)));
        let t = parse_time("2024-05-01T12:00:00+02:00", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        assert_eq!(parse_time("2024-05-01T12:00", now).unwrap().to_rfc3339(), "2024-05-01T12:00:00+00:00");
        for bad in ["", "h", "24", "24w", "-1h", "99999999999999999999d", "yesterday"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn health_is_the_last_hours_rate_or_the_breaker_and_names_the_latest_failure() {
        let now = Utc::now();
        let ep: Endpoint = serde_json::from_value(serde_json::json!({
            "id": format!("ep_{}", uuid::Uuid::new_v4().simple()), "tenant": "t", "url": "http://127.0.0.1:9/",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "created_at": now, "updated_at": now,
        }))
        .unwrap();
        let spec: crate::jobs::JobSpec =
            serde_json::from_value(serde_json::json!({"v": 1, "to_url": "http://127.0.0.1:9/", "payload": {}}))
                .unwrap();
        let job = |log: Vec<Attempt>| JobRecord {
            id: JobId::mint(None, None),
            spec: spec.clone(),
            state: JobState::Succeeded,
            created_at: now,
            updated_at: now,
            attempts: log.len() as u32,
            cycle: 0,
            cycle_attempts: 0,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            stop_reason: None,
            attempt_log: log,
        };
        let stats = |succeeded, failed_attempts, breaker| EndpointStats {
            hour: {
                // Its duration buckets are the store's; the counts are enough here.
                let mut w = Window::default();
                (w.succeeded, w.failed_attempts) = (succeeded, failed_attempts);
                w
            },
            day: Window::default(),
            now: FlowNow { breaker, open_until: None, consecutive_failures: 0, in_flight: 0, waiting: 0, held: 0 },
        };
        let none = EndpointHealth::of(ep.clone(), stats(0, 0, BreakerState::Closed), &[]);
        assert_eq!((none.success_rate(), none.last_failure.clone(), none.health()), (None, None, Health::NoTraffic));
        let jobs = [
            job(vec![attempt(Some(500), None, 5, now), attempt(Some(200), None, 4, now)]),
            job(vec![attempt(None, Some("connection refused"), 3, now), attempt(Some(204), None, 2, now)]),
            job(vec![attempt(Some(503), Some("busy"), 90, now)]),
        ];
        let h = EndpointHealth::of(ep.clone(), stats(2, 2, BreakerState::Closed), &jobs);
        assert_eq!((h.success_rate(), h.health()), (Some(0.5), Health::Failing));
        let last = h.last_failure.unwrap();
        assert_eq!(last.error, "connection refused");
        assert_eq!(last.at, now - chrono::Duration::minutes(3));
        assert_eq!(EndpointHealth::of(ep.clone(), stats(99, 1, BreakerState::Closed), &[]).health(), Health::Healthy);
        // A breaker that stopped sending is failing, even on a good rate.
        assert_eq!(EndpointHealth::of(ep, stats(99, 1, BreakerState::Open), &[]).health(), Health::Failing);
    }
}
