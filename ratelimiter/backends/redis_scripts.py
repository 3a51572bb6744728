"""The Lua scripts of the Redis back end: one atomic script per decision.

Each reads the clock with Redis TIME, so every sidecar of every replica decides
on one clock whatever the skew between their hosts, and applies the integer
GCRA formulas of `stepstream.ratelimiter.gcra` in microseconds. Python computes
every cost and tolerance exactly and passes integers, so the scripts only add,
compare and store. A key whose bucket is full is the same as a missing key,
so each key expires once its TAT has passed and idle limits leave nothing behind.

Lua numbers are doubles: integers stay exact up to 2^53 µs (285 years since
1970), and values are written back with %.0f, never the lossy default format.
"""

from __future__ import annotations

# KEYS[1]: the TAT.  ARGV: tolerance, then cost and max_wait of request 1, of request 2, ...
# Returns {now, wait_1, ..., wait_k[, -1, retry_after]}: the waits of the granted
# prefix, then -1 and the retry time of the first request that did not fit.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local tolerance = tonumber(ARGV[1])
local out = {now}
local granted = false
for i = 2, #ARGV - 1, 2 do
  local base = tat
  if base < now then base = now end
  local new_tat = base + tonumber(ARGV[i])
  local wait = new_tat - tolerance - now
  if wait < 0 then wait = 0 end
  if wait > tonumber(ARGV[i + 1]) then
    out[#out + 1] = -1
    out[#out + 1] = wait
    break
  end
  tat = new_tat
  granted = true
  out[#out + 1] = wait
end
if granted then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
end
return out
"""

# KEYS[1]: the TAT.  ARGV[1]: ticks to charge (> 0) or give back (< 0).
ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local delta = tonumber(ARGV[1])
if delta >= 0 then
  if tat < now then tat = now end
  tat = tat + delta
elseif tat > now then
  tat = tat + delta
  if tat < now then tat = now end
end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS[1]: the TAT, KEYS[2]: the pause marker.  ARGV: duration, tolerance, cost of one
# token, and "1" to set the marker (a reported 429) or "0" (a hand-back after an outage).
PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local duration = tonumber(ARGV[1])
local floor = now + duration + tonumber(ARGV[2]) - tonumber(ARGV[3])
if floor > tat then tat = floor end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
if ARGV[4] == '1' then
  local left = redis.call('PTTL', KEYS[2])
  local ms = math.floor(duration / 1000) + 1
  if left < ms then redis.call('SET', KEYS[2], '1', 'PX', ms) end
end
return 1
"""

# KEYS[1]: the TAT, KEYS[2]: the pause marker.  Returns {now, tat, pause left in ms}.
PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[2])
if left < 0 then left = 0 end
return {now, tat, left}
"""
