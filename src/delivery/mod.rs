//! Sending one webhook, and deciding what happens after it.

mod policy;
mod signing;
mod ssrf;

use std::{collections::BTreeMap, error::Error as _, sync::Arc, time::Duration};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    domain::{JobId, TargetUrl},
    jobs::JobSpec,
};

pub use policy::{Backoff, RetryPolicy, StopReason, Verdict};
pub use signing::{signature_header, SecretError, SigningSecret};
pub use ssrf::{Blocked, DestinationPolicy};

/// The header that carries the job id, stable across retries, so receivers
/// can deduplicate (delivery is at-least-once).
pub const JOB_ID_HEADER: &str = "X-Hook-Slinger-Job-Id";

/// How much of a response body is kept in the attempt log.
pub const BODY_SAMPLE_BYTES: usize = 4 * 1024;

/// Response headers worth keeping in the attempt log.
const KEPT_HEADERS: [&str; 6] = ["content-type", "content-length", "retry-after", "server", "x-request-id", "location"];

/// What a receiver answered, as much as the attempt log keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseSample {
    /// Selected headers.
    pub headers: BTreeMap<String, String>,
    /// The first [`BODY_SAMPLE_BYTES`] of the body (lossy UTF-8).
    pub body: Option<String>,
    /// True when the body was longer than what was kept.
    pub truncated: bool,
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered {
        /// The status.
        status: u16,
        /// What it said.
        response: ResponseSample,
    },
    /// The receiver answered something else.
    Refused {
        /// The status.
        status: u16,
        /// Its `Retry-After`, when it sent one we could read.
        retry_after: Option<Duration>,
        /// What it said.
        response: ResponseSample,
    },
    /// No answer: timeout, refused connection, TLS or protocol error.
    Unreachable {
        /// What went wrong, without the payload.
        error: String,
    },
    /// The destination is not allowed by the SSRF guard.
    Blocked {
        /// Which address and why.
        error: String,
    },
    /// Nothing was sent: there is nothing to send any more.
    Undeliverable {
        /// Why (the endpoint was deleted or disabled, the event expired).
        why: String,
    },
}

impl Outcome {
    /// The HTTP status, when the receiver answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Delivered { status, .. } | Self::Refused { status, .. } => Some(*status),
            Self::Unreachable { .. } | Self::Blocked { .. } | Self::Undeliverable { .. } => None,
        }
    }

    /// A one-line reason for the attempt log, `None` on success.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Delivered { .. } => None,
            Self::Refused { status, .. } => Some(format!("receiver answered HTTP {status}")),
            Self::Unreachable { error } | Self::Blocked { error } => Some(error.clone()),
            Self::Undeliverable { why } => Some(why.clone()),
        }
    }

    /// The receiver's answer, when there was one.
    pub fn response(&self) -> Option<&ResponseSample> {
        match self {
            Self::Delivered { response, .. } | Self::Refused { response, .. } => Some(response),
            _ => None,
        }
    }
}

/// One request to send: where, what, and how to sign it.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Where to POST.
    pub url: TargetUrl,
    /// The body, JSON.
    pub body: Vec<u8>,
    /// `webhook-id`: the job id for a job, the event id for a delivery of an
    /// event (the same for every endpoint and every retry).
    pub message_id: String,
    /// Who signs.
    pub signing: Signing,
    /// An `Authorization` header to send (a job's `to_auth`).
    pub auth: Option<SecretString>,
    /// Extra headers (an endpoint's); never replace ours.
    pub headers: Vec<(String, String)>,
}

/// Which secrets sign a request.
#[derive(Debug, Clone)]
pub enum Signing {
    /// The server's `SIGNING_SECRETS` (none: unsigned), for jobs.
    Server,
    /// An endpoint's secrets (during a rotation, old and new).
    With(Vec<SigningSecret>),
}

impl Outbound {
    /// A `/hook_slinger/` job's request: its payload, to its URL.
    pub fn job(id: &JobId, spec: &JobSpec) -> Result<Self, serde_json::Error> {
        Ok(Self {
            url: spec.to_url.clone(),
            body: serde_json::to_vec(&spec.payload)?,
            message_id: id.to_string(),
            signing: Signing::Server,
            auth: spec.to_auth.clone(),
            headers: Vec::new(),
        })
    }
}

/// The outbound HTTP client: pooled connections, no redirects, one timeout
/// for the whole exchange, the SSRF guard in its resolver, and signing.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    timeout: Duration,
    policy: Arc<DestinationPolicy>,
    secrets: Arc<[SigningSecret]>,
}

