-- An example Petrel policy in the shape of a KumoMTA deployment: an
-- init.lua that pulls in the policy-extras helpers and their TOML files,
-- which a KumoMTA user brings over unchanged.
--
--   build/petreld --validate --policy examples/init.lua     (from the repository root)
--
-- The data files are read from PETREL_ETC (default: examples, relative to
-- the working directory); the environment variables below let the same file
-- run on a test machine.  Replace the sources' addresses, the DKIM keys and
-- the domains with your own before sending real mail.
local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
local sources = require 'policy-extras.sources'
local listener_domains = require 'policy-extras.listener_domains'
local dkim_sign = require 'policy-extras.dkim_sign'
local queue_module = require 'policy-extras.queue'

local ETC = os.getenv 'PETREL_ETC' or 'examples'
local SMTP_LISTEN = os.getenv 'PETREL_SMTP_LISTEN' or '0.0.0.0:25'
local HTTP_LISTEN = os.getenv 'PETREL_HTTP_LISTEN' or '127.0.0.1:8000'
local SPOOL = os.getenv 'PETREL_SPOOL' or '/var/spool/petrel'
local LOG_DIR = os.getenv 'PETREL_LOG_DIR' or '/var/log/petrel'
-- "ip:port,ip:port"; unset: the system's /etc/resolv.conf
local NAME_SERVERS = os.getenv 'PETREL_NAME_SERVERS'

-- Egress sources and pools (get_egress_source / get_egress_pool).
sources:setup { ETC .. '/sources.toml' }

-- Per-provider limits and automation (get_egress_path_config).
local shaper = shaping:setup_with_automation {
  extra_files = { ETC .. '/shaping.toml' },
}

-- Signing keys by sender domain, plus the ESP's own signature.
local dkim_signer = dkim_sign:setup { ETC .. '/dkim_data.toml' }

-- Tenants (X-Tenant), campaigns (X-Campaign) and per-queue settings
-- (get_queue_config).
local queue_helper = queue_module:setup { ETC .. '/queues.toml' }

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = SPOOL }
  kumo.configure_local_logs { log_dir = LOG_DIR }
  if NAME_SERVERS then
    local servers = {}
    for s in NAME_SERVERS:gmatch '[^,]+' do
      servers[#servers + 1] = s
    end
    kumo.dns.configure_resolver { name_servers = servers }
  end
  kumo.start_esmtp_listener {
    listen = SMTP_LISTEN,
    hostname = 'mta.example.com',
    -- Who may relay: the injecting applications.
    relay_hosts = { '127.0.0.1', '10.0.0.0/8' },
  }
  -- Injection API (POST /api/inject/v1) and metrics (GET /metrics) for
  -- the applications and the monitoring on this host and the LAN.
  kumo.start_http_listener {
    listen = HTTP_LISTEN,
    trusted_hosts = { '127.0.0.1', '::1', '10.0.0.0/8' },
  }
  shaper.setup_publish()
end)

-- Bounces and feedback reports to our own domains, from anywhere.
kumo.on('get_listener_domain', listener_domains:setup { ETC .. '/listener_domains.toml' })

kumo.on('get_egress_path_config', shaper.get_egress_path_config)

kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
  dkim_signer(msg)
end)

-- Messages injected over HTTP get the same treatment.
kumo.on('http_message_generated', function(msg)
  queue_helper:apply(msg)
  dkim_signer(msg)
end)
