//! A worker's metrics: deliveries by outcome, attempt durations, retries,
//! deliveries in flight, and the queue gauges, served on the worker's own
//! port.

use std::{net::IpAddr, sync::Arc, time::Duration};

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use super::{queue_snapshot, register, render, MetricsServer, QueueSnapshot};
use crate::{
    jobs::JobState,
    queue::Queue,
    store::{flows::WaitReason, JobStore},
};

/// How often the queue gauges are read from Redis: often enough for a
/// 15 s scrape interval, rare enough to cost Redis nothing.
const QUEUE_REFRESH: Duration = Duration::from_secs(2);

/// The `event` label values of `hook_slinger_flow_total`.
const FLOW_EVENTS: [&str; 9] = [
    "wait_ordered",
    "wait_failing",
    "wait_breaker",
    "wait_in_flight",
    "wait_rate_limit",
    "held",
    "breaker_opened",
    "breaker_closed",
    "endpoint_disabled",
];

/// How one delivery attempt ended, the `outcome` label of
/// `hook_slinger_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The attempt failed and a retry is scheduled.
    FailedAttempt,
    /// The attempt failed and the job is out of retries.
    Failed,
}

impl AttemptOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::FailedAttempt => "failed_attempt",
            Self::Failed => "failed",
        }
    }
}

/// One worker process's metrics; cheap to clone, one registry per worker.
#[derive(Clone)]
pub struct WorkerMetrics {
    inner: Arc<WorkerInner>,
}

struct WorkerInner {
    registry: Registry,
    deliveries: IntCounterVec,
    attempt_duration: Histogram,
    retries: IntCounter,
    reconciled: IntCounterVec,
    in_flight: IntGauge,
    queue_depth: IntGauge,
    oldest_age: Gauge,
    queue_up: IntGauge,
    flow: IntCounterVec,
    operational: IntCounterVec,
}

impl WorkerMetrics {
    /// Creates a worker's metrics in a registry of their own.
    pub fn new(queue: &str) -> Self {
        let registry = Registry::new();
        super::info(&registry, "worker", queue);
        let deliveries = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "hook_slinger_deliveries_total",
                    "Delivery attempts finished, by outcome: delivered, failed_attempt (will retry), failed (gave up).",
                ),
                &["outcome"],
            )
            .expect("static metric definition"),
        );
        // Zero-initialise every outcome so rate() works from the first scrape
        // and dashboards show 0 rather than "no data".
        for o in [AttemptOutcome::Delivered, AttemptOutcome::FailedAttempt, AttemptOutcome::Failed] {
            deliveries.with_label_values(&[o.as_str()]);
        }
        let attempt_duration = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new("hook_slinger_attempt_duration_seconds", "Time one outbound delivery attempt took.")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )
            .expect("static metric definition"),
        );
        let retries = register(
            &registry,
            IntCounter::new("hook_slinger_retries_scheduled_total", "Retries scheduled after a failed attempt.")
                .expect("static metric definition"),
        );
        let reconciled = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "hook_slinger_reconciled_total",
                    "Jobs that had lost their way forward (no queue task, a lease run out) and were made due again, \
                     by the state they were found in.",
                ),
                &["from_state"],
            )
            .expect("static metric definition"),
        );
        for state in [JobState::Queued, JobState::Delivering, JobState::Scheduled] {
            reconciled.with_label_values(&[state.as_str()]);
        }
        let in_flight = register(
            &registry,
            IntGauge::new("hook_slinger_deliveries_in_flight", "Outbound deliveries running now in this worker.")
                .expect("static metric definition"),
        );
        let queue_depth = register(
            &registry,
            IntGauge::new(
                "hook_slinger_queue_depth",
                "Tasks waiting on the queue (shared by all workers of the queue).",
            )
            .expect("static metric definition"),
        );
        let oldest_age = register(
            &registry,
            Gauge::new(
                "hook_slinger_oldest_waiting_job_age_seconds",
                "Age of the oldest job in state queued; 0 when none waits.",
            )
            .expect("static metric definition"),
        );
        let queue_up = register(
            &registry,
            IntGauge::new("hook_slinger_queue_gauges_up", "1 when the last read of the queue gauges succeeded.")
                .expect("static metric definition"),
        );
        // Bounded labels only: per-endpoint numbers come from the stats API.
        let flow = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "hook_slinger_flow_total",
                    "Flow control at work, by event: wait_<reason> (a delivery parked: ordered, breaker, in_flight, \
                     rate_limit, failing), held (kept for a disabled endpoint), breaker_opened, breaker_closed, \
                     endpoint_disabled (after consecutive failures).",
                ),
                &["event"],
            )
            .expect("static metric definition"),
        );
        for e in FLOW_EVENTS {
            flow.with_label_values(&[e]);
        }
        let operational = register(
            &registry,
            IntCounterVec::new(
                Opts::new("hook_slinger_operational_events_total", "Operational webhooks queued, by type."),
                &["type"],
            )
            .expect("static metric definition"),
        );
        Self {
            inner: Arc::new(WorkerInner {
                flow,
                operational,
                registry,
                deliveries,
                attempt_duration,
                retries,
                reconciled,
                in_flight,
                queue_depth,
                oldest_age,
                queue_up,
            }),
        }
    }

    /// Records one finished attempt.
    pub fn attempt_finished(&self, outcome: AttemptOutcome, duration: Duration) {
        self.inner.deliveries.with_label_values(&[outcome.as_str()]).inc();
        self.inner.attempt_duration.observe(duration.as_secs_f64());
    }

    /// Records that a retry was put on the schedule.
    pub fn retry_scheduled(&self) {
        self.inner.retries.inc();
    }

    /// Counts a delivery parked by flow control.
    pub fn flow_wait(&self, why: WaitReason) {
        let event = match why {
            WaitReason::Ordered => "wait_ordered",
            WaitReason::Breaker => "wait_breaker",
            WaitReason::InFlight => "wait_in_flight",
            WaitReason::RateLimit => "wait_rate_limit",
            WaitReason::Failing => "wait_failing",
        };
        self.inner.flow.with_label_values(&[event]).inc();
    }

    /// Counts a flow-control event other than a wait: `held`,
    /// `breaker_opened`, `breaker_closed`, `endpoint_disabled`.
    pub fn flow_event(&self, event: &'static str) {
        self.inner.flow.with_label_values(&[event]).inc();
    }

    /// Counts an operational webhook queued.
    pub fn operational(&self, kind: &'static str) {
        self.inner.operational.with_label_values(&[kind]).inc();
    }

    /// Counts jobs the reconciler put back on their way, found in `from`.
    pub fn reconciled(&self, from: JobState, n: u64) {
        self.inner.reconciled.with_label_values(&[from.as_str()]).inc_by(n);
    }

    /// Counts a delivery in flight until the returned guard is dropped, so
    /// the gauge comes back down however the delivery ends (error, panic,
    /// or its task being cancelled at shutdown).
    pub fn in_flight(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight { gauge: self.inner.in_flight.clone() }
    }

    /// Sets the queue gauges.
    pub fn set_queue(&self, snapshot: QueueSnapshot) {
        self.inner.queue_depth.set(i64::try_from(snapshot.depth).unwrap_or(i64::MAX));
        self.inner.oldest_age.set(snapshot.oldest_waiting_age.as_secs_f64());
        self.inner.queue_up.set(1);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        render(&self.inner.registry)
    }

    async fn refresh_queue(&self, store: &JobStore, queue: &Queue) {
        match queue_snapshot(store, queue).await {
            Ok(s) => self.set_queue(s),
            Err(e) => {
                // Keep the last values; the `up` gauge tells they are stale.
                self.inner.queue_up.set(0);
                tracing::debug!(error.message = %e, "could not read the queue gauges");
            }
        }
    }
}

