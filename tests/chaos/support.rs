//! What the scenarios share beyond the `it` harness: a
//! receiver that counts deliveries per job id, worker binaries as child
//! processes, a redis-server with chosen persistence, load senders, and the
//! result line.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use hook_slinger::config::Settings;
use poem::{handler, web::Data, EndpointExt, Request, Route};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::TOKEN;

// ---------------------------------------------------------------- receiver

#[derive(Default)]
struct TallyState {
    counts: Mutex<HashMap<String, u32>>,
    /// Deliveries of events, per `<webhook-id> <path>`: one event to one
    /// endpoint, whatever job carried it.
    by_message_path: Mutex<HashMap<String, u32>>,
    arrivals: Mutex<Vec<Instant>>,
    delay_ms: AtomicU64,
    in_flight: AtomicU64,
    /// Requests whose handler was dropped before answering (the client went away).
    aborted: AtomicU64,
}

/// Marks a request in flight; counts it as aborted if dropped unanswered.
struct InFlight<'a> {
    state: &'a TallyState,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            self.state.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[handler]
async fn tally_handler(req: &Request, _body: Vec<u8>, state: Data<&Arc<TallyState>>) -> &'static str {
    let state: &TallyState = state.0;
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let mut guard = InFlight { state, answered: false };
    // Counted on arrival of the whole payload: that is a delivery, whether
    // or not the sender lives to read the answer.
    let id = req.header("x-hook-slinger-job-id").unwrap_or_default().to_owned();
    *state.counts.lock().unwrap().entry(id).or_default() += 1;
    if let Some(message) = req.header("webhook-id") {
        *state.by_message_path.lock().unwrap().entry(format!("{message} {}", req.uri().path())).or_default() += 1;
    }
    state.arrivals.lock().unwrap().push(Instant::now());
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    guard.answered = true;
    "ok"
}

