-- Releases held deliveries (flow.lua's hold) of endpoints that are enabled
-- again: due now, their attempt unspent. Run by the endpoint service when
-- an endpoint is enabled, and by every worker's sweep, so a release cut
-- short by a crash is finished by someone else.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, now (ms), limit, flow ('' = whichever flows in `held`).
-- Returns {released, still held in that flow (0 when no flow was named)}.
local p, now, limit, only = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local flows
if only ~= '' then flows = {only} else flows = redis.call('ZRANGE', p .. 'held', 0, 99) end
local released = 0
for _, F in ipairs(flows) do
  if released >= limit then break end
  if redis.call('HGET', p .. 'ep:' .. F, 'disabled') ~= '1' then
    local hk = p .. 'held:' .. F
    for _, id in ipairs(redis.call('ZRANGE', hk, 0, limit - released - 1)) do
      redis.call('ZREM', hk, id)
      local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'created_at')
      if h[1] == 'held' then
        due_now(p, id, 'held', h[2], now)
        released = released + 1
      end
    end
    if redis.call('EXISTS', hk) == 0 then redis.call('ZREM', p .. 'held', F) end
  end
end
local left = 0
if only ~= '' then left = redis.call('ZCARD', p .. 'held:' .. only) end
return {released, left}
