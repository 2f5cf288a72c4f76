//! The harness: a real Redis Cluster on loopback. Its own file, so that the
//! chaos scenarios (`tests/chaos`) include it too (`#[path]`).

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hook_slinger::config::Settings;

/// Ports are taken from here, so that the cluster bus (port + 10,000)
/// stays below the kernel's ephemeral range (32768 and up), where an
/// outgoing connection could take it first.
const PORTS: std::ops::Range<u16> = 20_000..22_760;
const BUS_OFFSET: u16 = 10_000;
const NODES: usize = 6;
/// How long a master may be unreachable before its replica takes over:
/// short, so that failover tests take seconds (Redis's default is 15 s).
pub const NODE_TIMEOUT_MS: u64 = 1_000;

/// Six nodes: three masters with a replica each.
pub struct TestCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl TestCluster {
    /// Starts and joins a cluster; panics if that does not succeed within
    /// a minute (ports taken by someone else are retried with new ones).
    pub fn start() -> Self {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(why) if Instant::now() < deadline => eprintln!("test cluster: {why}; retrying on other ports"),
                Err(why) => panic!("could not start a test cluster: {why}"),
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cluster = Self { dir, nodes: Vec::new() };
        for port in free_ports(NODES) {
            let child = cluster.spawn_node(port)?;
            cluster.nodes.push(Node { port, child: Some(child) });
        }
        // Dropping `cluster` on an error kills whatever did start.
        for node in &mut cluster.nodes {
            let started = Instant::now();
            while !answers(node.port) {
                if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(format!("redis-server on port {} exited: {status}", node.port));
                }
                if started.elapsed() > Duration::from_secs(10) {
                    return Err(format!("redis-server on port {} did not answer", node.port));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            ));
        }
        let ok_by = Instant::now() + Duration::from_secs(30);
        // A replica that never synced with its master cannot take over
        // from it, so a failover test needs the links up too.
        while !(cluster.is_ok() && cluster.replicas_synced()) {
            if Instant::now() > ok_by {
                return Err("cluster_state did not become ok, with every replica synced, on every node".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    /// Runs the node on `port`; its `nodes.conf` (kept in the cluster's
    /// directory) tells a restarted node which cluster it belongs to.
    fn spawn_node(&self, port: u16) -> Result<Child, String> {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(self.dir.path().join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            // Replicas sync at once (the default waits 5 s for more
            // replicas), so a master can be killed right after start.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server is installed (make test installs it): {e}"))
    }

    /// Starts a killed node again, on its port and with its cluster
    /// config: a master that lost its slots in a failover comes back as a
    /// replica of the node that took over. See [`Self::wait_rejoined`].
    pub fn restart_node(&mut self, port: u16) {
        let child = self.spawn_node(port).expect("the killed node starts again");
        let node = self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster");
        assert!(node.child.is_none(), "{port} is running");
        node.child = Some(child);
    }

    /// Waits (up to 30 s) until every node runs, every node says
    /// `cluster_state:ok`, there are three masters, and every replica's
    /// link to its master is up: the cluster is whole again after
    /// [`Self::restart_node`]. Async, like [`Self::wait_failover`].
    pub async fn wait_rejoined(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let whole = self.live_ports().len() == NODES && self.masters().len() == 3;
            if whole && self.is_ok() && self.synced_replicas() == NODES - 3 {
                return;
            }
            assert!(Instant::now() < deadline, "the restarted node did not rejoin within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's port, killed ones included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.port).collect()
    }

    /// `REDIS_URL` for `REDIS_CLUSTER=true`: every node, comma-separated.
    pub fn seeds_url(&self) -> String {
        self.ports().iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Settings for one test against this cluster: [`crate::helpers::settings`]
    /// with `REDIS_CLUSTER=true`, the seeds, and a queue of its own (split
    /// into `QUEUE_SHARDS` shards, 16 unless `extra` says otherwise).
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let queue = format!("test-{}", uuid::Uuid::new_v4().simple());
        let seeds = self.seeds_url();
        let mut vars = vec![("REDIS_CLUSTER", "true"), ("REDIS_URL", seeds.as_str()), ("QUEUE_NAME", queue.as_str())];
        vars.extend_from_slice(extra);
        crate::helpers::settings(&vars)
    }

    /// The masters' ports, from `CLUSTER NODES` on a live node: nodes that
    /// serve slots and are not flagged as failing.
    pub fn masters(&self) -> Vec<u16> {
        self.cluster_nodes()
            .into_iter()
            .filter(|n| n.serving())
            .map(|n| n.port)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The port of the master that serves `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = self.query(|c| redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(c));
        self.cluster_nodes()
            .into_iter()
            .find(|n| n.serving() && n.slots.iter().any(|r| r.contains(&slot)))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
            .port
    }

    /// Kills a master with SIGKILL (no goodbye to the cluster); its replica
    /// is promoted after [`NODE_TIMEOUT_MS`]: see [`Self::wait_failover`].
    pub fn kill_master(&mut self, port: u16) {
        assert!(self.masters().contains(&port), "{port} is not a master");
        let node = self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (up to 30 s) until the cluster has recovered from killed
    /// nodes: no serving master is a killed one and every live node says
    /// `cluster_state:ok`. Async, so a test's workers keep running meanwhile.
    pub async fn wait_failover(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let live = self.live_ports();
            let masters = self.masters();
            if masters.len() == 3 && masters.iter().all(|m| live.contains(m)) && self.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "no failover within 30 s: masters {masters:?}, live {live:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether every live node says `cluster_state:ok`.
    fn is_ok(&self) -> bool {
        self.live_ports().into_iter().all(|port| {
            node_query(port, |c| redis::cmd("CLUSTER").arg("INFO").query::<String>(c))
                .is_ok_and(|info| info.lines().any(|l| l.trim() == "cluster_state:ok"))
        })
    }

    /// Whether every live replica's link to its master is up.
    fn replicas_synced(&self) -> bool {
        self.live_ports().into_iter().all(|port| {
            node_query(port, |c| redis::cmd("INFO").arg("replication").query::<String>(c)).is_ok_and(|info| {
                !info.lines().any(|l| l.trim() == "role:slave")
                    || info.lines().any(|l| l.trim() == "master_link_status:up")
            })
        })
    }

    /// How many live nodes are replicas with their link to a master up.
    fn synced_replicas(&self) -> usize {
        self.live_ports()
            .into_iter()
            .filter(|port| {
                node_query(*port, |c| redis::cmd("INFO").arg("replication").query::<String>(c)).is_ok_and(|info| {
                    info.lines().any(|l| l.trim() == "role:slave")
                        && info.lines().any(|l| l.trim() == "master_link_status:up")
                })
            })
            .count()
    }

    fn cluster_nodes(&self) -> Vec<NodeLine> {
        let text: String = self.query(|c| redis::cmd("CLUSTER").arg("NODES").query(c));
        text.lines().filter_map(NodeLine::parse).collect()
    }

    /// Runs a query on the first live node that answers.
    fn query<T>(&self, q: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> T {
        let mut last = None;
        for port in self.live_ports() {
            match node_query(port, &q) {
                Ok(v) => return v,
                Err(e) => last = Some(e),
            }
        }
        panic!("no node of the test cluster answers: {last:?}")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    port: u16,
    flags: String,
    slots: Vec<std::ops::RangeInclusive<u16>>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
        let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
        let slots = fields
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                None => s.parse().ok().map(|a| a..=a),
            })
            .collect();
        Some(Self { port, flags: fields.get(2)?.to_string(), slots })
    }

    fn serving(&self) -> bool {
        self.flags.split(',').any(|f| f == "master")
            && !self.flags.split(',').any(|f| f == "fail" || f == "fail?")
            && !self.slots.is_empty()
    }
}

pub fn node_query<T>(port: u16, q: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    q(&mut conn)
}

fn answers(port: u16) -> bool {
    node_query(port, |c| redis::cmd("PING").query::<String>(c)).is_ok()
}

/// `n` ports whose bus port (+10,000) is free too. Another test may take
/// one before its redis-server binds it; [`TestCluster::start`] retries.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < n {
        let port = rand::random_range(PORTS);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + BUS_OFFSET) {
            ports.insert(port);
        }
    }
    ports.into_iter().collect()
}
