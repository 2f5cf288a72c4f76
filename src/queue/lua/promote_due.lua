-- WORKAROUND(apalis-redis 1.0.0, APALIS.md #2): moves due tasks from the
-- scheduled set to the active list in bounded chunks. apalis's own fetch
-- script promotes *all* due ids with one `unpack`, which fails past ~8,000
-- ("too many results to unpack") and then fails on every fetch forever.
-- Every push goes through the scheduled set, so a backlog that built up
-- while workers were down triggers it. Keeping the due part of the set
-- below one chunk means apalis's unpack never sees more than that.
-- KEYS[1]: scheduled set, KEYS[2]: active list, KEYS[3]: signal list.
-- ARGV[1]: now (unix seconds, apalis's resolution), ARGV[2]: chunk size.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return #ids
