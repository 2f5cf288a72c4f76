-- WORKAROUND(apalis-redis 1.0.0, APALIS.md #12): apalis-redis's
-- register_worker.lua, run in its place on a Redis Cluster (see
-- `RedisConn`), without its one write outside the queue:
--   redis.call("zadd", "core:apalis:queues:list", 'GT', now, KEYS[1])
-- That key is not declared and lives in its own slot, on another master in
-- general, where a script may not reach ("Script attempted to access a non
-- local key in a cluster node"), so no worker could start. The list only
-- feeds apalis's queue listing and metrics, which we do not use
-- (APALIS.md #3). Everything else is apalis's script unchanged.
-- KEYS[1]: the active workers set, KEYS[2]: worker metadata key.
-- ARGV[1]: now, ARGV[2]: worker name, ARGV[3]: threshold,
-- ARGV[4]: backend name, ARGV[5]: service.
local now = tonumber(ARGV[1])
local worker_name = ARGV[2]
local threshold = tonumber(ARGV[3])

local last_seen = redis.call("zscore", KEYS[1], worker_name)
if last_seen then
    if now - tonumber(last_seen) < threshold then
        error("worker is still active within threshold")
    end
end

redis.call("zadd", KEYS[1], now, worker_name)
redis.call("hmset", KEYS[2], "backend_name", ARGV[4], "service", ARGV[5])

return true
