"""Listener domains as a client that is not a relay host sees them: petreld
with KumoMTA's listener_domains.toml through policy-extras.listener_domains,
relay_hosts 127.0.0.1, and clients connecting from 127.0.0.2 and 127.0.0.3.

  * a delivery status notification (RFC 3464) to a log_oob domain is taken
    (250) and logged as an OOB record naming the bounced recipient, the
    remote reply, and the id Petrel gave the message that bounced (read
    from the Received: field Petrel wrote, returned in the DSN);
  * a feedback report (RFC 5965) to a log_arf domain gives a Feedback
    record in KumoMTA's shape;
  * LogThenDrop consumes the report; log_oob = true (LogThenRelay) also
    relays it; relay_to domains are relayed for anyone; relay_from lets a
    listed client relay for its sender domain;
  * anything else from a non-relay client is refused: 550 5.7.1 at RCPT
    for an unlisted domain, 550 at the end of DATA for mail that is no
    report (or a report that can't be read) to a report-only domain.

The receiver (aiosmtpd on 127.0.0.71) stands for remote.test's MX, where
the original messages go, and for the relayed domains.

Run only this suite:  /usr/bin/python3 tests/e2e/run.py -k 'test_listener_domains*'
"""

import time

import dns
import harness
import receivers
from test_delivery import DeliveryTest

RECEIVER = "127.0.0.71"
CLIENT = "127.0.0.2"	# not in relay_hosts
TRUSTED_CLIENT = "127.0.0.3"	# in trusted.test's relay_from
SENDER = "news@client.test"

LISTENER_DOMAINS = """\
["bounce.test"]
log_oob = "LogThenDrop"

["fbl.test"]
log_arf = "LogThenDrop"

["relay.test"]
relay_to = true

["*.wild.test"]
relay_to = true

["oob-relay.test"]
# KumoMTA's boolean form: true is LogThenRelay
log_oob = true

["trusted.test"]
relay_from = ["%(trusted)s"]
""" % {"trusted": TRUSTED_CLIENT}

HOOK = """
local listener_domains = require 'policy-extras.listener_domains'
kumo.on('get_listener_domain', listener_domains:setup { %s })
"""

REPORT_HEAD = ("From: Mail Delivery System <MAILER-DAEMON@mx.remote.test>\r\n"
	       "To: <%(to)s>\r\n"
	       "Subject: %(subject)s\r\n"
	       "MIME-Version: 1.0\r\n"
	       "Content-Type: multipart/report; report-type=%(type)s;\r\n"
	       "\tboundary=\"=_report_7\"\r\n"
	       "\r\n"
	       "This is a MIME-encapsulated message.\r\n"
	       "\r\n"
	       "--=_report_7\r\n"
	       "Content-Type: multipart/alternative; boundary=\"=_report_7_alt\"\r\n"
	       "\r\n"
	       "--=_report_7_alt\r\n"
	       "Content-Type: text/plain\r\n"
	       "\r\n"
	       "%(human)s\r\n"
	       "--=_report_7_alt\r\n"
	       "Content-Type: text/html\r\n"
	       "\r\n"
	       "<p>%(human)s</p>\r\n"
	       "--=_report_7_alt--\r\n"
	       "\r\n")


def headers_of(content):
	"""The header block of a delivered message (bytes, CRLF), without the blank line."""
	return content.split(b"\r\n\r\n", 1)[0].decode()


def make_dsn(to, original_headers, failed, delayed=None, status="5.1.1",
	     diagnostic="smtp; 550 5.1.1 <%(rcpt)s>: user unknown", mta="mx.remote.test"):
	"""A DSN as Postfix-like MTAs send them: a multipart/alternative human
	part, the delivery-status part (one failed recipient, optionally a
	delayed one), the returned headers."""
	blocks = ["Reporting-MTA: dns; %s\r\nArrival-Date: Thu, 2 Jul 2026 18:55:38 +0000\r\n" % mta]
	blocks.append("Final-Recipient: rfc822; %s\r\nOriginal-Recipient: rfc822;<%s>\r\n"
		      "Action: failed\r\nStatus: %s\r\nRemote-MTA: dns; %s\r\n"
		      "Diagnostic-Code: %s\r\n"
		      % (failed, failed, status, mta, diagnostic % {"rcpt": failed}))
	if delayed:
		blocks.append("Final-Recipient: rfc822; %s\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
			      % delayed)
	text = (REPORT_HEAD % {"to": to, "subject": "Undelivered Mail Returned to Sender",
			       "type": "delivery-status",
			       "human": "I'm sorry to have to inform you that your message could "
			       "not be delivered."}
		+ "--=_report_7\r\nContent-Type: message/delivery-status\r\n\r\n"
		+ "\r\n".join(blocks)
		+ "\r\n--=_report_7\r\nContent-Type: text/rfc822-headers\r\n\r\n"
		+ original_headers + "\r\n"
		+ "--=_report_7--\r\n")
	return harness.dot_stuff(text.encode())


