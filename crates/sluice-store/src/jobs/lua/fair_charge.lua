-- Charge tenants' virtual counters of one priority class, and read some.
-- KEYS[1] the class's counters (a hash: tenant -> units)
-- ARGV[1] n, the charges; then n triples: tenant, units, floor (the
-- counter is lifted to the floor before the units are added); then the
-- tenants to read.
-- Answers the counters of the tenants read, in order (0 for none).
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local tenant = ARGV[2 + i * 3]
  local units = tonumber(ARGV[3 + i * 3])
  local floor = tonumber(ARGV[4 + i * 3])
  local value = tonumber(redis.call('HGET', KEYS[1], tenant) or '0')
  if value < floor then value = floor end
  redis.call('HSET', KEYS[1], tenant, string.format('%d', value + units))
end
local out = {}
for i = 2 + n * 3, #ARGV do
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
end
-- Idle for a day, a class's counters start again from nothing.
redis.call('EXPIRE', KEYS[1], 86400)
return out
