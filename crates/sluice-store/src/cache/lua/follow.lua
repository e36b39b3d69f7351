-- File a follower on a live leader's list.
-- KEYS[1] the in-flight pointer   KEYS[2] the leader's follower list
-- ARGV[1] leader id   ARGV[2] the follower's message   ARGV[3] TTL, s
if redis.call('GET', KEYS[1]) == 'live:' .. ARGV[1] then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
