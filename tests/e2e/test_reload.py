"""SIGHUP reload: the policy and the files it reads are loaded again on
every shard; a broken file is reported and the running policy kept; a
reload under load loses no message and resets no connection.

The policy's message hook reads a TOML file at load time (top-level code)
and stamps each message with the version it read, so what the receiver
gets says which policy accepted it."""

import re
import signal
import time

import dns
import harness
import receivers
from test_delivery import DeliveryTest

ADDR = "127.0.0.52"
MX = "mx.reload.test"
RCPT = "user@reload.test"

HOOK = """
local settings = kumo.toml_load(%s)
kumo.on('smtp_server_message_received', function(msg)
  msg:append_header('X-Policy-Version', tostring(settings.version))
  local subject = msg:get_first_named_header_value('Subject') or ''
  if subject == 'probe' then
    kumo.reject(550, '5.7.1 policy version ' .. tostring(settings.version))
  end
end)
"""

VERSION_RE = re.compile(rb"^X-Policy-Version: (\S+)\r?$", re.M)


class Reload(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone().mx("reload.test", 10, MX).a(MX, ADDR))
		self.r = self.receiver(receivers.SmtpReceiver, ADDR)
		self.settings = self.env.dir / "settings.toml"
		self.settings.write_text("version = 1\n")
		self.d = self.start_petrel(message_hook=HOOK % harness.lua_str(self.settings))

	def reloads_logged(self, what):
		return len(re.findall(what, self.d.stderr_text()))

	def hup(self, want_ok=True):
		"""SIGHUP; wait until every shard logged the reload (or shard 0 its
		failure)."""
		pattern = r"policy \S+ reloaded in" if want_ok else r"reload failed, keeping"
		n = self.reloads_logged(pattern)
		want = n + (2 if want_ok else 1)	# two shards; a failure stops at shard 0
		self.d.signal(signal.SIGHUP)
		self.wait_for(lambda: self.reloads_logged(pattern) >= want, 15,
			      what="%d '%s' lines" % (want, pattern))

	def probe_versions(self, n=8):
		"""The version named by the reject text over n connections (spread
		over both shards by SO_REUSEPORT)."""
		seen = set()
		for _ in range(n):
			c = self.env.connect()
			c.ehlo()
			r = c.transaction("p@client.test", [RCPT], harness.make_message(subject="probe"))
			m = re.search(r"policy version (\S+)", r.line)
			self.assertEqual(r.code, 550, r)
			seen.add(m.group(1))
			c.close()
		return seen

	def delivered_versions(self):
		return [VERSION_RE.search(d.content).group(1).decode() for d in self.r.deliveries()]

	@harness.bound(60)
	def test_sighup_loads_the_new_policy_on_every_shard(self):
		"""Version 1, then the file says 2 and SIGHUP: every shard answers
		with version 2 and delivered mail carries it."""
		self.assertEqual(self.probe_versions(), {"1"})
		self.settings.write_text("version = 2\n")
		self.hup()
		self.assertEqual(self.probe_versions(), {"2"})
		self.send([RCPT])
		self.wait_for(lambda: self.r.count() == 1, 20, what="one delivery")
		self.assertEqual(self.delivered_versions(), ["2"])
		self.assertIn("SIGHUP: reloading", self.d.stderr_text())

	@harness.bound(60)
	def test_broken_toml_keeps_the_running_policy(self):
		"""A TOML syntax error: the reload fails with file:line:column in the
		log, the running policy (version 1) stays on every shard and mail is
		still accepted and delivered; fixing the file and SIGHUP again loads
		it."""
		self.settings.write_text("version = 1\nbroken = \n")
		self.hup(want_ok=False)
		err = self.d.stderr_text()
		self.assertRegex(err, r"reload failed, keeping the running configuration: .*%s:2:\d+: "
				 % re.escape(str(self.settings)))
		self.assertEqual(self.reloads_logged(r"policy \S+ reloaded in"), 0)
		self.assertEqual(self.probe_versions(), {"1"})
		self.send([RCPT])
		self.wait_for(lambda: self.r.count() == 1, 20, what="one delivery")
		self.assertEqual(self.delivered_versions(), ["1"])
		self.settings.write_text("version = 3\n")
		self.hup()
		self.assertEqual(self.probe_versions(), {"3"})

	@harness.bound(120)
	def test_reload_under_load_loses_nothing(self):
		"""8 sessions x 100 messages while the policy is reloaded 6 times:
		every transaction is acknowledged (no connection error, no refusal),
		every message arrives exactly once, and both versions were used."""
		load = harness.Load(self.env.port, 8, 100, size=2048, rcpt=RCPT, unique=True).start()
		for v in range(2, 8):
			time.sleep(0.05)
			self.settings.write_text("version = %d\n" % v)
			self.hup()
		load.join(90)
		self.assertEqual(load.errors, [])
		self.assertEqual(load.refused, [])
		self.assertEqual(load.unknown, 0)
		self.assertEqual(len(load.mids), 800)
		want = set(load.mids.values())
		self.wait_for(lambda: want <= self.r.message_ids(), 60, interval=0.2,
			      what="all 800 Message-IDs at the receiver")
		got = [d.message_id for d in self.r.deliveries()]
		self.assertEqual(sorted(got), sorted(want), "lost or duplicated deliveries")
		versions = set(self.delivered_versions())
		harness.note("versions seen by the receiver: %s" % sorted(versions))
		self.assertGreater(len(versions), 2, versions)
		self.wait_spool_empty()
