-- Writing an event's deliveries (after filter.lua): one job per matching
-- endpoint, walking the tenant's matching indexes in phases from a cursor.
-- Shared by event_accept.lua (small fan-outs, written with the event) and
-- expand.lua (the pages of large ones).
-- Phases: endpoints of every type without a filter, of this type without a
-- filter, then the same two with a filter (checked here).

-- `ev`: {t, eid, typ, payload, created, due, now}; `ids`: fresh job ids,
-- used from ids.next up to ids.last; `tasks`: {prefix, per, n} names the
-- queue tasks, `per` attempts each, numbered across the whole call;
-- `budget`: index entries to look at, at most. Returns the phase and last
-- id reached (phase 5: done), the count made, and appends each delivery due
-- now (job id, task) to `out`.
local function fan_out(p, ev, ids, tasks, phase, last, budget, out)
  local t, eid = ev.t, ev.eid
  local evref = t .. ':' .. eid
  local ix = p .. 'ix:' .. t .. ':'
  local sets = {ix .. 'u:*', ix .. 'u:' .. ev.typ, ix .. 'f:*', ix .. 'f:' .. ev.typ}
  local scheduled = ev.due > ev.now
  local state = scheduled and 'scheduled' or 'queued'
  local head = '{"v":1,"payload":{},"delivery":{"tenant":' .. cjson.encode(t) .. ',"event_id":' .. cjson.encode(eid)
    .. ',"event_type":' .. cjson.encode(ev.typ) .. ',"endpoint_id":"'
  local made, looked, doc = 0, 0, nil
  while phase <= 4 and ids.next <= ids.last and looked < budget do
    local want = ids.last - ids.next + 1
    local lo = '-'
    if last ~= '' then lo = '(' .. last end
    local members = redis.call('ZRANGE', sets[phase], lo, '+', 'BYLEX', 'LIMIT', 0, want)
    for _, epid in ipairs(members) do
      looked = looked + 1
      last = epid
      local ep = redis.call('HMGET', p .. 'ep:' .. t .. ':' .. epid, 'url', 'host', 'filter', 'ordered')
      local ok = ep[1] and true or false
      if ok and phase >= 3 then
        if doc == nil then doc = cjson.decode(ev.payload) end
        ok = ep[3] and f_node(cjson.decode(ep[3]), doc) or false
      end
      if ok then
        local id = ids[ids.next]
        ids.next = ids.next + 1
        made = made + 1
        local jkey = p .. 'job:' .. id
        local spec = head .. epid .. '"},"to_url":' .. cjson.encode(ep[1]) .. '}'
        redis.call('HSET', jkey, 'spec', spec, 'state', state, 'created_at', ev.now, 'updated_at', ev.now,
          'attempts', 0, 'cycle', 0, 'cycle_attempts', 0, 'host', ep[2], 'ev', evref, 'ep', t .. ':' .. epid)
        if scheduled then
          redis.call('HSET', jkey, 'next_attempt_at', ev.due)
          redis.call('ZADD', p .. 'due', ev.due, id)
        else
          local task = tasks.prefix .. '.' .. math.floor(tasks.n / tasks.per)
          tasks.n = tasks.n + 1
          redis.call('HSET', jkey, 'task', task)
          table.insert(out, id)
          table.insert(out, task)
        end
        redis.call('ZADD', KEYS[1], ev.now, id)
        redis.call('ZADD', p .. 'state:' .. state, ev.now, id)
        redis.call('ZADD', p .. 'evd:' .. evref, ev.now, id)
        redis.call('ZADD', p .. 'epd:' .. t .. ':' .. epid, ev.created, id)
        if ep[4] == '1' then
          -- An ordered endpoint's deliveries go in the order they are made
          -- (flow.lua's gate).
          local F = t .. ':' .. epid
          redis.call('ZADD', p .. 'ord:' .. F, redis.call('HINCRBY', p .. 'fl:' .. F, 'seq', 1), id)
        end
        if ids.next > ids.last then break end
      end
    end
    if ids.next <= ids.last and #members < want then
      phase = phase + 1
      last = ''
    end
  end
  return phase, last, made
end
