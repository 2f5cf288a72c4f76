-- Removes jobs that were stored but could not be queued, so a caller who
-- got an error does not leave phantoms behind. Only untouched jobs go.
-- ARGV[1]: key prefix, ARGV[2]: idempotency key to forget ('' = none),
-- ARGV[3..]: job ids. Returns how many were removed.
local p = ARGV[1]
if ARGV[2] ~= '' then redis.call('DEL', p .. 'idem:' .. ARGV[2]) end
local removed = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'attempts', 'group', 'tag', 'host')
  if (h[1] == 'queued' or h[1] == 'scheduled') and tonumber(h[2]) == 0 then
    redis.call('DEL', key, key .. ':log')
    redis.call('ZREM', p .. 'all', id)
    redis.call('ZREM', p .. 'state:' .. h[1], id)
    redis.call('ZREM', p .. 'due', id)
    if h[3] ~= '' then redis.call('ZREM', p .. 'group:' .. h[3], id) end
    if h[4] ~= '' then redis.call('ZREM', p .. 'tag:' .. h[4], id) end
    redis.call('ZREM', p .. 'host:' .. h[5], id)
    removed = removed + 1
  end
end
return removed
