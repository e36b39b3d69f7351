-- Answered entries in any of the buckets, at most ARGV[2] of them: those
-- in the most buckets first (they share the most bands of the signature,
-- so they are the likeliest to be near), the newest first among equals
-- (ids sort by time). Never an arbitrary subset of a crowded bucket.
-- KEYS[1..] bucket sets (one scope, so one hash tag and one slot)
-- ARGV[1] the entry-key prefix of the scope   ARGV[2] the most to answer
-- Entry keys share the buckets' hash tag, so they live in the same slot.
-- Answers vector, answer, text, vector, answer, text, ... (text false
-- for an entry filed without one).
--
-- Every id of the buckets is read (Redis runs nothing else meanwhile), so
-- the ranking is linear: ids are grouped by how many buckets they are in,
-- and only the groups reached are sorted, with the built-in order.
local shared, ids = {}, {}
for i = 1, #KEYS do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    local n = shared[id]
    if n then
      shared[id] = n + 1
    else
      shared[id] = 1
      ids[#ids + 1] = id
    end
  end
end
local groups = {}
for _, id in ipairs(ids) do
  local n = shared[id]
  local group = groups[n]
  if group then
    group[#group + 1] = id
  else
    groups[n] = { id }
  end
end
local out, found = {}, 0
local most = tonumber(ARGV[2])
for n = #KEYS, 1, -1 do
  local group = groups[n]
  if group then
    table.sort(group)
    for k = #group, 1, -1 do
      local entry = redis.call('HMGET', ARGV[1] .. group[k], 'vec', 'answer', 'text')
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
