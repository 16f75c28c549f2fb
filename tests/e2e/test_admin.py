"""The admin API through the real petrelctl binary against petreld with
aiosmtpd receivers found by MX in a dnsmasq zone.

Covered: `petrelctl suspend` holds a domain (its receiver sees nothing for
seconds while another domain delivers; the messages stay queued and
queue-summary lists their queue with its count), `suspend-list` shows the
suspension, `resume --domain` releases it and the messages arrive;
`petrelctl bounce --domain` gives one AdminBounce record (551 5.6.0 with
the reason) per queued recipient, none is delivered and the spool
empties (done at home, never retried); a bounce with --duration also
bounces a message received after it; errors: petreld unreachable (the
URL in the message), a bad duration and an unknown id (petreld's JSON
error), bad usage (exit 2), and the admin endpoints refuse a host that is
not trusted (403, curl from 127.0.0.2).
"""

import json
import re
import subprocess
import time

import dns
import harness
import receivers
from test_delivery import DeliveryTest

HELD_ADDR, OTHER_ADDR = "127.0.0.91", "127.0.0.92"
ID_RE = re.compile(r"^[0-9a-f]{32}$")


def admin_zone():
	return (dns.Zone()
		.mx("held.test", 10, "mx.held.test").a("mx.held.test", HELD_ADDR)
		.mx("other.test", 10, "mx.other.test").a("mx.other.test", OTHER_ADDR))


def petrelctl_path():
	path = harness.BUILD / "petrelctl"
	if not path.exists():
		raise AssertionError("%s does not exist (build it with make all)" % path)
	return path


class AdminBase(DeliveryTest):
	"""petreld with an HTTP listener and receivers for held.test and
	other.test; petrelctl and queue-summary helpers."""

	def zone(self):
		return admin_zone()

	def petrel_options(self):
		"""More start_petrel arguments (a subclass's)."""
		return {}

	def setUp(self):
		super().setUp()
		self.start_dns(self.zone())
		self.hport = harness.free_port()
		self.held = self.receiver(receivers.SmtpReceiver, HELD_ADDR)
		self.other = self.receiver(receivers.SmtpReceiver, OTHER_ADDR)
		self.d = self.start_petrel(http_listener={"listen": "127.0.0.1:%d" % self.hport},
					   **self.petrel_options())

	def ctl(self, *args, url=None, json_out=False):
		"""petrelctl ARGS: (exit status, stdout, stderr) as text."""
		cmd = [str(petrelctl_path()), "--url", url or "http://127.0.0.1:%d" % self.hport]
		if json_out:
			cmd.append("--json")
		p = subprocess.run(cmd + list(args), capture_output=True, timeout=30,
				   stdin=subprocess.DEVNULL)
		return p.returncode, p.stdout.decode(), p.stderr.decode()

	def ctl_ok(self, *args, json_out=False):
		rc, out, err = self.ctl(*args, json_out=json_out)
		self.assertEqual(rc, 0, "petrelctl %s: %s" % (" ".join(args), err))
		return json.loads(out) if json_out else out

	def suspend(self, domain, **kw):
		args = ["suspend", "--domain", domain]
		for k, v in kw.items():
			args += ["--" + k, v]
		out = self.ctl_ok(*args).strip()
		self.assertRegex(out, ID_RE)
		return out

	def scheduled_count(self, queue):
		summary = self.ctl_ok("queue-summary", json_out=True)
		for row in summary["scheduled"]:
			if row["queue"] == queue:
				return row["count"]
		return 0


