"""Shaping as the receiving side sees it: make_egress_path's connection_limit,
max_message_rate and max_deliveries_per_connection, each enforced on the
site's owner shard while two shards accept the mail."""

import dns
import harness
import receivers
from test_delivery import DeliveryTest

ADDR = "127.0.0.41"
SITE = "mx.shape.test"
RCPT = "user@shape.test"


class Shaping(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone().mx("shape.test", 10, SITE).a(SITE, ADDR))

	def inject(self, sessions, per_session, size=1024):
		"""sessions x per_session messages to RCPT, each with its own
		Message-ID; all must be accepted.  Returns the Load."""
		load = harness.Load(self.env.port, sessions, per_session, size=size, rcpt=RCPT,
				    unique=True).start()
		load.join(60)
		self.assertEqual(load.errors, [])
		self.assertEqual(load.refused, [])
		self.assertEqual(len(load.mids), sessions * per_session)
		return load

	def wait_delivered(self, r, load, timeout=30):
		want = set(load.mids.values())
		self.wait_for(lambda: want <= r.message_ids(), timeout, interval=0.1,
			      what="the receiver to see all %d Message-IDs" % len(want))
		self.wait_spool_empty()
		got = [d.message_id for d in r.deliveries()]
		self.assertEqual(len(got), len(want), "duplicate deliveries")
		self.assertEqual(set(got), want)
		recs = self.records("Delivery")
		self.assertEqual(sorted(x["id"] for x in recs), sorted(load.mids))
		self.assertEqual({x["site"] for x in recs}, {SITE})

	@harness.bound(90)
	def test_connection_limit_2(self):
		"""connection_limit = 2, a receiver taking 100 ms per message, 60
		messages: the receiver never has more than 2 connections from Petrel
		at once (and does see 2: the limit is used), and gets every message
		exactly once."""
		r = self.receiver(receivers.SmtpReceiver, ADDR, delay=0.1)
		self.start_petrel(egress={"connection_limit": 2})
		load = self.inject(6, 10)
		self.wait_delivered(r, load, timeout=45)
		harness.note("%d connections, max %d at once" % (len(r.conns()), r.max_concurrent))
		self.assertEqual(r.max_concurrent, 2)

	@harness.bound(90)
	def test_max_message_rate_20_per_second(self):
		"""max_message_rate = "20/s", 60 messages accepted in a burst: the
		receiver's arrival rate (n-1)/(last-first) is 20/s within 10%."""
		r = self.receiver(receivers.SmtpReceiver, ADDR)
		self.start_petrel(egress={"max_message_rate": "20/s", "connection_limit": 4})
		load = self.inject(6, 10)
		self.wait_delivered(r, load, timeout=30)
		times = sorted(d.at for d in r.deliveries())
		rate = (len(times) - 1) / (times[-1] - times[0])
		harness.note("60 messages over %.2fs: %.2f/s" % (times[-1] - times[0], rate))
		self.assertGreaterEqual(rate, 18.0)
		self.assertLessEqual(rate, 22.0)

	@harness.bound(90)
	def test_max_deliveries_per_connection_3(self):
		"""max_deliveries_per_connection = 3 (one connection at a time): 30
		messages, no connection carries more than 3, connections are reused up
		to 3, every message arrives exactly once."""
		r = self.receiver(receivers.SmtpReceiver, ADDR, delay=0.02)
		self.start_petrel(egress={"max_deliveries_per_connection": 3, "connection_limit": 1})
		load = self.inject(3, 10)
		self.wait_delivered(r, load, timeout=45)
		per_conn = [c.messages for c in r.conns()]
		harness.note("messages per connection: %s" % per_conn)
		self.assertLessEqual(max(per_conn), 3, per_conn)
		self.assertEqual(max(per_conn), 3, "no connection was reused: %s" % per_conn)
		self.assertEqual(sum(per_conn), 30)
		self.assertGreaterEqual(len([n for n in per_conn if n]), 10)
