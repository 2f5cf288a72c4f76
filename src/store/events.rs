//! Event records, in their tenant's shard (see `endpoints` for why):
//!
//! | key                       | type | holds                                       |
//! |---------------------------|------|---------------------------------------------|
//! | `ev:<tenant>:<event id>`  | hash | `type`, `payload` (JSON, stored once for all its deliveries), `created_at`, `due`, `matched` (the count answered), `made`, `cursor`, `state` (`expanding` / `expanded`) |
//! | `evs:<tenant>`            | zset | the tenant's events by creation (ms)        |
//! | `evt:<tenant>:<type>`     | zset | the same, per event type                    |
//! | `evd:<tenant>:<event id>` | zset | the event's deliveries (job ids) by creation |
//! | `events`                  | zset | `<tenant>/<event id>` by creation, for retention |
//! | `expanding`               | zset | `<tenant>/<event id>` of events still being expanded, by when the current expander's lease ends |
//!
//! A delivery is a job (`job:<id>`, with every index a job has) whose hash
//! also names its event (`ev`) and endpoint (`ep`); `claim.lua` reads both
//! with the job, so a delivery is sent as the endpoint is when it is sent.

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};

use crate::domain::{EventId, EventType, JobId, TenantId};

use super::{from_ms, ms, JobStore, StoreError};

/// The filter evaluator, then a script's own body.
macro_rules! with_filter {
    ($file:literal) => {
        Script::new(concat!(include_str!("lua/filter.lua"), include_str!("lua/fanout.lua"), include_str!($file)))
    };
}

static ACCEPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| with_filter!("lua/event_accept.lua"));
static EXPAND: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| with_filter!("lua/expand.lua"));

/// Deliveries an event may get when it is accepted, in the same step
/// (`lua/event_accept.lua`); an event matching more is expanded by workers,
/// in pages. Small enough that the ids sent along with every event cost
/// little; large enough for most events.
pub const INLINE_DELIVERIES: usize = 16;
static EXPIRE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/event_expire.lua")));

/// An event to store.
#[derive(Debug, Clone)]
pub struct EventWrite<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// Its id.
    pub id: &'a EventId,
    /// Its type.
    pub event_type: &'a EventType,
    /// Its payload, JSON.
    pub payload: &'a str,
    /// The request's clock.
    pub now: DateTime<Utc>,
    /// Deliver no earlier than this.
    pub due: Option<DateTime<Utc>>,
    /// An `Idempotency-Key` (`<caller>:<key>`), with the body's fingerprint
    /// and how long it is remembered.
    pub idempotency: Option<(&'a str, &'a str, std::time::Duration)>,
    /// Fresh job ids in the tenant's shard for the deliveries made with
    /// the event (at most [`INLINE_DELIVERIES`]).
    pub ids: Vec<JobId>,
    /// The request it was ingested from, if a source's.
    pub origin: Option<&'a Origin>,
}

/// The request an ingested event came from, kept byte for byte with it
/// (the event hash's `source`, `raw`, `headers` and `delivery` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The source.
    pub source: String,
    /// The body as received.
    pub raw: Vec<u8>,
    /// The request's headers, JSON: `[[name, value], ...]` in order.
    pub headers: String,
    /// The provider's delivery id, or empty.
    pub delivery_id: String,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAccepted {
    /// Stored; it matched this many endpoints.
    New {
        /// Its id.
        id: EventId,
        /// Endpoints matched.
        matched: u64,
        /// When.
        created_at: DateTime<Utc>,
        /// The deliveries made with it and due now, each with the queue
        /// task that is to carry it.
        due_now: Vec<(JobId, String)>,
        /// True when it matched more endpoints than it brought ids for:
        /// workers expand it.
        expanding: bool,
    },
    /// Seen before: the first answer; nothing stored.
    Duplicate {
        /// Its id.
        id: EventId,
        /// Endpoints matched the first time.
        matched: u64,
        /// When it was first accepted.
        created_at: DateTime<Utc>,
    },
    /// The idempotency key was used with another body.
    Conflict,
}

/// One page of an expansion.
#[derive(Debug, Default)]
pub struct Expanded {
    /// True once every matching endpoint has its delivery.
    pub done: bool,
    /// The deliveries due now, each with the queue task that is to carry
    /// it.
    pub due_now: Vec<(JobId, String)>,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct EventRead {
    /// Its type.
    pub event_type: String,
    /// Its payload, JSON.
    pub payload: String,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// Deliver no earlier than this.
    pub deliver_at: Option<DateTime<Utc>>,
    /// Endpoints matched when it was accepted.
    pub matched: u64,
    /// Deliveries made so far.
    pub made: u64,
    /// Whether every delivery has been made.
    pub expanded: bool,
    /// The request it was ingested from, if a source's.
    pub origin: Option<Origin>,
}

/// The event records of every tenant; see the module doc.
pub struct EventStore<'a> {
    store: &'a JobStore,
}

