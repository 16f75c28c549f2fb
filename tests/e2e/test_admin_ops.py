"""The rest of the admin API through the real petrelctl (and curl where the
JSON shape matters) against petreld with aiosmtpd receivers found by MX in
a dnsmasq zone.

Covered: rebind of messages deferred for a dead domain (its MX refuses)
to routing_domain other.test: an AdminRebind record each (250, "Rebound
from dead.test to dead.test!other.test: <reason>"), they arrive at
other.test's receiver with the new queue in their Delivery record, and a
rebind with a meta key that does not route is refused (400);
inspect-message (petrelctl table and --json, curl): envelope, meta,
recipients with their states (a deferred one with its attempts and next
due time), the body with --want-body, 404 JSON for an unknown id and 400
for a malformed one; suspend-ready-q holds one ready queue (source->site)
while another domain delivers, lists it, and resume-ready-q releases it;
bounce by exact queue name (--queue); set-log-filter turns DEBUG lines on
and off in petreld's stderr and refuses a bad filter naming the problem;
reload (bump-config-epoch) loads a changed policy, and a broken one is
refused with file:line while mail still flows; trace-smtp-server and
trace-smtp-client (a delivery to other.test's receiver: every command and
reply in order, the body as one data event; filters that exclude it see
nothing; a refused connection's close with its reason).
"""

import json
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import dns
import harness
import receivers
from test_admin import AdminBase, HELD_ADDR, OTHER_ADDR, ID_RE, petrelctl_path
from test_delivery import SENDER

DEAD_ADDR = "127.0.0.93"  # MX of dead.test: nothing listens there
TLS_ADDR = "127.0.0.94"  # MX of tls.test (TraceTest): STARTTLS offered


def ops_zone():
	return (dns.Zone()
		.mx("held.test", 10, "mx.held.test").a("mx.held.test", HELD_ADDR)
		.mx("other.test", 10, "mx.other.test").a("mx.other.test", OTHER_ADDR)
		.mx("dead.test", 10, "mx.dead.test").a("mx.dead.test", DEAD_ADDR)
		.mx("dead2.test", 10, "mx.dead.test"))


