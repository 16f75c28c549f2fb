"""Delivery as a receiver sees it: MX routing, DNS outcomes, replies and
retries, STARTTLS.  Also DeliveryTest, the base class of every delivery suite
(test_delivery_*.py).

Each test runs its own dnsmasq (dns.py) with the test's zone on a loopback
port, its own receivers (receivers.py) on 127.0.0.x addresses and one port
P, and petreld (two shards) with harness.delivery_policy_source: the resolver
is that dnsmasq, every egress path has smtp_port = P, so an MX host's A
record picks the receiver's address.  What Petrel did is read from both ends:
the receivers' records and the Delivery / TransientFailure / Bounce /
Expiration records of the JSON log.

Run only the delivery suites:  /usr/bin/python3 tests/e2e/run.py -k test_delivery
"""

import re
import sys
import time

import dns
import harness
import receivers
from harness import REPLY_QUIT, make_message, spool_ls

SENDER = "sender@client.test"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
DELIVERY_TYPES = ("Delivery", "TransientFailure", "Bounce", "Expiration")


def message_id(msg):
	"""The Message-ID of a message made by make_message."""
	return receivers.message_id_of(msg)


def receiver_port():
	"""One port for every receiver of a test, free on the 127.0.0.x addresses
	the suites use (checked on a few of them)."""
	for _ in range(50):
		port = harness.free_port()
		if not any(harness.port_in_use(port, "127.0.0.%d" % x) for x in (11, 21, 41, 51, 60)):
			return port
	raise AssertionError("no free receiver port")


