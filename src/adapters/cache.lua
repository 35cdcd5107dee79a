-- s3kv cache entry update. One call touches exactly KEYS[1] (cluster-safe), atomically.
--
-- Entry layout (a hash):  s = sequencer of the S3 event that wrote it (absent for reader fills)
--                         b = document body, e = etag              (live item)
--                         d = reason                               (tombstone, with a TTL)
-- ARGV[1] = 'put'  ARGV[2] = sequencer, ARGV[3] = etag,   ARGV[4] = body
-- ARGV[1] = 'tomb' ARGV[2] = sequencer, ARGV[3] = reason, ARGV[5] = ttl in ms
-- ARGV[1] = 'fill'                      ARGV[3] = etag,   ARGV[4] = body  (only if the key is absent)
-- ARGV[1] = 'del_if' ARGV[2..4] = the s, e, d the caller saw ('' for absent): delete only if nothing changed
-- Returns 1 when the entry changed, 0 when the change was stale (or the fill found an entry, or del_if a change).

-- Is sequencer a strictly newer than b? Right-pad the shorter with '0', compare bytes (not locale collation).
local function newer(a, b)
  if #a < #b then a = a .. string.rep('0', #b - #a) elseif #b < #a then b = b .. string.rep('0', #a - #b) end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end

local key, op = KEYS[1], ARGV[1]
if op ~= 'put' and op ~= 'tomb' and op ~= 'fill' and op ~= 'del_if' then
  return redis.error_reply('S3KV_SCRIPT_ERR unknown op ' .. tostring(op))
end
if op == 'fill' then
  if redis.call('EXISTS', key) == 1 then return 0 end
  redis.call('HSET', key, 'e', ARGV[3], 'b', ARGV[4])
  return 1
end

if op == 'del_if' then
  local fields = redis.call('HMGET', key, 's', 'e', 'd')
  if redis.call('EXISTS', key) == 0 then return 0 end
  for i = 1, 3 do
    if (fields[i] or '') ~= ARGV[i + 1] then return 0 end
  end
  redis.call('DEL', key)
  return 1
end

local current = redis.call('HGET', key, 's')
if current and not newer(ARGV[2], current) then return 0 end
redis.call('DEL', key)
if op == 'put' then
  redis.call('HSET', key, 's', ARGV[2], 'e', ARGV[3], 'b', ARGV[4])
else
  redis.call('HSET', key, 's', ARGV[2], 'd', ARGV[3])
  redis.call('PEXPIRE', key, ARGV[5])
end
return 1
