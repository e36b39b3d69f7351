-- Mark a job's pending claim live (its publish was confirmed).
-- KEYS[1] the in-flight pointer   ARGV[1] job id   ARGV[2] TTL, s
if redis.call('GET', KEYS[1]) == 'pending:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'live:' .. ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
