"""Log hooks (kumo.configure_log_hook, policy-extras.log_hooks): every log
record a hook takes becomes a message in the spool, queued to NAME.log_hook
and delivered by that queue's protocol -- here SMTP to an aiosmtpd receiver
named by the hook queue's mx_list.  What the hook receiver gets is compared
with the local log petreld wrote: one message per record, its body the
record's JSON, no record about a hook message offered again, and a hook
endpoint that is down loses nothing and delays no other delivery.

Run only these:  /usr/bin/python3 tests/e2e/run.py -k 'test_log_hooks*'
"""

import json
import os
import subprocess
import time
from collections import Counter

import dns
import harness
import receivers
from harness import lua_str, lua_value
from test_delivery import DeliveryTest

DEST = "dest.test"
DEST_ADDR = "127.0.0.11"
HOOK_ADDR = "127.0.0.41"
HOOK = "archive"
HOOK_RCPT = "log@%s.log_hook" % HOOK
HOOK_QUEUE = "%s.log_hook" % HOOK


def hook_policy(env, dns_port, rport, local_logs=True, listener=None):
	"""A delivery policy (harness.delivery_policy_source) with one log hook,
	set up first so its get_queue_config handler answers for its queue;
	without local_logs, no configure_local_logs (the hook still gets every
	record)."""
	hook = """local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new {
  name = %s,
  queue_config = %s,
}
""" % (lua_str(HOOK), lua_value({
		"retry_interval": "1s", "max_retry_interval": "1s",
		"protocol": {"smtp": {"mx_list": [HOOK_ADDR]}}}))
	text = hook + harness.delivery_policy_source(
		listen="127.0.0.1:%d" % env.port, spool=str(env.spool), log_dir=str(env.log_dir),
		dns_port=dns_port, egress={"smtp_port": rport}, listener=listener)
	if not local_logs:
		line = "  kumo.configure_local_logs{log_dir=%s}\n" % lua_str(str(env.log_dir))
		assert line in text
		text = text.replace(line, "")
	path = env.dir / "policy.lua"
	path.write_text(text)
	return path


def local_records(log_dir):
	"""The local log's records (every shard's segments, decoded):
	(records about ordinary messages, records about hook messages)."""
	recs = harness.log_records(log_dir)
	hook = [r for r in recs if r.get("reception_protocol") == "LogRecord"]
	return [r for r in recs if r.get("reception_protocol") != "LogRecord"], hook


def key(rec):
	"""What identifies a log record: its type, message id and recipient."""
	rcpt = rec.get("recipient")
	return (rec.get("type"), rec.get("id"), json.dumps(rcpt))


