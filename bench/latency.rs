//! POST-to-delivery latency at steady rates (issue #18).
//!
//! The load generator and the receiver run in processes of their own (this
//! binary re-executed as `receiver` and `load`), so neither shares a Tokio
//! runtime with the other or with the thing measured. Each payload carries
//! its send time in microseconds since the Unix epoch; the receiver
//! subtracts it from its arrival time. Both read the same system clock.

use std::{
    collections::HashSet,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use poem::{get, handler, listener::TcpListener, post, web::Data, web::Json, EndpointExt, Request, Route, Server};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{free_port, percentile, Env, Procs, Report, TOKEN};

/// The steady rates measured, in jobs per second.
const RATES: [u32; 3] = [50, 200, 500];

/// Seconds per rate unless `BENCH_LATENCY_SECS` says otherwise.
const DEFAULT_SECS: u64 = 60;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Runs one worker against the app at `base` at each of [`RATES`] and adds
/// p50, p90, p99 and max to `report`. Expects the app running and no
/// worker.
pub async fn run(env: &Env, base: &str, procs: &mut Procs, report: &mut Report) -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_LATENCY_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_SECS);
    let me = std::env::current_exe()?;
    let http = reqwest::Client::new();

    let rx_port = free_port();
    let rx = format!("http://127.0.0.1:{rx_port}");
    procs.add("receiver", Command::new(&me).args(["receiver", "--port", &rx_port.to_string()]).spawn()?);
    wait_answers(&http, &format!("{rx}/count")).await?;

    crate::flush(&env.redis_url).await?;
    procs.add("worker", env.spawn("hook-slinger-worker", &[])?);
    tokio::time::sleep(Duration::from_millis(500)).await;

    for rate in RATES {
        http.post(format!("{rx}/reset")).send().await?.error_for_status()?;
        let sent = load(&me, base, &format!("{rx}/hook"), rate, secs).await?;
        let delivered = wait_delivered(&http, &rx, sent.accepted, Duration::from_secs(60)).await;
        let mut micros: Vec<u64> = http.get(format!("{rx}/latencies")).send().await?.json().await?;
        micros.sort_unstable();
        let ms: Vec<f64> = micros.iter().map(|us| *us as f64 / 1000.0).collect();
        report.put(
            &format!("POST-to-delivery at a steady {rate}/s for {secs} s, 1 worker (p50, p90, p99, max)"),
            format!(
                "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({delivered} of {} delivered, {} refused)",
                percentile(&ms, 0.5),
                percentile(&ms, 0.9),
                percentile(&ms, 0.99),
                ms.last().copied().unwrap_or(0.0),
                sent.accepted,
                sent.failed,
            ),
        );
    }
    procs.stop("worker");
    procs.stop("receiver");
    Ok(())
}

/// What a `load` process reports on its stdout when done.
#[derive(Serialize, Deserialize)]
struct Sent {
    accepted: u64,
    failed: u64,
}

/// Runs a `load` process to completion.
async fn load(me: &Path, app: &str, to_url: &str, rate: u32, secs: u64) -> anyhow::Result<Sent> {
    let mut cmd = Command::new(me);
    cmd.args(["load", "--app", app, "--to-url", to_url, "--rate", &rate.to_string(), "--secs", &secs.to_string()]);
    cmd.stdout(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    if !out.status.success() {
        bail!("load generator failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("load generator's report")
}

async fn wait_answers(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{url} did not answer")
}

/// Waits until the receiver has `n` deliveries or `within` passed; returns
/// how many it has.
async fn wait_delivered(http: &reqwest::Client, rx: &str, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let got = match http.get(format!("{rx}/count")).send().await {
            Ok(r) => r.json::<u64>().await.unwrap_or(0),
            Err(_) => 0,
        };
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `load` mode: POSTs `rate` jobs a second for `secs` seconds on a fixed
/// schedule, without waiting for answers (open loop), then prints a [`Sent`]
/// as JSON.
pub async fn load_main(app: String, to_url: String, rate: u32, secs: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let url = format!("{app}/hook_slinger/");
    let (accepted, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut schedule = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..u64::from(rate) * secs {
        schedule.tick().await;
        let (http, url, accepted, failed) = (http.clone(), url.clone(), accepted.clone(), failed.clone());
        let body = json!({"to_url": to_url, "payload": {"event": "latency.probe", "sent_us": now_us()}});
        posts.spawn(async move {
            let resp = http.post(url).header("Authorization", format!("Token {TOKEN}")).json(&body).send().await;
            let counter = if resp.is_ok_and(|r| r.status().is_success()) { accepted } else { failed };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
    posts.join_all().await;
    let sent = Sent { accepted: accepted.load(Ordering::Relaxed), failed: failed.load(Ordering::Relaxed) };
    println!("{}", serde_json::to_string(&sent)?);
    Ok(())
}

/// Latencies in microseconds, one per job (redeliveries ignored).
#[derive(Default)]
struct Arrivals {
    seen: HashSet<String>,
    micros: Vec<u64>,
}

#[handler]
fn arrive(req: &Request, Json(body): Json<Value>, state: Data<&Arc<Mutex<Arrivals>>>) {
    let at = now_us();
    let id = req.header("x-hook-slinger-job-id").unwrap_or_default().to_owned();
    let Some(sent) = body["sent_us"].as_u64() else { return };
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    if state.seen.insert(id) {
        state.micros.push(at.saturating_sub(sent));
    }
}

#[handler]
fn count(state: Data<&Arc<Mutex<Arrivals>>>) -> Json<u64> {
    Json(state.lock().unwrap_or_else(|e| e.into_inner()).micros.len() as u64)
}

#[handler]
fn latencies(state: Data<&Arc<Mutex<Arrivals>>>) -> Json<Vec<u64>> {
    Json(state.lock().unwrap_or_else(|e| e.into_inner()).micros.clone())
}

#[handler]
fn reset(state: Data<&Arc<Mutex<Arrivals>>>) {
    *state.lock().unwrap_or_else(|e| e.into_inner()) = Arrivals::default();
}

/// The `receiver` mode: answers 200 to every POST to `/hook` and records its
/// latency; `GET /count`, `GET /latencies` (µs) and `POST /reset` for the
/// orchestrator. Runs until killed.
pub async fn receiver_main(port: u16) -> anyhow::Result<()> {
    let state = Arc::new(Mutex::new(Arrivals::default()));
    let app = Route::new()
        .at("/hook", post(arrive))
        .at("/count", get(count))
        .at("/latencies", get(latencies))
        .at("/reset", post(reset))
        .data(state);
    Server::new(TcpListener::bind(("127.0.0.1", port))).run(app).await?;
    Ok(())
}
