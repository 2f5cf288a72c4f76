//! Flow control's records: per endpoint (deliveries of events) and per
//! destination host and port (plain jobs), what the gate in `claim.lua`
//! and its counterpart in `finish.lua` keep. The keys and the rules are in
//! `lua/flow.lua`, the one place that writes them; this module reads them
//! for the API, the monitor and the worker, and releases held deliveries.
//!
//! What the gate does, in order, for a delivery about to be claimed:
//! 1. its endpoint is disabled: the delivery is kept `held`;
//! 2. its endpoint is `ordered` and an older delivery is still open: it
//!    waits for that one;
//! 3. the breaker is open (or half-open with its probe out): it waits;
//! 4. `max_in_flight` attempts are out: it waits for a slot;
//! 5. `rate_limit` sends happened in the last second: it waits its turn.
//!
//! (Between 3 and 4, an endpoint whose last attempt failed slowly shares
//! `FAILING_MAX_IN_FLIGHT` attempts at once with every other such one.)
//!
//! Waiting burns no attempt and holds no worker slot: the delivery goes
//! back to `scheduled` with a wake time, and a freed slot or a closed
//! breaker wakes it sooner.

use chrono::{DateTime, Utc};
use redis::Script;

use crate::{
    domain::{EndpointId, JobId, TenantId},
    jobs::AttemptRef,
};

use super::{from_ms, ms, JobStore, StoreError};

static RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| super::with_lib!("lua/flow_release.lua"));

/// Why flow control holds a delivery back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// An older delivery to the same ordered endpoint is still open.
    Ordered,
    /// The endpoint's (or host's) circuit breaker is open.
    Breaker,
    /// `max_in_flight` attempts are out.
    InFlight,
    /// `rate_limit` was reached in the last second.
    RateLimit,
    /// Its endpoint is failing slowly and the shared budget of such
    /// endpoints (`FAILING_MAX_IN_FLIGHT`) is in use.
    Failing,
}

impl WaitReason {
    /// Every reason.
    pub const ALL: [WaitReason; 5] = [Self::Ordered, Self::Breaker, Self::InFlight, Self::RateLimit, Self::Failing];

    /// The name in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::Breaker => "breaker",
            Self::InFlight => "in_flight",
            Self::RateLimit => "rate_limit",
            Self::Failing => "failing",
        }
    }
}

impl std::str::FromStr for WaitReason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

/// What an attempt says about its receiver, for the breaker and the
/// consecutive-failure count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered 2xx.
    Ok,
    /// It failed: an error status, a timeout, no connection.
    Fail,
    /// Nothing was learned (nothing was sent: the endpoint was deleted, the
    /// destination is not allowed, ...).
    Neutral,
}

impl Verdict {
    /// As `finish.lua` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Neutral => "",
        }
    }
}

/// What a breaker did when an attempt was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    /// Nothing.
    None,
    /// It opened (or opened again after a failed probe).
    Opened,
    /// It closed: a delivery got through.
    Closed,
}

/// An attempt recorded by [`JobStore::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The flow's consecutive failed attempts now.
    pub consecutive_failures: u64,
    /// What its breaker did.
    pub breaker: BreakerChange,
    /// A delivery that waited for the slot this attempt freed (or for its
    /// turn on an ordered endpoint): the slot is reserved for it, and the
    /// worker that recorded this attempt makes it now.
    pub handed: Option<AttemptRef>,
}

