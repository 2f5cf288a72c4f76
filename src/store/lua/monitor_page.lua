-- One page of job summaries, newest first, for the monitor and the API.
-- Walks the most selective index among the filters by rank and checks the
-- other filters against each job's hash, at most BUDGET entries per call,
-- so a page never scans everything whatever the total.
-- Order is score (creation ms) descending, then id descending (the order
-- ZRANGE ... REV gives equal scores). A cursor is the last entry a page
-- looked at; the next page starts right after it, found by rank when the
-- entry is still in the index, else by binary search among its equal-score
-- neighbours (a job that changed state left the state index).
-- ARGV: prefix, cursor score ('' = first page), cursor id, limit, budget,
--       state, group, tag, host ('' = any).
-- Returns {next score or '', next id or '', then per job: id, state, group,
--          tag, host, created_at, updated_at, attempts, last_status,
--          last_error, next_attempt_at ('' = none)}.
local p, cs, cm = ARGV[1], ARGV[2], ARGV[3]
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local want = {ARGV[6], ARGV[7], ARGV[8], ARGV[9]}
local names = {'state:', 'group:', 'tag:', 'host:'}

-- Byte order, as Redis orders members (Lua's `<` follows the locale).
local function less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local key, best = p .. 'all', nil
for i = 1, 4 do
  if want[i] ~= '' then
    local k = p .. names[i] .. want[i]
    local n = redis.call('ZCARD', k)
    if best == nil or n < best then key, best = k, n end
  end
end

local pos = 0
if cs ~= '' then
  local r = redis.call('ZREVRANK', key, cm)
  local sc = r and redis.call('ZSCORE', key, cm)
  if r and tonumber(sc) == tonumber(cs) then
    pos = r + 1
  else
    local r0 = redis.call('ZCOUNT', key, '(' .. cs, '+inf')
    local lo, hi = 0, redis.call('ZCOUNT', key, cs, cs)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local m = redis.call('ZRANGE', key, r0 + mid, r0 + mid, 'REV')[1]
      if less(m, cm) then hi = mid else lo = mid + 1 end
    end
    pos = r0 + lo
  end
end

local out = {'', ''}
local found, scanned, last_id, last_score = 0, 0, nil, nil
local fields = {'state', 'group', 'tag', 'host', 'created_at', 'updated_at', 'attempts',
  'last_status', 'last_error', 'next_attempt_at'}
while found < limit and scanned < budget do
  local n = math.min(200, budget - scanned)
  local batch = redis.call('ZRANGE', key, pos, pos + n - 1, 'REV', 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id = batch[i]
    scanned = scanned + 1
    pos = pos + 1
    last_id, last_score = id, batch[i + 1]
    local h = redis.call('HMGET', p .. 'job:' .. id, unpack(fields))
    local ok = h[1] ~= false
    for f = 1, 4 do
      if ok and want[f] ~= '' and h[f] ~= want[f] then ok = false end
    end
    if ok then
      table.insert(out, id)
      for f = 1, #fields do table.insert(out, h[f] or '') end
      found = found + 1
      if found >= limit then break end
    end
  end
end
if last_id and #redis.call('ZRANGE', key, pos, pos, 'REV') > 0 then
  out[1], out[2] = last_score, last_id
end
return out