class AdminTest(AdminBase):
	@harness.bound(90)
	def test_suspend_then_resume(self):
		sid = self.suspend("held.test", duration="10m", reason="maintenance window")
		listed = self.ctl_ok("suspend-list", json_out=True)
		self.assertEqual([(s["id"], s["domain"], s["reason"]) for s in listed],
				 [(sid, "held.test", "maintenance window")])
		self.assertTrue(500 < listed[0]["duration"] <= 600, listed)
		table = self.ctl_ok("suspend-list")
		self.assertIn(sid, table)
		self.assertIn("held.test", table)

		self.send(["a@held.test", "b@held.test"], subject="held")
		self.send(["c@other.test"], subject="free")
		self.wait_for(lambda: self.other.count() == 1, 15, what="other.test delivery")
		# Held: still nothing after a few seconds, and the queue shows both.
		self.wait_for(lambda: self.scheduled_count("held.test") == 2, 10,
			      what="queue-summary to show held.test with 2")
		time.sleep(3)
		self.assertEqual(self.held.rcpts(), [])
		self.assertEqual(self.records("Delivery", rcpt="a@held.test"), [])
		table = self.ctl_ok("queue-summary")
		self.assertRegex(table, r"(?m)^held\.test\s+2$")

		out = self.ctl_ok("resume", "--domain", "held.test")
		self.assertIn("resumed " + sid, out)
		self.assertEqual(self.ctl_ok("suspend-list", json_out=True), [])
		self.wait_for(lambda: sorted(self.held.rcpts()) == ["a@held.test", "b@held.test"], 10,
			      what="the held recipients after resume")
		self.wait_spool_empty()

	@harness.bound(90)
	def test_resume_by_id_and_campaign_scope(self):
		"""A suspension naming another campaign does not hold plain mail; resume ID."""
		sid = self.suspend("held.test", campaign="spring", reason="r")
		self.send(["x@held.test"], subject="not spring")
		self.wait_for(lambda: self.held.count() == 1, 15, what="unscoped delivery")
		sid2 = self.suspend("held.test")
		self.send(["y@held.test"], subject="held")
		time.sleep(3)
		self.assertEqual(self.held.rcpts(), ["x@held.test"])
		self.assertIn("resumed", self.ctl_ok("resume", sid2))
		self.wait_for(lambda: self.held.count() == 2, 10, what="y after resume")
		listed = self.ctl_ok("suspend-list", json_out=True)
		self.assertEqual([s["id"] for s in listed], [sid])

	@harness.bound(90)
	def test_bounce_queued(self):
		self.suspend("held.test", reason="hold for the bounce")
		mid1, _ = self.send(["a@held.test", "b@held.test"], subject="one")
		mid2, _ = self.send(["c@held.test"], subject="two")
		self.wait_for(lambda: self.scheduled_count("held.test") == 3, 10,
			      what="3 recipients queued for held.test")
		bid = self.ctl_ok("bounce", "--domain", "held.test", "--reason", "list cleanup").strip()
		self.assertRegex(bid, ID_RE)
		recs = self.wait_records("AdminBounce", 3)
		self.assertEqual(sorted((r["id"], r["recipient"]) for r in recs),
				 sorted([(mid1, "a@held.test"), (mid1, "b@held.test"),
					 (mid2, "c@held.test")]))
		for r in recs:
			self.assertEqual(r["response"]["code"], 551, r)
			self.assertEqual(r["response"]["enhanced_code"],
					 {"class": 5, "subject": 6, "detail": 0}, r)
			self.assertEqual(r["response"]["content"], "Administrator bounced: list cleanup")
			self.assertEqual(r["queue"], "held.test")
		# Done at home: the spool lets go of both messages; resuming delivers nothing.
		self.wait_spool_empty()
		self.ctl_ok("resume", "--domain", "held.test")
		time.sleep(2)
		self.assertEqual(self.held.rcpts(), [])
		self.assertEqual(self.records("Delivery"), [])
		self.assertEqual(len(self.records("AdminBounce")), 3)

	@harness.bound(90)
	def test_bounce_with_duration_catches_new_mail(self):
		self.ctl_ok("bounce", "--domain", "held.test", "--duration", "5m")
		mid, _ = self.send(["late@held.test"], subject="late")
		self.send(["ok@other.test"], subject="unaffected")
		recs = self.wait_records("AdminBounce", 1)
		self.assertEqual((recs[0]["id"], recs[0]["recipient"]), (mid, "late@held.test"))
		self.assertEqual(recs[0]["response"]["content"], "Administrator bounced: petrelctl")
		self.wait_for(lambda: self.other.count() == 1, 15, what="other.test delivery")
		self.wait_spool_empty()
		self.assertEqual(self.held.count(), 0)

	@harness.bound(60)
	def test_errors(self):
		dead = "http://127.0.0.1:%d" % harness.free_port()
		rc, out, err = self.ctl("queue-summary", url=dead)
		self.assertEqual(rc, 1)
		self.assertIn("cannot connect to petreld at %s" % dead, err)

		rc, out, err = self.ctl("suspend", "--domain", "held.test", "--duration", "soon")
		self.assertEqual(rc, 1, err)
		self.assertIn("HTTP 400", err)
		self.assertIn("duration", err)

		rc, out, err = self.ctl("resume", "0" * 32)
		self.assertEqual(rc, 1, err)
		self.assertIn("HTTP 404: no suspension with id", err)

		rc, out, err = self.ctl("suspend")
		self.assertEqual(rc, 2)
		self.assertIn("--domain is required", err)
		rc, out, err = self.ctl("frobnicate")
		self.assertEqual(rc, 2)
		self.assertIn("unknown command", err)
		rc, out, err = self.ctl("bounce", "--help")
		self.assertEqual(rc, 0)
		self.assertIn("AdminBounce", out)

		curl = harness.require_tool("curl")
		p = subprocess.run([curl, "-sS", "--interface", "127.0.0.2", "-o", "/dev/null", "-w",
				    "%{http_code}", "http://127.0.0.1:%d/api/admin/suspend/v1" % self.hport],
				   capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
		self.assertEqual(p.stdout.decode(), "403", p.stderr)
		# Nothing was suspended by all this.
		self.assertEqual(self.ctl_ok("suspend-list", json_out=True), [])
