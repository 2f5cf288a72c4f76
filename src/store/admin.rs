//! What the monitor reads and changes beyond a single job's life cycle:
//! retry-now, delete, bulk purge, per-minute counters, the worker registry,
//! and the monitor's login sessions.
//!
//! Requeueing is not here: it is [`crate::service::HookService::requeue`],
//! the one function every entry point uses.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};

use crate::{domain::JobId, jobs::JobState};

use super::{from_ms, ms, JobStore, StoreError, WorkerBeat};

struct AdminScripts {
    delete: Script,
    retry_now: Script,
}

static SCRIPTS: std::sync::LazyLock<AdminScripts> = std::sync::LazyLock::new(|| AdminScripts {
    delete: Script::new(include_str!("lua/monitor_delete.lua")),
    retry_now: super::with_lib!("lua/monitor_retry_now.lua"),
});

/// Jobs deleted per round trip by [`JobStore::purge_finished`], so one
/// script never blocks Redis for long.
const PURGE_BATCH: usize = 500;

/// What happened to a retry-now request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryNow {
    /// The next attempt is due now.
    Done,
    /// Only scheduled jobs, and jobs stuck for longer than
    /// `RECONCILE_AFTER`, can be retried now; the job is in this state.
    NotScheduled(JobState),
    /// No such job.
    Missing,
}

/// Attempts finished in one minute (from the `stats:<minute>` counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteStats {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Successful deliveries.
    pub delivered: u64,
    /// Failed attempts (retried or final).
    pub failed_attempts: u64,
    /// Jobs that failed for good.
    pub failed: u64,
}

/// A worker as the registry last heard from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its last heartbeat.
    pub beat: WorkerBeat,
    /// False once it has been silent longer than [`WORKER_GONE_AFTER`]; it
    /// is dropped from the registry when its record expires.
    pub alive: bool,
}

/// A worker beats every second; silent this long, it is shown as gone.
pub const WORKER_GONE_AFTER: Duration = Duration::from_secs(5);

impl JobStore {
    fn session_key(&self, id: &str) -> String {
        format!("{}monitor:session:{id}", self.prefix())
    }

    /// Makes a scheduled job's next attempt due now, or gives a stuck job a
    /// fresh cycle due now; see [`RetryNow`].
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn retry_now(&self, id: &JobId) -> Result<RetryNow, StoreError> {
        let part = self.part_of(id);
        let reply: String = SCRIPTS
            .retry_now
            .key(&part.all)
            .arg(&part.prefix)
            .arg(id.as_str())
            .arg(ms(Utc::now()))
            .arg(self.reconcile_after().as_millis() as u64)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(match reply.as_str() {
            "ok" => RetryNow::Done,
            "missing" => RetryNow::Missing,
            other => RetryNow::NotScheduled(other.parse().map_err(|e: crate::jobs::UnknownState| {
                StoreError::Corrupt { id: id.to_string(), why: e.to_string() }
            })?),
        })
    }

    /// Deletes a job, its attempt log and every index entry. Returns false
    /// when there was no such job. A queue task still pointing at it is
    /// skipped by the worker (the claim finds nothing).
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn delete(&self, id: &JobId) -> Result<bool, StoreError> {
        let part = self.part_of(id);
        let n: u64 = SCRIPTS
            .delete
            .key(&part.all)
            .arg(&part.prefix)
            .arg("")
            .arg(id.as_str())
            .invoke_async(&mut self.connection())
            .await?;
        Ok(n == 1)
    }

