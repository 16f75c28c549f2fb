"""DKIM signing as an independent verifier sees it: petreld signs in
smtp_server_message_received, relays to aiosmtpd, and Python's dkimpy
(Debian's python3-dkim) verifies every DKIM-Signature of what arrived
against the public key, served by the test's own DNS lookup function.

Keys are made by openssl for each test: RSA-2048 (PKCS#8 and the older
PKCS#1 "RSA PRIVATE KEY" form) and Ed25519 (p= is the raw 32-byte public key,
RFC 8463 4).  Signers come both from KumoMTA's Lua API
(kumo.dkim.rsa_sha256_signer{} / ed25519_signer{}) and from dkim_data.toml
through policy-extras.dkim_sign."""

import base64
import importlib.util
import re
import subprocess
import unittest

import dns
import harness
import receivers
from test_delivery import DeliveryTest

ADDR = "127.0.0.51"
MX = "mx.dkim.test"
RCPT = "user@dkim.test"

# A body that the two canonicalizations treat differently: trailing spaces,
# runs of WSP, blank lines at the end.
BODY = "Hello  there \t\r\n\r\nA second\tparagraph.  \r\n\r\n\r\n"


def make_keys(directory):
	"""{name: (path, txt)} for rsa (PKCS#8), rsa1 (PKCS#1) and ed (Ed25519);
	txt is the DNS TXT record of the public key."""
	keys = {}

	def run(*args):
		return subprocess.run(args, check=True, capture_output=True, timeout=60).stdout

	rsa = directory / "rsa.key"
	run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
	    "-out", str(rsa))
	rsa1 = directory / "rsa1.key"
	run("openssl", "genrsa", "-traditional", "-out", str(rsa1), "2048")
	ed = directory / "ed.key"
	run("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(ed))
	for name, path in (("rsa", rsa), ("rsa1", rsa1)):
		der = run("openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER")
		keys[name] = (path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))
	der = run("openssl", "pkey", "-in", str(ed), "-pubout", "-outform", "DER")
	keys["ed"] = (ed, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]))
	return keys


def tags(content, idx):
	"""The tags of the idx-th DKIM-Signature field (top first) as a dict."""
	fields = re.findall(rb"^DKIM-Signature:(.*?)\r?\n(?![ \t])", content, re.M | re.S)
	value = re.sub(rb"\s+", b"", fields[idx]).decode()
	return dict(t.split("=", 1) for t in value.split(";") if t)


class DkimTest(DeliveryTest):
	def setUp(self):
		super().setUp()
		if importlib.util.find_spec("dkim") is None:
			raise unittest.SkipTest(harness.MISSING_DEP + "python3-dkim")
		import dkim
		self.dkim = dkim
		self.keys = make_keys(self.env.dir)
		self.dns_txt = {}
		self.start_dns(dns.Zone().mx("dkim.test", 10, MX).a(MX, ADDR))
		self.r = self.receiver(receivers.SmtpReceiver, ADDR)

	def publish(self, selector, domain, key):
		self.dns_txt[("%s._domainkey.%s." % (selector, domain)).encode()] = self.keys[key][1]

	def _txt(self, name, timeout=5):
		return self.dns_txt.get(name)

	def send_mail(self, from_addr, subject, extra=""):
		"""One message; returns its Message-ID."""
		msg = harness.make_message(subject=subject, body=BODY, sender=from_addr, to=RCPT)
		msg = msg.replace(b"From: <%s>" % from_addr.encode(),
				  b"From: Sender Name <%s>%s" % (from_addr.encode(), extra.encode()))
		c = self.env.connect()
		c.ehlo()
		c.send_message("bounce@client.test", [RCPT], msg)
		c.cmd("QUIT", harness.REPLY_QUIT)
		c.close()
		return receivers.message_id_of(msg)

	def received(self, count):
		self.wait_for(lambda: self.r.count() >= count, 30, what="%d deliveries" % count)
		return {d.message_id: d.content for d in self.r.deliveries()}

	def assert_verifies(self, content, n_sigs):
		"""Every one of the n_sigs signatures verifies with dkimpy; returns
		their tags, top first."""
		d = self.dkim.DKIM(content)
		got = len(re.findall(rb"^DKIM-Signature:", content, re.M))
		self.assertEqual(got, n_sigs, content.decode(errors="replace")[:2000])
		out = []
		for i in range(n_sigs):
			ok = d.verify(idx=i, dnsfunc=self._txt)
			self.assertTrue(ok, "signature %d does not verify:\n%s" % (
				i, content.decode(errors="replace")[:3000]))
			out.append(tags(content, i))
		return out


