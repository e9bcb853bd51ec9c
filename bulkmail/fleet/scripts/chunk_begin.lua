-- A worker takes up a chunk (new, or reclaimed from a worker that stopped answering).
-- KEYS: 1 state, 2 possible_duplicate set, 3 counts, 4 out (outcome json)
-- ARGV: 1 at_most_once (1/0), 2 the time stamp for rows held uncertain, then row ids.
-- Per row, one letter: p pending (send), d was in flight (send again, flagged
-- possible_duplicate), u was in flight and is now held uncertain (at-most-once),
-- x final already (skip). Row ids in a chunk are distinct (list lines, proxy rows).
--#include _many
local st, pd, counts, out = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
local cur = many('HMGET', st, ids)
local was = many('SMISMEMBER', pd, ids)
local codes, flag, states, outs = {}, {}, {}, {}
local interrupted = '{"error_code":"interrupted","error":"the worker stopped while this ' ..
  'request was in flight: it may have been sent","finished_at":"' .. ARGV[2] .. '"}'
local held = ARGV[1] == '1' and 'uncertain' or 'pending'
for i = 1, #ids do
  local s = cur[i]
  if s == 'pending' then
    codes[i] = (was[i] == 1) and 'd' or 'p'
  elseif s == 'in_flight' then
    flag[#flag + 1] = ids[i]
    states[#states + 1] = ids[i]
    states[#states + 1] = held
    if held == 'uncertain' then
      outs[#outs + 1] = ids[i]
      outs[#outs + 1] = interrupted
      codes[i] = 'u'
    else
      codes[i] = 'd'
    end
  else
    codes[i] = 'x'
  end
end
if #flag > 0 then
  many('SADD', pd, flag)
  many('HSET', st, states)
  many('HSET', out, outs)
  redis.call('HINCRBY', counts, 'in_flight', -#flag)
  redis.call('HINCRBY', counts, held, #flag)
end
return table.concat(codes)
