-- Makes a job's next attempt due now; the worker's scheduler then queues
-- it. A scheduled job keeps its cycle; a job stuck in another non-terminal
-- state (see stuck() in lib.lua) gets a fresh cycle, as a requeue would.
-- Anything else is left alone, so a click on a stale page cannot disturb a
-- job that moved on.
-- ARGV: prefix, id, now (ms), RECONCILE_AFTER (ms).
-- Returns 'ok', the current state, or 'missing'.
local p, id, now, after = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'created_at', 'next_attempt_at', 'lease_until')
if not h[1] then return 'missing' end
if h[1] == 'scheduled' then
  due_now(p, id, 'scheduled', h[2], now)
elseif h[1] ~= 'failed' and stuck(h[1], h[2], h[3], h[4], now, after) then
  restart_cycle(p, id, h[1], h[2], now, now)
else
  return h[1]
end
return 'ok'
