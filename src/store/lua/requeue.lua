-- Gives a failed job a fresh retry cycle, due now. Keeps its id and its
-- attempt log. Anything but `failed` is refused, so a double click
-- cannot deliver twice.
-- ARGV: prefix, id, now (ms). Returns 'ok', the current state, or 'missing'.
local p, id, now = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'job:' .. id
local h = redis.call('HMGET', key, 'state', 'created_at')
if not h[1] then return 'missing' end
if h[1] ~= 'failed' then return h[1] end
redis.call('HINCRBY', key, 'cycle', 1)
redis.call('HSET', key, 'cycle_attempts', 0, 'state', 'scheduled', 'next_attempt_at', now, 'updated_at', now)
redis.call('HDEL', key, 'finished_at')
redis.call('ZREM', p .. 'state:failed', id)
redis.call('ZADD', p .. 'state:scheduled', h[2], id)
redis.call('ZADD', p .. 'due', now, id)
redis.call('ZREM', p .. 'expiry', id)
return 'ok'
