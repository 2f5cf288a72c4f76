//! When a failed attempt is tried again, and when a job stops.

use std::time::Duration;

use super::Outcome;

/// How the wait before each retry grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `INTERVAL * n` before retry n (the default).
    Linear,
    /// `INTERVAL` before every retry (what the original actually did).
    Fixed,
    /// `INTERVAL * 2^(n-1)` before retry n.
    Exponential,
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`MAX_RETRIES`); a job may ask for
    /// its own number within `MAX_RETRIES_LIMIT`.
    pub max_retries: u32,
    /// Base wait (`INTERVAL`).
    pub interval: Duration,
    /// Growth (`BACKOFF`).
    pub backoff: Backoff,
    /// No wait is longer than this (`MAX_INTERVAL`).
    pub max_interval: Duration,
    /// Spread each wait by ±20 % (`BACKOFF_JITTER`), so a receiver that
    /// comes back is not hit by every retry in the same second.
    pub jitter: bool,
    /// Retry 4xx answers other than 408/425/429 too (`RETRY_ON_4XX`).
    pub retry_on_4xx: bool,
    /// The longest `Retry-After` honoured (`MAX_RETRY_AFTER`).
    pub max_retry_after: Duration,
}

/// Why a job stopped without being delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Every allowed attempt failed.
    OutOfRetries {
        /// Attempts made in this cycle.
        attempts: u32,
    },
    /// The receiver answered a status that retrying cannot fix.
    Final {
        /// The status.
        status: u16,
    },
    /// The destination is not allowed (SSRF guard).
    Blocked,
    /// There is nothing to send any more (a delivery whose endpoint was
    /// deleted or disabled, or whose event expired).
    Undeliverable(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfRetries { attempts } => write!(f, "out of retries after {attempts} attempt(s)"),
            Self::Final { status: 410 } => f.write_str("receiver answered 410 Gone: never retried"),
            Self::Final { status } => {
                write!(f, "receiver answered {status}: 4xx other than 408/425/429 are not retried (RETRY_ON_4XX)")
            }
            Self::Blocked => f.write_str("destination is not allowed (private or blocked address)"),
            Self::Undeliverable(why) => f.write_str(why),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Done,
    /// Try again after this long.
    RetryIn(Duration),
    /// Stop; the job fails.
    Stop(StopReason),
}

impl RetryPolicy {
    /// The scheduled wait before retry number `retry` (1-based), before
    /// jitter, capped at `max_interval`.
    pub fn delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let raw = match self.backoff {
            Backoff::Linear => self.interval.saturating_mul(n),
            Backoff::Fixed => self.interval,
            Backoff::Exponential => self.interval.saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX)),
        };
        raw.min(self.max_interval)
    }

    /// After attempt `cycle_attempt` (1-based within a cycle) of a job that
    /// allows `max_retries` retries produced `outcome`.
    pub fn decide(&self, outcome: &Outcome, cycle_attempt: u32, max_retries: u32) -> Verdict {
        let retry_after = match outcome {
            Outcome::Delivered { .. } => return Verdict::Done,
            Outcome::Blocked { .. } => return Verdict::Stop(StopReason::Blocked),
            Outcome::Undeliverable { why } => return Verdict::Stop(StopReason::Undeliverable(why.clone())),
            Outcome::Refused { status: 410, .. } => return Verdict::Stop(StopReason::Final { status: 410 }),
            Outcome::Refused { status, retry_after, .. } => {
                let transient = matches!(status, 408 | 425 | 429) || *status >= 500;
                if !transient && !self.retry_on_4xx {
                    return Verdict::Stop(StopReason::Final { status: *status });
                }
                *retry_after
            }
            Outcome::Unreachable { .. } => None,
        };
        if cycle_attempt > max_retries {
            return Verdict::Stop(StopReason::OutOfRetries { attempts: cycle_attempt });
        }
        let wait = match retry_after {
            Some(asked) => asked.min(self.max_retry_after),
            None => self.jittered(self.delay(cycle_attempt)),
        };
        Verdict::RetryIn(wait)
    }

    fn jittered(&self, d: Duration) -> Duration {
        if !self.jitter {
            return d;
        }
        d.mul_f64(rand::random_range(0.8..=1.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            interval: Duration::from_secs(5),
            backoff,
            max_interval: Duration::from_secs(3600),
            jitter: false,
            retry_on_4xx: false,
            max_retry_after: Duration::from_secs(60),
        }
    }

    fn refused(status: u16) -> Outcome {
        Outcome::Refused { status, retry_after: None, response: Default::default() }
    }

    #[test]
    fn linear_backoff_grows_by_interval_then_stops() {
        let p = policy(Backoff::Linear);
        let v: Vec<_> = (1..=4).map(|n| p.decide(&refused(500), n, 3)).collect();
        assert_eq!(
            v,
            [
                Verdict::RetryIn(Duration::from_secs(5)),
                Verdict::RetryIn(Duration::from_secs(10)),
                Verdict::RetryIn(Duration::from_secs(15)),
                Verdict::Stop(StopReason::OutOfRetries { attempts: 4 })
            ]
        );
    }

    #[test]
    fn fixed_and_exponential_with_cap() {
        assert_eq!(policy(Backoff::Fixed).delay(3), Duration::from_secs(5));
        let p = RetryPolicy { max_interval: Duration::from_secs(30), ..policy(Backoff::Exponential) };
        let waits: Vec<_> = (1..=5).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 30, 30]);
        assert_eq!(p.delay(200), Duration::from_secs(30), "no overflow");
    }

    #[test]
    fn which_statuses_are_retried() {
        let p = policy(Backoff::Linear);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(p.decide(&refused(s), 1, 3), Verdict::RetryIn(_)), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(p.decide(&refused(s), 1, 3), Verdict::Stop(StopReason::Final { status: s }));
        }
        let lenient = RetryPolicy { retry_on_4xx: true, ..p };
        assert!(matches!(lenient.decide(&refused(404), 1, 3), Verdict::RetryIn(_)));
        assert_eq!(lenient.decide(&refused(410), 1, 3), Verdict::Stop(StopReason::Final { status: 410 }));
        let unreachable = Outcome::Unreachable { error: "x".into() };
        assert!(matches!(p.decide(&unreachable, 1, 3), Verdict::RetryIn(_)));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = policy(Backoff::Linear);
        let asked = |s| Outcome::Refused {
            status: 429,
            retry_after: Some(Duration::from_secs(s)),
            response: Default::default(),
        };
        assert_eq!(p.decide(&asked(2), 1, 3), Verdict::RetryIn(Duration::from_secs(2)));
        assert_eq!(p.decide(&asked(86_400), 1, 3), Verdict::RetryIn(Duration::from_secs(60)));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = RetryPolicy { jitter: true, ..policy(Backoff::Linear) };
        for _ in 0..200 {
            let Verdict::RetryIn(d) = p.decide(&refused(500), 1, 3) else { panic!() };
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
        }
    }

    #[test]
    fn zero_retries_means_one_attempt() {
        let p = policy(Backoff::Linear);
        assert_eq!(p.decide(&refused(500), 1, 0), Verdict::Stop(StopReason::OutOfRetries { attempts: 1 }));
    }
}
