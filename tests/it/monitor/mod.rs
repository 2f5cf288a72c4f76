//! The monitor: listing and cursors (store and API), the web UI over HTTP,
//! the CLI, and an end-to-end run in a real headless browser.

mod browser;
mod bulk;
mod cli;
mod listing;
mod web;
mod webdriver;

use std::time::Duration;

use chrono::{DateTime, Utc};
use hook_slinger::{
    config::Settings,
    domain::JobId,
    jobs::JobSpec,
    monitor::Monitor,
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