impl Recorded {
    /// Reads one result of `finish.lua`: `0` (not recorded) or
    /// `{1, failures, change[, id, cycle, attempt]}`.
    pub(super) fn from_reply(v: redis::Value) -> Result<Option<Self>, String> {
        use redis::Value;
        match v {
            Value::Int(0) => Ok(None),
            Value::Array(items) => {
                let failures = match items.get(1) {
                    Some(Value::Int(n)) => *n as u64,
                    other => return Err(format!("finish reply: failures {other:?}")),
                };
                let breaker = match items.get(2) {
                    Some(Value::BulkString(b)) if b == b"opened" => BreakerChange::Opened,
                    Some(Value::BulkString(b)) if b == b"closed" => BreakerChange::Closed,
                    _ => BreakerChange::None,
                };
                let handed = match &items[3.min(items.len())..] {
                    [Value::BulkString(id), cycle, attempt] => Some(AttemptRef {
                        job_id: JobId::parse(&String::from_utf8_lossy(id)).map_err(|e| e.to_string())?,
                        cycle: int(cycle)? as u32,
                        attempt: int(attempt)? as u32,
                    }),
                    _ => None,
                };
                Ok(Some(Self { consecutive_failures: failures, breaker, handed }))
            }
            other => Err(format!("finish reply: {other:?}")),
        }
    }
}

fn int(v: &redis::Value) -> Result<i64, String> {
    match v {
        redis::Value::Int(n) => Ok(*n),
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).parse().map_err(|_| format!("not a number: {v:?}")),
        other => Err(format!("not a number: {other:?}")),
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries flow.
    Closed,
    /// Deliveries wait until `open_until`.
    Open,
    /// The cooldown is over; one probe decides.
    HalfOpen,
}

impl BreakerState {
    /// The name in JSON and the monitor.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A flow as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowNow {
    /// Its breaker.
    pub breaker: BreakerState,
    /// Until when it is (or was) open.
    pub open_until: Option<DateTime<Utc>>,
    /// Consecutive failed attempts, with no success in between.
    pub consecutive_failures: u64,
    /// Attempts out now (whose leases have not ended).
    pub in_flight: u64,
    /// Deliveries parked by flow control.
    pub waiting: u64,
    /// Deliveries kept while the endpoint is disabled.
    pub held: u64,
}

/// Attempt outcomes and durations over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Attempts that got a 2xx (each ends its delivery).
    pub succeeded: u64,
    /// Failed attempts that left a retry.
    pub failed_attempts: u64,
    /// Failed attempts that were a delivery's last (it failed).
    pub exhausted: u64,
    /// Attempts per duration bucket (see `flow.lua`).
    buckets: std::collections::BTreeMap<u32, u64>,
}

impl Window {
    /// Every attempt.
    pub fn attempts(&self) -> u64 {
        self.succeeded + self.failed_attempts + self.exhausted
    }

    /// Share of attempts that succeeded, `None` without attempts.
    pub fn success_rate(&self) -> Option<f64> {
        let n = self.attempts();
        (n > 0).then(|| self.succeeded as f64 / n as f64)
    }

    /// The `q` quantile of attempt durations, in ms (the upper edge of its
    /// bucket: within 25 %).
    pub fn duration_quantile(&self, q: f64) -> Option<u64> {
        let n = self.attempts();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (&d, &k) in &self.buckets {
            seen += k;
            if seen >= rank {
                return Some(if d == 0 { 0 } else { 1.25f64.powi(d as i32).round() as u64 });
            }
        }
        None
    }

    fn add(&mut self, field: &str, k: u64) {
        let Some((outcome, d)) = field.split_once(':') else { return };
        match outcome {
            "ok" => self.succeeded += k,
            "fail" => self.failed_attempts += k,
            "exhausted" => self.exhausted += k,
            _ => return,
        }
        *self.buckets.entry(d.parse().unwrap_or(0)).or_default() += k;
    }
}

/// One endpoint's numbers for the stats API.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    /// The last hour.
    pub hour: Window,
    /// The last 24 hours.
    pub day: Window,
    /// Now.
    pub now: FlowNow,
}

/// Stats buckets are this long (`flow.lua`).
const BUCKET_MS: i64 = 600_000;

/// Flow control's records; see the module doc.
pub struct FlowStore<'a> {
    store: &'a JobStore,
}

impl JobStore {
    /// Flow control's records.
    pub fn flows(&self) -> FlowStore<'_> {
        FlowStore { store: self }
    }
}

