//! `make bench`: starts Redis, the app and workers (release builds) against
//! a fast loopback receiver, drives load, and prints a table (also written
//! to `target/bench/results.json`). Everything shares this machine's cores.
//! Not a test: numbers, not assertions.
//!
//! `BENCH_ONLY=latency` runs only the POST-to-delivery latency section
//! (`latency.rs`; `BENCH_LATENCY_SECS` per rate, default 60) and updates
//! its rows in `results.json`, keeping the others. `BENCH_ONLY=fanout` runs
//! only the fan-out section (`fanout.rs`), `BENCH_ONLY=flow` only the
//! section with 10% dead endpoints (`flow.rs`), `BENCH_ONLY=ingest` only
//! signed requests to a source (`ingest.rs`).

mod cluster;
mod fanout;
mod flow;
mod ingest;
mod latency;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use poem::{handler, listener::Acceptor, listener::Listener, web::Data, EndpointExt, Request, Route, Server};
use serde_json::{json, Value};

const TOKEN: &str = "bench-token";

/// Receive times by job id, and a counter.
#[derive(Default)]
struct Sink {
    count: AtomicU64,
    seen: Mutex<HashMap<String, Instant>>,
}

#[handler]
fn receive(req: &Request, sink: Data<&Arc<Sink>>) -> &'static str {
    sink.count.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = req.header("x-hook-slinger-job-id") {
        sink.seen.lock().unwrap().entry(id.to_owned()).or_insert_with(Instant::now);
    }
    "ok"
}

#[derive(Default)]
struct Procs {
    children: Vec<(String, Child)>,
}

impl Procs {
    fn add(&mut self, name: &str, child: Child) {
        self.children.push((name.to_owned(), child));
    }

