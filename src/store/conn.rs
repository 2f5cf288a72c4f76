//! The one Redis connection type every process uses, to a single Redis or
//! to a Redis Cluster (`REDIS_CLUSTER`).
//!
//! [`RedisConn`] implements redis's `aio::ConnectionLike`, so scripts
//! (`Script::invoke_async`), pipelines and apalis-redis's
//! `RedisStorage<Args, Conn>` run over either kind unchanged. Both kinds are
//! lazy and reconnect by themselves, so a process can start before Redis
//! does, and both bound every command by `REDIS_TIMEOUT`.

use std::time::Duration;

use redis::{
    aio::{ConnectionLike, ConnectionManager},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
    Cmd, Pipeline, RedisFuture, Value,
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

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
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
