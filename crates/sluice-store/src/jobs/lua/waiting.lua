-- Mark what the running jobs wait on: ARGV[1] a tier (a provider batch,
-- where a job waits for hours and may still be canceled), or '' for
-- nothing (sent back to the queue: it is about to be called in real time).
-- A job not running is left alone.
-- KEYS[i] the job hashes
-- Answers the number of jobs marked.
local marked = 0
for _, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'status') == 'running' then
    if ARGV[1] == '' then
      redis.call('HDEL', key, 'tier')
    else
      redis.call('HSET', key, 'tier', ARGV[1])
    end
    marked = marked + 1
  end
end
return marked
