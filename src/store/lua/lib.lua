-- Shared by the scripts that judge or restart a job's progress; the store
-- prepends it to them (store::with_lib), so the rule lives in one place.
--
-- The rule: a job in a non-terminal state always has a way forward that
-- does not depend on the process that wrote it:
--   queued      its first task is on the apalis queue;
--   scheduled   it is in `due`, at its next attempt time or, once its task
--               was handed to the queue, at the end of that hand-off's lease;
--   delivering  a worker holds it under `lease_until` (claim time +
--               HTTP_TIMEOUT + a grace to record the result); `claim`
--               names the holder.
-- reconcile.lua and lease_due.lua put back on its way any job that lost it.

-- True when a job has made no progress for longer than it may: queued for
-- longer than `after`, overdue by more than `after`, or holding a lease that
-- ran out. Judged from the job's own fields, never from who wrote them.
local function stuck(st, created_at, next_at, lease_until, now, after)
  if st == 'queued' then return tonumber(created_at or 0) <= now - after end
  if st == 'scheduled' then return tonumber(next_at or 0) <= now - after end
  if st == 'delivering' then return tonumber(lease_until or 0) <= now end
  return false
end

-- Makes a job's next attempt due at `at` (ms), from any state, dropping
-- any lease.
local function due_at(p, id, from, created_at, now, at)
  local key = p .. 'job:' .. id
  redis.call('HSET', key, 'state', 'scheduled', 'next_attempt_at', at, 'updated_at', now)
  redis.call('HDEL', key, 'claim', 'lease_until', 'worker', 'finished_at')
  if from ~= 'scheduled' then
    redis.call('ZREM', p .. 'state:' .. from, id)
    redis.call('ZADD', p .. 'state:scheduled', created_at, id)
  end
  redis.call('ZADD', p .. 'due', at, id)
end

local function due_now(p, id, from, created_at, now)
  due_at(p, id, from, created_at, now, now)
end

-- A fresh retry cycle, due at `at`: tasks and claims of the old cycle go stale.
local function restart_cycle(p, id, from, created_at, now, at)
  local key = p .. 'job:' .. id
  redis.call('HINCRBY', key, 'cycle', 1)
  redis.call('HSET', key, 'cycle_attempts', 0)
  due_at(p, id, from, created_at, now, at)
  redis.call('ZREM', p .. 'expiry', id)
end

