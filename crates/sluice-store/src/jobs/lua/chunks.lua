-- Append to jobs' chunk logs (a streaming call's chunks) and wake their
-- readers.
-- KEYS[i]  the jobs' chunk logs (streams)
-- ARGV[1]  how long a log is kept after this append, in ms
-- ARGV[2]  the channel that wakes readers
-- then, for each key in order: its job id, its entry count n, and n
-- field/value pairs
-- Publishes the job ids, separated by spaces. Answers the entries appended.
local ttl, channel = ARGV[1], ARGV[2]
local at, appended, ids = 3, 0, {}
for _, key in ipairs(KEYS) do
  ids[#ids + 1] = ARGV[at]
  local n = tonumber(ARGV[at + 1])
  at = at + 2
  for _ = 1, n do
    redis.call('XADD', key, '*', ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  redis.call('PEXPIRE', key, ttl)
  appended = appended + n
end
if #ids > 0 then
  redis.call('PUBLISH', channel, table.concat(ids, ' '))
end
return appended