def make_arf(to, original, mail_from, rcpt_to):
	"""An ARF abuse report (RFC 5965 B.2 in shape) returning the whole
	original message."""
	text = (REPORT_HEAD % {"to": to, "subject": "FW: complaint", "type": "feedback-report",
			       "human": "This is an email abuse report."}
		+ "--=_report_7\r\nContent-Type: message/feedback-report\r\n\r\n"
		+ "Feedback-Type: abuse\r\n"
		  "User-Agent: SomeGenerator/1.0\r\n"
		  "Version: 1\r\n"
		  "Original-Mail-From: <%s>\r\n"
		  "Original-Rcpt-To: <%s>\r\n"
		  "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
		  "Reporting-MTA: dns; mail.remote.test\r\n"
		  "Source-IP: 192.0.2.1\r\n"
		  "Reported-Domain: client.test\r\n"
		  "Removal-Recipient: %s\r\n"
		  "\r\n" % (mail_from, rcpt_to, rcpt_to)
		+ "--=_report_7\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
		+ original.decode() + "\r\n"
		+ "--=_report_7--\r\n")
	return harness.dot_stuff(text.encode())


class ListenerDomains(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone()
			       .mx("remote.test", 10, "mx.remote.test")
			       .mx("relay.test", 10, "mx.remote.test")
			       .mx("a.wild.test", 10, "mx.remote.test")
			       .mx("oob-relay.test", 10, "mx.remote.test")
			       .a("mx.remote.test", RECEIVER))
		self.r = self.receiver(receivers.SmtpReceiver, RECEIVER)
		self.toml = self.env.dir / "listener_domains.toml"
		self.toml.write_text(LISTENER_DOMAINS)
		self.petrel = self.start_petrel(message_hook=HOOK % harness.lua_str(self.toml))

	# --- helpers -------------------------------------------------------------

	def original(self, rcpt="user@remote.test"):
		"""A message relayed by Petrel (from the relay host) to rcpt:
		returns (Petrel's id, the content the receiver got)."""
		mid, msgid = self.send([rcpt], subject="the original")
		self.wait_for(lambda: msgid in {d.message_id for d in self.r.deliveries()}, 30,
			      what="the original's delivery")
		[d] = [d for d in self.r.deliveries() if d.message_id == msgid]
		self.assertIn("(Petrel) with ESMTP id %s" % mid, " ".join(harness.header_block(d.content)))
		return mid, d.content

	def client(self, source=CLIENT):
		c = self.env.connect(source=source)
		c.ehlo("mx.remote.test")
		return c

	def send_report(self, rcpt, data, sender=""):
		"""One report over a client session from CLIENT; returns the id."""
		c = self.client()
		mid = c.send_message(sender, [rcpt], data)
		c.cmd("QUIT", harness.REPLY_QUIT)
		c.close()
		return mid

	def no_trace_of(self, msg_id):
		"""msg_id was consumed: no Reception, not in the spool."""
		time.sleep(0.5)		# a Reception would have been logged by now
		self.assertEqual(self.records("Reception", msg_id=msg_id), [])
		self.assertNotIn(msg_id, harness.spool_ls(self.env.spool))

	# --- reports -------------------------------------------------------------

	@harness.bound(60)
	def test_dsn_to_log_oob_domain_gives_oob_record(self):
		"""A DSN from a non-relay client to bounces@bounce.test (LogThenDrop):
		250, one OOB record for the failed recipient (none for the delayed
		one) with the remote reply as response, the DSN's Reporting-MTA as
		peer name and, as original_id, the id Petrel gave the bounced
		message; the DSN itself is not spooled nor relayed."""
		orig_id, content = self.original()
		dsn = make_dsn("bounces@bounce.test", headers_of(content), "user@remote.test",
			       delayed="slow@remote.test")
		mid = self.send_report("bounces@bounce.test", dsn)
		[rec] = self.wait_records("OOB", 1)
		want = {"type": "OOB", "id": mid, "original_id": orig_id,
			"sender": "bounces@bounce.test", "recipient": "user@remote.test",
			"queue": "bounce.test", "site": "", "size": 0,
			"response": {"code": 550, "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
				     "content": "5.1.1 <user@remote.test>: user unknown",
				     "command": None},
			"peer_address": {"name": "mx.remote.test", "addr": CLIENT},
			"num_attempts": 0, "feedback_report": None, "delivery_protocol": None,
			"reception_protocol": "ESMTP"}
		self.assertEqual({k: rec.get(k) for k in want}, want, rec)
		self.no_trace_of(mid)
		self.assertEqual(len(self.records("OOB")), 1)
		self.assertEqual(self.r.count(), 1, "only the original was delivered")

	@harness.bound(60)
	def test_arf_to_log_arf_domain_gives_feedback_record(self):
		"""An ARF report to fbl@fbl.test (LogThenDrop): 250, one Feedback
		record whose feedback_report has KumoMTA's fields and the returned
		message, original_id names the reported message; nothing spooled."""
		orig_id, content = self.original("victim@remote.test")
		arf = make_arf("fbl@fbl.test", content, SENDER, "victim@remote.test")
		mid = self.send_report("fbl@fbl.test", arf)
		[rec] = self.wait_records("Feedback", 1)
		self.assertEqual({k: rec.get(k) for k in ("id", "original_id", "sender", "recipient",
							"queue")},
				 {"id": mid, "original_id": orig_id, "sender": "",
				  "recipient": "fbl@fbl.test", "queue": "fbl.test"}, rec)
		fr = rec["feedback_report"]
		want = {"feedback_type": "abuse", "user_agent": "SomeGenerator/1.0", "version": "1",
			"arrival_date": "2005-03-08T18:00:00.000000Z", "incidents": None,
			"original_envelope_id": None, "original_mail_from": SENDER,
			"reporting_mta": {"mta_type": "dns", "name": "mail.remote.test"},
			"source_ip": "192.0.2.1", "authentication_results": [],
			"original_rcpto_to": ["victim@remote.test"], "reported_domain": ["client.test"],
			"reported_uri": [], "extensions": {"removal-recipient": ["victim@remote.test"]},
			"supplemental_trace": None}
		self.assertEqual({k: fr.get(k) for k in want}, want, fr)
		self.assertEqual(fr["original_message"], content.decode().replace("\r\n", "\n"))
		self.no_trace_of(mid)
		self.assertEqual(self.records("OOB"), [])

	@harness.bound(60)
	def test_log_then_relay_logs_and_relays(self):
		"""log_oob = true is LogThenRelay (KumoMTA): the DSN gets its OOB
		record, a Reception, and is delivered to oob-relay.test's MX."""
		orig_id, content = self.original()
		dsn = make_dsn("bounces@oob-relay.test", headers_of(content), "user@remote.test",
			       diagnostic="smtp; 554 rejected")
		mid = self.send_report("bounces@oob-relay.test", dsn)
		[rec] = self.wait_records("OOB", 1)
		self.assertEqual((rec["id"], rec["original_id"], rec["recipient"], rec["response"]),
				 (mid, orig_id, "user@remote.test",
				  {"code": 554, "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
				   "content": "rejected", "command": None}))
		self.assertEqual(self.reception(mid)["recipient"], "bounces@oob-relay.test")
		self.wait_for(lambda: self.r.count() >= 2, 30, what="the DSN relayed")
		self.assertEqual([d.rcpt for d in self.r.deliveries()],
				 ["user@remote.test", "bounces@oob-relay.test"])
		self.wait_records("Delivery", 2)

	# --- refusals --------------------------------------------------------------

	@harness.bound(60)
	def test_not_an_open_relay(self):
		"""From a non-relay client: an unlisted domain gets 550 5.7.1 at
		RCPT (the very DSN that bounce.test takes, too); mail that is no
		report to a report-only domain, a DSN that can't be read and an ARF
		report to a DSN-only domain get 550 after DATA; nothing is spooled,
		logged or relayed.  The relay host may still send anywhere."""
		dsn = make_dsn("bounces@other.test", "Subject: x\r\n", "user@remote.test")
		c = self.client()
		c.cmd("MAIL FROM:<>", "250 2.1.0 OK")
		c.cmd("RCPT TO:<bounces@other.test>", harness.REPLY_RELAY_DENIED)
		c.cmd("RCPT TO:<user@remote.test>", harness.REPLY_RELAY_DENIED)
		c.cmd("RSET", "250 2.0.0 OK")

		refused = [
			(harness.make_message(to="bounces@bounce.test"), "bounces@bounce.test",
			 "550 5.7.1 relaying not permitted"),
			(make_dsn("bounces@bounce.test", "Subject: x\r\n", "u@remote.test")
			 .replace(b"Final-Recipient: rfc822; u@remote.test\r\n", b""),
			 "bounces@bounce.test",
			 "550 5.6.0 malformed delivery status notification: recipient block 1 has no "
			 "Final-Recipient field"),
			(make_arf("bounces@bounce.test", b"Subject: x\r\n\r\nbody\r\n", SENDER,
				  "u@remote.test"),
			 "bounces@bounce.test", "550 5.7.1 relaying not permitted"),
			(make_arf("fbl@fbl.test", b"Subject: x\r\n\r\nbody\r\n", SENDER, "u@remote.test")
			 .replace(b"Version: 1\r\n", b""), "fbl@fbl.test",
			 "550 5.6.0 malformed feedback report: the feedback report has no version field"),
		]
		for data, rcpt, reply in refused:
			r = c.transaction("", [rcpt], data)
			self.assertEqual(r.line, reply)
		c.cmd("QUIT", harness.REPLY_QUIT)
		c.close()

		relay = self.env.connect()	# 127.0.0.1, a relay host
		relay.ehlo()
		relay.send_message(SENDER, ["user@remote.test"], dsn)
		relay.close()
		self.wait_for(lambda: self.r.count() >= 1, 30, what="the relay host's message")
		time.sleep(0.5)
		self.assertEqual(self.records(("OOB", "Feedback")), [])
		self.assertEqual(len(self.records("Reception")), 1)
		self.assertEqual(self.r.count(), 1)

	# --- relaying ----------------------------------------------------------------

	@harness.bound(60)
	def test_relay_to_and_relay_from(self):
		"""relay_to domains (and a "*.wild.test" name) take mail from anyone
		and relay it; relay_from lets 127.0.0.3 relay anywhere with a
		trusted.test sender, and nobody else; a mixed transaction keeps only
		the recipients it may relay, and a dropped report its OOB record."""
		c = self.client()
		c.send_message(SENDER, ["user@relay.test", "user@a.wild.test"],
			       harness.make_message(to="user@relay.test"))
		c.cmd("MAIL FROM:<boss@trusted.test>", "250 2.1.0 OK")
		c.cmd("RCPT TO:<user@remote.test>", harness.REPLY_RELAY_DENIED)
		c.close()

		t = self.client(TRUSTED_CLIENT)
		t.send_message("boss@trusted.test", ["user@remote.test"],
			       harness.make_message(sender="boss@trusted.test", to="user@remote.test"))
		t.close()

		# One DSN to a LogThenDrop recipient and a relay_to one: logged once,
		# relayed to the relay_to recipient only.
		dsn = make_dsn("bounces@BOUNCE.test", "Subject: x\r\n", "gone@remote.test")
		c = self.client()
		mid = c.send_message("", ["bounces@BOUNCE.test", "postmaster@relay.test"], dsn)
		c.close()

		self.wait_for(lambda: self.r.count() >= 4, 30, what="4 deliveries")
		self.assertEqual(sorted(d.rcpt for d in self.r.deliveries()),
				 ["postmaster@relay.test", "user@a.wild.test", "user@relay.test",
				  "user@remote.test"])
		[oob] = self.wait_records("OOB", 1)
		self.assertEqual((oob["id"], oob["recipient"], oob["original_id"]),
				 (mid, "gone@remote.test", None))
		self.assertEqual(self.reception(mid)["recipient"], "postmaster@relay.test")

	@harness.bound(60)
	def test_validate_reports_bad_listener_domains(self):
		"""petreld --validate names the file and block of a bad value, and
		refuses relay_from_authz (no SMTP AUTH in Petrel)."""
		def validate():
			return harness.validate(self.policy, self.env.dir)

		rc, out = validate()
		self.assertEqual(rc, 0, out)
		self.toml.write_text(LISTENER_DOMAINS.replace('log_arf = "LogThenDrop"\n\n["relay',
							      'log_arf = "yes"\n\n["relay'))
		rc, out = validate()
		self.assertNotEqual(rc, 0, out)
		self.assertIn('%s: ["fbl.test"]: make_listener_domain: \'log_arf\' must be a boolean '
			      "or one of 'Ignore', 'LogThenDrop', 'LogThenRelay', got \"yes\""
			      % self.toml, out)
		self.toml.write_text(LISTENER_DOMAINS + '\n[listener."127.0.0.1:25"."x.test"]\n'
				     'relay_from_authz = ["john"]\n')
		rc, out = validate()
		self.assertNotEqual(rc, 0, out)
		self.assertIn('%s: [listener."127.0.0.1:25"."x.test"]: \'relay_from_authz\' needs '
			      "SMTP AUTH, which Petrel does not support yet" % self.toml, out)
