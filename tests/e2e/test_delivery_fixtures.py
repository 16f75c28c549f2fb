"""The delivery suites' fixtures checked against real clients, without
petreld: dnsmasq answers the zone as the delivery tests expect (dns.py), the
aiosmtpd receiver takes mail from smtplib plain and over STARTTLS and counts
connections, and the scripted receiver answers exactly as scripted
(receivers.py).  When a delivery test fails, these say whether the fixture
or the daemon is at fault."""

import os
import smtplib
import socket
import ssl
import threading
import time

import dns
import harness
import receivers
from harness import make_message
from test_delivery import DeliveryTest, message_id, routing_zone


def client_tls():
	ctx = ssl.create_default_context()
	ctx.check_hostname = False
	ctx.verify_mode = ssl.CERT_NONE
	return ctx


class Fixtures(DeliveryTest):
	@harness.bound(30)
	def test_dnsmasq_answers_the_zone(self):
		"""MX sets (any order, both preferences), A records, a null MX, NODATA
		for MX of an A-only name, NXDOMAIN for an unknown .test name; the same
		over UDP and TCP; TTL 1; gone after stop (by pid)."""
		z = self.start_dns(routing_zone())
		for tcp in (False, True):
			def q(name, rtype):
				return dns.query(z.port, name, rtype, tcp=tcp)
			a = q("a.test", dns.MX)
			self.assertEqual((a.rcode, sorted(a.of(dns.MX))),
					 (dns.NOERROR, [(10, "mx1.a.test"), (20, "mx2.a.test")]))
			self.assertEqual({ttl for _, ttl, _ in a.records}, {1})
			self.assertEqual(q("mx1.a.test", dns.A).of(dns.A), ["127.0.0.11"])
			self.assertEqual(q("mx2.b.test", dns.A).of(dns.A), ["127.0.0.14"])
			self.assertEqual(q("nullmx.test", dns.MX).of(dns.MX), [(0, "")])
			self.assertEqual(q("nullmx.test", dns.A).of(dns.A), ["127.0.0.16"])
			c = q("c.test", dns.MX)
			self.assertEqual((c.rcode, c.records), (dns.NOERROR, []))
			self.assertEqual(q("c.test", dns.A).of(dns.A), ["127.0.0.15"])
			aaaa = q("c.test", dns.AAAA)
			self.assertEqual((aaaa.rcode, aaaa.records), (dns.NOERROR, []))
			for name in ("unknown.test", "d00.test"):
				nx = q(name, dns.MX)
				self.assertEqual((nx.rcode, nx.records), (dns.NXDOMAIN, []))
		pid = z.pid
		z.stop()
		self.assertIsNotNone(z.proc.returncode)
		with self.assertRaises(ProcessLookupError):
			os.kill(pid, 0)
		with self.assertRaises(OSError):
			dns.query(z.port, "a.test", dns.MX, timeout=0.5)

	@harness.bound(30)
	def test_aiosmtpd_receiver_plain_starttls_concurrency(self):
		"""smtplib delivers plain to one address and over STARTTLS to another;
		the receiver records recipient, Message-ID, the address reached, TLS
		and its version, messages per connection, and 3 connections held open
		together as max_concurrent 3."""
		cert = receivers.make_cert(self.env.dir, "mx.fixture.test")
		r = self.receiver(receivers.SmtpReceiver, ["127.0.0.11", "127.0.0.12"], tls=cert)
		m1 = make_message(subject="plain", to="a@a.test")
		m2 = make_message(subject="tls", to="b@a.test")
		with smtplib.SMTP("127.0.0.11", self.rport, timeout=10) as s:
			s.ehlo("client.test")
			self.assertTrue(s.has_extn("starttls"))
			self.assertEqual(s.sendmail("s@client.test", ["a@a.test", "c@a.test"], m1), {})
			self.assertEqual(s.sendmail("s@client.test", ["d@a.test"], m1), {})
		harness.wait_for(lambda: r.concurrent == 0, 5, what="the first connection closed")
		with smtplib.SMTP("127.0.0.12", self.rport, timeout=10) as s:
			s.ehlo("client.test")
			self.assertEqual(s.starttls(context=client_tls())[0], 220)
			s.ehlo("client.test")
			self.assertEqual(s.sendmail("s@client.test", ["b@a.test"], m2), {})
		self.assertEqual([(d.rcpt, d.message_id, d.local, d.tls, d.mail_from)
				  for d in r.deliveries()],
				 [("a@a.test", message_id(m1), "127.0.0.11", False, "s@client.test"),
				  ("c@a.test", message_id(m1), "127.0.0.11", False, "s@client.test"),
				  ("d@a.test", message_id(m1), "127.0.0.11", False, "s@client.test"),
				  ("b@a.test", message_id(m2), "127.0.0.12", True, "s@client.test")])
		conns = r.conns()
		self.assertEqual([(c.messages, c.tls) for c in conns], [(2, False), (1, True)])
		self.assertIn(conns[1].tls_version, ("TLSv1.2", "TLSv1.3"))
		self.assertEqual(r.max_concurrent, 1)

		held = [socket.create_connection(("127.0.0.11", self.rport), timeout=5) for _ in range(3)]
		try:
			for s in held:
				self.assertTrue(s.recv(100).startswith(b"220 "))
			harness.wait_for(lambda: r.concurrent == 3, 5, what="3 open connections")
		finally:
			for s in held:
				s.close()
		harness.wait_for(lambda: r.concurrent == 0, 5, what="connections closed")
		self.assertEqual(r.max_concurrent, 3)

	@harness.bound(30)
	def test_aiosmtpd_receiver_delay(self):
		"""delay: the end-of-data reply comes no sooner than the delay, and
		two connections are delayed in parallel, not in turn."""
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.11", delay=0.3)
		times = []

		def send(i):
			t0 = time.monotonic()
			with smtplib.SMTP("127.0.0.11", self.rport, timeout=10) as s:
				s.sendmail("s@client.test", ["p%d@a.test" % i], make_message())
			times.append(time.monotonic() - t0)
		t0 = time.monotonic()
		ts = [threading.Thread(target=send, args=(i,)) for i in range(2)]
		for t in ts:
			t.start()
		for t in ts:
			t.join(10)
		total = time.monotonic() - t0
		self.assertEqual(len(times), 2)
		self.assertGreaterEqual(min(times), 0.3)
		self.assertLess(total, 0.55, "delays ran in turn")
		self.assertEqual(sorted(r.rcpts()), ["p0@a.test", "p1@a.test"])

	@harness.bound(30)
	def test_scripted_receiver_behaviours(self):
		"""first(1, 451) at RCPT then 250; always 550 at RCPT with its text;
		always 451 at end of data; the per-transaction delay; no STARTTLS in
		EHLO and 502 to it; pipelined commands answered in order."""
		port = self.rport
		grey = self.receiver(receivers.ScriptedReceiver, "127.0.0.21",
				     rcpt=receivers.first(1, "451 4.7.1 greylisted, try again later"))
		msg = make_message(to="g@grey.test")
		for want in ({"g@grey.test": (451, b"4.7.1 greylisted, try again later")}, {}):
			with smtplib.SMTP("127.0.0.21", port, timeout=10) as s:
				s.ehlo("client.test")
				self.assertEqual(sorted(s.esmtp_features),
						 ["8bitmime", "enhancedstatuscodes", "pipelining", "size"])
				try:
					got = s.sendmail("s@client.test", ["g@grey.test"], msg)
				except smtplib.SMTPRecipientsRefused as e:
					got = e.recipients
				self.assertEqual(got, want)
				self.assertEqual(s.docmd("STARTTLS"), (502, b"5.5.1 STARTTLS not offered"))
		self.assertEqual([(d.rcpt, d.message_id) for d in grey.deliveries()],
				 [("g@grey.test", message_id(msg))])
		self.assertEqual([t.rcpts for t in grey.txns()],
				 [[("g@grey.test", "451 4.7.1 greylisted, try again later")],
				  [("g@grey.test", "250 2.1.5 OK")]])
		grey.stop()

		rej = self.receiver(receivers.ScriptedReceiver, "127.0.0.21",
				    rcpt=receivers.always("550 5.1.1 no such user here"))
		for _ in range(2):
			with smtplib.SMTP("127.0.0.21", port, timeout=10) as s:
				with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
					s.sendmail("s@client.test", ["x@reject.test"], msg)
				self.assertEqual(cm.exception.recipients,
						 {"x@reject.test": (550, b"5.1.1 no such user here")})
		self.assertEqual(rej.deliveries(), [])
		rej.stop()

		tmp = self.receiver(receivers.ScriptedReceiver, "127.0.0.21", delay=0.2,
				    data=receivers.always("451 4.3.0 temporary failure, try later"))
		c = harness.SMTPConn(port, host="127.0.0.21")
		self.addCleanup(c.close)
		c.expect("220")
		c.send("EHLO client.test\r\nMAIL FROM:<s@client.test>\r\nRCPT TO:<y@expire.test>\r\n"
		       "RCPT TO:<z@expire.test>\r\nDATA\r\n")
		c.expect("250")
		c.expect("250 2.1.0 OK")
		c.expect("250 2.1.5 OK")
		c.expect("250 2.1.5 OK")
		c.expect("354")
		t0 = time.monotonic()
		c.send(msg + b".\r\n")
		c.expect("451 4.3.0 temporary failure, try later")
		self.assertGreaterEqual(time.monotonic() - t0, 0.2)
		c.cmd("RSET", "250 2.0.0 OK")
		c.cmd("DATA", "554 5.5.1 no valid recipients")
		c.cmd("QUIT", "221 2.0.0 bye")
		self.assertEqual(tmp.deliveries(), [])
		[t] = tmp.txns()
		self.assertEqual((t.mail_from, [a for a, _ in t.rcpts], t.data_reply, t.message_id),
				 ("s@client.test", ["y@expire.test", "z@expire.test"],
				  "451 4.3.0 temporary failure, try later", message_id(msg)))

	@harness.bound(30)
	def test_receiver_stop_closes_connections(self):
		"""stop() closes open sessions of both kinds, and the port is free."""
		for kind in (receivers.SmtpReceiver, receivers.ScriptedReceiver):
			r = self.receiver(kind, "127.0.0.11")
			s = socket.create_connection(("127.0.0.11", self.rport), timeout=5)
			self.assertTrue(s.recv(100).startswith(b"220 "))
			harness.wait_for(lambda: r.concurrent == 1, 5, what="one connection")
			r.stop()
			s.settimeout(5)
			self.assertEqual(s.recv(100), b"")
			s.close()
			self.assertFalse(harness.port_in_use(self.rport, "127.0.0.11"))
