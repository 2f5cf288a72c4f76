//! Observability: the app's and the worker's `/metrics`, scraped over HTTP
//! while jobs are accepted, delivered, retried and failed; the worker's
//! port search; the queue snapshot; and one job id across the app's and
//! the worker's log lines.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hook_slinger::{
    jobs::JobState,
    metrics::{self, QueueSnapshot},
    queue::Queue,
    store::{self, JobStore},
    telemetry,
};
use serde_json::Value;

use crate::helpers::{job_body, settings, spawn_app, spawn_worker, Receiver, Reply, TOKEN};

/// One sample of the Prometheus text format: `name{k="v",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the sample lines of a scrape (our label values never contain
/// `,`, `"` or `}`, which keeps this short).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label is k=v");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            Sample { name, labels, value: value.parse().expect("numeric value") }
        })
        .collect()
}

/// The value of the series `name` with these labels (others may be
/// present), summed when several match; `None` when none does.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(url: &str) -> Option<String> {
    // A port held by a listener that never answers must not hang the search.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let resp = http.get(url).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("text/plain"), "content type {ct}");
    resp.text().await.ok()
}

/// A free port to start the search from. Another process may take it
/// before the worker binds; the worker then moves on and
/// [`find_worker_metrics`] follows it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Finds the metrics endpoint of the worker on `queue` among `first` and
/// the ports after it: the `hook_slinger_info` gauge names the queue, so a
/// neighbouring test's worker is never mistaken for ours.
async fn find_worker_metrics(first: u16, queue: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for port in first..=first.saturating_add(metrics::PORT_SEARCH) {
            if let Some(text) = scrape(&format!("http://127.0.0.1:{port}/metrics")).await {
                let s = parse(&text);
                if value(&s, "hook_slinger_info", &[("process", "worker"), ("queue", queue)]) == Some(1.0) {
                    return port;
                }
            }
        }
        assert!(Instant::now() < deadline, "no worker metrics endpoint for queue {queue} from port {first}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrapes `url` until `done` holds for the samples, or panics with the
/// last scrape.
async fn scrape_until(url: &str, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(url).await.unwrap_or_default();
        let samples = parse(&text);
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what} not reached; last scrape of {url}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn app_and_worker_metrics_follow_jobs_through_delivery_retry_and_failure() {
    let port = free_port();
    let port_s = port.to_string();
    let s = settings(&[
        ("MAX_RETRIES", "1"),
        ("INTERVAL", "0.2"),
        ("WORKER_METRICS_HOST", "127.0.0.1"),
        ("WORKER_METRICS_PORT", &port_s),
    ]);
    let app = spawn_app(s.clone()).await;
    let app_metrics = format!("{}/metrics", app.base);

    // Before anything happened: the counters exist and are zero.
    let before = parse(&scrape(&app_metrics).await.expect("app serves /metrics without a token"));
    assert_eq!(value(&before, "hook_slinger_jobs_accepted_total", &[]), Some(0.0));
    assert_eq!(value(&before, "hook_slinger_info", &[("process", "app"), ("queue", &s.redis.queue)]), Some(1.0));

    let flaky = Receiver::start().await;
    flaky.script([Reply::status(500)]);
    flaky.set_default(Reply::status(200));
    let down = Receiver::start().await;
    down.set_default(Reply::status(503));

    let worker = spawn_worker(&s);
    let worker_metrics = format!("http://127.0.0.1:{}/metrics", find_worker_metrics(port, &s.redis.queue).await);

    let retried = app.accept(&job_body(&flaky.url("/hook"))).await;
    let failed = app.accept(&job_body(&down.url("/hook"))).await;
    app.wait_state(&retried, JobState::Succeeded, Duration::from_secs(10)).await;
    app.wait_state(&failed, JobState::Failed, Duration::from_secs(10)).await;
    let (status, _) = app.get_job(&retried).await;
    assert_eq!(status, 200);
    let unauthorised = app.http.get(format!("{}/hook_slinger/{retried}", app.base)).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);

    // Worker: first attempt of each job fails and is retried; the retry of
    // the flaky one is delivered, the other one's fails for good.
    let w = scrape_until(&worker_metrics, "worker counters", |s| {
        value(s, "hook_slinger_deliveries_total", &[]) == Some(4.0)
    })
    .await;
    assert_eq!(value(&w, "hook_slinger_deliveries_total", &[("outcome", "delivered")]), Some(1.0));
    assert_eq!(value(&w, "hook_slinger_deliveries_total", &[("outcome", "failed_attempt")]), Some(2.0));
    assert_eq!(value(&w, "hook_slinger_deliveries_total", &[("outcome", "failed")]), Some(1.0));
    assert_eq!(value(&w, "hook_slinger_retries_scheduled_total", &[]), Some(2.0));
    assert_eq!(value(&w, "hook_slinger_attempt_duration_seconds_count", &[]), Some(4.0));
    assert_eq!(value(&w, "hook_slinger_deliveries_in_flight", &[]), Some(0.0));
    assert!(value(&w, "hook_slinger_oldest_waiting_job_age_seconds", &[]).is_some());
    // The gauges are read every 2 s: one read may have caught a job after
    // a worker fetched its task (depth 0) and before it claimed it (still
    // `queued`), so wait for a read with neither.
    scrape_until(&worker_metrics, "an empty queue and no job waiting", |s| {
        value(s, "hook_slinger_queue_depth", &[]) == Some(0.0)
            && value(s, "hook_slinger_queue_gauges_up", &[]) == Some(1.0)
            && value(s, "hook_slinger_oldest_waiting_job_age_seconds", &[]) == Some(0.0)
    })
    .await;

    // App: requests by route template (never by raw path), accepted jobs.
    let text = scrape(&app_metrics).await.unwrap();
    let a = parse(&text);
    assert_eq!(value(&a, "hook_slinger_jobs_accepted_total", &[]), Some(2.0));
    let post = [("route", "/hook_slinger"), ("method", "POST"), ("status", "202")];
    assert_eq!(value(&a, "hook_slinger_http_requests_total", &post), Some(2.0));
    let get = [("route", "/hook_slinger/{job_id}"), ("method", "GET")];
    assert_eq!(
        value(&a, "hook_slinger_http_requests_total", &[get[0], get[1], ("status", "200")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&a, "hook_slinger_http_requests_total", &[get[0], get[1], ("status", "401")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&a, "hook_slinger_http_request_duration_seconds_count", &[("route", "/hook_slinger")]), Some(2.0));
    assert!(a.iter().all(|s| s.labels.iter().all(|(_, v)| !v.contains(&retried))), "a job id became a label value");

    worker.shutdown().await;
}

#[tokio::test]
async fn a_worker_whose_metrics_port_is_taken_takes_the_next_free_one() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let taken_s = taken.to_string();
    let s = settings(&[("WORKER_METRICS_HOST", "127.0.0.1"), ("WORKER_METRICS_PORT", &taken_s)]);
    let worker = spawn_worker(&s);
    let port = find_worker_metrics(taken, &s.redis.queue).await;
    assert!(port > taken, "worker metrics on {port}, the taken port was {taken}");
    worker.shutdown().await;
    drop(held);
}

#[tokio::test]
async fn queue_snapshot_reports_depth_and_the_oldest_waiting_job() {
    let s = settings(&[]);
    let app = spawn_app(s.clone()).await;
    let conn = store::connect(&s.redis).unwrap();
    let store = JobStore::new(conn.clone(), &s);
    let queue = Queue::new(conn, &s);

    let empty = metrics::queue_snapshot(&store, &queue).await.unwrap();
    assert_eq!(empty, QueueSnapshot { depth: 0, oldest_waiting_age: Duration::ZERO });

    // No worker runs, so both jobs wait.
    let started = Instant::now();
    app.accept(&job_body("http://127.0.0.1:9/hook")).await;
    app.accept(&job_body("http://127.0.0.1:9/hook")).await;
    let snap = metrics::queue_snapshot(&store, &queue).await.unwrap();
    assert_eq!(snap.depth, 2);
    // Allow for millisecond rounding of the creation time.
    assert!(snap.oldest_waiting_age <= started.elapsed() + Duration::from_millis(2), "{snap:?}");
}

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The app's accept line and every worker line about the job's attempts
/// carry the same `job_id` span field, so one job's story can be followed
/// across processes by that field alone.
///
/// The subscriber is this thread's default, and the test runs on a
/// current-thread runtime, so the app, the worker and every task they
/// spawn log into it (and nothing of other tests does).
#[tokio::test(flavor = "current_thread")]
async fn one_job_id_follows_the_post_and_every_attempt_in_json_logs() {
    let s = settings(&[("LOG_LEVEL", "info"), ("LOG_FORMAT", "json"), ("MAX_RETRIES", "2"), ("INTERVAL", "0.1")]);
    let sink = Captured::default();
    let writer = sink.clone();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(&s.log, false, move || writer.clone()));

    let rx = Receiver::start().await;
    rx.script([Reply::status(500)]);
    rx.set_default(Reply::status(200));
    let app = spawn_app(s.clone()).await;
    let worker = spawn_worker(&s);
    let id = app.accept(&job_body(&rx.url("/hook"))).await;
    app.wait_state(&id, JobState::Succeeded, Duration::from_secs(10)).await;
    worker.shutdown().await;

    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    let job_ids_of = |message: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["message"] == message)
            .map(|l| l["span"]["job_id"].as_str().unwrap_or("<none>").to_owned())
            .collect()
    };
    let expected = vec![id.clone()];
    assert_eq!(job_ids_of("accepted"), expected, "app line; logs:\n{text}");
    assert_eq!(job_ids_of("attempt failed; retry scheduled"), expected, "worker retry line; logs:\n{text}");
    assert_eq!(job_ids_of("delivered"), expected, "worker delivery line; logs:\n{text}");
    // The token never reaches a log line.
    assert!(!text.contains(TOKEN), "the API token was logged");
}
