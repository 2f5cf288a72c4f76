-- The first step of every ingest request: the source, and its rate limit
-- (a one-second window shared by every app instance).
-- KEYS[1]: the shard's `all` index (for routing).
-- ARGV: prefix, source id, now (ms), the default limit per second (0 = none).
-- Returns {'open', JSON} or {'missing'} or {'limited', ms until the window ends}.
local p, id, now, default = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', p .. 'src:' .. id, 'json', 'rate')
if not h[1] then return {'missing'} end
local rate = tonumber(h[2]) or 0
if rate == 0 then rate = default end
if rate > 0 then
  local sec = math.floor(now / 1000)
  local window = p .. 'srl:' .. id .. ':' .. sec
  local n = redis.call('INCR', window)
  if n == 1 then redis.call('PEXPIRE', window, 2000) end
  if n > rate then
    local stats = p .. 'sst:' .. id .. ':' .. math.floor(now / 300000)
    redis.call('HINCRBY', stats, 'rate_limited', 1)
    redis.call('EXPIRE', stats, 7200)
    return {'limited', tostring((sec + 1) * 1000 - now)}
  end
end
return {'open', h[1]}
