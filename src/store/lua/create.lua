-- Stores new jobs and indexes them, all or nothing per job.
-- ARGV[1]: key prefix, ARGV[2]: now (ms), then pairs: job id, spec JSON.
-- Returns the number of jobs created (an id that exists already is skipped).
local p, now = ARGV[1], ARGV[2]
local created = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local key = p .. 'job:' .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'spec', ARGV[i + 1], 'state', 'queued', 'created_at', now,
      'updated_at', now, 'attempts', 0, 'cycle', 0, 'cycle_attempts', 0)
    redis.call('ZADD', p .. 'all', now, id)
    redis.call('ZADD', p .. 'state:queued', now, id)
    created = created + 1
  end
end
return created
