"""shaping.toml through policy-extras.shaping, as a receiver sees it: a
domain block's connection_limit = 1 holds for that domain's site while
another domain delivers in parallel; a later file and a per-source block
override earlier values; an automation rule on "451 .*rate limited"
suspends the path (no further attempt while the retry schedule would have
made some) and the log says so; a bad option fails --validate.

Domain blocks use MX rollup (the default): the helper resolves them with
kumo.dns.lookup_mx against the test's dnsmasq at the first
get_egress_path_config."""

import time

import dns
import harness
import receivers
from test_delivery import DeliveryTest

SLOW, FAST, RL = "127.0.0.61", "127.0.0.62", "127.0.0.63"

SHAPING = """["default"]
connection_limit = 10
enable_tls = "Disabled"
smtp_port = %(port)d

["slow.test"]
connection_limit = 1

["fast.test"]
connection_limit = 6

["rl.test"]
max_deliveries_per_connection = 1

[["rl.test".automation]]
regex = "451 .*rate limited"
action = "Suspend"
duration = "1h"
"""

# A second file: merged over the first, key by key.
SHAPING_2 = """["fast.test"]
connection_limit = 5

["fast.test".sources."unspecified"]
connection_limit = 3
"""

POLICY = """local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'

kumo.on('init', function()
  kumo.define_spool{name='data', path=%(spool)s}
  kumo.configure_local_logs{log_dir=%(logs)s}
  kumo.start_esmtp_listener{listen=%(listen)s, relay_hosts={'127.0.0.1'}, hostname='petrel.test'}
  kumo.dns.configure_resolver{name_servers={%(ns)s}}
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config{retry_interval='1s', max_retry_interval='1s', max_age='1h'}
end)

kumo.on('get_egress_path_config', shaping:setup { %(files)s })
"""


class ShapingToml(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone()
			       .mx("slow.test", 10, "mx.slow.test").a("mx.slow.test", SLOW)
			       .mx("fast.test", 10, "mx.fast.test").a("mx.fast.test", FAST)
			       .mx("rl.test", 10, "mx.rl.test").a("mx.rl.test", RL))
		self.files = [self.env.dir / "shaping.toml", self.env.dir / "shaping-local.toml"]
		self.files[0].write_text(SHAPING % {"port": self.rport})
		self.files[1].write_text(SHAPING_2)

	def shaping_policy(self):
		path = self.env.dir / "policy.lua"
		path.write_text(POLICY % {
			"spool": harness.lua_str(self.env.spool), "logs": harness.lua_str(self.env.log_dir),
			"listen": harness.lua_str("127.0.0.1:%d" % self.env.port),
			"ns": harness.lua_str("127.0.0.1:%d" % self.dnsmasq.port),
			"files": ", ".join(harness.lua_str(f) for f in self.files)})
		return path

	def inject(self, rcpt, n):
		load = harness.Load(self.env.port, 4, n // 4, rcpt=rcpt, unique=True).start()
		return load

	@harness.bound(90)
	def test_connection_limit_per_site_and_overrides(self):
		"""24 messages each to slow.test (connection_limit 1) and fast.test
		(6, then 5 in the second file, then 3 for the "unspecified" source),
		receivers taking 100 ms a message: slow.test's receiver never sees
		two connections at once, fast.test's sees exactly 3, and fast.test's
		mail is all in while slow.test's is still arriving."""
		rs = self.receiver(receivers.SmtpReceiver, SLOW, delay=0.1)
		rf = self.receiver(receivers.SmtpReceiver, FAST, delay=0.1)
		self.start_petrel(policy=self.shaping_policy())
		ls, lf = self.inject("a@slow.test", 24), self.inject("b@fast.test", 24)
		ls.join(60)
		lf.join(60)
		for load in (ls, lf):
			self.assertEqual(load.errors, [])
			self.assertEqual(len(load.mids), 24)
		want_s, want_f = set(ls.mids.values()), set(lf.mids.values())
		self.wait_for(lambda: want_s <= rs.message_ids() and want_f <= rf.message_ids(), 60,
			      interval=0.1, what="48 deliveries")
		last_fast = max(d.at for d in rf.deliveries())
		last_slow = max(d.at for d in rs.deliveries())
		harness.note("max concurrent: slow.test %d, fast.test %d; fast done %.1fs before slow"
			     % (rs.max_concurrent, rf.max_concurrent, last_slow - last_fast))
		self.assertEqual(rs.max_concurrent, 1)
		self.assertEqual(rf.max_concurrent, 3)
		self.assertLess(last_fast, last_slow - 1.0)
		self.assertIn("kumo.dns.lookup_mx: 3 domains", self.env.logs())

	@harness.bound(60)
	def test_automation_suspends_the_path(self):
		"""rl.test answers every message "451 4.7.1 ... rate limited": the
		first attempt gets it, the rule suspends the path for an hour (logged
		with the rule and the response), and the receiver sees no second
		attempt in the next 4 s although the retry interval is 1 s; the
		messages stay queued."""
		r = self.receiver(receivers.ScriptedReceiver, RL,
				  data=lambda n: "451 4.7.1 you are being rate limited")
		self.start_petrel(policy=self.shaping_policy())
		load = self.inject("c@rl.test", 4)
		load.join(30)
		self.assertEqual(len(load.mids), 4)
		self.wait_records("TransientFailure", 1, timeout=20)
		self.wait_for(lambda: "shaping automation:" in self.env.logs(), 10,
			      what="the automation log line")
		log = self.env.logs()
		self.assertRegex(log, r'shaping automation: \S+->mx\.rl\.test: rule "451 \.\*rate '
				 r'limited" matched "451 4\.7\.1 you are being rate limited": Suspend '
				 r'for 3600 s')
		seen = len(r.txns())
		time.sleep(4)
		harness.note("transactions: %d at the suspension, %d four seconds later"
			     % (seen, len(r.txns())))
		self.assertEqual(len(r.txns()), seen)
		self.assertLessEqual(seen, 4)
		self.assertEqual(len(self.records("Delivery")), 0)
		self.assertEqual(len(harness.spool_ls(self.env.spool)), 4)

	@harness.bound(60)
	def test_validate_names_the_bad_block(self):
		self.files[1].write_text(SHAPING_2.replace("connection_limit = 3",
							   "connection_limit = \"many\""))
		rc, out = harness.validate(self.shaping_policy(), self.env.dir)
		self.assertNotEqual(rc, 0, out)
		self.assertIn('shaping: ["fast.test"].sources."unspecified": ', out)
		self.assertIn("connection_limit", out)
