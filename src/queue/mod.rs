//! The apalis queue: how job attempts are put on it and how its 1.0.0
//! defects are kept away from us.
//!
//! The queue carries [`QueueTask`]s (pointers to our job records), never
//! payloads. Each workaround for apalis-redis 1.0.0 is named
//! `WORKAROUND(apalis-redis 1.0.0, APALIS.md #n)` where it lives, and has a
//! test in `tests/it/apalis_workarounds.rs` that fails without it; delete
//! both when upstream fixes the defect.

pub mod poll;
pub mod wake;
pub mod workarounds;

use std::time::Duration;

use apalis_core::task::{builder::TaskBuilder, task_id::TaskId};

use crate::{
    config::Settings,
    jobs::QueueTask,
    store::{RedisConn, TaskLookup},
};

/// The apalis storage type the worker consumes.
pub type Storage = apalis_redis::RedisStorage<QueueTask, RedisConn>;

/// Putting a task on the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// apalis-redis reported an error (Redis unreachable, script error).
    #[error("could not put the job on the queue")]
    Push(#[from] apalis_redis::Error),
    /// The task could not be encoded.
    #[error("could not encode the queue task")]
    Encode(#[from] serde_json::Error),
    /// A Redis call of ours failed.
    #[error("redis is unavailable")]
    Redis(#[from] redis::RedisError),
}

/// The apalis-redis configuration every process must agree on.
pub fn apalis_config(settings: &Settings) -> apalis_redis::Config {
    let w = &settings.worker;
    let missed = (w.orphan_after.as_secs_f64() / w.heartbeat_interval.as_secs_f64().max(0.001)).ceil().max(2.0);
    apalis_redis::Config::default()
        .queue(&settings.redis.queue)
        // Heartbeats and orphan detection are whole seconds in apalis-redis.
        .heartbeat_interval(w.heartbeat_interval.max(Duration::from_secs(1)))
        .missed_heartbeats(missed as usize)
        // WORKAROUND(apalis-redis 1.0.0, APALIS.md #9): with task locking on,
        // every task start runs `LREM` over the whole active list, so
        // throughput falls as the backlog grows. Locking only adds lease
        // renewal; orphan recovery works from the per-worker in-flight set
        // that fetch fills either way, and our claim step keeps a duplicated
        // attempt from counting twice.
        .lock_tasks(false)
        // apalis publishes an event per pushed, locked and finished task;
        // nobody listens (we wake workers ourselves), so each would be a
        // wasted PUBLISH per job (measured: 2 PUBLISH per job with it on).
        .emit_events(false)
        // A task may carry up to QueueTask::MAX_ATTEMPTS attempts: a fetch
        // of a few tasks is plenty of work, and leaves the rest of a burst
        // to other workers.
        .batch_size((w.concurrency / 8).clamp(1, 16))
}

/// Puts attempts on the apalis queue.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    config: apalis_redis::Config,
}

impl Queue {
    /// A queue handle on an existing connection.
    pub fn new(conn: RedisConn, config: apalis_redis::Config) -> Self {
        Self { conn, config }
    }

    /// The apalis configuration (key names) in use.
    pub fn config(&self) -> &apalis_redis::Config {
        &self.config
    }

    /// Where apalis keeps task data, for the store's reconciler.
    pub fn task_lookup(&self) -> TaskLookup {
        TaskLookup { data_hash: self.config.job_data_hash() }
    }

    /// Pushes tasks through apalis-redis in one round trip, then wakes idle
    /// workers. Pushing a task id that apalis still holds is a no-op.
    pub async fn push(&self, tasks: &[QueueTask]) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        push_now(&self.conn, &self.config, tasks).await
    }

    /// Tasks waiting on the queue (active list plus scheduled set).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        let (active, scheduled): (u64, u64) = redis::pipe()
            .llen(self.config.active_jobs_list())
            .zcard(self.config.scheduled_jobs_set())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(active + scheduled)
    }
}

/// One apalis push for `tasks`, then a wake-up for idle workers.
async fn push_now(
    conn: &RedisConn,
    config: &apalis_redis::Config,
    tasks: &[QueueTask],
) -> Result<(), QueueError> {
    let compact = tasks
        .iter()
        .map(|t| Ok(TaskBuilder::new(serde_json::to_vec(t)?).task_id(TaskId::from_string(t.task_id())).build()))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    apalis_redis::queries::push_tasks(&mut conn.clone(), config, &compact).await?;
    // Wake idle workers now rather than at their next poll. Losing this
    // message only costs latency, so its failure is not the caller's.
    let published: Result<i64, _> =
        redis::cmd("PUBLISH").arg(wake::channel(config.queue.as_ref())).arg(1).query_async(&mut conn.clone()).await;
    if let Err(e) = published {
        tracing::debug!(error.message = %e, "could not publish a wake-up");
    }
    Ok(())
}
