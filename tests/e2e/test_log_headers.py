"""Header capture in log records: configure_local_logs{headers = {...}}
(KumoMTA's option: names case-insensitive, a final '*' matches a prefix;
each captured field keyed by its name as the message spells it, a repeated
field an array).  The fields are captured at reception; the Reception
record and every delivery record of the message (TransientFailure, then
Delivery) carry them, and a field not listed is absent.  Also: after a
restart (captured again from the spooled message), for HTTP injection
(with a field the policy appended), and {} without the option.

Run only these:  /usr/bin/python3 tests/e2e/run.py -k 'test_log_headers*'
"""

import harness
import receivers
import test_http
from harness import REPLY_QUIT, make_message
from test_delivery import RESP_ADDR, RESP_SITE, SENDER, DeliveryTest, response_zone

LOGS_LINE = "kumo.configure_local_logs{log_dir=%s}"
HEADERS = ["Subject", "X-Campaign-*"]
WANT = {"Subject": "spring sale, part one", "X-CAMPAIGN-ID": "c-42",
	"X-Campaign-Tag": ["blue", "green"]}


def headers_policy(test, headers=HEADERS, **kw):
	"""The delivery policy (harness.delivery_policy_source with kw) with
	configure_local_logs{log_dir, headers}."""
	path = test.env.write_delivery_policy(test.dnsmasq.port, **kw)
	text = path.read_text()
	old = LOGS_LINE % harness.lua_str(str(test.env.log_dir))
	test.assertIn(old, text)
	opts = {"log_dir": str(test.env.log_dir), "headers": headers}
	path.write_text(text.replace(old, "kumo.configure_local_logs%s" % harness.lua_value(opts)))
	return path


class LogHeaders(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(response_zone())

	def headers_policy(self):
		return headers_policy(self, queue={"retry_interval": "1s", "max_retry_interval": "2s"},
				      egress={"smtp_port": self.rport})

	@harness.bound(60)
	def test_reception_and_delivery_records_carry_the_configured_headers(self):
		"""Subject (folded: logged unfolded) and the X-Campaign-* fields
		(keyed as the message spells them; the repeated one an array in
		message order) are captured; From, To, Message-ID and X-Other are
		not.  The receiver greylists the first
		RCPT, so the message has a TransientFailure and a Delivery, both
		carrying the same headers as the Reception."""
		self.receiver(receivers.ScriptedReceiver, RESP_ADDR,
			      rcpt=receivers.first(1, "451 4.7.1 greylisted, try again later"))
		self.start_petrel(policy=self.headers_policy())
		rcpt = "user@grey.test"
		msg = make_message(subject="spring sale,\r\n part one", to=rcpt, sender=SENDER,
				   extra_headers=("X-CAMPAIGN-ID: c-42", "X-Campaign-Tag: blue",
						  "X-Other: not logged", "x-campaign-tag: green"))
		c = self.env.connect()
		c.ehlo()
		mid = c.send_message(SENDER, [rcpt], msg)
		c.cmd("QUIT", REPLY_QUIT)
		c.close()
		self.wait_records("Delivery", 1, timeout=20)
		recs = [self.reception(mid)] + self.records(msg_id=mid)
		self.assertEqual([r["type"] for r in recs], ["Reception", "TransientFailure", "Delivery"],
				 recs)
		for r in recs:
			self.assertEqual(r["headers"], WANT, "%s record: %r" % (r["type"], r))

	@harness.bound(90)
	def test_records_after_a_restart_carry_the_headers(self):
		"""A message deferred before a restart (nothing listens: connection
		refused) is loaded from the spool at the next start; its Delivery
		then still carries the headers, captured again from the stored
		message."""
		policy = self.headers_policy()
		d = self.start_petrel(policy=policy)
		rcpt = "user@grey.test"
		msg = make_message(subject="after restart", to=rcpt, sender=SENDER,
				   extra_headers=("X-Campaign-Id: r-7",))
		c = self.env.connect()
		c.ehlo()
		mid = c.send_message(SENDER, [rcpt], msg)
		c.cmd("QUIT", REPLY_QUIT)
		c.close()
		[tf] = self.wait_records("TransientFailure", 1, timeout=20)
		want = {"Subject": "after restart", "X-Campaign-Id": "r-7"}
		self.assertEqual(tf["headers"], want, tf)
		d.stop()
		self.receiver(receivers.SmtpReceiver, [RESP_ADDR])
		self.start_petrel(policy=policy)
		[dl] = self.wait_records("Delivery", 1, timeout=30, msg_id=mid)
		self.assertEqual(dl["headers"], want, dl)


class NoLogHeaders(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(response_zone())

	@harness.bound(60)
	def test_without_headers_option_records_carry_an_empty_object(self):
		"""Without `headers`, every record has "headers": {}."""
		self.receiver(receivers.SmtpReceiver, [RESP_ADDR])
		self.start_petrel()
		mid, _ = self.send(["user@grey.test"], subject="no capture")
		self.wait_records("Delivery", 1, timeout=20)
		recs = [self.reception(mid)] + self.records(msg_id=mid)
		self.assertEqual([(r["type"], r["headers"]) for r in recs],
				 [("Reception", {}), ("Delivery", {})])
		self.assertEqual(RESP_SITE, recs[1]["site"])


class InjectedLogHeaders(test_http.HttpTest):
	@harness.bound(60)
	def test_http_injection_records_carry_headers_the_policy_added_too(self):
		"""A message injected over HTTP: its Reception and Delivery records
		carry Subject and the X-Http-* field http_message_generated appended
		(the capture sees the message as spooled), not X-Campaign."""
		listener = {"listen": "127.0.0.1:%d" % self.hport, "trusted_hosts": ["127.0.0.1"],
			    "hostname": "api.petrel.test"}
		self.scheme = "http"
		self.start_petrel(policy=headers_policy(
			self, headers=["subject", "X-Http-*"], egress={"smtp_port": self.rport},
			message_hook=test_http.HOOK, http_listener=listener))
		status, answer = self.post({
			"envelope_sender": test_http.SENDER,
			"recipients": [{"email": "dee@http.test"}],
			"content": "From: news@sender.test\nTo: dee@http.test\nSubject: injected\n"
				   "X-Campaign: not logged\n\nhello\n",
		})
		self.assertEqual(status, 200, answer)
		self.received(1)
		[dl] = self.wait_records("Delivery", 1, timeout=20)
		want = {"Subject": "injected", "X-Http-Auth": "127.0.0.1"}
		self.assertEqual(dl["headers"], want, dl)
		self.assertEqual(self.reception(dl["id"])["headers"], want)
