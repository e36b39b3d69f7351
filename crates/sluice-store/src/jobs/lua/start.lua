-- Start a job: queued (or running, on a redelivery) -> running, unless a
-- queued job's deadline has passed: then it expires instead.
-- KEYS[1] the job hash
-- ARGV[1] now, ms since the epoch   ARGV[2] now, RFC 3339
-- ARGV[3] the expiry error (JSON)   ARGV[4] completion channel   ARGV[5] job id
local fields = redis.call('HMGET', KEYS[1], 'status', 'deadline_ms')
local status, deadline = fields[1], fields[2]
if not status then
  return {'missing'}
end
if status == 'queued' then
  if deadline and tonumber(deadline) <= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'status', 'expired', 'finished_at', ARGV[2], 'error', ARGV[3])
    redis.call('PUBLISH', ARGV[4], ARGV[5])
    return {'expired'}
  end
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2])
  return {'started', tostring(redis.call('HINCRBY', KEYS[1], 'attempts', 1))}
end
if status == 'running' then
  return {'started', tostring(redis.call('HINCRBY', KEYS[1], 'attempts', 1))}
end
return {'done', status}
