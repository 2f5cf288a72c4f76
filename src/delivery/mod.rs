//! Sending one webhook and deciding what happens after it.

use std::{error::Error as _, time::Duration};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use crate::{domain::JobId, jobs::JobSpec};

/// The header that carries the job id, stable across retries, so receivers
/// can deduplicate (delivery is at-least-once).
pub const JOB_ID_HEADER: &str = "X-Hook-Slinger-Job-Id";

/// How the wait before each retry grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `INTERVAL * n` before retry n (the default).
    Linear,
    /// `INTERVAL` before every retry (what the original actually did).
    Fixed,
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`MAX_RETRIES`).
    pub max_retries: u32,
    /// Base wait (`INTERVAL`).
    pub interval: Duration,
    /// Growth (`BACKOFF`).
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        match self.backoff {
            Backoff::Linear => self.interval.saturating_mul(retry.max(1)),
            Backoff::Fixed => self.interval,
        }
    }

    /// After attempt `cycle_attempt` (1-based within a cycle) failed: the wait
    /// before the next one, or `None` when the job has run out of retries.
    pub fn after_failure(&self, cycle_attempt: u32) -> Option<Duration> {
        (cycle_attempt <= self.max_retries).then(|| self.delay(cycle_attempt))
    }
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered {
        /// The status.
        status: u16,
    },
    /// The receiver answered something else.
    Refused {
        /// The status.
        status: u16,
    },
    /// No answer: timeout, refused connection, TLS or protocol error.
    Unreachable {
        /// What went wrong, without the payload.
        error: String,
    },
}

impl Outcome {
    /// The HTTP status, when the receiver answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Delivered { status } | Self::Refused { status } => Some(*status),
            Self::Unreachable { .. } => None,
        }
    }

    /// A one-line reason for the attempt log, `None` on success.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Delivered { .. } => None,
            Self::Refused { status } => Some(format!("receiver answered HTTP {status}")),
            Self::Unreachable { error } => Some(error.clone()),
        }
    }
}

/// The outbound HTTP client: pooled connections, no redirects, one timeout
/// for the whole exchange.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    timeout: Duration,
}

/// The client could not be built (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client")]
pub struct ClientError(#[from] reqwest::Error);

/// Read at most this much of a response body; the rest is dropped. Reading
/// (rather than dropping at once) lets the connection go back to the pool.
const DRAIN_LIMIT: usize = 64 * 1024;

impl Deliverer {
    /// A client with the given whole-request timeout.
    pub fn new(timeout: Duration) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("hook-slinger/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { client, timeout })
    }

    /// POSTs the job's payload once.
    pub async fn send(&self, id: &JobId, spec: &JobSpec) -> Outcome {
        let body = match serde_json::to_vec(&spec.payload) {
            Ok(b) => b,
            Err(e) => return Outcome::Unreachable { error: format!("could not encode payload: {e}") },
        };
        let mut req = self
            .client
            .post(spec.to_url.as_url().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(JOB_ID_HEADER, id.as_str())
            .body(body);
        if let Some(auth) = &spec.to_auth {
            match HeaderValue::from_str(auth) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    req = req.header(AUTHORIZATION, v);
                }
                Err(_) => return Outcome::Unreachable { error: "to_auth is not a valid header value".to_owned() },
            }
        }
        match req.send().await {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut read = 0;
                while read < DRAIN_LIMIT {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        _ => break,
                    }
                }
                if (200..300).contains(&status) {
                    Outcome::Delivered { status }
                } else {
                    Outcome::Refused { status }
                }
            }
            Err(e) => Outcome::Unreachable { error: describe(&e, self.timeout) },
        }
    }
}

/// A short reason with its cause chain; reqwest errors name the URL but
/// never the body.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {:.1}s", timeout.as_secs_f64());
    }
    let kind = if e.is_connect() { "connection failed" } else { "request failed" };
    let mut msg = kind.to_owned();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy { max_retries: 3, interval: Duration::from_secs(5), backoff }
    }

    #[test]
    fn linear_backoff_grows_by_interval() {
        let p = policy(Backoff::Linear);
        let waits: Vec<_> = (1..=4).map(|n| p.after_failure(n)).collect();
        assert_eq!(
            waits,
            [Some(Duration::from_secs(5)), Some(Duration::from_secs(10)), Some(Duration::from_secs(15)), None]
        );
    }

    #[test]
    fn fixed_backoff_stays_put() {
        let p = policy(Backoff::Fixed);
        assert_eq!(p.after_failure(3), Some(Duration::from_secs(5)));
        assert_eq!(p.after_failure(4), None);
    }

    #[test]
    fn zero_retries_means_one_attempt() {
        let p = RetryPolicy { max_retries: 0, ..policy(Backoff::Linear) };
        assert_eq!(p.after_failure(1), None);
    }
}
