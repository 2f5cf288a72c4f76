//! Our job records in Redis: the source of truth for every job's state,
//! attempt log and retry schedule, shared by the app, the worker and the
//! monitor.
//!
//! apalis-redis keeps only a last error, no creation or next-run time, and
//! its listing is broken (APALIS.md #3), so the queue carries pointers and
//! the records live here. Layout, under each shard's prefix
//! (`<QUEUE_NAME>:hs:` with one shard on one Redis; see [`Shards`]):
//!
//! | key                   | type | holds                                           |
//! |-----------------------|------|-------------------------------------------------|
//! | `job:<id>`            | hash | spec JSON, state, counters, times, last result, the queue task carrying it, and its attempt log: one JSON [`Attempt`] per field `log:<n>`, the latest [`ATTEMPT_LOG_MAX`] |
//! | (the same, for a delivery of an event) | hash | also `ev` (`<tenant>:<event id>`) and `ep` (`<tenant>:<endpoint id>`); the event's and endpoint's own keys are in [`endpoints`] and [`events`] |
//! | `job:<id>:log`        | list | the attempt log of records written before it moved into the hash (read, never written) |
//! | `all`                 | zset | every job, scored by creation time (ms)         |
//! | `state:<state>`       | zset | jobs in that state, scored by creation time     |
//! | `group:<g>`, `tag:<t>`, `host:<h>` | zset | jobs with that label or destination host, by creation time |
//! | `due`                 | zset | `scheduled` jobs, scored by next attempt (ms)   |
//! | `expiry`              | zset | finished jobs of earlier versions, scored by when retention ends (drained, never written) |
//! | `expire:<state>`      | string | where the expiry walk of a finished state resumes |
//! | `stats:<unix minute>` | hash | `delivered`, `failed_attempts`, `failed` counts (2 h TTL) |
//! | `workers`             | zset | worker names, scored by last heartbeat (ms) (shard 0) |
//! | `idem:<caller>:<key>` | hash | first answer to an `Idempotency-Key` (TTL)      |
//! | `worker:<name>`       | hash | [`WorkerBeat`] fields (TTL: a few heartbeats)   |
//! | `reconcile:<state>`   | string | where the reconciler's walk of that state index resumes |
//!
//! # The rule: nothing is stranded
//!
//! A job in a non-terminal state always has a way forward that does not
//! depend on the process that wrote it:
//! - `queued`: its first task is on the apalis queue;
//! - `scheduled`: it is in `due`, at its next attempt time or, once its task
//!   was handed to the queue, at the end of that hand-off's lease;
//! - `delivering`: a worker holds it under a lease (`lease_until` = claim
//!   time + `HTTP_TIMEOUT` + [`LEASE_GRACE`]) and a claim token that
//!   [`JobStore::finish`] must present.
//!
//! Writes keep the rule where they can (every state change is one script),
//! and [`JobStore::reconcile`] and [`JobStore::lease_due`], run by every
//! worker, restore it where a process or Redis failed half-way: a `queued`
//! job older than `RECONCILE_AFTER` without its task (a stall mid-accept, a
//! task apalis gave up on), a `delivering` job whose lease ran out (a worker
//! killed mid-attempt), a hand-off whose task vanished. The rule itself is
//! written once, as `stuck()` in `lua/lib.lua`, which the reconciler and the
//! requeue / retry-now scripts share.
//!
//! An index per dimension is what lets new dimensions (the endpoint and the
//! event a job was fanned out from) be added later without touching
//! existing records.
//!
//! The sorted-set indexes let a reader page through any state newest-first
//! with `ZRANGE ... BYSCORE REV LIMIT`, in O(log n + page) whatever the
//! total, so nothing ever scans. Every state change is one Lua script that
//! moves the job between indexes atomically.

mod admin;
pub mod coalesce;
mod conn;
pub mod endpoints;
pub mod events;
pub mod flows;
mod listing;
mod shards;
pub mod sources;

pub use admin::{MinuteStats, RetryNow, WorkerInfo, WORKER_GONE_AFTER};
use coalesce::Coalescer;
pub use conn::{connect, RedisConn};
pub use listing::{Cursor, CursorError, JobFilter, JobSummary, Page, MAX_PAGE};
pub use shards::Shards;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use redis::{AsyncCommands, Script};

use crate::{
    config::{FlowSettings, Retention, Settings},
    domain::JobId,
    jobs::{Attempt, AttemptRef, JobRecord, JobSpec, JobState, QueueTask},
};

