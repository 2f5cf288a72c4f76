-- Flow control: what stands between a claimed attempt and its receiver.
-- Prepended (after lib.lua) to claim.lua and finish.lua, so the gate and
-- what reopens it are written once. See store::flows for the keys.
--
-- A flow is one endpoint (`<tenant>:<endpoint id>`) for deliveries of
-- events, or one destination (`h:<host[:port]>`) for plain jobs. Per flow,
-- under the shard's prefix:
--   fl:<F>   hash  (hosts) fast: its last attempt was quick;
--                  (endpoints) fails (consecutive failed attempts), open_until (ms,
--                  breaker open or half-open), probe (the half-open probe's
--                  job), seq (order of an ordered endpoint's deliveries)
--   fin:<F>  zset  attempts in flight, scored by their lease's end: a
--                  worker that died stops counting when its lease does
--   fw:<F>   zset  parked deliveries (jobs, for a host), by when they first waited
--   fr:<F>   zset  the last second's sends (rate limit), by time
--   ord:<F>  zset  an ordered endpoint's open deliveries, by `seq`
--   held:<F> zset  deliveries kept while the endpoint is disabled
--   held     zset  flows with held deliveries (shard-wide)
--   fin:failing zset attempts out to endpoints failing slowly (shard-wide), by lease end
--   fs:<F>:<10-minute bucket> hash  attempts by outcome and duration:
--                  field `<ok|fail|exhausted>:<duration bucket>`
--
-- A parked delivery waits without burning an attempt: `scheduled`, in
-- `due` at its wake time, or, waiting for a slot or its turn, `queued`
-- with its task spent (the reconciler's to rescue). Either way forward
-- does not depend on who parked it; a freed slot (handed straight to the
-- next in line) or a closing breaker is the fast path.

-- How long a parked delivery waits before looking again on its own when
-- nothing wakes it (ms). Wakes are the fast path; this is the backstop.
local PARK_BACKSTOP = 30000
-- A slot handed to a parked delivery (see hand_off) is its for this long
-- (ms); if the worker that took it does not use it, it lapses.
local HANDOFF_HOLD = 10000
-- A handed-off delivery is due again this long after (ms) in case the
-- worker that took it dies before claiming it.
local HANDOFF_BACKSTOP = 5000
-- Plain jobs: an attempt out this long (ms) shows its host hogging slots,
-- so HOST_MAX_IN_FLIGHT caps it (see the gate).
local HOST_SLOW = 1000
-- The rate limit's window, a little over a second (ms): sends are judged
-- when claimed, and the margin keeps a receiver from counting one too many
-- in a second when the network delays one send more than the next.
local RATE_WINDOW = 1050

-- A spread of up to `span` ms derived from the job id, so deliveries
-- parked together do not all come back in the same millisecond (scripts
-- may not use randomness).
local function spread(id, span)
  local h = 0
  for i = 1, #id do h = (h * 31 + string.byte(id, i)) % 1000003 end
  return h % span
end

-- The flow of a job: its endpoint, or its destination's host and port.
local function flow_of(spec, ep)
  if ep then return ep end
  local auth = string.match(spec, '"to_url":"%a+://([^/"?#]+)')
  return 'h:' .. (auth or '')
end

-- Parks a job (state `st`) until `wake` (ms), its attempt unspent.
-- Waiting for a slot or its turn, a `queued` job stays `queued`: a freed
-- slot hands it on (hand_off), and should that never come it is a queued
-- job whose task is gone, which the reconciler puts back on its way after
-- RECONCILE_AFTER. Anything else waits `scheduled`, due at `wake`.
-- Returns the reply to the worker.
local function park(p, id, st, created, now, F, why, wake)
  local key = p .. 'job:' .. id
  if not (st == 'queued' and (why == 'in_flight' or why == 'ordered')) then
    due_at(p, id, st, created, now, wake)
  end
  redis.call('HSET', key, 'waiting', why)
  redis.call('ZADD', p .. 'fw:' .. F, 'NX', now, id)
  return {'wait', why, tostring(wake)}
end

-- Keeps a delivery of a disabled endpoint: `held` until it is enabled
-- again or recovered (store::flows releases it).
local function hold(p, id, st, created, now, F)
  local key = p .. 'job:' .. id
  redis.call('ZREM', p .. 'state:' .. st, id)
  redis.call('ZADD', p .. 'state:held', created, id)
  redis.call('ZREM', p .. 'due', id)
  redis.call('HSET', key, 'state', 'held', 'updated_at', now)
  redis.call('HDEL', key, 'next_attempt_at', 'claim', 'lease_until', 'worker', 'waiting')
  redis.call('ZADD', p .. 'held:' .. F, created, id)
  redis.call('ZADD', p .. 'held', 'NX', now, F)
  redis.call('ZREM', p .. 'fw:' .. F, id)
  return {'held'}
end

-- Wakes up to `n` deliveries of flow F parked for a slot, the breaker or
-- their turn: due now. Those waiting for the rate limit are left alone
-- (they come back when their send fits), stale entries dropped.
local function wake_parked(p, F, n, now)
  local fw = p .. 'fw:' .. F
  local woken = 0
  for _, id in ipairs(redis.call('ZRANGE', fw, 0, 4 * n - 1)) do
    if woken >= n then break end
    local key = p .. 'job:' .. id
    local h = redis.call('HMGET', key, 'state', 'waiting', 'created_at')
    if (h[1] ~= 'scheduled' and h[1] ~= 'queued') or not h[2] then
      redis.call('ZREM', fw, id)
    elseif h[2] ~= 'rate_limit' then
      redis.call('ZREM', fw, id)
      due_now(p, id, h[1], h[3], now)
      woken = woken + 1
    end
  end
end

-- Gives a freed slot of flow F straight to delivery `id` (parked or
-- next in order): the slot is reserved for it in `fin`, and the worker
-- that freed it runs it at once (its reply names it), so a capped or
-- ordered flow never waits for a scheduler round. Appends id, cycle and
-- attempt to `out`.
local function hand_off(p, F, id, now, out)
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'cycle', 'cycle_attempts')
  redis.call('ZADD', p .. 'fin:' .. F, now + HANDOFF_HOLD, id)
  redis.call('ZREM', p .. 'fw:' .. F, id)
  if h[1] == 'scheduled' then
    redis.call('HSET', key, 'next_attempt_at', now + HANDOFF_BACKSTOP)
    redis.call('ZADD', p .. 'due', now + HANDOFF_BACKSTOP, id)
  end
  table.insert(out, id)
  table.insert(out, h[2])
  table.insert(out, tonumber(h[3]) + 1)
end

-- The first delivery of flow F parked for a slot or the breaker (not for
-- the rate limit: it comes back when its send fits); stale entries are
-- dropped on the way.
local function first_parked(p, F)
  local fw = p .. 'fw:' .. F
  for _, id in ipairs(redis.call('ZRANGE', fw, 0, 7)) do
    local h = redis.call('HMGET', p .. 'job:' .. id, 'state', 'waiting')
    if (h[1] ~= 'scheduled' and h[1] ~= 'queued') or not h[2] then
      redis.call('ZREM', fw, id)
    elseif h[2] ~= 'rate_limit' then
      return id
    end
  end
  return nil
end

-- The gate, for job `id` in state `st` about to be claimed with a lease
-- until `lease_until`. `ep` is the endpoint's hash (HMGET disabled,
-- ordered, rate, cap) for a delivery, nil for a plain job, whose in-flight
-- cap is `limits.host_cap` (0: none). `limits.failing`: attempts at once,
-- shard-wide, to endpoints whose last attempt failed (0: no such limit).
-- Returns nil to go ahead, or the reply.
local function gate(p, id, st, created, now, lease_until, F, ep, limits)
  local fl = p .. 'fl:' .. F
  local host_cap = limits.host_cap
  local cap = host_cap
  local rate = nil
  if ep then
    if ep[1] == '1' then return hold(p, id, st, created, now, F) end
    cap = tonumber(ep[4] or '10')
    rate = tonumber(ep[3] or '')
    if ep[2] == '1' then
      -- Ordered: only the oldest open delivery goes; the rest wait for it.
      local ord = p .. 'ord:' .. F
      if not redis.call('ZSCORE', ord, id) then
        redis.call('ZADD', ord, redis.call('HINCRBY', fl, 'seq', 1), id)
      end
      while true do
        local head = redis.call('ZRANGE', ord, 0, 0)[1]
        if head == id then break end
        local hs = redis.call('HGET', p .. 'job:' .. head, 'state')
        if hs and hs ~= 'succeeded' and hs ~= 'failed' then
          return park(p, id, st, created, now, F, 'ordered', now + PARK_BACKSTOP + spread(id, 1000))
        end
        -- Deleted or finished without passing through finish.lua.
        redis.call('ZREM', ord, head)
      end
    end
  end
  -- Breakers are per endpoint: plain jobs keep the original's contract
  -- (each fails after its MAX_RETRIES), and their per-host cap below is
  -- what keeps a dead host from starving the others.
  local b = {false, false, false}
  if ep then b = redis.call('HMGET', fl, 'open_until', 'probe', 'slow_fail') end
  if b[3] and limits.failing > 0 then
    -- An endpoint whose last attempt failed slowly (timed out, or answered
    -- an error after HOST_SLOW) shares a small budget of attempts with
    -- every other such one, so many dead endpoints at once cannot take
    -- every worker's slots before their breakers open. One that fails
    -- quickly holds no slot for long and is not held back.
    local failing = p .. 'fin:failing'
    if redis.call('ZCARD', failing) >= limits.failing then
      redis.call('ZREMRANGEBYSCORE', failing, '-inf', now)
      if redis.call('ZCARD', failing) >= limits.failing and not redis.call('ZSCORE', failing, id) then
        return park(p, id, st, created, now, F, 'failing', now + 1000 + spread(id, 2000))
      end
    end
    redis.call('ZADD', failing, lease_until, id)
  end
  if b[1] then
    local open_until = tonumber(b[1])
    if open_until > now then
      return park(p, id, st, created, now, F, 'breaker', open_until + spread(id, 1000))
    end
    -- Half-open: one probe at a time decides.
    if b[2] and b[2] ~= id then
      local ph = redis.call('HMGET', p .. 'job:' .. b[2], 'state', 'lease_until')
      if ph[1] == 'delivering' and tonumber(ph[2] or 0) > now then
        return park(p, id, st, created, now, F, 'breaker', now + PARK_BACKSTOP + spread(id, 1000))
      end
    end
    redis.call('HSET', fl, 'probe', id)
  end
  local fin = p .. 'fin:' .. F
  if cap and cap > 0 and not ep then
    -- A plain job's host is capped unless it has shown it answers quickly:
    -- its last attempt took less than HOST_SLOW (`fast`) and none is out
    -- longer than that now. A healthy host is never held back (and costs
    -- no parking); a new, dead or hanging one is.
    local fast = redis.call('HEXISTS', fl, 'fast') == 1
    if fast then
      local oldest = redis.call('ZRANGE', fin, 0, 0, 'WITHSCORES')[2]
      fast = not (oldest and tonumber(oldest) - (lease_until - now) <= now - HOST_SLOW)
    end
    if fast then cap = 0 end
  end
  if cap and cap > 0 then
    -- A slot handed to this delivery (or held by its earlier claim) is in
    -- `fin` already.
    local full = redis.call('ZCARD', fin) >= cap
    if full then
      -- Full, or holding attempts of workers that died: their leases ended.
      redis.call('ZREMRANGEBYSCORE', fin, '-inf', now)
      full = redis.call('ZCARD', fin) >= cap
    end
    if full and not redis.call('ZSCORE', fin, id) then
      return park(p, id, st, created, now, F, 'in_flight', now + PARK_BACKSTOP + spread(id, 1000))
    end
  end
  if rate then
    local fr = p .. 'fr:' .. F
    redis.call('ZREMRANGEBYSCORE', fr, '-inf', now - RATE_WINDOW)
    if redis.call('ZCARD', fr) >= rate then
      -- Come back when a send leaves the window: the k-th waiter when the
      -- k-th oldest does (a window later for each full window ahead).
      redis.call('ZADD', p .. 'fw:' .. F, 'NX', now, id)
      local k = redis.call('ZRANK', p .. 'fw:' .. F, id)
      local at = redis.call('ZRANGE', fr, k % rate, k % rate, 'WITHSCORES')
      local wake = tonumber(at[2] or now) + RATE_WINDOW * (1 + math.floor(k / rate))
      return park(p, id, st, created, now, F, 'rate_limit', wake)
    end
    redis.call('ZADD', fr, now, id .. ':' .. now)
  end
  if host_cap > 0 or (cap and cap > 0) then redis.call('ZADD', fin, lease_until, id) end
  return nil
