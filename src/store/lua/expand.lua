-- Makes the next page of an event's deliveries: one job per matching
-- endpoint, created exactly once. The cursor (index phase and last
-- endpoint id) lives in the event record and moves in the same step as the
-- page is written, so a worker killed between pages loses nothing and
-- repeats nothing: whoever runs this next (any worker, from `expanding`)
-- continues where the cursor points.
-- Phases walk the tenant's matching indexes: endpoints of every type
-- without a filter, of this type without a filter, then the same two
-- with a filter (checked here, by filter.lua).
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, tenant, event id, now (ms), lease (ms), task name prefix,
--   attempts per task, then fresh job ids (one page at most).
-- Returns {'more' | 'done', then job id and task name of each delivery due
-- now}.
local p, t, eid, now, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local tprefix, per = ARGV[6], tonumber(ARGV[7])
local member = t .. '/' .. eid
local evref = t .. ':' .. eid
local key = p .. 'ev:' .. evref
local ev = redis.call('HMGET', key, 'state', 'type', 'payload', 'created_at', 'due', 'cursor', 'made')
if ev[1] ~= 'expanding' then
  redis.call('ZREM', p .. 'expanding', member)
  return {'done'}
end
local typ, created, due, made_before = ev[2], tonumber(ev[4]), tonumber(ev[5] or 0), tonumber(ev[7] or 0)
local phase, last = string.match(ev[6], '^(%d+):(.*)$')
phase = tonumber(phase)
local ix = p .. 'ix:' .. t .. ':'
local sets = {ix .. 'u:*', ix .. 'u:' .. typ, ix .. 'f:*', ix .. 'f:' .. typ}
local page = #ARGV - 7
local scheduled = due > now
local state = scheduled and 'scheduled' or 'queued'
local head = '{"v":1,"payload":{},"delivery":{"tenant":' .. cjson.encode(t) .. ',"event_id":' .. cjson.encode(eid)
  .. ',"event_type":' .. cjson.encode(typ) .. ',"endpoint_id":"'
local out = {'more'}
local made, looked, doc = 0, 0, nil
while phase <= 4 and made < page and looked < 4 * page do
  local want = page - made
  local lo = '-'
  if last ~= '' then lo = '(' .. last end
  local members = redis.call('ZRANGE', sets[phase], lo, '+', 'BYLEX', 'LIMIT', 0, want)
  for _, epid in ipairs(members) do
    looked = looked + 1
    last = epid
    local ep = redis.call('HMGET', p .. 'ep:' .. t .. ':' .. epid, 'url', 'host', 'filter')
    local ok = ep[1] and true or false
    if ok and phase >= 3 then
      if doc == nil then doc = cjson.decode(ev[3]) end
      ok = ep[3] and f_node(cjson.decode(ep[3]), doc) or false
    end
    if ok then
      made = made + 1
      local id = ARGV[7 + made]
      local jkey = p .. 'job:' .. id
      local spec = head .. epid .. '"},"to_url":' .. cjson.encode(ep[1]) .. '}'
      redis.call('HSET', jkey, 'spec', spec, 'state', state, 'created_at', now, 'updated_at', now,
        'attempts', 0, 'cycle', 0, 'cycle_attempts', 0, 'host', ep[2], 'ev', evref, 'ep', t .. ':' .. epid)
      if scheduled then
        redis.call('HSET', jkey, 'next_attempt_at', due)
        redis.call('ZADD', p .. 'due', due, id)
      else
        local task = tprefix .. '.' .. math.floor((made - 1) / per)
        redis.call('HSET', jkey, 'task', task)
        table.insert(out, id)
        table.insert(out, task)
      end
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('ZADD', p .. 'state:' .. state, now, id)
      redis.call('ZADD', p .. 'evd:' .. evref, now, id)
      redis.call('ZADD', p .. 'epd:' .. t .. ':' .. epid, created, id)
    end
    if made >= page then break end
  end
  if made < page and #members < want then
    phase = phase + 1
    last = ''
  end
end
redis.call('HSET', key, 'cursor', phase .. ':' .. last, 'made', made_before + made)
if phase > 4 then
  redis.call('HSET', key, 'state', 'expanded')
  redis.call('ZREM', p .. 'expanding', member)
  out[1] = 'done'
else
  redis.call('ZADD', p .. 'expanding', now + lease, member)
end
return out