impl FlowStore<'_> {
    /// An endpoint's flow as it is now.
    pub async fn endpoint_now(&self, tenant: &TenantId, id: &EndpointId) -> Result<FlowNow, StoreError> {
        let p = self.store.tenant_prefix(tenant);
        let f = format!("{tenant}:{id}");
        let now = ms(Utc::now());
        let ((fails, open_until), in_flight, waiting, held): ((Option<u64>, Option<i64>), u64, u64, u64) =
            redis::pipe()
                .cmd("HMGET")
                .arg(format!("{p}fl:{f}"))
                .arg("fails")
                .arg("open_until")
                .zcount(format!("{p}fin:{f}"), now, "+inf")
                .zcard(format!("{p}fw:{f}"))
                .zcard(format!("{p}held:{f}"))
                .query_async(&mut self.store.conn.clone())
                .await?;
        let breaker = match open_until {
            None => BreakerState::Closed,
            Some(t) if t > now => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        };
        Ok(FlowNow {
            breaker,
            open_until: open_until.map(from_ms),
            consecutive_failures: fails.unwrap_or(0),
            in_flight,
            waiting,
            held,
        })
    }

    /// An endpoint's attempts over the last hour and day, and its flow now.
    pub async fn endpoint_stats(&self, tenant: &TenantId, id: &EndpointId) -> Result<EndpointStats, StoreError> {
        let p = self.store.tenant_prefix(tenant);
        let now = ms(Utc::now());
        let last = now / BUCKET_MS;
        let mut pipe = redis::pipe();
        // 144 buckets of 10 minutes: the current one (partly filled) and the
        // 143 before it.
        for b in (last - 143)..=last {
            pipe.hgetall(format!("{p}fs:{tenant}:{id}:{b}"));
        }
        let buckets: Vec<std::collections::HashMap<String, u64>> =
            pipe.query_async(&mut self.store.conn.clone()).await?;
        let (mut hour, mut day) = (Window::default(), Window::default());
        for (i, bucket) in buckets.iter().enumerate() {
            for (field, &k) in bucket {
                day.add(field, k);
                if i >= 138 {
                    hour.add(field, k);
                }
            }
        }
        Ok(EndpointStats { hour, day, now: self.endpoint_now(tenant, id).await? })
    }

    /// Releases up to `limit` held deliveries of an endpoint that is
    /// enabled (none while it is disabled). Returns how many, and how many
    /// are still held.
    pub async fn release_held(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
        limit: usize,
    ) -> Result<(u64, u64), StoreError> {
        let mut inv = RELEASE.key(self.store.tenant_all(tenant));
        inv.arg(self.store.tenant_prefix(tenant)).arg(ms(Utc::now())).arg(limit).arg(format!("{tenant}:{id}"));
        Ok(inv.invoke_async(&mut self.store.conn.clone()).await?)
    }

    /// The sweep's share: releases up to `limit` held deliveries per shard
    /// of endpoints that are enabled again (a release an endpoint service
    /// did not finish). Returns how many.
    pub async fn release_enabled(&self, limit: usize) -> Result<u64, StoreError> {
        let mut total = 0;
        for part in self.store.parts.iter() {
            let mut inv = RELEASE.key(&part.all);
            inv.arg(&part.prefix).arg(ms(Utc::now())).arg(limit).arg("");
            let (n, _): (u64, u64) = inv.invoke_async(&mut self.store.conn.clone()).await?;
            total += n;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut w = Window::default();
        w.add("ok:10", 98); // 1.25^10 ≈ 9 ms
        w.add("fail:30", 2); // 1.25^30 ≈ 808 ms
        assert_eq!(w.attempts(), 100);
        assert_eq!(w.duration_quantile(0.5), Some(9));
        assert_eq!(w.duration_quantile(0.99), Some(808));
        assert_eq!(w.success_rate(), Some(0.98));
        assert_eq!(Window::default().duration_quantile(0.5), None);
    }
}
