"""Delivery at volume: kill -9 in the middle of delivering 2,000 messages
loses none of them; the spool returns to (near) empty on disk once all is
delivered; one message to 1,000 recipients in 50 domains is stored once and
delivered once per recipient."""

import time

import dns
import harness
import receivers
from harness import make_message, spool_ls
from test_delivery import SENDER, DeliveryTest, message_id

SEGMENT_ROTATE = 256 * 1024	# the current segment is rotated away from this size
NEAR_EMPTY = SEGMENT_ROTATE + 4096	# per shard


class Crash(DeliveryTest):
	@harness.bound(240)
	def test_kill9_during_delivery_loses_nothing(self):
		"""2,000 messages over 20 sessions to a receiver taking 10 ms per
		message; kill -9 once all are accepted and some hundreds delivered;
		restart on the same spool: the receiver sees every accepted
		Message-ID at least once, and nothing else."""
		self.start_dns(dns.Zone().mx("kill.test", 10, "mx.kill.test")
			       .a("mx.kill.test", "127.0.0.51"))
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.51", delay=0.01)
		d = self.start_petrel(egress={"connection_limit": 4})
		load = harness.Load(self.env.port, sessions=20, per_session=100, size=1500,
				    rcpt="user@kill.test", unique=True).start()
		self.wait_for(lambda: (not any(t.is_alive() for t in load.threads)
				       and r.count() >= 400), 90, interval=0.005,
			      what="all accepted and 400 delivered")
		seen_at_kill = r.message_ids()
		d.kill9()
		load.join(30)
		self.assertEqual(load.errors, [])
		self.assertEqual(load.refused, [])
		acked = set(load.mids.values())
		self.assertEqual(len(acked), 2000)
		pending = acked - seen_at_kill
		harness.note("kill -9 with %d of 2000 delivered" % len(seen_at_kill))
		self.assertTrue(pending, "the kill landed after everything was delivered "
				"(make the receiver slower)")

		t0 = time.monotonic()
		self.start_petrel(policy=self.policy)
		self.wait_for(lambda: acked <= r.message_ids(), 120, interval=0.1,
			      what="the receiver to see all %d accepted Message-IDs (%d pending "
			      "at the kill)" % (len(acked), len(pending)))
		got = r.deliveries()
		harness.note("all delivered %.1fs after the restart; %d deliveries for %d messages "
			     "(%d duplicates, allowed: at-least-once)"
			     % (time.monotonic() - t0, len(got), len(acked), len(got) - len(acked)))
		self.assertEqual(r.message_ids() - acked, set(), "messages nobody sent")
		self.wait_spool_empty(timeout=30)


class SpoolSpace(DeliveryTest):
	@harness.bound(120)
	def test_spool_near_empty_after_delivery(self):
		"""400 messages of 8 KiB (over 3 MB of segments across two shards)
		all delivered: petrel-spool ls lists nothing, and within 10 s every
		shard's *.seg files add up to at most 256 KiB + 4 KiB (dead segments
		deleted, the current one rotated away)."""
		self.start_dns(dns.Zone().mx("big.test", 10, "mx.big.test")
			       .a("mx.big.test", "127.0.0.52"))
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.52")
		self.start_petrel(egress={"connection_limit": 4})
		load = harness.Load(self.env.port, sessions=8, per_session=50, size=8192,
				    rcpt="user@big.test", unique=True).start()
		load.join(60)
		self.assertEqual(load.errors, [])
		self.assertEqual(len(load.mids), 400)
		written = sum(x["size"] for x in self.records("Reception"))
		self.assertGreater(written, 3000000)
		acked = set(load.mids.values())
		self.wait_for(lambda: acked <= r.message_ids(), 60, interval=0.1,
			      what="all 400 delivered")
		self.wait_spool_empty()
		t0 = time.monotonic()
		sizes = {}

		def near_empty():
			sizes.update(harness.spool_segment_bytes(self.env.spool))
			return sizes and all(v <= NEAR_EMPTY for v in sizes.values())
		try:
			self.wait_for(near_empty, 10, interval=0.2,
				      what="every shard's segments <= %d bytes" % NEAR_EMPTY)
		finally:
			harness.note("segment bytes per shard: %s (%.1fs after the last delivery)"
				     % (dict(sorted(sizes.items())), time.monotonic() - t0))
		self.assertEqual(set(sizes), {0, 1})
		self.assertEqual(len(r.deliveries()), 400)


def fanout_zone():
	"""d00.test .. d49.test, each with one MX among mx0..mx4.fan.test on
	127.0.0.60 .. 127.0.0.64."""
	z = dns.Zone()
	for k in range(5):
		z.a("mx%d.fan.test" % k, "127.0.0.%d" % (60 + k))
	for i in range(50):
		z.mx("d%02d.test" % i, 10, "mx%d.fan.test" % (i % 5))
	return z


