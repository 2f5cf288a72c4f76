-- Stores new jobs and indexes them, in one step for the whole batch.
-- ARGV[1]: key prefix, ARGV[2]: now (ms),
-- ARGV[3]: idempotency key ('' = none), ARGV[4]: request fingerprint,
-- ARGV[5]: idempotency TTL (ms), then groups of six per job:
--   job id, spec JSON, group ('' = none), tag ('' = none), destination host,
--   due time (ms; 0 or anything <= now = deliver now).
-- Returns {'new', created} or, when the idempotency key was seen before,
-- {'dup', fingerprint, job id, queued at (ms), its state now ('' = gone)}
-- and stores nothing.
local p, now = ARGV[1], tonumber(ARGV[2])
if ARGV[3] ~= '' then
  local idem = p .. 'idem:' .. ARGV[3]
  local seen = redis.call('HMGET', idem, 'fp', 'job_id', 'queued_at')
  if seen[1] then
    local st = redis.call('HGET', p .. 'job:' .. seen[2], 'state') or ''
    return {'dup', seen[1], seen[2], seen[3], st}
  end
  redis.call('HSET', idem, 'fp', ARGV[4], 'job_id', ARGV[6], 'queued_at', now)
  redis.call('PEXPIRE', idem, ARGV[5])
end
local created = 0
for i = 6, #ARGV, 6 do
  local id, group, tag, host, due = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local key = p .. 'job:' .. id
  if redis.call('EXISTS', key) == 0 then
    local state = 'queued'
    if due > now then state = 'scheduled' end
    redis.call('HSET', key, 'spec', ARGV[i + 1], 'state', state, 'created_at', now,
      'updated_at', now, 'attempts', 0, 'cycle', 0, 'cycle_attempts', 0, 'host', host,
      'group', group, 'tag', tag)
    if state == 'scheduled' then
      redis.call('HSET', key, 'next_attempt_at', due)
      redis.call('ZADD', p .. 'due', due, id)
    end
    redis.call('ZADD', p .. 'all', now, id)
    redis.call('ZADD', p .. 'state:' .. state, now, id)
    redis.call('ZADD', p .. 'host:' .. host, now, id)
    if group ~= '' then redis.call('ZADD', p .. 'group:' .. group, now, id) end
    if tag ~= '' then redis.call('ZADD', p .. 'tag:' .. tag, now, id) end
    created = created + 1
  end
end
return {'new', created}
