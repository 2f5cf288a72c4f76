//! The operations on jobs that the app, the worker and the monitor share.
//! Each is one function here so every entry point behaves the same.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    domain::{JobId, NewJob},
    jobs::{AttemptRef, JobRecord, JobSpec, JobState, QueueTask},
    queue::Queue,
    store::{coalesce::Coalescer, CreateRequest, Created, IdempotencyClaim, JobStore, NewRecord, Requeue, StoreError},
};

/// Accepting or changing a job failed for a reason the caller cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// `t` cut to whole milliseconds, the precision of every time Redis keeps.
fn whole_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or_default()
}

/// Whether a write that failed may still have happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Nothing reached Redis (it refused the connection, or the request
    /// could not be encoded).
    No,
    /// The command may have run: it timed out or the connection broke after
    /// it was sent. A job that was stored is delivered (see
    /// [`HookService::accept`]).
    Maybe,
    /// Redis ran it, but its answer made no sense.
    Yes,
}

impl ServiceError {
    /// Whether the failed operation may have changed anything.
    pub fn written(&self) -> Written {
        match self {
            Self::Timeout(_) => Written::Maybe,
            Self::Store(StoreError::Redis(e)) if e.is_connection_refusal() => Written::No,
            Self::Store(StoreError::Redis(_)) => Written::Maybe,
            Self::Store(StoreError::Encode(_)) => Written::No,
            Self::Store(StoreError::Corrupt { .. }) => Written::Yes,
            Self::Store(StoreError::NotReplicated { .. }) => Written::Maybe,
        }
    }
}

/// A job that is stored and queued.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its id.
    pub id: JobId,
    /// When it was accepted.
    pub queued_at: DateTime<Utc>,
    /// When it will be delivered, if not now.
    pub deliver_at: Option<DateTime<Utc>>,
}

/// The answer to a request that carried an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub enum Idempotent {
    /// First time: the job was accepted.
    New(Accepted),
    /// Seen before with the same body: the first answer, nothing enqueued.
    Replay(Accepted),
    /// Seen before with a different body.
    Conflict,
}

enum Stored {
    New(Accepted),
    Duplicate { fingerprint: String, accepted: Accepted },
}

/// One request's jobs on their way to the store.
struct Commit {
    now: DateTime<Utc>,
    claim: Option<IdempotencyClaim>,
    jobs: Vec<(JobId, JobSpec, Option<DateTime<Utc>>)>,
}

/// Job operations over one store and queue.
#[derive(Clone)]
pub struct HookService {
    store: JobStore,
    timeout: Duration,
    /// Per shard: concurrent requests' jobs are stored and queued together
    /// (see `store::coalesce`): one create script and one queue push per
    /// batch.
    commits: Arc<Vec<Coalescer<Commit, Created>>>,
}

impl HookService {
    /// `timeout` bounds every operation, so a hung Redis turns into an
    /// error instead of a hung request. With `wait_replicas` above 0
    /// (`REDIS_WAIT_REPLICAS`), jobs are accepted only once that many
    /// replicas have them.
    pub fn new(store: JobStore, queue: Queue, timeout: Duration, wait_replicas: u32) -> Self {
        let commits = store
            .shards()
            .all()
            .map(|shard| {
                let (store, queue) = (store.clone(), queue.clone());
                Coalescer::weighed(
                    |c: &Commit| c.jobs.len().max(1),
                    move |batch: Vec<Commit>| {
                        let (store, queue) = (store.clone(), queue.clone());
                        async move { commit(&store, &queue, shard, (timeout, wait_replicas), batch).await }
                    },
                )
            })
            .collect();
        let commits = Arc::new(commits);
        Self { store, timeout, commits }
    }

