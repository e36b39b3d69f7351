-- Take an in-flight slot of an API key for a job, if the key holds fewer
-- than its cap. A slot expires `lease` after it was taken (its worker died
-- holding it), by the server's clock.
-- KEYS[1] the key's slots (a sorted set: job id -> expiry in ms)
-- ARGV[1] the job  ARGV[2] the cap  ARGV[3] the lease in ms
-- Answers 1 (taken, or already held by the job) or 0 (the key is full).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or
   redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
return 0
