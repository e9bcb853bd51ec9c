-- Record outcomes; a row already final is left untouched (idempotent on retry).
-- KEYS: 1 state, 2 counts, 3 possible_duplicate set, 4 out (outcome json), 5 sent per second
-- ARGV: 1 rows, then 4 per row: id, state, possible_duplicate (1/0), outcome json.
-- Rows are read with one HMGET and written with one command per key; a row named twice
-- sees its own earlier outcome, exactly as one command per row would.
--#include _many
local st, counts, pd, out, persec = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local final = {sent = true, failed = true, skipped = true, uncertain = true}
local n = tonumber(ARGV[1])
local ids = {}
for i = 0, n - 1 do
  ids[i + 1] = ARGV[2 + i * 4]
end
local cur = many('HMGET', st, ids)
local now, states, flagged, outs, delta = {}, {}, {}, {}, {}
local sent = 0
for i = 0, n - 1 do
  local b = 2 + i * 4
  local id, state = ARGV[b], ARGV[b + 1]
  local c = now[id]
  if c == nil then
    c = cur[i + 1]
  end
  if c and not final[c] then
    if c ~= state then
      states[#states + 1] = id
      states[#states + 1] = state
      delta[c] = (delta[c] or 0) - 1
      delta[state] = (delta[state] or 0) + 1
      now[id] = state
    end
    if ARGV[b + 2] == '1' then
      flagged[#flagged + 1] = id
    end
    outs[#outs + 1] = id
    outs[#outs + 1] = ARGV[b + 3]
    if state == 'sent' then
      sent = sent + 1
    end
  end
end
many('HSET', st, states)
for state, d in pairs(delta) do
  if d ~= 0 then
    redis.call('HINCRBY', counts, state, d)
  end
end
many('SADD', pd, flagged)
many('HSET', out, outs)
if sent > 0 then
  local t = redis.call('TIME')
  redis.call('HINCRBY', persec, t[1], sent)
  redis.call('EXPIRE', persec, 120)
end
return sent