    /// The job store.
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        tokio::time::timeout(self.timeout, op).await.unwrap_or(Err(ServiceError::Timeout(self.timeout)))
    }

    /// Stores a job and puts its first attempt on the queue (or schedules
    /// it, with `deliver_at`). Once stored, the job is accepted: if queueing
    /// it fails, the reconciler queues it after `RECONCILE_AFTER`. If the
    /// store itself times out, the job may or may not have been stored; a
    /// stored one is delivered, never left `queued` (the caller should retry
    /// with an `Idempotency-Key` to get it exactly once).
    #[tracing::instrument(name = "accept", skip_all, fields(job_id))]
    pub async fn accept(&self, job: NewJob) -> Result<Accepted, ServiceError> {
        let mut accepted = self.accept_many(vec![job], None).await?;
        match accepted.pop() {
            Some(Stored::New(a)) => Ok(a),
            _ => unreachable!("no idempotency claim, one job in, one job out"),
        }
    }

    /// Like [`HookService::accept`], remembering the request under an
    /// idempotency key: a repeat gets the first answer and stores nothing.
    /// A repeat that finds the first job still `queued` queues its first
    /// attempt again (the first request may have stopped between storing and
    /// queueing); the task id is the same, so apalis keeps one and the claim
    /// step runs the attempt once.
    #[tracing::instrument(name = "accept", skip_all, fields(job_id))]
    pub async fn accept_idempotent(&self, job: NewJob, claim: IdempotencyClaim) -> Result<Idempotent, ServiceError> {
        let fingerprint = claim.fingerprint.clone();
        match self.accept_many(vec![job], Some(claim)).await?.pop() {
            Some(Stored::New(a)) => Ok(Idempotent::New(a)),
            Some(Stored::Duplicate { fingerprint: first, accepted }) if first == fingerprint => {
                tracing::info!(job_id = %accepted.id, "idempotent replay");
                Ok(Idempotent::Replay(accepted))
            }
            _ => Ok(Idempotent::Conflict),
        }
    }

    /// Accepts many jobs: one round trip stores them all, one more queues
    /// those due now.
    #[tracing::instrument(name = "accept_batch", skip_all, fields(jobs = jobs.len()))]
    pub async fn accept_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, ServiceError> {
        Ok(self
            .accept_many(jobs, None)
            .await?
            .into_iter()
            .filter_map(|s| match s {
                Stored::New(a) => Some(a),
                Stored::Duplicate { .. } => None,
            })
            .collect())
    }

    async fn accept_many(
        &self,
        jobs: Vec<NewJob>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Vec<Stored>, ServiceError> {
        // One clock per request: this instant is `queued_at`, decides which
        // jobs are due now (a due time at or before it is), and is what
        // create.lua compares due times with. Millisecond precision: what
        // Redis keeps, so a replayed idempotent answer equals the first.
        let now = whole_ms(Utc::now());
        // Everything one request writes goes to one shard: the one its
        // idempotency key names (so a replay finds the first answer), or any.
        let shards = self.store.shards();
        let shard = claim.as_ref().map_or_else(|| shards.pick(), |c| shards.of_key(&c.key));
        let prepared: Vec<(JobId, JobSpec, Option<DateTime<Utc>>)> = jobs
            .into_iter()
            .map(|job| {
                let id = shards.mint(job.group.as_ref(), job.tag.as_ref(), shard);
                // Compared as Redis will store it, in whole milliseconds: a
                // due time 0.9 ms ahead is the same millisecond as now.
                let due = job.deliver_at.map(whole_ms).filter(|at| *at > now);
                (id, JobSpec::from(job), due)
            })
            .collect();
        if let [(id, _, _)] = prepared.as_slice() {
            tracing::Span::current().record("job_id", tracing::field::display(id));
        }
        let accepted: Vec<(JobId, Option<DateTime<Utc>>, String)> =
            prepared.iter().map(|(id, spec, due)| (id.clone(), *due, spec.to_url.host().to_owned())).collect();
        let commit = Commit { now, claim, jobs: prepared };
        let created = self.bounded(async { Ok(self.commits[shard].submit(commit).await?) }).await?;
        if let Created::Duplicate { fingerprint, id, queued_at, .. } = created {
            let accepted = Accepted { id, queued_at, deliver_at: None };
            return Ok(vec![Stored::Duplicate { fingerprint, accepted }]);
        }
        // A single job's id is already a field of this span.
        let single = accepted.len() == 1;
        for (id, due, host) in &accepted {
            let job_id = (!single).then_some(tracing::field::display(id));
            match due {
                Some(at) => tracing::info!(job_id, host, deliver_at = %at, "accepted, scheduled"),
                None => tracing::info!(job_id, host, "accepted"),
            }
        }
        Ok(accepted
            .into_iter()
            .map(|(id, due, _)| Stored::New(Accepted { id, queued_at: now, deliver_at: due }))
            .collect())
    }

    /// Reads a job.
    pub async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, ServiceError> {
        self.bounded(async { Ok(self.store.get(id).await?) }).await
    }

    /// Gives a failed job, or one stuck for longer than `RECONCILE_AFTER`,
    /// a fresh retry cycle (used by the API, the monitor and the CLI alike).
    #[tracing::instrument(name = "requeue", skip_all, fields(job_id = %id))]
    pub async fn requeue(&self, id: &JobId) -> Result<Requeue, ServiceError> {
        let outcome = self.bounded(async { Ok(self.store.requeue(id).await?) }).await?;
        if outcome == Requeue::Requeued {
            tracing::info!("requeued");
        }
        Ok(outcome)
    }

    /// Answers when Redis answers.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        self.bounded(async { Ok(self.store.ping().await?) }).await
    }
}

