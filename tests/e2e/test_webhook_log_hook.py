"""The webhook log hook (policy-extras.log_hooks:new_json): each log record
becomes a message queued to NAME.log_hook and is POSTed as JSON by the HTTP
delivery protocol, in batches, to a real HTTP server (Python's http.server,
test_http_delivery.HttpReceiver).  The receiver answers 500 for a while,
then 200: every record arrives exactly once among the accepted requests,
none is lost, and ordinary delivery went on meanwhile.

Run only these:  /usr/bin/python3 tests/e2e/run.py -k 'test_webhook_log_hook*'
"""

import json
import time
from collections import Counter

import harness
from harness import lua_str, lua_value
from test_http_delivery import HttpReceiver
from test_log_hooks import HOOK_QUEUE, LogHookBase, key

HOOK = "archive"	# test_log_hooks' HOOK_QUEUE is archive.log_hook
BATCH = 4


class WebhookLogHook(LogHookBase):

	def webhook_policy(self, url):
		hook = """local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json {
  name = %s,
  url = %s,
  batch_size = %d,
  queue_config = %s,
}
""" % (lua_str(HOOK), lua_str(url), BATCH, lua_value({
			"retry_interval": "1s", "max_retry_interval": "1s"}))
		text = hook + harness.delivery_policy_source(
			listen="127.0.0.1:%d" % self.env.port, spool=str(self.env.spool),
			log_dir=str(self.env.log_dir), dns_port=self.dnsmasq.port,
			egress={"smtp_port": self.rport})
		path = self.env.dir / "policy.lua"
		path.write_text(text)
		return path

	def accepted_records(self, rx):
		"""The records in the requests the receiver answered 200, parsed;
		each request's body is a JSON array of at most BATCH records."""
		out = []
		for r in rx.seen():
			self.assertEqual(r.method, "POST")
			self.assertEqual(r.headers.get("Content-Type"), "application/json")
			if r.status != 200:
				continue
			batch = json.loads(r.body)
			self.assertIsInstance(batch, list)
			self.assertLessEqual(len(batch), BATCH)
			out.extend(batch)
		return out

	@harness.bound(150)
	def test_500_then_200_every_record_once(self):
		"""Eight 500s, then 200s: the hook messages are retried on their
		queue's schedule (TransientFailure records, logged locally, never
		hooked), ordinary mail is delivered at once, and after recovery the
		accepted requests hold every local record exactly once."""
		rx = HttpReceiver(statuses=[500] * 8, body=b"backend down").start()
		self.addCleanup(rx.stop)
		self.start_petrel(policy=self.webhook_policy("http://127.0.0.1:%d/log" % rx.port))
		n = 12
		t0 = time.monotonic()
		ids = self.send_all(n)
		self.wait_records("Delivery", n, timeout=30)
		self.assertLess(time.monotonic() - t0, 25, "ordinary delivery waited for the hook")
		self.assertEqual(self.dest.count(), n)
		want = 2 * n	# a Reception and a Delivery record per message
		self.wait_for(lambda: len(self.accepted_records(rx)) >= want, 60, interval=0.2,
			      what="%d records accepted by the webhook" % want)
		self.wait_hook_records("Delivery", want, timeout=20)
		time.sleep(2)	# nothing more may come
		statuses = Counter(r.status for r in rx.seen())
		self.assertEqual(statuses[500], 8, statuses)
		print("note: %d requests (%d answered 500), %d records, %d hook TransientFailures"
		      % (len(rx.seen()), statuses[500], want,
			 len([r for r in self.local_records()[1] if r["type"] == "TransientFailure"])))
		got = self.accepted_records(rx)
		ordinary, hook_recs = self.local_records()
		self.assertEqual(Counter(key(r) for r in got), Counter(key(r) for r in ordinary),
				 "accepted records vs local records")
		self.assertEqual(max(Counter(key(r) for r in got).values()), 1, "a record twice")
		by_key = {key(r): r for r in ordinary}
		for r in got:
			self.assertEqual(r, by_key[key(r)], "the posted record is the local record")
		types = Counter((r["type"], r["id"]) for r in got)
		for mid in ids:
			self.assertEqual(types[("Reception", mid)], 1, mid)
			self.assertEqual(types[("Delivery", mid)], 1, mid)
		# The retries were the hook queue's, logged locally with the HTTP status.
		fails = [r for r in hook_recs if r["type"] == "TransientFailure"]
		self.assertTrue(fails, "no TransientFailure for the 500s")
		for r in hook_recs:
			self.assertEqual(r["queue"], HOOK_QUEUE, r)
			self.assertEqual(r["delivery_protocol"], "HTTP", r)
		self.assertIn("500", fails[0]["response"]["content"])
		self.wait_spool_empty()

