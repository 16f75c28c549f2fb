"""petrel-gen against petrel-sink, the pair every bench/compare column uses:
what the generator says it sent is what the sink says it received, message
for message, byte for byte, and the sink's scripted refusals are what the
generator counts as refused."""

import unittest

import harness
from test_bench_gen import run_gen
from test_bench_sink import Sink


class Pair(harness.PetrelTest):

	@harness.bound(90)
	def test_counts_sent_equal_counts_received(self):
		sink = Sink(self, threads=2, log=True)
		p, g = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 3000,
			       "--sessions", 12, "--threads", 2, "--size", 3000, "--rcpts", 2,
			       "--domains", 3, "--per-connection", 100, "--json", timeout=80)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertEqual((g["accepted"], g["failed"], g["conn_errors"]), (3000, 0, 0))
		st = sink.wait_status(messages=3000, connections_open=0)
		self.assertEqual(st["recipients"], g["rcpts_accepted"])
		self.assertEqual(st["recipients"], 6000)
		self.assertEqual(st["bytes"], g["bytes"])
		self.assertEqual(st["bytes"], 3000 * 3000)
		# 12 sessions taking messages as they come, each reconnecting after
		# 100: sum of ceil(n_i / 100) over the sessions, with sum n_i = 3000.
		self.assertTrue(30 <= st["connections"] <= 42, st)
		mids = [line.split()[-1] for line in sink.log_lines()]
		self.assertEqual(len(mids), 3000)
		self.assertEqual(len(set(mids)), 3000, "every Message-ID once")
		# The sink stamps the newest message on the clock the generator uses.
		self.assertGreaterEqual(st["last_message_mono_s"], g["first_connect_mono_s"])
		self.assertLessEqual(abs(st["last_message_mono_s"] - g["last_reply_mono_s"]), 1.0)

	@harness.bound(90)
	def test_scripted_refusals_are_counted_by_both(self):
		"""Each message has one recipient, so a refused RCPT is a refused
		message: the generator's tempfailed/permfailed are the sink's
		tempfail/permfail, exactly, and accepted + refused = sent."""
		sink = Sink(self, "--tempfail", "10", "--permfail", "2", "--seed", "7", threads=1)
		p, g = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 2000,
			       "--sessions", 4, "--json", timeout=80)
		self.assertEqual(p.returncode, 0, p.stderr)
		st = sink.wait_status(messages=g["accepted"])
		self.assertEqual(g["tempfailed"], st["tempfail"])
		self.assertEqual(g["permfailed"], st["permfail"])
		self.assertEqual(g["accepted"] + g["tempfailed"] + g["permfailed"], 2000)
		self.assertEqual(st["recipients"], g["accepted"])
		# 10% and 2% of 2000, give or take what a fair coin does (about 4 sigma).
		self.assertTrue(120 <= st["tempfail"] <= 280, st)
		self.assertTrue(10 <= st["permfail"] <= 70, st)


if __name__ == "__main__":
	unittest.main()
