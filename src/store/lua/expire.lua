-- Deletes finished jobs whose retention ran out, with every index entry,
-- so Redis does not grow without bound. Retention is counted from when a
-- job finished (`finished_at`), with the retention configured now.
--
-- There is no index by finish time: it would cost every job a write. The
-- finished states' own indexes are ordered by creation, and a job finishes
-- after it was created, so every job due for deletion is among those
-- created more than RETENTION ago: the walk covers that prefix, from a
-- cursor in `expire:<state>` past jobs that finished late (a long retry
-- history), and stops at the first younger job.
-- Jobs finished before this layout sit in the old `expiry` index, scored by
-- when their retention ends; they are deleted from it as before.
-- KEYS[1]: the shard's `all` index; every key touched shares its hash tag.
-- ARGV: prefix, now (ms), limit, retention of succeeded jobs (ms),
--       retention of failed jobs (ms).
-- Returns how many jobs were deleted.
local p, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = {succeeded = tonumber(ARGV[4]), failed = tonumber(ARGV[5])}

local function delete(id)
  local key = p .. 'job:' .. id
  local h = redis.call('HMGET', key, 'state', 'group', 'tag', 'host', 'ev', 'ep')
  if h[1] then
    if h[5] then redis.call('ZREM', p .. 'evd:' .. h[5], id) end
    if h[6] then redis.call('ZREM', p .. 'epd:' .. h[6], id) end
    redis.call('ZREM', p .. 'state:' .. h[1], id)
    if h[2] and h[2] ~= '' then redis.call('ZREM', p .. 'group:' .. h[2], id) end
    if h[3] and h[3] ~= '' then redis.call('ZREM', p .. 'tag:' .. h[3], id) end
    if h[4] then redis.call('ZREM', p .. 'host:' .. h[4], id) end
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', p .. 'due', id)
  redis.call('ZREM', p .. 'expiry', id)
  redis.call('DEL', key, key .. ':log')
end

local deleted = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'expiry', '-inf', now, 'LIMIT', 0, limit)) do
  delete(id)
  deleted = deleted + 1
end

for state, retention in pairs(keep) do
  local index, cursor = p .. 'state:' .. state, p .. 'expire:' .. state
  local start = tonumber(redis.call('GET', cursor) or '0')
  local entries = redis.call('ZRANGE', index, start, start + limit - 1, 'WITHSCORES')
  local kept, done = 0, #entries < 2 * limit
  for i = 1, #entries, 2 do
    local id, created = entries[i], tonumber(entries[i + 1])
    if created > now - retention then
      done = true
      break
    end
    local finished = tonumber(redis.call('HGET', p .. 'job:' .. id, 'finished_at') or created)
    if finished <= now - retention then
      delete(id)
      deleted = deleted + 1
    else
      kept = kept + 1
    end
  end
  if done then redis.call('DEL', cursor) else redis.call('SET', cursor, start + kept) end
end
return deleted
