//! Test harness: a real app and real workers (as libraries, on random ports,
//! each test on its own queue name so tests run in parallel against one
//! Redis), and a real HTTP receiver on loopback that misbehaves on demand.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hook_slinger::{
    api::Application,
    config::Settings,
    jobs::{JobRecord, JobState},
    queue::Queue,
    service::HookService,
    store::{self, JobStore},
};
use poem::{handler, listener::Acceptor, listener::Listener, web::Data, EndpointExt, Request, Route, Server};
use serde_json::Value;
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token";

pub const LIMITS: hook_slinger::domain::Limits =
    hook_slinger::domain::Limits { max_retries: 25, max_delay: Duration::from_secs(86_400) };

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Settings for one test: its own queue, fast retries, quiet logs, and a
/// heartbeat far longer than any test waits for a delivery (so a worker
/// that only looked for work at heartbeats would fail them: APALIS.md #8).
pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let queue = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut vars: Vec<(String, String)> = [
        ("API_TOKEN", TOKEN),
        ("APP_HOST", "127.0.0.1"),
        ("APP_PORT", "0"),
        ("REDIS_URL", &redis_url()),
        ("QUEUE_NAME", &queue),
        ("INTERVAL", "0.2"),
        ("MAX_RETRIES", "3"),
        ("HTTP_TIMEOUT", "5"),
        ("HEARTBEAT_INTERVAL", "30"),
        ("ORPHAN_AFTER", "60"),
        ("WORKER_CONCURRENCY", "16"),
        ("SHUTDOWN_TIMEOUT", "10"),
        ("LOG_LEVEL", "warn"),
        // Receivers in tests listen on loopback, which the SSRF guard refuses
        // by default; the guard's own tests turn this off.
        ("ALLOW_PRIVATE_DESTINATIONS", "true"),
        // Many workers run at once in one process; the metrics tests pick
        // their own ports.
        ("WORKER_METRICS_PORT", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // `make test` runs the suite a second time on a sharded keyspace.
    if let Ok(shards) = std::env::var("TEST_QUEUE_SHARDS") {
        vars.push(("QUEUE_SHARDS".to_owned(), shards));
    }
    for (k, v) in extra {
        vars.retain(|(key, _)| key != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Settings::from_vars(vars).expect("test settings are valid")
}

/// A running app.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub store: JobStore,
    pub service: HookService,
    stop: CancellationToken,
    /// `REDIS_URL` and `QUEUE_NAME`, to clean up after the test.
    redis: (String, String),
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        forget_namespace(&self.redis.0, &self.redis.1);
    }
}

/// Gives every key of a test's queue a short life, so test runs do not
/// pile records up in the shared Redis. Expiring rather than deleting
/// leaves a worker still shutting down nothing to trip over.
fn forget_namespace(url: &str, queue: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else { return };
    let keys: Vec<String> = match redis::cmd("KEYS").arg(format!("{queue}*")).query(&mut conn) {
        Ok(keys) => keys,
        Err(_) => return,
    };
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.pexpire(key, 10_000).ignore();
    }
    let _: Result<(), _> = pipe.query(&mut conn);
}

pub async fn spawn_app(settings: Settings) -> TestApp {
    let app = Application::build(settings.clone()).await.expect("app builds");
    let port = app.port();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(app.run_until_stopped(async move { s.cancelled().await }));
    let conn = store::connect(&settings.redis).unwrap();
    let store = JobStore::new(conn.clone(), &settings);
    let queue = Queue::new(conn, &settings);
    let service = HookService::new(store.clone(), queue, Duration::from_secs(5), settings.redis.wait_replicas);
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        store,
        service,
        stop,
        redis: (settings.redis.url.clone(), settings.redis.queue.clone()),
    }
}

impl TestApp {
    /// This app's `QUEUE_NAME`, for workers and tools that share its keys.
    pub fn queue(&self) -> &str {
        &self.redis.1
    }

