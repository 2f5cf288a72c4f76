-- Gives a job a fresh retry cycle, due now, keeping its id and attempt log:
-- a failed job, or one stuck in a non-terminal state (see stuck() in
-- lib.lua). Anything else is refused, so a double click cannot deliver
-- twice and a job on its way is not disturbed.
-- ARGV: prefix, id, now (ms), RECONCILE_AFTER (ms).
-- Returns 'ok', the current state, or 'missing'.
local p, id, now, after = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'created_at', 'next_attempt_at', 'lease_until')
if not h[1] then return 'missing' end
if h[1] ~= 'failed' and not stuck(h[1], h[2], h[3], h[4], now, after) then return h[1] end
restart_cycle(p, id, h[1], h[2], now)
return 'ok'
