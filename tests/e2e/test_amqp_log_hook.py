"""AMQP delivery (make_queue_config protocol.amqp, shard/shard_out_amqp.c)
as a log hook's transport: petreld configured with log_hooks:new_amqp
publishes one message per log record to a real RabbitMQ (harness.RabbitMQ),
which is stopped in the middle of the run and started again on the same
data dir.  What the broker's durable queue holds afterwards, consumed with
pika, is compared with the local log petreld wrote: every record arrived,
and a record arrived twice only where its publish was in flight when the
broker went away (at-least-once).  Ordinary mail to an aiosmtpd receiver is
delivered at once meanwhile.

Run only these:  /usr/bin/python3 tests/e2e/run.py -k 'test_amqp_log_hook*'
"""

import json
import threading
import time
import unittest
from collections import Counter

import dns
import harness
import receivers
from harness import lua_str, lua_value
from test_amqp_client import BrokerTailOnFailure, drain
from test_delivery import DeliveryTest
from test_log_hooks import DEST, DEST_ADDR, key, local_records

HOOK = "rabbit"
QUEUE = "petrel-log"


RETRY = {"retry_interval": "1s", "max_retry_interval": "2s"}


def amqp_hook_policy(env, dns_port, rport, url, amqp=None):
	"""harness.delivery_policy_source with one AMQP log hook set up first,
	retried every second or two while the broker is away or refuses:
	log_hooks:new_amqp publishing to QUEUE (declared durable) on the default
	exchange, or, with `amqp` (a protocol.amqp table), log_hooks:new with
	that protocol."""
	if amqp is None:
		hook = """log_hooks:new_amqp {
  name = %s, url = %s, exchange = '', routing_key = %s, declare_queue = true,
  queue_config = %s,
}
""" % (lua_str(HOOK), lua_str(url), lua_str(QUEUE), lua_value(RETRY))
	else:
		hook = "log_hooks:new { name = %s, queue_config = %s }\n" % (
			lua_str(HOOK), lua_value(dict(RETRY, protocol={"amqp": dict(amqp, url=url)})))
	text = "local log_hooks = require 'policy-extras.log_hooks'\n" + hook + \
		harness.delivery_policy_source(
			listen="127.0.0.1:%d" % env.port, spool=str(env.spool),
			log_dir=str(env.log_dir), dns_port=dns_port, egress={"smtp_port": rport})
	path = env.dir / "policy.lua"
	path.write_text(text)
	return path


def declare(port, exchange=None, queue=None, routing_key=None):
	"""With pika: a durable direct exchange, and/or a durable queue bound to
	it with routing_key."""
	import pika
	conn = pika.BlockingConnection(pika.ConnectionParameters(
		host="127.0.0.1", port=port, connection_attempts=1, socket_timeout=10, heartbeat=0))
	try:
		ch = conn.channel()
		if exchange:
			ch.exchange_declare(exchange, exchange_type="direct", durable=True)
		if queue:
			ch.queue_declare(queue, durable=True)
			ch.queue_bind(queue, exchange, routing_key=routing_key)
	finally:
		conn.close()


class SendThread(threading.Thread):
	"""test.send_all(first, n, pause) in the background; finish() joins it
	(bounded) and returns the ids, or raises what the sends raised."""

	def __init__(self, test, first, n):
		super().__init__(daemon=True)
		self.test, self.first, self.n = test, first, n
		self.ids, self.error, self.t0 = None, None, time.monotonic()

	def run(self):
		try:
			self.ids = self.test.send_all(self.first, self.n, pause=0.15)
		except BaseException as e:	# re-raised by finish()
			self.error = e

	def finish(self, timeout):
		self.join(timeout)
		if self.is_alive():
			raise AssertionError("sending %d messages took over %d s" % (self.n, timeout))
		if self.error is not None:
			raise self.error
		return self.ids


