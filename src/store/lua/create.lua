-- Stores new jobs and indexes them: the jobs of several requests in one
-- call (store::coalesce), each request all or nothing on its idempotency key.
-- KEYS[1]: the shard's `all` index; every key written shares its hash tag.
-- ARGV[1]: key prefix, then one group per request:
--   now (ms), idempotency key ('' = none), request fingerprint,
--   idempotency TTL (ms), job count N, then N groups of seven:
--   job id, spec JSON, group ('' = none), tag ('' = none), destination host,
--   due time (ms; 0 or anything <= now = deliver now), the queue task that
--   will carry its first attempt ('' = none yet).
-- Ids are freshly minted (random), so a job is written without first
-- checking that it does not exist.
-- Returns one entry per request: {'new', created} or, when its idempotency
-- key was seen before, {'dup', fingerprint, job id, queued at (ms), its
-- state now ('' = gone), its first task ('' = none)}, having stored
-- nothing for that request.
local p = ARGV[1]
local out = {}
local i = 2
while i <= #ARGV do
  local now, ikey, fp, ttl, n = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local first = i + 5
  i = first + 7 * n
  local dup = nil
  if ikey ~= '' then
    local idem = p .. 'idem:' .. ikey
    local seen = redis.call('HMGET', idem, 'fp', 'job_id', 'queued_at')
    if seen[1] then
      local h = redis.call('HMGET', p .. 'job:' .. seen[2], 'state', 'task')
      dup = {'dup', seen[1], seen[2], seen[3], h[1] or '', h[2] or ''}
    else
      redis.call('HSET', idem, 'fp', fp, 'job_id', ARGV[first], 'queued_at', now)
      redis.call('PEXPIRE', idem, ttl)
    end
  end
  if dup then
    table.insert(out, dup)
  else
    local created = 0
    for j = first, i - 1, 7 do
      local id, group, tag, host, due = ARGV[j], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4], tonumber(ARGV[j + 5])
      local key = p .. 'job:' .. id
      local state = 'queued'
      if due > now then
        state = 'scheduled'
        redis.call('HSET', key, 'spec', ARGV[j + 1], 'state', state, 'created_at', now,
          'updated_at', now, 'attempts', 0, 'cycle', 0, 'cycle_attempts', 0, 'host', host,
          'group', group, 'tag', tag, 'next_attempt_at', due)
        redis.call('ZADD', p .. 'due', due, id)
      else
        redis.call('HSET', key, 'spec', ARGV[j + 1], 'state', state, 'created_at', now,
          'updated_at', now, 'attempts', 0, 'cycle', 0, 'cycle_attempts', 0, 'host', host,
          'group', group, 'tag', tag, 'task', ARGV[j + 6])
      end
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('ZADD', p .. 'state:' .. state, now, id)
      redis.call('ZADD', p .. 'host:' .. host, now, id)
      if group ~= '' then redis.call('ZADD', p .. 'group:' .. group, now, id) end
      if tag ~= '' then redis.call('ZADD', p .. 'tag:' .. tag, now, id) end
      created = created + 1
    end
    table.insert(out, {'new', created})
  end
end
return out
