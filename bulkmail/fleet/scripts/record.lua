-- Record outcomes; a row already final is left untouched (idempotent on retry).
-- KEYS: 1 state, 2 counts, 3 possible_duplicate set, 4 out (outcome json), 5 sent per second
-- ARGV: 1 rows, then 4 per row: id, state, possible_duplicate (1/0), outcome json.
local st, counts, pd, out, persec = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local final = {sent = true, failed = true, skipped = true, uncertain = true}
local sent = 0
for i = 0, tonumber(ARGV[1]) - 1 do
  local b = 2 + i * 4
  local id, state = ARGV[b], ARGV[b + 1]
  local cur = redis.call('HGET', st, id)
  if cur and not final[cur] then
    if cur ~= state then
      redis.call('HSET', st, id, state)
      redis.call('HINCRBY', counts, cur, -1)
      redis.call('HINCRBY', counts, state, 1)
    end
    if ARGV[b + 2] == '1' then
      redis.call('SADD', pd, id)
    end
    redis.call('HSET', out, id, ARGV[b + 3])
    if state == 'sent' then
      sent = sent + 1
    end
  end
end
if sent > 0 then
  local now = redis.call('TIME')
  redis.call('HINCRBY', persec, now[1], sent)
  redis.call('EXPIRE', persec, 120)
end
return sent
