-- policy-extras.dkim_sign: DKIM signing driven by KumoMTA's dkim_data.toml.
--
--   local dkim_sign = require 'policy-extras.dkim_sign'
--   local dkim_signer = dkim_sign:setup { '/opt/petrel/etc/dkim_data.toml' }
--   kumo.on('smtp_server_message_received', function(msg) dkim_signer(msg) end)
--
-- The file (several merge in order, later keys win):
--
--   [base]                 selector, headers, expiration, over_sign,
--                          header_canonicalization, body_canonicalization,
--                          policy = "Always", additional_signatures = ["esp"]
--   [domain."example.com"] selector, headers, algo = "sha256" | "ed25519",
--                          filename, expiration, over_sign, policy, *_canonicalization
--                          ("*.example.com" matches the names below it)
--   [signature."esp"]      domain (the d=), policy = "Always" |
--                          "OnlyIfMissingDomainBlock", and the keys of a domain block
--
-- [signing_domain."x"] is read as [signature."x"].  The signing domain of a
-- [domain] block is the domain of the From header's address; its key file
-- defaults to /opt/kumomta/etc/dkim/DOMAIN/SELECTOR.key, as in KumoMTA, so
-- its files come over unchanged.  Hashicorp Vault keys (vault_mount,
-- vault_path_prefix) are refused.
--
-- Unlike KumoMTA, which re-reads the files every 5 minutes, the data is
-- read and every signer built (every key loaded) once, at setup, on each
-- shard: a missing key or a bad file fails `petreld --validate` and the
-- start, and a reload (SIGHUP) reads them again.
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local mod = {}

local DKIM_PATH = '/opt/kumomta/etc/dkim'

local CANON = { enum = { 'Relaxed', 'Simple', 'relaxed', 'simple' } }

local BASE = {
  selector = 'string',
  headers = 'list',
  expiration = 'number',
  over_sign = 'boolean',
  header_canonicalization = CANON,
  body_canonicalization = CANON,
  policy = { enum = { 'Always' } },
  additional_signatures = 'list',
  vault_mount = 'string',
  vault_path_prefix = 'string',
}

local DOMAIN = {
  selector = 'string',
  headers = 'list',
  algo = { enum = { 'sha256', 'ed25519' } },
  filename = 'string',
  expiration = 'number',
  over_sign = 'boolean',
  header_canonicalization = CANON,
  body_canonicalization = CANON,
  policy = { enum = { 'Always' } },
}

local SIGNATURE = {}
for k, v in pairs(DOMAIN) do
  SIGNATURE[k] = v
end
SIGNATURE.domain = 'string'
SIGNATURE.policy = { enum = { 'Always', 'OnlyIfMissingDomainBlock' } }

local TOP = { base = 'table', domain = 'table', signature = 'table', signing_domain = 'table' }

-- Merge one file into data (base, domain, signature maps).
local function load_file(file_name, data)
  local raw = utils.load_data_file(file_name)
  utils.check_record(raw, TOP, file_name)
  if raw.base then
    utils.check_record(raw.base, BASE, file_name .. ': [base]')
    if raw.base.vault_mount or raw.base.vault_path_prefix then
      error(file_name .. ': [base]: Vault key storage is not supported; use key files', 0)
    end
    utils.merge_into(raw.base, data.base)
  end
  for name, params in pairs(raw.domain or {}) do
    utils.check_record(params, DOMAIN, string.format('%s: [domain."%s"]', file_name, name))
    local key = name:lower()
    data.domain[key] = data.domain[key] or {}
    utils.merge_into(params, data.domain[key])
  end
  for _, section in ipairs { 'signature', 'signing_domain' } do
    for name, params in pairs(raw[section] or {}) do
      utils.check_record(params, SIGNATURE,
        string.format('%s: [%s."%s"]', file_name, section, name))
      data.signature[name] = data.signature[name] or {}
      utils.merge_into(params, data.signature[name])
    end
  end
end

