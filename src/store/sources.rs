//! Source records, counters and request logs. A source is found by its id
//! alone (the ingest URL carries nothing else), so its id is minted to hash
//! to its tenant's shard: every key below shares the tenant's hash tag.
//!
//! | key                   | type   | holds                                             |
//! |-----------------------|--------|---------------------------------------------------|
//! | `src:<id>`            | hash   | `json` (the source), `tenant`, `rate` (0: the default), `rev` |
//! | `srcs:<tenant>`       | zset   | the tenant's sources by creation (µs: two made in one millisecond keep their order) |
//! | `srl:<id>:<second>`   | string | requests in that second (the rate limit), 2 s      |
//! | `sst:<id>:<5 minutes>`| hash   | `accepted`, `duplicate`, `rate_limited`, `refused:<reason>` counts, 2 h |
//! | `sreq:<id>`           | list   | the latest requests, newest first, JSON: [`LOGGED`] shown, up to 150 kept between trims; expires 7 days after the last entry |
//!
//! An accepted request is stored with its event (`lua/event_accept.lua`
//! writes the event hash's `source`, `raw`, `headers`, `delivery` fields
//! and the counters and log entry in the same step); this module writes the
//! rest.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::domain::{SourceId, TenantId};

use super::{ms, JobStore, StoreError};

static SAVE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/source_save.lua")));
static GATE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/source_gate.lua")));
static DELETE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/source_delete.lua")));

/// Requests kept in a source's log.
pub const LOGGED: usize = 100;
/// The counters' bucket (ms); `lua/event_accept.lua` and
/// `lua/source_gate.lua` use the same.
const BUCKET_MS: i64 = 300_000;
/// How long a bucket is kept.
const BUCKET_TTL_S: i64 = 7_200;
/// How long a request log outlives its last entry (`lua/event_accept.lua`
/// uses the same): a request still in flight when its source is deleted
/// writes the log again, and this lets that copy go.
const LOG_TTL_S: i64 = 604_800;

/// What the first step of an ingest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// The source, as JSON, and the request is within its rate.
    Open(String),
    /// No such source.
    Missing,
    /// Over the rate limit until this much later.
    Limited(std::time::Duration),
}

/// One request in a source's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// When (ms).
    pub at: i64,
    /// `accepted`, `duplicate` or `refused`.
    pub result: String,
    /// For a refusal: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The event made (or, for a duplicate, the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The provider's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The body's size.
    pub bytes: u64,
}

/// A source's counts over the last hour and its latest requests.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// `accepted`, `duplicate`, `rate_limited` and `refused:<reason>`.
    pub last_hour: BTreeMap<String, u64>,
    /// Newest first.
    pub latest: Vec<LoggedRequest>,
}

/// The source records of every tenant; see the module doc.
pub struct SourceStore<'a> {
    store: &'a JobStore,
}

impl JobStore {
    /// Source records.
    pub fn sources(&self) -> SourceStore<'_> {
        SourceStore { store: self }
    }
}

