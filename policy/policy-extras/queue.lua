-- policy-extras.queue: tenants, campaigns and per-queue settings from
-- KumoMTA's queues.toml.
--
--   local queue_module = require 'policy-extras.queue'
--   local queue_helper = queue_module:setup { '/opt/petrel/etc/queues.toml' }
--   kumo.on('smtp_server_message_received', function(msg)
--     queue_helper:apply(msg)
--   end)
--
-- The file (several merge in order; later keys win):
--
--   tenant_header = "X-Tenant"        remove_tenant_header = true
--   campaign_header = "X-Campaign"    remove_campaign_header = true
--   default_tenant = "default"
--   [tenant."name"]                   egress_pool, max_age, retry_interval,
--                                     max_message_rate, ... (queue options)
--   [queue.default]                   options for every queue
--   [queue."example.com"]             for that destination domain
--   [queue."example.com"."tenant"]    ... and that tenant
--   [queue."example.com"."tenant"."campaign"]
--
-- Options are make_queue_config's; for a queue they are taken in that order
-- (default, domain, tenant, domain+tenant, domain+tenant+campaign), later
-- ones winning, as KumoMTA resolves them.  setup registers the
-- get_queue_config handler, so a policy using it must not register its own.
--
-- Unlike KumoMTA (which re-reads the files every minute), the files are read
-- at setup and again on reload (SIGHUP), and every tenant and queue block is
-- checked with make_queue_config at setup, so a bad option fails
-- `petreld --validate` with its block named.  Not supported (refused by
-- name): scheduling_header (no scheduled sends yet) and require_authz
-- (Petrel has no SMTP AUTH yet).
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local OPTIONS = {
  tenant_header = 'string',
  remove_tenant_header = 'boolean',
  campaign_header = 'string',
  remove_campaign_header = 'boolean',
  default_tenant = 'string',
  scheduling_header = 'string',
  tenant = 'table',
  queue = 'table',
}

-- A queue option: anything that is not a nested block (protocol is a table
-- but an option).
local function is_option(name, value)
  return name == 'protocol' or type(value) ~= 'table'
end

local function options_of(block)
  local out = {}
  for k, v in pairs(block) do
    if is_option(k, v) then
      out[k] = v
    end
  end
  return out
end

local function merge_deep(src, dst)
  for k, v in pairs(src) do
    if type(v) == 'table' and not is_option(k, v) then
      dst[k] = dst[k] or {}
      merge_deep(v, dst[k])
    else
      dst[k] = v
    end
  end
end

local function load(file_names)
  local data = { options = {}, tenants = {}, queues = {} }
  for _, file_name in ipairs(file_names) do
    local raw = utils.load_data_file(file_name)
    utils.check_record(raw, OPTIONS, file_name)
    if raw.scheduling_header then
      error(file_name .. ": 'scheduling_header' is a KumoMTA option Petrel does not support yet",
        0)
    end
    for k, v in pairs(raw) do
      if k == 'tenant' then
        for name, opts in pairs(v) do
          if type(opts) ~= 'table' then
            error(string.format('%s: [tenant."%s"] must be a table', file_name, name), 0)
          end
          if opts.require_authz ~= nil then
            error(string.format(
              "%s: [tenant.\"%s\"]: 'require_authz' needs SMTP AUTH, which Petrel does not support yet",
              file_name, name), 0)
          end
          data.tenants[name] = data.tenants[name] or {}
          utils.merge_into(opts, data.tenants[name])
        end
      elseif k == 'queue' then
        for domain, block in pairs(v) do
          if type(block) ~= 'table' then
            error(string.format('%s: [queue."%s"] must be a table', file_name, domain), 0)
          end
          local key = domain == 'default' and domain or domain:lower()
          data.queues[key] = data.queues[key] or {}
          merge_deep(block, data.queues[key])
        end
      else
        data.options[k] = v
      end
    end
  end
  return data
end

local function resolve(data, domain, tenant, campaign)
  local params, any = {}, false
  local function take(block)
    if block then
      for k, v in pairs(options_of(block)) do
        params[k] = v
        any = true
      end
    end
  end
  take(data.queues.default)
  local dom = domain and utils.domain_lookup(data.queues, domain) or nil
  take(dom)
  take(tenant and data.tenants[tenant] or nil)
  local dt = dom and tenant and dom[tenant] or nil
  if type(dt) == 'table' then
    take(dt)
    local dtc = campaign and dt[campaign] or nil
    if type(dtc) == 'table' then
      take(dtc)
    end
  end
  return any and params or nil
end

-- make_queue_config on every block, so bad options are found at setup.
local function check(data)
  local function try(params, where)
    local ok, err = pcall(kumo.make_queue_config, options_of(params))
    if not ok then
      error(string.format('%s: %s', where, tostring(err)), 0)
    end
  end
  for name, t in pairs(data.tenants) do
    try(t, string.format('[tenant."%s"]', name))
  end
  for domain, block in pairs(data.queues) do
    try(block, string.format('[queue."%s"]', domain))
    for tenant, tb in pairs(block) do
      if not is_option(tenant, tb) then
        try(tb, string.format('[queue."%s"."%s"]', domain, tenant))
        for campaign, cb in pairs(tb) do
          if not is_option(campaign, cb) then
            try(cb, string.format('[queue."%s"."%s"."%s"]', domain, tenant, campaign))
          end
        end
      end
    end
  end
  if data.options.default_tenant and not data.tenants[data.options.default_tenant] then
    error(string.format("default_tenant '%s' has no [tenant.\"%s\"] block",
      data.options.default_tenant, data.options.default_tenant), 0)
  end
end

function mod:setup(file_names)
  return self:setup_with_options { file_names = file_names }
end

function mod:setup_with_options(options)
  if type(options) ~= 'table' or type(options.file_names) ~= 'table' then
    error('queue:setup expects a list of data file names', 2)
  end
  local ok, data = pcall(function()
    local d = load(options.file_names)
    check(d)
    return d
  end)
  if not ok then
    error('queue: ' .. tostring(data), 2)
  end

  local helper = { file_names = options.file_names }

  function helper:resolve_config(domain, tenant, campaign)
    return resolve(data, domain, tenant, campaign)
  end

  if not options.skip_queue_config_hook then
    kumo.on('get_queue_config', function(domain, tenant, campaign, _routing_domain)
      local params = resolve(data, domain, tenant, campaign)
      if params then
        return kumo.make_queue_config(params)
      end
    end)
  end

  function helper:apply(msg)
    local o = data.options
    if o.campaign_header then
      local campaign = msg:get_first_named_header_value(o.campaign_header)
      if campaign then
        msg:set_meta('campaign', campaign)
        if o.remove_campaign_header then
          msg:remove_all_named_headers(o.campaign_header)
        end
      end
    end
    local tenant, source
    if o.tenant_header then
      tenant = msg:get_first_named_header_value(o.tenant_header)
      if tenant then
        source = string.format("'%s' header", o.tenant_header)
        if o.remove_tenant_header then
          msg:remove_all_named_headers(o.tenant_header)
        end
      end
    end
    if not tenant and o.default_tenant then
      tenant, source = o.default_tenant, 'default_tenant option'
    end
    if tenant then
      if not data.tenants[tenant] then
        kumo.reject(500, string.format(
          "5.7.1 tenant '%s' specified by %s is not defined in your queue config", tenant,
          source))
      end
      msg:set_meta('tenant', tenant)
    end
  end

  return helper
end

return mod
