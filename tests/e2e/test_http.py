"""The HTTP listener and the injection API as a client sees them: curl (a
real client nobody here wrote) posts KumoMTA-shaped requests to petreld's
kumo.start_http_listener, the messages go through http_message_generated
and the spool to an aiosmtpd receiver found by MX in a dnsmasq zone, and
Python's email package reads what arrived.

Covered: a builder-form request with 3 recipients and substitutions (3
distinct messages, each substituted for its recipient, MIME parts decoded
as sent), a whole-message template, malformed requests (400 with a JSON
error naming the field; 413; 405; 415), trusted_hosts (403 from 127.0.0.2)
and Basic credentials checked by http_server_validate_auth_basic, a policy
reject of one recipient, keep-alive (two URLs on one connection), a
chunked request body, HTTPS with the self-signed certificate, and
`petreld --validate` on bad start_http_listener keys.
"""

import email
import email.policy
import json
import shutil
import subprocess
import unittest

import dns
import harness
import receivers
from test_delivery import DeliveryTest

ADDR = "127.0.0.62"
MX = "mx.http.test"
SENDER = "news@sender.test"

HOOK = r"""
kumo.on('http_message_generated', function(msg)
  local subject = msg:get_first_named_header_value('Subject') or ''
  if subject:find('reject-me', 1, true) then
    kumo.reject(550, '5.7.1 not this one')
  end
  msg:append_header('X-Http-Auth', msg:get_meta('http_auth'))
  local rm = msg:get_meta('rcpt_meta')
  if rm then
    msg:append_header('X-Segment', rm.segment)
  end
end)

kumo.on('http_server_validate_auth_basic', function(user, password)
  return user == 'daniel' and password == 'tiger'
end)
"""

GIF = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def builder_request(recipients, subject="Hello {{ name }}", **extra):
	req = {
		"envelope_sender": SENDER,
		"substitutions": {"campaign": "Summer Sale", "discount": 10},
		"recipients": recipients,
		"content": {
			"subject": subject,
			"from": {"email": "news@sender.test", "name": "Sender Shop"},
			"reply_to": {"email": "help@sender.test"},
			"text_body": "Dear {{ name }},\n{{ campaign }}: {{ discount }}% off for "
				     "{{ email }}.\n",
			"html_body": "<p>Dear {{ name }}, {{ campaign }}: <b>{{ discount }}%</b> "
				     "{{ note }}</p>",
			"headers": {"X-Campaign": "{{ campaign | upper }}"},
			"attachments": [
				{"data": GIF, "base64": True, "content_type": "image/gif",
				 "file_name": "pixel.gif", "content_id": "px"},
				{"data": "a,b\n1,2\n", "content_type": "text/csv",
				 "file_name": "prices.csv"},
			],
		},
	}
	req.update(extra)
	return req