class Fanout(DeliveryTest):
	@harness.bound(120)
	def test_1000_recipients_50_domains(self):
		"""One message to 1,000 recipients (20 in each of 50 domains on 5 MX
		hosts) while no receiver listens: the spool holds one message with
		1,000 recipients.  Then the receivers start and the retries deliver
		every recipient exactly once, from the right MX host, with one
		Delivery record each."""
		self.start_dns(fanout_zone())
		self.start_petrel()
		rcpts = ["u%02d@d%02d.test" % (j, i) for i in range(50) for j in range(20)]
		msg = make_message(subject="fan-out", to=rcpts[0], size=20000, sender=SENDER)
		msgid = message_id(msg)
		c = self.env.connect()
		c.ehlo()
		mid = c.send_message(SENDER, rcpts, msg)
		c.close()

		ls = spool_ls(self.env.spool)
		self.assertEqual(list(ls), [mid])
		self.assertEqual(ls[mid]["rcpts"], 1000)
		self.assertEqual(sorted(harness.spool_envelope(self.env.spool, mid)["recipients"]),
				 sorted(rcpts))
		# Petrel has tried while nobody listened.
		self.wait_records("TransientFailure", 1, timeout=10)
		self.assertEqual(self.records("Delivery"), [])

		r = self.receiver(receivers.SmtpReceiver, ["127.0.0.%d" % (60 + k) for k in range(5)])
		self.wait_for(lambda: len(set(r.rcpts())) >= 1000, 60, interval=0.1,
			      what="1000 distinct recipients at the receivers")
		self.wait_spool_empty()
		got = r.deliveries()
		self.assertEqual(len(got), 1000, "duplicate deliveries")
		self.assertEqual(sorted(d.rcpt for d in got), sorted(rcpts))
		self.assertEqual({d.message_id for d in got}, {msgid})
		for d in got:
			i = int(d.rcpt.split("@d")[1][:2])
			self.assertEqual(d.local, "127.0.0.%d" % (60 + i % 5), d)
		txns = {(d.conn, d.at) for d in got}
		harness.note("1000 recipients in %d transactions over %d connections"
			     % (len(txns), len(r.conns())))

		recs = self.records("Delivery")
		self.assertEqual(sorted(x["recipient"] for x in recs), sorted(rcpts))
		for x in recs:
			i = int(x["recipient"].split("@d")[1][:2])
			self.assertEqual((x["id"], x["site"], x["queue"], x["peer_address"]),
					 (mid, "mx%d.fan.test" % (i % 5), "d%02d.test" % i,
					  {"name": "mx%d.fan.test" % (i % 5), "addr": "127.0.0.%d" % (60 + i % 5)}))


class Compaction(DeliveryTest):
	@harness.bound(150)
	def test_old_segment_with_one_deferred_message_is_compacted(self):
		"""One message deferred (its MX refuses connections) in segment 1;
		a restart starts segment 2.  Segment 1 stays the oldest with a single
		live message, so within the compaction age (30 s) plus a margin the
		message is copied forward and segment 1 is deleted; the message is
		still live under its id, and once the receiver listens it is delivered
		exactly once."""
		self.start_dns(dns.Zone().mx("slow.test", 10, "mx.slow.test")
			       .a("mx.slow.test", "127.0.0.53"))
		queue = {"retry_interval": "1s", "max_retry_interval": "2s"}
		d = self.start_petrel(queue=queue, shards=1)
		rcpt = "user@slow.test"
		mid, msgid = self.send([rcpt])
		self.wait_records("TransientFailure", 1, timeout=20)
		first = sorted(p.name for p in (self.env.spool / "0").glob("*.seg"))
		self.assertEqual(len(first), 1, first)
		d.stop()
		self.start_petrel(policy=self.policy, shards=1)
		old = self.env.spool / "0" / first[0]
		t0 = time.monotonic()
		self.wait_for(lambda: not old.exists(), 60, interval=0.5,
			      what="segment %s to be compacted away" % first[0])
		harness.note("segment %s deleted %.1fs after the restart" % (first[0],
									    time.monotonic() - t0))
		self.assertEqual(list(spool_ls(self.env.spool)), [mid])
		r = self.receiver(receivers.SmtpReceiver, "127.0.0.53")
		self.wait_records("Delivery", 1, timeout=20)
		self.wait_spool_empty()
		self.assertEqual([(x.rcpt, x.message_id) for x in r.deliveries()], [(rcpt, msgid)])