    /// Kills and reaps every process called `name`.
    fn stop(&mut self, name: &str) {
        for (n, c) in &mut self.children {
            if n == name {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.retain(|(n, _)| n != name);
    }
}

/// The table: printed as it grows, written to `target/bench/results.json`.
#[derive(Default)]
struct Report {
    rows: Vec<(String, String)>,
}

impl Report {
    fn put(&mut self, k: &str, v: String) {
        println!("{k:<58} {v}");
        self.rows.push((k.to_owned(), v));
    }

    /// Writes the rows; with `keep_others`, rows of an earlier run that this
    /// one did not measure stay.
    fn write(self, keep_others: bool) -> anyhow::Result<()> {
        let path = "target/bench/results.json";
        let mut json: serde_json::Map<String, Value> = match std::fs::read(path) {
            Ok(old) if keep_others => serde_json::from_slice(&old).unwrap_or_default(),
            _ => Default::default(),
        };
        for (k, v) in self.rows {
            json.insert(k, Value::String(v));
        }
        std::fs::create_dir_all("target/bench")?;
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
        println!("\nwritten to {path}");
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Env {
    bin: PathBuf,
    redis_url: String,
    app_port: u16,
    queue: String,
    /// The benchmark's own redis-server, whose CPU time is measured.
    redis_pid: u32,
}

impl Env {
    fn spawn(&self, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Child> {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.env_clear()
            .current_dir(std::env::temp_dir())
            .env("API_TOKEN", TOKEN)
            .env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", self.app_port.to_string())
            .env("REDIS_URL", &self.redis_url)
            .env("QUEUE_NAME", &self.queue)
            .env("ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("LOG_LEVEL", "warn")
            .env("WORKER_METRICS_PORT", "0")
            .stdout(Stdio::null());
        // BENCH_LOG_DIR=<dir>: keep each process's log (warnings and up).
        if let Ok(dir) = std::env::var("BENCH_LOG_DIR") {
            let path = std::path::Path::new(&dir).join(format!("{name}-{}.log", free_port()));
            cmd.stdout(std::fs::File::create(path)?);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().with_context(|| format!("starting {name}"))
    }
}

struct Timing {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// POSTs `n` requests at `concurrency`; returns rate, latency and the bodies.
async fn post_many(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    concurrency: usize,
    body: impl Fn(usize) -> Value,
    auth: bool,
) -> (Timing, Vec<(Instant, Value)>) {
    let started = Instant::now();
    let results: Vec<(f64, Instant, Value)> = futures::stream::iter(0..n)
        .map(|i| {
            let req = http.post(url).json(&body(i));
            let req = if auth { req.header("Authorization", format!("Token {TOKEN}")) } else { req };
            async move {
                let t0 = Instant::now();
                let resp = req.send().await;
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                // Success is the status; the body is JSON only for the app.
                let v = match resp {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.unwrap_or(Value::Bool(true)),
                    _ => Value::Null,
                };
                (ms, t0, v)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().map(|r| r.0).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ok = results.iter().filter(|r| !r.2.is_null()).count();
    let timing = Timing { rate: ok as f64 / elapsed, p50_ms: percentile(&lat, 0.5), p99_ms: percentile(&lat, 0.99) };
    (timing, results.into_iter().map(|r| (r.1, r.2)).collect())
}

async fn wait_count(sink: &Sink, n: u64, within: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    while sink.count.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} deliveries after {within:?}", sink.count.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Instant::now())
}

async fn flush(redis_url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    // Flushing a drained 100,000-job backlog takes longer than the redis
    // crate's default 500 ms response timeout.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
    redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
    Ok(())
}

/// What Redis spent: CPU time of the redis-server process (utime + stime
/// from `/proc/<pid>/stat`, every thread) and commands run (the sum of
/// `calls` in `INFO commandstats`, which counts commands run inside scripts
/// too). Differences between two readings give the cost of the work between.
#[derive(Clone)]
struct RedisCost {
    cpu_us: f64,
    commands: u64,
    /// Per command name: calls and the µs Redis says it spent in them.
    by_command: HashMap<String, (u64, f64)>,
}

/// CPU time a process has used so far (utime + stime of every thread,
/// from `/proc/<pid>/stat`), in µs.
fn cpu_us(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hz = 100.0; // USER_HZ, 100 on every Linux this runs on.
    Ok(ticks as f64 / hz * 1e6)
}

impl RedisCost {
    async fn read(pid: u32, redis_url: &str) -> anyhow::Result<Self> {
        let cpu = cpu_us(pid)?;
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await?;
        let by_command: HashMap<String, (u64, f64)> = info
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |f: &str| rest.split(',').find_map(|kv| kv.strip_prefix(f));
                Some((name.to_owned(), (field("calls=")?.parse().ok()?, field("usec=")?.parse().ok()?)))
            })
            .collect();
        let commands = by_command.values().map(|(calls, _)| calls).sum();
        Ok(Self { cpu_us: cpu, commands, by_command })
    }

    /// With `BENCH_VERBOSE=1`: the commands behind the figure, per job,
    /// costliest first (script time includes the commands it runs).
    fn print_breakdown(&self, after: &Self, jobs: usize) {
        if std::env::var("BENCH_VERBOSE").is_err() {
            return;
        }
        let mut rows: Vec<(String, f64, f64)> = after
            .by_command
            .iter()
            .map(|(name, (calls, usec))| {
                let (c0, u0) = self.by_command.get(name).copied().unwrap_or_default();
                (name.clone(), (calls - c0) as f64 / jobs as f64, (usec - u0) / jobs as f64)
            })
            .filter(|r| r.1 > 0.0)
            .collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        for (name, calls, usec) in rows {
            println!("    {name:<24} {calls:>6.2} calls/job  {usec:>6.1} µs/job");
        }
    }

    /// "µs per job, commands per job" for `jobs` jobs since `self`.
    fn per_job(&self, after: &Self, jobs: usize) -> (f64, f64) {
        let n = jobs.max(1) as f64;
        (((after.cpu_us - self.cpu_us) / n), (after.commands.saturating_sub(self.commands)) as f64 / n)
    }
}

/// The receiver's ceiling again, then the cluster capacity rows.
async fn cluster_section(http: &reqwest::Client, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let rx_url = start_sink(Arc::new(Sink::default())).await?;
    let n: usize = std::env::var("BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let (ceiling, _) = post_many(http, &rx_url, n, 64, |_| json!({"event": "x"}), false).await;
    report.put("receiver ceiling, cluster section (direct POSTs/s, c=64)", format!("{:.0}", ceiling.rate));
    cluster::run(&env.bin, report, ceiling.rate).await
}

/// Starts the in-process receiver counting into `sink`; returns its URL.
async fn start_sink(sink: Arc<Sink>) -> anyhow::Result<String> {
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let rx_addr: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().context("receiver addr")?;
    let app_route = Route::new().at("/*path", poem::post(receive)).data(sink);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app_route));
    Ok(format!("http://{rx_addr}/hook"))
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if http.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("app did not become ready")
}

/// Without a mode: the whole benchmark. The modes are the benchmark's own
/// helper processes.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// A receiver that records each delivery's latency (see latency.rs).
    Receiver {
        #[arg(long)]
        port: u16,
    },
    /// POSTs jobs to the app at a steady rate, open loop (see latency.rs).
    Load {
        #[arg(long)]
        app: String,
        #[arg(long)]
        to_url: String,
        #[arg(long)]
        rate: u32,
        #[arg(long)]
        secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        None => bench().await,
        Some(Mode::Receiver { port }) => latency::receiver_main(port).await,
        Some(Mode::Load { app, to_url, rate, secs }) => latency::load_main(app, to_url, rate, secs).await,
    }
}

async fn bench() -> anyhow::Result<()> {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let only_latency = only == "latency";
    let only_e2e = only == "e2e";
    let only_cluster = only == "cluster";
    let only_fanout = only == "fanout";
    let only_flow = only == "flow";
    let only_ingest = only == "ingest";
    let bin = std::env::current_exe()?.parent().context("binary dir")?.to_path_buf();

    // Our own Redis, without persistence, so runs are comparable.
    let redis_port = free_port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .context("redis-server must be installed")?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let env = Env {
        bin,
        redis_url: redis_url.clone(),
        app_port: free_port(),
        queue: "bench".to_owned(),
        redis_pid: redis.id(),
    };
    let base = format!("http://127.0.0.1:{}", env.app_port);
    let mut procs = Procs::default();
    let mut report = Report::default();
    let result = async {
        if only_cluster {
            return cluster_section(&http, &env, &mut report).await;
        }
        if only_fanout {
            procs.add("app", env.spawn("hook-slinger-app", &[])?);
            wait_ready(&http, &base).await?;
            return fanout::run(&env, &http, &base, &mut procs, &mut report).await;
        }
        if only_flow {
            procs.add("app", env.spawn("hook-slinger-app", &[])?);
            wait_ready(&http, &base).await?;
            return flow::run(&env, &http, &base, &mut procs, &mut report).await;
        }
        if only_ingest {
            procs.add("app", env.spawn("hook-slinger-app", &[])?);
            wait_ready(&http, &base).await?;
            return ingest::run(&env, &http, &base, &mut procs, &mut report).await;
        }
        if only_latency {
            procs.add("app", env.spawn("hook-slinger-app", &[])?);
            wait_ready(&http, &base).await?;
        } else {
            throughput(&env, &http, &base, &mut procs, &mut report, only_e2e).await?;
            if only_e2e {
                return Ok(());
            }
            fanout::run(&env, &http, &base, &mut procs, &mut report).await?;
            flow::run(&env, &http, &base, &mut procs, &mut report).await?;
            ingest::run(&env, &http, &base, &mut procs, &mut report).await?;
        }
        latency::run(&env, &base, &mut procs, &mut report).await?;
        procs.stop("app");
        cluster_section(&http, &env, &mut report).await
    }
    .await;
    drop(procs);
    let _ = redis.kill();
    let _ = redis.wait();
    result?;
    report.write(only_latency || only_e2e || only_cluster || only_fanout || only_flow || only_ingest)
}

/// Accept rates, end-to-end throughput, latency at 500/s and backlog drain,
/// against an in-process receiver. Starts the app and leaves it running.
async fn throughput(
    env: &Env,
    http: &reqwest::Client,
    base: &str,
    procs: &mut Procs,
    report: &mut Report,
    only_e2e: bool,
) -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let backlog: usize = std::env::var("BENCH_BACKLOG").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);

    let sink = Arc::new(Sink::default());
    let rx_url = start_sink(sink.clone()).await?;

    let job =
        |_: usize| json!({"to_url": rx_url, "payload": {"event": "order.paid", "amount": 4200, "currency": "EUR"}});

    // 1. The receiver's own ceiling.
    let (ceiling, _) = post_many(http, &rx_url, n, 64, |_| json!({"event": "x"}), false).await;
    report.put("receiver ceiling (direct POSTs/s, c=64)", format!("{:.0}", ceiling.rate));
    sink.count.store(0, Ordering::Relaxed);

    // 2. Accept rate, no worker running.
    procs.add("app", env.spawn("hook-slinger-app", &[])?);
    let app_pid = procs.children[0].1.id();
    wait_ready(http, base).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    report.put("app RSS idle (MiB)", format!("{:.1}", rss_kib(app_pid, "VmRSS:") as f64 / 1024.0));
    if !only_e2e {
        accept_rates(env, http, base, report, app_pid, n, &job).await?;
    }
    let run = Run { env, http, base, sink: &sink };
    end_to_end(&run, procs, report, ceiling.rate, n, &job).await?;
    if only_e2e {
        return Ok(());
    }
    steady_and_drain(&run, procs, report, backlog, &job).await
}

/// Single and batch accept rates, no worker running.
async fn accept_rates(
    env: &Env,
    http: &reqwest::Client,
    base: &str,
    report: &mut Report,
    app_pid: u32,
    n: usize,
    job: &impl Fn(usize) -> Value,
) -> anyhow::Result<()> {
    let _ = env;
    let (accept, _) = post_many(http, &format!("{base}/hook_slinger/"), n, 64, job, true).await;
    report.put(
        &format!("accept: {n} single POSTs, c=64 (202/s, p50, p99)"),
        format!("{:.0}/s  p50 {:.2} ms  p99 {:.2} ms", accept.rate, accept.p50_ms, accept.p99_ms),
    );
    let batches = n / 1000;
    let batch_body = |_: usize| json!({"jobs": (0..1000).map(job).collect::<Vec<_>>()});
    let (batch, _) = post_many(http, &format!("{base}/hook_slinger/batch"), batches, 4, batch_body, true).await;
    report.put(&format!("accept: {batches} batches of 1,000 (jobs/s)"), format!("{:.0}", batch.rate * 1000.0));
    report.put("app peak RSS (MiB)", format!("{:.1}", rss_kib(app_pid, "VmHWM:") as f64 / 1024.0));
    Ok(())
}

/// What the sections after the accept rates work with.
struct Run<'a> {
    env: &'a Env,
    http: &'a reqwest::Client,
    base: &'a str,
    sink: &'a Sink,
}

/// End to end with 1 and 3 workers, with what Redis spent per job.
async fn end_to_end(
    run: &Run<'_>,
    procs: &mut Procs,
    report: &mut Report,
    ceiling: f64,
    n: usize,
    job: &impl Fn(usize) -> Value,
) -> anyhow::Result<()> {
    let Run { env, http, base, sink } = *run;
    let redis_url = &env.redis_url;
    for workers in [1usize, 3] {
        flush(redis_url).await?;
        sink.count.store(0, Ordering::Relaxed);
        let first = procs.children.len();
        for _ in 0..workers {
            procs.add("worker", env.spawn("hook-slinger-worker", &[])?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = RedisCost::read(env.redis_pid, redis_url).await?;
        let pids: Vec<u32> = procs.children.iter().filter(|(n, _)| n != "receiver").map(|(_, c)| c.id()).collect();
        let cpu_before: f64 = pids.iter().filter_map(|p| cpu_us(*p).ok()).sum();
        let started = Instant::now();
        let _ = post_many(http, &format!("{base}/hook_slinger/"), n, 64, job, true).await;
        let done = wait_count(sink, n as u64, Duration::from_secs(300)).await?;
        let rate = n as f64 / (done - started).as_secs_f64();
        // The last results are recorded just after their delivery arrives.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = RedisCost::read(env.redis_pid, redis_url).await?;
        let cpu_after: f64 = pids.iter().filter_map(|p| cpu_us(*p).ok()).sum();
        let (cpu, cmds) = before.per_job(&after, n);
        before.print_breakdown(&after, n);
        report.put(
            &format!("end to end: {n} jobs, {workers} worker(s) (deliveries/s)"),
            format!("{rate:.0}  ({:.0}% of receiver ceiling)", 100.0 * rate / ceiling),
        );
        report.put(
            &format!("Redis per job, {workers} worker(s): accept + delivery (CPU µs, commands)"),
            format!("{cpu:.1} µs  {cmds:.1} commands"),
        );
        report.put(
            &format!("app + worker CPU per job, {workers} worker(s) (µs)"),
            format!("{:.1}", (cpu_after - cpu_before) / n as f64),
        );
        if workers == 1 {
            let pid = procs.children[first].1.id();
            report.put("worker peak RSS under load (MiB)", format!("{:.1}", rss_kib(pid, "VmHWM:") as f64 / 1024.0));
        }
        for (_, mut c) in procs.children.drain(first..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    Ok(())
}

/// Latency at a steady 500 jobs/s, then the drain of a backlog, one worker.
async fn steady_and_drain(
    run: &Run<'_>,
    procs: &mut Procs,
    report: &mut Report,
    backlog: usize,
    job: &impl Fn(usize) -> Value,
) -> anyhow::Result<()> {
    let Run { env, http, base, sink } = *run;
    let redis_url = &env.redis_url;
    // 4. Latency at a steady 500 jobs/s with one worker.
    flush(redis_url).await?;
    sink.count.store(0, Ordering::Relaxed);
    sink.seen.lock().unwrap().clear();
    procs.add("worker", env.spawn("hook-slinger-worker", &[])?);
    let worker_pid = procs.children.last().unwrap().1.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.put("worker RSS idle (MiB)", format!("{:.1}", rss_kib(worker_pid, "VmRSS:") as f64 / 1024.0));
    let steady = 5_000usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    let sent: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut tasks = Vec::with_capacity(steady);
    for _ in 0..steady {
        ticker.tick().await;
        let (http, url, sent, body) = (http.clone(), format!("{base}/hook_slinger/"), sent.clone(), job(0));
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            if let Ok(r) = http.post(url).header("Authorization", format!("Token {TOKEN}")).json(&body).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if let Some(id) = v["job_id"].as_str() {
                        sent.lock().unwrap().push((t0, id.to_owned()));
                    }
                }
            }
        }));
    }
    futures::future::join_all(tasks).await;
    wait_count(sink, steady as u64, Duration::from_secs(60)).await?;
    let mut lat: Vec<f64> = {
        let seen = sink.seen.lock().unwrap();
        let sent = sent.lock().unwrap();
        sent.iter().filter_map(|(t0, id)| seen.get(id).map(|t| (*t - *t0).as_secs_f64() * 1000.0)).collect()
    };
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    report.put(
        "POST-to-delivery at a steady 500/s, 1 worker (p50, p99)",
        format!("p50 {:.1} ms  p99 {:.1} ms", percentile(&lat, 0.5), percentile(&lat, 0.99)),
    );
    for (_, mut c) in procs.children.drain(1..) {
        let _ = c.kill();
        let _ = c.wait();
    }

    // 5. Drain a backlog queued before any worker starts.
    flush(redis_url).await?;
    sink.count.store(0, Ordering::Relaxed);
    let batch_body = |_: usize| json!({"jobs": (0..1000).map(job).collect::<Vec<_>>()});
    let _ = post_many(http, &format!("{base}/hook_slinger/batch"), backlog / 1000, 4, batch_body, true).await;
    let started = Instant::now();
    procs.add("worker", env.spawn("hook-slinger-worker", &[])?);
    let done = wait_count(sink, backlog as u64, Duration::from_secs(600)).await?;
    report.put(
        &format!("drain: {backlog} queued jobs, 1 worker (deliveries/s)"),
        format!("{:.0}", backlog as f64 / (done - started).as_secs_f64()),
    );
    let pid = procs.children.last().unwrap().1.id();
    report.put("worker peak RSS draining (MiB)", format!("{:.1}", rss_kib(pid, "VmHWM:") as f64 / 1024.0));
    procs.stop("worker");
    Ok(())
}