/// A Redis operation failed or returned something we cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or answered with an error.
    #[error("redis is unavailable")]
    Redis(#[from] redis::RedisError),
    /// A stored record did not parse; it was written by something else.
    #[error("job record {id} is corrupt: {why}")]
    Corrupt {
        /// The job.
        id: String,
        /// What did not parse.
        why: String,
    },
    /// A value could not be encoded.
    #[error("could not encode a job record")]
    Encode(#[from] serde_json::Error),
    /// The write reached its master, but fewer replicas than
    /// `REDIS_WAIT_REPLICAS` confirmed it in time: a failover now could
    /// lose it.
    #[error("written, but only {got} of {wanted} replicas confirmed it in time (REDIS_WAIT_REPLICAS)")]
    NotReplicated {
        /// `REDIS_WAIT_REPLICAS`.
        wanted: u32,
        /// Replicas that confirmed.
        got: u32,
    },
}

impl StoreError {
    /// The same error for another caller whose write shared the failed
    /// call (see `coalesce`).
    fn duplicate(&self) -> Self {
        match self {
            Self::Redis(e) => Self::Redis(e.clone()),
            Self::Corrupt { id, why } => Self::Corrupt { id: id.clone(), why: why.clone() },
            Self::Encode(e) => Self::Corrupt { id: "encode".to_owned(), why: e.to_string() },
            Self::NotReplicated { wanted, got } => Self::NotReplicated { wanted: *wanted, got: *got },
        }
    }
}

/// The answer to a worker asking to make an attempt.
#[derive(Debug)]
pub enum Claim {
    /// Go ahead; here is what to send.
    Ready {
        /// What to send where.
        spec: Box<JobSpec>,
        /// Attempts made before this one, over the job's whole life.
        attempts_before: u32,
        /// For a delivery of an event: the event and the endpoint as they
        /// are now.
        delivery: Option<Box<DeliveryRead>>,
        /// The flow it counts against (see [`flows`]); [`JobStore::finish`]
        /// takes it back.
        flow: String,
    },
    /// Flow control holds it back: parked, `scheduled` until `until` or
    /// until a slot frees, its attempt unspent (see [`flows`]).
    Wait {
        /// What it waits for.
        why: flows::WaitReason,
        /// When it looks again on its own.
        until: DateTime<Utc>,
    },
    /// Its endpoint is disabled: kept `held` until enabled or recovered.
    Held,
    /// That attempt was made already or the job moved on: skip the task.
    Stale(JobState),
    /// No such job (it expired or was deleted): skip the task.
    Missing,
}

/// A delivery's event and endpoint, read with its claim.
#[derive(Debug, Clone)]
pub struct DeliveryRead {
    /// The event's type.
    pub event_type: String,
    /// The event's payload, JSON; `None` once the event expired.
    pub payload: Option<String>,
    /// When the event was accepted.
    pub created_at: DateTime<Utc>,
    /// The endpoint's record, JSON; `None` once it was deleted.
    pub endpoint: Option<String>,
}

/// What happened to a requeue request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// A fresh retry cycle starts now.
    Requeued,
    /// Only failed jobs and jobs stuck for longer than `RECONCILE_AFTER`
    /// can be requeued; the job is in this state, on its way.
    NotStuck(JobState),
    /// No such job.
    Missing,
}

/// Where a finished attempt leaves the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered.
    Succeeded,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Stopped for good, for this reason.
    Failed(String),
}

/// What a worker reports about itself at each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBeat {
    /// Unique worker name.
    pub name: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When the process started.
    pub started_at: DateTime<Utc>,
    /// When this beat was sent.
    pub last_beat: DateTime<Utc>,
    /// Deliveries running now.
    pub in_flight: u64,
    /// Attempts that succeeded since start.
    pub delivered: u64,
    /// Attempts that failed since start.
    pub failed: u64,
}

/// A job to store.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Its id.
    pub id: &'a JobId,
    /// What to send where.
    pub spec: &'a JobSpec,
    /// Deliver no earlier than this; `None` is now.
    pub due: Option<DateTime<Utc>>,
    /// The queue task that will carry its first attempt (see
    /// [`QueueTask::DeliverBatchV1`]), for a job due now.
    pub task: Option<&'a str>,
}

/// One request's jobs, stored all or nothing on its idempotency key.
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    /// The jobs.
    pub jobs: Vec<NewRecord<'a>>,
    /// Remember the request under this key; nothing is stored if it was
    /// seen before.
    pub idempotency: Option<&'a IdempotencyClaim>,
    /// The request's one clock: `queued_at`, and what due times compare with.
    pub now: DateTime<Utc>,
}

/// An `Idempotency-Key`, scoped to one caller, with the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Caller scope and key, e.g. `<token id>:<key>`.
    pub key: String,
    /// Hash of the request body: the same key with another body is a conflict.
    pub fingerprint: String,
    /// How long the key is remembered.
    pub ttl: Duration,
}

