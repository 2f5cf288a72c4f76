-- Stores an event and counts the endpoints it matches, in one bounded step:
-- endpoints without a filter are counted from the index sizes, only those
-- with a filter are read. The deliveries are made later, in pages
-- (expand.lua), by workers.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, tenant, event id, event type, payload JSON, now (ms), due
--   (ms; 0 = now), idempotency key ('' = none), request fingerprint,
--   idempotency TTL (ms), expansion lease (ms).
-- Returns {'new', event id, matched, created at} or, for an event id (or
-- idempotency key) seen before, {'dup', event id, matched, created at}
-- without storing anything, or {'conflict'} for a reused idempotency key
-- with another body.
local p, t, eid, typ, payload = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, due, ikey, fp, ttl, lease = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local idem = nil
if ikey ~= '' then
  idem = p .. 'idem:' .. ikey
  local seen = redis.call('HMGET', idem, 'fp', 'event_id')
  if seen[1] then
    if seen[1] ~= fp then return {'conflict'} end
    eid = seen[2]
  end
end
local key = p .. 'ev:' .. t .. ':' .. eid
local old = redis.call('HMGET', key, 'matched', 'created_at')
if old[1] then return {'dup', eid, old[1], old[2]} end

local ix = p .. 'ix:' .. t .. ':'
local n = redis.call('ZCARD', ix .. 'u:*') + redis.call('ZCARD', ix .. 'u:' .. typ)
local doc = nil
for _, set in ipairs({ix .. 'f:*', ix .. 'f:' .. typ}) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    local f = redis.call('HGET', p .. 'ep:' .. t .. ':' .. id, 'filter')
    if f then
      if doc == nil then doc = cjson.decode(payload) end
      if f_node(cjson.decode(f), doc) then n = n + 1 end
    end
  end
end

local state = 'expanded'
if n > 0 then
  state = 'expanding'
  redis.call('ZADD', p .. 'expanding', now + lease, t .. '/' .. eid)
end
redis.call('HSET', key, 'type', typ, 'payload', payload, 'created_at', now, 'due', due, 'matched', n,
  'made', 0, 'cursor', '1:', 'state', state)
redis.call('ZADD', p .. 'evs:' .. t, now, eid)
redis.call('ZADD', p .. 'evt:' .. t .. ':' .. typ, now, eid)
redis.call('ZADD', p .. 'events', now, t .. '/' .. eid)
if idem then
  redis.call('HSET', idem, 'fp', fp, 'event_id', eid)
  redis.call('PEXPIRE', idem, ttl)
end
return {'new', eid, n, now}
