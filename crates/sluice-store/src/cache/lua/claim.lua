-- Claim a request key for a job, unless an identical job holds it.
-- KEYS[1] the in-flight pointer   ARGV[1] job id   ARGV[2] pending TTL, ms
-- Answers 'leader', or the holder as 'pending:ID' / 'live:ID'.
local held = redis.call('GET', KEYS[1])
if held then
  return held
end
redis.call('SET', KEYS[1], 'pending:' .. ARGV[1], 'PX', ARGV[2])
return 'leader'