class DeliveryTest(harness.PetrelTest):
	"""self.rport: the receivers' port.  start_dns, receiver and start_petrel
	start what a test needs and register its stop (petreld first, then the
	receivers, then dnsmasq)."""

	def setUp(self):
		super().setUp()
		self.rport = receiver_port()
		self.dnsmasq = None
		self.receivers = []
		self.policy = None

	# --- fixtures ------------------------------------------------------------

	def start_dns(self, zone):
		self.dnsmasq = dns.Dnsmasq(zone, self.env.dir).start()
		self.addCleanup(self.dnsmasq.stop)
		return self.dnsmasq

	def receiver(self, kind, addrs, **kw):
		r = kind(addrs, self.rport, **kw).start()
		self.addCleanup(r.stop)
		self.receivers.append(r)
		return r

	def start_petrel(self, queue=None, egress=None, shards=2, policy=None, **kw):
		"""petreld with a delivery policy (or `policy`, a path written before);
		stopped by SIGTERM before the receivers and dnsmasq go."""
		if policy is None:
			eg = dict(egress or {})
			eg.setdefault("smtp_port", self.rport)
			policy = self.env.write_delivery_policy(self.dnsmasq.port, queue=queue, egress=eg,
								**kw)
		self.policy = policy
		d = self.env.start(policy, shards=shards)
		self.addCleanup(d.stop)
		return d

	def send(self, rcpts, subject="delivery", size=None):
		"""One message to rcpts over one session; returns (id, Message-ID)."""
		msg = make_message(subject=subject, to=rcpts[0], size=size, sender=SENDER)
		c = self.env.connect()
		c.ehlo()
		mid = c.send_message(SENDER, rcpts, msg)
		c.cmd("QUIT", REPLY_QUIT)
		c.close()
		return mid, message_id(msg)

	def wait_for(self, pred, timeout, interval=0.1, what="condition"):
		"""harness.wait_for, but failing at once, with its stderr, when a
		petreld of this test has died on its own meanwhile."""
		def check():
			for d in self.env.daemons:
				if d.proc is not None and not d.running() and not d.signalled:
					raise AssertionError("petreld died with status %s while waiting for %s:\n%s"
							     % (d.proc.returncode, what, d.stderr_tail()))
			return pred()
		return harness.wait_for(check, timeout, interval=interval, what=what)

	# --- the log -------------------------------------------------------------

	def records(self, type=DELIVERY_TYPES, rcpt=None, msg_id=None):
		"""Log records of `type` about ordinary messages (not a log hook's,
		whose reception_protocol is "LogRecord"), optionally only for one
		recipient or message id, sorted by timestamp."""
		recs = [r for r in harness.log_records(self.env.log_dir, type)
			if r.get("reception_protocol") != "LogRecord"
			and (rcpt is None or r.get("recipient") == rcpt)
			and (msg_id is None or r.get("id") == msg_id)]
		return sorted(recs, key=lambda r: r.get("timestamp", ""))

	def wait_records(self, type, count, timeout=20, rcpt=None, msg_id=None):
		def found():
			recs = self.records(type, rcpt, msg_id)
			return recs if len(recs) >= count else None
		return self.wait_for(found, timeout, interval=0.1,
				     what="%d %s record(s)%s" % (count, type, " for " + rcpt if rcpt else ""))

	def reception(self, msg_id):
		recs = self.records("Reception", msg_id=msg_id)
		self.assertEqual(len(recs), 1, "Reception records for %s: %r" % (msg_id, recs))
		return recs[0]

	def check_record(self, rec, type, msg_id, rcpt, site, code=None, enhanced=None,
			 content=None, peer="any", num_attempts=None):
		"""Assert the fields of one delivery-side record exactly."""
		got = dict(rec)
		want = {"type": type, "id": msg_id, "sender": SENDER, "recipient": rcpt,
			"queue": rcpt.rsplit("@", 1)[1], "site": site, "egress_source": "unspecified",
			"delivery_protocol": "ESMTP"}
		rx = self.reception(msg_id)
		for k in ("size", "created", "nodeid"):
			want[k] = rx[k]
		if peer != "any":
			want["peer_address"] = peer
		if num_attempts is not None:
			want["num_attempts"] = num_attempts
		self.assertEqual({k: got.get(k) for k in want}, want, "record: %r" % rec)
		self.assertRegex(rec["id"], ID_RE)
		resp = rec.get("response") or {}
		if code is not None:
			self.assertEqual(resp.get("code"), code, rec)
		if enhanced is not None:
			c, s, d = enhanced
			self.assertEqual(resp.get("enhanced_code"), {"class": c, "subject": s, "detail": d},
					 rec)
		if content is not None:
			self.assertEqual(resp.get("content"), content, rec)

	def wait_spool_empty(self, timeout=15):
		self.wait_for(lambda: not spool_ls(self.env.spool), timeout, interval=0.2,
			      what="petrel-spool ls to list nothing live")

	# --- diagnostics on failure ----------------------------------------------

	def run(self, result=None):
		result = result if result is not None else self.defaultTestResult()
		before = len(result.failures) + len(result.errors)
		out = super().run(result)
		if len(result.failures) + len(result.errors) > before:
			try:
				self._dump()
			except Exception as e:	# noqa: BLE001 -- diagnostics must not hide the failure
				print("(diagnostics failed: %r)" % e, file=sys.stderr)
		return out

	def _dump(self):
		if self.dnsmasq is not None:
			print(self.dnsmasq.log_tail(30), file=sys.stderr)
		recs = harness.log_records(self.env.log_dir, DELIVERY_TYPES)
		counts = {}
		for r in recs:
			counts[r.get("type")] = counts.get(r.get("type"), 0) + 1
		print("--- delivery log records: %s; last 5:" % counts, file=sys.stderr)
		for r in sorted(recs, key=lambda r: r.get("timestamp", ""))[-5:]:
			print("   %r" % r, file=sys.stderr)
		for r in self.receivers:
			conns = r.conns()
			print("--- %s on %s:%d: %d connections (max concurrent %d), %d delivered"
			      % (r.kind, ",".join(r.addrs), r.port, len(conns), r.max_concurrent,
				 r.count()), file=sys.stderr)
			if isinstance(r, receivers.ScriptedReceiver):
				print("   commands: %r" % r.command_lines()[-15:], file=sys.stderr)


# ---------------------------------------------------------------------------

def routing_zone():
	"""a.test: two MX hosts, both listening.  b.test: the preferred MX refuses
	connections (nothing listens on 127.0.0.13).  nullmx.test: a null MX, and
	an A record a faulty fall-back would use.  c.test: no MX, an A record."""
	return (dns.Zone()
		.mx("a.test", 10, "mx1.a.test").mx("a.test", 20, "mx2.a.test")
		.a("mx1.a.test", "127.0.0.11").a("mx2.a.test", "127.0.0.12")
		.mx("b.test", 10, "mx1.b.test").mx("b.test", 20, "mx2.b.test")
		.a("mx1.b.test", "127.0.0.13").a("mx2.b.test", "127.0.0.14")
		.null_mx("nullmx.test").a("nullmx.test", "127.0.0.16")
		.a("c.test", "127.0.0.15"))


