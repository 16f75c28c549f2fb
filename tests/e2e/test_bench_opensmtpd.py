"""test_bench_opensmtpd.py -- bench/opensmtpd.py, the OpenSMTPD column of
bench/compare: Debian's smtpd, extracted from its package into a bench kit,
relays 20 messages from smtplib to an aiosmtpd receiver (receivers.py), and
everything it started is gone after stop().

Skipped as a missing dependency when opensmtpd.available() says no (not
root, no package, a system OpenSMTPD present).
"""

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import unittest

import harness
import receivers

sys.path.insert(0, str(harness.REPO / "bench"))
import benchkit	# noqa: E402
import opensmtpd	# noqa: E402

N = 20


def message(i):
	return ("From: sender@bench.test\r\n"
		"To: rcpt%02d@dest.test\r\n"
		"Subject: opensmtpd relay %d\r\n"
		"Message-ID: <os-%02d@bench.test>\r\n"
		"\r\n"
		"body of message %d\r\n" % (i, i, i, i))


class BenchOpenSMTPDTest(unittest.TestCase):

	@harness.bound(120)
	def test_bench_opensmtpd_relays_all(self):
		kit = benchkit.Kit("test")
		self.addCleanup(kit.close)
		ok, why = opensmtpd.available(kit)
		if not ok:
			raise unittest.SkipTest(harness.MISSING_DEP + "opensmtpd (%s)" % why)
		harness.note(why)
		recv = receivers.SmtpReceiver("127.0.0.1", harness.free_port()).start()
		self.addCleanup(recv.stop)

		relay = opensmtpd.OpenSMTPD(kit, "opensmtpd", recv.port, concurrency=4)
		self.addCleanup(relay.stop)
		self.assertTrue(opensmtpd.MARKER.exists())
		self.assertEqual(relay.proc.poll(), None)
		# The parent and its six privilege-separated processes (control,
		# lookup, queue, scheduler, smtp+mta, crypto), all under self.pid.
		self.assertEqual(len(relay.children), 6, relay.children)

		with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as c:
			code, banner = c.ehlo("client.bench.test")
			self.assertEqual(code, 250)
			for i in range(N):
				refused = c.sendmail("sender@bench.test", ["rcpt%02d@dest.test" % i],
						     message(i))
				self.assertEqual(refused, {})

		harness.wait_for(lambda: recv.count() >= N, 60, what="%d messages at the receiver" % N)
		harness.wait_for(lambda: relay.delivered() >= N, 10, what="%d mta Ok log lines" % N)
		got = recv.deliveries()
		self.assertEqual(len(got), N)
		self.assertEqual(sorted(d.rcpt for d in got), ["rcpt%02d@dest.test" % i for i in range(N)])
		self.assertEqual({d.message_id for d in got}, {"<os-%02d@bench.test>" % i for i in range(N)})
		self.assertEqual({d.mail_from for d in got}, {"sender@bench.test"})
		self.assertEqual({d.tls for d in got}, {False})
		self.assertEqual(relay.delivered(), N)

		cpu, rss_kb = benchkit.proc_tree(relay.pid)
		self.assertGreater(cpu, 0)
		self.assertGreater(rss_kb, 0)

		pids = [relay.pid] + list(relay.children)
		self.assertEqual(relay.stop(), 0, kit.tail("opensmtpd"))
		self.assertEqual(relay.alive_children(), [])
		self.assertEqual([p for p in pids if os.path.exists("/proc/%d" % p)
				  and benchkit.proc_stat(p) and benchkit.proc_stat(p)[0] in pids], [])
		self.assertNotIn(relay.proc, [p for _, p in kit.procs])
		self.assertFalse(opensmtpd.SPOOL.exists())
		self.assertFalse(opensmtpd.SOCK.exists())
		self.assertEqual(relay.stop(), 0)	# a second stop is a no-op

	@harness.bound(60)
	def test_bench_opensmtpd_fixed_paths(self):
		"""/var/spool/smtpd that is not the bench's is refused; one a dead
		bench left is taken over; one a live bench holds is refused."""
		kit = benchkit.Kit("test")
		self.addCleanup(kit.close)
		ok, why = opensmtpd.available(kit)
		if not ok:
			raise unittest.SkipTest(harness.MISSING_DEP + "opensmtpd (%s)" % why)
		spool = opensmtpd.SPOOL
		spool.mkdir(mode=0o711)
		self.addCleanup(lambda: spool.exists() and shutil.rmtree(spool))

		self.assertEqual(opensmtpd.available(kit),
				 (False, "/var/spool/smtpd exists and is not the bench's"))

		dead = subprocess.Popen(["true"])
		dead.wait()
		opensmtpd.MARKER.write_text("pid %d /var/tmp/gone\n" % dead.pid)
		self.assertEqual(opensmtpd.available(kit), (True, why))

		live = subprocess.Popen(["sleep", "30"])
		self.addCleanup(lambda: (live.kill(), live.wait()))
		opensmtpd.MARKER.write_text("pid %d /var/tmp/other\n" % live.pid)
		self.assertEqual(opensmtpd.available(kit),
				 (False, "/var/spool/smtpd is in use by another bench (pid %d)" % live.pid))

		# A control socket that answers: an OpenSMTPD runs, ours or not.
		shutil.rmtree(spool)
		if opensmtpd.SOCK.exists():
			self.fail("%s appeared during the test" % opensmtpd.SOCK)
		with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
			s.bind(str(opensmtpd.SOCK))
			try:
				s.listen(1)
				self.assertEqual(opensmtpd.available(kit), (False, "/var/run/smtpd.sock "
						 "exists: an OpenSMTPD is installed or running"))
			finally:
				opensmtpd.SOCK.unlink()
		self.assertEqual(opensmtpd.available(kit), (True, why))


if __name__ == "__main__":
	unittest.main()
