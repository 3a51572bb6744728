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

# One request over one or several keys, or a batch of requests over one key, each
# all or nothing: GCRA keys (a TAT string) and window keys (a sorted set of grants,
# member "<grant id>:<cost>", score the slot's time) side by side. Grants are placed
# in time order per key, so a window key only checks windows ending at the new slot
# (stepstream.ratelimiter.window has the same formulas and the reasons).
#
# KEYS: the state key of each limit.
# ARGV: K, R, then per key: kind (0 GCRA, 1 sliding, 2 aligned fixed), a, b, c, d, e, f
#   (GCRA: tolerance; window: limit, period, margin, phase, pace limit, pace span),
#   then per request:
#   max_wait, grant id, and the cost on each key (0: not taken from that key).
# Returns {now, wait_1, ..., wait_j[, -1, retry_after]} as RESERVE does.
RESERVE_MANY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local K = tonumber(ARGV[1])
local R = tonumber(ARGV[2])
local kind, pa, pb, pc, pd, pe, pf = {}, {}, {}, {}, {}, {}, {}
local tat, logs, added, last = {}, {}, {}, {}

local function span(k)
  if kind[k] == 1 then return pb[k] + pc[k] end
  return pb[k] + 2 * pc[k]
end

for k = 1, K do
  local base = 2 + (k - 1) * 7
  kind[k] = tonumber(ARGV[base + 1])
  pa[k] = tonumber(ARGV[base + 2])
  pb[k] = tonumber(ARGV[base + 3])
  pc[k] = tonumber(ARGV[base + 4])
  pd[k] = tonumber(ARGV[base + 5])
  pe[k] = tonumber(ARGV[base + 6])
  pf[k] = tonumber(ARGV[base + 7])
  added[k] = {}
  if kind[k] == 0 then
    tat[k] = tonumber(redis.call('GET', KEYS[k]) or '0')
  else
    local cut = now - span(k) - 1
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', string.format('%.0f', cut))
    local raw = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
    local log = {}
    for i = 1, #raw, 2 do
      log[#log + 1] = {tonumber(raw[i + 1]), tonumber(string.match(raw[i], ':(%d+)$') or '0')}
    end
    logs[k] = log
  end
end

local function sum_between(log, lo, hi)
  local total = 0
  for i = #log, 1, -1 do
    local at = log[i][1]
    if at < lo then break end
    if at < hi then total = total + log[i][2] end
  end
  return total
end

local function sliding(log, start, cost, limit, sp)
  local room = limit - cost
  local total = 0
  for i = #log, 1, -1 do
    local at = log[i][1]
    if at <= start - sp then break end
    total = total + log[i][2]
    if total > room then
      if at + sp + 1 > start then return at + sp + 1 end
      return start
    end
  end
  return start
end

local function earliest(k, cost)
  if kind[k] == 0 then
    local e = tat[k] + cost - pa[k]
    if e < now then e = now end
    return e
  end
  local log = logs[k]
  local start = now
  if #log > 0 and log[#log][1] > start then start = log[#log][1] end
  local limit, period, margin, phase = pa[k], pb[k], pc[k], pd[k]
  if pe[k] > 0 then start = sliding(log, start, cost, pe[k], pf[k] - 1) end
  if kind[k] == 1 then return sliding(log, start, cost, limit, period + margin) end
  local at = start
  while true do
    local moved = false
    local kw = math.floor((at - phase + margin) / period)
    while true do
      local lo = kw * period + phase - margin
      local hi = lo + period + 2 * margin
      if hi <= at then break end
      if sum_between(log, lo, hi) + cost > limit then
        at = hi
        moved = true
        break
      end
      kw = kw - 1
    end
    if not moved then return at end
  end
end

local out = {now}
local pos = 2 + K * 7
for r = 1, R do
  local max_wait = tonumber(ARGV[pos + 1])
  local id = ARGV[pos + 2]
  local slot = now
  for k = 1, K do
    local cost = tonumber(ARGV[pos + 2 + k])
    if cost > 0 then
      local e = earliest(k, cost)
      if e > slot then slot = e end
    end
  end
  if slot - now > max_wait then
    out[#out + 1] = -1
    out[#out + 1] = slot - now
    break
  end
  for k = 1, K do
    local cost = tonumber(ARGV[pos + 2 + k])
    if cost > 0 then
      if kind[k] == 0 then
        if tat[k] > slot then tat[k] = tat[k] + cost else tat[k] = slot + cost end
      else
        local log = logs[k]
        log[#log + 1] = {slot, cost}
        added[k][#added[k] + 1] = {slot, id .. ':' .. cost}
      end
      last[k] = true
    end
  end
  out[#out + 1] = slot - now
  pos = pos + 2 + K
end

for k = 1, K do
  if last[k] then
    if kind[k] == 0 then
      local ms = math.floor((tat[k] - now) / 1000) + 1000
      redis.call('SET', KEYS[k], string.format('%.0f', tat[k]), 'PX', ms)
    else
      for _, e in ipairs(added[k]) do
        redis.call('ZADD', KEYS[k], string.format('%.0f', e[1]), e[2])
      end
      local log = logs[k]
      local ttl = math.floor((log[#log][1] + span(k) - now) / 1000) + 1000
      redis.call('PEXPIRE', KEYS[k], ttl)
    end
  end
end
return out
"""

# KEYS[1]: a window key's grant log.  ARGV: grant id ('' for none), tokens reserved
# under it, tokens to add (> 0) or give back (< 0), and the window's span.  With a
# known grant its cost changes in place (it goes at zero); otherwise a charge is
# logged now and a give-back does nothing (which grant it was is unknown).
WINDOW_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[3])
local member = ARGV[1] .. ':' .. ARGV[2]
local at = false
if ARGV[1] ~= '' then at = redis.call('ZSCORE', KEYS[1], member) end
if at then
  redis.call('ZREM', KEYS[1], member)
  local cost = tonumber(ARGV[2]) + delta
  if cost > 0 then redis.call('ZADD', KEYS[1], at, ARGV[1] .. ':' .. cost) end
  return 1
end
if delta > 0 then
  local n = redis.call('INCR', KEYS[1] .. ':seq')
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), 'debt' .. n .. ':' .. delta)
  redis.call('PEXPIRE', KEYS[1] .. ':seq', math.floor(tonumber(ARGV[4]) / 1000) + 1000)
  local ttl = redis.call('PTTL', KEYS[1])
  local want = math.floor(tonumber(ARGV[4]) / 1000) + 1000
  if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
end
return 0
"""

# KEYS[1]: a window key's grant log, KEYS[2]: its pause marker.  ARGV: time of the
# entry relative to now, its cost, a name, the window's span, and "1" to set the
# pause marker for ARGV[6] microseconds.  Logs a grant nobody asked for: a hold (cost
# 0 at the pause's end: grants are placed in time order, so none goes before it), a
# full window after an outage, or tokens the API says someone else spent.
WINDOW_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = now + tonumber(ARGV[1])
local n = redis.call('INCR', KEYS[1] .. ':seq')
redis.call('ZADD', KEYS[1], string.format('%.0f', at), ARGV[3] .. n .. ':' .. ARGV[2])
local want = math.floor((at + tonumber(ARGV[4]) - now) / 1000) + 1000
local ttl = redis.call('PTTL', KEYS[1])
if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
redis.call('PEXPIRE', KEYS[1] .. ':seq', want)
if ARGV[5] == '1' then
  local left = redis.call('PTTL', KEYS[2])
  local ms = math.floor(tonumber(ARGV[6]) / 1000) + 1
  if left < ms then redis.call('SET', KEYS[2], '1', 'PX', ms) end
end
return 1
"""

# KEYS[1]: a window key's grant log, KEYS[2]: its pause marker.  ARGV[1]: the span.
# Returns {now, pause left in ms, time_1, cost_1, time_2, cost_2, ...} of the grants
# that still count.
WINDOW_PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local left = redis.call('PTTL', KEYS[2])
if left < 0 then left = 0 end
local cut = now - tonumber(ARGV[1]) - 1
local raw = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', cut), '+inf', 'WITHSCORES')
local out = {now, left}
for i = 1, #raw, 2 do
  out[#out + 1] = raw[i + 1]
  out[#out + 1] = string.match(raw[i], ':(%d+)$') or '0'
end
return out
"""
