-- Recipients sent in the last 24 hours (GetSendQuota's SentLast24Hours), on Redis' clock.
-- KEYS: 1 hash: hour (epoch hours) -> recipients sent. ARGV: 1 recipients just sent (0: read).
-- Returns the sum over the current hour and the 23 before it.
local key, n = KEYS[1], tonumber(ARGV[1])
local hour = math.floor(tonumber(redis.call('TIME')[1]) / 3600)
if n > 0 then
  redis.call('HINCRBY', key, hour, n)
  redis.call('EXPIRE', key, 90000)
  return 0
end
local total = 0
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local h = tonumber(all[i])
  if h > hour - 24 then
    total = total + tonumber(all[i + 1])
  elseif h < hour - 25 then
    redis.call('HDEL', key, all[i])
  end
end
return total
