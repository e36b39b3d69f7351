-- End a leader's claim; answer its followers. Nobody can follow it after.
-- A claim still pending ends too: its leader's worker may answer before the
-- API marks the claim live, and a claim made live after its leader ended
-- would take followers nobody ends (`confirm` finds nothing pending then).
-- KEYS[1] the in-flight pointer   KEYS[2] the leader's follower list
-- ARGV[1] leader id   ARGV[2] how long to keep the list, s
local held = redis.call('GET', KEYS[1])
if held == 'live:' .. ARGV[1] or held == 'pending:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
end
local followers = redis.call('LRANGE', KEYS[2], 0, -1)
if #followers > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return followers
