-- Append one chunk of list rows to a campaign, atomically and idempotently.
-- KEYS: 1 meta, 2 state, 3 rec, 4 seen (dedupe key -> first line), 5 suppressed, 6 stream,
--       7 counts, 8 why (skip code\treason)
-- ARGV: 1 expected "through" (the last line already enqueued), 2 new through, 3 rows,
--       4 last (1: the list ends here), then 5 per row: id, key, why, rec json, row json.
-- A row is sendable unless `why` is set (invalid), its key is suppressed, or an earlier
-- row had the same key (duplicate). Returns {sendable, skipped, ignored}.
local meta, st, rec, seen, supp, stream, counts, why =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local through = redis.call('HGET', meta, 'through') or '0'
if through ~= ARGV[1] then
  return redis.error_reply('BMSTALE another enqueue moved this campaign to line ' .. through)
end
local n = tonumber(ARGV[3])
local rows = {}
local skipped, ignored = 0, 0
for i = 0, n - 1 do
  local b = 5 + i * 5
  local id, key, reason, r, row = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  if redis.call('HSETNX', st, id, 'pending') == 0 then
    ignored = ignored + 1
  else
    redis.call('HSET', rec, id, r)
    if reason == '' then
      if redis.call('SISMEMBER', supp, string.lower(key)) == 1 then
        reason = 'suppressed\tthe address is on the suppression list'
      elseif redis.call('HSETNX', seen, key, id) == 0 then
        reason = 'duplicate\tduplicate of line ' .. redis.call('HGET', seen, key)
      end
    end
    if reason == '' then
      rows[#rows + 1] = row
    else
      redis.call('HSET', st, id, 'skipped')
      redis.call('HSET', why, id, reason)
      skipped = skipped + 1
    end
  end
end
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
