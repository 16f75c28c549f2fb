"""The daemon's life: --validate, draining on SIGTERM/SIGINT, crash recovery
(kill -9 under load, a torn segment tail) and several shards."""

import random
import signal
import socket
import time

import harness
from harness import make_message, spool_ls, spool_verify

SENDER = "sender@client.test"
RCPT = "rcpt@example.com"


class Validate(harness.PetrelTest):
	def _validate(self, policy):
		return harness.validate(policy, self.env.dir)

	def test_validate_good_policy(self):
		rc, out = self._validate(self.env.write_policy())
		self.assertEqual(rc, 0, out)
		self.assertFalse(harness.port_in_use(self.env.port), "--validate left a listener")

	def test_validate_syntax_error(self):
		bad = self.env.write_policy(name="bad.lua", text=(
			"local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  local x = = 1\n"
			"end)\n"))
		rc, out = self._validate(bad)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("%s:3:" % bad, out)

	def test_validate_init_error(self):
		"""An error raised while init runs is reported with its line too."""
		bad = self.env.write_policy(name="initerr.lua", text=(
			"local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  petrel.define_spool{name='data', path='/nonexistent-e2e/spool'}\n"
			"  local t = nil\n"
			"  t.boom = 1\n"
			"end)\n"))
		rc, out = self._validate(bad)
		self.assertNotEqual(rc, 0, out)
		self.assertIn("%s:5:" % bad, out)


class Drain(harness.PetrelTest):
	@harness.bound(60)
	def test_sigterm_mid_data(self):
		"""SIGTERM while a client is inside DATA: no new connections are
		served, the open message still gets 250 and is spooled, the session
		is then closed, and the daemon exits 0 within 5 s."""
		d = self.env.start()
		c = self.env.connect()
		c.ehlo()
		c.cmd("MAIL FROM:<%s>" % SENDER, "250 2.1.0 OK")
		c.cmd("RCPT TO:<%s>" % RCPT, "250 2.1.5 OK")
		c.cmd("DATA", "354")
		msg = make_message(subject="drain", size=6000)
		c.send(msg[:3000])
		time.sleep(0.2)
		t0 = time.monotonic()
		d.signal(signal.SIGTERM)
		time.sleep(0.3)
		self.assertNotEqual(self._probe(), "220", "a new connection was served after SIGTERM")
		c.send(msg[3000:] + b".\r\n")
		self.assertLess(time.monotonic() - t0, 1.0)
		mid = c.expect_accept()
		try:
			r = c.read_reply()
			self.assertEqual(r.code, 421, r.lines)
		except (ConnectionError, OSError):
			pass
		rc = d.wait_exit(max(0.1, 5.0 - (time.monotonic() - t0)))
		self.assertEqual(rc, 0, "exit status %s (None: still running 5 s after SIGTERM)\n%s"
				 % (rc, d.stderr_tail()))
		harness.note("exited %.2fs after SIGTERM" % (time.monotonic() - t0))
		self.assertEqual(list(spool_ls(self.env.spool)), [mid])

	def _probe(self):
		"""What a new client sees now: "220", "421", "refused", "closed", "silent"."""
		try:
			with socket.create_connection(("127.0.0.1", self.env.port), timeout=1) as s:
				data = s.recv(100)
		except ConnectionRefusedError:
			return "refused"
		except (socket.timeout, TimeoutError):
			return "silent"
		except OSError:
			return "closed"
		return data[:3].decode(errors="replace") or "closed"

	def test_sigint_idle_session(self):
		"""SIGINT with an idle session: it gets 421 4.3.2 and is closed, and
		the daemon exits 0 within 5 s."""
		d = self.env.start()
		c = self.env.connect()
		c.ehlo()
		t0 = time.monotonic()
		d.signal(signal.SIGINT)
		r = c.read_reply()
		self.assertEqual(r.code, 421, r.lines)
		self.assertTrue(r.line.startswith("421 4.3.2 "), r.lines)
		self.assertEqual(c.sock.recv(100), b"")
		rc = d.wait_exit(5.0 - (time.monotonic() - t0))
		self.assertEqual(rc, 0, d.stderr_tail())


