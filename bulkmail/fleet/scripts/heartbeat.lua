-- A live worker keeps the chunks it holds: reset their idle time (only those it still
-- owns: a chunk reclaimed by another worker is never taken back), and say it is alive.
-- KEYS: 1 stream, 2 workers (sorted set: worker -> last heartbeat, Redis time)
-- ARGV: 1 group, 2 consumer, then entry ids. Returns the ids another worker now owns.
local stream, workers, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local now = redis.call('TIME')
redis.call('ZADD', workers, now[1], me)
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == me then
    redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID')
  elseif p[1] then
    lost[#lost + 1] = ARGV[i]  -- reclaimed by another worker (an acknowledged one is just done)
  end
end
return lost
