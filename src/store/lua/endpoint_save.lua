-- Creates or changes an endpoint and moves it between the matching indexes
-- in one step, so an event never sees it half-saved.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, tenant, endpoint id, expected revision ('' = create: it
--   must not exist), endpoint JSON, url, host, filter JSON ('' = none),
--   created at (ms), what flow control reads at each claim (disabled '1' or
--   '', ordered '1' or '', rate limit ('' = none), max in flight), then its
--   index entries (`u:<type>`, `u:*`, `f:...`).
-- The entries it had are read from the record (`ix`), so a change always
-- leaves exactly the new ones.
-- Returns the new revision, or 'exists' / 'missing' / 'conflict' (someone
-- else changed it since it was read: read it again).
local p, t, id, rev = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. 'ep:' .. t .. ':' .. id
local ix = p .. 'ix:' .. t .. ':'
local cur = redis.call('HMGET', key, 'rev', 'ix')
if rev == '' then
  if cur[1] then return 'exists' end
elseif not cur[1] then
  return 'missing'
elseif cur[1] ~= rev then
  return 'conflict'
end
if cur[2] and cur[2] ~= '' then
  for entry in string.gmatch(cur[2], '%S+') do redis.call('ZREM', ix .. entry, id) end
end
local entries = {}
for i = 14, #ARGV do
  redis.call('ZADD', ix .. ARGV[i], 0, id)
  table.insert(entries, ARGV[i])
end
local next_rev = tonumber(cur[1] or '0') + 1
redis.call('HSET', key, 'json', ARGV[5], 'url', ARGV[6], 'host', ARGV[7], 'rev', next_rev,
  'ix', table.concat(entries, ' '))
if ARGV[8] ~= '' then redis.call('HSET', key, 'filter', ARGV[8]) else redis.call('HDEL', key, 'filter') end
redis.call('HSET', key, 'disabled', ARGV[10], 'ordered', ARGV[11], 'rate', ARGV[12], 'cap', ARGV[13])
redis.call('ZADD', p .. 'eps:' .. t, ARGV[9], id)
redis.call('ZADD', p .. 'tenants', 0, t)
return tostring(next_rev)
