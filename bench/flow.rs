//! `BENCH_ONLY=flow` (and a section of the whole run, after fan-out):
//! throughput to 1,000 endpoints of which 10% are dead, one worker. A dead
//! endpoint answers 500 after `BENCH_DEAD_DELAY_MS` (default 3,000 ms), so
//! without per-endpoint flow control its attempts hold the worker's slots
//! and the healthy 90% wait behind them.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::Context;
use poem::{handler, http::StatusCode, listener::Acceptor, listener::Listener, web::Data, EndpointExt, Route, Server};
use serde_json::json;

use crate::{flush, percentile, post_many, start_sink, wait_count, Env, Procs, RedisCost, Report, Sink};

const ENDPOINTS: usize = 1_000;
/// Every `DEAD_EVERY`th endpoint is dead; spread out, not in one block, so
/// the dead deliveries mix with the healthy ones in the worker's queue.
const DEAD_EVERY: usize = 10;
const TENANT: &str = "bench-flow";

/// Counts the hit, waits, then fails.
#[handler]
async fn fail_slowly(sink: Data<&Arc<Sink>>, delay: Data<&Duration>) -> StatusCode {
    sink.count.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(*delay.0).await;
    StatusCode::INTERNAL_SERVER_ERROR
}

/// Like `start_sink`, but every request counts into `sink` and is answered
/// 500 after `delay`: a receiver that is down but still accepts connections
/// (the slow kind of dead, which costs the sender the most).
async fn start_dead_sink(sink: Arc<Sink>, delay: Duration) -> anyhow::Result<String> {
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().context("dead receiver addr")?;
    let route = Route::new().at("/*path", poem::post(fail_slowly)).data(sink).data(delay);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(route));
    Ok(format!("http://{addr}/dead"))
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The flow rows. Expects the app running.
pub async fn run(
    env: &Env,
    http: &reqwest::Client,
    base: &str,
    procs: &mut Procs,
    report: &mut Report,
) -> anyhow::Result<()> {
    let events = env_number("BENCH_FLOW_EVENTS", 20) as usize;
    let delay = Duration::from_millis(env_number("BENCH_DEAD_DELAY_MS", 3_000));
    let healthy = Arc::new(Sink::default());
    let dead = Arc::new(Sink::default());
    let ok_url = start_sink(healthy.clone()).await?;
    let dead_url = start_dead_sink(dead.clone(), delay).await?;
    flush(&env.redis_url).await?;

    // `?ep=n` makes every URL distinct, so nothing can share state by URL.
    let endpoint = |i: usize| {
        let url = if i % DEAD_EVERY == DEAD_EVERY - 1 { &dead_url } else { &ok_url };
        json!({"url": format!("{url}?ep={i}"), "event_types": ["order.paid"]})
    };
    let (_, answers) =
        post_many(http, &format!("{base}/api/v1/tenants/{TENANT}/endpoints"), ENDPOINTS, 32, endpoint, true).await;
    let ok = answers.iter().filter(|(_, v)| !v.is_null()).count();
    anyhow::ensure!(ok == ENDPOINTS, "only {ok} of {ENDPOINTS} endpoints registered");
    let per_event = ENDPOINTS - ENDPOINTS / DEAD_EVERY;
    let deliveries = events * per_event;

    // Two retries a second apart: the dead deliveries come back a little
    // while the healthy ones are still being sent.
    let extra = [("WORKER_CONCURRENCY", "64"), ("MAX_RETRIES", "2"), ("INTERVAL", "1")];
    let first = procs.children.len();
    procs.add("worker", env.spawn("hook-slinger-worker", &extra)?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = RedisCost::read(env.redis_pid, &env.redis_url).await?;
    let started = Instant::now();
    let event =
        |_: usize| json!({"event_type": "order.paid", "payload": {"order": 42, "amount": 4200, "currency": "EUR"}});
    let (posted, answers) =
        post_many(http, &format!("{base}/api/v1/tenants/{TENANT}/events"), events, 64, event, true).await;
    // A refused event would otherwise show as a wait_count timeout.
    let accepted = answers.iter().filter(|(_, v)| !v.is_null()).count();
    anyhow::ensure!(accepted == events, "only {accepted} of {events} events accepted");
    let done = wait_count(&healthy, deliveries as u64, Duration::from_secs(900)).await?;
    let dead_hits = dead.count.load(Ordering::Relaxed);
    let secs = (done - started).as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = RedisCost::read(env.redis_pid, &env.redis_url).await?;
    for (_, mut c) in procs.children.drain(first..) {
        let _ = c.kill();
        let _ = c.wait();
    }

    // The sink keeps each delivery's arrival by job id but not its event,
    // so latency is measured from the burst's start: every event is POSTed
    // at once, within the accept p99 below.
    let mut lat: Vec<f64> =
        healthy.seen.lock().unwrap().values().map(|t| (*t - started).as_secs_f64() * 1000.0).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let (cpu, cmds) = before.per_job(&after, deliveries);
    before.print_breakdown(&after, deliveries);
    report.put(
        "flow: 1,000 endpoints, 10% dead (healthy deliveries/s)",
        format!("{:.0}  ({events} events, {deliveries} healthy in {secs:.1} s)", deliveries as f64 / secs),
    );
    report.put(
        "flow: POST burst to healthy delivery, 10% dead (p50, p99)",
        format!(
            "p50 {:.0} ms  p99 {:.0} ms  (accept p99 {:.1} ms)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            posted.p99_ms
        ),
    );
    report.put(
        "flow: dead receiver hits by the last healthy delivery",
        format!(
            "{dead_hits}  (of {} first attempts, {} ms each)",
            events * (ENDPOINTS / DEAD_EVERY),
            delay.as_millis()
        ),
    );
    report.put("Redis per healthy delivery, 10% dead (CPU µs, commands)", format!("{cpu:.1} µs  {cmds:.1} commands"));
    flush(&env.redis_url).await
}
