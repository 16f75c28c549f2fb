"""The policy in examples/ (init.lua in the seed's shape with the four TOML
files and queues.toml): `petreld --validate` accepts it as shipped, and it
runs: a message injected with an X-Tenant header is relayed through the
tenant's pool, arrives without the X-Tenant header, and carries two DKIM
signatures, RSA-2048 for the From domain and Ed25519 for the ESP, both
verified by dkimpy against the public halves of the shipped keys.

The examples directory is copied as it is into the test's directory; the
only change is the receivers' port added to shaping.toml's ["default"]
block (the example delivers to port 25).  Listen address, spool, logs and
resolver come from the PETREL_* variables init.lua reads."""

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import unittest

import dns
import harness
import receivers
from test_delivery import DeliveryTest

EXAMPLES = harness.REPO / "examples"
RCPT = "someone@dest.test"
MX_ADDR = "127.0.0.71"


def public_txt(key_path, ed25519):
	der = subprocess.run(["openssl", "pkey", "-in", str(key_path), "-pubout", "-outform", "DER"],
			     check=True, capture_output=True, timeout=30).stdout
	if ed25519:
		return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:])
	return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


class Examples(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.copy = self.env.dir / "examples"
		shutil.copytree(EXAMPLES, self.copy)

	@harness.bound(60)
	def test_validates_as_shipped(self):
		rc, out = harness.validate(self.copy / "init.lua", harness.REPO)
		self.assertEqual(rc, 0, out)
		self.assertIn("init.lua: OK (1 listener, 1 HTTP listener)", out)

	@harness.bound(90)
	def test_runs_signs_and_routes(self):
		if importlib.util.find_spec("dkim") is None:
			raise unittest.SkipTest(harness.MISSING_DEP + "python3-dkim")
		import dkim
		self.start_dns(dns.Zone().mx("dest.test", 10, "mx.dest.test").a("mx.dest.test", MX_ADDR))
		r = self.receiver(receivers.SmtpReceiver, MX_ADDR)
		curl = harness.require_tool("curl")
		http_port = harness.free_port()
		shaping = self.copy / "shaping.toml"
		shaping.write_text(shaping.read_text().replace(
			'["default"]\n', '["default"]\nsmtp_port = %d\n' % self.rport, 1))
		env = {
			"PETREL_SMTP_LISTEN": "127.0.0.1:%d" % self.env.port,
			"PETREL_SPOOL": str(self.env.spool),
			"PETREL_LOG_DIR": str(self.env.log_dir),
			"PETREL_NAME_SERVERS": "127.0.0.1:%d" % self.dnsmasq.port,
			"PETREL_HTTP_LISTEN": "127.0.0.1:%d" % http_port,
		}
		for k, v in env.items():
			self.addCleanup(os.environ.pop, k, None)
			os.environ[k] = v
		d = self.env.start(self.copy / "init.lua", shards=2, cwd=self.env.dir)
		self.addCleanup(d.stop)

		msg = harness.make_message(subject="example relay", to=RCPT, sender="news@example.com",
					   extra_headers=("X-Tenant: marketing", "Date: Fri, 04 Dec 2026 12:00:00 +0000",
							  "MIME-Version: 1.0"))
		msg = msg.replace(b"From: <news@example.com>", b"From: Example News <news@example.com>")
		c = self.env.connect(greet=False)
		c.expect("220 mta.example.com ESMTP Petrel")
		c.ehlo()
		c.send_message("bounces@bounce.example.com", [RCPT], msg)
		c.close()
		# The same through the HTTP listener (builder form, curl).
		body = json.dumps({"envelope_sender": "bounces@bounce.example.com",
				   "recipients": [{"email": RCPT, "substitutions": {"name": "Ann"}}],
				   "content": {"from": {"email": "news@example.com", "name": "Example News"},
					       "subject": "hello {{ name }}",
					       "text_body": "Dear {{ name }}, this came over HTTP.\n",
					       "headers": {"X-Tenant": "marketing"}}})
		p = subprocess.run([curl, "-sS", "-H", "Content-Type: application/json", "--data-binary",
				    "@-", "http://127.0.0.1:%d/api/inject/v1" % http_port],
				   input=body.encode(), capture_output=True, timeout=30)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertEqual(json.loads(p.stdout)["success_count"], 1, p.stdout)
		self.wait_for(lambda: r.count() == 2, 30, what="the relayed messages")
		by_subject = {re.search(rb"^Subject: (.*?)\r?$", d.content, re.M).group(1): d
			      for d in r.deliveries()}
		self.assertEqual(set(by_subject), {b"example relay", b"hello Ann"})
		self.check_signed(dkim, by_subject[b"hello Ann"])
		got = by_subject[b"example relay"]
		self.assertNotIn(b"\nX-Tenant:", got.content)
		self.assertEqual(got.peer, "127.0.0.2", "the marketing pool has only ip-2")
		self.assertEqual(got.ehlo, "mta2.example.com")

		self.check_signed(dkim, got)
		recs = self.wait_records("Delivery", 2)
		self.assertEqual({(x["egress_pool"], x["egress_source"]) for x in recs},
				 {("marketing", "ip-2")})
		self.assertEqual({x["queue"] for x in recs}, {"marketing@dest.test"})

	def check_signed(self, dkim, got):
		"""Two signatures, RSA-2048 by example.com and Ed25519 by the ESP,
		both verified by dkimpy."""
		txt = {b"s2048._domainkey.example.com.": public_txt(
			       self.copy / "dkim/example.com/s2048.key", False),
		       b"ed1._domainkey.esp.example.net.": public_txt(
			       self.copy / "dkim/esp.example.net/ed1.key", True)}
		v = dkim.DKIM(got.content)
		algos = []
		for i in range(2):
			self.assertTrue(v.verify(idx=i, dnsfunc=lambda name, timeout=5: txt.get(name)),
					"signature %d:\n%s" % (i, got.content.decode(errors="replace")[:3000]))
			m = re.findall(rb"^DKIM-Signature:.*?a=([a-z0-9-]+);.*?d=([a-z.]+);",
				       got.content, re.M | re.S)
			algos = [(a.decode(), dd.decode()) for a, dd in m]
		self.assertEqual(sorted(algos), [("ed25519-sha256", "esp.example.net"),
						 ("rsa-sha256", "example.com")])
