-- Records attempts and moves each job to its next state: several workers'
-- results in one call (store::coalesce), each job in one step, so its
-- attempt log, state indexes and retry schedule never disagree.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- Then flow control learns the outcome (flow.lua: breaker, freed slot,
-- the next ordered delivery, per-endpoint stats).
-- ARGV: prefix, now (ms), minute bucket (unix minutes) for the per-minute
--       counters, BREAKER_FAILURES, BREAKER_COOLDOWN (ms), HOST_MAX_IN_FLIGHT,
--       then groups of
--       thirteen: id, cycle, attempt, next state, attempt JSON, last status
--       ('' = none), last error ('' = none), next attempt (ms, '' = none),
--       stop reason ('' = none; set when the job fails), claim token (what
--       claim.lua handed this attempt), its flow (as claim.lua named it),
--       what the attempt says about the receiver ('ok', 'fail' or ''),
--       duration (ms).
-- Returns per result {1, the flow's consecutive failed attempts, 'opened'
-- / 'closed' / '' (its breaker), then id, cycle, attempt of a delivery
-- handed the freed slot, which this worker is to make now}, or 0 when the attempt is not the one
-- this job is waiting for or its claim was taken away (the lease ran out
-- and the job went back to `scheduled`): a late worker must not overwrite
-- what came after it.
local p, now = ARGV[1], ARGV[2]
local cfg = {failures = tonumber(ARGV[4]), cooldown = tonumber(ARGV[5]), host_cap = tonumber(ARGV[6])}
local out = {}
local delivered, failed_attempts, failed = 0, 0, 0
for i = 7, #ARGV, 13 do
  local id = ARGV[i]
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts', 'created_at', 'claim', 'attempts',
    'last_status', 'last_error', 'stop_reason', 'next_attempt_at')
  if h[1] ~= 'delivering' or tonumber(h[2]) ~= tonumber(ARGV[i + 1])
     or tonumber(h[3]) ~= tonumber(ARGV[i + 2]) - 1 or h[5] ~= ARGV[i + 9] then
    table.insert(out, 0)
  else
    local nxt = ARGV[i + 3]
    local n = tonumber(h[6] or 0) + 1
    -- The attempt log lives in the job's hash, one field `log:<n>` per
    -- attempt, so recording an attempt is part of the one HSET. It keeps the
    -- latest 100 (`attempts` keeps the count), so a job requeued again and
    -- again cannot grow without bound or be read whole.
    local set = {'attempts', n, 'cycle_attempts', ARGV[i + 2], 'state', nxt, 'updated_at', now,
      'log:' .. n, ARGV[i + 4]}
    -- The claim's fields (`claim`, `worker`, `lease_until`) stay: they
    -- mean nothing once the job is no longer `delivering`, and the next
    -- claim overwrites them. Fields are deleted only when present, so the
    -- common first-attempt success costs no HDEL.
    local del = {}
    if n > 100 then table.insert(del, 'log:' .. (n - 100)) end
    local function put(field, v, present)
      if v ~= '' then
        table.insert(set, field)
        table.insert(set, v)
      elseif present then
        table.insert(del, field)
      end
    end
    put('last_status', ARGV[i + 5], h[7])
    put('last_error', ARGV[i + 6], h[8])
    put('stop_reason', ARGV[i + 8], h[9])
    if nxt == 'scheduled' then
      put('next_attempt_at', ARGV[i + 7], true)
    else
      put('finished_at', now, true)
      put('next_attempt_at', '', h[10])
    end
    -- The index first: a script that fails half-way keeps what it wrote,
    -- and failing here writes nothing.
    redis.call('ZADD', p .. 'state:' .. nxt, h[4], id)
    redis.call('ZREM', p .. 'state:delivering', id)
    redis.call('HSET', key, unpack(set))
    if #del > 0 then redis.call('HDEL', key, unpack(del)) end
    if nxt == 'scheduled' then
      redis.call('ZADD', p .. 'due', ARGV[i + 7], id)
      failed_attempts = failed_attempts + 1
    else
      -- Retention needs no index of its own: expire.lua walks the finished
      -- states' indexes.
      if nxt == 'succeeded' then
        delivered = delivered + 1
      else
        failed_attempts = failed_attempts + 1
        failed = failed + 1
      end
    end
    local F = ARGV[i + 10]
    local entry = {1, 0, ''}
    local fails, change = after_attempt(p, id, F, ARGV[i + 11], nxt, tonumber(now), cfg, tonumber(ARGV[i + 12]),
      string.sub(F, 1, 2) ~= 'h:', entry)
    entry[2] = fails
    entry[3] = change
    table.insert(out, entry)
  end
end
-- Per-minute counters for the monitor's chart, kept two hours: once per
-- call, not per job.
if delivered + failed_attempts > 0 then
  local bucket = p .. 'stats:' .. ARGV[3]
  if delivered > 0 then redis.call('HINCRBY', bucket, 'delivered', delivered) end
  if failed_attempts > 0 then redis.call('HINCRBY', bucket, 'failed_attempts', failed_attempts) end
  if failed > 0 then redis.call('HINCRBY', bucket, 'failed', failed) end
  redis.call('EXPIRE', bucket, 7200)
end
return out
