//! The whole service on a Redis Cluster, end to end: the app, two workers
//! and the monitor (web UI and CLI binary) over one queue split into the
//! default 16 shards (`QUEUE_SHARDS` on a cluster), spread over the three
//! masters.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hook_slinger::jobs::JobState;
use poem::{handler, http::StatusCode, web::Data, EndpointExt, Request, Route};
use serde_json::{json, Value};

use super::{node_query, TestCluster};
use crate::{
    helpers::{serve, spawn_app, spawn_worker, TestApp},
    monitor::{spawn_monitor, PASSWORD, USER},
};

/// Every request a [`Flaky`] receiver answered: (path, job id, status).
type Answered = Arc<Mutex<Vec<(String, String, u16)>>>;

/// A receiver on loopback: paths under `/flaky/` answer a job's first
/// request with 500 and later ones with 200; other paths always 200.
struct Flaky {
    url: String,
    answered: Answered,
    _stop: tokio_util::sync::DropGuard,
}

#[handler]
async fn answer(req: &Request, answered: Data<&Answered>) -> poem::Response {
    let path = req.uri().path().to_owned();
    let id = req.header("x-hook-slinger-job-id").unwrap_or_default().to_owned();
    let mut answered = answered.lock().unwrap();
    let seen = answered.iter().any(|(_, j, _)| *j == id);
    let status = if path.starts_with("/flaky/") && !seen { 500 } else { 200 };
    answered.push((path, id, status));
    poem::Response::builder().status(StatusCode::from_u16(status).unwrap()).body("ok")
}

impl Flaky {
    async fn start() -> Self {
        let answered = Answered::default();
        let (addr, stop) =
            serve("127.0.0.1:0", Route::new().at("/*path", poem::post(answer)).data(answered.clone())).await;
        Self { url: format!("http://{addr}"), answered, _stop: stop.drop_guard() }
    }

    /// Job ids answered 200 so far.
    fn delivered(&self) -> HashSet<String> {
        self.answered.lock().unwrap().iter().filter(|(_, _, s)| *s == 200).map(|(_, id, _)| id.clone()).collect()
    }
}

