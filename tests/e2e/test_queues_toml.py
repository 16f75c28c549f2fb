"""queues.toml through policy-extras.queue, as KumoMTA's queue helper: the
tenant and campaign come from X-Tenant / X-Campaign headers (removed before
relaying), a tenant's max_message_rate paces its queue while another
tenant's mail goes at full speed, a [queue."domain"] block's retry_interval
and max_age decide when a deferred message expires, an undefined tenant is
refused, and a bad option fails --validate with its block named."""


import dns
import harness
import receivers
from test_delivery import DeliveryTest

ADDR = "127.0.0.53"
FAIL_ADDR = "127.0.0.54"

QUEUES = """tenant_header = "X-Tenant"
remove_tenant_header = true
campaign_header = "X-Campaign"
remove_campaign_header = true
default_tenant = "standard"

[tenant.standard]

[tenant.slow]
max_message_rate = "10/s"

[queue.default]
retry_interval = "20s"
max_age = "1 hour"

[queue."fail.test"]
retry_interval = "1s"
max_retry_interval = "1s"
max_age = "3s"
"""

POLICY = """local kumo = require 'kumo'
local queue_helper = require('policy-extras.queue'):setup { %(queues)s }

kumo.on('init', function()
  kumo.define_spool{name='data', path=%(spool)s}
  kumo.configure_local_logs{log_dir=%(logs)s}
  kumo.start_esmtp_listener{listen=%(listen)s, relay_hosts={'127.0.0.1'}, hostname='petrel.test'}
  kumo.dns.configure_resolver{name_servers={%(ns)s}}
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path{smtp_port=%(port)d, enable_tls='Disabled', connection_limit=8}
end)

kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
end)
"""


class QueuesToml(DeliveryTest):
	def setUp(self):
		super().setUp()
		self.start_dns(dns.Zone().mx("q.test", 10, "mx.q.test").a("mx.q.test", ADDR)
			       .mx("fail.test", 10, "mx.fail.test").a("mx.fail.test", FAIL_ADDR))
		self.queues = self.env.dir / "queues.toml"
		self.queues.write_text(QUEUES)

	def queue_policy(self):
		path = self.env.dir / "policy.lua"
		path.write_text(POLICY % {
			"queues": harness.lua_str(self.queues), "spool": harness.lua_str(self.env.spool),
			"logs": harness.lua_str(self.env.log_dir),
			"listen": harness.lua_str("127.0.0.1:%d" % self.env.port),
			"ns": harness.lua_str("127.0.0.1:%d" % self.dnsmasq.port), "port": self.rport})
		return path

	def send_as(self, rcpt, subject, headers=()):
		msg = harness.make_message(subject=subject, to=rcpt, sender="s@client.test",
					   extra_headers=headers)
		c = self.env.connect()
		c.ehlo()
		r = c.transaction("s@client.test", [rcpt], msg)
		c.close()
		return r, receivers.message_id_of(msg)

	@harness.bound(90)
	def test_tenants_campaigns_and_rates(self):
		"""20 messages of tenant "slow" (10/s) and 20 of the default tenant,
		sent together: the slow tenant's arrive 10/s (within 15%), the others
		all before the slow ones are half done; queues are named
		campaign:tenant@domain and the X-Tenant/X-Campaign headers are gone."""
		r = self.receiver(receivers.SmtpReceiver, ADDR)
		self.start_petrel(policy=self.queue_policy())
		slow, fast = set(), set()
		for i in range(20):
			rep, mid = self.send_as("a@q.test", "slow %d" % i,
						("X-Tenant: slow", "X-Campaign: spring"))
			self.assertEqual(rep.code, 250, rep)
			slow.add(mid)
			rep, mid = self.send_as("b@q.test", "fast %d" % i)
			self.assertEqual(rep.code, 250, rep)
			fast.add(mid)
		self.wait_for(lambda: (slow | fast) <= r.message_ids(), 30, interval=0.1,
			      what="40 deliveries")
		at = {d.message_id: d.at for d in r.deliveries()}
		slow_times = sorted(at[m] for m in slow)
		rate = (len(slow_times) - 1) / (slow_times[-1] - slow_times[0])
		harness.note("slow tenant: %.2f/s; default tenant done %.2fs after the first slow one"
			     % (rate, max(at[m] for m in fast) - slow_times[0]))
		self.assertGreaterEqual(rate, 8.5)
		self.assertLessEqual(rate, 11.5)
		self.assertLess(max(at[m] for m in fast), slow_times[10])
		queues = {x["recipient"]: x["queue"] for x in self.records("Delivery")}
		self.assertEqual(queues, {"a@q.test": "spring:slow@q.test",
					  "b@q.test": "standard@q.test"})
		for d in r.deliveries():
			self.assertNotIn(b"\nX-Tenant:", d.content)
			self.assertNotIn(b"\nX-Campaign:", d.content)

	@harness.bound(60)
	def test_queue_block_sets_retry_and_max_age(self):
		"""[queue."fail.test"] retry_interval 1s, max_age 3s, a receiver that
		always answers 451: TransientFailures about a second apart, then an
		Expiration within max_age (the default queue would retry in 20 s)."""
		self.receiver(receivers.ScriptedReceiver, FAIL_ADDR,
			      data=lambda n: "451 4.3.0 try later")
		self.start_petrel(policy=self.queue_policy())
		rep, _ = self.send_as("x@fail.test", "expire me")
		self.assertEqual(rep.code, 250, rep)
		exp = self.wait_records("Expiration", 1, timeout=15)[0]
		tf = self.records("TransientFailure")
		harness.note("%d TransientFailure records before the Expiration" % len(tf))
		self.assertGreaterEqual(len(tf), 2)
		self.assertEqual(exp["queue"], "standard@fail.test")

	@harness.bound(60)
	def test_undefined_tenant_is_refused(self):
		self.receiver(receivers.SmtpReceiver, ADDR)
		self.start_petrel(policy=self.queue_policy())
		rep, _ = self.send_as("a@q.test", "who", ("X-Tenant: nobody",))
		self.assertEqual(rep.code, 500, rep)
		self.assertIn("tenant 'nobody' specified by 'X-Tenant' header is not defined", rep.line)

	@harness.bound(60)
	def test_validate_names_bad_block(self):
		self.queues.write_text(QUEUES.replace('max_message_rate = "10/s"',
						      'max_message_rate = "ten per second"'))
		rc, out = harness.validate(self.queue_policy(), self.env.dir)
		self.assertNotEqual(rc, 0, out)
		self.assertIn('queue: [tenant."slow"]:', out)
		self.assertIn("max_message_rate", out)
