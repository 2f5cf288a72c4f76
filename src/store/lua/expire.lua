-- Deletes finished jobs whose retention ran out, with every index entry,
-- so Redis does not grow without bound. A job is in `expiry` only while it
-- is succeeded or failed (finish.lua adds it, requeue.lua removes it).
-- ARGV: prefix, now (ms), limit. Returns how many jobs were deleted.
local p, now, limit = ARGV[1], ARGV[2], ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', p .. 'expiry', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'group', 'tag', 'host')
  if h[1] then
    redis.call('ZREM', p .. 'state:' .. h[1], id)
    if h[2] and h[2] ~= '' then redis.call('ZREM', p .. 'group:' .. h[2], id) end
    if h[3] and h[3] ~= '' then redis.call('ZREM', p .. 'tag:' .. h[3], id) end
    if h[4] then redis.call('ZREM', p .. 'host:' .. h[4], id) end
  end
  redis.call('ZREM', p .. 'all', id)
  redis.call('ZREM', p .. 'due', id)
  redis.call('DEL', key, key .. ':log')
  redis.call('ZREM', p .. 'expiry', id)
end
return #ids