class Crash(harness.PetrelTest):
	@harness.bound(240)
	def test_kill9_under_load_loses_nothing(self):
		"""2,000 messages over 20 sessions, kill -9 after ~1,000 250s: after a
		restart every acknowledged id is in the spool, and extras are no more
		than the transactions cut off in flight."""
		policy = self.env.write_policy()
		d = self.env.start(policy)
		load = harness.Load(self.env.port, sessions=20, per_session=100, size=1500).start()
		harness.wait_for(lambda: load.count() >= 1000 or not any(t.is_alive() for t in load.threads),
				 120, interval=0.005, what="1000 acknowledged messages")
		d.kill9()
		load.join(60)
		acked = set(load.acked)
		self.assertEqual(len(acked), len(load.acked), "an id was acknowledged twice")
		self.assertGreaterEqual(len(acked), 1000, load.errors[:5])
		self.assertLess(len(acked), 2000, "the load finished before the kill")
		self.assertEqual(load.refused, [])
		harness.note("acknowledged %d before kill -9; %d transactions in flight"
			     % (len(acked), load.unknown))

		d2 = self.env.start(policy)
		listed = spool_ls(self.env.spool)
		lost = acked - set(listed)
		extra = set(listed) - acked
		harness.note("after restart: %d listed, %d lost, %d extra (in-flight 250s not seen)"
			     % (len(listed), len(lost), len(extra)))
		if lost:	# finished (a record says how) or truly lost?
			done = {r.get("id"): r.get("type") for r in harness.log_records(self.env.log_dir)
				if r.get("id") in lost and r.get("type") != "Reception"}
			self.fail("%d acknowledged messages not in the spool; %d of them finished by "
				  "a record %s; the others: %s" % (len(lost), len(done),
								  sorted(set(done.values())),
								  sorted(lost - set(done))[:10]))
		self.assertLessEqual(len(extra), load.unknown)
		c = self.env.connect()
		c.ehlo()
		mid = c.send_message(SENDER, [RCPT], make_message(subject="after restart"))
		c.close()
		rc, _ = d2.stop()
		self.assertEqual(rc, 0)
		listed2 = spool_ls(self.env.spool)
		self.assertEqual(set(listed2), set(listed) | {mid})
		rc, out = spool_verify(self.env.spool)
		self.assertEqual(rc, 0, out)


class TornTail(harness.PetrelTest):
	@harness.bound(90)
	def test_torn_tail_truncated_on_restart(self):
		"""Cut the newest segment inside its last record: after a restart all
		earlier messages are listed, only the cut one is gone, and verify is
		clean (the daemon truncated the tail)."""
		policy = self.env.write_policy()
		d = self.env.start(policy, shards=1)
		c = self.env.connect()
		c.ehlo()
		ids = [c.send_message(SENDER, [RCPT], make_message(subject="torn %d" % i, size=1000 + 37 * i))
		       for i in range(20)]
		c.close()
		rc, _ = d.stop()
		self.assertEqual(rc, 0, d.stderr_tail())
		listed = spool_ls(self.env.spool)
		self.assertEqual(set(listed), set(ids))

		last = max(listed.values(), key=lambda e: (e["segment"], e["offset"]))
		self.assertEqual(last["id"], ids[-1])
		seg = harness.segment_file(self.env.spool, last["shard"], last["segment"])
		size = seg.stat().st_size
		self.assertGreater(size, last["offset"] + 1)
		# Inside the message's own record: records written after it
		# (recipient states of the deferred delivery) may follow it, and
		# cutting one of those would leave the message whole.  The record
		# holds the message's size bytes at least.
		seed = random.randrange(1 << 30)
		cut = random.Random(seed).randint(last["offset"] + 1,
						  min(size - 1, last["offset"] + last["size"]))
		with open(seg, "r+b") as f:
			f.truncate(cut)
		rc_before, _ = spool_verify(self.env.spool)
		harness.note("segment %s: %d bytes, last record at %d, cut at %d (seed %d); "
			     "verify before restart exit %d" % (seg.name, size, last["offset"], cut, seed,
								rc_before))

		d2 = self.env.start(policy, shards=1)
		rc, _ = d2.stop()
		self.assertEqual(rc, 0, d2.stderr_tail())
		after = spool_ls(self.env.spool)
		self.assertEqual(set(after), set(ids[:-1]))
		self.assertLessEqual(seg.stat().st_size, last["offset"], "torn tail not truncated")
		rc, out = spool_verify(self.env.spool)
		self.assertEqual(rc, 0, out)


class Shards(harness.PetrelTest):
	@harness.bound(120)
	def test_two_shards(self):
		"""--shards 2: 200 messages over 10 connections all get 250 and are all
		in the spool, spread over the shard directories."""
		self.env.start(shards=2)
		load = harness.Load(self.env.port, sessions=10, per_session=20, size=1200).start()
		load.join(90)
		self.assertEqual(load.errors, [])
		self.assertEqual(load.refused, [])
		self.assertEqual(len(load.acked), 200)
		listed = spool_ls(self.env.spool)
		self.assertEqual(set(listed), set(load.acked))
		per_shard = {}
		for e in listed.values():
			per_shard[e["shard"]] = per_shard.get(e["shard"], 0) + 1
		harness.note("messages per shard: %s" % dict(sorted(per_shard.items())))
		self.assertLessEqual(set(per_shard), {0, 1})
		for shard, n in per_shard.items():
			self.assertTrue(any((self.env.spool / str(shard)).glob("*.seg")), shard)
