-- Attach an answer to a filed prompt vector, if the vector is still there.
-- KEYS[1] the entry   ARGV[1] the answer   ARGV[2] TTL, s
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'answer', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
