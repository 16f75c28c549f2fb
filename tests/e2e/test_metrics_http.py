"""GET /metrics on petreld's HTTP listener, read with curl and parsed with
Python's prometheus_client parser: the counters equal what the test did
(messages received over SMTP and HTTP, delivered, bounced, deferred, as
the JSON log records them), every family's shard lines add up to its total, and the queue
gauges show recipients waiting in a scheduled queue (a 451 and a long
retry) and in a ready queue (a receiver slow to answer DATA, one
connection)."""

import json
import subprocess

import dns
import harness
import receivers
from test_delivery import DeliveryTest
from test_metrics import parse

SLOW_ADDR, DEFER_ADDR = "127.0.0.31", "127.0.0.32"


def metrics_zone():
	"""a.test: two MX hosts that accept; nullmx.test: a null MX (a bounce
	without a connection); slow.test and defer.test: one MX each."""
	return (dns.Zone()
		.mx("a.test", 10, "mx1.a.test").mx("a.test", 20, "mx2.a.test")
		.a("mx1.a.test", "127.0.0.11").a("mx2.a.test", "127.0.0.12")
		.null_mx("nullmx.test").a("nullmx.test", "127.0.0.16")
		.mx("slow.test", 10, "mx.slow.test").a("mx.slow.test", SLOW_ADDR)
		.mx("defer.test", 10, "mx.defer.test").a("mx.defer.test", DEFER_ADDR))


def sample(families, family, sample_name=None, /, **labels):
	"""The value of one sample (sample_name: default the family's name; the
	parser calls a counter's samples NAME_total), or None."""
	f = families.get(family)
	if f is None:
		return None
	want = sample_name or (family + "_total" if f.type == "counter" else family)
	for s in f.samples:
		if s.name == want and s.labels == labels:
			return s.value
	return None


