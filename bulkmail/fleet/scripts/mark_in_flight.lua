-- Rows are about to be sent: pending -> in_flight, all or none.
-- KEYS: 1 state, 2 counts, 3 first attempt times
-- ARGV: 1 retry (1: this call may already have been applied before a lost answer),
--       2 time stamp, then row ids.
--#include _many
local st, counts, first = KEYS[1], KEYS[2], KEYS[3]
local ids, seen = {}, {}
for i = 3, #ARGV do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    ids[#ids + 1] = ARGV[i]
  end
end
local cur = many('HMGET', st, ids)
for i = 1, #ids do
  local s = cur[i]
  if s ~= 'pending' and not (ARGV[1] == '1' and s == 'in_flight') then
    return redis.error_reply('BMNOTPENDING row ' .. ids[i] .. ' is ' .. tostring(s))
  end
end
local began = many('HMGET', first, ids)
local moving, starts = {}, {}
for i = 1, #ids do
  if cur[i] == 'pending' then
    moving[#moving + 1] = ids[i]
    moving[#moving + 1] = 'in_flight'
  end
  if not began[i] then
    starts[#starts + 1] = ids[i]
    starts[#starts + 1] = ARGV[2]
  end
end
many('HSET', st, moving)
many('HSET', first, starts)
local moved = #moving / 2
redis.call('HINCRBY', counts, 'pending', -moved)
redis.call('HINCRBY', counts, 'in_flight', moved)
return moved
