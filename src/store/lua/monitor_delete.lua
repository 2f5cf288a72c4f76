-- Deletes jobs with their attempt log and every index entry (the same set
-- expire.lua clears), each only if it is in the required state.
-- ARGV: prefix, required state ('' = any), then job ids.
-- Returns how many jobs were deleted.
local p, need = ARGV[1], ARGV[2]
local deleted = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'group', 'tag', 'host')
  if h[1] and (need == '' or h[1] == need) then
    redis.call('ZREM', p .. 'state:' .. h[1], id)
    if h[2] and h[2] ~= '' then redis.call('ZREM', p .. 'group:' .. h[2], id) end
    if h[3] and h[3] ~= '' then redis.call('ZREM', p .. 'tag:' .. h[3], id) end
    if h[4] then redis.call('ZREM', p .. 'host:' .. h[4], id) end
    redis.call('ZREM', p .. 'all', id)
    redis.call('ZREM', p .. 'due', id)
    redis.call('ZREM', p .. 'expiry', id)
    redis.call('DEL', key, key .. ':log')
    deleted = deleted + 1
  end
end
return deleted
