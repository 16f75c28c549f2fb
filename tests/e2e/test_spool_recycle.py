"""Spool segments reused (RECYCLING in spool/spool_segment.c), end to end:
a real petreld relays enough mail for its 64 MiB segments to rotate, a dead
segment is kept as a spare file by the shard's janitor (through the ring) and
becomes a later segment, and after a kill -9 while that reused file is
current nothing that was delivered before comes back."""

import time
from pathlib import Path

import dns
import harness
import receivers
from harness import spool_ls, spool_verify
from test_delivery import DeliveryTest

MB = 1 << 20


def spares(spool):
	return sorted((Path(spool) / "0").glob("*.free"))


class Recycle(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone().mx("a.test", 10, "mx.a.test").a("mx.a.test", "127.0.0.11"))

	def relay(self, n_sessions, per_session, total):
		load = harness.Load(self.env.port, sessions=n_sessions, per_session=per_session,
				    size=100_000, rcpt="user@a.test", unique=True).start()
		load.join(150)
		self.assertEqual(load.count(), n_sessions * per_session, load.errors[:3])
		self.wait_for(lambda: len(self.r.deliveries()) >= total, 120, interval=0.2,
			      what="%d deliveries" % total)
		return load

	@harness.bound(300)
	def test_dead_segment_is_reused_and_its_mail_never_comes_back(self):
		"""800 messages of 100 kB fill segment 1 (64 MiB); once all are
		delivered it becomes a spare file.  800 more fill the current
		segment, and the next one is the spare's file (same inode), its old
		records still behind the new ones.  kill -9 with nothing live, restart: the old
		records are cut off as a torn tail and no message is delivered twice."""
		self.r = self.receiver(receivers.SmtpReceiver, "127.0.0.11")
		d = self.start_petrel(shards=1)
		spool = self.env.spool
		self.relay(8, 100, 800)
		self.wait_for(lambda: spares(spool), 30, interval=0.2,
			      what="segment 1 kept as a spare file")
		[spare] = spares(spool)
		self.assertEqual(spare.name, "%016x.free" % 1)
		ino = spare.stat().st_ino
		self.assertGreaterEqual(spare.stat().st_size, 64 * MB)

		self.relay(8, 100, 1600)
		# Segment 2 (or 3, when the idle rotation between the rounds made a
		# new one) filled and rotated: its successor is the spare's file.
		[seg] = [f for f in (Path(spool) / "0").glob("*.seg") if f.stat().st_ino == ino]
		self.assertIn(seg.name, ("%016x.seg" % 3, "%016x.seg" % 4))
		self.assertFalse((Path(spool) / "0" / spare.name).exists())
		self.wait_spool_empty(30)
		size_before = seg.stat().st_size
		self.assertGreaterEqual(size_before, 64 * MB, "the old bytes are still in the file")

		d.kill9()
		d2 = self.env.start(self.policy, shards=1)
		self.addCleanup(d2.stop)
		time.sleep(3)
		size_after = seg.stat().st_size if seg.exists() else 0
		self.assertLess(size_after, size_before,
				"the old records were cut off (or the dead segment deleted) at restart")
		self.assertFalse(spool_ls(spool), "nothing is live after the restart")
		got = [x.message_id for x in self.r.deliveries()]
		self.assertEqual(len(got), 1600, "a message was delivered again after the restart")
		self.assertEqual(len(set(got)), 1600, "duplicates")
		rc, _ = d2.stop()
		self.assertEqual(rc, 0)
		rc, out = spool_verify(spool)
		self.assertEqual(rc, 0, out)
		harness.note("%s reused segment 1's file: %d MiB before the kill, %d MiB after "
			     "the restart" % (seg.name, size_before // MB, size_after // MB))
