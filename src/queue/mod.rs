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

use std::{sync::Arc, time::Duration};

use apalis_core::task::{builder::TaskBuilder, task_id::TaskId};

use crate::{
    config::Settings,
    jobs::QueueTask,
    store::{RedisConn, Shards, TaskLookup},
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

/// The apalis-redis configuration of shard 0 (the only one by default).
pub fn apalis_config(settings: &Settings) -> apalis_redis::Config {
    apalis_config_for(settings, 0)
}

/// The apalis-redis configuration of shard `shard` that every process must
/// agree on; its queue name carries the shard's hash tag (see
/// [`crate::store::Shards`]).
pub fn apalis_config_for(settings: &Settings, shard: usize) -> apalis_redis::Config {
    let w = &settings.worker;
    let missed = (w.orphan_after.as_secs_f64() / w.heartbeat_interval.as_secs_f64().max(0.001)).ceil().max(2.0);
    apalis_redis::Config::default()
        .queue(Shards::new(&settings.redis).queue(shard))
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

/// Puts attempts on the apalis queue: one apalis queue per shard.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    configs: Arc<Vec<apalis_redis::Config>>,
}

impl Queue {
    /// A handle on every shard's queue, over an existing connection.
    pub fn new(conn: RedisConn, settings: &Settings) -> Self {
        let configs = Shards::new(&settings.redis).all().map(|k| apalis_config_for(settings, k)).collect();
        Self { conn, configs: Arc::new(configs) }
    }

    /// How many shards (apalis queues) there are.
    pub fn shards(&self) -> usize {
        self.configs.len()
    }

    /// The apalis configuration (key names) of shard 0.
    pub fn config(&self) -> &apalis_redis::Config {
        &self.configs[0]
    }

    /// The apalis configuration (key names) of shard `shard`.
    pub fn config_of(&self, shard: usize) -> &apalis_redis::Config {
        &self.configs[shard]
    }

    /// Where shard `shard`'s queue keeps task data, for the store's reconciler.
    pub fn task_lookup(&self, shard: usize) -> TaskLookup {
        TaskLookup { shard, data_hash: self.configs[shard].job_data_hash() }
    }

    /// [`Queue::task_lookup`] of every shard.
    pub fn task_lookups(&self) -> Vec<TaskLookup> {
        (0..self.shards()).map(|k| self.task_lookup(k)).collect()
    }

    /// Pushes tasks onto shard `shard`'s queue in one round trip, then wakes
    /// idle workers. Pushing a task id that apalis still holds is a no-op.
    /// Every attempt must be of a job in that shard.
    pub async fn push(&self, shard: usize, tasks: &[QueueTask]) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        push_now(&self.conn, &self.configs[shard], tasks).await
    }

    /// Tasks waiting on the queue, every shard (active lists plus scheduled sets).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        let mut total = 0;
        for config in self.configs.iter() {
            let (active, scheduled): (u64, u64) = redis::pipe()
                .llen(config.active_jobs_list())
                .zcard(config.scheduled_jobs_set())
                .query_async(&mut self.conn.clone())
                .await?;
            total += active + scheduled;
        }
        Ok(total)
    }
}

/// One apalis push for `tasks`, then a wake-up for idle workers.
async fn push_now(conn: &RedisConn, config: &apalis_redis::Config, tasks: &[QueueTask]) -> Result<(), QueueError> {
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