    pub async fn post_job(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/hook_slinger/", self.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a job and returns its id, asserting 202.
    pub async fn accept(&self, body: &Value) -> String {
        let resp = self.post_job(body).await;
        assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
        let v: Value = resp.json().await.unwrap();
        v["job_id"].as_str().unwrap().to_owned()
    }

    /// An authorised request to `path` on the app: (status, JSON body).
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Token {TOKEN}"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    pub async fn get_job(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/hook_slinger/{id}")).await
    }

    pub async fn requeue(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("/hook_slinger/{id}/requeue")).await
    }

    pub async fn record(&self, id: &str) -> JobRecord {
        let id = hook_slinger::domain::JobId::parse(id).unwrap();
        self.store.get(&id).await.unwrap().expect("job exists")
    }

    /// Waits until the job reaches `state`, or panics after `within`.
    pub async fn wait_state(&self, id: &str, state: JobState, within: Duration) -> JobRecord {
        let deadline = Instant::now() + within;
        let job_id = hook_slinger::domain::JobId::parse(id).unwrap();
        loop {
            // A read may fail once while Redis restarts; the connection heals.
            let rec = match self.store.get(&job_id).await {
                Ok(rec) => rec.expect("job exists"),
                Err(e) => {
                    assert!(Instant::now() < deadline, "job {id}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if rec.state == state {
                return rec;
            }
            assert!(Instant::now() < deadline, "job {id} is {} after {within:?}, expected {state}", rec.state);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `n` jobs are in `state`.
    pub async fn wait_count(&self, state: JobState, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let counts = self.store.counts().await.unwrap();
            let got = counts.iter().find(|(s, _)| *s == state).map(|(_, c)| *c).unwrap_or(0);
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{got} jobs {state} after {within:?}, expected {n}; counts {counts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A worker running in this process.
pub struct TestWorker {
    stop: CancellationToken,
    join: Option<JoinHandle<()>>,
}

pub fn spawn_worker(settings: &Settings) -> TestWorker {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let settings = settings.clone();
    let join = tokio::spawn(async move {
        hook_slinger::worker::run(settings, async move { s.cancelled().await }).await.expect("worker runs");
    });
    TestWorker { stop, join: Some(join) }
}

impl TestWorker {
    /// Asks the worker to stop and waits until it has.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(j) = self.join.take() {
            j.await.unwrap();
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn job_id(&self) -> String {
        self.header("x-hook-slinger-job-id").unwrap_or_default().to_owned()
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// Answer with this many bytes of body.
    pub body_len: usize,
    /// Answer with a body that never ends.
    pub endless: bool,
    /// Send `Retry-After: <seconds>`.
    pub retry_after: Option<u64>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, ..Default::default() }
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    notify: Notify,
}

/// A real HTTP server on loopback that records every request.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[handler]
async fn receive(req: &Request, body: Vec<u8>, state: Data<&Arc<ReceiverState>>) -> poem::Response {
    let reply =
        state.script.lock().unwrap().pop_front().or(*state.default.lock().unwrap()).unwrap_or(Reply::status(200));
    let rec = Received {
        path: req.uri().path().to_owned(),
        headers: req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect(),
        body,
        at: Instant::now(),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.got.lock().unwrap().push(rec);
    state.notify.notify_waiters();
    let mut resp = poem::Response::builder()
        .status(poem::http::StatusCode::from_u16(reply.status).unwrap())
        .header("x-request-id", "rx-1");
    if let Some(secs) = reply.retry_after {
        resp = resp.header("retry-after", secs.to_string());
    }
    if reply.endless {
        let chunks = futures::stream::repeat_with(|| Ok::<_, std::io::Error>(vec![b'z'; 8192]));
        return resp.body(poem::Body::from_bytes_stream(chunks));
    }
    if reply.body_len > 0 {
        return resp.body(vec![b'x'; reply.body_len]);
    }
    resp.body("ok")
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = Route::new().at("/*path", poem::post(receive)).data(state.clone());
        let (addr, stop) = serve("127.0.0.1:0", app).await;
        Self { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Answer with this once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (completed), or panics.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let got = self.wait_up_to(n, within).await;
        assert!(got.len() >= n, "receiver got {} requests after {within:?}, expected {n}", got.len());
        got
    }

    /// Waits until at least `n` requests arrived (completed) or `within`
    /// passed, and returns what arrived.
    pub async fn wait_up_to(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.state.notify.notified();
            let got = self.received();
            let left = deadline.saturating_duration_since(Instant::now());
            if got.len() >= n || left.is_zero() {
                return got;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }
}

/// Serves `app` on `addr` (port 0: a free one) until the returned token is
/// cancelled; receivers in every test binary are built on it.
pub async fn serve(addr: &str, app: impl poem::Endpoint + 'static) -> (SocketAddr, CancellationToken) {
    let acceptor = poem::listener::TcpListener::bind(addr.to_owned()).into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, async move { s.cancelled().await }, Some(Duration::from_millis(100)))
            .await;
    });
    (addr, stop)
}

/// A redis-server of the test's own on a free port, for tests that restart
/// or stop Redis. Data survives restarts through an append-only file.
pub struct OwnRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut r = Self { port, dir, child: None };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "own redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn job_body(to_url: &str) -> Value {
    serde_json::json!({"to_url": to_url, "payload": {"hello": "world", "n": 1}})
}

/// A failed attempt record (HTTP 500) numbered `n` in cycle 0, for tests that
/// drive the store's claim and finish by hand.
pub fn attempt(n: u32) -> hook_slinger::jobs::Attempt {
    hook_slinger::jobs::Attempt {
        attempt: n,
        cycle: 0,
        started_at: chrono::Utc::now(),
        duration_ms: 1,
        status: Some(500),
        error: None,
        worker: "test".into(),
        response_headers: None,
        response_body: None,
        response_truncated: false,
    }
}
