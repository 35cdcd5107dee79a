-- s3kv cache entry update. One call touches exactly KEYS[1] (cluster-safe), atomically.
--
-- An entry is one string, so that a read is a single GET (valkey.rs `Entry` encodes and decodes it):
--   s '\n' e '\n' d '\n' body
--   s = sequencer of the S3 event that wrote it (empty for reader fills)
--   e = etag and body = the document           (live item; d empty)
--   d = reason                                 (tombstone, with a TTL; e and body empty)
-- The caller builds the whole entry; this script only reads the header of the current one, with GETRANGE, so a
-- write never copies a stored body into Lua.
--
-- ARGV[1] = 'put'    ARGV[2] = sequencer, ARGV[3] = entry, ARGV[4] = PXAT in ms or ''
-- ARGV[1] = 'tomb'   ARGV[2] = sequencer, ARGV[3] = entry, ARGV[4] = ttl in ms
-- ARGV[1] = 'fill'                        ARGV[3] = entry, ARGV[4] = PXAT in ms or ''  (only if the key holds no entry)
-- A PXAT is an expiring item's: its expiry plus the tombstone TTL (valkey/mod.rs `keep_until` says why).
-- ARGV[1] = 'del_if' ARGV[2..4] = the s, e, d the caller saw: delete only if the entry still has them
-- Returns 1 when the entry changed, 0 when the change was stale (or the fill found an entry, or del_if a change).

-- Longest header valkey/entry.rs writes: a 64-digit sequencer, a 1024-byte etag and a short reason, with separators.
local HEADER_MAX = 1200

-- Is sequencer a strictly newer than b? Right-pad the shorter with '0', compare bytes (not locale collation).
local function newer(a, b)
  if #a < #b then a = a .. string.rep('0', #b - #a) elseif #b < #a then b = b .. string.rep('0', #a - #b) end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end

-- The current entry's s, e, d; nil when the key is absent or holds something that is not an s3kv entry (which
-- any write then replaces: SET overwrites a value of any type).
local function header(key)
  local head = redis.pcall('GETRANGE', key, 0, HEADER_MAX)
  if type(head) ~= 'string' then return nil end
  return string.match(head, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n')
end

local key, op = KEYS[1], ARGV[1]
-- SET, with the entry's expiry when it has one (a SET without one also clears an older entry's).
local function set(entry, pxat)
  if pxat ~= nil and pxat ~= '' then
    redis.call('SET', key, entry, 'PXAT', pxat)
  else
    redis.call('SET', key, entry)
  end
end

if op == 'fill' then
  if header(key) ~= nil then return 0 end
  set(ARGV[3], ARGV[4])
  return 1
end

if op == 'del_if' then
  local s, e, d = header(key)
  if s == nil or s ~= ARGV[2] or e ~= ARGV[3] or d ~= ARGV[4] then return 0 end
  redis.call('DEL', key)
  return 1
end

if op ~= 'put' and op ~= 'tomb' then
  return redis.error_reply('S3KV_SCRIPT_ERR unknown op ' .. tostring(op))
end
local current = header(key)
if current and current ~= '' and not newer(ARGV[2], current) then return 0 end
if op == 'put' then
  set(ARGV[3], ARGV[4])
else
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
end
return 1
