-- Mark the jobs' current attempts as sent: their provider call is about to
-- leave. A job not running is left alone (it ended, or was canceled).
-- KEYS[i] the job hashes
-- Answers the number of jobs marked.
local marked = 0
for _, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, 'status', 'attempts', 'sent')
  if fields[1] == 'running' and fields[2] then
    local sent, attempt = fields[3] or '', fields[2]
    if not string.find(',' .. sent .. ',', ',' .. attempt .. ',', 1, true) then
      if sent == '' then sent = attempt else sent = sent .. ',' .. attempt end
      redis.call('HSET', key, 'sent', sent)
    end
    marked = marked + 1
  end
end
return marked
