-- Workers take attempts under a lease: several tasks' claims in one call
-- (store::coalesce), each decided on its own.
-- A claim is refused (stale) when that attempt was already taken or the job
-- moved on, which makes duplicated queue tasks harmless: an attempt has one
-- holder at a time. A `delivering` job is re-taken only once its holder's
-- lease ran out (apalis re-runs a dead worker's task; reconcile.lua would
-- make the job due again otherwise); the old holder's result is then refused.
-- A claim passes flow control first (flow.lua): it may be parked instead
-- (`wait`, no attempt spent) or, for a disabled endpoint, held.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, now (ms), in-flight cap per destination host (0: none),
--       attempts at once to failing endpoints (0: no limit), then groups
--       of six: id, cycle, attempt, worker, claim token,
--       lease (ms).
-- Returns per claim: {'ok', spec, attempts so far, flow} | {'wait', why,
-- until (ms)} | {'held'} | {'stale', state} | {'missing'}; a delivery's
-- 'ok' adds its event's type, payload and creation time and its
-- endpoint's JSON ('' for what no longer exists).
local p, now = ARGV[1], tonumber(ARGV[2])
local limits = {host_cap = tonumber(ARGV[3]), failing = tonumber(ARGV[4])}
local out = {}
for i = 5, #ARGV, 6 do
  local id = ARGV[i]
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts', 'spec', 'created_at', 'attempts', 'lease_until',
    'ev', 'ep', 'waiting')
  local st = h[1]
  if not st then
    table.insert(out, {'missing'})
  elseif tonumber(h[2]) ~= tonumber(ARGV[i + 1]) or tonumber(h[3]) ~= tonumber(ARGV[i + 2]) - 1
      or (st == 'delivering' and tonumber(h[7] or 0) > now)
      or (st ~= 'delivering' and st ~= 'queued' and st ~= 'scheduled') then
    table.insert(out, {'stale', st})
  else
    local lease_until = now + tonumber(ARGV[i + 5])
    local F = flow_of(h[4], h[9])
    local ep = nil
    if h[9] then
      ep = redis.call('HMGET', p .. 'ep:' .. h[9], 'disabled', 'ordered', 'rate', 'cap', 'json')
    end
    local stop = gate(p, id, st, h[5], now, lease_until, F, ep, limits)
    if stop then
      table.insert(out, stop)
    else
      if st ~= 'delivering' then
        redis.call('ZREM', p .. 'state:' .. st, id)
        redis.call('ZADD', p .. 'state:delivering', h[5], id)
      end
      if st == 'scheduled' then
        redis.call('ZREM', p .. 'due', id)
        redis.call('HDEL', key, 'next_attempt_at')
      end
      if h[10] then
        redis.call('HDEL', key, 'waiting')
        redis.call('ZREM', p .. 'fw:' .. F, id)
      end
      redis.call('HSET', key, 'state', 'delivering', 'worker', ARGV[i + 3], 'updated_at', now,
        'claim', ARGV[i + 4], 'lease_until', lease_until)
      if h[8] then
        -- A delivery of an event: what to send is the event and the endpoint
        -- as they are now (current URL, secrets and headers).
        local e = redis.call('HMGET', p .. 'ev:' .. h[8], 'type', 'payload', 'created_at')
        table.insert(out, {'ok', h[4], h[6], F, e[1] or '', e[2] or '', e[3] or '', ep[5] or ''})
      else
        table.insert(out, {'ok', h[4], h[6], F})
      end
    end
  end
end
return out
