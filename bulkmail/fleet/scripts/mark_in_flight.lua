-- Rows are about to be sent: pending -> in_flight, all or none.
-- KEYS: 1 state, 2 counts, 3 first attempt times
-- ARGV: 1 retry (1: this call may already have been applied before a lost answer),
--       2 time stamp, then row ids.
local st, counts, first = KEYS[1], KEYS[2], KEYS[3]
for i = 3, #ARGV do
  local s = redis.call('HGET', st, ARGV[i])
  if s ~= 'pending' and not (ARGV[1] == '1' and s == 'in_flight') then
    return redis.error_reply('BMNOTPENDING row ' .. ARGV[i] .. ' is ' .. tostring(s))
  end
end
local moved = 0
for i = 3, #ARGV do
  if redis.call('HGET', st, ARGV[i]) == 'pending' then
    redis.call('HSET', st, ARGV[i], 'in_flight')
    moved = moved + 1
  end
  redis.call('HSETNX', first, ARGV[i], ARGV[2])
end
redis.call('HINCRBY', counts, 'pending', -moved)
redis.call('HINCRBY', counts, 'in_flight', moved)
return moved
