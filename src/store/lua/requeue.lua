-- Gives jobs a fresh retry cycle, keeping their ids and attempt logs: a
-- failed job, a held delivery (flow.lua; held again if its endpoint is
-- still disabled), or one stuck in a non-terminal state (see stuck() in
-- lib.lua). Anything else is refused, so a double click cannot deliver
-- twice and a job on its way is not disturbed. The i-th job requeued here
-- (from 0) is due at now + (OFFSET + i) * STEP microseconds, so a bulk
-- requeue reaches the receivers as a ramp, not a burst.
-- ARGV: prefix, now (ms), RECONCILE_AFTER (ms), step (us), offset, then job ids.
-- Returns, per id: 'ok', its current state, or 'missing'.
local p, now, after, step = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, n = {}, tonumber(ARGV[5])
for i = 6, #ARGV do
  local id = ARGV[i]
  local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'created_at', 'next_attempt_at', 'lease_until', 'ep')
  if not h[1] then
    table.insert(out, 'missing')
  elseif h[1] ~= 'failed' and h[1] ~= 'held' and not stuck(h[1], h[2], h[3], h[4], now, after) then
    table.insert(out, h[1])
  else
    if h[1] == 'held' then redis.call('ZREM', p .. 'held:' .. h[5], id) end
    restart_cycle(p, id, h[1], h[2], now, now + math.floor(n * step / 1000))
    n = n + 1
    table.insert(out, 'ok')
  end
end
return out
