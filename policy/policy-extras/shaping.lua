-- policy-extras.shaping: per-destination egress settings from KumoMTA's
-- shaping.toml.
--
--   local shaping = require 'policy-extras.shaping'
--   kumo.on('get_egress_path_config', shaping:setup { '/opt/petrel/etc/shaping.toml' })
--
-- The files (merged in order):
--
--   ["default"]                      make_egress_path options for every path
--   ["example.com"]                  options for the site example.com's MX
--                                    hosts roll up to (every domain on those
--                                    hosts shares them), or, with
--                                    mx_rollup = false, for that domain only
--   ["example.com".sources."ip-1"]   overrides when sending from source ip-1
--   [["example.com".automation]]     regex = "..." (or a list), action =
--                                    "Suspend" | { SetConfig = { name, value } }
--                                    (or a list), trigger = "Immediate" |
--                                    { Threshold = "3/min" }, duration = "1h"
--   [provider."name"]                match = [{ DomainSuffix = ".x.com" },
--                                    { MXSuffix = ".mx.x.com" }], options,
--                                    sources, automation, as a domain block
--
-- A later file's block is merged over an earlier one's, key by key, unless
-- it says replace_base = true.  For a path the options are taken in
-- KumoMTA's order, later winning: default, provider, site, domain, then the
-- source overrides of the site and of the domain.  Automation rules of all
-- of those apply; they run in the shard (shard_ready.c) against every
-- response of the path, and each action taken is logged.
--
-- Sites: a block with mx_rollup (the default) is keyed by the MX rollup
-- site of its domain, found with kumo.dns.lookup_mx at the first
-- get_egress_path_config after each load (one parallel lookup of every such
-- domain; a domain that does not resolve is left out with a warning, as
-- KumoMTA does).  MXSuffix is matched against the site name (all of the
-- site's MX hosts end with it); HostName matches are not supported yet.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local BLOCK_KEYS = { mx_rollup = true, replace_base = true, sources = true, automation = true }

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do
    out[k] = v
  end
  return out
end

-- One block as { params, sources, automation, mx_rollup, replace_base }.
local function parse_block(where, raw)
  if type(raw) ~= 'table' then
    error(string.format('%s: must be a table', where), 0)
  end
  local b = { params = {}, sources = {}, automation = {}, mx_rollup = true, replace_base = false }
  for k, v in pairs(raw) do
    if k == 'mx_rollup' or k == 'replace_base' then
      if type(v) ~= 'boolean' then
        error(string.format("%s: '%s' must be a boolean", where, k), 0)
      end
      b[k] = v
    elseif k == 'sources' then
      if type(v) ~= 'table' then
        error(string.format("%s: 'sources' must be a table of source blocks", where), 0)
      end
      for name, opts in pairs(v) do
        if type(opts) ~= 'table' then
          error(string.format('%s: sources."%s" must be a table', where, name), 0)
        end
        b.sources[name] = copy(opts)
      end
    elseif k == 'automation' then
      if type(v) ~= 'table' then
        error(string.format("%s: 'automation' must be a list of rules", where), 0)
      end
      for i, rule in ipairs(v) do
        if type(rule) ~= 'table' then
          error(string.format('%s: automation rule %d must be a table', where, i), 0)
        end
        b.automation[#b.automation + 1] = rule
      end
    elseif k ~= 'match' then
      b.params[k] = v
    end
  end
  return b
end

local function merge_block(dst, src)
  if src.replace_base or not dst then
    return src
  end
  utils.merge_into(src.params, dst.params)
  for name, opts in pairs(src.sources) do
    dst.sources[name] = dst.sources[name] or {}
    utils.merge_into(opts, dst.sources[name])
  end
  for _, rule in ipairs(src.automation) do
    dst.automation[#dst.automation + 1] = rule
  end
  dst.mx_rollup = src.mx_rollup
  return dst
end

local function load(file_names)
  local data = { default = nil, domains = {}, order = {}, providers = {} }
  for _, file_name in ipairs(file_names) do
    local raw = utils.load_data_file(file_name)
    for key, value in pairs(raw) do
      if key == 'provider' then
        for name, block in pairs(value) do
          local where = string.format('%s: [provider."%s"]', file_name, name)
          local b = parse_block(where, block)
          b.match = {}
          for i, m in ipairs(block.match or {}) do
            if type(m) ~= 'table' then
              error(string.format('%s: match %d must be a table', where, i), 0)
            end
            if m.HostName then
              error(string.format('%s: HostName matches are not supported yet; use MXSuffix',
                where), 0)
            end
            if not (m.DomainSuffix or m.MXSuffix) then
              error(string.format('%s: match %d needs DomainSuffix or MXSuffix', where, i), 0)
            end
            b.match[#b.match + 1] = m
          end
          if #b.match == 0 then
            error(string.format("%s: 'match' is required", where), 0)
          end
          local old = data.providers[name]
          local merged = merge_block(old, b)
          merged.match = b.match
          data.providers[name] = merged
        end
      else
        local where = string.format('%s: ["%s"]', file_name, key)
        local b = parse_block(where, value)
        if key == 'default' then
          data.default = merge_block(data.default, b)
        else
          local d = key:lower()
          if not data.domains[d] then
            data.order[#data.order + 1] = d
          end
          data.domains[d] = merge_block(data.domains[d], b)
        end
      end
    end
  end
  return data
end

-- Check every block's options with make_egress_path now, so a bad option
-- fails --validate with its block named.
local function check(data)
  local function try(params, where)
    local ok, err = pcall(kumo.make_egress_path, params)
    if not ok then
      error(string.format('%s: %s', where, tostring(err)), 0)
    end
  end
  local function block(b, where)
    local p = copy(b.params)
    p.automation = #b.automation > 0 and b.automation or nil
    try(p, where)
    for name, opts in pairs(b.sources) do
      try(opts, string.format('%s.sources."%s"', where, name))
    end
  end
  if data.default then
    block(data.default, '["default"]')
  end
  for d, b in pairs(data.domains) do
    block(b, string.format('["%s"]', d))
  end
  for name, b in pairs(data.providers) do
    block(b, string.format('[provider."%s"]', name))
  end
end

local function ends_with(s, suffix)
  suffix = suffix:lower()
  if suffix:sub(1, 1) ~= '.' and s == suffix then
    return true
  end
  if suffix:sub(1, 1) ~= '.' then
    suffix = '.' .. suffix
  end
  return #s >= #suffix and s:sub(-#suffix) == suffix
end

local function provider_matches(p, domain, site)
  for _, m in ipairs(p.match) do
    if m.DomainSuffix and ends_with(domain, m.DomainSuffix) then
      return true
    end
    if m.MXSuffix and site and ends_with(site, m.MXSuffix) then
      return true
    end
  end
  return false
end

function mod:setup(file_names)
  if type(file_names) ~= 'table' then
    error('shaping:setup expects a list of data file names', 2)
  end
  local ok, data = pcall(function()
    local d = load(file_names)
    check(d)
    return d
  end)
  if not ok then
    error('shaping: ' .. tostring(data), 2)
  end

  local provider_names = {}
  for name in pairs(data.providers) do
    provider_names[#provider_names + 1] = name
  end
  table.sort(provider_names)

  -- Site of each mx_rollup domain block, resolved once per load.
  local by_site, by_domain = nil, {}
  for d, b in pairs(data.domains) do
    if not b.mx_rollup then
      by_domain[d] = b
    end
  end
  local function resolve_sites()
    by_site = {}
    local want = {}
    for _, d in ipairs(data.order) do
      if data.domains[d].mx_rollup then
        want[#want + 1] = d
      end
    end
    if #want == 0 then
      return
    end
    local answers = kumo.dns.lookup_mx(want)
    for _, d in ipairs(want) do
      local a = answers[d]
      if a.error then
        print(string.format('shaping: MX lookup for %s failed (%s); its block is left out', d,
          a.error))
      elseif a.site_name == '' then
        print(string.format(
          'shaping: %s has a null MX and cannot be used with mx_rollup=true; its block is left out',
          d))
      else
        by_site[a.site_name] = merge_block(by_site[a.site_name], data.domains[d])
      end
    end
  end

  return function(domain, egress_source, site_name)
    if not by_site then
      resolve_sites()
    end
    domain = (domain or ''):lower()
    local params, automation = {}, {}
    local function take(b)
      if b then
        utils.merge_into(b.params, params)
        for _, r in ipairs(b.automation) do
          automation[#automation + 1] = r
        end
      end
    end
    local function take_source(b)
      if b and egress_source then
        utils.merge_into(b.sources[egress_source], params)
      end
    end
    take(data.default)
    for _, name in ipairs(provider_names) do
      local p = data.providers[name]
      if provider_matches(p, domain, site_name) then
        take(p)
        take_source(p)
      end
    end
    local site = site_name and by_site[site_name] or nil
    local dom = by_domain[domain]
    take(site)
    take(dom)
    take_source(site)
    take_source(dom)
    if #automation > 0 then
      params.automation = automation
    end
    return kumo.make_egress_path(params)
  end
end

-- KumoMTA's newer entry point: { extra_files = {...}, publish = {...},
-- subscribe = {...}, ... } -> { get_egress_path_config, setup_publish }.
-- publish/subscribe name KumoMTA's TSA daemon, which Petrel does not need
-- (automation runs inside petreld): they are accepted and left unused, and
-- setup_publish only says so in the log.
-- KumoMTA's options; all but extra_files tune its TSA daemon link or its
-- data cache, which Petrel does not have.
local WITH_AUTOMATION_KEYS = {
  extra_files = true, no_default_files = true, publish = true, subscribe = true,
  pre_filter = true, skip_log_record_types = true, additional_skip_log_record_types = true,
  publish_timeout = true, publish_pool_idle_timeout = true, publish_connection_verbose = true,
  tsa_queue_config = true, cache_ttl = true, back_pressure = true,
  retry_shaping_data_fetch_on_populate_timeout = true, shaping_data_populate_timeout = true,
  allow_stale_shaping_data = true, load_validation_options = true,
}

function mod:setup_with_automation(options)
  if type(options) ~= 'table' then
    error('shaping:setup_with_automation expects a table of options', 2)
  end
  for k in pairs(options) do
    if not WITH_AUTOMATION_KEYS[k] then
      error(string.format("shaping:setup_with_automation: unknown option '%s'", tostring(k)), 2)
    end
  end
  local ok, get = pcall(mod.setup, mod, options.extra_files or {})
  if not ok then
    error(get, 2)
  end
  return {
    get_egress_path_config = get,
    setup_publish = function()
      if options.publish then
        print('policy-extras.shaping: automation runs inside petreld; the publish '
          .. 'URLs (a TSA daemon) are not used')
      end
    end,
  }
end

return mod
