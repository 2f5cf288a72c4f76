//! The one Redis connection type every process uses, to a single Redis or
//! to a Redis Cluster (`REDIS_CLUSTER`).
//!
//! [`RedisConn`] implements redis's `aio::ConnectionLike`, so scripts
//! (`Script::invoke_async`), pipelines and apalis-redis's
//! `RedisStorage<Args, Conn>` run over either kind unchanged. Both kinds are
//! lazy and reconnect by themselves, so a process can start before Redis
//! does, and both bound every command by `REDIS_TIMEOUT`.
//!
//! On a cluster, one apalis-redis 1.0.0 script cannot run as written and is
//! swapped for ours on its way out (APALIS.md #12, see
//! [`apalis_register_worker`]).

use std::{sync::LazyLock, time::Duration};

use redis::{
    aio::{ConnectionLike, ConnectionManager},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
    Arg, Cmd, Pipeline, RedisFuture, Script, ScriptInvocation, Value,
};

use crate::config::RedisSettings;

/// A cheap-to-clone handle on Redis: clones share one multiplexed
/// connection (per node, for a cluster).
#[derive(Clone)]
pub enum RedisConn {
    /// One Redis server (`REDIS_CLUSTER=false`).
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the master of their key's slot, and
    /// `MOVED`/`ASK` redirections and failovers are followed by the client.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

/// A connection to the Redis (or the cluster) in `REDIS_URL`, with
/// `REDIS_TIMEOUT` as response and connection timeout: the redis crate's
/// 500 ms default is fatal under load (apalis-redis issue #76,
/// APALIS.md #6). Lazy and reconnecting: a process starts even while Redis
/// is down (the app answers 503 until it is back), and this fails only on a
/// malformed URL.
pub fn connect(settings: &RedisSettings) -> Result<RedisConn, redis::RedisError> {
    if settings.cluster {
        let client = ClusterClientBuilder::new(settings.seeds())
            .connection_timeout(settings.response_timeout)
            .response_timeout(settings.response_timeout)
            // Redirections during a failover or resharding are retried
            // quickly; the whole command, retries included, still has
            // REDIS_TIMEOUT (the builder's overall timeout defaults to the
            // response timeout).
            .retries(6)
            .min_retry_wait(50)
            .max_retry_wait(1_000)
            .build()?;
        // The builder's timeouts are replaced by this config's when the
        // connection is made, so they are given again.
        let config = ClusterConfig::new()
            .set_connection_timeout(settings.response_timeout)
            .set_response_timeout(settings.response_timeout);
        return Ok(RedisConn::Cluster(client.get_pending_async_connection_with_config(config)));
    }
    let client = redis::Client::open(settings.url.as_str())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(settings.response_timeout))
        .set_connection_timeout(Some(settings.response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    Ok(RedisConn::Single(client.get_connection_manager_lazy(config)?))
}

/// SHA1 of apalis-redis 1.0.0's `lua/register_worker.lua`: `RedisStorage`
/// runs it with `Script::invoke_async`, i.e. as `EVALSHA <this>`.
const APALIS_REGISTER_WORKER_SHA1: &[u8] = b"0d5fbce91e1dcff1121ece41f7169da3c0e39194";

static REGISTER_WORKER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("conn/apalis_register_worker.lua")));

/// WORKAROUND(apalis-redis 1.0.0, APALIS.md #12): apalis's worker
/// registration script also writes the global key `core:apalis:queues:list`,
/// which is not among its KEYS and, on a cluster, lives on whichever master
/// serves its slot; a script cannot reach a key on another node, so every
/// worker failed at start. On a cluster, that one EVALSHA is replaced by the
/// same script without the global write (`conn/apalis_register_worker.lua`),
/// with the same KEYS and ARGV, loaded on a NOSCRIPT as any script is.
/// Returns `None` for every other command. Test:
/// `cluster::apalis::apalis_worker_consumes_and_acks_on_a_cluster` (it
/// also fails if an upgrade changes apalis's script, and so its SHA1).
fn apalis_register_worker(cmd: &Cmd) -> Option<ScriptInvocation<'static>> {
    let mut args = cmd.args_iter().map(|a| match a {
        Arg::Simple(bytes) => bytes,
        _ => &[],
    });
    if !args.next()?.eq_ignore_ascii_case(b"EVALSHA") || args.next()? != APALIS_REGISTER_WORKER_SHA1 {
        return None;
    }
    let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
    let mut invocation = REGISTER_WORKER.prepare_invoke();
    for (i, arg) in args.enumerate() {
        if i < keys {
            invocation.key(arg);
        } else {
            invocation.arg(arg);
        }
    }
    Some(invocation)
}

impl RedisConn {
    /// `WAIT replicas timeout` on the master that holds `key`: blocks until
    /// the writes made so far over this connection (to that master) have
    /// reached `replicas` replicas, or `timeout` passed. Returns how many
    /// replicas have them. (`WAIT` names no key, so on a cluster it is
    /// routed by hand to the master of `key`'s slot.)
    pub async fn wait_replicas(&self, key: &str, replicas: u32, timeout: Duration) -> Result<u32, redis::RedisError> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout.as_millis() as u64);
        match self {
            Self::Single(c) => cmd.query_async(&mut c.clone()).await,
            Self::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(key, SlotAddr::Master);
                let value = c
                    .clone()
                    .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => match apalis_register_worker(cmd) {
                Some(ours) => Box::pin(async move { ours.invoke_async(c).await }),
                None => c.req_packed_command(cmd),
            },
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_apalis_register_worker_is_replaced_keeping_keys_and_args() {
        let sha = std::str::from_utf8(APALIS_REGISTER_WORKER_SHA1).unwrap();
        let mut apalis = redis::cmd("EVALSHA");
        apalis.arg(sha).arg(2).arg("q:{t}:workers").arg("q:{t}:workers:metadata:w").arg(17).arg("w");
        let ours = apalis_register_worker(&apalis).expect("replaced");
        let mut expected = REGISTER_WORKER.prepare_invoke();
        expected.key("q:{t}:workers").key("q:{t}:workers:metadata:w").arg(17).arg("w");
        assert_eq!(format!("{ours:?}"), format!("{expected:?}"));

        let mut other = redis::cmd("EVALSHA");
        other.arg("f053fd9b41b61a2d32b8b7d8dba3f1a96e3aa6e1").arg(1).arg("k");
        assert!(apalis_register_worker(&other).is_none());
        assert!(apalis_register_worker(redis::cmd("GET").arg(sha)).is_none());
    }
}
