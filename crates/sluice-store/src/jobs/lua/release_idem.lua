-- Gives back an Idempotency-Key's claim, only if it is still held for the
-- job that gives it back (value "JOB|fingerprint"): a claim another request
-- took since is left alone.
-- KEYS[1]: the claim; ARGV[1]: the job id.
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|' then
  return redis.call('DEL', KEYS[1])
end
return 0
