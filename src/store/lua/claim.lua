-- A worker takes attempt ARGV[4] of cycle ARGV[3] of a job. Refuses (stale)
-- when that attempt was already made or the job moved on, which makes
-- duplicated queue tasks harmless. A job already `delivering` with the same
-- counters is a task re-run after its worker died: it may be taken again.
-- ARGV: prefix, id, cycle, attempt, worker, now (ms).
-- Returns {'ok', spec, attempts so far} | {'stale', state} | {'missing'}.
local p, id = ARGV[1], ARGV[2]
local key = p .. 'job:' .. id
local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts', 'spec', 'created_at', 'attempts')
local st = h[1]
if not st then return {'missing'} end
if tonumber(h[2]) ~= tonumber(ARGV[3]) or tonumber(h[3]) ~= tonumber(ARGV[4]) - 1 then
  return {'stale', st}
end
if st ~= 'queued' and st ~= 'scheduled' and st ~= 'delivering' then return {'stale', st} end
if st ~= 'delivering' then
  redis.call('ZREM', p .. 'state:' .. st, id)
  redis.call('ZADD', p .. 'state:delivering', h[5], id)
end
redis.call('ZREM', p .. 'due', id)
redis.call('HSET', key, 'state', 'delivering', 'worker', ARGV[5], 'updated_at', ARGV[6])
redis.call('HDEL', key, 'next_attempt_at')
return {'ok', h[4], h[6]}
