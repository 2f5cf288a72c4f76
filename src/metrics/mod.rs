//! Prometheus metrics: every metric this service exports is defined here,
//! and so is their exposition in the Prometheus text format.
//!
//! Each app and worker instance owns its own [`prometheus::Registry`]
//! (inside [`AppMetrics`] / [`WorkerMetrics`]) rather than the crate's
//! global default one: tests run several apps and workers in one process,
//! and each must report only its own numbers.
//!
//! - The app serves `GET /metrics` on its own port ([`AppMetrics`],
//!   [`HttpMetrics`] middleware).
//! - Each worker serves `GET /metrics` on `WORKER_METRICS_PORT`, or the next
//!   free port after it ([`MetricsServer`], [`serve_worker`]).
//! - [`queue_snapshot`] reads the queue numbers both the worker gauges and
//!   the monitor show.

mod app;
mod worker;

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use poem::{
    handler,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    web::Data,
    EndpointExt, Route, Server,
};

use crate::{
    jobs::JobState,
    queue::{Queue, QueueError},
    store::JobStore,
};

pub use app::{AppMetrics, HttpMetrics, HttpMetricsEndpoint};
pub use worker::{serve_worker, AttemptOutcome, InFlight, WorkerMetrics, WorkerMetricsHandle};

/// The `Content-Type` of the Prometheus text format we render.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How many ports after the configured one a worker tries when it is taken.
pub const PORT_SEARCH: u16 = 100;

/// Metrics could not be read or served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The queue depth could not be read.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The oldest waiting job could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No port from the configured one to [`PORT_SEARCH`] after it was free.
    #[error("no free port for the metrics endpoint in {host}:{first}-{last}")]
    NoFreePort {
        /// The address tried.
        host: IpAddr,
        /// The configured port.
        first: u16,
        /// The last port tried.
        last: u16,
        /// Why the last one failed.
        #[source]
        source: std::io::Error,
    },
}

/// The queue numbers shown by the worker's gauges and by the monitor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueSnapshot {
    /// Tasks waiting on the apalis queue (active list plus scheduled set).
    pub depth: u64,
    /// How long the oldest job in state `queued` has waited; zero when none waits.
    pub oldest_waiting_age: Duration,
}

/// Reads the queue depth and the age of the oldest waiting job.
///
/// The state index is scored by creation time in milliseconds, so the
/// oldest waiting job is the lowest score of the `queued` index: one
/// `ZRANGE ... 0 0` however long the backlog.
pub async fn queue_snapshot(store: &JobStore, queue: &Queue) -> Result<QueueSnapshot, MetricsError> {
    let depth = queue.depth().await?;
    let oldest_waiting_age = store
        .oldest_created_at(JobState::Queued)
        .await?
        // Clocks of different hosts may disagree a little; never negative.
        .map(|created| (chrono::Utc::now() - created).to_std().unwrap_or_default())
        .unwrap_or_default();
    Ok(QueueSnapshot { depth, oldest_waiting_age })
}

/// A bound metrics endpoint that serves `GET /metrics` (and nothing else)
/// once [`MetricsServer::run`] is called.
pub struct MetricsServer {
    acceptor: TcpAcceptor,
    port: u16,
}

impl MetricsServer {
    /// Binds `host:port`, or the first free port of the [`PORT_SEARCH`]
    /// ports after it, so that several workers on one host each get one
    /// without per-process configuration. Only "address in use" moves on
    /// to the next port; any other error (no such address, no permission)
    /// would fail the same way on every port.
    pub async fn bind(host: IpAddr, port: u16) -> Result<Self, MetricsError> {
        let last = port.saturating_add(PORT_SEARCH);
        let mut candidate = port;
        loop {
            match TcpListener::bind(SocketAddr::new(host, candidate)).into_acceptor().await {
                Ok(acceptor) => {
                    let port = acceptor
                        .local_addr()
                        .first()
                        .and_then(|a| a.as_socket_addr().map(|s| s.port()))
                        .unwrap_or(candidate);
                    return Ok(Self { acceptor, port });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && candidate < last => candidate += 1,
                Err(source) => return Err(MetricsError::NoFreePort { host, first: port, last: candidate, source }),
            }
        }
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `render()` at `/metrics` until `shutdown` resolves.
    pub async fn run<R>(self, render: R, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()>
    where
        R: Fn() -> String + Send + Sync + 'static,
    {
        let app = Route::new().at("/metrics", poem::get(scrape)).data(Renderer(std::sync::Arc::new(render)));
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(1)))
            .await
    }
}

#[derive(Clone)]
struct Renderer(std::sync::Arc<dyn Fn() -> String + Send + Sync>);

#[handler]
fn scrape(render: Data<&Renderer>) -> poem::Response {
    exposition((render.0 .0)())
}

/// A `/metrics` response with the Prometheus content type.
pub(crate) fn exposition(body: String) -> poem::Response {
    poem::Response::builder().content_type(CONTENT_TYPE).body(body)
}

/// Renders a registry in the Prometheus text format.
fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    // Encoding our own well-formed metric families into memory cannot fail
    // in practice; an empty scrape is the best answer if it ever does.
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error.message = %e, "could not encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Registers `collector` in `registry`. Names are constants of this module,
/// so a clash is a programming error caught by every test that builds one.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &prometheus::Registry, collector: C) -> C {
    registry.register(Box::new(collector.clone())).expect("metric names are unique per registry");
    collector
}

/// The gauge every process exports once, so a scrape names what answered.
fn info(registry: &prometheus::Registry, process: &str, queue: &str) {
    let g = register(
        registry,
        prometheus::IntGaugeVec::new(
            prometheus::Opts::new("hook_slinger_info", "Always 1; labels name the process, its queue and version."),
            &["process", "queue", "version"],
        )
        .expect("static metric definition"),
    );
    g.with_label_values(&[process, queue, env!("CARGO_PKG_VERSION")]).set(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_moves_to_the_next_port_when_taken() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap().port();
        let server = MetricsServer::bind(IpAddr::from([127, 0, 0, 1]), taken).await.unwrap();
        assert!(server.port() > taken && server.port() <= taken.saturating_add(PORT_SEARCH), "{}", server.port());
    }
}
