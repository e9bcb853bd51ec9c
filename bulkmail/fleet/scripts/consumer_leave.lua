-- A worker leaves a campaign: it is no longer alive (out of the workers set), and the
-- group forgets every consumer that holds nothing: this one, and those of workers that
-- were killed and whose chunks were all taken over. Deleting a consumer that holds
-- nothing loses nothing (XREADGROUP makes it again); one that still holds entries (given
-- back on a drain, or a live worker's) is kept. Worker heartbeats older than a day go too.
-- KEYS: 1 stream, 2 workers (sorted set); ARGV: 1 group, 2 this consumer.
-- Returns the number of consumers deleted.
local stream, workers, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
redis.call('ZREM', workers, me)
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 86400)
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, group)
if not ok then
  return 0  -- the campaign's stream or group is gone (expired): nothing to tidy
end
local gone = 0
for _, c in ipairs(consumers) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then
      name = c[i + 1]
    elseif c[i] == 'pending' then
      pending = c[i + 1]
    end
  end
  if name and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    gone = gone + 1
  end
end
return gone
