"""Deadlines and connection limits: an idle client meets client_timeout,
and a listener's max_connections is enforced with a clear 421."""

import time

import harness
from harness import HOSTNAME


class Timeouts(harness.PetrelTest):
	@harness.bound(30)
	def test_idle_client_gets_421_after_client_timeout(self):
		self.env.start(self.env.write_policy(client_timeout="1s"))
		c = self.env.connect()
		c.ehlo()
		t0 = time.monotonic()
		c.expect("421 4.4.2 %s timeout, closing connection" % HOSTNAME)
		waited = time.monotonic() - t0
		self.assertGreaterEqual(waited, 0.8, "timed out too early")
		self.assertLess(waited, 5.0, "timeout not enforced")
		with self.assertRaises(ConnectionError):
			c.read_line()

	@harness.bound(30)
	def test_slow_transaction_meets_the_deadline_mid_data(self):
		"""A client that stops sending inside DATA meets data_timeout (Petrel's
		own: a longer deadline for message content), and its half message is
		not spooled."""
		self.env.start(self.env.write_policy(client_timeout="30s", data_timeout="1s"))
		c = self.env.connect()
		c.ehlo()
		c.cmd("MAIL FROM:<a@client.test>", "250 2.1.0 OK")
		c.cmd("RCPT TO:<b@example.com>", "250 2.1.5 OK")
		c.cmd("DATA", "354")
		c.send("Subject: half\r\n\r\nsome text but no end")
		c.expect("421 4.4.2 %s timeout, closing connection" % HOSTNAME)
		self.assertEqual(harness.spool_ls(self.env.spool), {})


class ConnectionLimit(harness.PetrelTest):
	@harness.bound(30)
	def test_max_connections_refuses_the_extra_one(self):
		self.env.start(self.env.write_policy(max_connections=2), shards=1)
		a = self.env.connect()
		b = self.env.connect()
		extra = self.env.connect(greet=False)
		extra.expect("421 4.7.0 %s too many connections, try again later" % HOSTNAME)
		with self.assertRaises(ConnectionError):
			extra.read_line()
		# The two admitted sessions work, and a freed slot is reused.
		a.cmd("NOOP", "250 2.0.0 OK")
		b.cmd("QUIT", "221 2.0.0 %s closing connection" % HOSTNAME)
		b.close()

		def admitted():
			c = self.env.connect(greet=False)
			r = c.read_reply()
			c.close()
			return r.code == 220
		harness.wait_for(admitted, 5.0, interval=0.1, what="a freed connection slot")
