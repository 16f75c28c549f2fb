-- policy-extras.listener_domains: which domains the SMTP listeners take
-- mail for from clients that are not relay hosts, driven by KumoMTA's
-- listener_domains.toml.
--
--   local listener_domains = require 'policy-extras.listener_domains'
--   kumo.on('get_listener_domain',
--     listener_domains:setup { '/opt/petrel/etc/listener_domains.toml' })
--
-- The file (several merge in order; a later file's keys win, key by key):
--
--   ["example.com"]         relay_to = true        anyone may send to it; relayed
--   ["bounce.example.com"]  log_oob = "LogThenDrop" delivery status notifications
--                                                   are logged (OOB records), then dropped
--   ["fbl.example.com"]     log_arf = "LogThenDrop" feedback reports: Feedback records
--   ["send.example.com"]    relay_from = ["10.0.0.0/24"]
--                                                   these clients may relay anywhere when
--                                                   the sender's domain is send.example.com
--   ["*.example.com"]       every name below example.com (not example.com itself)
--   ["*"]                   every domain not listed
--   [listener."127.0.0.1:25"."example.com"]         only on that listener (the address
--                                                   the client connected to)
--
-- log_oob and log_arf take "Ignore", "LogThenDrop", "LogThenRelay", or a
-- boolean as before KumoMTA 2025.05 (false is Ignore, true LogThenRelay).
-- A block's keys are those of kumo.make_listener_domain; ttl is accepted
-- and ignored as in KumoMTA.  relay_from_authz needs SMTP AUTH, which
-- Petrel does not offer yet: it is refused, not ignored.
--
-- Lookup (KumoMTA's order): the domain in the listener's own blocks, then
-- in the general blocks, then the general "*".  Names are matched without
-- case.
--
-- Unlike KumoMTA, which re-reads the files every 5 minutes, the files are
-- read and every value built at setup, once per shard: a bad file fails
-- `petreld --validate` and the start, and a reload (SIGHUP) reads them
-- again.  A data file may also be given inline as a table.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local function block_name(file_name, listener, domain)
  if listener == '*' then
    return string.format('%s: [%q]', file_name, domain)
  end
  return string.format('%s: [listener.%q.%q]', file_name, listener, domain)
end

-- Merge one block into data[listener][domain]; where[...] remembers the
-- last block that touched it, for errors found when the value is built.
local function merge_block(file_name, listener, domain, params, data, where)
  local name = block_name(file_name, listener, domain)
  if type(params) ~= 'table' then
    error(string.format('%s: must be a table, got %s', name, type(params)), 0)
  end
  if params.relay_from_authz ~= nil then
    error(name .. ": 'relay_from_authz' needs SMTP AUTH, which Petrel does not support yet", 0)
  end
  local key = domain:lower()
  data[listener] = data[listener] or {}
  where[listener] = where[listener] or {}
  local merged = data[listener][key] or {}
  utils.merge_into(params, merged)
  data[listener][key] = merged
  where[listener][key] = name
end

local function load_file(file_name, data, where)
  local raw, label = file_name, '(inline table)'
  if type(file_name) ~= 'table' then
    raw, label = utils.load_data_file(file_name), file_name
  end
  for domain, params in pairs(raw) do
    if domain == 'listener' then
      if type(params) ~= 'table' then
        error(string.format("%s: 'listener' must be a table of listeners, got %s", label,
          type(params)), 0)
      end
      for listener, domains in pairs(params) do
        if type(domains) ~= 'table' then
          error(string.format('%s: [listener.%q] must be a table of domains, got %s', label,
            listener, type(domains)), 0)
        end
        for d, p in pairs(domains) do
          merge_block(label, listener, d, p, data, where)
        end
      end
    else
      merge_block(label, '*', domain, params, data, where)
    end
  end
end

-- Every merged block made into a make_listener_domain value once.
local function build(data, where)
  local built = {}
  for listener, domains in pairs(data) do
    built[listener] = {}
    for domain, params in pairs(domains) do
      local ok, value = pcall(kumo.make_listener_domain, params)
      if not ok then
        error(where[listener][domain] .. ': ' .. tostring(value), 0)
      end
      built[listener][domain] = value
    end
  end
  return built
end

local function lookup(built, domain, listener)
  local own = built[listener]
  local hit = own and utils.domain_lookup(own, domain)
  if hit ~= nil then
    return hit
  end
  local general = built['*']
  if general == nil then
    return nil
  end
  hit = utils.domain_lookup(general, domain)
  if hit ~= nil then
    return hit
  end
  return general['*']
end

function mod:setup(data_files)
  if mod.CONFIGURED then
    error('listener_domains module has already been configured', 2)
  end
  if type(data_files) ~= 'table' then
    error('listener_domains:setup takes a list of data files', 2)
  end
  local data, where = {}, {}
  for _, file_name in ipairs(data_files) do
    load_file(file_name, data, where)
  end
  local built = build(data, where)
  mod.CONFIGURED = { data_files = data_files }
  return function(domain, listener, conn_meta)
    return lookup(built, domain, listener)
  end
end

return mod
