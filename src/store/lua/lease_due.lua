-- Hands out jobs whose next attempt is due, for a worker to put on the
-- apalis queue. Each one is leased (its due time pushed LEASE ms ahead) rather
-- than removed: if the worker dies before queueing it, it comes due again.
-- Claiming the job (claim.lua) removes it for good.
-- A lease that ran out (the due score is no longer the job's next attempt
-- time) means the task was handed out before: if apalis still holds it
-- (waiting behind a backlog), the lease is renewed and nothing is pushed
-- twice; if not, it is handed out again and counted as reconciled.
-- ARGV: prefix, now (ms), limit, lease (ms), apalis task data hash key.
-- Returns a flat list: reconciled count, then id, cycle, attempt number to make, ...
local p, now, limit, lease, tasks = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local due = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local out, reconciled = {0}, 0
for i = 1, #due, 2 do
  local id, score = due[i], tonumber(due[i + 1])
  local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'cycle', 'cycle_attempts', 'next_attempt_at')
  if h[1] == 'scheduled' then
    local attempt = tonumber(h[3]) + 1
    local relapsed = score ~= tonumber(h[4])
    redis.call('ZADD', p .. 'due', now + lease, id)
    if not (relapsed and redis.call('HEXISTS', tasks, id .. '.' .. h[2] .. '.' .. attempt) == 1) then
      if relapsed then reconciled = reconciled + 1 end
      table.insert(out, id)
      table.insert(out, h[2])
      table.insert(out, attempt)
    end
  else
    redis.call('ZREM', p .. 'due', id)
  end
end
out[1] = reconciled
return out