class AdminOpsTest(AdminBase):
	def zone(self):
		return ops_zone()

	def petrel_options(self):
		# dead.test: deferred for an hour after its first failure.
		return {"queue_by_domain": {"dead.test": {"retry_interval": "1h"},
					    "dead2.test": {"retry_interval": "1h"}}}

	def curl(self, path, *args):
		"""(HTTP status, parsed JSON body) of a request with curl."""
		curl = harness.require_tool("curl")
		p = subprocess.run([curl, "-sS", "-o", "-", "-w", "\n%{http_code}"] + list(args)
				   + ["http://127.0.0.1:%d%s" % (self.hport, path)],
				   capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
		body, _, status = p.stdout.decode().rpartition("\n")
		return int(status), json.loads(body)

	def deferred(self, rcpt):
		"""Wait for rcpt's first TransientFailure (the dead MX refused)."""
		self.wait_records("TransientFailure", 1, rcpt=rcpt, timeout=30)

	@harness.bound(120)
	def test_rebind_dead_domain_to_live_receiver(self):
		mid1, _ = self.send(["a@dead.test", "b@dead.test"], subject="one")
		mid2, _ = self.send(["c@dead.test"], subject="two")
		for r in ("a@dead.test", "b@dead.test", "c@dead.test"):
			self.deferred(r)
		self.wait_for(lambda: self.scheduled_count("dead.test") == 3, 10,
			      what="3 recipients deferred in dead.test")

		rc, out, err = self.ctl("rebind", "--domain", "dead.test", "--set", "colour=blue")
		self.assertEqual(rc, 1, out)
		self.assertIn("HTTP 400", err)
		self.assertIn('key "colour" does not route', err)

		out = self.ctl_ok("rebind", "--domain", "dead.test", "--set",
				  "routing_domain=other.test", "--reason", "dead MX")
		self.assertIn("rebind sent", out)
		self.wait_for(lambda: sorted(self.other.rcpts()) ==
			      ["a@dead.test", "b@dead.test", "c@dead.test"], 20,
			      what="the rebound recipients at other.test's receiver")
		recs = self.wait_records("AdminRebind", 3)
		self.assertEqual(sorted((r["id"], r["recipient"]) for r in recs),
				 sorted([(mid1, "a@dead.test"), (mid1, "b@dead.test"),
					 (mid2, "c@dead.test")]))
		for r in recs:
			self.assertEqual(r["response"]["code"], 250, r)
			self.assertIsNone(r["response"]["enhanced_code"], r)
			self.assertEqual(r["response"]["content"],
					 "Rebound from dead.test to dead.test!other.test: dead MX")
			self.assertEqual(r["queue"], "dead.test!other.test")
		deliveries = self.wait_records("Delivery", 3)
		self.assertEqual({r["queue"] for r in deliveries}, {"dead.test!other.test"})
		self.wait_spool_empty()
		self.assertEqual(self.held.count(), 0)

	@harness.bound(120)
	def test_rebind_by_meta_queue(self):
		"""data.queue names the queue, and its domain routes (KumoMTA's
		queue name components): dead2.test's messages go by other.test's MX."""
		mid, _ = self.send(["q@dead2.test"], subject="by queue")
		self.deferred("q@dead2.test")
		self.send(["keep@dead.test"], subject="not matched")
		self.deferred("keep@dead.test")
		self.ctl_ok("rebind", "--domain", "dead2.test", "--set", "queue=other.test",
			    "--reason", "by queue")
		self.wait_for(lambda: self.other.rcpts() == ["q@dead2.test"], 20,
			      what="q@dead2.test at other.test's receiver")
		(rec,) = self.wait_records("AdminRebind", 1)
		self.assertEqual((rec["id"], rec["queue"], rec["response"]["content"]),
				 (mid, "other.test", "Rebound from dead2.test to other.test: by queue"))
		(dlv,) = self.wait_records("Delivery", 1)
		self.assertEqual((dlv["recipient"], dlv["queue"]), ("q@dead2.test", "other.test"))
		# The other domain's message was not touched: still deferred in dead.test.
		self.wait_for(lambda: self.scheduled_count("dead.test") == 1, 10,
			      what="keep@dead.test still queued in dead.test")
		self.assertEqual(self.other.rcpts(), ["q@dead2.test"])

	@harness.bound(120)
	def test_rebind_is_not_persisted(self):
		"""As documented: the rebind changes the queued unit, not the spooled
		message, so after a restart the message is back in its own queue."""
		self.send(["p@dead.test"], subject="rebind then restart")
		self.deferred("p@dead.test")
		self.ctl_ok("rebind", "--domain", "dead.test", "--set", "queue=dead2.test",
			    "--reason", "still dead")
		self.wait_records("AdminRebind", 1)
		self.wait_for(lambda: self.scheduled_count("dead2.test") == 1, 10,
			      what="the unit in dead2.test")
		self.d.stop()
		self.d = self.env.start(self.policy, shards=2)
		self.wait_for(lambda: self.scheduled_count("dead.test") == 1, 10,
			      what="the unit back in dead.test after the restart")
		self.assertEqual(self.scheduled_count("dead2.test"), 0)

	@harness.bound(120)
	def test_inspect_message(self):
		self.suspend("held.test", reason="hold for inspection")
		mid, _ = self.send(["a@held.test", "b@held.test"], subject="inspect me")
		dmid, _ = self.send(["z@dead.test"], subject="deferred")
		self.deferred("z@dead.test")

		got = self.ctl_ok("inspect-message", mid, "--want-body", json_out=True)
		self.assertEqual(got["id"], mid)
		msg = got["message"]
		self.assertEqual(msg["sender"], SENDER)
		self.assertEqual(msg["recipient"], ["a@held.test", "b@held.test"])
		self.assertIsInstance(msg["meta"], dict)
		self.assertIn("Subject: inspect me\r\n", msg["data"])
		self.assertEqual([(r["recipient"], r["state"], r["num_attempts"], r["due"])
				  for r in msg["recipients"]],
				 [("a@held.test", "queued", 0, None), ("b@held.test", "queued", 0, None)])

		# The deferred one: its attempt and next due time (an hour later).
		status, got = self.curl("/api/admin/inspect-message/v1?id=%s" % dmid)
		self.assertEqual(status, 200, got)
		self.assertEqual(got["message"]["recipient"], "z@dead.test")
		self.assertIsNone(got["message"]["data"])
		(r,) = got["message"]["recipients"]
		self.assertEqual((r["state"], r["num_attempts"]), ("queued", 1), r)
		self.assertRegex(r["due"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

		table = self.ctl_ok("inspect-message", mid)
		self.assertRegex(table, r"(?m)^a@held\.test\s+queued\s+0\s+-$")
		self.assertNotIn("Subject: inspect me", table)

		# Several messages: the answer comes from each one's home shard.
		for i in range(6):
			m, _ = self.send(["n%d@held.test" % i], subject="n%d" % i)
			status, got = self.curl("/api/admin/inspect-message/v1?id=%s&want_body=true" % m)
			self.assertEqual((status, got["id"], got["message"]["recipient"]),
					 (200, m, "n%d@held.test" % i))

		status, got = self.curl("/api/admin/inspect-message/v1?id=%s" % ("0" * 32))
		self.assertEqual(status, 404, got)
		self.assertIn("no message", got["error"])
		status, got = self.curl("/api/admin/inspect-message/v1?id=nope")
		self.assertEqual(status, 400, got)
		self.assertIn("message id", got["error"])
		rc, out, err = self.ctl("inspect-message", "f" * 32)
		self.assertEqual(rc, 1)
		self.assertIn("HTTP 404", err)

	@harness.bound(120)
	def test_suspend_ready_queue(self):
		self.send(["first@other.test"], subject="learn the path")
		self.wait_for(lambda: self.other.count() == 1, 15, what="first delivery")
		(rec,) = self.wait_records("Delivery", 1)
		path = "%s->%s" % (rec["egress_source"], rec["site"])  # unspecified->mx.other.test

		sid = self.ctl_ok("suspend-ready-q", "--name", path, "--duration", "10m",
				  "--reason", "talking to their postmaster").strip()
		self.assertRegex(sid, ID_RE)
		listed = self.ctl_ok("suspend-ready-q-list", json_out=True)
		self.assertEqual([(s["id"], s["name"], s["reason"]) for s in listed],
				 [(sid, path, "talking to their postmaster")])
		self.assertIn(path, self.ctl_ok("suspend-ready-q-list"))

		self.send(["second@other.test"], subject="held at the ready queue")
		self.send(["x@held.test"], subject="unaffected")
		self.wait_for(lambda: self.held.count() == 1, 15, what="held.test delivery")
		def ready_count():
			summary = self.ctl_ok("queue-summary", json_out=True)
			return sum(r["count"] for r in summary["ready"] if r["path"] == path)
		self.wait_for(lambda: ready_count() == 1, 10, what="the held message in %s" % path)
		time.sleep(2)
		self.assertEqual(self.other.rcpts(), ["first@other.test"])

		out = self.ctl_ok("resume-ready-q", sid)
		self.assertIn("resumed " + sid, out)
		self.wait_for(lambda: self.other.count() == 2, 10, what="second after resume")
		self.assertEqual(self.ctl_ok("suspend-ready-q-list", json_out=True), [])
		rc, out, err = self.ctl("resume-ready-q", sid)
		self.assertEqual(rc, 1)
		self.assertIn("HTTP 404", err)
		rc, out, err = self.ctl("suspend-ready-q")
		self.assertEqual(rc, 2)
		self.assertIn("--name is required", err)

	@harness.bound(90)
	def test_bounce_by_queue_name(self):
		self.suspend("held.test", reason="hold")
		mid, _ = self.send(["q@held.test"], subject="q")
		self.wait_for(lambda: self.scheduled_count("held.test") == 1, 10,
			      what="held.test queued")
		got = self.ctl_ok("bounce", "--queue", "nothing.test", "--reason", "no match",
				  json_out=True)
		# KumoMTA's BounceV1Response (bounced and total_bounced are deprecated there too).
		self.assertEqual(sorted(got), ["bounced", "id", "total_bounced"])
		self.assertRegex(got["id"], ID_RE)
		self.ctl_ok("bounce", "--queue", "held.test", "--reason", "by name")
		(rec,) = self.wait_records("AdminBounce", 1)
		self.assertEqual((rec["id"], rec["recipient"], rec["response"]["content"]),
				 (mid, "q@held.test", "Administrator bounced: by name"))
		self.wait_spool_empty()

	@harness.bound(90)
	def test_set_log_filter(self):
		def debug_lines():
			return len(re.findall(r" DEBUG: ", self.d.stderr_text()))

		self.send(["a@other.test"], subject="quiet")
		self.wait_for(lambda: self.other.count() == 1, 15, what="delivery")
		self.assertEqual(debug_lines(), 0)
		self.assertIn("diagnostic log filter set", self.ctl_ok("set-log-filter",
								       "petreld=debug"))
		self.send(["b@other.test"], subject="loud")
		self.wait_for(lambda: self.other.count() == 2, 15, what="delivery")
		self.wait_for(lambda: debug_lines() > 0, 5, what="DEBUG lines")
		self.ctl_ok("set-log-filter", "kumod=warn")
		time.sleep(0.5)
		n = debug_lines()
		self.send(["c@other.test"], subject="quiet again")
		self.wait_for(lambda: self.other.count() == 3, 15, what="delivery")
		time.sleep(0.5)
		self.assertEqual(debug_lines(), n)

		rc, out, err = self.ctl("set-log-filter", "petreld=loud")
		self.assertEqual(rc, 1)
		self.assertIn("HTTP 400", err)
		self.assertIn('unknown level "loud"', err)
		status, got = self.curl("/api/admin/set_diagnostic_log_filter/v1", "-X", "POST",
					"-H", "Content-Type: application/json",
					"--data", '{"filter": "hyper=debug"}')
		self.assertEqual(status, 400)
		self.assertIn('unknown target "hyper"', got["error"])

	@harness.bound(120)
	def test_reload(self):
		text = self.policy.read_text()
		self.policy.write_text(text + "\n-- reloaded over HTTP\n")
		out = self.ctl_ok("reload")
		self.assertIn("configuration reloaded", out)
		self.wait_for(lambda: len(re.findall(r"policy \S+ reloaded in",
						     self.d.stderr_text())) >= 2, 10,
			      what="both shards to reload")

		self.policy.write_text(text + "\nthis is not lua\n")
		rc, out, err = self.ctl("reload")
		self.assertEqual(rc, 1, out)
		self.assertIn("HTTP 500", err)
		self.assertRegex(err, r"reload failed, the running configuration stays: .*policy\.lua:\d+:")
		status, got = self.curl("/api/admin/bump-config-epoch", "-X", "POST")
		self.assertEqual(status, 500)
		self.assertRegex(got["error"], r"policy\.lua:\d+:")
		# The running policy still delivers.
		self.send(["after@other.test"], subject="after a failed reload")
		self.wait_for(lambda: self.other.count() == 1, 15, what="delivery after")
		self.policy.write_text(text)
		self.assertIn("configuration reloaded", self.ctl_ok("reload"))

	@harness.bound(30)
	def test_help_lists_new_commands(self):
		rc, out, err = self.ctl("--help")
		self.assertEqual(rc, 0)
		for cmd in ("suspend-ready-q", "rebind", "inspect-message", "set-log-filter", "reload"):
			self.assertIn(cmd, out)
			rc, out2, err2 = self.ctl(cmd, "--help")
			self.assertEqual(rc, 0, err2)
			self.assertIn("usage: petrelctl", out2)


class TraceReader:
	"""A trace process (petrelctl or curl) started in the background, its
	stdout lines collected by a thread; stopped by pid."""

	def __init__(self, test, cmd):
		self.lines = []
		# SIGINT back to its default: a runner started in the background by a
		# non-interactive shell ignores it, and children inherit that.
		self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
					     stdin=subprocess.DEVNULL,
					     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
		test.addCleanup(self.stop)
		self.thread = threading.Thread(target=self._read, daemon=True)
		self.thread.start()

	def _read(self):
		for raw in self.proc.stdout:
			self.lines.append(raw.decode(errors="replace").rstrip("\n"))
			if len(self.lines) > 10000:
				break

	def stop(self):
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGINT)
			try:
				self.proc.wait(timeout=5)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait(timeout=5)
		self.thread.join(timeout=5)
		return self.proc.stderr.read().decode()


class TraceTest(AdminBase):
	def zone(self):
		# dead.test: its MX refuses connections; tls.test's offers STARTTLS.
		return ops_zone().mx("tls.test", 10, "mx.tls.test").a("mx.tls.test", TLS_ADDR)

	def petrel_options(self):
		# STARTTLS where offered (only tls.test's receiver), its certificate self-signed.
		return {"egress": {"enable_tls": "OpportunisticInsecure"}}

	def petrelctl(self, *args):
		return [str(petrelctl_path()), "--url", "http://127.0.0.1:%d" % self.hport] + list(args)

	def smtp_session(self, rcpt):
		with smtplib.SMTP("127.0.0.1", self.env.port, timeout=20) as c:
			c.ehlo("tracer.test")
			c.sendmail(SENDER, [rcpt], harness.make_message(subject="traced", to=rcpt,
									 sender=SENDER))

	@harness.bound(90)
	def test_trace_shows_a_session(self):
		table = TraceReader(self, self.petrelctl("trace-smtp-server", "--source", "127.0.0.0/8"))
		raw = TraceReader(self, self.petrelctl("--json", "trace-smtp-server"))
		elsewhere = TraceReader(self, self.petrelctl("--json", "trace-smtp-server", "--source",
							     "10.0.0.0/8"))
		for t in (table, raw, elsewhere):
			self.wait_for(lambda: len(t.lines) >= 1, 10, what="the trace to start")
		self.assertEqual(table.lines[0], "tracing SMTP sessions (source 127.0.0.0/8); Ctrl-C ends")
		self.assertEqual(json.loads(raw.lines[0])["type"], "subscribed")
		time.sleep(0.2)  # the subscription reaches the other shard

		self.smtp_session("t@other.test")
		self.wait_for(lambda: any(l.endswith("close") for l in table.lines), 15,
			      what="the session's close in the trace")
		self.wait_for(lambda: any('"close"' in l for l in raw.lines), 15,
			      what="the session's close in the JSON trace")

		events = [json.loads(l) for l in raw.lines[1:]]
		self.assertEqual({e["session"] for e in events}, {events[0]["session"]}, events)
		self.assertEqual({e["peer"] for e in events}, {"127.0.0.1"})
		got = [(e["type"], e.get("line", e.get("bytes"))) for e in events]
		self.assertEqual(got[0][0], "connect")
		self.assertEqual(got[-1], ("close", None))
		# smtplib's own spelling, as it went over the wire.
		commands = [line for kind, line in got if kind == "command"]
		self.assertEqual(len(commands), 5, commands)
		self.assertEqual(commands[0], "ehlo tracer.test")
		self.assertRegex(commands[1], r"^mail FROM:<%s> size=\d+$" % re.escape(SENDER))
		self.assertEqual(commands[2:], ["rcpt TO:<t@other.test>", "data", "QUIT"])
		replies = [line for kind, line in got if kind == "reply"]
		self.assertTrue(replies[0].startswith("220 "), replies)
		self.assertTrue(any(r.startswith("250-") for r in replies), replies)
		self.assertTrue(any(r.startswith("354 ") for r in replies), replies)
		self.assertTrue(any(re.match(r"250 2\.0\.0 OK id=[0-9a-f]{32}$", r) for r in replies),
				replies)
		self.assertTrue(any(kind == "data" and n > 0 for kind, n in got), got)
		# In order: 354 after DATA, the message bytes after 354, then 250 with the id.
		i354 = got.index(("reply", "354 End data with <CR><LF>.<CR><LF>"))
		self.assertEqual(got[i354 - 1], ("command", "data"))
		self.assertEqual(got[i354 + 1][0], "data")
		self.assertRegex(got[i354 + 2][1], r"^250 2\.0\.0 OK id=")
		self.assertTrue(any(re.search(r" command\s+ehlo tracer\.test$", l) for l in table.lines),
				table.lines)
		self.assertTrue(any(re.search(r" reply\s+354 ", l) for l in table.lines), table.lines)
		# The 10.0.0.0/8 trace saw its subscription only.
		self.assertEqual(len(elsewhere.lines), 1, elsewhere.lines)
		self.wait_for(lambda: self.other.count() == 1, 15, what="the traced message delivered")
		for t in (table, raw, elsewhere):
			t.stop()
			self.assertEqual(t.proc.returncode, -signal.SIGINT)

	@harness.bound(90)
	def test_trace_client_shows_a_delivery(self):
		"""trace-smtp-client: the outbound session to other.test's receiver,
		commands and its replies in order; filters that exclude it see
		nothing."""
		raw = TraceReader(self, self.petrelctl("--json", "trace-smtp-client"))
		table = TraceReader(self, self.petrelctl("trace-smtp-client", "--domain", "other.test",
							 "--mx-addr", OTHER_ADDR + "/32"))
		excluded = [TraceReader(self, self.petrelctl("--json", "trace-smtp-client", *f))
			    for f in (("--domain", "held.test"), ("--mx-addr", "10.0.0.0/8"),
				      ("--ready-queue", "nosuch->queue"))]
		for t in [raw, table] + excluded:
			self.wait_for(lambda: len(t.lines) >= 1, 10, what="the trace to start")
		self.assertEqual(table.lines[0], "tracing outbound SMTP sessions; Ctrl-C ends")
		first = json.loads(excluded[2].lines[0])
		self.assertEqual((first["type"], first["ready_queue"], first["domain"]),
				 ("subscribed", "nosuch->queue", None))
		time.sleep(0.2)  # the subscriptions reach the other shard

		self.send(["t@other.test"], subject="traced outbound")
		self.wait_for(lambda: self.other.count() == 1, 15, what="the traced message delivered")
		self.wait_for(lambda: any(re.search(r'"line":"250 2\.0\.0 OK received"', l)
					  for l in raw.lines), 10, what="the final reply in the trace")

		events = [json.loads(l) for l in raw.lines[1:]]
		self.assertEqual({e["session"] for e in events}, {events[0]["session"]}, events)
		self.assertEqual({e["peer"] for e in events}, {OTHER_ADDR})
		connect = events[0]
		self.assertEqual((connect["type"], connect["mx_host"], connect["domain"]),
				 ("connect", "mx.other.test", "other.test"), connect)
		self.assertRegex(connect["line"], r"^connecting to mx\.other\.test \[%s\]:\d+$"
				 % re.escape(OTHER_ADDR))
		self.assertEqual((connect["ready_queue"], connect["egress_source"]),
				 ("unspecified->mx.other.test", "unspecified"))
		got = [(e["type"], e.get("line", e.get("bytes"))) for e in events[1:]]
		self.assertRegex(got[0][1], r"^220 ", got)  # the banner
		commands = [line for kind, line in got if kind == "command"]
		self.assertRegex(commands[0], r"^EHLO \S+$")
		self.assertRegex(commands[1], r"^MAIL FROM:<%s>" % re.escape(SENDER))
		self.assertEqual(commands[2:], ["RCPT TO:<t@other.test>", "DATA", "."], commands)
		# Each command, then the receiver's answer, in order (no PIPELINING here).
		order = [(kind, line.split(" ")[0] if kind == "command" else line[:4])
			 for kind, line in got if kind in ("command", "reply")
			 and not (kind == "reply" and line.startswith("250-"))]
		self.assertEqual(order, [("reply", "220 "), ("command", "EHLO"), ("reply", "250 "),
					 ("command", "MAIL"), ("reply", "250 "), ("command", "RCPT"),
					 ("reply", "250 "), ("command", "DATA"), ("reply", "354 "),
					 ("command", "."), ("reply", "250 ")], got)
		i354 = [i for i, (kind, line) in enumerate(got) if kind == "reply" and line.startswith("354 ")]
		self.assertEqual(got[i354[0] + 1][0], "data")
		self.assertGreater(got[i354[0] + 1][1], 100)
		self.assertEqual(got[i354[0] + 2], ("command", "."))
		self.assertEqual(got[-1], ("reply", "250 2.0.0 OK received"))
		self.assertTrue(any(re.search(r" command\s+RCPT TO:<t@other\.test>$", l)
				    for l in table.lines), table.lines)
		for t in excluded:
			self.assertEqual(len(t.lines), 1, t.lines)  # the subscription only
		for t in [raw, table] + excluded:
			t.stop()
			self.assertEqual(t.proc.returncode, -signal.SIGINT)
		rc, out, err = self.ctl("trace-smtp-client", "--source", "x")
		self.assertEqual(rc, 2, err)
		self.assertIn("unknown option --source", err)
		rc, out, err = self.ctl("trace-smtp-client", "--mx-addr", "bogus")
		self.assertEqual(rc, 1)
		self.assertIn('"mx_addr": expected an address or CIDR', err)
		# A misspelt filter is refused, not ignored (that would trace everything).
		with self.assertRaises(urllib.error.HTTPError) as cm:
			urllib.request.urlopen("http://127.0.0.1:%d/api/admin/trace-smtp-client/v1"
					       "?domain=other.test&mxaddr=1.2.3.4" % self.hport, timeout=10)
		self.assertEqual(cm.exception.code, 400)
		self.assertIn('unknown filter \\"mxaddr\\"', cm.exception.read().decode())

	@harness.bound(60)
	def test_trace_client_shows_a_refused_connection(self):
		"""A connection that fails: the attempt, then its close with the reason."""
		t = TraceReader(self, self.petrelctl("--json", "trace-smtp-client", "--domain",
						     "DEAD.test"))
		self.wait_for(lambda: len(t.lines) >= 1, 10, what="the trace to start")
		time.sleep(0.2)  # the subscription reaches the other shard
		self.send(["x@dead.test"], subject="to a dead MX")
		self.wait_for(lambda: any('"close"' in l for l in t.lines), 15,
			      what="the failed connection's close in the trace")
		events = [json.loads(l) for l in t.lines[1:]]
		self.assertEqual([e["type"] for e in events[:2]], ["connect", "close"], events)
		self.assertEqual((events[0]["mx_host"], events[0]["peer"]), ("mx.dead.test", DEAD_ADDR))
		self.assertRegex(events[1]["line"], r"^connection to mx\.dead\.test \[%s\]:\d+ "
				 r"failed: Connection refused$" % re.escape(DEAD_ADDR))
		self.assertEqual({e["domain"] for e in events if e["type"] == "connect"}, {"dead.test"})

	@harness.bound(60)
	def test_trace_client_shows_starttls(self):
		"""STARTTLS outbound: the 220, the handshake's outcome, then the
		session again (EHLO and the transaction, decrypted)."""
		cert = receivers.make_cert(self.env.dir, "mx.tls.test")
		r = self.receiver(receivers.SmtpReceiver, TLS_ADDR, tls=cert)
		t = TraceReader(self, self.petrelctl("--json", "trace-smtp-client", "--mx-host",
						     "mx.tls.test"))
		self.wait_for(lambda: len(t.lines) >= 1, 10, what="the trace to start")
		time.sleep(0.2)  # the subscription reaches the other shard
		self.send(["u@tls.test"], subject="traced over TLS")
		self.wait_for(lambda: r.count() == 1, 15, what="the message delivered over TLS")
		self.wait_for(lambda: any('"250 2.0.0 OK received"' in l for l in t.lines), 10,
			      what="the final reply in the trace")
		got = [(e["type"], e.get("line", e.get("bytes")))
		       for e in (json.loads(l) for l in t.lines[2:])]
		commands = [line for kind, line in got if kind == "command"]
		self.assertEqual([c.split(" ")[0] for c in commands],
				 ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "."], got)
		i = got.index(("command", "STARTTLS"))
		self.assertRegex(got[i + 1][1], r"^220 ", got)
		self.assertEqual(got[i + 2][0], "tls", got)
		self.assertRegex(got[i + 2][1], r"^TLSv1\.[23] \S+$")
		self.assertEqual(got[i + 3], ("command", commands[0]), got)
		self.assertEqual([d.tls for d in r.deliveries()], [True])

	@harness.bound(60)
	def test_trace_errors_and_drain(self):
		rc, out, err = self.ctl("trace-smtp-server", "--source", "bogus")
		self.assertEqual(rc, 1)
		self.assertIn("HTTP 400", err)
		self.assertIn('"source": expected an address or CIDR', err)
		# petreld stopping ends the stream: the last chunk, petrelctl exits 0.
		t = TraceReader(self, self.petrelctl("trace-smtp-server"))
		self.wait_for(lambda: len(t.lines) >= 1, 10, what="the trace to start")
		self.d.stop()
		self.assertEqual(t.proc.wait(timeout=10), 0)

	@harness.bound(120)
	def test_slow_reader_drops_and_is_told(self):
		"""A subscriber that reads nothing: petreld keeps serving SMTP at
		full speed, drops the events it cannot buffer, and says how many
		before the next event it writes."""
		sub = socket.socket()
		sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
		sub.settimeout(20)
		self.addCleanup(sub.close)
		sub.connect(("127.0.0.1", self.hport))
		sub.sendall(b"GET /api/admin/trace-smtp-server/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
		first = sub.recv(4096)
		self.assertIn(b"Transfer-Encoding: chunked", first)
		self.assertIn(b'"type":"subscribed"', first)
		time.sleep(0.2)

		# About 10 MB of events (a 512-byte command line and its reply, 16000 times).
		noop = b"NOOP " + b"x" * 505 + b"\r\n"
		started = time.monotonic()
		c = self.env.connect()
		c.ehlo()
		for _ in range(16):
			c.send(noop * 1000)
			for _ in range(1000):
				self.assertEqual(c.read_reply().code, 250)
		c.cmd("QUIT", harness.REPLY_QUIT)
		c.close()
		self.assertLess(time.monotonic() - started, 60)

		# Drain what was buffered, then one more session: its first event
		# comes after the note of what was dropped.
		data = b""
		sub.settimeout(1)
		try:
			while len(data) < 64 << 20:
				chunk = sub.recv(1 << 16)
				if not chunk:
					break
				data += chunk
		except socket.timeout:
			pass
		self.send(["late@other.test"], subject="after the flood")
		sub.settimeout(10)
		deadline = time.monotonic() + 10
		while b'"type":"dropped"' not in data and time.monotonic() < deadline:
			data += sub.recv(1 << 16)
		notes = re.findall(rb'\{"type":"dropped","count":(\d+)\}\n\r\n[0-9a-f]+\r\n(\{[^\n]*\})',
				   data)
		self.assertTrue(notes, data[-2000:])
		self.assertGreater(sum(int(n) for n, _ in notes), 1000)
		for _, event in notes:  # each note is followed by the event that got through
			self.assertIn(json.loads(event)["type"], ("connect", "command", "reply"))
		self.wait_for(lambda: self.other.count() == 1, 15, what="delivery after the flood")