class MetricsHttp(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(metrics_zone())
		self.hport = harness.free_port()

	def start(self, **kw):
		return self.start_petrel(http_listener={"listen": "127.0.0.1:%d" % self.hport}, **kw)

	def scrape(self):
		"""curl GET /metrics: (status line, Content-Type, families)."""
		curl = harness.require_tool("curl")
		p = subprocess.run([curl, "-sS", "--max-time", "10", "-D", "-",
				    "http://127.0.0.1:%d/metrics" % self.hport],
				   capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
		self.assertEqual(p.returncode, 0, p.stderr)
		head, _, body = p.stdout.partition(b"\r\n\r\n")
		lines = head.decode().split("\r\n")
		ctype = next((l.split(":", 1)[1].strip() for l in lines[1:]
			      if l.lower().startswith("content-type:")), None)
		self.assertEqual(lines[0], "HTTP/1.1 200 OK", "GET /metrics: %r" % body[:300])
		return lines[0], ctype, parse(body.decode("utf-8"))

	def wait_metrics(self, pred, what, timeout=10):
		"""Scrape until pred(families) holds (gauges are refreshed once a second)."""
		got = {}

		def check():
			got["f"] = self.scrape()[2]
			return pred(got["f"])
		self.wait_for(check, timeout, interval=0.2, what=what)
		return got["f"]

	def assert_shards_add_up(self, families, shards=2):
		"""Each NAME_by_shard family has one line per shard for each of its
		series, and they add up to NAME's line for that series."""
		checked = 0
		for name, f in families.items():
			if not name.endswith("_by_shard") or f.type == "histogram":
				continue
			total = families[name[:-len("_by_shard")]]
			parts = {}
			for x in f.samples:
				labels = {k: v for k, v in x.labels.items() if k != "shard"}
				key = (x.name.replace(name, total.name, 1), tuple(sorted(labels.items())))
				parts.setdefault(key, []).append(x.value)
			for (sname, labels), values in parts.items():
				self.assertEqual(len(values), shards, "%s %r" % (name, labels))
				want = [s.value for s in total.samples
					if s.name == sname and tuple(sorted(s.labels.items())) == labels]
				self.assertEqual(want, [sum(values)], "%s %r" % (name, labels))
				checked += 1
		self.assertGreater(checked, 15)

	def inject(self, rcpts):
		"""POST /api/inject/v1 with curl: one message per recipient."""
		body = json.dumps({"envelope_sender": "sender@client.test",
				   "content": "Subject: injected\r\n\r\nhello\r\n",
				   "recipients": [{"email": r} for r in rcpts]})
		p = subprocess.run([harness.require_tool("curl"), "-sS", "--max-time", "10", "-H",
				    "Content-Type: application/json", "--data-binary", body,
				    "http://127.0.0.1:%d/api/inject/v1" % self.hport],
				   capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertEqual(json.loads(p.stdout)["success_count"], len(rcpts), p.stdout)

	@harness.bound(60)
	def test_counters_equal_what_was_done(self):
		"""5 messages delivered to a.test over SMTP and 2 injected over HTTP,
		1 bounced by a null MX: the counters say 6 received by SMTP, 2 by
		HTTP, 7 delivered, 1 failed, 0 deferred, and the log agrees;
		content type 0.0.4; spool syncs and policy events timed."""
		self.receiver(receivers.SmtpReceiver, ["127.0.0.11", "127.0.0.12"])
		self.start()
		for i in range(5):
			self.send(["user%d@a.test" % i])
		self.send(["user@nullmx.test"])
		self.inject(["http1@a.test", "http2@a.test"])
		self.wait_records("Delivery", 7)
		self.wait_records("Bounce", 1)
		status, ctype, fam = self.scrape()
		self.assertEqual(status, "HTTP/1.1 200 OK")
		self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
		delivered = len(self.records("Delivery"))
		self.assertEqual(sample(fam, "total_messages_received", service="esmtp_listener"), 6)
		self.assertEqual(sample(fam, "total_messages_received", service="http_listener"), 2)
		self.assertEqual(sample(fam, "total_messages_delivered", service="smtp_client"),
				 delivered)
		self.assertEqual(delivered, 7)
		self.assertEqual(sample(fam, "total_messages_fail", service="smtp_client"), 1)
		self.assertEqual(sample(fam, "total_messages_transfail", service="smtp_client"), 0)
		self.assertEqual(sample(fam, "total_messages_expired"), 0)
		self.assertGreaterEqual(sample(fam, "total_connection_count", service="esmtp_listener"),
					6)
		self.assertGreaterEqual(sample(fam, "total_connection_count", service="smtp_client"), 1)
		self.assertGreaterEqual(sample(fam, "spool_sync_latency", "spool_sync_latency_count"), 1)
		self.assertGreaterEqual(sample(fam, "lua_event_latency", "lua_event_latency_count",
					       event="get_queue_config"), 1)
		self.assert_shards_add_up(fam)
		# Gauges and the DNS counters are copied once a second: nothing
		# waits, the spool is on disk, a.test and nullmx.test were looked up.
		fam = self.wait_metrics(
			lambda f: sample(f, "dns_cache_miss") >= 2 and
			sample(f, "scheduled_count_total") == 0 and
			sample(f, "ready_count", service="smtp_client") == 0 and
			(sample(f, "spool_bytes") or 0) > 0 and
			sample(f, "spool_segments") >= 1, "gauges after the deliveries")
		self.assertGreater(sample(fam, "disk_free_bytes", name="data"), 0)
		harness.note("%d families; spool %d bytes in %d segments" %
			     (len(fam), sample(fam, "spool_bytes"), sample(fam, "spool_segments")))

	@harness.bound(60)
	def test_queue_gauges(self):
		"""defer.test answers 451 at RCPT (retry in an hour): its 3
		recipients wait in scheduled queue defer.test.  slow.test takes 4 s to
		answer each DATA over its one connection: while the first message is
		in flight, 3 wait in ready queue unspecified->mx.slow.test."""
		self.receiver(receivers.ScriptedReceiver, DEFER_ADDR,
			      rcpt=receivers.always("451 4.7.1 try again later"))
		slow = self.receiver(receivers.ScriptedReceiver, SLOW_ADDR, delay=4.0)
		self.start(queue_by_domain={"defer.test": {"retry_interval": "1h"}},
			   egress_by_site={"mx.slow.test": {"connection_limit": 1}})
		for i in range(3):
			self.send(["user%d@defer.test" % i])
		for i in range(4):
			self.send(["user%d@slow.test" % i])
		rq = "smtp_client:unspecified->mx.slow.test"
		# Shards refresh their gauges at different moments: wait for one
		# scrape where every gauge has caught up.
		fam = self.wait_metrics(
			lambda f: sample(f, "ready_count", service=rq) == 3 and
			sample(f, "ready_count", service="smtp_client") == 3 and
			sample(f, "connection_count", service=rq) == 1 and
			sample(f, "scheduled_count", queue="defer.test") == 3 and
			sample(f, "scheduled_count_total") == 3,
			"3 ready for slow.test and 3 scheduled for defer.test")
		self.assertEqual(sample(fam, "total_messages_transfail", service="smtp_client"), 3)
		self.assertEqual(sample(fam, "total_messages_delivered", service="smtp_client"), 0)
		self.assert_shards_add_up(fam)
		self.wait_records("Delivery", 4, timeout=30)
		fam = self.wait_metrics(lambda f: sample(f, "ready_count", service=rq) == 0,
					"the ready queue to drain")
		self.assertEqual(sample(fam, "total_messages_delivered", service="smtp_client"), 4)
		self.assertEqual(sample(fam, "scheduled_count", queue="defer.test"), 3)
		self.assertEqual(len(slow.deliveries()), 4)
