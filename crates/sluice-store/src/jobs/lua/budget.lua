-- Take requests and tokens from a fleet-wide budget (a provider's limits,
-- or a tenant's), if they fit in the sliding window: 61 slots of a sixtieth
-- of the window each (a second for a minute) by the server's clock, so that
-- a grant leaves the window no sooner than a full window after it was made.
-- KEYS[1] the budget hash: fields "<slot>:r" and "<slot>:t"
-- ARGV[1] requests  ARGV[2] tokens  ARGV[3] requests/window (0: none)
-- ARGV[4] tokens/window (0: none)  ARGV[5] the slot's length in microseconds
-- Answers {granted (1 or 0), slots to wait, requests used, tokens used,
-- slots until the oldest use leaves the window}, the uses counting this
-- call when it was granted.
local slot_us = tonumber(ARGV[5])
local time = redis.call('TIME')
local now = math.floor((tonumber(time[1]) * 1000000 + tonumber(time[2])) / slot_us)
local need_r, need_t = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local oldest = now - 60
-- One read of the whole hash: it only ever holds the last minute or so.
local flat = redis.call('HGETALL', KEYS[1])
local rs, ts, stale = {}, {}, {}
for k = 1, 61 do
  rs[k] = 0
  ts[k] = 0
end
local used_r, used_t = 0, 0
for i = 1, #flat, 2 do
  local second, kind = string.match(flat[i], '^(%d+):(%a)$')
  second = tonumber(second)
  local value = tonumber(flat[i + 1]) or 0
  if second and second >= oldest and second <= now then
    local k = second - oldest + 1
    if kind == 'r' then
      rs[k] = rs[k] + value
      used_r = used_r + value
    else
      ts[k] = ts[k] + value
      used_t = used_t + value
    end
  elseif second and second < oldest then
    stale[#stale + 1] = flat[i]
  end
end
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
end
local function over(ur, ut)
  return (rpm > 0 and ur + need_r > rpm) or (tpm > 0 and ut > 0 and ut + need_t > tpm)
end
local function reset()
  for k = 1, 61 do
    if rs[k] > 0 or ts[k] > 0 then
      return k
    end
  end
  return 61
end
if over(used_r, used_t) then
  local ur, ut = used_r, used_t
  -- Slot k (oldest first) leaves the window k seconds from now.
  for k = 1, 61 do
    ur = ur - rs[k]
    ut = ut - ts[k]
    if not over(ur, ut) then
      return {0, k, used_r, used_t, reset()}
    end
  end
  return {0, 61, used_r, used_t, reset()}
end
redis.call('HINCRBY', KEYS[1], now .. ':r', need_r)
redis.call('HINCRBY', KEYS[1], now .. ':t', need_t)
redis.call('EXPIRE', KEYS[1], math.max(1, math.ceil(slot_us * 122 / 1000000)))
rs[61] = rs[61] + need_r
ts[61] = ts[61] + need_t
return {1, 0, used_r + need_r, used_t + need_t, reset()}
