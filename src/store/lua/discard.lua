-- Removes a job that was stored but could not be queued, so a caller who got
-- an error does not leave a phantom behind. Only untouched jobs go.
-- ARGV[1]: key prefix, ARGV[2]: job id.
local p, id = ARGV[1], ARGV[2]
local key = p .. 'job:' .. id
local h = redis.call('HMGET', key, 'state', 'attempts', 'group', 'tag', 'host')
if h[1] ~= 'queued' or tonumber(h[2]) ~= 0 then return 0 end
redis.call('DEL', key, key .. ':log')
redis.call('ZREM', p .. 'all', id)
redis.call('ZREM', p .. 'state:queued', id)
if h[3] ~= '' then redis.call('ZREM', p .. 'group:' .. h[3], id) end
if h[4] ~= '' then redis.call('ZREM', p .. 'tag:' .. h[4], id) end
redis.call('ZREM', p .. 'host:' .. h[5], id)
return 1