-- The parameters of kumo.dkim.*_signer for one block; nil, reason when a
-- required value is missing.
local function signer_params(block, base, domain)
  local selector = block.selector or base.selector
  if not selector then
    return nil, 'no selector, and [base] has none'
  end
  local headers = block.headers or base.headers
  if not headers then
    return nil, 'no headers, and [base] has none'
  end
  local over_sign = block.over_sign
  if over_sign == nil then
    over_sign = base.over_sign
  end
  return {
    domain = domain,
    selector = selector,
    headers = headers,
    expiration = block.expiration or base.expiration,
    header_canonicalization = block.header_canonicalization or base.header_canonicalization,
    body_canonicalization = block.body_canonicalization or base.body_canonicalization,
    over_sign = over_sign,
    key = block.filename or string.format('%s/%s/%s.key', DKIM_PATH, domain, selector),
  }
end

local function make_signer(params, algo)
  if algo == 'ed25519' then
    return kumo.dkim.ed25519_signer(params)
  end
  return kumo.dkim.rsa_sha256_signer(params)
end

-- data -> { domain = { name -> params }, signers = { sig_name -> signer },
-- extra = { { name, policy } } }; domain signers are built per message
-- domain (a wildcard block signs for each name it matches) and cached.
local function compile(data)
  local c = { domain = data.domain, base = data.base, by_domain = {}, extra = {} }
  for _, name in ipairs(data.base.additional_signatures or {}) do
    local sig = data.signature[name]
    if not sig then
      error(string.format(
        "base.additional_signatures lists '%s' but no [signature.\"%s\"] block defines it",
        name, name), 0)
    end
    if not sig.domain then
      error(string.format("[signature.\"%s\"]: 'domain' is required", name), 0)
    end
    local params, why = signer_params(sig, data.base, sig.domain)
    if not params then
      error(string.format('[signature."%s"]: %s', name, why), 0)
    end
    local ok, signer = pcall(make_signer, params, sig.algo)
    if not ok then
      error(string.format('[signature."%s"]: %s', name, signer), 0)
    end
    c.extra[#c.extra + 1] = { signer = signer, policy = sig.policy or 'Always' }
  end
  for name in pairs(data.signature) do
    local used = false
    for _, n in ipairs(data.base.additional_signatures or {}) do
      used = used or n == name
    end
    if not used then
      error(string.format(
        '[signature."%s"] is not listed in base.additional_signatures and would never sign',
        name), 0)
    end
  end
  -- Every exact domain block builds its signer now, so a missing key file
  -- is found at start; wildcard blocks are checked with a sample name.
  for name, block in pairs(data.domain) do
    local sample = name:gsub('^%*%.', 'sample.')
    local params, why = signer_params(block, data.base, sample)
    if not params then
      error(string.format('[domain."%s"]: %s', name, why), 0)
    end
    local ok, signer = pcall(make_signer, params, block.algo)
    if not ok then
      error(string.format('[domain."%s"]: %s', name, signer), 0)
    end
    if sample == name then
      c.by_domain[name] = signer
    end
  end
  return c
end

local function sign(msg, c)
  local from = msg:from_header()
  if not from then
    kumo.reject(552,
      '5.6.0 DKIM signing requires a From header, but it is missing from this message')
  end
  local domain = from.domain:lower()
  local signed_domain = false
  local block = utils.domain_lookup(c.domain, domain)
  if block then
    local signer = c.by_domain[domain]
    if not signer then
      signer = make_signer(signer_params(block, c.base, domain), block.algo)
      c.by_domain[domain] = signer
    end
    msg:dkim_sign(signer)
    signed_domain = true
  end
  for _, extra in ipairs(c.extra) do
    if not (extra.policy == 'OnlyIfMissingDomainBlock' and signed_domain) then
      msg:dkim_sign(extra.signer)
    end
  end
end

-- Read the files, build the signers; returns function(msg).
function mod:setup(dkim_data_files)
  if type(dkim_data_files) ~= 'table' then
    error('dkim_sign:setup expects a list of data file names', 2)
  end
  local data = { base = {}, domain = {}, signature = {} }
  local ok, c = pcall(function()
    for _, file_name in ipairs(dkim_data_files) do
      load_file(file_name, data)
    end
    return compile(data)
  end)
  if not ok then
    error('dkim_sign: ' .. tostring(c), 2)
  end
  return function(msg)
    sign(msg, c)
  end
end

return mod
