-- Append one chunk of list rows to a campaign, atomically and idempotently.
-- KEYS: 1 meta, 2 state, 3 rec, 4 seen (dedupe key -> first line), 5 suppressed, 6 stream,
--       7 counts, 8 why (skip code\treason)
-- ARGV: 1 expected "through" (the last line already enqueued), 2 new through, 3 rows,
--       4 last (1: the list ends here), then 5 per row: id, key, why, rec json, row json.
-- A row is sendable unless `why` is set (invalid), its key is suppressed, or an earlier
-- row had the same key (duplicate). Returns {sendable, skipped, ignored}.
-- Each key is read and written with one command (not one per row), in row order.
--#include _many
local meta, st, rec, seen, supp, stream, counts, why =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local through = redis.call('HGET', meta, 'through') or '0'
if through ~= ARGV[1] then
  return redis.error_reply('BMSTALE another enqueue moved this campaign to line ' .. through)
end
local n = tonumber(ARGV[3])
local ids = {}
for i = 0, n - 1 do
  ids[i + 1] = ARGV[5 + i * 5]
end
local known = many('HMGET', st, ids)
-- Rows new to the campaign; of those, the valid ones are looked up by key.
local fresh, taken, valid, lower, keys = {}, {}, {}, {}, {}
local ignored = 0
for i = 0, n - 1 do
  local b = 5 + i * 5
  if known[i + 1] or taken[ARGV[b]] then
    ignored = ignored + 1
  else
    taken[ARGV[b]] = true
    fresh[#fresh + 1] = b
    if ARGV[b + 2] == '' then
      valid[b] = #keys + 1
      lower[#lower + 1] = string.lower(ARGV[b + 1])
      keys[#keys + 1] = ARGV[b + 1]
    end
  end
end
local suppressed = many('SMISMEMBER', supp, lower)
local first = many('HMGET', seen, keys)
local rows, states, recs, whys, claims, here = {}, {}, {}, {}, {}, {}
local skipped = 0
for _, b in ipairs(fresh) do
  local id, key, reason = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local j = valid[b]
  if j then
    local line = here[key] or first[j]
    if suppressed[j] == 1 then
      reason = 'suppressed\tthe address is on the suppression list'
    elseif line then
      reason = 'duplicate\tduplicate of line ' .. line
    else
      here[key] = id
      claims[#claims + 1] = key
      claims[#claims + 1] = id
    end
  end
  recs[#recs + 1] = id
  recs[#recs + 1] = ARGV[b + 3]
  states[#states + 1] = id
  if reason == '' then
    rows[#rows + 1] = ARGV[b + 4]
    states[#states + 1] = 'pending'
  else
    states[#states + 1] = 'skipped'
    whys[#whys + 1] = id
    whys[#whys + 1] = reason
    skipped = skipped + 1
  end
end
many('HSET', st, states)
many('HSET', rec, recs)
many('HSET', why, whys)
many('HSET', seen, claims)
if #rows > 0 then
  redis.call('XADD', stream, '*', 'rows', '[' .. table.concat(rows, ',') .. ']')
end
redis.call('HINCRBY', counts, 'pending', #rows)
redis.call('HINCRBY', counts, 'skipped', skipped)
redis.call('HINCRBY', counts, 'total', #rows + skipped)
redis.call('HSET', meta, 'through', ARGV[2])
if ARGV[4] == '1' then
  redis.call('HSET', meta, 'enqueued', '1')
end
return {#rows, skipped, ignored}
