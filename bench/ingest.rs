//! `BENCH_ONLY=ingest` (and a section of the whole run, after fan-out):
//! signed GitHub requests to a source, each verified, stored byte for byte
//! and delivered to one endpoint, end to end with one worker; the same
//! shape as the fan-out row for one endpoint, so the two compare.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{flush, percentile, start_sink, wait_count, Env, Procs, RedisCost, Report, Sink, TOKEN};

/// Requests in the row.
const REQUESTS: usize = 20_000;
/// The source's secret.
const SECRET: &str = "bench-github-secret";

/// `sha256=<hex>` of `body`, as GitHub signs.
fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The ingest row.
pub async fn run(
    env: &Env,
    http: &reqwest::Client,
    base: &str,
    procs: &mut Procs,
    report: &mut Report,
) -> anyhow::Result<()> {
    flush(&env.redis_url).await?;
    let sink = Arc::new(Sink::default());
    let rx_url = start_sink(sink.clone()).await?;
    let auth = format!("Token {TOKEN}");
    let tenant = format!("{base}/api/v1/tenants/bench-ingest");
    let ep = http
        .post(format!("{tenant}/endpoints"))
        .header("Authorization", &auth)
        .json(&json!({"url": rx_url}))
        .send()
        .await?;
    anyhow::ensure!(ep.status().as_u16() == 201, "endpoint: {}", ep.status());
    let source: Value = http
        .post(format!("{tenant}/sources"))
        .header("Authorization", &auth)
        .json(&json!({"name": "bench", "verify": {"scheme": "github", "secret": SECRET},
                      "event_type_from": {"header": "X-GitHub-Event"}, "rate_limit": 100_000}))
        .send()
        .await?
        .json()
        .await?;
    let url = format!("{base}{}", source["ingest_url"].as_str().unwrap_or_default());
    // Bodies are made and signed before the clock starts: the row measures
    // us, not the load generator.
    let requests: Vec<(Vec<u8>, String)> = (0..REQUESTS)
        .map(|i| {
            let body = json!({"ref": "refs/heads/main", "after": format!("{i:040x}"),
                              "repository": {"full_name": "acme/shop"}, "pusher": {"name": "bench"},
                              "commits": [{"id": format!("{i:040x}"), "message": "Fix typo in the README"}]})
            .to_string()
            .into_bytes();
            let sig = sign(&body);
            (body, sig)
        })
        .collect();
    procs.add("worker", env.spawn("hook-slinger-worker", &[])?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = RedisCost::read(env.redis_pid, &env.redis_url).await?;
    let started = Instant::now();
    let results: Vec<(f64, bool)> = futures::stream::iter(requests.into_iter().enumerate())
        .map(|(i, (body, sig))| {
            let req = http
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", format!("bench-{i}"))
                .header("X-Hub-Signature-256", sig)
                .body(body);
            async move {
                let t0 = Instant::now();
                let ok = matches!(req.send().await, Ok(r) if r.status().as_u16() == 202);
                (t0.elapsed().as_secs_f64() * 1000.0, ok)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let accepted_in = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.1).count();
    anyhow::ensure!(ok == REQUESTS, "only {ok} of {REQUESTS} ingests accepted");
    let done = wait_count(&sink, REQUESTS as u64, Duration::from_secs(300)).await?;
    let secs = (done - started).as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = RedisCost::read(env.redis_pid, &env.redis_url).await?;
    let (cpu, cmds) = before.per_job(&after, REQUESTS);
    before.print_breakdown(&after, REQUESTS);
    let mut lat: Vec<f64> = results.iter().map(|r| r.0).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    report.put(
        &format!("ingest: {REQUESTS} signed GitHub requests to 1 endpoint, 1 worker (accepted/s, delivered/s)"),
        format!(
            "{:.0} accepted/s  {:.0} delivered/s  (accept p50 {:.2} ms, p99 {:.2} ms)",
            REQUESTS as f64 / accepted_in,
            REQUESTS as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        ),
    );
    report.put("Redis per ingested request, delivered (CPU µs, commands)", format!("{cpu:.1} µs  {cmds:.1} commands"));
    procs.stop("worker");
    sink.count.store(0, Ordering::Relaxed);
    flush(&env.redis_url).await
}
