//! The monitor's operations, shared by its web pages and its CLI, so a
//! button and a command do exactly the same thing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    config::{Retention, Settings},
    domain::{JobId, Label},
    jobs::{JobRecord, JobState},
    queue::{Queue, QueueError},
    service::{HookService, ServiceError},
    store::{self, Cursor, JobFilter, JobStore, MinuteStats, Page, Requeue, RetryNow, StoreError, WorkerInfo},
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
    /// A purge age (seconds) outside 0 to [`MAX_PURGE_AGE`].
    #[error("older_than={0}s: must be at most {max} seconds (ten years)", max = MAX_PURGE_AGE.as_secs())]
    PurgeAge(u64),
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

/// The monitor's handle on the jobs; cheap to clone.
#[derive(Clone)]
pub struct Console {
    service: HookService,
    queue: Queue,
    retention: Retention,
}

impl Console {
    /// Connects lazily to the Redis and queue named in `settings`.
    pub fn new(settings: &Settings) -> Result<Self, redis::RedisError> {
        let conn = store::connect(&settings.redis)?;
        let store = JobStore::new(conn.clone(), settings);
        let queue = Queue::new(conn, settings);
        let service =
            HookService::new(store, queue.clone(), settings.redis.response_timeout, settings.redis.wait_replicas);
        Ok(Self { service, queue, retention: settings.retention })
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
