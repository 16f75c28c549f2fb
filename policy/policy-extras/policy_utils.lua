-- policy-extras.policy_utils: what the policy-extras helpers share (the
-- name is KumoMTA's).  Data files are TOML, read with kumo.toml_load, so a
-- syntax error names the file, line and column.  Shapes are checked with
-- small record specs instead of KumoMTA's typing module:
--
--   spec = { key = 'string' | 'number' | 'boolean' | 'list' | 'table'
--                  | { enum = { 'A', 'B' } } }
--
-- and an unknown key or a wrong type is an error naming the file and the
-- table it is in.
local kumo = require 'kumo'

local mod = {}

-- The TOML table of one file; a .json file is refused with a reason.
function mod.load_data_file(file_name)
  if type(file_name) ~= 'string' then
    error(string.format('data file names must be strings, got %s', type(file_name)), 0)
  end
  if file_name:match '%.json$' then
    error(string.format("%s: JSON data files are not supported; write it as TOML", file_name), 0)
  end
  return kumo.toml_load(file_name)
end

local function is_list(v)
  if type(v) ~= 'table' then
    return false
  end
  local n = 0
  for _ in pairs(v) do
    n = n + 1
  end
  return n == #v
end

local function type_ok(want, v)
  if type(want) == 'table' then
    for _, e in ipairs(want.enum) do
      if v == e then
        return true
      end
    end
    return false
  end
  if want == 'list' then
    return is_list(v)
  end
  return type(v) == want
end

local function type_name(want)
  if type(want) == 'table' then
    return 'one of "' .. table.concat(want.enum, '", "') .. '"'
  end
  return want == 'list' and 'a list' or ('a ' .. want)
end

-- Check tbl against spec; `where` names it ("file.toml: [domain.\"x\"]").
function mod.check_record(tbl, spec, where)
  if type(tbl) ~= 'table' then
    error(string.format('%s: must be a table, got %s', where, type(tbl)), 0)
  end
  local keys = {}
  for k in pairs(tbl) do
    keys[#keys + 1] = tostring(k)
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local want = spec[k]
    if want == nil then
      error(string.format("%s: unknown key '%s'", where, k), 0)
    end
    if not type_ok(want, tbl[k]) then
      error(string.format("%s: '%s' must be %s, got %s", where, k, type_name(want),
        type(tbl[k]) == 'string' and ('"' .. tbl[k] .. '"') or type(tbl[k])), 0)
    end
    if want == 'list' then
      for i, item in ipairs(tbl[k]) do
        if type(item) ~= 'string' then
          error(string.format("%s: '%s' item %d must be a string, got %s", where, k, i,
            type(item)), 0)
        end
      end
    end
  end
end

-- Copy src's keys over dst (later files win, key by key); src may be nil.
function mod.merge_into(src, dst)
  for k, v in pairs(src or {}) do
    dst[k] = v
  end
end

-- The value for `domain` in a map keyed by domain names, where a key
-- "*.example.com" matches every name below example.com (KumoMTA's
-- domain_map); an exact key wins over a wildcard, a longer wildcard over a
-- shorter one.  Keys of map must be lower case.
function mod.domain_lookup(map, domain)
  domain = domain:lower()
  local hit = map[domain]
  if hit ~= nil then
    return hit
  end
  local parent = domain:match '^[^.]*%.(.+)$'
  while parent do
    hit = map['*.' .. parent]
    if hit ~= nil then
      return hit
    end
    parent = parent:match '^[^.]*%.(.+)$'
  end
  return nil
end

return mod