impl JobStore {
    /// Event records.
    pub fn events(&self) -> EventStore<'_> {
        EventStore { store: self }
    }
}

fn accepted_of(reply: &[String]) -> Result<EventAccepted, StoreError> {
    let corrupt = || StoreError::Corrupt { id: "event".to_owned(), why: format!("unexpected reply {reply:?}") };
    match reply {
        [kind, id, matched, created, rest @ ..] => {
            let (id, matched, created_at) =
                (id_of(id)?, matched.parse().unwrap_or_default(), from_ms(created.parse().unwrap_or_default()));
            match (kind.as_str(), rest) {
                ("new", [then, due @ ..]) => Ok(EventAccepted::New {
                    id,
                    matched,
                    created_at,
                    expanding: then == "expand",
                    due_now: due
                        .chunks_exact(2)
                        .filter_map(|c| Some((JobId::parse(&c[0]).ok()?, c[1].clone())))
                        .collect(),
                }),
                ("dup", []) => Ok(EventAccepted::Duplicate { id, matched, created_at }),
                _ => Err(corrupt()),
            }
        }
        [conflict] if conflict == "conflict" => Ok(EventAccepted::Conflict),
        _ => Err(corrupt()),
    }
}

fn id_of(raw: &str) -> Result<EventId, StoreError> {
    EventId::parse(raw).map_err(|e| StoreError::Corrupt { id: raw.to_owned(), why: e.to_string() })
}

