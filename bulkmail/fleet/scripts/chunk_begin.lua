-- A worker takes up a chunk (new, or reclaimed from a worker that stopped answering).
-- KEYS: 1 state, 2 possible_duplicate set, 3 counts, 4 out (outcome json)
-- ARGV: 1 at_most_once (1/0), 2 the time stamp for rows held uncertain, then row ids.
-- Per row, one letter: p pending (send), d was in flight (send again, flagged
-- possible_duplicate), u was in flight and is now held uncertain (at-most-once),
-- x final already (skip).
local st, pd, counts, out = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local codes = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local s = redis.call('HGET', st, id)
  if s == 'pending' then
    codes[#codes + 1] = (redis.call('SISMEMBER', pd, id) == 1) and 'd' or 'p'
  elseif s == 'in_flight' then
    redis.call('SADD', pd, id)
    redis.call('HINCRBY', counts, 'in_flight', -1)
    if ARGV[1] == '1' then
      redis.call('HSET', st, id, 'uncertain')
      redis.call('HINCRBY', counts, 'uncertain', 1)
      redis.call('HSET', out, id, '{"error_code":"interrupted","error":"the worker ' ..
        'stopped while this request was in flight: it may have been sent",' ..
        '"finished_at":"' .. ARGV[2] .. '"}')
      codes[#codes + 1] = 'u'
    else
      redis.call('HSET', st, id, 'pending')
      redis.call('HINCRBY', counts, 'pending', 1)
      codes[#codes + 1] = 'd'
    end
  else
    codes[#codes + 1] = 'x'
  end
end
return table.concat(codes)
