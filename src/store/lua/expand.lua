-- Makes the next page of an event's deliveries (fanout.lua), created
-- exactly once: the cursor (index phase and last endpoint id) lives in the
-- event record and moves in the same step as the page is written, so a
-- worker killed between pages loses nothing and repeats nothing: whoever
-- runs this next (any worker, from `expanding`) continues where the cursor
-- points.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, tenant, event id, now (ms), lease (ms), task name prefix,
--   attempts per task, then fresh job ids (one page at most).
-- Returns {'more' | 'done', then job id and task name of each delivery due
-- now}.
local p, t, eid, now, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local member = t .. '/' .. eid
local key = p .. 'ev:' .. t .. ':' .. eid
local h = redis.call('HMGET', key, 'state', 'type', 'payload', 'created_at', 'due', 'cursor', 'made')
if h[1] ~= 'expanding' then
  redis.call('ZREM', p .. 'expanding', member)
  return {'done'}
end
local phase, last = string.match(h[6], '^(%d+):(.*)$')
local ev = {t = t, eid = eid, typ = h[2], payload = h[3], created = tonumber(h[4]), due = tonumber(h[5] or 0), now = now}
local ids = {next = 8, last = #ARGV}
for i = 8, #ARGV do ids[i] = ARGV[i] end
local tasks = {prefix = ARGV[6], per = tonumber(ARGV[7]), n = 0}
local out = {'more'}
local made
phase, last, made = fan_out(p, ev, ids, tasks, tonumber(phase), last, 4 * (#ARGV - 7), out)
redis.call('HSET', key, 'cursor', phase .. ':' .. last, 'made', tonumber(h[7] or 0) + made)
if phase > 4 then
  redis.call('HSET', key, 'state', 'expanded')
  redis.call('ZREM', p .. 'expanding', member)
  out[1] = 'done'
else
  redis.call('ZADD', p .. 'expanding', now + lease, member)
end
return out
