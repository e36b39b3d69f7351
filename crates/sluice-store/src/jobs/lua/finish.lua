-- End jobs, each if it has not ended: the first end stands, later ones are
-- no-ops.
-- KEYS[i] the job hashes
-- ARGV[1] now, RFC 3339   ARGV[2] completion channel
-- Then, for each key in turn: its job id, the terminal status, the number
-- n of field, value pairs to set (result, usage, error, provider), and
-- those 2n values.
-- Answers one entry per key: 1 if this ended the job, else 0. The ids of
-- the jobs it ended are published together, separated by spaces.
local out, ended = {}, {}
local at = 3
for i, key in ipairs(KEYS) do
  local id, to = ARGV[at], ARGV[at + 1]
  local first = at + 3
  at = first + 2 * tonumber(ARGV[at + 2])
  local status = redis.call('HGET', key, 'status')
  local moves
  if status == 'queued' then
    moves = to ~= 'queued' and to ~= 'running'
  elseif status == 'running' then
    moves = to == 'succeeded' or to == 'failed' or to == 'canceled'
  else
    moves = false
  end
  if moves then
    -- One HSET for every field (this job's pairs, unpacked).
    redis.call('HSET', key, 'status', to, 'finished_at', ARGV[1], unpack(ARGV, first, at - 1))
    ended[#ended + 1] = id
    out[i] = 1
  else
    out[i] = 0
  end
end
if #ended > 0 then
  redis.call('PUBLISH', ARGV[2], table.concat(ended, ' '))
end
return out
