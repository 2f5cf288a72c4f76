-- Records one attempt and moves the job to its next state in one step, so
-- the attempt log, the state indexes and the retry schedule never disagree.
-- ARGV: prefix, id, cycle, attempt, now (ms), next state, attempt JSON,
--       last status ('' = none), last error ('' = none), next attempt (ms, '' = none),
--       expires at (ms; used when the job ends succeeded or failed),
--       minute bucket (unix minutes) for the per-minute counters,
--       stop reason ('' = none; set when the job fails),
--       claim token (what claim.lua handed this attempt).
-- Returns 1, or 0 when the attempt is not the one this job is waiting for or
-- its claim was taken away (the lease ran out and the job went back to
-- `scheduled`): a late worker must not overwrite what came after it.
local p, id = ARGV[1], ARGV[2]
local key = p .. 'job:' .. id
local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts', 'created_at', 'claim')
if h[1] ~= 'delivering' or tonumber(h[2]) ~= tonumber(ARGV[3])
   or tonumber(h[3]) ~= tonumber(ARGV[4]) - 1 or h[5] ~= ARGV[14] then
  return 0
end
local nxt = ARGV[6]
-- The log keeps the latest 100 attempts (`attempts` keeps the count), so a
-- job requeued again and again cannot grow without bound or be read whole.
if redis.call('RPUSH', key .. ':log', ARGV[7]) > 100 then
  redis.call('LTRIM', key .. ':log', -100, -1)
end
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'cycle_attempts', ARGV[4], 'state', nxt, 'updated_at', ARGV[5])
redis.call('HDEL', key, 'worker', 'claim', 'lease_until')
if ARGV[8] ~= '' then redis.call('HSET', key, 'last_status', ARGV[8]) else redis.call('HDEL', key, 'last_status') end
if ARGV[9] ~= '' then redis.call('HSET', key, 'last_error', ARGV[9]) else redis.call('HDEL', key, 'last_error') end
if ARGV[13] ~= '' then redis.call('HSET', key, 'stop_reason', ARGV[13]) else redis.call('HDEL', key, 'stop_reason') end
redis.call('ZREM', p .. 'state:delivering', id)
redis.call('ZADD', p .. 'state:' .. nxt, h[4], id)
if nxt == 'scheduled' then
  redis.call('HSET', key, 'next_attempt_at', ARGV[10])
  redis.call('ZADD', p .. 'due', ARGV[10], id)
else
  redis.call('HSET', key, 'finished_at', ARGV[5])
  redis.call('ZADD', p .. 'expiry', ARGV[11], id)
end
-- Per-minute counters for the monitor's chart, kept two hours.
local bucket = p .. 'stats:' .. ARGV[12]
if nxt == 'succeeded' then
  redis.call('HINCRBY', bucket, 'delivered', 1)
else
  redis.call('HINCRBY', bucket, 'failed_attempts', 1)
  if nxt == 'failed' then redis.call('HINCRBY', bucket, 'failed', 1) end
end
redis.call('EXPIRE', bucket, 7200)
return 1