class LogHookBase(DeliveryTest):
	"""The receivers and the checks; the tests are in the subclasses."""

	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone().mx(DEST, 10, "mx." + DEST).a("mx." + DEST, DEST_ADDR))
		self.dest = None
		if not self._testMethodName.endswith("_full_spool_drops_counted"):
			self.dest = self.receiver(receivers.SmtpReceiver, DEST_ADDR)

	def start_hook_receiver(self):
		return self.receiver(receivers.SmtpReceiver, HOOK_ADDR, line_length_limit=1 << 16)

	def start(self, local_logs=True, listener=None):
		return self.start_petrel(policy=hook_policy(self.env, self.dnsmasq.port, self.rport,
							    local_logs, listener))

	def local_records(self):
		return local_records(self.env.log_dir)

	def hook_bodies(self, hook_rx):
		"""The records the hook receiver got, parsed, with their envelopes."""
		out = []
		for d in hook_rx.deliveries():
			text = d.content.decode()
			self.assertTrue(text.endswith("\r\n"), repr(text[-20:]))
			self.assertNotIn("\n", text[:-2], "one JSON line per message")
			out.append((json.loads(text), d))
		return out

	def send_all(self, n):
		ids = []
		for i in range(n):
			mid, _ = self.send(["user%d@%s" % (i, DEST)], subject="hooked %d" % i)
			ids.append(mid)
		return ids

	def wait_hook_records(self, type, want, timeout=20):
		"""Wait for `want` local records of `type` about hook messages."""
		self.wait_for(lambda: len([r for r in self.local_records()[1]
					   if r["type"] == type]) >= want,
			      timeout, what="%d %s records of hook messages" % (want, type))

	def wait_hook_count(self, hook_rx, want, timeout):
		self.wait_for(lambda: hook_rx.count() >= want, timeout, interval=0.1,
			      what="%d hook messages (got %d)" % (want, hook_rx.count()))

	def assert_every_record_once(self, hook_rx, ids):
		"""The hook receiver holds exactly one message per local record about
		an ordinary message, equal to it, and nothing else."""
		ordinary, hook_recs = self.local_records()
		bodies = self.hook_bodies(hook_rx)
		got = Counter(key(b) for b, _ in bodies)
		want = Counter(key(r) for r in ordinary)
		self.assertEqual(got, want, "hook messages vs local records")
		self.assertEqual(max(got.values()), 1)
		by_key = {key(r): r for r in ordinary}
		for body, d in bodies:
			self.assertEqual(body, by_key[key(body)], "the body is the local record")
			self.assertEqual(d.rcpt, HOOK_RCPT)
			self.assertEqual(d.mail_from, body.get("sender") or "")
			self.assertNotEqual(body.get("reception_protocol"), "LogRecord")
		# Each sent message: its Reception and its Delivery, both hooked.
		types = Counter((b["type"], b["id"]) for b, _ in bodies)
		for mid in ids:
			self.assertEqual(types[("Reception", mid)], 1, mid)
			self.assertEqual(types[("Delivery", mid)], 1, mid)
		# The hook's own messages: logged locally, delivered once each, no
		# Reception, queued to the hook's queue, never offered again.
		delivered = [r for r in hook_recs if r["type"] == "Delivery"]
		self.assertEqual(len(delivered), len(bodies), hook_recs)
		self.assertEqual({r["id"] for r in hook_recs if r["type"] == "Reception"}, set())
		for r in hook_recs:
			self.assertEqual(r["recipient"], HOOK_RCPT, r)
			self.assertEqual(r["queue"], HOOK_QUEUE, r)
		hook_ids = {r["id"] for r in hook_recs}
		self.assertFalse(hook_ids & {b["id"] for b, _ in bodies}, "a hook record was hooked")


