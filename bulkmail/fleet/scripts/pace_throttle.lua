-- A worker was throttled: slow the whole fleet on this account (at most once a second).
-- KEYS: 1 pacer hash. ARGV: 1 quota R, 2 test clock ('' = TIME).
-- The effective rate is cut by 0.7 (never below max(1, 5 % of R)); pace_reserve.lua
-- recovers it additively. Returns the effective rate as a string.
local key, R = KEYS[1], tonumber(ARGV[1])
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local e = tonumber(redis.call('HGET', key, 'e') or R)
local cut_at = tonumber(redis.call('HGET', key, 'cut_at') or '-1e18')
if now - cut_at >= 1 then
  e = math.max(math.min(R, math.max(1, 0.05 * R)), e * 0.7)
  redis.call('HSET', key, 'e', string.format('%.17g', e), 'cut_at', string.format('%.17g', now))
  redis.call('PEXPIRE', key, 86400000)
end
return string.format('%.17g', e)