/// `n` jobs, 16 at a time; every fourth to a `/flaky/` path. Returns
/// (id, flaky) pairs.
async fn post_jobs(app: &TestApp, rx: &Flaky, n: usize) -> Vec<(String, bool)> {
    futures::stream::iter(0..n)
        .map(|i| {
            let flaky = i % 4 == 0;
            let url = format!("{}/{}/{i}", rx.url, if flaky { "flaky" } else { "ok" });
            // Each with an Idempotency-Key: its hash picks the shard, so the
            // jobs spread over all of them whatever the timing.
            async move {
                let resp = app
                    .http
                    .post(format!("{}/hook_slinger/", app.base))
                    .header("Authorization", format!("Token {}", crate::helpers::TOKEN))
                    .header("Idempotency-Key", format!("e2e-{i}"))
                    .json(&json!({"to_url": url, "payload": {"i": i}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                let body: serde_json::Value = resp.json().await.unwrap();
                (body["job_id"].as_str().unwrap().to_owned(), flaky)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Every key of `queue` on the node at `port` (SCAN, so a big node is not
/// blocked).
fn keys_on(port: u16, queue: &str) -> Vec<String> {
    node_query(port, |c| {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{queue}:*"))
                .arg("COUNT")
                .arg(1000)
                .query(c)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    })
    .unwrap()
}

/// The shard's hash tag in a key `<queue>:{<tag>}:...`.
fn shard_of(key: &str) -> String {
    let tag = &key[key.find('{').unwrap() + 1..];
    tag[..tag.find('}').unwrap()].to_owned()
}

/// Pages through `GET /hook_slinger/` with `limit`, following
/// `next_cursor`; returns every listed (id, created_at), in order.
async fn list_all(app: &TestApp, limit: usize) -> Vec<(String, DateTime<Utc>)> {
    let mut listed = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1_000 {
        let (status, page) =
            app.call(reqwest::Method::GET, &format!("/hook_slinger/?limit={limit}&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        for j in page["jobs"].as_array().unwrap() {
            let at = j["created_at"].as_str().unwrap().parse().unwrap();
            listed.push((j["job_id"].as_str().unwrap().to_owned(), at));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return listed,
        }
    }
    panic!("the listing never ended");
}

/// Runs the monitor binary's CLI against the cluster; returns its JSON.
fn monitor_cli(s: &hook_slinger::config::Settings, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hook-slinger-monitor"))
        .args(args)
        .arg("--json")
        .current_dir(dir.path())
        .env("REDIS_CLUSTER", "true")
        .env("REDIS_URL", &s.redis.url)
        .env("QUEUE_NAME", &s.redis.queue)
        .env("LOG_LEVEL", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "monitor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("monitor {args:?}: {e}"))
}

/// 200 jobs, a quarter of them failing once and retried, through the app,
/// two workers and the monitor: every job delivered and `succeeded`, its
/// attempts right in the status API; the queue's keys on every master, each
/// shard on one; the listing API pages across shards newest first, each job
/// once; the monitor's CLI binary and web UI read the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_two_workers_and_the_monitor_on_a_cluster() {
    const JOBS: usize = 200;
    let started = Instant::now();
    let cluster = TestCluster::start();
    let rx = Flaky::start().await;
    let s = cluster.settings(&[
        ("MONITOR_HOST", "127.0.0.1"),
        ("MONITOR_PORT", "0"),
        ("MONITOR_USER", USER),
        ("MONITOR_PASSWORD", PASSWORD),
    ]);
    assert_eq!(s.redis.shards, 16, "a cluster's default");
    let app = spawn_app(s.clone()).await;
    let workers: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|name| {
            let mut w = s.clone();
            w.worker.name_prefix = name.to_owned();
            spawn_worker(&w)
        })
        .collect();
    let monitor = spawn_monitor(&s).await;

    let jobs = post_jobs(&app, &rx, JOBS).await;
    let ids: BTreeSet<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), JOBS);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ids.iter().all(|id| rx.delivered().contains(id)) {
        assert!(Instant::now() < deadline, "{} of {JOBS} delivered", rx.delivered().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_count(JobState::Succeeded, JOBS as u64, Duration::from_secs(10)).await;

    // The status API: each job succeeded, flaky ones at the second attempt.
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (id, flaky) in &jobs {
        let (status, job) = app.get_job(id).await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(job["state"], "succeeded", "{job}");
        let statuses: Vec<u64> =
            job["attempt_log"].as_array().unwrap().iter().map(|a| a["status"].as_u64().unwrap()).collect();
        assert_eq!(statuses, if *flaky { vec![500, 200] } else { vec![200] }, "{job}");
        assert_eq!(job["attempts"], statuses.len(), "{job}");
        for a in job["attempt_log"].as_array().unwrap() {
            let name = a["worker"].as_str().unwrap();
            *by_worker.entry(name.split(['-', ':']).next().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(by_worker.keys().collect::<Vec<_>>(), ["one", "two"], "both workers delivered: {by_worker:?}");
    let answered = rx.answered.lock().unwrap().len();
    assert_eq!(answered, JOBS + JOBS / 4, "each job delivered once, flaky ones retried once");

    // Keys on every master; each shard's keys on one master, the one its
    // hash tag maps to.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let mut shard_home: BTreeMap<String, u16> = BTreeMap::new();
    for &master in &masters {
        let keys = keys_on(master, &s.redis.queue);
        assert!(!keys.is_empty(), "no keys of the queue on master {master}");
        for key in keys {
            let k = shard_of(&key);
            let home = *shard_home.entry(k.clone()).or_insert(master);
            assert_eq!(home, master, "shard {k} has keys on {home} and {master} ({key})");
        }
    }
    assert_eq!(shard_home.len(), 16, "every shard holds jobs: {shard_home:?}");
    for (k, master) in &shard_home {
        assert_eq!(cluster.master_of(&format!("{}:{{{k}}}", s.redis.queue)), *master);
    }

    // The listing API across shards: every job once, newest first.
    let listed = list_all(&app, 23).await;
    assert!(listed.windows(2).all(|w| w[0].1 >= w[1].1), "newest first");
    let listed_ids: Vec<&String> = listed.iter().map(|(id, _)| id).collect();
    assert_eq!(listed_ids.len(), JOBS, "each job once");
    assert_eq!(listed_ids.iter().copied().cloned().collect::<BTreeSet<_>>(), ids);

    // The monitor's CLI binary: the same listing, a job, the counts, both workers.
    let cli_jobs = monitor_cli(&s, &["jobs", "--limit", "500"]);
    let cli_ids: Vec<&str> =
        cli_jobs["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(cli_ids, listed_ids.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(cli_jobs["next_cursor"].is_null());
    let flaky_id = &jobs.iter().find(|(_, f)| *f).unwrap().0;
    let shown = monitor_cli(&s, &["show", flaky_id]);
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["attempt_log"].as_array().unwrap().len(), 2);
    let stats = monitor_cli(&s, &["stats"]);
    assert_eq!(stats["counts"]["succeeded"], JOBS, "{stats}");
    assert_eq!(stats["queue_depth"], 0, "{stats}");
    assert!(stats["live_workers"].as_u64().unwrap() >= 2, "{stats}");
    let names: BTreeSet<String> = monitor_cli(&s, &["workers"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["alive"] == true)
        .map(|w| w["name"].as_str().unwrap().split(['-', ':']).next().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["one".to_owned(), "two".to_owned()].into());

    // The monitor's web UI: a job's page.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("user", USER).append_pair("password", PASSWORD);
    let login = http
        .post(format!("{}/login", monitor.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(format!("{}/jobs/{flaky_id}", monitor.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(flaky_id.as_str()) && html.contains("succeeded"), "{html}");

    for w in workers {
        w.shutdown().await;
    }
    eprintln!("cluster end to end: {JOBS} jobs in {:.1} s", started.elapsed().as_secs_f64());
}
