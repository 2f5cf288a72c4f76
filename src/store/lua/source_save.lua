-- Creates or changes a source, in the shard its id (and its tenant) hash
-- to. KEYS[1]: the shard's `all` index (for routing).
-- ARGV: prefix, tenant, id, expected revision ('' = create), JSON,
--   created (µs), rate limit (0 = the default).
-- Returns the new revision, or 'exists' / 'missing' / 'conflict'.
local p, t, id, rev, json, created, rate = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key = p .. 'src:' .. id
local have = redis.call('HGET', key, 'rev')
if rev == '' then
  if have then return 'exists' end
elseif not have then
  return 'missing'
elseif have ~= rev then
  return 'conflict'
end
local next_rev = (tonumber(have) or 0) + 1
redis.call('HSET', key, 'json', json, 'tenant', t, 'rate', rate, 'rev', next_rev)
redis.call('ZADD', p .. 'srcs:' .. t, created, id)
redis.call('ZADD', p .. 'tenants', 0, t)
return tostring(next_rev)
