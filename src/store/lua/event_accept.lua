-- Stores events (several requests' at once: store::coalesce) and counts
-- the endpoints each matches, in one bounded step: endpoints without a
-- filter are counted from the index sizes, only those with a filter are
-- read. An event that matches no more endpoints than the fresh ids it came
-- with gets its deliveries here, in the same step (fanout.lua); a larger
-- one is left `expanding`, for workers to expand in pages (expand.lua).
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, expansion lease (ms), task name prefix, attempts per task,
--   then per event: its request's clock (ms), tenant, event id, event type,
--   payload JSON, due (ms; 0 or anything <= its clock = now), idempotency key ('' = none), request fingerprint,
--   idempotency TTL (ms), the source it was ingested from ('' = posted),
--   the raw request body, its headers (JSON), the provider's delivery id,
--   N, then N fresh job ids.
-- An ingested request is counted and logged for its source here, in the
-- same step as its event (see `store::sources`).
-- Returns per event {'new', event id, matched, created at, 'done' |
-- 'expand', then job id and task of each delivery made and due now} or,
-- for an event id (or idempotency key) seen before, {'dup', event id,
-- matched, created at} without storing anything, or {'conflict'} for a
-- reused idempotency key with another body.
local p, lease = ARGV[1], tonumber(ARGV[2])
local tasks = {prefix = ARGV[3], per = tonumber(ARGV[4]), n = 0}
local replies = {}
local i = 5
while i <= #ARGV do
  local now, t, eid, typ, payload = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local due, ikey, fp, ttl = tonumber(ARGV[i + 5]), ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local src, raw, headers, delivery, n_ids = ARGV[i + 9], ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], tonumber(ARGV[i + 13])
  local ids = {next = i + 14, last = i + 13 + n_ids}
  for j = ids.next, ids.last do ids[j] = ARGV[j] end
  i = ids.last + 1

  local reply = nil
  local idem = nil
  if ikey ~= '' then
    idem = p .. 'idem:' .. ikey
    local seen = redis.call('HMGET', idem, 'fp', 'event_id')
    if seen[1] then
      if seen[1] ~= fp then reply = {'conflict'} else eid = seen[2] end
    end
  end
  local key = p .. 'ev:' .. t .. ':' .. eid
  if not reply then
    local old = redis.call('HMGET', key, 'matched', 'created_at')
    if old[1] then reply = {'dup', eid, old[1], old[2]} end
  end
  if not reply then
    local ix = p .. 'ix:' .. t .. ':'
    local n = redis.call('ZCARD', ix .. 'u:*') + redis.call('ZCARD', ix .. 'u:' .. typ)
    local doc = nil
    for _, set in ipairs({ix .. 'f:*', ix .. 'f:' .. typ}) do
      for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
        local f = redis.call('HGET', p .. 'ep:' .. t .. ':' .. id, 'filter')
        if f then
          if doc == nil then doc = cjson.decode(payload) end
          if f_node(cjson.decode(f), doc) then n = n + 1 end
        end
      end
    end
    reply = {'new', eid, n, now, 'done'}
    local state, cursor, made = 'expanded', '5:', 0
    if n > n_ids then
      state, cursor = 'expanding', '1:'
      reply[5] = 'expand'
      redis.call('ZADD', p .. 'expanding', now + lease, t .. '/' .. eid)
    elseif n > 0 then
      -- Exactly n are made: stop the walk there.
      ids.last = ids.next + n - 1
      local ev = {t = t, eid = eid, typ = typ, payload = payload, created = now, due = due, now = now}
      local _, _, m = fan_out(p, ev, ids, tasks, 1, '', math.huge, reply)
      made = m
    end
    redis.call('HSET', key, 'type', typ, 'payload', payload, 'created_at', now, 'due', due, 'matched', n,
      'made', made, 'cursor', cursor, 'state', state)
    redis.call('ZADD', p .. 'evs:' .. t, now, eid)
    redis.call('ZADD', p .. 'evt:' .. t .. ':' .. typ, now, eid)
    redis.call('ZADD', p .. 'events', now, t .. '/' .. eid)
    if idem then
      redis.call('HSET', idem, 'fp', fp, 'event_id', eid)
      redis.call('PEXPIRE', idem, ttl)
    end
    if src ~= '' then
      redis.call('HSET', key, 'source', src, 'raw', raw, 'headers', headers, 'delivery', delivery)
    end
  end
  if src ~= '' then
    local result = reply[1] == 'new' and 'accepted' or 'duplicate'
    local stats = p .. 'sst:' .. src .. ':' .. math.floor(now / 300000)
    -- A field's first count may be its bucket's first: give it its expiry.
    if redis.call('HINCRBY', stats, result, 1) == 1 then redis.call('EXPIRE', stats, 7200) end
    local entry = {at = now, result = result, event_id = reply[2], bytes = #raw}
    if delivery ~= '' then entry.delivery_id = delivery end
    local log = p .. 'sreq:' .. src
    -- Trimmed back to 100 once it holds 150, not at every request.
    if redis.call('LPUSH', log, cjson.encode(entry)) > 150 then redis.call('LTRIM', log, 0, 99) end
    redis.call('EXPIRE', log, 604800)
  end
  table.insert(replies, reply)
end
return replies
