-- Cancel a job that is still queued, or running while it waits in a
-- provider batch (its line, if sent and answered anyway, is recorded as
-- the provider bills it). Answers 'ok' when it did, else the status the
-- job is in (which may itself be 'canceled').
-- KEYS[1] the job hash
-- ARGV[1] now, RFC 3339   ARGV[2] completion channel   ARGV[3] job id
local fields = redis.call('HMGET', KEYS[1], 'status', 'tier')
local status = fields[1]
if not status then
  return 'missing'
end
local waiting = status == 'running' and fields[2] == 'provider_batch'
if status ~= 'queued' and not waiting then
  return status
end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 'ok'
