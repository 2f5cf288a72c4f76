-- WORKAROUND(apalis-redis 1.0.0, APALIS.md #3): apalis keeps every finished
-- task's data, metadata hash and id in its done/dead sets forever (vacuum
-- does not trim them), so Redis grows by every job ever run. Our job records
-- hold the history; the queue's copies can go once a task has finished.
-- KEYS[1]: done or dead set, KEYS[2]: task data hash.
-- ARGV[1]: task metadata key prefix, ARGV[2]: how many to remove.
local ids = redis.call('SPOP', KEYS[1], ARGV[2])
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', ARGV[1] .. ':' .. id)
end
return #ids
