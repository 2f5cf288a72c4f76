-- Hands out jobs whose next attempt is due, for a worker to put on the
-- apalis queue. Each one is leased (its due time pushed LEASE ms ahead) rather
-- than removed: if the worker dies before queueing it, it comes due again.
-- Claiming the job (claim.lua) removes it for good.
-- The attempts handed out travel in batch tasks of at most PER_TASK, named
-- TASK_PREFIX .. '.' .. n; each job records its task in `task`.
-- A lease that ran out (the due score is no longer the job's next attempt
-- time) means the task was handed out before: if apalis still holds it
-- (waiting behind a backlog), the lease is renewed and nothing is pushed
-- twice; if not, it is handed out again and counted as reconciled.
-- KEYS[1]: the shard's `due` index; every key touched shares its hash tag.
-- ARGV: prefix, now (ms), limit, lease (ms), apalis task data hash key,
--       task id prefix, attempts per task.
-- Returns a flat list: reconciled count, then id, cycle, attempt number to
-- make, task id, ...
local p, now, limit, lease, tasks = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local task_prefix, per_task = ARGV[6], tonumber(ARGV[7])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local out, reconciled, handed = {0}, 0, 0
for i = 1, #due, 2 do
  local id, score = due[i], tonumber(due[i + 1])
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts', 'next_attempt_at', 'task')
  if h[1] == 'scheduled' then
    local attempt = tonumber(h[3]) + 1
    local relapsed = score ~= tonumber(h[4])
    local task = h[5] or (id .. '.' .. h[2] .. '.' .. attempt)
    redis.call('ZADD', KEYS[1], now + lease, id)
    if not (relapsed and redis.call('HEXISTS', tasks, task) == 1) then
      if relapsed then reconciled = reconciled + 1 end
      task = task_prefix .. '.' .. math.floor(handed / per_task)
      handed = handed + 1
      redis.call('HSET', key, 'task', task)
      table.insert(out, id)
      table.insert(out, h[2])
      table.insert(out, attempt)
      table.insert(out, task)
    end
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
out[1] = reconciled
return out
