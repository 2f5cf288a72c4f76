//! The monitor: listing and cursors (store and API), the web UI over HTTP,
//! the CLI, and an end-to-end run in a real headless browser.

mod browser;
mod bulk;
mod cli;
mod fanout_browser;
mod fanout_cli;
mod listing;
mod sources_browser;
mod sources_cli;
mod web;
mod webdriver;

use std::time::Duration;

use chrono::{DateTime, Utc};
use hook_slinger::{
    config::Settings,
    domain::{EventId, JobId, NewEvent, TenantId},
    endpoints::{Endpoint, EndpointInput},
    events::{EventWithDeliveries, Posted},
    jobs::{JobSpec, JobState},
    monitor::{
        cli::{execute, CliError, Command, Output},
        Console, Monitor,
    },
    sources::{Source, SourceInput},
    store::{JobStore, NewRecord},
};
use tokio_util::sync::CancellationToken;

pub const USER: &str = "operator";
pub const PASSWORD: &str = "correct horse battery staple";

/// Test settings with a monitor on a free loopback port and a login.
pub fn monitor_settings(extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("MONITOR_HOST", "127.0.0.1"),
        ("MONITOR_PORT", "0"),
        ("MONITOR_USER", USER),
        ("MONITOR_PASSWORD", PASSWORD),
    ];
    vars.extend_from_slice(extra);
    crate::helpers::settings(&vars)
}

/// A running monitor web server.
pub struct TestMonitor {
    pub base: String,
    stop: CancellationToken,
}

impl Drop for TestMonitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_monitor(settings: &Settings) -> TestMonitor {
    let monitor = Monitor::build(settings.clone()).await.expect("monitor builds");
    let port = monitor.port();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(monitor.run_until_stopped(async move { s.cancelled().await }));
    TestMonitor { base: format!("http://127.0.0.1:{port}"), stop }
}

/// Stores `n` jobs directly, all with the same creation time (so paging
/// has to break ties), and returns their ids.
pub async fn store_jobs(store: &JobStore, n: usize, group: Option<&str>, at: DateTime<Utc>) -> Vec<String> {
    let mut body = serde_json::json!({"v": 1, "to_url": "http://127.0.0.1:9/hook", "payload": {"n": 1}});
    if let Some(g) = group {
        body["group"] = g.into();
    }
    let spec: JobSpec = serde_json::from_value(body).unwrap();
    let ids: Vec<JobId> = (0..n).map(|_| JobId::mint(spec.group.as_ref(), None)).collect();
    let records: Vec<NewRecord> = ids.iter().map(|id| NewRecord { id, spec: &spec, due: None, task: None }).collect();
    store.create(&records, None, at).await.unwrap();
    ids.into_iter().map(String::from).collect()
}

pub const WAIT: Duration = Duration::from_secs(15);

/// Runs a CLI command against `console`; what it printed.
pub async fn run(console: &Console, command: Command, json: bool) -> Result<String, CliError> {
    let mut buf = Vec::new();
    let mut out = Output { out: &mut buf, json, color: false };
    execute(command, console, &mut out).await?;
    Ok(String::from_utf8(buf).unwrap())
}

/// Runs a CLI command with `--json`; its answer.
pub async fn run_json(console: &Console, command: Command) -> serde_json::Value {
    serde_json::from_str(&run(console, command, true).await.unwrap()).unwrap()
}

/// Registers an endpoint for `tenant` from an API-style JSON body, through
/// the same service the API uses.
pub async fn create_endpoint(console: &Console, tenant: &TenantId, body: serde_json::Value) -> Endpoint {
    let input = EndpointInput::parse(body, true).expect("a valid endpoint");
    console.endpoints().create(tenant.clone(), input).await.expect("endpoint created")
}

/// Posts an event for `tenant` and returns its id, asserting how many
/// endpoints it matched.
pub async fn post_event(console: &Console, tenant: &TenantId, body: serde_json::Value, matched: u64) -> EventId {
    let event = NewEvent::parse(body, &crate::helpers::LIMITS, Utc::now()).expect("a valid event");
    match console.events().post(tenant.clone(), event, None).await.expect("event accepted") {
        Posted::Accepted { event_id, deliveries, .. } => {
            assert_eq!(deliveries, matched, "endpoints matched");
            event_id
        }
        Posted::Conflict => panic!("no idempotency key was given"),
    }
}

/// Waits until the event has `n` deliveries, each in a final state.
pub async fn wait_delivered(console: &Console, tenant: &TenantId, id: &EventId, n: usize) -> EventWithDeliveries {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let event = console.event(tenant, id).await.unwrap().expect("event exists");
        if event.deliveries.len() == n && event.deliveries.iter().all(|d| d.state.is_final()) {
            return event;
        }
        let states: Vec<JobState> = event.deliveries.iter().map(|d| d.state).collect();
        assert!(std::time::Instant::now() < deadline, "deliveries after {WAIT:?}: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings under which an endpoint is disabled after 3 failed attempts in
/// a row (no breaker first, retries left), so its deliveries are held.
pub const DISABLE_AFTER_3: [(&str, &str); 3] =
    [("ENDPOINT_DISABLE_AFTER_FAILURES", "3"), ("BREAKER_FAILURES", "0"), ("MAX_RETRIES", "10")];

/// Waits until the endpoint is disabled with `held` deliveries held.
pub async fn wait_held(console: &Console, tenant: &TenantId, endpoint: &Endpoint, held: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ep, flow) = console.endpoints().get_with_flow(tenant, &endpoint.id).await.unwrap();
        if ep.disabled && flow.held == held {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "disabled {}, held {flow:?} after {WAIT:?}", ep.disabled);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers a source for `tenant` from an API-style JSON body, through the
/// same service the API uses.
pub async fn create_source(console: &Console, tenant: &TenantId, body: serde_json::Value) -> Source {
    let input = SourceInput::parse(body, true, Utc::now()).expect("a valid source");
    console.sources().create(tenant.clone(), input).await.expect("source created")
}

/// GitHub's `X-Hub-Signature-256` value for `body` under `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` with `headers` to the app's `/ingest/{source}`; the status
/// and the JSON answer.
pub async fn ingest(
    app: &crate::helpers::TestApp,
    source: &Source,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut req = app.http.post(format!("{}{}", app.base, source.ingest_path())).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Logs in to the monitor at `base` and waits for the overview.
pub async fn log_in(b: &webdriver::Browser, base: &str) {
    b.goto(base).await;
    b.type_into("input[name=user]", USER).await;
    b.type_into("input[name=password]", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_text("h1", "Overview", std::time::Duration::from_secs(5)).await;
}
