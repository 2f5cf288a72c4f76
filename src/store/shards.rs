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
//! `<QUEUE_NAME>:{<tag>}:hs:...` and `<QUEUE_NAME>:{<tag>}`, where the tag
//! of shard `k` of `n` is the first of `k`, `k.1`, `k.2`, ... whose slot
//! lies in the `k`-th `n`-th of the slot space: a cluster whose slots are
//! split evenly among its masters (as `redis-cli --cluster create` does)
//! gets the same number of shards on each. Changing `QUEUE_SHARDS` moves
//! jobs to other shards: drain the queue first.
//!
//! A request without an idempotency key may go to any shard; the app sends
//! the requests of each 10 ms window to one shard, in turn, so that they
//! share its batched writes (see `coalesce`) as they would with one shard,
//! and every shard gets its share over time.

use crate::{config::RedisSettings, domain::JobId};

/// The shards of one queue.
#[derive(Debug, Clone)]
pub struct Shards {
    queue: String,
    count: usize,
    /// Each shard's hash tag; empty for one shard on one Redis.
    tags: Vec<String>,
    /// Where this process starts its turn through the shards.
    offset: u64,
}

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16_384;

/// A key's cluster slot.
fn slot(tag: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS
}

/// The tag of shard `k` of `n`: see the module doc.
fn tag(k: usize, n: usize) -> String {
    let range = k * SLOTS / n..(k + 1) * SLOTS / n;
    std::iter::once(k.to_string())
        .chain((1..).map(|i| format!("{k}.{i}")))
        .find(|t| range.contains(&slot(t)))
        .expect("some suffix lands in every range")
}

impl Shards {
    /// The layout `settings` ask for.
    pub fn new(settings: &RedisSettings) -> Self {
        let count = settings.shards.max(1);
        let tagged = settings.cluster || count > 1;
        Self {
            queue: settings.queue.clone(),
            count,
            tags: if tagged { (0..count).map(|k| tag(k, count)).collect() } else { Vec::new() },
            offset: rand::random(),
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
        match self.tags.get(k) {
            Some(tag) => format!("{}:{{{tag}}}", self.queue),
            None => self.queue.clone(),
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

    /// A shard for a request without an idempotency key: the same one
    /// for every request in this 10 ms window (see the module doc).
    pub fn pick(&self) -> usize {
        let window = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64 / 10)
            .unwrap_or_default();
        (window.wrapping_add(self.offset) % self.count as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(cluster: bool, n: usize) -> Shards {
        let settings = crate::config::Settings::from_vars(vec![
            ("QUEUE_NAME".to_owned(), "q".to_owned()),
            ("QUEUE_SHARDS".to_owned(), n.to_string()),
            ("REDIS_CLUSTER".to_owned(), cluster.to_string()),
        ])
        .unwrap();
        Shards::new(&settings.redis)
    }

    #[test]
    fn one_shard_on_one_redis_keeps_the_old_key_names() {
        let s = shards(false, 1);
        assert_eq!((s.prefix(0), s.queue(0)), ("q:hs:".to_owned(), "q".to_owned()));
        let c = shards(true, 1);
        assert_eq!((c.prefix(0), c.queue(0)), ("q:{0}:hs:".to_owned(), "q:{0}".to_owned()));
    }

    #[test]
    fn shards_spread_evenly_over_an_evenly_split_cluster() {
        for n in [2, 3, 16] {
            let s = shards(true, n);
            for masters in [1, 2, 3] {
                let mut per = vec![0; masters];
                for k in s.all() {
                    per[slot(&s.tags[k]) * masters / SLOTS] += 1;
                }
                assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "{n} shards: {per:?}");
            }
        }
        // Tags are stable: the same shard count gives the same keys anywhere.
        assert_eq!(shards(true, 16).queue(5), shards(true, 16).queue(5));
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
