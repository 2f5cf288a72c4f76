//! How one queue's keys are spread over Redis: `QUEUE_SHARDS` shards, each
//! a complete little queue (apalis's lists and sets, our records and
//! indexes) whose keys share one hash tag, so that on a Redis Cluster each
//! shard lives in one slot and every script runs on one node, and the
//! shards spread over the masters.
//!
//! A job belongs to the shard its id hashes to, so any process finds it
//! from the id alone. Ids are random, so the app picks a shard for a
//! request (from its idempotency key, or at random) and mints ids until one
//! falls in it; everything one request writes is then in one slot, and its
//! idempotency record is stored atomically with its jobs.
//!
//! One Redis with one shard (the default) keeps the key names of earlier
//! versions: `<QUEUE_NAME>:hs:...` for records, `<QUEUE_NAME>` as the apalis
//! queue. With more shards, or on a cluster, shard `k` is
//! `<QUEUE_NAME>:{k}:hs:...` and `<QUEUE_NAME>:{k}`. Changing `QUEUE_SHARDS`
//! moves jobs to other shards: drain the queue first.

use crate::{config::RedisSettings, domain::JobId};

/// The shards of one queue.
#[derive(Debug, Clone)]
pub struct Shards {
    queue: String,
    count: usize,
    tagged: bool,
}

impl Shards {
    /// The layout `settings` ask for.
    pub fn new(settings: &RedisSettings) -> Self {
        Self {
            queue: settings.queue.clone(),
            count: settings.shards.max(1),
            tagged: settings.cluster || settings.shards > 1,
        }
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Every shard's number.
    pub fn all(&self) -> std::ops::Range<usize> {
        0..self.count
    }

    /// The prefix of our record keys in shard `k`.
    pub fn prefix(&self, k: usize) -> String {
        format!("{}:hs:", self.queue(k))
    }

    /// The apalis queue name of shard `k`; apalis's keys start with it.
    pub fn queue(&self, k: usize) -> String {
        if self.tagged {
            format!("{}:{{{k}}}", self.queue)
        } else {
            self.queue.clone()
        }
    }

    /// The shard job `id` lives in.
    pub fn of_job(&self, id: &JobId) -> usize {
        self.of_key(id.as_str())
    }

    /// The shard a string (an id, an idempotency key) hashes to: FNV-1a,
    /// stable across processes and versions.
    pub fn of_key(&self, key: &str) -> usize {
        if self.count == 1 {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % self.count as u64) as usize
    }

    /// A fresh id for a job with these labels, in shard `k`.
    pub fn mint(&self, group: Option<&crate::domain::Label>, tag: Option<&crate::domain::Label>, k: usize) -> JobId {
        loop {
            let id = JobId::mint(group, tag);
            if self.of_job(&id) == k {
                return id;
            }
        }
    }

    /// A shard for a request without an idempotency key.
    pub fn pick(&self) -> usize {
        rand::random_range(0..self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(cluster: bool, n: usize) -> Shards {
        Shards { queue: "q".to_owned(), count: n, tagged: cluster || n > 1 }
    }

    #[test]
    fn one_shard_on_one_redis_keeps_the_old_key_names() {
        let s = shards(false, 1);
        assert_eq!((s.prefix(0), s.queue(0)), ("q:hs:".to_owned(), "q".to_owned()));
        let c = shards(true, 1);
        assert_eq!((c.prefix(0), c.queue(0)), ("q:{0}:hs:".to_owned(), "q:{0}".to_owned()));
    }

    #[test]
    fn minted_ids_land_in_their_shard_and_ids_spread() {
        let s = shards(true, 16);
        let mut seen = [0usize; 16];
        for k in 0..160 {
            let id = s.mint(None, None, k % 16);
            assert_eq!(s.of_job(&id), k % 16);
            seen[s.of_job(&JobId::mint(None, None))] += 1;
        }
        assert!(seen.iter().filter(|n| **n > 0).count() > 8, "{seen:?}");
    }
}
