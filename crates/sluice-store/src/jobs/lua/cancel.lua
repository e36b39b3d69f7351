-- Cancel a job that is still queued. Answers 'ok' when it did, else the
-- status the job is in (which may itself be 'canceled').
-- KEYS[1] the job hash
-- ARGV[1] now, RFC 3339   ARGV[2] completion channel   ARGV[3] job id
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 'missing'
end
if status ~= 'queued' then
  return status
end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'ok'