impl SourceStore<'_> {
    fn part(&self, id: &SourceId) -> (&str, &str) {
        let part = &self.store.parts[self.store.shards.of_key(id.as_str())];
        (&part.prefix, &part.all)
    }

    /// A fresh id that lands in `tenant`'s shard.
    pub fn mint(&self, tenant: &TenantId) -> SourceId {
        let shard = self.store.shard_of_tenant(tenant);
        loop {
            let id = SourceId::mint();
            if self.store.shards.of_key(id.as_str()) == shard {
                return id;
            }
        }
    }

    /// Creates (`rev` None) or changes (`rev` as read) a source.
    pub async fn save(
        &self,
        tenant: &TenantId,
        id: &SourceId,
        json: &str,
        created: DateTime<Utc>,
        rate_limit: Option<u32>,
        rev: Option<u64>,
    ) -> Result<super::endpoints::Saved, StoreError> {
        use super::endpoints::Saved;
        let (prefix, all) = self.part(id);
        let reply: String = SAVE
            .key(all)
            .arg(prefix)
            .arg(tenant.as_str())
            .arg(id.as_str())
            .arg(rev.map(|r| r.to_string()).unwrap_or_default())
            .arg(json)
            .arg(created.timestamp_micros())
            .arg(rate_limit.unwrap_or(0))
            .invoke_async(&mut self.store.conn.clone())
            .await?;
        Ok(match reply.as_str() {
            "exists" => Saved::Exists,
            "missing" => Saved::Missing,
            "conflict" => Saved::Conflict,
            n => Saved::Ok(n.parse().map_err(|_| StoreError::Corrupt { id: id.to_string(), why: n.to_owned() })?),
        })
    }

    /// Reads a source: its tenant, JSON and revision.
    pub async fn get(&self, id: &SourceId) -> Result<Option<(String, String, u64)>, StoreError> {
        let (prefix, _) = self.part(id);
        let (tenant, json, rev): (Option<String>, Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(format!("{prefix}src:{id}"))
            .arg("tenant")
            .arg("json")
            .arg("rev")
            .query_async(&mut self.store.conn.clone())
            .await?;
        Ok(tenant.zip(json).map(|(t, j)| (t, j, rev.unwrap_or_default())))
    }

    /// A tenant's sources' JSON, oldest first, at most `limit`.
    pub async fn list(&self, tenant: &TenantId, limit: usize) -> Result<Vec<String>, StoreError> {
        let prefix = self.store.tenant_prefix(tenant);
        let mut conn = self.store.conn.clone();
        let ids: Vec<String> = conn.zrange(format!("{prefix}srcs:{tenant}"), 0, limit as isize - 1).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(format!("{prefix}src:{id}"), "json");
        }
        let found: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Deletes a source of `tenant`; false if there was none.
    pub async fn delete(&self, tenant: &TenantId, id: &SourceId) -> Result<bool, StoreError> {
        let (prefix, all) = self.part(id);
        let n: i64 = DELETE
            .key(all)
            .arg(prefix)
            .arg(tenant.as_str())
            .arg(id.as_str())
            .invoke_async(&mut self.store.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// The first step of an ingest: finds the source and counts the request
    /// against its rate limit (`default_rate` when it has none; 0: none).
    pub async fn gate(&self, id: &SourceId, now: DateTime<Utc>, default_rate: u32) -> Result<Gate, StoreError> {
        let (prefix, all) = self.part(id);
        let reply: Vec<String> = GATE
            .key(all)
            .arg(prefix)
            .arg(id.as_str())
            .arg(ms(now))
            .arg(default_rate)
            .invoke_async(&mut self.store.conn.clone())
            .await?;
        match reply.as_slice() {
            [open, json] if open == "open" => Ok(Gate::Open(json.clone())),
            [missing] if missing == "missing" => Ok(Gate::Missing),
            [limited, wait] if limited == "limited" => {
                Ok(Gate::Limited(std::time::Duration::from_millis(wait.parse().unwrap_or(1000))))
            }
            other => Err(StoreError::Corrupt { id: id.to_string(), why: format!("unexpected gate reply {other:?}") }),
        }
    }

    /// Counts and logs a refused request (nothing else of it is kept).
    pub async fn refused(
        &self,
        id: &SourceId,
        reason: &str,
        bytes: usize,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (prefix, _) = self.part(id);
        let stats = format!("{prefix}sst:{id}:{}", ms(now) / BUCKET_MS);
        let log = format!("{prefix}sreq:{id}");
        let entry = LoggedRequest {
            at: ms(now),
            result: "refused".to_owned(),
            reason: Some(reason.to_owned()),
            event_id: None,
            delivery_id: None,
            bytes: bytes as u64,
        };
        // Trimmed at every refusal (unlike an accept, lua/event_accept.lua):
        // a pipeline cannot read the length first, and refusals are rare.
        redis::pipe()
            .atomic()
            .hincr(&stats, format!("refused:{reason}"), 1)
            .ignore()
            .expire(&stats, BUCKET_TTL_S)
            .ignore()
            .lpush(&log, serde_json::to_string(&entry)?)
            .ignore()
            .ltrim(&log, 0, LOGGED as isize - 1)
            .ignore()
            .expire(&log, LOG_TTL_S)
            .ignore()
            .query_async::<()>(&mut self.store.conn.clone())
            .await?;
        Ok(())
    }

    /// The counts of the last hour (13 buckets of 5 minutes: the current
    /// one and the 12 before) and the latest requests.
    pub async fn activity(&self, id: &SourceId, now: DateTime<Utc>) -> Result<Activity, StoreError> {
        let (prefix, _) = self.part(id);
        let current = ms(now) / BUCKET_MS;
        let mut pipe = redis::pipe();
        for b in current - 12..=current {
            pipe.hgetall(format!("{prefix}sst:{id}:{b}"));
        }
        pipe.lrange(format!("{prefix}sreq:{id}"), 0, LOGGED as isize - 1);
        let (buckets, log): (Vec<BTreeMap<String, u64>>, Vec<String>) = {
            let mut replies: Vec<redis::Value> = pipe.query_async(&mut self.store.conn.clone()).await?;
            let corrupt = |e: redis::ParsingError| StoreError::Corrupt { id: id.to_string(), why: e.to_string() };
            let log = replies.pop().map(redis::from_redis_value).transpose().map_err(corrupt)?;
            let buckets =
                replies.into_iter().map(redis::from_redis_value).collect::<Result<_, _>>().map_err(corrupt)?;
            (buckets, log.unwrap_or_default())
        };
        let mut last_hour = BTreeMap::new();
        for bucket in buckets {
            for (k, n) in bucket {
                *last_hour.entry(k).or_default() += n;
            }
        }
        let latest = log.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Ok(Activity { last_hour, latest })
    }
}
