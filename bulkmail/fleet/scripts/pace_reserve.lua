-- The fleet's shared pacer: reserve up to `want` send slots on one provider account.
-- KEYS: 1 pacer hash (tat, e, cut_at), 2 daily counts hash (UTC day -> recipients)
-- ARGV: 1 want, 2 quota R (recipients/s), 3 headroom h, 4 recipients accepted since this
--       worker's last call, 5 daily limit (0: none), 6 horizon (s), 7 test clock ('' = TIME)
-- Slots are spaced T = 1 / (min(e, floor R) * (1 - h)) apart on Redis' clock, with no burst
-- allowance: every 1-second window holds at most floor(R (1 - h) (1 + s)) + 1 <= floor(R)
-- slots even when each is used up to s < h / (1 - h) late (see bulkmail/pacing/redis.py).
-- Returns {granted, start, T, e, now} (numbers as strings); granted 0: come back at
-- start - horizon; granted -1: the daily limit is used up.
local key, daily = KEYS[1], KEYS[2]
local want, R, h = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ok, limit, horizon = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now
if ARGV[7] ~= '' then
  now = tonumber(ARGV[7])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local K = math.max(1, math.floor(R))
local e = tonumber(redis.call('HGET', key, 'e') or R)
local cut_at = tonumber(redis.call('HGET', key, 'cut_at') or '-1e18')
if e > R then e = R end
if ok > 0 and e < R and now - cut_at >= 1 then
  -- additive recovery: 3 % of R per second of clean sending, fleet-wide
  e = math.min(R, e + 0.03 * R * ok / e)
end
local T = 1 / (math.min(e, K) * (1 - h))
local tat = tonumber(redis.call('HGET', key, 'tat') or '0')
local start = math.max(now, tat)
redis.call('HSET', key, 'e', string.format('%.17g', e))
redis.call('PEXPIRE', key, 86400000)
if start - now > horizon then
  return {0, string.format('%.17g', start), string.format('%.17g', T),
          string.format('%.17g', e), string.format('%.17g', now)}
end
local n = math.min(want, math.floor((now + horizon - start) / T) + 1)
if limit > 0 then
  local day = tostring(math.floor(now / 86400))
  local used = tonumber(redis.call('HGET', daily, day) or '0')
  if used >= limit then
    return {-1, string.format('%.17g', start), string.format('%.17g', T),
            string.format('%.17g', e), string.format('%.17g', now)}
  end
  n = math.min(n, limit - used)
  redis.call('HINCRBY', daily, day, n)
  redis.call('EXPIRE', daily, 172800)
end
redis.call('HSET', key, 'tat', string.format('%.17g', start + n * T))
return {n, string.format('%.17g', start), string.format('%.17g', T),
        string.format('%.17g', e), string.format('%.17g', now)}