/// What [`JobStore::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This many jobs were stored.
    New(u32),
    /// The idempotency key was used before; nothing was stored.
    Duplicate {
        /// The first request's fingerprint.
        fingerprint: String,
        /// The job the first request created.
        id: JobId,
        /// When the first request was accepted.
        queued_at: DateTime<Utc>,
        /// The job's state now; `None` once it expired or was deleted.
        state: Option<JobState>,
        /// The queue task that carries its first attempt, if recorded.
        task: Option<String>,
    },
}

/// Where the apalis queue keeps its tasks, so the reconciler can tell a job
/// whose task is waiting on the queue from one whose task is gone. Built by
/// [`crate::queue::Queue::task_lookup`]; the store only reads it.
#[derive(Debug, Clone)]
pub struct TaskLookup {
    /// The shard whose queue this is.
    pub shard: usize,
    /// apalis's task data hash (task id -> task), present from push until
    /// the janitor sweeps the finished task.
    pub data_hash: String,
}

/// What one reconciler pass put back on its way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// `queued` jobs whose first task was not on the queue.
    pub queued: u64,
    /// `delivering` jobs whose lease ran out.
    pub delivering: u64,
    /// `scheduled` jobs overdue by more than `RECONCILE_AFTER` (counted by
    /// [`JobStore::awaiting_reconcile`] only; a pass leaves them to
    /// [`JobStore::lease_due`]).
    pub scheduled: u64,
}

impl Reconciled {
    /// Jobs counted, whatever their state.
    pub fn total(&self) -> u64 {
        self.queued + self.delivering + self.scheduled
    }
}

/// The due jobs [`JobStore::lease_due`] handed out.
#[derive(Debug, Default)]
pub struct Leased {
    /// The attempts to put on the queue.
    pub tasks: Vec<QueueTask>,
    /// How many of them were handed out before and lost on the way
    /// (`scheduled` jobs reconciled).
    pub reconciled: u64,
}

/// Attempts kept in a job's log (`finish.lua` trims to this); the job's
/// `attempts` counter keeps the full count.
pub const ATTEMPT_LOG_MAX: usize = 100;

/// What a worker's lease on an attempt adds to `HTTP_TIMEOUT`: time to
/// record the result, through a Redis that may be slow. A worker that takes
/// longer loses the attempt to another worker (at-least-once: the receiver
/// may see it twice) rather than blocking the job.
pub const LEASE_GRACE: Duration = Duration::from_secs(10);

/// Jobs examined per state per reconciler pass: bounds the time one pass
/// holds Redis (a deep backlog is walked over several passes).
pub const RECONCILE_BATCH: usize = 500;

/// Handle on the job records; cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct JobStore {
    conn: RedisConn,
    shards: Shards,
    /// Per shard: its key prefix and its batched writes.
    parts: Arc<Vec<Part>>,
    retention: Retention,
    reconcile_after: Duration,
}

/// One shard's side of the store.
struct Part {
    prefix: String,
    /// A key in the shard's slot, named as every script's `KEYS[1]`: the
    /// cluster client routes a call by it, and every other key a script
    /// touches carries the same hash tag.
    all: String,
    batches: Batches,
}

/// The worker's writes for every attempt, each sent with other attempts'
/// (see `coalesce`; the app's creates are batched by `service`).
struct Batches {
    claim: Coalescer<[String; 6], Vec<String>>,
    finish: Coalescer<[String; 13], redis::Value>,
}

impl Batches {
    fn new(conn: &RedisConn, prefix: &str, all: &str, flow: &FlowSettings) -> Self {
        let (host_cap, failing) = (flow.host_max_in_flight, flow.failing_max_in_flight);
        let (failures, cooldown) = (flow.breaker_failures, flow.breaker_cooldown.as_millis() as u64);
        let (c2, p2, k2) = (conn.clone(), prefix.to_owned(), all.to_owned());
        let (c3, p3, k3) = (conn.clone(), prefix.to_owned(), all.to_owned());
        Self {
            claim: Coalescer::new(move |claims: Vec<[String; 6]>| {
                let mut inv = SCRIPTS.claim.key(&k2);
                inv.arg(&p2).arg(ms(Utc::now())).arg(host_cap).arg(failing);
                for c in &claims {
                    inv.arg(&c[..]);
                }
                let mut conn = c2.clone();
                async move { Ok(inv.invoke_async(&mut conn).await?) }
            }),
            finish: Coalescer::new(move |results: Vec<[String; 13]>| {
                let now = Utc::now();
                let mut inv = SCRIPTS.finish.key(&k3);
                inv.arg(&p3).arg(ms(now)).arg(now.timestamp() / 60).arg(failures).arg(cooldown).arg(host_cap);
                for r in &results {
                    inv.arg(&r[..]);
                }
                let mut conn = c3.clone();
                async move { Ok(inv.invoke_async(&mut conn).await?) }
            }),
        }
    }
}

