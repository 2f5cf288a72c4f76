-- Puts back on their way jobs that lost it (see the rule in lib.lua): a
-- `queued` job older than RECONCILE_AFTER whose first task is not on the
-- apalis queue, and a `delivering` job whose lease ran out. Both become
-- `scheduled`, due now, keeping their cycle and attempt counters (the lost
-- attempt is made again); the worker's scheduler then queues them.
-- (`scheduled` jobs are watched by lease_due.lua through `due`.)
--
-- Bounded: at most LIMIT jobs of each state per call, walked by rank from a
-- cursor kept in `reconcile:<state>`, so a deep backlog is covered over
-- several calls and no call scans everything. Safe to run from any number
-- of workers at once: each call is atomic and moves only jobs still stuck.
-- With DRY = '1' it moves nothing, starts at the oldest and only counts,
-- adding the `scheduled` jobs overdue by more than RECONCILE_AFTER.
-- ARGV: prefix, now (ms), RECONCILE_AFTER (ms), limit, apalis task data hash key, dry.
-- Returns {queued jobs moved (or found), delivering jobs moved (or found),
--          overdue scheduled jobs (dry only, else 0)}.
local p, now, after = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, tasks, dry = tonumber(ARGV[4]), ARGV[5], ARGV[6] == '1'

local function pass(state)
  local cursor = p .. 'reconcile:' .. state
  local start = 0
  if not dry then start = tonumber(redis.call('GET', cursor) or '0') end
  local ids = redis.call('ZRANGE', p .. 'state:' .. state, start, start + limit - 1)
  local moved, kept, done = 0, 0, #ids < limit
  for _, id in ipairs(ids) do
    local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'created_at', 'cycle', 'cycle_attempts', 'lease_until', 'task')
    if state == 'queued' and tonumber(h[2] or 0) > now - after then
      -- The index is ordered by creation: everything after is younger.
      done = true
      break
    end
    local lost = h[1] == state and stuck(h[1], h[2], nil, h[5], now, after)
    if lost and state == 'queued' then
      -- The batch task that carries it, or (records from before batch
      -- tasks) the single task named after the attempt.
      local task = h[6] or (id .. '.' .. h[3] .. '.' .. (tonumber(h[4]) + 1))
      lost = redis.call('HEXISTS', tasks, task) == 0
    end
    if lost then
      moved = moved + 1
      if not dry then due_now(p, id, state, h[2], now) end
    else
      kept = kept + 1
    end
  end
  if not dry then
    if done then redis.call('DEL', cursor) else redis.call('SET', cursor, start + kept) end
  end
  return moved
end

local overdue = 0
if dry then overdue = redis.call('ZCOUNT', p .. 'due', '-inf', now - after) end
return {pass('queued'), pass('delivering'), overdue}
