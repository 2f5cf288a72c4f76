-- Stores new jobs and indexes them, all or nothing per job.
-- ARGV[1]: key prefix, ARGV[2]: now (ms), then groups of five:
--   job id, spec JSON, group ('' = none), tag ('' = none), destination host.
-- Returns the number of jobs created (an id that exists already is skipped).
local p, now = ARGV[1], ARGV[2]
local created = 0
for i = 3, #ARGV, 5 do
  local id, group, tag, host = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = p .. 'job:' .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'spec', ARGV[i + 1], 'state', 'queued', 'created_at', now,
      'updated_at', now, 'attempts', 0, 'cycle', 0, 'cycle_attempts', 0, 'host', host,
      'group', group, 'tag', tag)
    redis.call('ZADD', p .. 'all', now, id)
    redis.call('ZADD', p .. 'state:queued', now, id)
    redis.call('ZADD', p .. 'host:' .. host, now, id)
    if group ~= '' then redis.call('ZADD', p .. 'group:' .. group, now, id) end
    if tag ~= '' then redis.call('ZADD', p .. 'tag:' .. tag, now, id) end
    created = created + 1
  end
end
return created