/// The client could not be built (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client")]
pub struct ClientError(#[from] reqwest::Error);

/// Read at most this much of a response body; the rest is dropped. Reading
/// a small answer to its end lets the connection go back to the pool; a huge
/// or endless one is cut off here (and by the timeout).
const DRAIN_LIMIT: usize = 64 * 1024;

impl Deliverer {
    /// A client with the given whole-request timeout, destination policy and
    /// signing secrets (none: deliveries are not signed).
    pub fn new(timeout: Duration, policy: DestinationPolicy, secrets: Vec<SigningSecret>) -> Result<Self, ClientError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .user_agent(concat!("hook-slinger/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(ssrf::GuardedResolver { policy: policy.clone() }))
            .build()?;
        Ok(Self { client, timeout, policy, secrets: secrets.into() })
    }

    /// POSTs a job's payload once.
    pub async fn send(&self, id: &JobId, spec: &JobSpec) -> Outcome {
        match Outbound::job(id, spec) {
            Ok(out) => self.send_request(id, out).await,
            Err(e) => Outcome::Unreachable { error: format!("could not encode payload: {e}") },
        }
    }

    /// [`Deliverer::send`], signed with `secrets` instead of the server's
    /// (operational events: `OPERATIONAL_WEBHOOK_SECRET`).
    pub async fn send_signed(&self, id: &JobId, spec: &JobSpec, secrets: &[SigningSecret]) -> Outcome {
        match Outbound::job(id, spec) {
            Ok(out) => self.send_request(id, Outbound { signing: Signing::With(secrets.to_vec()), ..out }).await,
            Err(e) => Outcome::Unreachable { error: format!("could not encode payload: {e}") },
        }
    }

    /// POSTs one request once; `id` is the job that carries it.
    pub async fn send_request(&self, id: &JobId, out: Outbound) -> Outcome {
        // IP literals never reach the resolver, so they are checked here.
        if let Some(host) = out.url.as_url().host() {
            if let Err(b) = self.policy.check_host(&host) {
                return Outcome::Blocked { error: b.to_string() };
            }
        }
        let body = out.body;
        let mut headers = HeaderMap::new();
        // An endpoint's own headers first, so ours replace any of the same
        // name (endpoints refuse them on save too).
        for (name, value) in &out.headers {
            if let (Ok(n), Ok(v)) =
                (reqwest::header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
            {
                headers.insert(n, v);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            headers.insert(JOB_ID_HEADER, v);
        }
        let secrets: &[SigningSecret] = match &out.signing {
            Signing::Server => &self.secrets,
            Signing::With(s) => s,
        };
        if let (false, Ok(v)) = (secrets.is_empty(), HeaderValue::from_str(&out.message_id)) {
            let ts = chrono::Utc::now().timestamp();
            let sig = signature_header(secrets, &out.message_id, ts, &body);
            headers.insert("webhook-id", v);
            headers.insert("webhook-timestamp", HeaderValue::from(ts));
            if let Ok(sig) = HeaderValue::from_str(&sig) {
                headers.insert("webhook-signature", sig);
            }
        }
        if let Some(auth) = &out.auth {
            match HeaderValue::from_str(auth.expose_secret()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    headers.insert(AUTHORIZATION, v);
                }
                Err(_) => return Outcome::Unreachable { error: "to_auth is not a valid header value".to_owned() },
            }
        }
        let req = self.client.post(out.url.as_url().clone()).headers(headers).body(body);
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after =
                    resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
                let response = sample(resp).await;
                if (200..300).contains(&status) {
                    Outcome::Delivered { status, response }
                } else {
                    Outcome::Refused { status, retry_after, response }
                }
            }
            Err(e) => classify(&e, self.timeout),
        }
    }
}

/// Keeps selected headers and the first bytes of the body.
async fn sample(mut resp: reqwest::Response) -> ResponseSample {
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let v = resp.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), v.chars().take(256).collect()))
        })
        .collect();
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < DRAIN_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = BODY_SAMPLE_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let truncated = read > kept.len();
    let body = (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
    ResponseSample { headers, body, truncated }
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// A short reason with its cause chain; reqwest errors name the URL but
/// never the body.
fn classify(e: &reqwest::Error, timeout: Duration) -> Outcome {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<Blocked>() {
            return Outcome::Blocked { error: b.to_string() };
        }
        source = s.source();
    }
    if e.is_timeout() {
        return Outcome::Unreachable { error: format!("timed out after {:.1}s", timeout.as_secs_f64()) };
    }
    let mut msg = if e.is_connect() { "connection failed" } else { "request failed" }.to_owned();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Outcome::Unreachable { error: msg }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