class AmqpLogHook(BrokerTailOnFailure, DeliveryTest):

	def setUp(self):
		super().setUp()
		try:
			import pika	# noqa: F401 -- drain() uses it
		except ImportError:
			raise unittest.SkipTest(harness.MISSING_DEP + "python3-pika")
		self.broker = harness.RabbitMQ(self.env.dir)
		self.addCleanup(self.broker.close)
		self.broker.start()
		harness.note("rabbitmq-server started in %.1f s" % self.broker.start_seconds)
		self.start_dns(dns.Zone().mx(DEST, 10, "mx." + DEST).a("mx." + DEST, DEST_ADDR))
		self.dest = self.receiver(receivers.SmtpReceiver, DEST_ADDR)

	def send_all(self, first, n, pause=0.0):
		ids = []
		for i in range(first, first + n):
			ids.append(self.send(["user%d@%s" % (i, DEST)], subject="amqp %d" % i)[0])
			time.sleep(pause)
		return ids

	def broker_log(self):
		return "".join(p.read_text(errors="replace")
			       for p in sorted((self.broker.dir / "log").glob("*.log")))

	def hook_records(self, type):
		return [r for r in local_records(self.env.log_dir)[1] if r["type"] == type]

	def all_records_published(self):
		"""Every record about an ordinary message has had its hook message
		acked (a Delivery record of a hook message each)."""
		ordinary, hook = local_records(self.env.log_dir)
		done = [r for r in hook if r["type"] == "Delivery"]
		return len(ordinary) > 0 and len(done) >= len(ordinary)

	@harness.bound(300)
	def test_broker_stopped_mid_run_loses_no_record(self):
		"""40 messages, 80 records; the broker stops while records stream
		and comes back: every record is in its queue, duplicates only from
		publishes in flight at the stop, ordinary mail never waits."""
		self.start_petrel(policy=amqp_hook_policy(self.env, self.dnsmasq.port, self.rport,
							   self.broker.url))
		ids = self.send_all(0, 10)
		self.wait_for(lambda: len(self.hook_records("Delivery")) >= 10, 30,
			      what="10 records published")
		# The broker goes away while records stream: the other 30 messages
		# are sent meanwhile (a few a second, so the stop falls among them),
		# and some publishes are in flight as it closes.
		sender = SendThread(self, 10, 30)
		sender.start()
		self.wait_for(lambda: len(self.hook_records("Delivery")) >= 24 or not sender.is_alive(),
			      30, what="24 records published")
		self.broker.stop()
		harness.note("broker stopped after %d acked records (%.1f s)"
			     % (len(self.hook_records("Delivery")), self.broker.stop_seconds))
		# Ordinary mail goes on while the hook's queue fails.
		ids += sender.finish(60)
		self.wait_records("Delivery", 40, timeout=30)
		self.assertLess(time.monotonic() - sender.t0, 45,
				"ordinary delivery waited for the broker")
		self.wait_for(lambda: any(r["type"] == "TransientFailure" and r["num_attempts"] >= 1
					  for r in local_records(self.env.log_dir)[1]),
			      30, what="hook messages retried while the broker is down")
		self.broker.start()
		harness.note("broker restarted in %.1f s" % self.broker.start_seconds)
		self.wait_for(self.all_records_published, 90, interval=0.5,
			      what="every record published after the restart")
		self.wait_spool_empty(timeout=30)

		ordinary, hook = local_records(self.env.log_dir)
		want = Counter(key(r) for r in ordinary)
		self.assertEqual(max(want.values()), 1)
		types = Counter((r["type"], r["id"]) for r in ordinary)
		for mid in ids:
			self.assertEqual(types[("Reception", mid)], 1, mid)
			self.assertEqual(types[("Delivery", mid)], 1, mid)
		bodies = [json.loads(b) for b, _ in drain(self.broker.port, QUEUE, timeout=60)]
		got = Counter(key(b) for b in bodies)
		# Every record arrived, nothing else did, at least once each.
		self.assertEqual(set(got), set(want), "records in the broker vs the local log")
		self.assertGreaterEqual(len(bodies), len(ordinary))
		by_key = {key(r): r for r in ordinary}
		for b in bodies:
			self.assertEqual(b, by_key[key(b)], "the message is the local record")
		# A record arrives twice only when its first publish was in flight as
		# the broker closed (that attempt failed, with no ack, on a session
		# that was up); publishes refused at connect time duplicate nothing.
		in_flight = [r for r in hook if r["type"] == "TransientFailure"
			     and "AMQP" in r["response"]["content"]
			     and "login" not in r["response"]["content"]]
		dups = sum(n - 1 for n in got.values())
		harness.note("%d records, %d duplicates, %d publishes failed in flight: %s"
			     % (len(ordinary), dups, len(in_flight),
				sorted({r["response"]["content"][:60] for r in in_flight})))
		self.assertLessEqual(dups, len(in_flight), in_flight)
		# The hook's messages: acked once each, by AMQP.
		delivered = [r for r in hook if r["type"] == "Delivery"]
		self.assertEqual(len(delivered), len(ordinary))
		self.assertEqual(len({r["id"] for r in delivered}), len(delivered))
		for r in delivered:
			self.assertEqual(r["delivery_protocol"], "AMQP", r)
			self.assertEqual(r["response"]["code"], 250, r)
			self.assertIn("acked", r["response"]["content"], r)
		failed = [r for r in hook if r["type"] == "TransientFailure"]
		self.assertTrue(failed)
		harness.note("hook TransientFailures: %s"
			     % dict(Counter(r["response"]["content"][:70] for r in failed)))
		for r in failed:
			self.assertEqual(r["delivery_protocol"], "AMQP", r)
			self.assertEqual(r["response"]["code"], 451, r)
		self.assertFalse([r for r in hook if r["type"] in ("Bounce", "Expiration")])
		self.assertEqual(self.dest.count(), 40)

	@harness.bound(180)
	def test_broker_refusals_are_retried_with_its_text(self):
		"""A named exchange that does not exist (the broker closes the
		channel: 404), then exists with no queue bound (a mandatory publish
		comes back: 312 NO_ROUTE), then routes to a queue: each refusal is a
		TransientFailure with the broker's code and text, retried on the
		queue's schedule, and in the end every record is in the queue once
		(a refused publish is not enqueued)."""
		exchange, routing_key = "petrel-x", "records"
		d = self.start_petrel(policy=amqp_hook_policy(
			self.env, self.dnsmasq.port, self.rport, self.broker.url,
			amqp={"exchange": exchange, "routing_key": routing_key, "mandatory": True,
			      "window": 4}))

		def failed_with(text):
			return lambda: [r for r in self.hook_records("TransientFailure")
					if text in r["response"]["content"]]
		ids = self.send_all(0, 5)
		self.wait_records("Delivery", 5, timeout=30)
		r = self.wait_for(failed_with("NOT_FOUND"), 30, what="the broker's 404")[0]
		self.assertIn("AMQP 404: ", r["response"]["content"])
		self.assertIn("no exchange '%s'" % exchange, r["response"]["content"])
		self.assertEqual(r["response"]["code"], 451)
		self.assertEqual(r["delivery_protocol"], "AMQP")
		declare(self.broker.port, exchange=exchange)
		r = self.wait_for(failed_with("NO_ROUTE"), 30, what="a mandatory publish returned")[0]
		self.assertIn("AMQP 312: the broker returned the message", r["response"]["content"])
		declare(self.broker.port, exchange=exchange, queue=QUEUE, routing_key=routing_key)
		self.wait_for(self.all_records_published, 60, interval=0.5,
			      what="every record published once the queue is bound")
		self.wait_spool_empty(timeout=30)
		ordinary = local_records(self.env.log_dir)[0]
		self.assertEqual(len(ordinary), 10)
		bodies = [json.loads(b) for b, _ in drain(self.broker.port, QUEUE, timeout=60)]
		self.assertEqual(Counter(key(b) for b in bodies), Counter(key(r) for r in ordinary))
		self.assertEqual({b["id"] for b in bodies}, set(ids))
		self.assertEqual(self.dest.count(), 5)
		# petreld's connections end politely (Connection.Close) when it stops:
		# the broker logs their close, and no socket cut under it.
		before = len(self.broker_log())
		d.stop()
		after = self.wait_for(lambda: (lambda t: t if "closing AMQP connection" in t else None)(
			self.broker_log()[before:]), 10, what="the broker logging the close")
		self.assertFalse("unexpectedly closed" in after, after[-2000:])

	@harness.bound(240)
	def test_publishes_in_flight_when_the_broker_dies_are_retried(self):
		"""The broker under a memory alarm (a 1-byte high watermark) blocks
		publishers: petreld's publishes go out and are never acked.  The
		broker is stopped with them in flight and comes back without the
		alarm: every one of them failed as a TransientFailure (the broker's
		close or the lost connection, not a refused connect), is published
		again, and each record is in the queue exactly once (a blocked
		publish was never stored)."""
		conf = self.broker.dir / "rabbitmq.conf"
		plain = conf.read_text()
		self.broker.stop()
		conf.write_text(plain + "vm_memory_high_watermark.absolute = 1\n")
		self.broker.start()
		self.start_petrel(policy=amqp_hook_policy(self.env, self.dnsmasq.port, self.rport,
							   self.broker.url))
		ids = self.send_all(0, 5)
		self.wait_records("Delivery", 5, timeout=30)
		time.sleep(3)	# the hook's publishes are out, and blocked
		self.assertEqual(self.hook_records("Delivery"), [], "acked under a memory alarm")
		self.broker.stop()
		conf.write_text(plain)
		self.broker.start()
		self.wait_for(self.all_records_published, 60, interval=0.5,
			      what="every record published after the restart")
		self.wait_spool_empty(timeout=30)
		ordinary, hook = local_records(self.env.log_dir)
		self.assertEqual(len(ordinary), 10)
		in_flight = {r["id"] for r in hook if r["type"] == "TransientFailure"
			     and "AMQP" in r["response"]["content"]
			     and "login" not in r["response"]["content"]}
		harness.note("hook TransientFailures: %s"
			     % dict(Counter(r["response"]["content"][:70] for r in hook
					    if r["type"] == "TransientFailure")))
		# Those waiting behind a blocked batch were never published: they
		# may meet the broker's absence at connect time instead.
		self.assertGreaterEqual(len(in_flight), 1, "a hook message failed in flight")
		bodies = [json.loads(b) for b, _ in drain(self.broker.port, QUEUE, timeout=60)]
		self.assertEqual(Counter(key(b) for b in bodies), Counter(key(r) for r in ordinary))
		self.assertEqual({b["id"] for b in bodies}, set(ids))

	@harness.bound(120)
	def test_refused_login_is_retried_with_the_brokers_words(self):
		"""A wrong password: the broker refuses the login (403), which is a
		failure before the session was ready: every hook message waits for
		its retry with the broker's words, and ordinary mail is delivered."""
		url = self.broker.url.replace("guest:guest@", "guest:wrong@")
		self.assertNotEqual(url, self.broker.url)
		self.start_petrel(policy=amqp_hook_policy(self.env, self.dnsmasq.port, self.rport, url))
		self.send_all(0, 2)
		self.wait_records("Delivery", 2, timeout=30)
		recs = self.wait_for(lambda: [r for r in self.hook_records("TransientFailure")
					      if r["num_attempts"] >= 1], 30,
				     what="hook messages retried after a refused login")
		content = recs[0]["response"]["content"]
		self.assertIn("AMQP login to 127.0.0.1 refused: ", content)
		self.assertIn("403 ACCESS_REFUSED", content)
		self.assertEqual(recs[0]["response"]["code"], 451)
		self.assertEqual(self.hook_records("Delivery"), [])
		self.assertEqual(self.dest.count(), 2)
