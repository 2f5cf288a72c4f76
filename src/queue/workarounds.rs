//! Small, named fixes for apalis-redis 1.0.0 defects (APALIS.md). Each is
//! covered by a test in `tests/it/apalis_workarounds.rs` that fails without
//! it. Delete a workaround and its test together once upstream fixes it.

use std::sync::LazyLock;

use redis::Script;

use super::QueueError;
use crate::store::RedisConn;

/// Due ids moved per script call: far below the ~8,000 where Lua's
/// `unpack` fails, large enough that a 100k backlog moves in 100 calls.
pub const PROMOTE_CHUNK: usize = 1_000;

/// Finished tasks cleaned per script call.
pub const SWEEP_CHUNK: usize = 1_000;

static PROMOTE_DUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/promote_due.lua")));
static SWEEP_FINISHED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/sweep_finished.lua")));

/// WORKAROUND(apalis-redis 1.0.0, APALIS.md #2): moves every due task from
/// apalis's scheduled set to its active list in chunks of
/// [`PROMOTE_CHUNK`], so apalis's fetch never has more than a chunk to
/// promote itself. Run before a worker starts fetching, then continuously.
/// Returns how many tasks were moved.
pub async fn promote_due_in_chunks(conn: &RedisConn, config: &apalis_redis::Config) -> Result<u64, QueueError> {
    let mut conn = conn.clone();
    let mut total = 0u64;
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let moved: u64 = PROMOTE_DUE
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .arg(now)
            .arg(PROMOTE_CHUNK)
            .invoke_async(&mut conn)
            .await?;
        total += moved;
        if moved < PROMOTE_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// WORKAROUND(apalis-redis 1.0.0, APALIS.md #3): deletes the queue's copies
/// of finished tasks (done and dead sets, data hash entries, metadata
/// hashes), which apalis-redis keeps forever. Returns how many went.
pub async fn sweep_finished(conn: &RedisConn, config: &apalis_redis::Config) -> Result<u64, QueueError> {
    let mut conn = conn.clone();
    let mut total = 0u64;
    for set in [config.done_jobs_set(), config.dead_jobs_set()] {
        loop {
            let removed: u64 = SWEEP_FINISHED
                .key(&set)
                .key(config.job_data_hash())
                .arg(config.job_meta_hash())
                .arg(SWEEP_CHUNK)
                .invoke_async(&mut conn)
                .await?;
            total += removed;
            if removed < SWEEP_CHUNK as u64 {
                break;
            }
        }
    }
    Ok(total)
}

/// WORKAROUND(apalis-redis 1.0.0, APALIS.md #5): a worker name that is never
/// reused. apalis-redis does not remove a stopped worker from its registry
/// and refuses a name seen within the orphan threshold ("worker is still
/// active within threshold"), so a restart under the same name fails. Host,
/// pid, start time and a per-process run counter make each name unique, and
/// tell an operator where the worker runs.
pub fn unique_worker_name(prefix: &str, run: u32) -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{prefix}-{host}-{}-{started}-{run}", std::process::id())
}
