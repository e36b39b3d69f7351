-- Write fresh job records, each kept for the retention.
-- KEYS[i] the job hashes
-- ARGV[1] the retention in seconds
-- Then, for each key in turn: the number n of field, value pairs, and those
-- 2n values.
local retention = ARGV[1]
local at = 2
for _, key in ipairs(KEYS) do
  local first = at + 1
  at = first + 2 * tonumber(ARGV[at])
  redis.call('HSET', key, unpack(ARGV, first, at - 1))
  redis.call('EXPIRE', key, retention)
end
return #KEYS