struct Scripts {
    create: Script,
    claim: Script,
    finish: Script,
    requeue: Script,
    lease_due: Script,
    reconcile: Script,
    expire: Script,
}

/// A script that judges or restarts a job's progress: `lua/lib.lua` (the
/// one statement of the rule) followed by the script's own body.
macro_rules! with_lib {
    ($file:literal) => {
        Script::new(concat!(include_str!("lua/lib.lua"), include_str!($file)))
    };
}
pub(crate) use with_lib;

/// A script that passes attempts through flow control: `lua/lib.lua`,
/// then `lua/flow.lua` (the gate and what reopens it), then its own body.
macro_rules! with_flow {
    ($file:literal) => {
        Script::new(concat!(include_str!("lua/lib.lua"), include_str!("lua/flow.lua"), include_str!($file)))
    };
}

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    create: Script::new(include_str!("lua/create.lua")),
    claim: with_flow!("lua/claim.lua"),
    finish: with_flow!("lua/finish.lua"),
    requeue: with_lib!("lua/requeue.lua"),
    lease_due: Script::new(include_str!("lua/lease_due.lua")),
    reconcile: with_lib!("lua/reconcile.lua"),
    expire: Script::new(include_str!("lua/expire.lua")),
});

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl JobStore {
    /// The store of `QUEUE_NAME`'s jobs, with its retention and
    /// `RECONCILE_AFTER`.
    pub fn new(conn: RedisConn, settings: &Settings) -> Self {
        let shards = Shards::new(&settings.redis);
        let parts = shards
            .all()
            .map(|k| {
                let prefix = shards.prefix(k);
                let all = format!("{prefix}all");
                Part { batches: Batches::new(&conn, &prefix, &all, &settings.flow), prefix, all }
            })
            .collect();
        Self {
            conn,
            shards,
            parts: Arc::new(parts),
            retention: settings.retention,
            reconcile_after: settings.reconcile_after,
        }
    }

    /// `RECONCILE_AFTER`: how long a job may make no progress before the
    /// reconciler, a requeue or a retry-now may move it.
    pub fn reconcile_after(&self) -> Duration {
        self.reconcile_after
    }

    /// The shards (`QUEUE_SHARDS`).
    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    /// The key prefix of shard 0 (`<QUEUE_NAME>:hs:` with one shard on one
    /// Redis), where the keys that belong to no job live: the worker
    /// registry, monitor sessions.
    pub fn prefix(&self) -> &str {
        &self.parts[0].prefix
    }

    /// The key prefix of the shard job `id` lives in.
    pub fn prefix_of(&self, id: &JobId) -> &str {
        &self.part_of(id).prefix
    }

    fn part_of(&self, id: &JobId) -> &Part {
        &self.parts[self.shards.of_job(id)]
    }

    /// The connection, for the other Redis users in this process.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    fn job_key(&self, id: &JobId) -> String {
        format!("{}job:{id}", self.prefix_of(id))
    }

    /// The key of a state index in shard 0 (for tests on one shard).
    pub fn state_key(&self, state: JobState) -> String {
        self.state_key_in(0, state)
    }

    /// The key of a state index in shard `k`.
    pub fn state_key_in(&self, k: usize, state: JobState) -> String {
        format!("{}state:{}", self.parts[k].prefix, state.as_str())
    }

    /// Answers when Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Stores new jobs: `queued`, or `scheduled` when their `due` time is
    /// ahead. With an idempotency claim, nothing is stored if the key was
    /// seen before; the first request's answer comes back instead (the key
    /// must then hash to the jobs' shard, see [`Shards::mint`]). Jobs of
    /// several shards are stored shard by shard.
    pub async fn create(
        &self,
        jobs: &[NewRecord<'_>],
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> Result<Created, StoreError> {
        let mut stored = 0;
        for shard in self.shards.all() {
            let mine: Vec<NewRecord<'_>> = jobs.iter().filter(|j| self.shards.of_job(j.id) == shard).copied().collect();
            if mine.is_empty() {
                continue;
            }
            let request = CreateRequest { jobs: mine, idempotency, now };
            match self.create_many(shard, std::slice::from_ref(&request)).await?.pop() {
                Some(Created::New(n)) => stored += n,
                Some(dup) => return Ok(dup),
                None => return Err(StoreError::Corrupt { id: "create".to_owned(), why: "no answer".to_owned() }),
            }
        }
        Ok(Created::New(stored))
    }

    /// [`JobStore::create`] for several requests in one round trip; one
    /// answer per request, in order. Every job must live in `shard` (see
    /// [`Shards::mint`]), and so must the idempotency keys.
    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    pub async fn create_many(&self, shard: usize, requests: &[CreateRequest<'_>]) -> Result<Vec<Created>, StoreError> {
        let part = &self.parts[shard];
        let mut inv = SCRIPTS.create.key(&part.all);
        inv.arg(&part.prefix);
        for r in requests {
            inv.arg(ms(r.now));
            match r.idempotency {
                Some(claim) => inv.arg(&claim.key).arg(&claim.fingerprint).arg(claim.ttl.as_millis() as u64),
                None => inv.arg("").arg("").arg(0),
            };
            inv.arg(r.jobs.len());
            for job in &r.jobs {
                let spec = job.spec;
                inv.arg(job.id.as_str())
                    .arg(serde_json::to_string(spec)?)
                    .arg(spec.group.as_ref().map(|l| l.as_str()).unwrap_or_default())
                    .arg(spec.tag.as_ref().map(|l| l.as_str()).unwrap_or_default())
                    .arg(spec.to_url.host())
                    .arg(job.due.map(ms).unwrap_or(0))
                    .arg(job.task.unwrap_or_default());
            }
        }
        let replies: Vec<Vec<String>> = inv.invoke_async(&mut self.conn.clone()).await?;
        replies
            .iter()
            .map(|reply| match reply.as_slice() {
                [dup, fingerprint, id, queued_at, state, task] if dup == "dup" => Ok(Created::Duplicate {
                    fingerprint: fingerprint.clone(),
                    id: JobId::parse(id).map_err(|e| StoreError::Corrupt { id: id.clone(), why: e.to_string() })?,
                    queued_at: from_ms(queued_at.parse().unwrap_or_default()),
                    state: state.parse().ok(),
                    task: Some(task.clone()).filter(|t| !t.is_empty()),
                }),
                [_, n] => Ok(Created::New(n.parse().unwrap_or_default())),
                other => {
                    Err(StoreError::Corrupt { id: "create".to_owned(), why: format!("unexpected reply {other:?}") })
                }
            })
            .collect()
    }

    /// Waits until the writes made so far to shard `shard`'s master have
    /// reached `replicas` replicas, at most `timeout`; see
    /// [`RedisConn::wait_replicas`].
    pub async fn wait_replicas(&self, shard: usize, replicas: u32, timeout: Duration) -> Result<(), StoreError> {
        let got = self.conn.wait_replicas(&self.parts[shard].all, replicas, timeout).await?;
        if got < replicas {
            return Err(StoreError::NotReplicated { wanted: replicas, got });
        }
        Ok(())
    }

    /// Reads a job with its attempt log.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let key = self.job_key(id);
        let (fields, log): (std::collections::HashMap<String, String>, Vec<String>) =
            redis::pipe().hgetall(&key).lrange(format!("{key}:log"), 0, -1).query_async(&mut self.conn.clone()).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = |why: String| StoreError::Corrupt { id: id.to_string(), why };
        let num = |name: &str| -> Option<i64> { fields.get(name).and_then(|v| v.parse().ok()) };
        let spec: JobSpec = serde_json::from_str(fields.get("spec").map(String::as_str).unwrap_or_default())
            .map_err(|e| corrupt(format!("spec: {e}")))?;
        let state: JobState = fields
            .get("state")
            .map(String::as_str)
            .unwrap_or_default()
            .parse()
            .map_err(|e: crate::jobs::UnknownState| corrupt(e.to_string()))?;
        // Records written before the log moved into the hash keep a list.
        let mut inline: Vec<(u64, &String)> =
            fields.iter().filter_map(|(k, v)| Some((k.strip_prefix("log:")?.parse().ok()?, v))).collect();
        inline.sort_unstable_by_key(|(n, _)| *n);
        let attempt_log = log
            .iter()
            .chain(inline.into_iter().map(|(_, v)| v))
            .map(|entry| serde_json::from_str::<Attempt>(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(format!("attempt log: {e}")))?;
        Ok(Some(JobRecord {
            id: id.clone(),
            spec,
            state,
            created_at: from_ms(num("created_at").unwrap_or_default()),
            updated_at: from_ms(num("updated_at").unwrap_or_default()),
            attempts: num("attempts").unwrap_or_default() as u32,
            cycle: num("cycle").unwrap_or_default() as u32,
            cycle_attempts: num("cycle_attempts").unwrap_or_default() as u32,
            next_attempt_at: num("next_attempt_at").map(from_ms),
            last_status: num("last_status").map(|s| s as u16),
            last_error: fields.get("last_error").cloned(),
            stop_reason: fields.get("stop_reason").cloned(),
            attempt_log,
        }))
    }

    /// Reads several jobs (those that exist), in order; the requests share
    /// the connection's pipeline.
    pub async fn get_many(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, StoreError> {
        let found = futures::future::try_join_all(ids.iter().map(|id| self.get(id))).await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// The state of each job (`None`: gone), in one round trip per shard.
    pub async fn states(&self, ids: &[JobId]) -> Result<Vec<Option<JobState>>, StoreError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.job_key(id), "state");
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let states: Vec<Option<String>> = if self.shards.count() == 1 {
            pipe.query_async(&mut self.conn.clone()).await?
        } else {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(self.conn.clone().hget(self.job_key(id), "state").await?);
            }
            out
        };
        Ok(states.into_iter().map(|s| s.and_then(|s| s.parse().ok())).collect())
    }

    /// Takes an attempt for a worker under a lease of `lease` (its
    /// `HTTP_TIMEOUT` plus [`LEASE_GRACE`]); `token` is what
    /// [`JobStore::finish`] must present. See [`Claim`].
    #[tracing::instrument(skip_all, fields(job_id = %id, cycle, attempt))]
    pub async fn claim(
        &self,
        id: &JobId,
        cycle: u32,
        attempt: u32,
        worker: &str,
        token: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let reply = self
            .part_of(id)
            .batches
            .claim
            .submit([
                id.as_str().to_owned(),
                cycle.to_string(),
                attempt.to_string(),
                worker.to_owned(),
                token.to_owned(),
                lease.as_millis().to_string(),
            ])
            .await?;
        let corrupt = |why: String| StoreError::Corrupt { id: id.to_string(), why };
        match reply.as_slice() {
            [ok, spec, attempts, flow, rest @ ..] if ok == "ok" => Ok(Claim::Ready {
                spec: Box::new(serde_json::from_str(spec).map_err(|e| corrupt(format!("spec: {e}")))?),
                attempts_before: attempts.parse().unwrap_or_default(),
                flow: flow.clone(),
                delivery: match rest {
                    [event_type, payload, created, endpoint] => Some(Box::new(DeliveryRead {
                        event_type: event_type.clone(),
                        payload: Some(payload.clone()).filter(|p| !p.is_empty()),
                        created_at: from_ms(created.parse().unwrap_or_default()),
                        endpoint: Some(endpoint.clone()).filter(|e| !e.is_empty()),
                    })),
                    _ => None,
                },
            }),
            [wait, why, until] if wait == "wait" => Ok(Claim::Wait {
                why: why.parse().map_err(|_| corrupt(format!("wait reason {why}")))?,
                until: from_ms(until.parse().unwrap_or_default()),
            }),
            [held] if held == "held" => Ok(Claim::Held),
            [stale, state] if stale == "stale" => {
                Ok(Claim::Stale(state.parse().map_err(|e: crate::jobs::UnknownState| corrupt(e.to_string()))?))
            }
            _ => Ok(Claim::Missing),
        }
    }

    /// Records an attempt and moves the job on, and tells flow control
    /// what the attempt said about its receiver (`verdict`) on `flow` (as
    /// the claim named it). Returns `None` when the job was not waiting for
    /// this attempt under this claim `token` (a duplicate task finished
    /// first, or the lease ran out and the reconciler gave the attempt to
    /// another worker).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(job_id = %id, attempt = record.attempt))]
    pub async fn finish(
        &self,
        id: &JobId,
        cycle_attempt: u32,
        token: &str,
        record: &Attempt,
        next: NextStep,
        flow: &str,
        verdict: flows::Verdict,
    ) -> Result<Option<flows::Recorded>, StoreError> {
        let (state, next_at) = match next {
            NextStep::Succeeded => (JobState::Succeeded, String::new()),
            NextStep::Failed(_) => (JobState::Failed, String::new()),
            NextStep::RetryAt(at) => (JobState::Scheduled, ms(at).to_string()),
        };
        let reply = self
            .part_of(id)
            .batches
            .finish
            .submit([
                id.as_str().to_owned(),
                record.cycle.to_string(),
                cycle_attempt.to_string(),
                state.as_str().to_owned(),
                serde_json::to_string(record)?,
                record.status.map(|s| s.to_string()).unwrap_or_default(),
                record.error.clone().unwrap_or_default(),
                next_at,
                match &next {
                    NextStep::Failed(why) => why.clone(),
                    _ => String::new(),
                },
                token.to_owned(),
                flow.to_owned(),
                verdict.as_str().to_owned(),
                record.duration_ms.to_string(),
            ])
            .await?;
        flows::Recorded::from_reply(reply).map_err(|why| StoreError::Corrupt { id: id.to_string(), why })
    }

    /// Starts a fresh retry cycle for a failed job, or for one stuck in a
    /// non-terminal state for longer than `RECONCILE_AFTER`; see [`Requeue`].
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn requeue(&self, id: &JobId) -> Result<Requeue, StoreError> {
        let mut outcomes = self.requeue_many(std::slice::from_ref(id), Duration::ZERO, 0).await?;
        Ok(outcomes.pop().unwrap_or(Requeue::Missing))
    }

    /// [`JobStore::requeue`] for many jobs in one round trip; the n-th job
    /// requeued (counting from `ramp_start`) is due `n × spread` from now.
    /// One outcome per id, in order.
    #[tracing::instrument(skip_all, fields(jobs = ids.len()))]
    pub async fn requeue_many(
        &self,
        ids: &[JobId],
        spread: Duration,
        ramp_start: u64,
    ) -> Result<Vec<Requeue>, StoreError> {
        let mut outcomes: Vec<Option<Requeue>> = vec![None; ids.len()];
        let mut ramp = ramp_start;
        for (k, part) in self.parts.iter().enumerate() {
            let mine: Vec<usize> = (0..ids.len()).filter(|i| self.shards.of_job(&ids[*i]) == k).collect();
            if mine.is_empty() {
                continue;
            }
            let mut inv = SCRIPTS.requeue.key(&part.all);
            inv.arg(&part.prefix)
                .arg(ms(Utc::now()))
                .arg(self.reconcile_after.as_millis() as u64)
                .arg(spread.as_micros() as u64)
                .arg(ramp);
            for i in &mine {
                inv.arg(ids[*i].as_str());
            }
            let replies: Vec<String> = inv.invoke_async(&mut self.conn.clone()).await?;
            for (i, reply) in mine.into_iter().zip(replies) {
                outcomes[i] = Some(match reply.as_str() {
                    "ok" => {
                        ramp += 1;
                        Requeue::Requeued
                    }
                    "missing" => Requeue::Missing,
                    other => Requeue::NotStuck(other.parse().map_err(|e: crate::jobs::UnknownState| {
                        StoreError::Corrupt { id: ids[i].to_string(), why: e.to_string() }
                    })?),
                });
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Requeue::Missing)).collect())
    }

    /// Leases up to `limit` jobs whose next attempt is due, for
    /// `RECONCILE_AFTER`, and returns the queue tasks that make those
    /// attempts. A job whose earlier hand-off lease ran out is handed out
    /// again only when its task is no longer in `tasks`.
    pub async fn lease_due(&self, limit: usize, tasks: &TaskLookup) -> Result<Leased, StoreError> {
        let part = &self.parts[tasks.shard];
        let flat: Vec<String> = SCRIPTS
            .lease_due
            .key(format!("{}due", part.prefix))
            .arg(&part.prefix)
            .arg(ms(Utc::now()))
            .arg(limit)
            .arg(self.reconcile_after.as_millis() as u64)
            .arg(&tasks.data_hash)
            .arg(format!("r.{}", uuid::Uuid::new_v4().simple()))
            .arg(QueueTask::MAX_ATTEMPTS)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some((reconciled, flat)) = flat.split_first() else {
            return Ok(Leased::default());
        };
        let tasks = QueueTask::batches(flat.chunks_exact(4).filter_map(|c| {
            let attempt = AttemptRef {
                job_id: JobId::parse(&c[0]).ok()?,
                cycle: c[1].parse().ok()?,
                attempt: c[2].parse().ok()?,
            };
            Some((c[3].clone(), attempt))
        }));
        Ok(Leased { tasks, reconciled: reconciled.parse().unwrap_or_default() })
    }

    /// One reconciler pass over the shard of `tasks`: moves jobs that lost
    /// their way forward (see the module doc) back to `scheduled`, due now,
    /// at most [`RECONCILE_BATCH`] per state. Safe to run from every worker
    /// at once.
    #[tracing::instrument(skip_all)]
    pub async fn reconcile(&self, tasks: &TaskLookup) -> Result<Reconciled, StoreError> {
        self.run_reconcile(tasks, false).await
    }

    /// How many jobs the next passes would move (looking at the oldest
    /// [`RECONCILE_BATCH`] of each state in each shard): normally 0. For the
    /// monitor; `tasks` has one entry per shard.
    pub async fn awaiting_reconcile(&self, tasks: &[TaskLookup]) -> Result<Reconciled, StoreError> {
        let mut sum = Reconciled::default();
        for t in tasks {
            let r = self.run_reconcile(t, true).await?;
            sum.queued += r.queued;
            sum.delivering += r.delivering;
            sum.scheduled += r.scheduled;
        }
        Ok(sum)
    }

    async fn run_reconcile(&self, tasks: &TaskLookup, dry: bool) -> Result<Reconciled, StoreError> {
        let part = &self.parts[tasks.shard];
        let (queued, delivering, scheduled): (u64, u64, u64) = SCRIPTS
            .reconcile
            .key(&part.all)
            .arg(&part.prefix)
            .arg(ms(Utc::now()))
            .arg(self.reconcile_after.as_millis() as u64)
            .arg(RECONCILE_BATCH)
            .arg(&tasks.data_hash)
            .arg(if dry { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Reconciled { queued, delivering, scheduled })
    }

    /// Deletes up to `limit` finished jobs per shard whose retention has
    /// run out.
    pub async fn expire_finished(&self, limit: usize) -> Result<u64, StoreError> {
        let mut total = 0;
        for part in self.parts.iter() {
            let n: u64 = SCRIPTS
                .expire
                .key(&part.all)
                .arg(&part.prefix)
                .arg(ms(Utc::now()))
                .arg(limit)
                .arg(self.retention.succeeded.as_millis() as u64)
                .arg(self.retention.failed.as_millis() as u64)
                .invoke_async(&mut self.conn.clone())
                .await?;
            total += n;
        }
        Ok(total)
    }

    /// Records a worker heartbeat. The hash expires after `ttl`, so a worker
    /// that stops beating disappears by itself; readers treat it as gone
    /// sooner, from the age of `last_beat`.
    pub async fn beat(&self, beat: &WorkerBeat, ttl: Duration) -> Result<(), StoreError> {
        let key = format!("{}worker:{}", self.prefix(), beat.name);
        let now = ms(beat.last_beat);
        redis::pipe()
            .hset_multiple(
                &key,
                &[
                    ("host", beat.host.clone()),
                    ("pid", beat.pid.to_string()),
                    ("started_at", ms(beat.started_at).to_string()),
                    ("last_beat", now.to_string()),
                    ("in_flight", beat.in_flight.to_string()),
                    ("delivered", beat.delivered.to_string()),
                    ("failed", beat.failed.to_string()),
                ],
            )
            .ignore()
            .pexpire(&key, ttl.as_millis() as i64)
            .ignore()
            .zadd(format!("{}workers", self.prefix()), &beat.name, now)
            .ignore()
            // Names whose hash has long expired leave the registry.
            .zrembyscore(format!("{}workers", self.prefix()), "-inf", now - ttl.as_millis() as i64)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Removes a worker from the registry (clean shutdown).
    pub async fn forget_worker(&self, name: &str) -> Result<(), StoreError> {
        redis::pipe()
            .del(format!("{}worker:{name}", self.prefix()))
            .ignore()
            .zrem(format!("{}workers", self.prefix()), name)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// When the oldest job now in `state` was accepted.
    pub async fn oldest_created_at(&self, state: JobState) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut oldest: Option<i64> = None;
        for k in self.shards.all() {
            let first: Vec<(String, i64)> =
                self.conn.clone().zrange_withscores(self.state_key_in(k, state), 0, 0).await?;
            if let Some((_, created)) = first.first() {
                oldest = Some(oldest.map_or(*created, |o| o.min(*created)));
            }
        }
        Ok(oldest.map(from_ms))
    }

    /// How many jobs are in each state.
    pub async fn counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let mut sums = [0u64; JobState::ALL.len()];
        for k in self.shards.all() {
            // One pipeline per shard: on a cluster, each goes to one node.
            let mut pipe = redis::pipe();
            for st in JobState::ALL {
                pipe.zcard(self.state_key_in(k, st));
            }
            let counts: Vec<u64> = pipe.query_async(&mut self.conn.clone()).await?;
            for (sum, n) in sums.iter_mut().zip(counts) {
                *sum += n;
            }
        }
        Ok(JobState::ALL.into_iter().zip(sums).collect())
    }

    /// The ids in a state, newest first (for tests and tools).
    pub async fn ids_in_state(&self, state: JobState, limit: isize) -> Result<Vec<String>, StoreError> {
        let mut all: Vec<(String, i64)> = Vec::new();
        for k in self.shards.all() {
            let mut conn = self.conn.clone();
            let some: Vec<(String, i64)> = conn.zrevrange_withscores(self.state_key_in(k, state), 0, limit - 1).await?;
            all.extend(some);
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        all.truncate(limit.max(0) as usize);
        Ok(all.into_iter().map(|(id, _)| id).collect())
    }
}
