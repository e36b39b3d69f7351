-- Drop a job's pending claim (its publish failed).
-- KEYS[1] the in-flight pointer   ARGV[1] job id
if redis.call('GET', KEYS[1]) == 'pending:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