class Routing(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(routing_zone())

	@harness.bound(60)
	def test_delivery_by_mx(self):
		"""a.test goes to its preferred MX (mx1, preference 10, although
		dnsmasq lists it second): one Delivery record with the receiver's
		reply, peer mx1.a.test/127.0.0.11, site (mx1|mx2).a.test, first try."""
		r = self.receiver(receivers.SmtpReceiver, ["127.0.0.11", "127.0.0.12"])
		self.start_petrel()
		rcpt = "user@a.test"
		mid, msgid = self.send([rcpt])
		[rec] = self.wait_records("Delivery", 1)
		self.check_record(rec, "Delivery", mid, rcpt, "(mx1|mx2).a.test", code=250,
				  enhanced=(2, 0, 0), content="OK received",
				  peer={"name": "mx1.a.test", "addr": "127.0.0.11"}, num_attempts=0)
		self.wait_spool_empty()
		self.assertEqual([(d.rcpt, d.message_id, d.local, d.mail_from) for d in r.deliveries()],
				 [(rcpt, msgid, "127.0.0.11", SENDER)])
		self.assertEqual([x["type"] for x in self.records()], ["Delivery"])

	@harness.bound(60)
	def test_second_mx_when_first_refuses(self):
		"""mx1.b.test refuses connections: the same attempt goes on to
		mx2.b.test, so one Delivery (num_attempts 0) from 127.0.0.14 and no
		TransientFailure."""
		self.assertFalse(harness.port_in_use(self.rport, "127.0.0.13"))
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.14")
		self.start_petrel()
		rcpt = "user@b.test"
		mid, msgid = self.send([rcpt])
		[rec] = self.wait_records("Delivery", 1)
		self.check_record(rec, "Delivery", mid, rcpt, "(mx1|mx2).b.test", code=250,
				  enhanced=(2, 0, 0), content="OK received",
				  peer={"name": "mx2.b.test", "addr": "127.0.0.14"}, num_attempts=0)
		self.wait_spool_empty()
		self.assertEqual([(d.rcpt, d.message_id, d.local) for d in r.deliveries()],
				 [(rcpt, msgid, "127.0.0.14")])
		self.assertEqual([x["type"] for x in self.records()], ["Delivery"])

	@harness.bound(60)
	def test_null_mx_bounces(self):
		"""nullmx.test publishes a null MX (RFC 7505): a Bounce 556 5.1.10 with
		no peer, no connection anywhere (not even to its A record's address),
		and the message leaves the spool."""
		r = self.receiver(receivers.SmtpReceiver, ["127.0.0.16", "127.0.0.11", "127.0.0.12"])
		self.start_petrel()
		rcpt = "user@nullmx.test"
		mid, _ = self.send([rcpt])
		[rec] = self.wait_records("Bounce", 1)
		self.check_record(rec, "Bounce", mid, rcpt, "nullmx.test", code=556,
				  enhanced=(5, 1, 10), peer=None, num_attempts=0)
		self.wait_spool_empty()
		self.assertEqual(r.conns(), [])
		self.assertEqual([x["type"] for x in self.records()], ["Bounce"])

	@harness.bound(60)
	def test_a_record_without_mx(self):
		"""c.test has no MX but an A record: delivered there (RFC 5321 5.1
		implicit MX); the site and the peer name are the domain."""
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.15")
		self.start_petrel()
		rcpt = "user@c.test"
		mid, msgid = self.send([rcpt])
		[rec] = self.wait_records("Delivery", 1)
		self.check_record(rec, "Delivery", mid, rcpt, "c.test", code=250, enhanced=(2, 0, 0),
				  content="OK received", peer={"name": "c.test", "addr": "127.0.0.15"},
				  num_attempts=0)
		self.wait_spool_empty()
		self.assertEqual([(d.rcpt, d.message_id, d.local) for d in r.deliveries()],
				 [(rcpt, msgid, "127.0.0.15")])


# ---------------------------------------------------------------------------

RESP_ADDR = "127.0.0.21"
RESP_SITE = "mx.resp.test"
RESP_PEER = {"name": RESP_SITE, "addr": RESP_ADDR}


def response_zone():
	z = dns.Zone().a(RESP_SITE, RESP_ADDR)
	for d in ("grey.test", "reject.test", "expire.test"):
		z.mx(d, 10, RESP_SITE)
	return z


class Responses(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(response_zone())

	@harness.bound(60)
	def test_451_once_then_delivered(self):
		"""A receiver greylists the first RCPT (451 4.7.1): a TransientFailure
		with its reply, then, a retry_interval (1 s) later, a Delivery whose
		num_attempts is 1."""
		r = self.receiver(receivers.ScriptedReceiver, RESP_ADDR,
				  rcpt=receivers.first(1, "451 4.7.1 greylisted, try again later"))
		self.start_petrel(queue={"retry_interval": "1s", "max_retry_interval": "2s"})
		rcpt = "user@grey.test"
		mid, msgid = self.send([rcpt])
		self.wait_records("Delivery", 1, timeout=20)
		self.wait_spool_empty()
		recs = self.records()
		self.assertEqual([x["type"] for x in recs], ["TransientFailure", "Delivery"], recs)
		tf, dl = recs
		self.check_record(tf, "TransientFailure", mid, rcpt, RESP_SITE, code=451,
				  enhanced=(4, 7, 1), content="greylisted, try again later",
				  peer=RESP_PEER, num_attempts=0)
		self.check_record(dl, "Delivery", mid, rcpt, RESP_SITE, code=250, enhanced=(2, 0, 0),
				  content="OK received", peer=RESP_PEER, num_attempts=1)
		self.assertEqual([(d.rcpt, d.message_id) for d in r.deliveries()], [(rcpt, msgid)])
		t = r.txns()
		self.assertEqual([x.rcpts for x in t], [[(rcpt, "451 4.7.1 greylisted, try again later")],
							 [(rcpt, "250 2.1.5 OK")]])
		gap = t[1].started - t[0].started
		harness.note("retry came %.2fs after the 451" % gap)
		self.assertGreaterEqual(gap, 0.9, "retried before retry_interval (1s)")
		self.assertLess(gap, 5.0)

	@harness.bound(60)
	def test_550_bounce_with_receiver_text(self):
		"""550 5.1.1 at RCPT: one Bounce carrying the receiver's code, enhanced
		code and text; nothing delivered, nothing retried, spool emptied."""
		r = self.receiver(receivers.ScriptedReceiver, RESP_ADDR,
				  rcpt=receivers.always("550 5.1.1 no such user here"))
		self.start_petrel()
		rcpt = "nobody@reject.test"
		mid, _ = self.send([rcpt])
		[rec] = self.wait_records("Bounce", 1)
		self.check_record(rec, "Bounce", mid, rcpt, RESP_SITE, code=550, enhanced=(5, 1, 1),
				  content="no such user here", peer=RESP_PEER, num_attempts=0)
		self.wait_spool_empty()
		time.sleep(1.5)		# longer than retry_interval: a retry would show now
		self.assertEqual([x["type"] for x in self.records()], ["Bounce"])
		self.assertEqual(r.deliveries(), [])
		self.assertEqual(len(r.txns()), 1, r.txns())

	@harness.bound(60)
	def test_max_age_expiration(self):
		"""A receiver that always answers 451 at end of data, max_age 3 s,
		retry_interval 1 s: TransientFailures (num_attempts 0, 1, ...) then one
		Expiration no later than max_age after reception; nothing delivered
		and no attempt after the Expiration."""
		r = self.receiver(receivers.ScriptedReceiver, RESP_ADDR,
				  data=receivers.always("451 4.3.0 temporary failure, try later"))
		self.start_petrel(queue={"max_age": "3s", "retry_interval": "1s",
					 "max_retry_interval": "2s"})
		rcpt = "user@expire.test"
		mid, _ = self.send([rcpt])
		[exp] = self.wait_records("Expiration", 1, timeout=20)
		self.wait_spool_empty()
		n_txns = len(r.txns())
		recs = self.records()
		types = [x["type"] for x in recs]
		self.assertEqual(types[-1], "Expiration", types)
		tfs = recs[:-1]
		self.assertGreaterEqual(len(tfs), 1, types)
		self.assertEqual(set(types[:-1]), {"TransientFailure"}, types)
		for i, tf in enumerate(tfs):
			self.check_record(tf, "TransientFailure", mid, rcpt, RESP_SITE, code=451,
					  enhanced=(4, 3, 0), content="temporary failure, try later",
					  peer=RESP_PEER, num_attempts=i)
		self.check_record(exp, "Expiration", mid, rcpt, RESP_SITE)
		age = harness.record_time(exp["timestamp"]) - harness.record_time(exp["created"])
		harness.note("%d attempts; expired %.2fs after reception" % (len(tfs), age))
		self.assertLessEqual(age, 3.0 + 1.0, "expired late (max_age 3s)")
		self.assertEqual(r.deliveries(), [])
		self.assertEqual(n_txns, len(tfs), r.txns())
		self.assertEqual({x.data_reply for x in r.txns()}, {"451 4.3.0 temporary failure, try later"})
		time.sleep(2.5)		# past max_retry_interval: no attempt after the Expiration
		self.assertEqual(len(r.txns()), n_txns)
		self.assertEqual(len(self.records()), len(recs))


# ---------------------------------------------------------------------------

class Tls(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone()
			       .mx("tls.test", 10, "mx.tls.test").a("mx.tls.test", "127.0.0.31")
			       .mx("notls.test", 10, "mx.notls.test").a("mx.notls.test", "127.0.0.32"))

	@harness.bound(60)
	def test_starttls_when_offered(self):
		"""The receiver (aiosmtpd) offers STARTTLS with a self-signed
		certificate; enable_tls OpportunisticInsecure: the message arrives over
		TLS and the Delivery record names the protocol version the receiver
		negotiated, and a cipher."""
		cert = receivers.make_cert(self.env.dir, "mx.tls.test")
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.31", tls=cert)
		self.start_petrel(egress={"enable_tls": "OpportunisticInsecure"})
		rcpt = "user@tls.test"
		mid, msgid = self.send([rcpt])
		[rec] = self.wait_records("Delivery", 1)
		self.check_record(rec, "Delivery", mid, rcpt, "mx.tls.test", code=250,
				  enhanced=(2, 0, 0), content="OK received",
				  peer={"name": "mx.tls.test", "addr": "127.0.0.31"}, num_attempts=0)
		self.assertEqual([(d.rcpt, d.message_id, d.tls) for d in r.deliveries()],
				 [(rcpt, msgid, True)])
		conn = [c for c in r.conns() if c.id == r.deliveries()[0].conn][0]
		harness.note("TLS: receiver saw %s %s; record says %s %s"
			     % (conn.tls_version, conn.tls_cipher, rec.get("tls_protocol_version"),
				rec.get("tls_cipher")))
		self.assertEqual(rec.get("tls_protocol_version"), conn.tls_version)
		self.assertIsInstance(rec.get("tls_cipher"), str)
		self.assertNotEqual(rec.get("tls_cipher"), "")
		self.wait_spool_empty()

	@harness.bound(60)
	def test_required_tls_not_offered(self):
		"""enable_tls Required and a receiver that does not offer STARTTLS:
		TransientFailures that mention STARTTLS, on every retry; no MAIL FROM
		is ever sent and the message stays in the spool."""
		r = self.receiver(receivers.ScriptedReceiver, "127.0.0.32")
		self.start_petrel(egress={"enable_tls": "Required"})
		rcpt = "user@notls.test"
		mid, _ = self.send([rcpt])
		recs = self.wait_records("TransientFailure", 2, timeout=20)
		for i, rec in enumerate(recs[:2]):
			self.check_record(rec, "TransientFailure", mid, rcpt, "mx.notls.test",
					  peer={"name": "mx.notls.test", "addr": "127.0.0.32"},
					  num_attempts=i)
			self.assertEqual(rec["response"]["code"] // 100, 4, rec)
			self.assertIn("STARTTLS", rec["response"]["content"].upper(), rec)
		self.assertEqual([x["type"] for x in self.records() if x["type"] != "TransientFailure"],
				 [])
		self.assertEqual(r.deliveries(), [])
		self.assertEqual([l for l in r.command_lines() if l.upper().startswith("MAIL")], [])
		self.assertGreaterEqual(len(r.conns()), 2)
		self.assertEqual(list(spool_ls(self.env.spool)), [mid])