    /// Deletes every job in final state `state` created before `before`,
    /// in bounded batches, oldest first. Returns how many were deleted.
    #[tracing::instrument(skip_all, fields(state = %state))]
    pub async fn purge_finished(&self, state: JobState, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        let mut conn = self.connection();
        for (k, part) in self.parts.iter().enumerate() {
            let index = self.state_key_in(k, state);
            loop {
                let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(format!("({}", ms(before)))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(PURGE_BATCH)
                    .query_async(&mut conn)
                    .await?;
                if ids.is_empty() {
                    break;
                }
                let mut inv = SCRIPTS.delete.key(&part.all);
                inv.arg(&part.prefix).arg(state.as_str());
                for id in &ids {
                    inv.arg(id);
                }
                let n: u64 = inv.invoke_async(&mut conn).await?;
                total += n;
                if ids.len() < PURGE_BATCH || n == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// The per-minute counters of the last `minutes` minutes, oldest first
    /// (the current, unfinished minute last).
    pub async fn minute_stats(&self, minutes: i64, now: DateTime<Utc>) -> Result<Vec<MinuteStats>, StoreError> {
        let current = now.timestamp() / 60;
        let buckets: Vec<i64> = (current - minutes + 1..=current).collect();
        // Each shard counts its own finishes; one pipeline per shard.
        let mut sums = vec![(0u64, 0u64, 0u64); buckets.len()];
        for part in self.parts.iter() {
            let mut pipe = redis::pipe();
            for m in &buckets {
                pipe.cmd("HMGET").arg(format!("{}stats:{m}", part.prefix)).arg(&[
                    "delivered",
                    "failed_attempts",
                    "failed",
                ]);
            }
            let rows: Vec<(Option<u64>, Option<u64>, Option<u64>)> = pipe.query_async(&mut self.connection()).await?;
            for (sum, (d, fa, f)) in sums.iter_mut().zip(rows) {
                sum.0 += d.unwrap_or(0);
                sum.1 += fa.unwrap_or(0);
                sum.2 += f.unwrap_or(0);
            }
        }
        Ok(buckets
            .into_iter()
            .zip(sums)
            .map(|(m, (delivered, failed_attempts, failed))| MinuteStats {
                minute: from_ms(m * 60_000),
                delivered,
                failed_attempts,
                failed,
            })
            .collect())
    }

    /// When the oldest job still waiting for its first attempt was accepted.
    pub async fn oldest_queued(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.oldest_created_at(JobState::Queued).await
    }

    /// Every worker in the registry, most recent heartbeat first. Workers
    /// whose record expired are left out: they are dropped.
    pub async fn workers(&self, now: DateTime<Utc>) -> Result<Vec<WorkerInfo>, StoreError> {
        let mut conn = self.connection();
        // The registry holds only workers heard from within its TTL, so it
        // stays small; the beat() writer trims it.
        let names: Vec<String> = conn.zrevrange(format!("{}workers", self.prefix()), 0, 999).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hgetall(format!("{}worker:{name}", self.prefix()));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        let gone_before = ms(now) - WORKER_GONE_AFTER.as_millis() as i64;
        Ok(names
            .into_iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .map(|(name, h)| {
                let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or_default();
                let last = num("last_beat");
                WorkerInfo {
                    beat: WorkerBeat {
                        name,
                        host: h.get("host").cloned().unwrap_or_default(),
                        pid: num("pid") as u32,
                        started_at: from_ms(num("started_at")),
                        last_beat: from_ms(last),
                        in_flight: num("in_flight") as u64,
                        delivered: num("delivered") as u64,
                        failed: num("failed") as u64,
                    },
                    alive: last >= gone_before,
                }
            })
            .collect())
    }

    /// Stores a monitor login session holding its CSRF token.
    pub async fn create_session(&self, id: &str, csrf: &str, ttl: Duration) -> Result<(), StoreError> {
        let _: () = self.connection().set_ex(self.session_key(id), csrf, ttl.as_secs().max(1)).await?;
        Ok(())
    }

    /// The CSRF token of a live session, or `None` if it expired or never was.
    pub async fn session_csrf(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.connection().get(self.session_key(id)).await?)
    }

    /// Ends a session (logout).
    pub async fn end_session(&self, id: &str) -> Result<(), StoreError> {
        let _: () = self.connection().del(self.session_key(id)).await?;
        Ok(())
    }
}
