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
  * petrel.on('init', ...) configures the server: listeners, spool, logs.
    These calls are only allowed there;
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
    -- max_segment_duration = '1 hour',
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
end)

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
