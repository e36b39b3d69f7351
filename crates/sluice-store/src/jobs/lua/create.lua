-- Write fresh job records, each kept for its own retention.
-- KEYS[i] the job hashes
-- ARGV, for each key in turn: its retention in seconds, the number n of
-- field, value pairs, and those 2n values.
local at = 1
for _, key in ipairs(KEYS) do
  local retention = ARGV[at]
  local first = at + 2
  at = first + 2 * tonumber(ARGV[at + 1])
  redis.call('HSET', key, unpack(ARGV, first, at - 1))
  redis.call('EXPIRE', key, retention)
end
return #KEYS
