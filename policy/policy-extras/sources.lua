-- policy-extras.sources: egress sources and pools from KumoMTA's sources.toml.
--
--   local sources = require 'policy-extras.sources'
--   sources:setup { '/opt/petrel/etc/sources.toml' }
--
-- The file (several merge in order; an entry may also be a Lua table of the
-- same shape instead of a file name, as KumoMTA allows):
--
--   [source."ip-1"]              any make_egress_source key but name (the
--   source_address = "10.0.0.1"  block's name is the source's): source_address,
--   ehlo_domain = "mta1.ex.com"  ehlo_domain, remote_port, ttl
--
--   [pool."BestReputation"]      a pool; each sub-block is one of its sources
--   [pool."BestReputation"."ip-1"]
--   weight = 2                   default 1; 0 keeps it in the pool, unused
--
-- A later file changes a source key by key and a pool entry's weight by
-- source name.  A pool's entries are ordered by source name, so the round
-- robin's order does not depend on table iteration.
--
-- setup reads every file and builds every source and pool at once (with
-- kumo.make_egress_source / kumo.make_egress_pool, which check each key),
-- on each shard: a syntax error (file:line:column), an unknown key, a bad
-- value or a pool naming a source that no file defines fails `petreld
-- --validate` and the start, and names the file.  (KumoMTA only prints the
-- undefined source from its validate_config; its pool then fails at
-- delivery time.)  It then registers the get_egress_source and
-- get_egress_pool handlers, which return the built values; a name the files
-- do not define gives nil, so a define_egress_source{} / define_egress_pool{}
-- made at init can still answer for it.  Unlike KumoMTA, which re-reads the
-- files every 5 minutes, the files are read at setup; a reload (SIGHUP)
-- reads them again.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local TOP = { source = 'table', pool = 'table' }
local ENTRY = { weight = 'number' }
local MAX_WEIGHT = 4294967295

local function quoted(name)
  return '"' .. tostring(name) .. '"'
end

-- One file (or inline table) into target.  `where` names it in errors.
local function load_one(data, where, target)
  utils.check_record(data, TOP, where)
  for name, params in pairs(data.source or {}) do
    local block = string.format('%s: [source.%s]', where, quoted(name))
    if type(params) ~= 'table' then
      error(string.format('%s: must be a table, got %s', block, type(params)), 0)
    end
    if params.name ~= nil and params.name ~= name then
      error(string.format("%s: 'name' must be the block's name (%s) or absent", block,
        quoted(name)), 0)
    end
    local s = target.sources[name] or {}
    utils.merge_into(params, s)
    s.name = name
    target.sources[name] = s
    target.where[name] = where
  end
  for pool, entries in pairs(data.pool or {}) do
    local block = string.format('%s: [pool.%s]', where, quoted(pool))
    if type(entries) ~= 'table' then
      error(string.format('%s: must be a table, got %s', block, type(entries)), 0)
    end
    local p = target.pools[pool] or {}
    for source, entry in pairs(entries) do
      local eblock = string.format('%s: [pool.%s.%s]', where, quoted(pool), quoted(source))
      utils.check_record(entry, ENTRY, eblock)
      local w = entry.weight
      if w ~= nil and (w ~= math.floor(w) or w < 0 or w > MAX_WEIGHT) then
        error(string.format("%s: 'weight' must be a whole number from 0 to %d, got %s", eblock,
          MAX_WEIGHT, tostring(w)), 0)
      end
      p[source] = w or 1
    end
    target.pools[pool] = p
    target.pool_where[pool] = where
  end
end

local function load_data(data_files)
  local target = { sources = {}, pools = {}, where = {}, pool_where = {} }
  for i, file in ipairs(data_files) do
    if type(file) == 'table' then
      load_one(file, string.format('(inline table %d)', i), target)
    else
      load_one(utils.load_data_file(file), file, target)
    end
  end
  return target
end

-- make_* values for every source and pool of the merged data.
local function build(target)
  local built = { sources = {}, pools = {} }
  for name, params in pairs(target.sources) do
    local ok, v = pcall(kumo.make_egress_source, params)
    if not ok then
      error(string.format('%s: [source.%s]: %s', target.where[name], quoted(name), v), 0)
    end
    built.sources[name] = v
  end
  for pool, weights in pairs(target.pools) do
    local where = string.format('%s: [pool.%s]', target.pool_where[pool], quoted(pool))
    local names = {}
    for source in pairs(weights) do
      if not target.sources[source] and source ~= 'unspecified' then
        error(string.format("%s: source '%s' is not defined by any [source.%s] block", where,
          source, quoted(source)), 0)
      end
      names[#names + 1] = source
    end
    table.sort(names)
    local entries = {}
    for i, source in ipairs(names) do
      entries[i] = { name = source, weight = weights[source] }
    end
    local ok, v = pcall(kumo.make_egress_pool, { name = pool, entries = entries })
    if not ok then
      error(string.format('%s: %s', where, v), 0)
    end
    built.pools[pool] = v
  end
  return built
end

function mod:setup(data_files)
  if mod.CONFIGURED then
    error('sources:setup: the sources module has already been configured', 2)
  end
  if type(data_files) ~= 'table' then
    error('sources:setup expects a list of data file names', 2)
  end
  local ok, built = pcall(function()
    return build(load_data(data_files))
  end)
  if not ok then
    error('sources: ' .. tostring(built), 2)
  end
  mod.CONFIGURED = { data_files = data_files, built = built }

  kumo.on('get_egress_source', function(source_name)
    return built.sources[source_name]
  end)
  kumo.on('get_egress_pool', function(pool_name)
    return built.pools[pool_name]
  end)
end

return mod