/// A receiver on loopback that answers 200 (after an optional delay) and
/// counts deliveries per `X-Hook-Slinger-Job-Id`. Lighter than the harness's
/// `Receiver`, which keeps every request: this one holds 100,000 jobs.
pub struct Tally {
    pub addr: SocketAddr,
    state: Arc<TallyState>,
    stop: CancellationToken,
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tally {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Self {
        let state = Arc::new(TallyState::default());
        let app = Route::new().at("/*path", poem::post(tally_handler)).data(state.clone());
        let (addr, stop) = crate::helpers::serve(addr, app).await;
        Self { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Deliveries so far, all jobs together.
    pub fn total(&self) -> u64 {
        self.state.arrivals.lock().unwrap().len() as u64
    }

    pub fn counts(&self) -> HashMap<String, u32> {
        self.state.counts.lock().unwrap().clone()
    }

    /// Deliveries of `message` (a `webhook-id`), per request path.
    pub fn by_path(&self, message: &str) -> HashMap<String, u32> {
        let prefix = format!("{message} ");
        let all = self.state.by_message_path.lock().unwrap();
        all.iter().filter_map(|(k, n)| Some((k.strip_prefix(&prefix)?.to_owned(), *n))).collect()
    }

    /// Deliveries per `webhook-id` (an event id for a delivery of an
    /// event), all paths together.
    pub fn by_message(&self) -> HashMap<String, u32> {
        let all = self.state.by_message_path.lock().unwrap();
        let mut out: HashMap<String, u32> = HashMap::new();
        for (k, n) in all.iter() {
            let message = k.split_once(' ').map_or(k.as_str(), |(m, _)| m);
            *out.entry(message.to_owned()).or_default() += n;
        }
        out
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.arrivals.lock().unwrap().clone()
    }

    pub fn in_flight(&self) -> u64 {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn aborted(&self) -> u64 {
        self.state.aborted.load(Ordering::SeqCst)
    }

    /// Waits until `n` deliveries arrived; false after `within`.
    pub async fn wait_total(&self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.total() < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Waits until every id in `ids` was delivered at least once; false
    /// after `within`.
    pub async fn wait_all(&self, ids: &[String], within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let missing = {
                let counts = self.state.counts.lock().unwrap();
                ids.iter().filter(|id| !counts.contains_key(*id)).count()
            };
            if missing == 0 {
                return true;
            }
            if Instant::now() > deadline {
                eprintln!("{missing} of {} jobs still undelivered after {within:?}", ids.len());
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ------------------------------------------------------------------ workers

/// Worker settings every scenario starts from; scenarios override some.
const WORKER_BASE: &[(&str, &str)] = &[
    ("HEARTBEAT_INTERVAL", "1"),
    ("ORPHAN_AFTER", "3"),
    ("ALLOW_PRIVATE_DESTINATIONS", "true"),
    ("INTERVAL", "0.2"),
    ("MAX_RETRIES", "3"),
    ("HTTP_TIMEOUT", "5"),
    ("SHUTDOWN_TIMEOUT", "10"),
    ("WORKER_CONCURRENCY", "32"),
    ("LOG_LEVEL", "warn"),
    ("LOG_COLOR", "never"),
];

/// A `hook-slinger-worker` child process.
pub struct WorkerProcess {
    child: Child,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts the worker binary on `s`'s Redis and queue, in an empty
    /// directory with a clean environment (no developer `.env` leaks in).
    pub fn start(s: &Settings, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hook-slinger-worker"));
        cmd.current_dir(dir.path())
            .env_clear()
            .env("REDIS_URL", &s.redis.url)
            .env("QUEUE_NAME", &s.redis.queue)
            .stdout(Stdio::null());
        for (k, v) in WORKER_BASE.iter().chain(extra) {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("worker binary runs");
        Self { child, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {}", self.pid());
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// -------------------------------------------------------------------- redis

/// A redis-server of the scenario's own, with the persistence it asks for.
/// Unlike the harness's `OwnRedis` (SIGKILL, `appendfsync always`), it stops
/// Redis the way an operator or orchestrator does: SIGTERM, which makes
/// Redis write and fsync its append-only file before exiting.
pub struct ScratchRedis {
    pub port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ScratchRedis {
    pub fn start(args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Self {
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.launch();
        r
    }

    /// Append-only file, fsync once a second: the production setting of
    /// `docker-compose.yml`.
    pub fn with_aof_everysec() -> Self {
        Self::start(&["--appendonly", "yes", "--appendfsync", "everysec"])
    }

    /// No persistence at all (a scratch queue for load).
    pub fn in_memory() -> Self {
        Self::start(&["--appendonly", "no"])
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "scratch redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait: a clean shutdown that flushes the append-only file.
    pub fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }
}

impl Drop for ScratchRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------ senders

/// What a sender did: requests sent, ids answered 202, every outcome.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    pub sent: u64,
    pub accepted: Vec<String>,
    /// `"202"`, `"503"`, ..., `"timeout"`, `"error"` → count.
    pub outcomes: BTreeMap<String, u64>,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.sent += other.sent;
        self.accepted.extend(other.accepted);
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }

    fn note(&mut self, outcome: Result<(u16, Option<String>), String>) {
        self.sent += 1;
        match outcome {
            Ok((status, id)) => {
                *self.outcomes.entry(status.to_string()).or_default() += 1;
                if let Some(id) = id {
                    self.accepted.push(id);
                }
            }
            Err(kind) => *self.outcomes.entry(kind).or_default() += 1,
        }
    }

    /// Answers that are neither 202 nor 503.
    pub fn unexpected(&self) -> u64 {
        self.outcomes.iter().filter(|(k, _)| *k != "202" && *k != "503").map(|(_, v)| v).sum()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap()
}

/// POSTs one job; `Ok((status, job id if 202))` or `Err("timeout" | "error")`.
pub async fn post_one(http: &reqwest::Client, base: &str, body: &Value) -> Result<(u16, Option<String>), String> {
    let resp = http
        .post(format!("{base}/hook_slinger/"))
        .header("Authorization", format!("Token {TOKEN}"))
        .json(body)
        .send()
        .await
        .map_err(|e| if e.is_timeout() { "timeout".to_owned() } else { "error".to_owned() })?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let id = (status == 202).then(|| v["job_id"].as_str().unwrap_or_default().to_owned());
    Ok((status, id))
}

/// POSTs `n` jobs, `concurrency` at a time; `url(i)` is job i's destination.
pub async fn post_jobs(base: &str, n: u64, concurrency: usize, url: impl Fn(u64) -> String) -> Sent {
    let http = client();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let body = json!({"to_url": url(i), "payload": {"n": i}});
            let http = http.clone();
            async move { post_one(&http, base, &body).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut sent = Sent::default();
    for r in results {
        sent.note(r);
    }
    sent
}

/// Keeps POSTing jobs from `tasks` concurrent loops until `stop` is
/// cancelled, `cap` requests were sent, or `max_time` passed. After a
/// refusal a loop pauses briefly, as a polite client would.
pub async fn post_until(
    base: &str,
    url: &str,
    tasks: usize,
    cap: u64,
    max_time: Duration,
    stop: CancellationToken,
) -> Sent {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + max_time;
    let loops = (0..tasks).map(|_| {
        let (base, url, stop, counter) = (base.to_owned(), url.to_owned(), stop.clone(), counter.clone());
        tokio::spawn(async move {
            let http = client();
            let mut sent = Sent::default();
            while !stop.is_cancelled() && Instant::now() < deadline && counter.fetch_add(1, Ordering::SeqCst) < cap {
                let body = json!({"to_url": url, "payload": {"loop": true}});
                let r = post_one(&http, &base, &body).await;
                let refused = !matches!(r, Ok((202, _)));
                sent.note(r);
                if refused {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            sent
        })
    });
    let mut all = Sent::default();
    for s in futures::future::join_all(loops).await {
        all.add(s.unwrap());
    }
    all
}

/// Queues `n` jobs through `POST /hook_slinger/batch`, `per_batch` at a time.
pub async fn post_batches(base: &str, n: u64, per_batch: u64, url: &str) -> Sent {
    let http = client();
    let mut sent = Sent::default();
    let batches: Vec<u64> = (0..n.div_ceil(per_batch)).collect();
    let results: Vec<_> = futures::stream::iter(batches)
        .map(|b| {
            let http = http.clone();
            let count = per_batch.min(n - b * per_batch);
            let jobs: Vec<Value> = (0..count).map(|i| json!({"to_url": url, "payload": {"b": b, "i": i}})).collect();
            async move {
                let resp = http
                    .post(format!("{base}/hook_slinger/batch"))
                    .header("Authorization", format!("Token {TOKEN}"))
                    .json(&json!({ "jobs": jobs }))
                    .send()
                    .await;
                (count, resp)
            }
        })
        .buffer_unordered(2)
        .collect()
        .await;
    for (count, resp) in results {
        sent.sent += count;
        let Ok(resp) = resp else {
            *sent.outcomes.entry("error".into()).or_default() += count;
            continue;
        };
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        for item in v["results"].as_array().into_iter().flatten() {
            let s = item["status"].as_u64().unwrap_or(0);
            *sent.outcomes.entry(s.to_string()).or_default() += 1;
            if let Some(id) = item["job_id"].as_str() {
                sent.accepted.push(id.to_owned());
            }
        }
        if status != 202 {
            *sent.outcomes.entry(status.to_string()).or_default() += count;
        }
    }
    sent
}

// ------------------------------------------------------------------ results

/// One scenario's numbers.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: &'static str,
    pub sent: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub seconds: f64,
    pub extra: Value,
}

impl Outcome {
    /// Counts, for every accepted id, whether and how often it arrived.
    /// `duplicates` is deliveries beyond the first, over accepted jobs.
    pub fn measure(scenario: &'static str, sent: &Sent, tally: &Tally, started: Instant, extra: Value) -> Self {
        let counts = tally.counts();
        let mut delivered = 0;
        let mut duplicates = 0;
        for id in &sent.accepted {
            if let Some(&c) = counts.get(id) {
                delivered += 1;
                duplicates += u64::from(c - 1);
            }
        }
        let accepted = sent.accepted.len() as u64;
        Self {
            scenario,
            sent: sent.sent,
            accepted,
            delivered,
            lost: accepted - delivered,
            duplicates,
            seconds: started.elapsed().as_secs_f64(),
            extra,
        }
    }

    /// Prints the summary line and appends it to `target/chaos/results.jsonl`.
    pub fn report(&self) {
        self.report_with(&[]);
    }

    /// [`Self::report`] with counts of the scenario's own beside the usual
    /// ones (`name=n` on the line, top-level fields in the JSON).
    pub fn report_with(&self, counts: &[(&str, u64)]) {
        let own: String = counts.iter().map(|(k, n)| format!(" {k}={n}")).collect();
        println!(
            "scenario={} sent={} accepted={} delivered={} lost={} duplicates={}{own} seconds={:.1} {}",
            self.scenario,
            self.sent,
            self.accepted,
            self.delivered,
            self.lost,
            self.duplicates,
            self.seconds,
            self.extra
        );
        let mut line = json!({
            "scenario": self.scenario, "sent": self.sent, "accepted": self.accepted,
            "delivered": self.delivered, "lost": self.lost, "duplicates": self.duplicates,
        });
        for (k, n) in counts {
            line[*k] = json!(n);
        }
        line["seconds"] = json!((self.seconds * 10.0).round() / 10.0);
        line["extra"] = self.extra.clone();
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("chaos");
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("results.jsonl")).unwrap();
        writeln!(f, "{line}").unwrap();
    }
}
