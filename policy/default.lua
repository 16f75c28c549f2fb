--[[
policy/default.lua -- the policy petreld runs when no --policy is given.

It serves a fresh machine: accept mail on 127.0.0.1:2525 from this host
only, keep the spool and the logs under ./var, and deliver by MX.  Copy it
and edit the copy; `petreld --policy /etc/petrel/init.lua`.

Petrel speaks KumoMTA's Lua API, so `require 'kumo'` works as well as
`require 'petrel'` (they are the same module) and most of a KumoMTA
init.lua ports as is.  The shape of a policy:

  * top-level code runs once per shard (every CPU core has its own Lua
    state, so globals are not shared between shards);
  * petrel.on('init', ...) configures the server: listeners, spool, logs,
    DNS.  These calls are only allowed there;
  * other petrel.on(event, ...) handlers run per connection or message.
    A handler may call petrel.reject(code, text) to refuse with that SMTP
    reply; any other error is answered with 451 4.3.0 and logged with the
    file:line of the error.

Durations are seconds or strings such as "60s", "5m", "1 hour", "2 days".
]]
local petrel = require 'petrel'

petrel.on('init', function()
  -- Where accepted messages are stored until delivered.  Petrel keeps a
  -- message's metadata and body together, so a KumoMTA 'meta' spool
  -- definition is accepted and ignored; only 'data' matters.  Every message
  -- is synced to disk before the 250 reply.
  petrel.define_spool {
    name = 'data',
    path = './var/spool',
  }

  -- JSON log records (Reception, Delivery, Bounce, TransientFailure, ...),
  -- one set of files per shard.
  petrel.configure_local_logs {
    log_dir = './var/log',
    -- max_segment_duration = '1 hour',  -- rotate by age (default: never)
    -- max_file_size = 1000000000,       -- rotate by uncompressed size
    -- compression_level = 0,            -- zstd level: 0 (default, 3) or 1-21
    -- headers = { 'Subject', 'X-Campaign' },
    -- meta = { 'tenant', 'campaign' },
  }

  -- The SMTP listener.  Call start_esmtp_listener once per address:port.
  -- Everything below 'relay_hosts' shows its default; uncomment to change.
  petrel.start_esmtp_listener {
    listen = '127.0.0.1:2525',
    -- Clients allowed to relay (IP addresses or CIDR blocks).  Anyone else
    -- can't send through this listener.
    relay_hosts = { '127.0.0.1' },
    -- hostname = 'mail.example.com',  -- default: this machine's host name
    -- banner = 'Petrel ESMTP',
    -- max_message_size = 20 * 1024 * 1024,
    -- max_recipients_per_message = 100,
    -- max_connections = 32768,
    -- client_timeout = '60s',           -- idle time allowed between commands
    -- data_timeout = '5m',              -- idle time allowed inside DATA
    -- tls_certificate = '/etc/petrel/tls/cert.pem',  -- default: self-signed
    -- tls_private_key = '/etc/petrel/tls/key.pem',
  }

  -- A second listener, e.g. for the world on port 25 with no relaying:
  -- petrel.start_esmtp_listener {
  --   listen = '0.0.0.0:25',
  --   relay_hosts = {},
  -- }

  -- DNS.  Without this call Petrel uses the name servers of
  -- /etc/resolv.conf.  Entries are IP addresses, with an optional port.
  -- petrel.dns.configure_resolver {
  --   name_servers = { '127.0.0.1:53', { socket_addr = '[::1]:53' } },
  --   options = { timeout = '5s' },       -- per query
  -- }
end)

-- Delivery needs no handler: each recipient domain is delivered to its MX
-- hosts with KumoMTA's defaults.  The two events below tune that; the
-- values shown are the defaults unless said otherwise.
--
-- Per scheduled queue (campaign:tenant@domain), when the queue is first
-- used and again every minute or so.  Arguments the message did not set
-- are nil.  Returning nil keeps the defaults.
-- petrel.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
--   return petrel.make_queue_config {
--     retry_interval = '20 minutes',  -- first retry; doubles after each try
--     -- max_retry_interval = '4 hours', -- cap on the doubling (default: none)
--     max_age = '7 days',             -- then the message expires (a bounce)
--     -- Send via fixed hosts ("smart host") instead of the domain's MX:
--     -- protocol = { smtp = { mx_list = { 'relay.example.com:2525', '[10.0.0.1]' } } },
--     -- Send from the sources of an egress pool (below) instead of the
--     -- address the kernel picks:
--     -- egress_pool = 'warm',
--   }
-- end)
--
-- Egress sources (a local address to send from, its EHLO name) and pools of
-- them, used by weighted round robin.  KumoMTA's sources.toml works too:
--   local sources = require 'policy-extras.sources'
--   sources:setup { '/etc/petrel/sources.toml' }
-- petrel.on('get_egress_source', function(name)
--   return petrel.make_egress_source {
--     name = name, source_address = '10.0.0.1', ehlo_domain = 'mta1.example.com',
--   }
-- end)
-- petrel.on('get_egress_pool', function(name)
--   return petrel.make_egress_pool {
--     name = name, entries = { { name = 'ip-1', weight = 3 }, { name = 'ip-2' } },
--   }
-- end)
--
-- Per egress source and destination site (the receiving provider's MX host
-- set), shared by every queue that delivers there.  Rates are
-- "count/period": "20/s", "500/min", "10000/h", "1,000/d".
-- petrel.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
--   return petrel.make_egress_path {
--     connection_limit = 32,                -- concurrent connections to the site
--     -- max_message_rate = '20/s',          -- default: unlimited
--     -- max_connection_rate = '10/s',       -- default: unlimited
--     max_deliveries_per_connection = 1024,
--     max_recipients_per_batch = 100,       -- RCPTs per transaction
--     enable_tls = 'Opportunistic',         -- or 'Required', 'Disabled',
--                                           -- 'OpportunisticInsecure', 'RequiredInsecure'
--     idle_timeout = '60s',                 -- keep an idle connection for reuse
--     smtp_port = 25,
--     -- ehlo_domain = 'mail.example.com',   -- default: the source's, else the host name
--   }
-- end)

-- Runs once per message after DATA, before the message is spooled.  This
-- one copies an X-Tenant header into the message's 'tenant' meta, which
-- names the delivery queue (tenant@domain), as KumoMTA's queue helper does.
-- Add your own checks, campaign assignment, DKIM signing, ... here.
petrel.on('smtp_server_message_received', function(msg)
  local tenant = msg:get_first_named_header_value('X-Tenant')
  if tenant then
    msg:set_meta('tenant', tenant)
  end
  -- Refusing a message: the client gets this reply and nothing is spooled.
  -- if msg:sender().domain == 'spam.example' then
  --   petrel.reject(550, '5.7.1 mail from this domain is not accepted')
  -- end
end)
