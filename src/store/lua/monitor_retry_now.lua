-- Makes a scheduled job's next attempt due now; the worker's scheduler
-- then queues it. Anything but `scheduled` is left alone, so a click on a
-- stale page cannot disturb a job that moved on.
-- ARGV: prefix, id, now (ms). Returns 'ok', the current state, or 'missing'.
local p, id, now = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'job:' .. id
local st = redis.call('HGET', key, 'state')
if not st then return 'missing' end
if st ~= 'scheduled' then return st end
redis.call('HSET', key, 'next_attempt_at', now)
redis.call('ZADD', p .. 'due', now, id)
return 'ok'
