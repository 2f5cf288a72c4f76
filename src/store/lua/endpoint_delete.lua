-- Deletes an endpoint with its index entries and its deliveries index; the
-- tenant is forgotten with its last endpoint. Deliveries still on their way
-- fail when claimed ("endpoint deleted").
-- KEYS[1]: the shard's `all` index. ARGV: prefix, tenant, endpoint id.
-- Returns 1 if it existed.
local p, t, id = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'ep:' .. t .. ':' .. id
local entries = redis.call('HGET', key, 'ix')
if not entries then return 0 end
for entry in string.gmatch(entries, '%S+') do redis.call('ZREM', p .. 'ix:' .. t .. ':' .. entry, id) end
redis.call('DEL', key, p .. 'epd:' .. t .. ':' .. id)
redis.call('ZREM', p .. 'eps:' .. t, id)
if redis.call('ZCARD', p .. 'eps:' .. t) + redis.call('ZCARD', p .. 'srcs:' .. t) == 0 then
  redis.call('ZREM', p .. 'tenants', t)
end
return 1
