//! `RedisConn` over a real cluster: commands, pipelines and scripts reach
//! the master of their slot; wake-ups reach a worker subscribed anywhere.

use std::{sync::Arc, time::Duration};

use hook_slinger::{
    queue::wake,
    store::{self, RedisConn},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::TestCluster;

/// A key whose slot a given master serves, found by trying suffixes.
fn key_on(cluster: &TestCluster, master: u16, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{{k{i}}}"))
        .find(|k| cluster.master_of(k) == master)
        .expect("some key hashes to every master")
}

#[tokio::test]
async fn cluster_conn_routes_commands_pipelines_and_scripts_to_every_master() {
    let cluster = TestCluster::start();
    let s = cluster.settings(&[]);
    let mut conn = store::connect(&s.redis).unwrap();
    assert!(matches!(conn, RedisConn::Cluster(_)));
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let script = redis::Script::new("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])");
    for (i, master) in masters.iter().enumerate() {
        let key = key_on(&cluster, *master, "plain:");
        let () = redis::cmd("SET").arg(&key).arg(i).query_async(&mut conn).await.unwrap();
        let got: usize = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(got, i);
        // A pipeline of keys sharing the tag goes to one node.
        let (a, b): (usize, usize) =
            redis::pipe().incr(format!("{key}:a"), 1).incr(format!("{key}:b"), 2).query_async(&mut conn).await.unwrap();
        assert_eq!((a, b), (1, 2));
        let echoed: String = script.key(format!("{key}:s")).arg("hello").invoke_async(&mut conn).await.unwrap();
        assert_eq!(echoed, "hello");
    }
    // PING goes to every master; the answers agree.
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// `Script::invoke_async` sends EVALSHA to the key's master; a master that
/// has never seen the script answers NOSCRIPT, and the fallback (SCRIPT
/// LOAD, which the cluster client sends to every node, then EVALSHA again)
/// must work through the cluster client too.
#[tokio::test]
async fn evalsha_of_a_script_unknown_to_the_keys_master_falls_back_to_loading_it() {
    let cluster = TestCluster::start();
    let s = cluster.settings(&[]);
    let mut conn = store::connect(&s.redis).unwrap();
    let body = format!("return {{KEYS[1], '{}'}}", uuid::Uuid::new_v4());
    let script = redis::Script::new(&body);
    let masters = cluster.masters();
    // Loaded on the first master only, by hand.
    let sha: String = super::node_query(masters[0], |c| redis::cmd("SCRIPT").arg("LOAD").arg(&body).query(c)).unwrap();
    assert_eq!(sha, script.get_hash());
    for master in &masters[1..] {
        // The previous round's fallback loaded it everywhere.
        let () = super::node_query(*master, |c| redis::cmd("SCRIPT").arg("FLUSH").query(c)).unwrap();
        let known: Vec<bool> =
            super::node_query(*master, |c| redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query(c)).unwrap();
        assert_eq!(known, [false], "master {master} must not know the script yet");
        let key = key_on(&cluster, *master, "script:");
        let reply: Vec<String> = script.key(&key).invoke_async(&mut conn).await.unwrap();
        assert_eq!(reply[0], key);
        let known: Vec<bool> =
            super::node_query(*master, |c| redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query(c)).unwrap();
        assert_eq!(known, [true], "the fallback loaded it on master {master}");
    }
}

/// A PUBLISH reaches subscribers on every node of a cluster, so the wake
/// listener subscribes on one seed, skipping seeds that do not answer.
#[tokio::test]
async fn the_wake_listener_subscribes_on_the_first_seed_that_answers() {
    let cluster = TestCluster::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Nothing listens on `dead` once the listener above is dropped.
    let s = cluster.settings(&[("REDIS_URL", &format!("redis://127.0.0.1:{dead},{}", cluster.seeds_url()))]);
    let nodes = wake::nodes(&s.redis).unwrap();
    assert_eq!(nodes.len(), 7);
    let notify = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let listener = tokio::spawn(wake::listen(nodes, vec![(s.redis.queue.clone(), notify.clone())], stop.clone()));
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("subscribed on a live seed");

    // Published through the cluster connection, which sends it to the
    // channel's slot owner, wherever the listener is subscribed.
    let mut conn = store::connect(&s.redis).unwrap();
    let _: i64 = redis::cmd("PUBLISH").arg(wake::channel(&s.redis.queue)).arg(1).query_async(&mut conn).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("a wake-up from another node");
    stop.cancel();
    listener.await.unwrap();
}

/// The harness itself: a killed master's replica takes over, the cluster
/// connection follows it, and a wake listener subscribed on the killed node
/// moves to the next seed.
#[tokio::test]
async fn a_killed_master_is_replaced_and_the_connection_and_wake_ups_follow() {
    let mut cluster = TestCluster::start();
    let victim = cluster.masters()[0];
    // The victim first among the seeds: the listener subscribes there.
    let seeds = std::iter::once(victim)
        .chain(cluster.ports().into_iter().filter(|p| *p != victim))
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let s = cluster.settings(&[("REDIS_URL", &seeds)]);
    let mut conn = store::connect(&s.redis).unwrap();
    let notify = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let listener = tokio::spawn(wake::listen(
        wake::nodes(&s.redis).unwrap(),
        vec![(s.redis.queue.clone(), notify.clone())],
        stop.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("subscribed on the victim");
    let key = key_on(&cluster, victim, "failover:");
    let () = redis::cmd("SET").arg(&key).arg("before").query_async(&mut conn).await.unwrap();
    // Let the replica catch up before the master goes.
    let _: i64 = redis::cmd("WAIT").arg(1).arg(1000).query_async(&mut conn).await.unwrap_or(0);
    cluster.kill_master(victim);
    cluster.wait_failover().await;
    assert!(!cluster.masters().contains(&victim));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got: String = loop {
        match redis::cmd("GET").arg(&key).query_async(&mut conn).await {
            Ok(v) => break v,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("GET after failover: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the connection did not follow the failover: {e}"),
        }
    };
    assert_eq!(got, "before");

    // Resubscribed elsewhere (a signal per subscription), then woken by a
    // PUBLISH sent through the cluster connection.
    tokio::time::timeout(Duration::from_secs(10), notify.notified()).await.expect("resubscribed on another seed");
    let _: i64 = redis::cmd("PUBLISH").arg(wake::channel(&s.redis.queue)).arg(1).query_async(&mut conn).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("a wake-up after the failover");
    stop.cancel();
    listener.await.unwrap();
}
