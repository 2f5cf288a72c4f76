//! Waking idle workers the moment work arrives.
//!
//! An idle apalis worker looks for work only every `WORKER_POLL_INTERVAL_MS`
//! (and, without that, only at heartbeats: APALIS.md #8). Whoever puts work
//! on a shard's queue also publishes on that shard's channel
//! (`<shard queue>:hs:wake`); every worker listens on every shard's channel
//! and that shard's consumer fetches at once, so a job's wait is a round
//! trip, not a poll interval. Polling stays as the safety net for lost messages (pub/sub is
//! fire-and-forget) and for the time a subscription is reconnecting.
//!
//! On a Redis Cluster a PUBLISH reaches every node's subscribers, so a
//! worker subscribes on any one node: the first seed in `REDIS_URL` that
//! answers, moving on to the next whenever its node goes away.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RedisSettings;

/// The pub/sub channel for a queue.
pub fn channel(queue: &str) -> String {
    format!("{queue}:hs:wake")
}

/// The nodes a worker may subscribe on: the one Redis, or each of a
/// cluster's seed nodes, tried in turn.
pub fn nodes(settings: &RedisSettings) -> Result<Vec<redis::Client>, redis::RedisError> {
    if settings.cluster {
        settings.seeds().into_iter().map(redis::Client::open).collect()
    } else {
        Ok(vec![redis::Client::open(settings.url.as_str())?])
    }
}

/// Listens on the wake channel of each of `queues` (one per shard) until
/// `stop`, reconnecting as needed, and signals that queue's `Notify` once
/// per message, and every one once per (re)subscription (a pending signal
/// is kept if nobody is waiting, so no wake-up is lost between two
/// fetches). Each reconnect goes to the next of `nodes`.
pub async fn listen(nodes: Vec<redis::Client>, queues: Vec<(String, Arc<Notify>)>, stop: CancellationToken) {
    let channels: Vec<(String, Arc<Notify>)> = queues.into_iter().map(|(q, n)| (channel(&q), n)).collect();
    let mut backoff = Duration::from_millis(100);
    for client in nodes.iter().cycle() {
        if stop.is_cancelled() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                let names: Vec<&str> = channels.iter().map(|(c, _)| c.as_str()).collect();
                if pubsub.subscribe(&names).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    // Messages published while we were not subscribed are
                    // gone (at start, and during a reconnect): fetch once
                    // now rather than wait for the next poll.
                    for (_, notify) in &channels {
                        notify.notify_one();
                    }
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            msg = messages.next() => match msg {
                                Some(msg) => {
                                    let name = msg.get_channel_name();
                                    for (_, notify) in channels.iter().filter(|(c, _)| c == name) {
                                        notify.notify_one();
                                    }
                                }
                                None => break,
                            },
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error.message = %e, "wake subscription failed; polling meanwhile"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A stream that yields once per wake-up, for the worker's poll strategy
/// ([`super::poll::WakeOrInterval`]). Wake-ups that arrive while nobody
/// polls it are not lost: `Notify` keeps one permit, which the next poll
/// takes (several wake-ups collapse into one, which is all a fetch needs).
pub fn stream(notify: Arc<Notify>) -> Pin<Box<dyn Stream<Item = ()> + Send + Sync>> {
    Box::pin(futures::stream::unfold(notify, |n| async move {
        n.notified().await;
        Some(((), n))
    }))
}