/// Stores several requests' jobs in one round trip, then puts the first
/// attempts of those due now on the queue, [`QueueTask::MAX_ATTEMPTS`] per
/// task, in one more. Jobs are accepted once stored: a failed push is
/// logged, and the reconciler queues them after `RECONCILE_AFTER`. A
/// replayed request whose job is still `queued` has its task pushed again
/// (the first request may have stopped between storing and queueing); if
/// apalis still holds that task, the push is a no-op, and the claim step
/// makes any duplicate harmless.
/// With `wait_replicas` (`REDIS_WAIT_REPLICAS`) above 0, the write must
/// also reach that many replicas before the callers hear it succeeded.
async fn commit(
    store: &JobStore,
    queue: &Queue,
    shard: usize,
    (timeout, wait_replicas): (Duration, u32),
    batch: Vec<Commit>,
) -> Result<Vec<Created>, StoreError> {
    let prefix = format!("a.{}", uuid::Uuid::new_v4().simple());
    let mut due_now = 0usize;
    let names: Vec<Vec<Option<String>>> = batch
        .iter()
        .map(|c| {
            c.jobs
                .iter()
                .map(|(_, _, due)| {
                    due.is_none().then(|| {
                        let name = format!("{prefix}.{}", due_now / QueueTask::MAX_ATTEMPTS);
                        due_now += 1;
                        name
                    })
                })
                .collect()
        })
        .collect();
    let requests: Vec<CreateRequest<'_>> = batch
        .iter()
        .zip(&names)
        .map(|(c, names)| CreateRequest {
            jobs: c
                .jobs
                .iter()
                .zip(names)
                .map(|((id, spec, due), task)| NewRecord { id, spec, due: *due, task: task.as_deref() })
                .collect(),
            idempotency: c.claim.as_ref(),
            now: c.now,
        })
        .collect();
    let created = store.create_many(shard, &requests).await?;
    let replicated = match wait_replicas {
        0 => Ok(()),
        n => store.wait_replicas(shard, n, timeout / 2).await,
    };
    let first = |job_id: &JobId| AttemptRef { job_id: job_id.clone(), cycle: 0, attempt: 1 };
    let mut named: Vec<(String, AttemptRef)> = Vec::new();
    // Replays of records from before batch tasks name no task.
    let mut single: Vec<QueueTask> = Vec::new();
    for ((c, names), outcome) in batch.iter().zip(&names).zip(&created) {
        match outcome {
            Created::New(_) => {
                for ((id, _, _), name) in c.jobs.iter().zip(names) {
                    if let Some(name) = name {
                        named.push((name.clone(), first(id)));
                    }
                }
            }
            Created::Duplicate { id, state: Some(JobState::Queued), task: Some(task), .. } => {
                named.push((task.clone(), first(id)));
            }
            Created::Duplicate { id, state: Some(JobState::Queued), task: None, .. } => {
                single.push(QueueTask::DeliverV1 { job_id: id.clone(), cycle: 0, attempt: 1 });
            }
            Created::Duplicate { .. } => {}
        }
    }
    let mut tasks = QueueTask::batches(named);
    tasks.append(&mut single);
    queue_first(queue, shard, timeout, &tasks).await;
    // Unconfirmed jobs are queued all the same: the master has them, and if
    // it keeps them they are delivered; the callers hear that a failover
    // could lose them.
    replicated?;
    Ok(created)
}

/// Puts stored jobs' first attempts on the queue. They are accepted
/// whatever happens here: a failure only delays them until the reconciler
/// finds them (`RECONCILE_AFTER`), so it is logged, not returned.
async fn queue_first(queue: &Queue, shard: usize, timeout: Duration, tasks: &[QueueTask]) {
    let jobs: usize = tasks.iter().map(QueueTask::len).sum();
    match tokio::time::timeout(timeout, queue.push(shard, tasks)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            jobs, error.message = %e, error.cause_chain = ?e,
            "stored but not queued; the reconciler will queue them"
        ),
        Err(_) => tracing::warn!(
            jobs,
            timeout_s = timeout.as_secs_f64(),
            "queueing timed out; if it did not happen, the reconciler will queue them"
        ),
    }
}