end

-- After an attempt of job `id` on flow F was recorded, leaving it in state
-- `nxt`: counts it ('ok' / 'fail' / '' = says nothing about the receiver),
-- moves the breaker, frees the slot and wakes whoever waits for it.
-- `cfg`: {failures = BREAKER_FAILURES (0: no breaker), cooldown = ms,
-- host_cap = HOST_MAX_IN_FLIGHT}. A freed slot is handed on only while the
-- flow is under its cap (it may be over after a cap was lowered, or after
-- a host turned slow with many attempts out).
-- Appends to `handed` the delivery given the freed slot (hand_off).
-- Returns the flow's consecutive failures and 'opened' / 'closed' / ''.
local function after_attempt(p, id, F, verdict, nxt, now, cfg, dur, endpoint, handed)
  local fl = p .. 'fl:' .. F
  local freed = redis.call('ZREM', p .. 'fin:' .. F, id)
  if not endpoint then
    if freed == 0 then return 0, '' end
    -- A quick answer shows the host healthy, a slow one that it hogs slots.
    -- (An hour's TTL from when it was first seen quick keeps a record per
    -- host from outliving the host's traffic; a lapse costs one capped
    -- attempt.)
    if dur >= HOST_SLOW then
      redis.call('HDEL', fl, 'fast')
    elseif redis.call('HSETNX', fl, 'fast', 1) == 1 then
      redis.call('EXPIRE', fl, 3600)
    end
    -- A quick answer hands the slot on whatever the count (the host is not
    -- capped now: its jobs parked while it was new must not wait for the
    -- reconciler); a slow one only under the cap.
    if redis.call('EXISTS', p .. 'fw:' .. F) == 1
        and (dur < HOST_SLOW or redis.call('ZCARD', p .. 'fin:' .. F) < cfg.host_cap) then
      local next_id = first_parked(p, F)
      if next_id then hand_off(p, F, next_id, now, handed) end
    end
    return 0, ''
  end
  local fails, change = 0, ''
  local h = redis.call('HMGET', fl, 'fails', 'open_until', 'probe', 'slow_fail')
  -- It was admitted as a slowly failing endpoint's attempt (see the gate).
  if h[4] then redis.call('ZREM', p .. 'fin:failing', id) end
  if verdict == 'ok' then
    -- HDEL, not 0: a healthy endpoint keeps no flow record at all.
    if h[1] then redis.call('HDEL', fl, 'fails', 'slow_fail') end
    if h[2] then
      redis.call('HDEL', fl, 'open_until', 'probe')
      change = 'closed'
    end
  elseif verdict == 'fail' then
    fails = redis.call('HINCRBY', fl, 'fails', 1)
    if dur >= HOST_SLOW then
      if not h[4] then redis.call('HSET', fl, 'slow_fail', 1) end
    elseif h[4] then
      redis.call('HDEL', fl, 'slow_fail')
    end
    local open = h[2] and tonumber(h[2]) > now
    if cfg.failures > 0 and (h[3] == id or (fails >= cfg.failures and not open)) then
      redis.call('HSET', fl, 'open_until', now + cfg.cooldown)
      redis.call('HDEL', fl, 'probe')
      change = 'opened'
    end
  else
    fails = tonumber(h[1] or 0)
  end
  local next_id = nil
  if nxt ~= 'scheduled' and redis.call('ZREM', p .. 'ord:' .. F, id) == 1 then
    -- An ordered delivery is done: the next one goes now, if it waits.
    local head = redis.call('ZRANGE', p .. 'ord:' .. F, 0, 0)[1]
    if head then
      local hs = redis.call('HMGET', p .. 'job:' .. head, 'state', 'waiting')
      if (hs[1] == 'scheduled' or hs[1] == 'queued') and hs[2] then next_id = head end
    end
  elseif freed == 1 and change ~= 'opened' and redis.call('EXISTS', p .. 'fw:' .. F) == 1
      and redis.call('ZCARD', p .. 'fin:' .. F) < tonumber(redis.call('HGET', p .. 'ep:' .. F, 'cap') or '10') then
    next_id = first_parked(p, F)
  end
  if next_id then hand_off(p, F, next_id, now, handed) end
  if change == 'closed' then wake_parked(p, F, 10, now) end
  if verdict ~= '' then
    -- Per endpoint, per 10 minutes: attempts by outcome and duration
    -- (buckets 25% apart) for the stats API, kept a day and a bit. One
    -- field per pair keeps it one command per attempt.
    local bucket = p .. 'fs:' .. F .. ':' .. math.floor(now / 600000)
    local field = verdict
    if verdict == 'fail' and nxt == 'failed' then field = 'exhausted' end
    local d = 0
    if dur > 0 then d = math.floor(math.log(dur) / math.log(1.25)) + 1 end
    if redis.call('HINCRBY', bucket, field .. ':' .. d, 1) == 1 then redis.call('EXPIRE', bucket, 90000) end
  end
  return fails, change
end
