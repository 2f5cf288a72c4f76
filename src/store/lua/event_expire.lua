-- Deletes events accepted before a cutoff once every delivery of theirs
-- has expired (deliveries leave `evd:` as expire.lua deletes them), so an
-- event outlives its last delivery and no longer.
-- KEYS[1]: the shard's `all` index. ARGV: prefix, cutoff (ms), limit.
-- Returns how many events were deleted.
local p, cutoff, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', p .. 'events', '-inf', cutoff, 'LIMIT', 0, limit)) do
  local t, eid = string.match(member, '^([^/]+)/(.*)$')
  local key = p .. 'ev:' .. t .. ':' .. eid
  local h = redis.call('HMGET', key, 'type', 'state')
  if not h[1] then
    redis.call('ZREM', p .. 'events', member)
  elseif h[2] == 'expanded' and redis.call('ZCARD', p .. 'evd:' .. t .. ':' .. eid) == 0 then
    redis.call('DEL', key)
    redis.call('ZREM', p .. 'evs:' .. t, eid)
    redis.call('ZREM', p .. 'evt:' .. t .. ':' .. h[1], eid)
    redis.call('ZREM', p .. 'events', member)
    deleted = deleted + 1
  end
end
return deleted