class DkimLuaSigners(DkimTest):
	HOOK = r"""
kumo.on('smtp_server_message_received', function(msg)
  local subject = msg:get_first_named_header_value('Subject') or ''
  local from = msg:from_header()
  local rsa = kumo.dkim.rsa_sha256_signer {
    domain = from.domain, selector = 'r2048', key = %(rsa)s,
    headers = { 'From', 'To', 'Subject', 'Date', 'Message-ID' },
  }
  if subject == 'rsa-relaxed' then
    msg:dkim_sign(rsa)
  elseif subject == 'rsa-simple' then
    msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
      domain = from.domain, selector = 'pkcs1', key = %(rsa1)s,
      headers = { 'From', 'To', 'Subject', 'X-Absent' }, over_sign = true,
      header_canonicalization = 'Simple', body_canonicalization = 'Simple',
      expiration = 86400,
    })
  elseif subject == 'ed25519' then
    msg:dkim_sign(kumo.dkim.ed25519_signer {
      domain = from.domain, selector = 'ed', key = %(ed)s,
      headers = { 'From', 'To', 'Subject' }, body_canonicalization = 'Simple',
    })
  elseif subject == 'both' then
    msg:dkim_sign(rsa)
    msg:dkim_sign(kumo.dkim.ed25519_signer {
      domain = 'esp.test', selector = 'ed', key = { key_data = %(ed_data)s },
      headers = { 'From', 'Subject' }, over_sign = true,
    })
  end
end)
"""

	@harness.bound(90)
	def test_rsa_and_ed25519_signatures_verify(self):
		"""RSA-2048 relaxed/relaxed; RSA-2048 from a PKCS#1 file, simple/simple,
		over-signed, with x=; Ed25519 relaxed/simple; and two signatures on one
		message (RSA by the From domain, Ed25519 by another domain): every
		signature verifies with dkimpy, with the tags the signer asked for."""
		k = self.keys
		hook = self.HOOK % {"rsa": harness.lua_str(k["rsa"][0]),
				    "rsa1": harness.lua_str(k["rsa1"][0]),
				    "ed": harness.lua_str(k["ed"][0]),
				    "ed_data": harness.lua_str(k["ed"][0].read_text())}
		self.publish("r2048", "signer.test", "rsa")
		self.publish("pkcs1", "signer.test", "rsa1")
		self.publish("ed", "signer.test", "ed")
		self.publish("ed", "esp.test", "ed")
		self.start_petrel(message_hook=hook)
		sent = {s: self.send_mail("news@signer.test", s)
			for s in ("rsa-relaxed", "rsa-simple", "ed25519", "both")}
		got = self.received(4)

		t = self.assert_verifies(got[sent["rsa-relaxed"]], 1)[0]
		self.assertEqual((t["a"], t["c"], t["d"], t["s"]),
				 ("rsa-sha256", "relaxed/relaxed", "signer.test", "r2048"))
		self.assertEqual(t["h"], "From:To:Subject:Message-ID")

		t = self.assert_verifies(got[sent["rsa-simple"]], 1)[0]
		self.assertEqual((t["a"], t["c"], t["s"]), ("rsa-sha256", "simple/simple", "pkcs1"))
		self.assertEqual(t["h"], "From:From:To:To:Subject:Subject:X-Absent")
		self.assertEqual(int(t["x"]) - int(t["t"]), 86400)

		t = self.assert_verifies(got[sent["ed25519"]], 1)[0]
		self.assertEqual((t["a"], t["c"], t["s"]), ("ed25519-sha256", "relaxed/simple", "ed"))

		top, below = self.assert_verifies(got[sent["both"]], 2)
		self.assertEqual((top["a"], top["d"]), ("ed25519-sha256", "esp.test"))
		self.assertEqual((below["a"], below["d"]), ("rsa-sha256", "signer.test"))

		# Tampering is caught: the verifier is really checking.
		bad = got[sent["rsa-relaxed"]].replace(b"A second", b"A forged")
		try:
			ok = self.dkim.DKIM(bad).verify(dnsfunc=self._txt)
		except self.dkim.ValidationError as e:	# dkimpy raises on a body hash mismatch
			ok = "body hash mismatch" not in str(e)
		self.assertFalse(ok)