class LogHooks(LogHookBase):

	@harness.bound(90)
	def test_every_record_once(self):
		"""Five messages: ten records (Reception, Delivery), ten hook messages,
		each the record's JSON, none about a hook message."""
		hook_rx = self.start_hook_receiver()
		self.start()
		ids = self.send_all(5)
		self.wait_records("Delivery", 5, timeout=20)
		self.wait_hook_count(hook_rx, 10, timeout=30)
		# The hook messages' own Delivery records are written after the
		# receiver's 250: wait for all of them, then for nothing more.
		self.wait_hook_records("Delivery", 10)
		time.sleep(1.5)
		self.assertEqual(hook_rx.count(), 10)
		self.assert_every_record_once(hook_rx, ids)
		self.assertEqual(self.dest.count(), 5)
		self.wait_spool_empty()

	@harness.bound(120)
	def test_endpoint_down_then_up(self):
		"""The hook receiver refuses connections at first: ordinary mail is
		delivered at once meanwhile, the hook messages are retried
		(TransientFailure, logged locally, not hooked), and once the receiver
		listens every record arrives exactly once."""
		self.start()
		t0 = time.monotonic()
		ids = self.send_all(4)
		self.wait_records("Delivery", 4, timeout=20)
		ordinary_done = time.monotonic() - t0
		self.assertEqual(self.dest.count(), 4)
		# The hook's queue failed meanwhile (nothing listens on its address).
		self.wait_hook_records("TransientFailure", 8, timeout=30)
		self.assertLess(ordinary_done, 15, "ordinary delivery waited for the hook")
		hook_rx = self.start_hook_receiver()
		self.wait_hook_count(hook_rx, 8, timeout=40)
		self.wait_hook_records("Delivery", 8)
		time.sleep(1.5)
		self.assertEqual(hook_rx.count(), 8)
		self.assert_every_record_once(hook_rx, ids)
		self.wait_spool_empty()

	@harness.bound(90)
	def test_hook_without_local_logs(self):
		"""No configure_local_logs: no log directory, and the hook still gets
		each message's Reception and Delivery records."""
		hook_rx = self.start_hook_receiver()
		self.start(local_logs=False)
		ids = self.send_all(3)
		self.wait_for(lambda: self.dest.count() >= 3, 20, what="3 deliveries")
		self.wait_hook_count(hook_rx, 6, timeout=30)
		time.sleep(1.5)
		self.assertEqual(hook_rx.count(), 6)
		self.assertFalse(self.env.log_dir.exists())
		got = Counter((b["type"], b["id"]) for b, _ in self.hook_bodies(hook_rx))
		self.assertEqual(got, Counter([("Reception", i) for i in ids] +
					      [("Delivery", i) for i in ids]))
		for body, d in self.hook_bodies(hook_rx):
			self.assertEqual(d.rcpt, HOOK_RCPT)
			if body["type"] == "Delivery":
				self.assertIsNone(body["reception_protocol"], body)
		self.wait_spool_empty()

	@harness.bound(120)
	def test_restart_keeps_hook_messages(self):
		"""Hook messages waiting for a down endpoint are in the spool: after
		a restart they are delivered, once each, and still known as hook
		messages (their records are not hooked)."""
		d = self.start()
		ids = self.send_all(3)
		self.wait_records("Delivery", 3, timeout=20)
		self.wait_for(lambda: len({r["id"] for r in self.local_records()[1]
					   if r["type"] == "TransientFailure"}) >= 6,
			      30, what="TransientFailure records of all 6 hook messages")
		d.stop()
		hook_rx = self.start_hook_receiver()
		self.start()
		self.wait_hook_count(hook_rx, 6, timeout=40)
		self.wait_hook_records("Delivery", 6)
		time.sleep(1.5)
		self.assertEqual(hook_rx.count(), 6)
		self.assert_every_record_once(hook_rx, ids)
		self.wait_spool_empty()

	@harness.bound(120)
	def test_full_spool_drops_counted(self):
		"""The spool (a 16 MiB tmpfs) under its free-space floor: records the
		hook wants are dropped, counted and reported, and ordinary delivery
		goes on; with space back, records reach the hook again."""
		fs = self.env.spool
		fs.mkdir()
		p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(fs)],
				   capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
		if p.returncode != 0:
			self.skipTest(harness.MISSING_DEP + "mounting a tmpfs (root): %s"
				      % p.stderr.decode(errors="replace").strip())
		self.addCleanup(subprocess.run, ["umount", "-l", str(fs)], timeout=30)
		hook_rx = self.start_hook_receiver()
		# A small max_message_size: the floor is then 10% of the tmpfs.
		d = self.start(listener={"max_message_size": 65536})
		# The destination is down: the messages wait in the spool.
		ids = self.send_all(2)
		self.wait_records("TransientFailure", 2, timeout=20)
		self.wait_hook_count(hook_rx, 4, timeout=20)	# 2 Reception, 2 TransientFailure
		st = os.statvfs(fs)
		filler = fs / "filler"
		with open(filler, "wb") as f:	# leave 5% of the blocks free
			f.truncate(0)
			left = st.f_bavail * st.f_frsize - st.f_blocks * st.f_frsize // 20
			for _ in range(left // (1 << 20) + 1):
				f.write(b"\0" * min(1 << 20, left))
				left -= min(1 << 20, left)
		self.wait_for(lambda: "under the free-space floor" in d.stderr_text(), 10,
			      what="the spool reported under its floor")
		# The destination comes up: the deliveries happen, their records drop.
		self.dest = self.receiver(receivers.SmtpReceiver, DEST_ADDR)
		self.wait_for(lambda: self.dest.count() >= 2, 20, what="the 2 deliveries")
		self.wait_for(lambda: "(the spool is under its free-space floor)" in d.stderr_text(),
			      10, what="the drop report")
		self.assertRegex(d.stderr_text(), r"log hooks: [12] records? dropped \(the spool is "
				 r"under its free-space floor\)")
		time.sleep(1.5)
		types = Counter(b["type"] for b, _ in self.hook_bodies(hook_rx))
		self.assertEqual(types["Delivery"], 0, types)
		filler.unlink()
		# Each shard checks its spool once a second: wait for both (two shards).
		self.wait_for(lambda: d.stderr_text().count("space is back") >= 2, 10,
			      what="space back on both shards")
		mid, _ = self.send(["again@" + DEST], subject="space is back")
		self.wait_for(lambda: any(b["id"] == mid and b["type"] == "Delivery"
					  for b, _ in self.hook_bodies(hook_rx)),
			      30, what="the new message's Delivery record at the hook")
		self.assertEqual({b["id"] for b, _ in self.hook_bodies(hook_rx)} - {mid}, set(ids))
