//! `BENCH_ONLY=fanout` (and a section of the whole run): events fanned out
//! to 1, 10 and 1,000 endpoints, end to end with one worker, and the POST
//! latency of an event for 1,000 endpoints.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{flush, percentile, post_many, start_sink, wait_count, Env, Procs, RedisCost, Report, Sink, TOKEN};

/// Deliveries per row: enough to dwarf start-up, few enough to finish fast.
const DELIVERIES: usize = 20_000;

/// Registers `k` endpoints of `tenant`, all pointing at `url`.
async fn register(http: &reqwest::Client, base: &str, tenant: &str, url: &str, k: usize) -> anyhow::Result<()> {
    let (timing, answers) = post_many(
        http,
        &format!("{base}/api/v1/tenants/{tenant}/endpoints"),
        k,
        32,
        |_| json!({"url": url, "event_types": ["order.paid"]}),
        true,
    )
    .await;
    let ok = answers.iter().filter(|(_, v)| !v.is_null()).count();
    anyhow::ensure!(ok == k, "only {ok} of {k} endpoints registered ({:.0}/s)", timing.rate);
    Ok(())
}

/// The fan-out rows.
pub async fn run(
    env: &Env,
    http: &reqwest::Client,
    base: &str,
    procs: &mut Procs,
    report: &mut Report,
) -> anyhow::Result<()> {
    let sink = Arc::new(Sink::default());
    let rx_url = start_sink(sink.clone()).await?;
    let event =
        |_: usize| json!({"event_type": "order.paid", "payload": {"order": 42, "amount": 4200, "currency": "EUR"}});
    for k in [1usize, 10, 1_000] {
        flush(&env.redis_url).await?;
        sink.count.store(0, Ordering::Relaxed);
        let tenant = format!("bench-{k}");
        register(http, base, &tenant, &rx_url, k).await?;
        let events = (DELIVERIES / k).max(20);
        let deliveries = events * k;
        let first = procs.children.len();
        procs.add("worker", env.spawn("hook-slinger-worker", &[])?);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = RedisCost::read(env.redis_pid, &env.redis_url).await?;
        let started = Instant::now();
        let url = format!("{base}/api/v1/tenants/{tenant}/events");
        let (posted, _) = post_many(http, &url, events, 64, event, true).await;
        let done = wait_count(&sink, deliveries as u64, Duration::from_secs(300)).await?;
        let secs = (done - started).as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = RedisCost::read(env.redis_pid, &env.redis_url).await?;
        let (cpu, cmds) = before.per_job(&after, deliveries);
        before.print_breakdown(&after, deliveries);
        report.put(
            &format!("fan-out: {events} events x {k} endpoint(s), 1 worker (events/s, deliveries/s)"),
            format!(
                "{:.0} events/s  {:.0} deliveries/s  (accept p99 {:.2} ms)",
                events as f64 / secs,
                deliveries as f64 / secs,
                posted.p99_ms
            ),
        );
        report.put(
            &format!("Redis per delivery, {k} endpoint(s) (CPU µs, commands)"),
            format!("{cpu:.1} µs  {cmds:.1} commands"),
        );
        for (_, mut c) in procs.children.drain(first..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    // The request path alone: events for 1,000 endpoints, one at a time,
    // with no worker expanding them.
    let url = format!("{base}/api/v1/tenants/bench-1000/events");
    let mut lat = Vec::new();
    for i in 0..300 {
        let t0 = Instant::now();
        let resp = http.post(&url).header("Authorization", format!("Token {TOKEN}")).json(&event(i)).send().await?;
        anyhow::ensure!(resp.status().as_u16() == 202, "event POST answered {}", resp.status());
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    report.put(
        "POST of an event for 1,000 endpoints, 300 in a row (p50, p99)",
        format!("p50 {:.2} ms  p99 {:.2} ms", percentile(&lat, 0.5), percentile(&lat, 0.99)),
    );
    flush(&env.redis_url).await
}
