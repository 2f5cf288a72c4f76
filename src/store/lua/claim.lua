-- A worker takes attempt ARGV[4] of cycle ARGV[3] of a job, under a lease.
-- Refuses (stale) when that attempt was already taken or the job moved on,
-- which makes duplicated queue tasks harmless: an attempt has one holder at
-- a time. A `delivering` job is re-taken only once its holder's lease ran
-- out (apalis re-runs a dead worker's task; reconcile.lua would make the
-- job due again otherwise); the old holder's result is then refused.
-- ARGV: prefix, id, cycle, attempt, worker, now (ms), claim token, lease (ms).
-- Returns {'ok', spec, attempts so far} | {'stale', state} | {'missing'}.
local p, id, now = ARGV[1], ARGV[2], tonumber(ARGV[6])
local key = p .. 'job:' .. id
local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts', 'spec', 'created_at', 'attempts')
local st = h[1]
if not st then return {'missing'} end
if tonumber(h[2]) ~= tonumber(ARGV[3]) or tonumber(h[3]) ~= tonumber(ARGV[4]) - 1 then
  return {'stale', st}
end
if st == 'delivering' then
  if tonumber(redis.call('HGET', key, 'lease_until') or 0) > now then return {'stale', st} end
elseif st ~= 'queued' and st ~= 'scheduled' then
  return {'stale', st}
else
  redis.call('ZREM', p .. 'state:' .. st, id)
  redis.call('ZADD', p .. 'state:delivering', h[5], id)
end
redis.call('ZREM', p .. 'due', id)
redis.call('HSET', key, 'state', 'delivering', 'worker', ARGV[5], 'updated_at', now,
  'claim', ARGV[7], 'lease_until', now + tonumber(ARGV[8]))
redis.call('HDEL', key, 'next_attempt_at')
return {'ok', h[4], h[6]}
