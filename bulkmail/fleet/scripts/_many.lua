-- Included by the fleet's steps (a line `--#include _many`): one Redis command over a
-- list of arguments, sent in slices of 2,000 (Lua's unpack is bounded by its C stack;
-- an even slice never splits a field from its value), replies joined in order.
-- One call per step instead of one per row is what keeps Redis's CPU per recipient low.
local function many(cmd, key, items)
  local out = {}
  for i = 1, #items, 2000 do
    local part = redis.call(cmd, key, unpack(items, i, math.min(i + 1999, #items)))
    if type(part) == 'table' then
      for k = 1, #part do
        out[#out + 1] = part[k]
      end
    end
  end
  return out
end
