-- Removes a job that was stored but could not be queued, so a caller who got
-- an error does not leave a phantom behind. Only untouched jobs go.
-- ARGV[1]: key prefix, ARGV[2]: job id.
local p, id = ARGV[1], ARGV[2]
local key = p .. 'job:' .. id
local h = redis.call('HMGET', key, 'state', 'attempts')
if h[1] ~= 'queued' or tonumber(h[2]) ~= 0 then return 0 end
redis.call('DEL', key, key .. ':log')
redis.call('ZREM', p .. 'all', id)
redis.call('ZREM', p .. 'state:queued', id)
return 1
