"""test_amqp_client.py -- net/amqp_client.c against a real RabbitMQ.

A private rabbitmq-server (harness.RabbitMQ) on loopback; the publisher is
build/tests/tools/amqp-publish, which drives net/amqp_client.c over a
socket and exits 0 only when every message was acked by the broker (and
the connection closed cleanly).  What the broker holds is read back with
pika, a client nobody here wrote.
"""

import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import harness

PUBLISH = harness.BUILD / "tests" / "tools" / "amqp-publish"


def publish(url, routing_key, bodies, *args, timeout=60):
	"""Run amqp-publish with one body per line: (exit status, its stdout)."""
	p = subprocess.run([str(PUBLISH)] + list(args) + [url, routing_key],
			   input="".join(b + "\n" for b in bodies).encode(), capture_output=True,
			   timeout=timeout)
	return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def drain(port, queue, limit=100000, timeout=60):
	"""Every message in queue, consumed with pika (auto-ack) until the queue
	is empty: a list of (body, properties).  Bounded by limit and timeout."""
	import pika
	conn = pika.BlockingConnection(pika.ConnectionParameters(
		host="127.0.0.1", port=port, connection_attempts=1, socket_timeout=10, heartbeat=0,
		blocked_connection_timeout=10))
	try:
		ch = conn.channel()
		want = ch.queue_declare(queue, passive=True).method.message_count
		got = []
		deadline = time.monotonic() + timeout
		for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=2):
			if method is not None:
				got.append((body.decode(), props))
			if len(got) >= min(want, limit) or method is None or time.monotonic() > deadline:
				break
		ch.cancel()
		if len(got) != want:
			raise AssertionError("queue %s: %d messages, %d consumed" % (queue, want, len(got)))
		return got
	finally:
		conn.close()


class BrokerTailOnFailure:
	"""Mixin for a TestCase with self.broker (harness.RabbitMQ): a failed or
	erring test prints the broker's output tail."""

	def run(self, result=None):
		result = result if result is not None else self.defaultTestResult()
		before = len(result.failures) + len(result.errors)
		out = super().run(result)
		if len(result.failures) + len(result.errors) > before and getattr(self, "broker", None):
			print(self.broker.output_tail(), flush=True)
		return out