DKIM_DATA = """[base]
selector = "s2048"
headers = ["From", "To", "Subject", "Date", "Message-ID"]
additional_signatures = ["esp"]

[domain."rsa.test"]
filename = %(rsa)s

[domain."*.ed.test"]
selector = "ed1"
algo = "ed25519"
filename = %(ed)s
over_sign = true

[signature."esp"]
domain = "esp.test"
selector = "esp"
algo = "ed25519"
filename = %(ed)s
policy = "OnlyIfMissingDomainBlock"
"""

SETUP_HOOK = """
local dkim_sign = require 'policy-extras.dkim_sign'
local dkim_signer = dkim_sign:setup { %s }
kumo.on('smtp_server_message_received', function(msg)
  dkim_signer(msg)
end)
"""


def toml_str(s):
	return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


class DkimDataToml(DkimTest):
	def write_data(self, text=None):
		path = self.env.dir / "dkim_data.toml"
		path.write_text(text if text is not None else DKIM_DATA % {
			"rsa": toml_str(self.keys["rsa"][0]), "ed": toml_str(self.keys["ed"][0])})
		return path

	@harness.bound(90)
	def test_dkim_data_toml_signs_by_from_domain(self):
		"""A From domain with a [domain] block gets that block's signature
		only; a subdomain matching "*.ed.test" gets Ed25519 with its selector;
		a domain without a block gets the OnlyIfMissingDomainBlock signature;
		a message without From is refused 552 5.6.0; all verify."""
		data = self.write_data()
		self.publish("s2048", "rsa.test", "rsa")
		self.publish("ed1", "news.ed.test", "ed")
		self.publish("esp", "esp.test", "ed")
		self.start_petrel(message_hook=SETUP_HOOK % harness.lua_str(data))
		m_rsa = self.send_mail("a@rsa.test", "one")
		m_ed = self.send_mail("b@News.ed.test", "two")
		m_other = self.send_mail("c@other.test", "three")
		got = self.received(3)

		t = self.assert_verifies(got[m_rsa], 1)[0]
		self.assertEqual((t["a"], t["d"], t["s"]), ("rsa-sha256", "rsa.test", "s2048"))
		t = self.assert_verifies(got[m_ed], 1)[0]
		self.assertEqual((t["a"], t["d"], t["s"]), ("ed25519-sha256", "news.ed.test", "ed1"))
		self.assertEqual(t["h"], "From:From:To:To:Subject:Subject:Date:Message-ID:Message-ID")
		t = self.assert_verifies(got[m_other], 1)[0]
		self.assertEqual((t["a"], t["d"], t["s"]), ("ed25519-sha256", "esp.test", "esp"))

		c = self.env.connect()
		c.ehlo()
		reply = c.transaction("x@client.test", [RCPT], b"Subject: no from\r\n\r\nbody\r\n")
		self.assertEqual(reply.code, 552, reply)
		self.assertIn("5.6.0 DKIM signing requires a From header", reply.line)
		c.close()

	def _validate(self, data):
		policy = self.env.write_delivery_policy(
			self.dnsmasq.port, message_hook=SETUP_HOOK % harness.lua_str(data))
		return harness.validate(policy, self.env.dir) + (policy,)

	@harness.bound(60)
	def test_validate_reports_bad_dkim_data(self):
		"""--validate accepts the good file; a TOML syntax error is reported
		with the file, line and column; a key file that is not there, an
		unknown key and an undefined additional signature are named."""
		data = self.write_data()
		rc, out, policy = self._validate(data)
		self.assertEqual(rc, 0, out)
		self.assertIn("%s: OK" % policy, out)

		good = data.read_text()
		data.write_text(good.replace('algo = "ed25519"\nfilename', 'algo = ed25519\nfilename', 1))
		rc, out, _ = self._validate(data)
		self.assertNotEqual(rc, 0, out)
		self.assertRegex(out, re.escape(str(data)) + r":11:\d+: ")

		data.write_text(good.replace(str(self.keys["rsa"][0]), "/nonexistent/rsa.key"))
		rc, out, _ = self._validate(data)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("[domain.\"rsa.test\"]", out)
		self.assertIn("can't read '/nonexistent/rsa.key': No such file or directory", out)

		data.write_text(good.replace('selector = "esp"', 'selectr = "esp"'))
		rc, out, _ = self._validate(data)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("%s: [signature.\"esp\"]: unknown key 'selectr'" % data, out)

		data.write_text(good.replace('additional_signatures = ["esp"]',
					     'additional_signatures = ["esp", "other"]'))
		rc, out, _ = self._validate(data)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("base.additional_signatures lists 'other'", out)
