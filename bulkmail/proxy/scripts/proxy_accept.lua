-- The proxy accepts messages into Redis: all or nothing, and once (a retry after a lost
-- answer finds its first message stored and changes nothing).
-- KEYS: 1 state, 2 counts, 3 .. 2+M one key per message, then S lane streams.
-- ARGV: 1 M, 2 S, 3 keep (seconds a message's content and status are kept),
--       4 first row id, 5 rows, 6 accepted at (epoch seconds),
--       then 6 per message: client, api, first row id, emails (JSON), spec (JSON), raw ('' none),
--       then 2 per stream entry: stream index (1 .. S), rows (JSON, the fleet's chunk format).
-- Returns the backlog after the accept: recipients pending or in flight, every instance's.
--#include _many
local st, counts = KEYS[1], KEYS[2]
local M, S, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first, rows = tonumber(ARGV[4]), tonumber(ARGV[5])
local function backlog()
  local c = redis.call('HMGET', counts, 'pending', 'in_flight')
  return (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0)
end
if M > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  return backlog()
end
local states, n = {}, 0
for id = first, first + rows - 1 do
  states[n + 1], states[n + 2] = id, 'pending'
  n = n + 2
end
many('HSET', st, states)
local a = 7
for i = 1, M do
  local key = KEYS[2 + i]
  redis.call('HSET', key, 'client', ARGV[a], 'api', ARGV[a + 1], 'first', ARGV[a + 2],
    'emails', ARGV[a + 3], 'spec', ARGV[a + 4], 'raw', ARGV[a + 5], 'at', ARGV[6])
  redis.call('EXPIRE', key, keep)
  a = a + 6
end
while a <= #ARGV do
  redis.call('XADD', KEYS[2 + M + tonumber(ARGV[a])], '*', 'rows', ARGV[a + 1])
  a = a + 2
end
redis.call('HINCRBY', counts, 'pending', rows)
redis.call('HINCRBY', counts, 'total', rows)
return backlog()
