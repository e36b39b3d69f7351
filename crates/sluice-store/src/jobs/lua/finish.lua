-- End a job, if it has not ended: the first end stands, later ones are no-ops.
-- KEYS[1] the job hash
-- ARGV[1] the terminal status   ARGV[2] now, RFC 3339
-- ARGV[3] completion channel    ARGV[4] job id
-- ARGV[5..] field, value pairs to set (result, usage, error, provider)
local status = redis.call('HGET', KEYS[1], 'status')
local to = ARGV[1]
if status == 'queued' then
  if to == 'queued' or to == 'running' then
    return 0
  end
elseif status == 'running' then
  if to ~= 'succeeded' and to ~= 'failed' and to ~= 'canceled' then
    return 0
  end
else
  return 0
end
-- One HSET for every field (the pairs from ARGV[5] on, unpacked).
redis.call('HSET', KEYS[1], 'status', to, 'finished_at', ARGV[2], unpack(ARGV, 5))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
