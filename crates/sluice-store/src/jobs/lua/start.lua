-- Start jobs: each queued (or running, on a redelivery) job -> running,
-- unless a queued job's deadline has passed: then it expires instead.
-- KEYS[i] the job hashes
-- ARGV[1] now, ms since the epoch   ARGV[2] now, RFC 3339
-- ARGV[3] the expiry error (JSON)   ARGV[4] completion channel
-- ARGV[4 + i] the id of the job in KEYS[i]
-- Answers one entry per key: 'started:<attempt>:<sent>' (the attempts
-- whose call left before, as '1,2'), 'expired', 'missing' or
-- 'done:<status>'. The ids of the jobs that expired are published together,
-- separated by spaces.
local now = tonumber(ARGV[1])
local out, expired = {}, {}
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, 'status', 'deadline_ms', 'attempts', 'sent')
  local status, deadline = fields[1], fields[2]
  local attempt = (tonumber(fields[3]) or 0) + 1
  if not status then
    out[i] = 'missing'
  elseif status == 'queued' and deadline and tonumber(deadline) <= now then
    redis.call('HSET', key, 'status', 'expired', 'finished_at', ARGV[2], 'error', ARGV[3])
    expired[#expired + 1] = ARGV[4 + i]
    out[i] = 'expired'
  elseif status == 'queued' then
    -- One HSET: the attempt is counted from the HMGET above.
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[2], 'attempts', attempt)
    out[i] = 'started:' .. attempt .. ':'
  elseif status == 'running' then
    redis.call('HSET', key, 'attempts', attempt)
    out[i] = 'started:' .. attempt .. ':' .. (fields[4] or '')
  else
    out[i] = 'done:' .. status
  end
end
if #expired > 0 then
  redis.call('PUBLISH', ARGV[4], table.concat(expired, ' '))
end
return out