/// A delivery counted in `hook_slinger_deliveries_in_flight`; see
/// [`WorkerMetrics::in_flight`].
#[must_use = "the delivery stops counting as in flight when this is dropped"]
pub struct InFlight {
    gauge: IntGauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Keeps a worker's metrics endpoint and queue-gauge refresher running;
/// both stop when this is dropped.
pub struct WorkerMetricsHandle {
    stop: CancellationToken,
    port: Option<u16>,
}

impl WorkerMetricsHandle {
    /// The port the endpoint is bound to; `None` when it is off or could
    /// not bind.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl Drop for WorkerMetricsHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the worker's metrics endpoint on `host:port` (from
/// `WORKER_METRICS_HOST` and `WORKER_METRICS_PORT`), or the next free port,
/// and the queue-gauge refresher. With port 0 neither runs. A port that cannot be bound is
/// logged and the worker goes on without the endpoint: delivering
/// webhooks matters more than being scraped.
pub async fn serve_worker(
    host: IpAddr,
    port: u16,
    metrics: WorkerMetrics,
    store: JobStore,
    queue: Queue,
) -> WorkerMetricsHandle {
    let stop = CancellationToken::new();
    if port == 0 {
        return WorkerMetricsHandle { stop, port: None };
    }
    let server = match MetricsServer::bind(host, port).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error.message = %e, error.cause_chain = ?e, "metrics endpoint not started");
            return WorkerMetricsHandle { stop, port: None };
        }
    };
    let port = server.port();
    tracing::info!(addr = %format!("{host}:{port}"), path = "/metrics", "worker metrics listening");
    let render = {
        let metrics = metrics.clone();
        move || metrics.render()
    };
    let s = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = server.run(render, async move { s.cancelled().await }).await {
            tracing::warn!(error.message = %e, "metrics endpoint stopped");
        }
    });
    let s = stop.clone();
    tokio::spawn(async move {
        loop {
            metrics.refresh_queue(&store, &queue).await;
            tokio::select! {
                () = s.cancelled() => return,
                () = tokio::time::sleep(QUEUE_REFRESH) => {}
            }
        }
    });
    WorkerMetricsHandle { stop, port: Some(port) }
}
