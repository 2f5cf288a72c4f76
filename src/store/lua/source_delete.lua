-- Deletes a source with its request log; its events stay (they are the
-- tenant's). The tenant is forgotten with its last endpoint and source.
-- KEYS[1]: the shard's `all` index. ARGV: prefix, tenant, source id.
-- Returns 1 if it existed.
local p, t, id = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'src:' .. id, 'tenant') ~= t then return 0 end
redis.call('DEL', p .. 'src:' .. id, p .. 'sreq:' .. id)
redis.call('ZREM', p .. 'srcs:' .. t, id)
if redis.call('ZCARD', p .. 'eps:' .. t) + redis.call('ZCARD', p .. 'srcs:' .. t) == 0 then
  redis.call('ZREM', p .. 'tenants', t)
end
return 1