class HttpTest(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.curl = harness.require_tool("curl")
		self.hport = harness.free_port()
		self.start_dns(dns.Zone().mx("http.test", 10, MX).a(MX, ADDR))
		self.r = self.receiver(receivers.SmtpReceiver, ADDR)

	def start(self, **http):
		listener = {"listen": "127.0.0.1:%d" % self.hport, "trusted_hosts": ["127.0.0.1"],
			    "hostname": "api.petrel.test"}
		listener.update(http)
		self.scheme = "https" if listener.get("use_tls") else "http"
		return self.start_petrel(message_hook=HOOK, http_listener=listener)

	def url(self, path="/api/inject/v1"):
		return "%s://127.0.0.1:%d%s" % (self.scheme, self.hport, path)

	def curl_run(self, args, timeout=30):
		"""curl with args; returns (stdout bytes, exit status)."""
		p = subprocess.run([self.curl, "-sS"] + args, capture_output=True, timeout=timeout,
				   stdin=subprocess.DEVNULL)
		return p.stdout, p.returncode, p.stderr.decode(errors="replace")

	def post(self, body, *, interface=None, user=None, path="/api/inject/v1", extra=()):
		"""POST body (a dict, or bytes as they are) as JSON; returns (status,
		parsed JSON answer or the raw bytes)."""
		data = body if isinstance(body, bytes) else json.dumps(body).encode()
		out = self.env.dir / "answer"
		args = ["-o", str(out), "-w", "%{http_code}", "-H", "Content-Type: application/json",
			"--data-binary", "@-", self.url(path)]
		if self.scheme == "https":
			args.insert(0, "-k")
		if interface:
			args[:0] = ["--interface", interface]
		if user:
			args[:0] = ["-u", user]
		args[:0] = list(extra)
		p = subprocess.run([self.curl, "-sS"] + args, input=data, capture_output=True,
				   timeout=30)
		self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
		status = int(p.stdout.decode())
		raw = out.read_bytes()
		try:
			return status, json.loads(raw)
		except ValueError:
			return status, raw

	def received(self, count, timeout=30):
		self.wait_for(lambda: self.r.count() >= count, timeout, what="%d deliveries" % count)
		return {d.rcpt: email.message_from_bytes(d.content, policy=email.policy.default)
			for d in self.r.deliveries()}

	def receptions(self):
		return self.records("Reception")


class Inject(HttpTest):
	@harness.bound(90)
	def test_builder_three_recipients_substituted(self):
		"""The issue's acceptance: one builder-form request, 3 recipients with
		their own substitutions over global ones -> 3 distinct messages, each
		substituted for its recipient, with the MIME parts (text, escaped
		HTML, inline and regular attachments) decoding to what was sent, and
		3 Reception records of protocol HTTP."""
		self.start()
		status, answer = self.post(builder_request([
			{"email": "ann@http.test", "name": "Ann Émile",
			 "substitutions": {"note": "<VIP & co>"}, "metadata": {"segment": "gold"}},
			{"email": "bob@http.test", "name": "Bob",
			 "substitutions": {"discount": 25, "note": "second"}},
			{"email": "cy@http.test", "substitutions": {"campaign": "Own Sale"}},
		]))
		self.assertEqual(status, 200, answer)
		self.assertEqual(answer, {"success_count": 3, "fail_count": 0,
					  "failed_recipients": [], "errors": []})
		got = self.received(3)
		self.assertEqual(sorted(got), ["ann@http.test", "bob@http.test", "cy@http.test"])
		self.assertEqual(len({m["Message-ID"] for m in got.values()}), 3)

		ann, bob, cy = got["ann@http.test"], got["bob@http.test"], got["cy@http.test"]
		self.assertEqual(str(ann["Subject"]), "Hello Ann Émile")
		self.assertEqual(str(bob["Subject"]), "Hello Bob")
		self.assertEqual(str(cy["Subject"]), "Hello ")	# no name: undefined prints nothing
		self.assertEqual(ann["To"].addresses[0].display_name, "Ann Émile")
		self.assertEqual(ann["To"].addresses[0].addr_spec, "ann@http.test")
		self.assertEqual(str(cy["To"]), "cy@http.test")
		self.assertEqual(str(ann["From"]), "Sender Shop <news@sender.test>")
		self.assertEqual(str(ann["Reply-To"]), "help@sender.test")
		self.assertEqual(str(ann["X-Campaign"]), "SUMMER SALE")
		self.assertEqual(str(cy["X-Campaign"]), "OWN SALE")
		self.assertEqual(str(ann["X-Http-Auth"]), "127.0.0.1")
		self.assertEqual(str(ann["X-Segment"]), "gold")
		self.assertIsNone(bob["X-Segment"])
		self.assertIn("with HTTP id", str(ann["Received"]))

		def text(m, subtype):
			part = m.get_body(preferencelist=(subtype,))
			return part.get_content()

		self.assertEqual(text(ann, "plain"),
				 "Dear Ann Émile,\r\nSummer Sale: 10% off for ann@http.test.")
		self.assertEqual(text(bob, "plain"),
				 "Dear Bob,\r\nSummer Sale: 25% off for bob@http.test.")
		self.assertEqual(text(cy, "plain"),
				 "Dear ,\r\nOwn Sale: 10% off for cy@http.test.")
		self.assertEqual(text(ann, "html"),
				 "<p>Dear Ann Émile, Summer Sale: <b>10%</b> &lt;VIP &amp; co&gt;</p>")
		atts = {p.get_filename(): p for p in ann.walk() if p.get_filename()}
		self.assertEqual(sorted(atts), ["pixel.gif", "prices.csv"])
		import base64
		self.assertEqual(atts["pixel.gif"].get_content(), base64.b64decode(GIF))
		self.assertEqual(atts["pixel.gif"]["Content-ID"], "<px>")
		self.assertEqual(atts["prices.csv"].get_content(), "a,b\n1,2\n")
		self.assertEqual(ann.get_content_type(), "multipart/mixed")

		recs = self.receptions()
		self.assertEqual(len(recs), 3, recs)
		for rec in recs:
			self.assertEqual(rec["reception_protocol"], "HTTP")
			self.assertEqual(rec["sender"], SENDER)
			self.assertEqual(rec["peer_address"]["addr"], "127.0.0.1")
			self.assertEqual(rec["meta"]["http_auth"], "127.0.0.1")
		meta = {rec["recipient"]: rec["meta"] for rec in recs}
		self.assertEqual(meta["ann@http.test"]["rcpt_meta"], {"segment": "gold"})
		self.assertNotIn("rcpt_meta", meta["bob@http.test"])
		self.wait_records("Delivery", 3)
		self.wait_spool_empty()

	@harness.bound(60)
	def test_whole_message_template_and_partial_failure(self):
		"""content as a whole message: substituted per recipient; a bad
		address and a policy reject fail only their recipients, each listed
		with its reason, and the rest is delivered."""
		self.start()
		status, answer = self.post({
			"envelope_sender": SENDER,
			"substitutions": {"greeting": "Hi"},
			"recipients": [
				{"email": "dee@http.test", "name": "Dee"},
				{"email": "not an address"},
				{"email": "eve@http.test", "substitutions": {"greeting": "reject-me"}},
			],
			"content": "From: news@sender.test\nTo: {{ to_header }}\n"
				   "Subject: {{ greeting }} {{ name }}\n\n{{ greeting }}, {{ name }}!\n",
		})
		self.assertEqual(status, 200, answer)
		self.assertEqual(answer["success_count"], 1, answer)
		self.assertEqual(answer["fail_count"], 2, answer)
		self.assertEqual(answer["failed_recipients"], ["not an address", "eve@http.test"])
		self.assertEqual(answer["errors"], [
			"not an address: recipients[1].email: 'not an address' is not an address of "
			"the form user@domain",
			"eve@http.test: 550 5.7.1 not this one"])
		got = self.received(1)
		dee = got["dee@http.test"]
		self.assertEqual(str(dee["Subject"]), "Hi Dee")
		self.assertEqual(str(dee["To"]), "Dee <dee@http.test>")
		self.assertEqual(dee.get_content(), "Hi, Dee!\r\n")
		self.assertEqual(len(self.receptions()), 1)
		harness.wait_for(lambda: self.r.count() == 1, 2)


class Batches(HttpTest):
	@harness.bound(120)
	def test_many_recipients_in_several_batches(self):
		"""150 recipients (more than two generation batches of 64): every one
		answered as a success only once durable, each logged and delivered
		once, with its own substitution."""
		self.start()
		rcpts = [{"email": "r%03d@http.test" % i, "substitutions": {"n": i}}
			 for i in range(150)]
		status, answer = self.post({"envelope_sender": SENDER, "recipients": rcpts,
					    "content": "Subject: number {{ n }}\n\nfor {{ email }}\n"})
		self.assertEqual(status, 200, answer)
		self.assertEqual((answer["success_count"], answer["fail_count"]), (150, 0), answer)
		self.assertEqual(len(self.receptions()), 150)
		got = self.received(150, timeout=90)
		self.assertEqual(len(got), 150)
		for i in (0, 63, 64, 127, 128, 149):
			m = got["r%03d@http.test" % i]
			self.assertEqual(str(m["Subject"]), "number %d" % i)
		self.assertEqual(self.r.count(), 150)


class Malformed(HttpTest):
	@harness.bound(60)
	def test_malformed_requests_get_400_naming_the_field(self):
		"""Not JSON, a missing field, a wrong type, a template outside the
		subset, a KumoMTA option Petrel lacks: 400 with {"error": ...} naming
		the field; nothing is spooled or logged.  Also 413 past
		request_body_limit, 405, 404 and 415."""
		self.start(request_body_limit=65536)
		rcpts = [{"email": "x@http.test"}]
		cases = [
			(b'{"envelope_sender": ', "the request body is not valid JSON"),
			({"envelope_sender": SENDER, "content": "S: x"}, "recipients is required"),
			({"envelope_sender": SENDER, "recipients": rcpts, "content": {"text_body": 5}},
			 "content.text_body must be a string, got an integer"),
			({"envelope_sender": SENDER, "recipients": [{"name": "x"}], "content": "S: x"},
			 "recipients[0].email is required"),
			({"envelope_sender": SENDER, "recipients": rcpts,
			  "content": {"text_body": "{% for x in y %}{% endfor %}"}},
			 "content.text_body: line 1: '{%' statements"),
			({"envelope_sender": SENDER, "recipients": rcpts, "content": "S: x",
			  "deferred_spool": True}, "deferred_spool: true is not supported"),
			({"envelope_sender": SENDER, "recipients": rcpts,
			  "content": {"text_body": "x", "attachments": [
				  {"data": "%%%", "base64": True, "content_type": "image/png"}]}},
			 "content.attachments[0].data is not valid base64"),
		]
		for body, want in cases:
			status, answer = self.post(body)
			self.assertEqual(status, 400, (body, answer))
			self.assertIsInstance(answer, dict, answer)
			self.assertEqual(list(answer), ["error"], answer)
			self.assertIn(want, answer["error"], body)

		status, answer = self.post({"envelope_sender": SENDER, "recipients": rcpts,
					    "content": "S: " + "x" * 70000})
		self.assertEqual(status, 413, answer)
		self.assertIn("exceeds the limit of 65536", answer["error"])

		out, rc, err = self.curl_run(["-o", "/dev/null", "-w", "%{http_code}", self.url()])
		self.assertEqual((rc, out), (0, b"405"), err)
		out, rc, err = self.curl_run(["-o", "/dev/null", "-w", "%{http_code}",
					      self.url("/api/nope")])
		self.assertEqual((rc, out), (0, b"404"), err)
		out, rc, err = self.curl_run(["-o", "/dev/null", "-w", "%{http_code}", "-d", "a=b",
					      self.url()])
		self.assertEqual((rc, out), (0, b"415"), err)
		self.assertEqual(self.receptions(), [])
		self.assertFalse(harness.spool_ls(self.env.spool))


class Trust(HttpTest):
	@harness.bound(60)
	def test_untrusted_needs_basic_credentials(self):
		"""From 127.0.0.2 (not in trusted_hosts): 403 without credentials,
		401 with wrong ones (and a Basic challenge), accepted with the ones
		http_server_validate_auth_basic takes; http_auth is then the user."""
		self.start()
		req = builder_request([{"email": "fay@http.test", "name": "Fay"}])
		status, answer = self.post(req, interface="127.0.0.2")
		self.assertEqual(status, 403, answer)
		self.assertIn("127.0.0.2 is not in trusted_hosts", answer["error"])
		status, answer = self.post(req, interface="127.0.0.2", user="daniel:lion")
		self.assertEqual(status, 401, answer)
		self.assertEqual(answer, {"error": "invalid credentials"})
		out, rc, err = self.curl_run(["-o", "/dev/null", "-D", "-", "--interface", "127.0.0.2",
					      "-u", "x:y", self.url("/x")])
		self.assertIn(b'WWW-Authenticate: Basic realm="api.petrel.test"', out, err)
		self.assertEqual(self.receptions(), [])

		status, answer = self.post(req, interface="127.0.0.2", user="daniel:tiger")
		self.assertEqual(status, 200, answer)
		self.assertEqual(answer["success_count"], 1)
		fay = self.received(1)["fay@http.test"]
		self.assertEqual(str(fay["X-Http-Auth"]), "daniel")
		rec = self.receptions()[0]
		self.assertEqual(rec["meta"]["http_auth"], "daniel")
		self.assertEqual(rec["peer_address"]["addr"], "127.0.0.2")


class Connection(HttpTest):
	@harness.bound(60)
	def test_keep_alive_and_chunked(self):
		"""Two URLs in one curl run share one connection (the second makes no
		new connect), each request's body sent chunked; both are injected."""
		self.start()
		body = json.dumps({"envelope_sender": SENDER,
				   "recipients": [{"email": "gil@http.test"}],
				   "content": "Subject: keep-alive\n\nbody\n"}).encode()
		p = subprocess.run([self.curl, "-sS", "-o", "/dev/null", "-o", "/dev/null", "-w",
				    "%{http_code} %{num_connects}\n", "-H",
				    "Content-Type: application/json", "-H",
				    "Transfer-Encoding: chunked", "--data-binary", "@-",
				    self.url(), self.url()],
				   input=body, capture_output=True, timeout=30)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertEqual(p.stdout.decode().split("\n"), ["200 1", "200 0", ""])
		self.received(2)
		self.assertEqual(len(self.receptions()), 2)

	@harness.bound(60)
	def test_https(self):
		"""use_tls: TLS from the first byte with the self-signed certificate
		(curl -k); the Reception record carries the TLS version."""
		self.start(use_tls=True)
		status, answer = self.post({"envelope_sender": SENDER,
					    "recipients": [{"email": "hal@http.test"}],
					    "content": "Subject: over TLS\n\nbody\n"})
		self.assertEqual(status, 200, answer)
		self.assertEqual(answer["success_count"], 1)
		self.received(1)
		rec = self.receptions()[0]
		self.assertTrue(rec["tls_protocol_version"].startswith("TLSv1."), rec)
		# Plain HTTP on the TLS port gets no answer, only a closed connection.
		out, rc, err = self.curl_run(["-o", "/dev/null", "-w", "%{http_code}", "--max-time",
					      "10", "http://127.0.0.1:%d/x" % self.hport])
		self.assertNotEqual(rc, 0)
		self.assertEqual(out, b"000")


class Validate(harness.PetrelTest):
	def check(self, fields, want):
		policy = self.env.write_policy(text="""local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool{name='data', path='spool'}
  kumo.start_esmtp_listener{listen='127.0.0.1:%d'}
  kumo.start_http_listener{%s}
end)
""" % (self.env.port, fields))
		rc, out = harness.validate(policy, self.env.dir)
		self.assertEqual(rc, 1, out)
		self.assertIn("%s:5: %s" % (policy, want), out)

	def test_validate_refuses_bad_listener_keys(self):
		"""petreld --validate names the file, the line and the key."""
		self.check("listen='127.0.0.1:8000', trusted_host={'10.0.0.1'}",
			   "start_http_listener: unknown key 'trusted_host'")
		self.check("trusted_hosts={'10.0.0.0/40'}",
			   "start_http_listener: trusted_hosts[1]: '10.0.0.0/40' is not an IP "
			   "address or CIDR block")
		self.check("use_tls=1", "start_http_listener: 'use_tls' must be a boolean, got number")
		self.check("listen='localhost'", "start_http_listener: 'listen' must be \"host:port\"")
		self.check("use_tls=true, tls_certificate={vault_path='x'}, tls_private_key='k'",
			   "start_http_listener: 'tls_certificate' as a table (KumoMTA's key_data or "
			   "Vault source) is not supported yet by Petrel: give a file path")

	def test_validate_counts_http_listeners(self):
		policy = self.env.write_policy(text="""local kumo = require 'kumo'
kumo.on('init', function()
  kumo.start_esmtp_listener{listen='127.0.0.1:%d'}
  kumo.start_http_listener{listen='127.0.0.1:8000'}
end)
""" % self.env.port)
		rc, out = harness.validate(policy, self.env.dir)
		self.assertEqual(rc, 0, out)
		self.assertIn("OK (1 listener, 1 HTTP listener)", out)


if __name__ == "__main__":
	unittest.main()
