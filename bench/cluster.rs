//! Capacity on a Redis Cluster (issue #12): the same end-to-end run as the
//! single-Redis one, against clusters of 1, 2 and 3 masters (no replicas)
//! on this machine, with `QUEUE_SHARDS` at its cluster default (16). The
//! shards spread over the masters by their hash tags' slots; what a master
//! carries is its shards' share of the load. On two cores the total cannot
//! grow with masters; the figure to read is Redis CPU per job (flat when
//! nothing crosses shards) and the throughput per master.

use std::{
    process::{Child, Command, Stdio},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::json;

use crate::{free_port, post_many, wait_count, wait_ready, Env, Procs, RedisCost, Report, Sink};

/// Hash slots in a Redis Cluster.
const SLOTS: u32 = 16_384;

/// A cluster of `masters` masters on loopback, slots split evenly.
struct Cluster {
    nodes: Vec<(u16, Child)>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port whose cluster bus port (+10000) is free too, below 55000.
fn cluster_port() -> u16 {
    loop {
        let p = 23_000 + rand::random_range(0..2_000u16);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
}

async fn cmd<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> anyhow::Result<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    Ok(c.query_async(&mut conn).await?)
}

impl Cluster {
    /// `redis-cli --cluster create` wants three masters at least, so the
    /// slots are assigned and the nodes introduced by hand.
    async fn start(masters: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hs-bench-cluster-{}-{masters}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self { nodes: Vec::new(), dir: dir.clone() };
        for _ in 0..masters {
            let port = cluster_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .spawn()
                .context("redis-server must be installed")?;
            cluster.nodes.push((port, child));
        }
        for (port, _) in &cluster.nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if Instant::now() > deadline {
                    bail!("cluster node {port} did not start");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let per = SLOTS / masters as u32;
        for (i, (port, _)) in cluster.nodes.iter().enumerate() {
            let first = i as u32 * per;
            let last = if i + 1 == masters { SLOTS - 1 } else { first + per - 1 };
            let () = cmd(*port, &["CLUSTER", "ADDSLOTSRANGE", &first.to_string(), &last.to_string()]).await?;
        }
        let first = cluster.nodes[0].0;
        for (port, _) in &cluster.nodes[1..] {
            let () = cmd(first, &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()]).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ok = true;
            for (port, _) in &cluster.nodes {
                let info: String = cmd(*port, &["CLUSTER", "INFO"]).await?;
                let known = format!("cluster_known_nodes:{masters}");
                ok &= info.contains("cluster_state:ok") && info.contains(&known);
            }
            if ok {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!("a cluster of {masters} masters did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn seeds(&self) -> String {
        self.nodes.iter().map(|(p, _)| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    async fn cost(&self) -> anyhow::Result<(f64, u64)> {
        let (mut cpu, mut commands) = (0.0, 0);
        for (port, child) in &self.nodes {
            let c = RedisCost::read(child.id(), &format!("redis://127.0.0.1:{port}")).await?;
            cpu += c.cpu_us;
            commands += c.commands;
        }
        Ok((cpu, commands))
    }
}

/// End to end with one worker on clusters of 1, 2 and 3 masters; adds the
/// rows to `report`.
pub async fn run(bin: &std::path::Path, report: &mut Report, ceiling: f64) -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let sink = Arc::new(Sink::default());
    let rx_url = crate::start_sink(sink.clone()).await?;
    let job =
        |_: usize| json!({"to_url": rx_url, "payload": {"event": "order.paid", "amount": 4200, "currency": "EUR"}});
    for masters in [1usize, 2, 3] {
        let cluster = Cluster::start(masters).await?;
        let seeds = cluster.seeds();
        let env = Env {
            bin: bin.to_path_buf(),
            redis_url: seeds.clone(),
            app_port: free_port(),
            queue: "bench".to_owned(),
            redis_pid: 0,
        };
        let base = format!("http://127.0.0.1:{}", env.app_port);
        let mut procs = Procs::default();
        let cluster_env = [("REDIS_CLUSTER", "true")];
        procs.add("app", env.spawn("hook-slinger-app", &cluster_env)?);
        wait_ready(&http, &base).await?;
        procs.add("worker", env.spawn("hook-slinger-worker", &cluster_env)?);
        tokio::time::sleep(Duration::from_millis(800)).await;
        sink.count.store(0, Ordering::Relaxed);
        let before = cluster.cost().await?;
        let started = Instant::now();
        let _ = post_many(&http, &format!("{base}/hook_slinger/"), n, 64, job, true).await;
        let done = wait_count(&sink, n as u64, Duration::from_secs(300)).await?;
        let rate = n as f64 / (done - started).as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = cluster.cost().await?;
        let cpu = (after.0 - before.0) / n as f64;
        let cmds = (after.1 - before.1) as f64 / n as f64;
        report.put(
            &format!("cluster, {masters} master(s), 16 shards, 1 worker: end to end (deliveries/s)"),
            format!(
                "{rate:.0} ({:.0} per master, {:.0}% of receiver ceiling); Redis {cpu:.1} µs  {cmds:.1} commands per job",
                rate / masters as f64,
                100.0 * rate / ceiling
            ),
        );
        drop(procs);
        drop(cluster);
    }
    Ok(())
}