class AMQPClientTest(BrokerTailOnFailure, unittest.TestCase):

	def setUp(self):
		try:
			import pika	# noqa: F401 -- only its presence is checked here
		except ImportError:
			raise unittest.SkipTest(harness.MISSING_DEP + "python3-pika")
		if not PUBLISH.exists():
			raise AssertionError("%s does not exist (build it with make all)" % PUBLISH)
		self.dir = tempfile.mkdtemp(prefix="petrel-e2e-amqp-")
		harness._temp_dirs.append(self.dir)
		# A 1 s heartbeat offered: the client declines heartbeats (TuneOk 0),
		# which the idle publish below proves the broker accepts.
		self.broker = harness.RabbitMQ(self.dir, config="heartbeat = 1\n")
		self.addCleanup(self.broker.close)
		self.broker.start()
		harness.note("rabbitmq-server started in %.1f s" % self.broker.start_seconds)


	@harness.bound(240)
	def test_publish_confirm_consume_and_survive_restart(self):
		url, port = self.broker.url, self.broker.port

		# 100 persistent messages into a durable queue, every one acked,
		# then exactly those bodies, in order, persistent, text/plain.
		first = ["record %03d {\"type\":\"Delivery\",\"n\":%d}" % (i, i) for i in range(100)]
		rc, out = publish(url, "petrel-logs", first, "--declare")
		self.assertEqual((rc, out.strip()), (0, "acked 100 of 100"))
		got = drain(port, "petrel-logs")
		self.assertEqual([b for b, _ in got], first)
		self.assertEqual({(p.delivery_mode, p.content_type) for _, p in got}, {(2, "text/plain")})

		# A body over frame_max goes in several body frames; an empty one in none.
		big = "x" * 20000
		rc, out = publish(url, "petrel-logs", [big, ""], "--frame-max", "4096", "--window", "1")
		self.assertEqual((rc, out.strip()), (0, "acked 2 of 2"))
		self.assertEqual([b for b, _ in drain(port, "petrel-logs")], [big, ""])

		# No heartbeats: a connection idle for 4 heartbeat intervals still publishes.
		rc, out = publish(url, "petrel-logs", ["after a pause"], "--pause-ms", "4000")
		self.assertEqual((rc, out.strip()), (0, "acked 1 of 1"))
		self.assertEqual([b for b, _ in drain(port, "petrel-logs")], ["after a pause"])

		# Refusals carry the broker's own words.
		rc, out = publish(url, "no-such-queue", ["lost"], "--mandatory")
		self.assertEqual(rc, 1)
		self.assertIn("nack 0: 312 the broker returned the message", out)
		self.assertIn("NO_ROUTE", out)
		bad = "amqp://guest:wrong@127.0.0.1:%d/" % port
		rc, out = publish(bad, "petrel-logs", ["x"])
		self.assertEqual(rc, 1)
		self.assertIn("failed: 403 the broker closed the connection: 403 ACCESS_REFUSED", out)
		rc, out = publish("amqp://127.0.0.1:%d/no-vhost" % port, "petrel-logs", ["x"])
		self.assertIn("530 NOT_ALLOWED - vhost no-vhost not found", out)
		rc, out = publish(url, "petrel-logs", ["x"], "--exchange", "no-exchange")
		self.assertEqual(rc, 1)
		self.assertIn("nack 0: 404 the broker closed the channel: 404 NOT_FOUND", out)
		self.assertEqual(drain(port, "petrel-logs"), [])

		# Acked persistent messages in a durable queue survive a broker
		# restart on the same data dir.
		second = ["second %02d" % i for i in range(50)]
		rc, out = publish(url, "petrel-logs", second)
		self.assertEqual((rc, out.strip()), (0, "acked 50 of 50"))
		self.broker.stop()
		harness.note("rabbitmq-server stopped in %.1f s" % self.broker.stop_seconds)
		self.assertFalse(harness.port_in_use(port))
		rc, out = publish(url, "petrel-logs", ["while down"])
		self.assertEqual(rc, 1)
		self.assertIn("Connection refused", out)
		self.broker.start()
		harness.note("rabbitmq-server restarted in %.1f s" % self.broker.start_seconds)
		self.assertEqual([b for b, _ in drain(port, "petrel-logs")], second)


	@harness.bound(240)
	def test_broker_stopped_mid_run_loses_no_acked_message(self):
		"""The broker stops while messages stream: the publisher fails at once
		with the broker's reason; after a restart every message it saw acked
		is in the queue (the unacked ones are what the shard would retry)."""
		url, port = self.broker.url, self.broker.port
		bodies = ["streamed %05d" % i for i in range(50000)]
		path = Path(self.dir) / "bodies"
		path.write_text("".join(b + "\n" for b in bodies))
		with open(path, "rb") as stdin:
			p = subprocess.Popen([str(PUBLISH), "--declare", "--print-acks", url, "stream"],
					     stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
		self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait(10)))
		lines = []
		deadline = time.monotonic() + 60
		while len(lines) < 500 and time.monotonic() < deadline:
			line = p.stdout.readline().decode()
			if not line:
				break
			lines.append(line)
		self.assertEqual(len(lines), 500, "500 acks before stopping the broker: %r" % lines[-5:])
		self.broker.stop()
		t0 = time.monotonic()
		rest, _ = p.communicate(timeout=30)
		harness.note("publisher ended %.1f s after the broker stopped" % (time.monotonic() - t0))
		lines += rest.decode().splitlines()
		self.assertEqual(p.returncode, 1, lines[-3:])
		acked = {int(l.split()[1]) for l in lines if l.startswith("ack ")}
		failed = [l for l in lines if l.startswith("failed: ")]
		self.assertLess(len(acked), len(bodies), "the run ended before the broker stopped")
		self.assertEqual(len(failed), 1, lines[-3:])
		harness.note("%d acked before the stop; %s" % (len(acked), failed[0]))
		self.broker.start()
		got = {b for b, _ in drain(port, "stream")}
		harness.note("%d in the queue after the restart" % len(got))
		missing = sorted(i for i in acked if bodies[i] not in got)
		self.assertEqual(missing, [], "acked messages lost in the restart")
		self.assertLessEqual(got, set(bodies))


if __name__ == "__main__":
	unittest.main()
