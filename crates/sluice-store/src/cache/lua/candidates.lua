-- Answered entries in any of the buckets, at most ARGV[2] of them.
-- KEYS[1..] bucket sets (one scope, so one hash tag and one slot)
-- ARGV[1] the entry-key prefix of the scope   ARGV[2] the most to answer
-- Entry keys share the buckets' hash tag, so they live in the same slot.
-- Answers vector, answer, text, vector, answer, text, ... (text false
-- for an entry filed without one).
local seen, out, found = {}, {}, 0
local most = tonumber(ARGV[2])
for i = 1, #KEYS do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if not seen[id] then
      seen[id] = true
      local entry = redis.call('HMGET', ARGV[1] .. id, 'vec', 'answer', 'text')
      if entry[1] and entry[2] then
        out[#out + 1] = entry[1]
        out[#out + 1] = entry[2]
        out[#out + 1] = entry[3] or ''
        found = found + 1
        if found >= most then
          return out
        end
      end
    end
  end
end
return out
