-- Hands out jobs whose next attempt is due, for a worker to put on the
-- apalis queue. Each one is leased (its due time pushed LEASE ms ahead) rather
-- than removed: if the worker dies before queueing it, it comes due again.
-- Claiming the job (claim.lua) removes it for good.
-- ARGV: prefix, now (ms), limit, lease (ms).
-- Returns a flat list: id, cycle, attempt number to make, ...
local p, now, limit, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'cycle', 'cycle_attempts')
  if h[1] == 'scheduled' then
    redis.call('ZADD', p .. 'due', now + lease, id)
    table.insert(out, id)
    table.insert(out, h[2])
    table.insert(out, tonumber(h[3]) + 1)
  else
    redis.call('ZREM', p .. 'due', id)
  end
end
return out