impl EventStore<'_> {
    /// Stores several events of tenants in `shard` in one round trip,
    /// answering for each with how many endpoints it matches; see
    /// `lua/event_accept.lua`. `lease` is how long an expander may take
    /// before another worker takes over.
    pub async fn accept_many(
        &self,
        shard: usize,
        events: &[EventWrite<'_>],
        lease: std::time::Duration,
    ) -> Result<Vec<EventAccepted>, StoreError> {
        let part = &self.store.parts[shard];
        let mut inv = ACCEPT.key(&part.all);
        inv.arg(&part.prefix)
            .arg(lease.as_millis() as u64)
            .arg(format!("e.{}", uuid::Uuid::new_v4().simple()))
            .arg(crate::jobs::QueueTask::MAX_ATTEMPTS);
        for ev in events {
            let (ikey, fp, ttl) = ev.idempotency.unwrap_or(("", "", std::time::Duration::ZERO));
            inv.arg(ms(ev.now))
                .arg(ev.tenant.as_str())
                .arg(ev.id.as_str())
                .arg(ev.event_type.as_str())
                .arg(ev.payload)
                .arg(ev.due.map(ms).unwrap_or(0))
                .arg(if ikey.is_empty() { String::new() } else { format!("ev:{ikey}") })
                .arg(fp)
                .arg(ttl.as_millis() as u64);
            match ev.origin {
                Some(o) => inv.arg(&o.source).arg(&o.raw[..]).arg(&o.headers).arg(&o.delivery_id),
                None => inv.arg("").arg("").arg("").arg(""),
            };
            inv.arg(ev.ids.len());
            for id in &ev.ids {
                inv.arg(id.as_str());
            }
        }
        let replies: Vec<Vec<String>> = inv.invoke_async(&mut self.store.conn.clone()).await?;
        replies.iter().map(|r| accepted_of(r)).collect()
    }

    /// Makes the next page of an event's deliveries (at most one per id in
    /// `ids`, which must be fresh and in the tenant's shard); see
    /// `lua/expand.lua`.
    pub async fn expand(
        &self,
        tenant: &TenantId,
        id: &EventId,
        ids: &[JobId],
        lease: std::time::Duration,
        per_task: usize,
    ) -> Result<Expanded, StoreError> {
        let mut inv = EXPAND.key(self.store.tenant_all(tenant));
        inv.arg(self.store.tenant_prefix(tenant))
            .arg(tenant.as_str())
            .arg(id.as_str())
            .arg(ms(Utc::now()))
            .arg(lease.as_millis() as u64)
            .arg(format!("x.{}", uuid::Uuid::new_v4().simple()))
            .arg(per_task);
        for job in ids {
            inv.arg(job.as_str());
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.store.conn.clone()).await?;
        let Some((state, rest)) = reply.split_first() else {
            return Err(StoreError::Corrupt { id: id.to_string(), why: "empty expand reply".to_owned() });
        };
        let due_now = rest.chunks_exact(2).filter_map(|c| Some((JobId::parse(&c[0]).ok()?, c[1].clone()))).collect();
        Ok(Expanded { done: state == "done", due_now })
    }

    /// Events whose expander's lease ran out (it died or stalled), as
    /// `(tenant, event id)`, from every shard, at most `limit` per shard.
    pub async fn overdue_expansions(&self, limit: usize) -> Result<Vec<(TenantId, EventId)>, StoreError> {
        let now = ms(Utc::now());
        let mut out = Vec::new();
        for part in self.store.parts.iter() {
            let members: Vec<String> = self
                .store
                .conn
                .clone()
                .zrangebyscore_limit(format!("{}expanding", part.prefix), "-inf", now, 0, limit as isize)
                .await?;
            out.extend(members.iter().filter_map(|m| {
                let (t, e) = m.split_once('/')?;
                Some((TenantId::parse(t).ok()?, EventId::parse(e).ok()?))
            }));
        }
        Ok(out)
    }

    /// Reads an event.
    pub async fn get(&self, tenant: &TenantId, id: &EventId) -> Result<Option<EventRead>, StoreError> {
        let key = format!("{}ev:{tenant}:{id}", self.store.tenant_prefix(tenant));
        // Bytes: an ingested request's body need not be UTF-8.
        let mut h: std::collections::HashMap<String, Vec<u8>> = self.store.conn.clone().hgetall(key).await?;
        if h.is_empty() {
            return Ok(None);
        }
        let raw = h.remove("raw");
        let text = |h: &std::collections::HashMap<String, Vec<u8>>, k: &str| {
            h.get(k).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let num = |k: &str| text(&h, k).and_then(|v| v.parse::<i64>().ok()).unwrap_or_default();
        let origin = text(&h, "source").map(|source| Origin {
            source,
            headers: text(&h, "headers").unwrap_or_default(),
            delivery_id: text(&h, "delivery").unwrap_or_default(),
            raw: raw.unwrap_or_default(),
        });
        Ok(Some(EventRead {
            origin,
            event_type: text(&h, "type").unwrap_or_default(),
            payload: text(&h, "payload").unwrap_or_else(|| "null".to_owned()),
            created_at: from_ms(num("created_at")),
            deliver_at: Some(num("due")).filter(|d| *d > 0).map(from_ms),
            matched: num("matched") as u64,
            made: num("made") as u64,
            expanded: text(&h, "state").as_deref() == Some("expanded"),
        }))
    }

    /// An event's deliveries, oldest first, at most `limit`.
    pub async fn deliveries(&self, tenant: &TenantId, id: &EventId, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let key = format!("{}evd:{tenant}:{id}", self.store.tenant_prefix(tenant));
        let ids: Vec<String> = self.store.conn.clone().zrange(key, 0, limit as isize - 1).await?;
        Ok(ids.iter().filter_map(|i| JobId::parse(i).ok()).collect())
    }

    /// A page of a tenant's events, newest first: those created at or after
    /// `since`, of `event_type` if given, before the cursor `before`
    /// (`(created ms, event id)` of the previous page's last).
    pub async fn list(
        &self,
        tenant: &TenantId,
        event_type: Option<&EventType>,
        since: Option<DateTime<Utc>>,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(EventId, DateTime<Utc>)>, StoreError> {
        let prefix = self.store.tenant_prefix(tenant);
        let index = match event_type {
            Some(t) => format!("{prefix}evt:{tenant}:{t}"),
            None => format!("{prefix}evs:{tenant}"),
        };
        let min = since.map(ms).map(|m| m.to_string()).unwrap_or_else(|| "-inf".to_owned());
        let max = before.as_ref().map(|(s, _)| s.to_string()).unwrap_or_else(|| "+inf".to_owned());
        // Events sharing the cursor's millisecond are fetched again and
        // skipped up to the cursor's id (ties are ordered by id, reversed).
        let raw: Vec<(String, i64)> = self
            .store
            .conn
            .clone()
            .zrevrangebyscore_limit_withscores(&index, max, min, 0, (limit + 100) as isize)
            .await?;
        let mut out = Vec::new();
        for (id, score) in raw {
            if let Some((s, last)) = &before {
                if score == *s && id.as_str() >= last.as_str() {
                    continue;
                }
            }
            out.push((id_of(&id)?, from_ms(score)));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes events accepted longer ago than the longer retention
    /// (`RETENTION_SUCCEEDED` / `RETENTION_FAILED`) whose deliveries have
    /// all expired, at most `limit` per shard.
    pub async fn expire(&self, limit: usize) -> Result<u64, StoreError> {
        let retention = self.store.retention.succeeded.max(self.store.retention.failed);
        let mut total = 0;
        for part in self.store.parts.iter() {
            let n: u64 = EXPIRE
                .key(&part.all)
                .arg(&part.prefix)
                .arg(ms(Utc::now()) - retention.as_millis() as i64)
                .arg(limit)
                .invoke_async(&mut self.store.conn.clone())
                .await?;
            total += n;
        }
        Ok(total)
    }
}
