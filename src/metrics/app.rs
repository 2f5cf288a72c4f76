//! The app's metrics: requests by route and status, their latency, and
//! accepted jobs, recorded by one poem middleware.

use std::{sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::{register, render};

/// The route label of requests no route matched; raw paths never become
/// labels, or a scanner could create unbounded series.
const UNMATCHED: &str = "unmatched";

/// The app's metrics; cheap to clone, one registry per app instance.
#[derive(Clone)]
pub struct AppMetrics {
    inner: Arc<AppInner>,
}

struct AppInner {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    accepted: IntCounter,
}

impl AppMetrics {
    /// Creates the app's metrics in a registry of their own.
    pub fn new(queue: &str) -> Self {
        let registry = Registry::new();
        super::info(&registry, "app", queue);
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "hook_slinger_http_requests_total",
                    "HTTP requests answered, by route template, method and status.",
                ),
                &["route", "method", "status"],
            )
            .expect("static metric definition"),
        );
        let duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "hook_slinger_http_request_duration_seconds",
                    "Time to answer an HTTP request, by route template.",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["route"],
            )
            .expect("static metric definition"),
        );
        let accepted = register(
            &registry,
            IntCounter::new(
                "hook_slinger_jobs_accepted_total",
                "Jobs accepted (stored and queued), single or in batches.",
            )
            .expect("static metric definition"),
        );
        Self { inner: Arc::new(AppInner { registry, requests, duration, accepted }) }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        render(&self.inner.registry)
    }

    /// Counts jobs accepted (new ones only: an idempotent replay is not a
    /// new job; a batch counts each accepted item).
    pub fn jobs_accepted(&self, n: u64) {
        self.inner.accepted.inc_by(n);
    }

    /// A poem middleware recording every request into these metrics.
    pub fn middleware(&self) -> HttpMetrics {
        HttpMetrics { metrics: self.clone() }
    }

    /// The `GET /metrics` endpoint for these metrics.
    pub fn endpoint(&self) -> impl Endpoint<Output = Response> {
        let metrics = self.clone();
        poem::endpoint::make_sync(move |_| super::exposition(metrics.render()))
    }

    fn observe(&self, route: &str, method: &str, status: u16, started: Instant) {
        let i = &self.inner;
        i.requests.with_label_values(&[route, method, status.to_string().as_str()]).inc();
        i.duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    }
}

/// Records `hook_slinger_http_requests_total` and
/// `hook_slinger_http_request_duration_seconds`. Place it inside the error catcher,
/// so it sees the route template poem attaches to errors as well as to
/// responses.
pub struct HttpMetrics {
    metrics: AppMetrics,
}

impl<E: Endpoint> Middleware<E> for HttpMetrics {
    type Output = HttpMetricsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        HttpMetricsEndpoint { inner: ep, metrics: self.metrics.clone() }
    }
}

/// The endpoint [`HttpMetrics`] wraps around the routes.
pub struct HttpMetricsEndpoint<E> {
    inner: E,
    metrics: AppMetrics,
}

impl<E: Endpoint> Endpoint for HttpMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let method = method_label(req.method());
        // poem's router puts the matched template (`/hook_slinger/:param0`)
        // on the response, or on the error when a handler failed.
        match self.inner.call(req).await.map(IntoResponse::into_response) {
            Ok(resp) => {
                let route = route_of(resp.data::<PathPattern>());
                self.metrics.observe(&route, &method, resp.status().as_u16(), started);
                Ok(resp)
            }
            Err(err) => {
                let route = route_of(err.data::<PathPattern>());
                self.metrics.observe(&route, &method, err.status().as_u16(), started);
                Err(err)
            }
        }
    }
}

/// The standard methods by name; anything else is `other`. The label is
/// read before authentication, so a made-up method must not be able to
/// create a new series.
fn method_label(method: &poem::http::Method) -> String {
    use poem::http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    if known.contains(method) { method.as_str() } else { "other" }.to_owned()
}

fn route_of(pattern: Option<&PathPattern>) -> String {
    pattern.map(|p| route_label(&p.0)).unwrap_or_else(|| UNMATCHED.to_owned())
}

/// `/hook_slinger/:param0/requeue` → `/hook_slinger/{job_id}/requeue`: one
/// spelling of path parameters whichever syntax the route used, and no
/// trailing slash (the app serves both forms as one route).
fn route_label(pattern: &str) -> String {
    let mut prev = "";
    let mut segments = Vec::new();
    for seg in pattern.split('/') {
        let param = seg.strip_prefix(':').or_else(|| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')));
        segments.push(match param {
            Some(name) => format!("{{{}}}", param_name(prev, name)),
            None => seg.to_owned(),
        });
        prev = seg;
    }
    let label = segments.join("/");
    match label.trim_end_matches('/') {
        "" => "/".to_owned(),
        l => l.to_owned(),
    }
}

/// poem-openapi registers path parameters as `param0`, `param1`, ...
/// whatever the `#[oai(path)]` attribute calls them; put the documented
/// name back so the label reads like the API reference.
fn param_name<'a>(prev: &str, name: &'a str) -> &'a str {
    let generated = name.strip_prefix("param").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    match (generated, prev) {
        (true, "hook_slinger") => "job_id",
        (true, _) => "id",
        (false, _) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        use poem::http::Method;
        assert_eq!(method_label(&Method::POST), "POST");
        for made_up in ["FOO", "BAR1", "PURGE"] {
            assert_eq!(method_label(&Method::from_bytes(made_up.as_bytes()).unwrap()), "other");
        }
    }

    #[test]
    fn route_labels_name_templates_not_paths() {
        assert_eq!(route_label("/hook_slinger/:job_id/requeue"), "/hook_slinger/{job_id}/requeue");
        assert_eq!(route_label("/hook_slinger/:param0/requeue"), "/hook_slinger/{job_id}/requeue");
        assert_eq!(route_label("/things/:param1"), "/things/{id}");
        assert_eq!(route_label("/hook_slinger/{job_id}"), "/hook_slinger/{job_id}");
        assert_eq!(route_label("/hook_slinger/"), "/hook_slinger");
        assert_eq!(route_label("/"), "/");
    }
}
