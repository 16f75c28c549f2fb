-- policy-extras.log_hooks: KumoMTA's log hook helper.  Each hook turns the
-- log records it wants into messages queued to NAME.log_hook, delivered
-- by that queue's protocol with the queue's retries (shard/shard_loghook.c
-- makes the messages; the spool is the hook's durable queue).
--
--   local log_hooks = require 'policy-extras.log_hooks'
--
--   -- A webhook: each record POSTed as JSON.
--   log_hooks:new_json {
--     name = 'webhook',
--     url = 'http://10.0.0.1:4242/log',
--     log_parameters = { headers = { 'Subject' } },   -- to configure_log_hook
--     queue_config = { retry_interval = '1m' },       -- to make_queue_config
--     batch_size = 1,
--   }
--
--   -- RabbitMQ (Petrel's own helper): each record a persistent message,
--   -- content_type application/json; declare_queue (with exchange '')
--   -- declares routing_key as a durable queue.
--   log_hooks:new_amqp {
--     name = 'rabbit', url = 'amqp://127.0.0.1:5672', exchange = 'logs',
--     routing_key = 'mta',
--   }
--
--   -- Any protocol make_queue_config knows, e.g. a smart host over SMTP.
--   log_hooks:new {
--     name = 'archive',
--     queue_config = { protocol = { smtp = { mx_list = { '10.0.0.2:25' } } } },
--     filter = function(msg, hook_name)   -- true: leave this record out
--       return msg:get_meta('log_record').type == 'Reception'
--     end,
--   }
--
-- Call these at the top level, before kumo.on('get_queue_config', ...) of
-- your own (or let yours return nil for domains it does not handle): the
-- handlers of get_queue_config run in the order they were registered and
-- the first that returns a value wins (KumoMTA's rule).  Each hook adds
--   * a pre_init handler calling kumo.configure_log_hook{name, ...},
--   * a should_enqueue_log_record handler that takes the records offered
--     to its hook, except those about a hook's own messages
--     (reception_protocol "LogRecord") and those `filter` leaves out, and
--     sets meta queue = NAME.log_hook,
--   * a get_queue_config handler for NAME.log_hook: make_queue_config of
--     retry_interval '1m', max_retry_interval '20m', then queue_config,
--     then the protocol.
--
-- Differences from KumoMTA: `constructor` (a Lua connection object) is
-- refused, since Petrel runs no asynchronous Lua; `new` takes the protocol
-- in queue_config.protocol instead, and new_json / new_amqp build it (the
-- tables are made in one place, mod.protocol).  The queue config is
-- checked with make_queue_config when the hook is set up, so a mistake
-- fails `petreld --validate` naming the calling line.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {
  CONFIGURED = {},
}

-- The protocol tables of the hook queues, built here only.
mod.protocol = {
  http = function(url, batch_size)
    return {
      http = {
        url = url,
        content_type = 'application/json',
        batch_size = batch_size or 1,
      },
    }
  end,
  amqp = function(url, exchange, routing_key, declare_queue)
    return {
      amqp = {
        url = url,
        exchange = exchange,
        routing_key = routing_key,
        declare_queue = declare_queue,
        content_type = 'application/json',
      },
    }
  end,
}

-- The options every helper takes, plus its own.
local function options_spec(own)
  local spec = {
    name = 'string',
    log_parameters = 'table',
    queue_config = 'table',
    filter = 'function',
  }
  utils.merge_into(own, spec)
  return spec
end

local NEW_OPTIONS = options_spec {
  constructor = 'function',
  batch_size = 'number',
  min_batch_size = 'number',
  max_batch_latency = 'string',
}
local JSON_OPTIONS = options_spec { url = 'string', batch_size = 'number' }
local AMQP_OPTIONS = options_spec {
  url = 'string',
  exchange = 'string',
  routing_key = 'string',
  declare_queue = 'boolean',
}

local function require_keys(options, keys, where)
  for _, k in ipairs(keys) do
    if options[k] == nil then
      error(string.format("%s: '%s' is required", where, k), 0)
    end
  end
end

-- Register the hook: options are checked; queue_config holds the protocol.
local function setup(options, queue_config, where)
  local name = options.name
  if mod.CONFIGURED[name] then
    error(string.format("%s: log_hook with name '%s' has already been configured", where,
      name), 0)
  end

  local config = { retry_interval = '1m', max_retry_interval = '20m' }
  utils.merge_into(queue_config, config)
  -- Checked now: a bad option or protocol fails at load, not per record.
  local ok, err = pcall(kumo.make_queue_config, config)
  if not ok then
    error(string.format('%s: queue_config: %s', where, tostring(err)), 0)
  end
  mod.CONFIGURED[name] = options

  local log_parameters = { name = name }
  utils.merge_into(options.log_parameters, log_parameters)
  kumo.on('pre_init', function()
    kumo.configure_log_hook(log_parameters)
  end)

  -- A domain with a "TLD" no real domain has (KumoMTA's choice).
  local domain_name = name .. '.log_hook'
  local filter = options.filter

  kumo.on('should_enqueue_log_record', function(msg, hook_name)
    if hook_name ~= name then
      return nil -- another hook's: the next handler decides
    end
    local log_record = msg:get_meta 'log_record'
    -- Never log that we logged that we logged... (petreld also never
    -- offers these records; the check keeps KumoMTA's helper's meaning).
    if log_record.reception_protocol == 'LogRecord' then
      return false
    end
    if filter and filter(msg, hook_name) then
      return false
    end
    msg:set_meta('queue', domain_name)
    return true
  end)

  kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    if domain ~= domain_name then
      return nil
    end
    return kumo.make_queue_config(config)
  end)
end

-- Run f(options) and re-raise its error at the caller of the helper (level
-- 3: the policy line that called log_hooks:new...).
local function at_caller(f, options)
  local ok, err = pcall(f, options)
  if not ok then
    error(err, 3)
  end
end

local function new(options)
  local where = 'log_hooks:new'
  utils.check_record(options, NEW_OPTIONS, where)
  require_keys(options, { 'name' }, where)
  if options.constructor ~= nil then
    error(where .. ": 'constructor' is not supported: Petrel runs no Lua connection " ..
      'objects; give the protocol in queue_config.protocol (e.g. { smtp = { mx_list = ' ..
      '{...} } }), or use log_hooks:new_json / log_hooks:new_amqp', 0)
  end
  for _, k in ipairs { 'batch_size', 'min_batch_size', 'max_batch_latency' } do
    if options[k] ~= nil then
      error(string.format("%s: '%s' belongs to the protocol: set it in " ..
        'queue_config.protocol (new_json takes batch_size)', where, k), 0)
    end
  end
  if options.queue_config == nil or options.queue_config.protocol == nil then
    error(where .. ": 'queue_config.protocol' is required: a hook's queue is delivered " ..
      'by its protocol (e.g. { smtp = { mx_list = {...} } }); new_json and new_amqp ' ..
      'build it', 0)
  end
  setup(options, options.queue_config, where)
end

-- queue_config without its protocol (the helper sets it), or an error.
local function config_with(options, protocol, where)
  local config = {}
  utils.merge_into(options.queue_config, config)
  if config.protocol ~= nil then
    error(string.format("%s: queue_config.protocol is set by %s; leave it out", where,
      where), 0)
  end
  config.protocol = protocol
  return config
end

local function new_json(options)
  local where = 'log_hooks:new_json'
  utils.check_record(options, JSON_OPTIONS, where)
  require_keys(options, { 'name', 'url' }, where)
  local protocol = mod.protocol.http(options.url, options.batch_size)
  setup(options, config_with(options, protocol, where), where)
end

local function new_amqp(options)
  local where = 'log_hooks:new_amqp'
  utils.check_record(options, AMQP_OPTIONS, where)
  require_keys(options, { 'name', 'url', 'exchange', 'routing_key' }, where)
  local protocol = mod.protocol.amqp(options.url, options.exchange, options.routing_key,
    options.declare_queue)
  setup(options, config_with(options, protocol, where), where)
end

function mod:new(options)
  at_caller(new, options)
end

function mod:new_json(options)
  at_caller(new_json, options)
end

function mod:new_amqp(options)
  at_caller(new_amqp, options)
end

return mod
