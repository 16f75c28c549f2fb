"""bench/petrel-gen, the SMTP load generator: its counts must equal what
real receivers saw (Postfix's smtp-sink with a dump file, aiosmtpd, the
scripted receiver of receivers.py), message by message.

The binary is $PETREL_GEN (default build/petrel-gen), so the same tests run
against an ASan build.  Every receiver is stopped by the test's cleanups;
smtp-sink is a Popen stopped by its pid.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from collections import Counter
from pathlib import Path

import harness
import receivers

JSON_KEYS = {"messages", "attempted", "accepted", "tempfailed", "permfailed", "failed",
	     "rcpts_accepted", "rcpts_refused", "conn_errors", "reply_timeouts", "bytes", "elapsed_s",
	     "msgs_per_s", "bytes_per_s", "latency_ms", "sessions", "threads"}
LATENCY_KEYS = {"p50", "p90", "p99", "p99_9", "max", "mean"}
RCPT_RE = re.compile(r"^user(\d+)@d(\d+)\.example\.test$")


def gen_path():
	path = Path(os.environ.get("PETREL_GEN", harness.REPO / "build" / "petrel-gen")).resolve()
	if not path.exists():
		raise AssertionError("%s does not exist (make build/petrel-gen)" % path)
	return path


def run_gen(*args, timeout=60):
	"""Run petrel-gen; return (CompletedProcess with str output, JSON summary
	or None)."""
	p = subprocess.run([str(gen_path())] + [str(a) for a in args], capture_output=True,
			   timeout=timeout, stdin=subprocess.DEVNULL, text=True)
	summary = json.loads(p.stdout) if "--json" in args and p.stdout.strip() else None
	return p, summary


class KeepingReceiver(receivers.SmtpReceiver):
	"""aiosmtpd that also keeps every accepted message's bytes."""

	def __init__(self, *a, **kw):
		super().__init__(*a, **kw)
		self.contents = []

	def _deliver(self, c, mail_from, rcpts, content, tls):
		with self.lock:
			self.contents.append(bytes(content))
		super()._deliver(c, mail_from, rcpts, content, tls)


class SmtpSink:
	"""Postfix's smtp-sink on a loopback port, dumping every transaction to
	one file (-D) that parse() reads back."""

	def __init__(self, test, extra=()):
		self.exe = harness.require_tool("smtp-sink")
		self.dir = Path(tempfile.mkdtemp(prefix="petrel-gen-sink-"))
		test.addCleanup(shutil.rmtree, self.dir, True)
		os.chmod(self.dir, 0o777)	# smtp-sink writes as nobody when we are root
		self.dump = self.dir / "dump"
		self.port = harness.free_port()
		user = ["-u", "nobody"] if os.geteuid() == 0 else []
		self.proc = subprocess.Popen([self.exe] + user + ["-D", str(self.dump)] + list(extra)
					     + ["127.0.0.1:%d" % self.port, "256"],
					     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
					     stderr=subprocess.PIPE)
		test.addCleanup(self.stop)
		harness.wait_for(lambda: self.proc.poll() is not None or harness.port_in_use(self.port),
				 10, what="smtp-sink listening")
		if self.proc.poll() is not None:
			raise AssertionError("smtp-sink exited: %s" % self.proc.stderr.read().decode())

	def stop(self):
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGTERM)
			try:
				self.proc.wait(5)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait(5)
		self.proc.stderr.close()

	def parse(self):
		"""[(message_id, [rcpt, ...])] in dump order."""
		if not self.dump.exists():
			return []
		out = []
		for rec in self.dump.read_text(errors="replace").split("X-Client-Addr: ")[1:]:
			rcpts = re.findall(r"^X-Rcpt-Args: <([^>]*)>", rec, re.M)
			mid = re.search(r"^Message-ID: (\S+)$", rec, re.M)
			out.append((mid.group(1) if mid else None, rcpts))
		return out


class ProbeServer:
	"""A one-connection SMTP server on a raw socket that records what the
	client had sent 0.3 s after the EHLO reply offered PIPELINING: with
	pipelining the whole envelope (MAIL, RCPTs, DATA), without it MAIL only,
	since nothing else may be sent before MAIL's reply.  It then plays a
	normal server to the end."""

	def __init__(self, test):
		self.sock = socket.socket()
		self.sock.bind(("127.0.0.1", 0))
		self.sock.listen(1)
		self.sock.settimeout(10)
		self.port = self.sock.getsockname()[1]
		self.first = None
		self.error = None
		self.thread = threading.Thread(target=self._run, daemon=True)
		self.thread.start()
		test.addCleanup(self.close)

	def close(self):
		self.sock.close()
		self.thread.join(10)

	def _run(self):
		try:
			c, _ = self.sock.accept()
			with c:
				c.settimeout(10)
				self._dialogue(c)
		except Exception as e:	# noqa: BLE001 -- reported by the test
			self.error = e

	def _dialogue(self, c):
		c.sendall(b"220 probe ESMTP\r\n")
		buf = b""
		while b"\r\n" not in buf:
			buf += c.recv(4096)
		c.sendall(b"250-probe\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		time.sleep(0.3)
		c.setblocking(False)
		try:
			self.first = c.recv(65536)
		except BlockingIOError:
			self.first = b""
		c.settimeout(10)
		buf = self.first
		in_data = False
		while True:
			if in_data:
				end = buf.find(b"\r\n.\r\n")
				if end < 0:
					buf += c.recv(65536)
					continue
				buf = buf[end + 5:]
				in_data = False
				c.sendall(b"250 2.0.0 OK\r\n")
				continue
			if b"\r\n" not in buf:
				data = c.recv(65536)
				if not data:
					return
				buf += data
				continue
			line, buf = buf.split(b"\r\n", 1)
			verb = line[:4].upper()
			if verb == b"DATA":
				c.sendall(b"354 go ahead\r\n")
				in_data = True
			elif verb == b"QUIT":
				c.sendall(b"221 bye\r\n")
				return
			else:
				c.sendall(b"250 OK\r\n")


class StallingReceiver(receivers.ScriptedReceiver):
	"""The scripted receiver, except that its first `silent` connections are
	accepted and never greeted (what a client sees of a connection that
	OpenSMTPD's kernel dropped: its listen backlog is 5, a burst of SYNs gets
	SYN cookies, and a cookie connection whose ACK meets a full accept queue
	is forgotten by the server while the client holds it established), and
	the others are greeted after greet_delay s.  Records how long each
	silent connection was held and the most connections waiting for their
	greeting at once."""

	def __init__(self, addrs, port, silent=0, greet_delay=0.0):
		super().__init__(addrs, port)
		self.silent = silent
		self.greet_delay = greet_delay
		self.held = []	# seconds each silent connection lasted
		self.waiting = 0
		self.max_waiting = 0

	async def _dialogue(self, c, reader, writer):
		t0 = time.monotonic()
		with self.lock:
			self.waiting += 1
			self.max_waiting = max(self.max_waiting, self.waiting)
		try:
			if c.id <= self.silent:
				await asyncio.wait_for(reader.read(), 30)	# until the client gives up
				with self.lock:
					self.held.append(time.monotonic() - t0)
				return
			await asyncio.sleep(self.greet_delay)
		finally:
			with self.lock:
				self.waiting -= 1
		await super()._dialogue(c, reader, writer)


class BenchGen(unittest.TestCase):
	def start(self, cls, *args, **kw):
		r = cls("127.0.0.1", harness.free_port(), *args, **kw).start()
		self.addCleanup(r.stop)
		return r

	def assertSummary(self, s, **expected):
		self.assertEqual(set(s) & JSON_KEYS, JSON_KEYS, "missing keys in %r" % s)
		self.assertEqual(set(s["latency_ms"]), LATENCY_KEYS)
		for k, v in expected.items():
			self.assertEqual(s[k], v, "%s in %r" % (k, s))

	def assertSpread(self, rcpts, messages, per_msg, domains):
		"""user<g>@d<g mod D>: every g once, each domain M*K/D times."""
		parsed = [RCPT_RE.match(r) for r in rcpts]
		self.assertTrue(all(parsed), rcpts[:5])
		gs = sorted(int(m.group(1)) for m in parsed)
		self.assertEqual(gs, list(range(messages * per_msg)))
		for m in parsed:
			self.assertEqual(int(m.group(2)), int(m.group(1)) % domains)
		spread = Counter(int(m.group(2)) for m in parsed)
		self.assertEqual(spread, {d: messages * per_msg // domains for d in range(domains)})

	# --- accounting ---------------------------------------------------------

	@harness.bound(90)
	def test_counts_equal_smtp_sink_dump(self):
		"""300 messages, 3 recipients over 5 domains, 2 threads, 7 sessions,
		9 messages per connection: smtp-sink's dump holds exactly 300
		distinct Message-IDs and 900 recipients spread 180 per domain, and
		petrel-gen's summary says the same."""
		sink = SmtpSink(self)
		p, s = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 300,
			       "--rcpts", 3, "--domains", 5, "--threads", 2, "--sessions", 7,
			       "--per-connection", 9, "--run-id", "acct", "--json")
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, messages=300, attempted=300, accepted=300, tempfailed=0,
				   permfailed=0, failed=0, rcpts_accepted=900, rcpts_refused=0,
				   conn_errors=0, bytes=300 * 2048, sessions=7, threads=2)
		got = harness.wait_for(lambda: (lambda d: d if len(d) >= 300 else None)(sink.parse()),
				       10, what="300 messages in the dump")
		self.assertEqual(len(got), 300)
		self.assertEqual(sorted(m for m, _ in got),
				 sorted("<%d.acct@petrel-gen>" % n for n in range(1, 301)))
		self.assertTrue(all(len(r) == 3 for _, r in got))
		self.assertSpread([x for _, r in got for x in r], 300, 3, 5)
		self.assertGreater(s["elapsed_s"], 0)
		self.assertAlmostEqual(s["msgs_per_s"], 300 / s["elapsed_s"], delta=1)

	@harness.bound(90)
	def test_counts_equal_aiosmtpd(self):
		"""aiosmtpd (no PIPELINING offered: petrel-gen falls back to one
		command per round trip): 100 messages x 3 recipients over 5 domains
		arrive exactly once each, every message exactly --size bytes with
		lines of at most 78 characters."""
		r = self.start(KeepingReceiver)
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 100, "--rcpts", 3,
			       "--domains", 5, "--sessions", 4, "--size", 1000, "--run-id", "aio",
			       "--json")
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, accepted=100, failed=0, rcpts_accepted=300, bytes=100 * 1000)
		self.assertEqual(r.count(), 300)
		self.assertSpread(r.rcpts(), 100, 3, 5)
		self.assertEqual(r.message_ids(), {"<%d.aio@petrel-gen>" % n for n in range(1, 101)})
		with r.lock:
			contents = list(r.contents)
		self.assertEqual(len(contents), 100)
		numbers = set()
		for c in contents:
			self.assertEqual(len(c), 1000, c[:200])
			lines = c.split(b"\r\n")
			self.assertEqual(lines[-1], b"")
			self.assertLessEqual(max(len(l) for l in lines), 78)
			numbers.add(int(re.search(rb"^X-Petrel-Gen: (\d+)\r$", c, re.M).group(1)))
		self.assertEqual(numbers, set(range(1, 101)))

	# --- pipelining ---------------------------------------------------------

	def probe(self, mode):
		srv = ProbeServer(self)
		p, s = run_gen("--server", "127.0.0.1:%d" % srv.port, "--messages", 1, "--sessions", 1,
			       "--rcpts", 2, "--pipelining", mode, "--json", timeout=30)
		srv.thread.join(10)
		self.assertIsNone(srv.error)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, accepted=1, rcpts_accepted=2)
		return srv.first

	def test_pipelining_on_sends_envelope_in_one_write(self):
		self.assertEqual(self.probe("on"),
				 b"MAIL FROM:<petrel-gen@example.test>\r\n"
				 b"RCPT TO:<user0@d0.example.test>\r\n"
				 b"RCPT TO:<user1@d0.example.test>\r\n"
				 b"DATA\r\n")

	def test_pipelining_off_waits_for_each_reply(self):
		self.assertEqual(self.probe("off"), b"MAIL FROM:<petrel-gen@example.test>\r\n")

	@harness.bound(90)
	def test_pipelining_on_and_off_deliver_all(self):
		"""Against the scripted receiver (which offers PIPELINING), both
		modes deliver 150 messages x 2 recipients, each exactly once."""
		for mode in ("on", "off"):
			r = self.start(receivers.ScriptedReceiver)
			p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 150,
				       "--rcpts", 2, "--sessions", 5, "--pipelining", mode,
				       "--run-id", "pl" + mode, "--json")
			self.assertEqual(p.returncode, 0, p.stderr)
			self.assertSummary(s, accepted=150, failed=0, rcpts_accepted=300)
			self.assertEqual(r.count(), 300)
			self.assertEqual(r.message_ids(),
					 {"<%d.pl%s@petrel-gen>" % (n, mode) for n in range(1, 151)})

	# --- STARTTLS -----------------------------------------------------------

	@harness.bound(90)
	def test_starttls_delivers_all(self):
		d = tempfile.mkdtemp(prefix="petrel-gen-tls-")
		self.addCleanup(shutil.rmtree, d, True)
		r = self.start(receivers.SmtpReceiver, tls=receivers.make_cert(d))
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 60, "--sessions", 3,
			       "--per-connection", 25, "--starttls", "on", "--run-id", "tls", "--json")
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, accepted=60, failed=0, conn_errors=0)
		self.assertEqual(r.message_ids(), {"<%d.tls@petrel-gen>" % n for n in range(1, 61)})
		delivered = r.deliveries()
		self.assertEqual(len(delivered), 60)
		self.assertTrue(all(x.tls for x in delivered))
		# 60 messages, 25 per connection, 3 sessions: at least 3 connections.
		self.assertGreaterEqual(len(r.conns()), 3)
		self.assertTrue(all(c.tls for c in r.conns()))

	def test_starttls_not_offered_is_a_connection_error(self):
		"""The scripted receiver never offers STARTTLS: every attempt is a
		connection error, each message is tried 4 times, exit 1."""
		r = self.start(receivers.ScriptedReceiver)
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 3, "--sessions", 1,
			       "--starttls", "on", "--quiet", "--json")
		self.assertEqual(p.returncode, 1)
		self.assertSummary(s, accepted=0, attempted=0, failed=3, conn_errors=12)
		self.assertEqual(s["conn_failed"], 3)
		self.assertEqual(r.count(), 0)

	# --- refusals -----------------------------------------------------------

	@harness.bound(90)
	def test_refusals_counted_exactly(self):
		"""40 transactions of 2 recipients, by transaction number mod 4:
		0 every RCPT 450 (tempfailed, RSET), 1 every RCPT 550 (permfailed,
		RSET), 2 end of data 451 (tempfailed), 3 accepted."""
		def rcpt(n):
			return {0: "450 4.2.1 mailbox busy", 1: "550 5.1.1 no such user"}.get(n % 4)

		def data(n):
			return "451 4.3.0 try later" if n % 4 == 2 else None

		for mode in ("on", "off"):
			r = self.start(receivers.ScriptedReceiver, rcpt=rcpt, data=data)
			p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 40,
				       "--rcpts", 2, "--sessions", 3, "--pipelining", mode, "--json")
			self.assertEqual(p.returncode, 0, p.stderr)
			self.assertSummary(s, attempted=40, accepted=10, tempfailed=20, permfailed=10,
					   failed=30, rcpts_accepted=40, rcpts_refused=40,
					   conn_errors=0, bytes=10 * 2048)
			self.assertEqual(r.count(), 20)
			lines = r.command_lines()
			self.assertEqual(sum(1 for l in lines if l.upper() == "RSET"), 20, mode)
			self.assertEqual(sum(1 for l in lines if l.upper() == "DATA"),
					 40 if mode == "on" else 20, mode)

	def test_connection_refused_retried_three_times(self):
		port = harness.free_port()	# nobody listens
		p, s = run_gen("--server", "127.0.0.1:%d" % port, "--messages", 5, "--sessions", 2,
			       "--quiet", "--json")
		self.assertEqual(p.returncode, 1)
		self.assertSummary(s, attempted=0, accepted=0, failed=5, conn_errors=20)
		self.assertEqual(s["conn_failed"], 5)

	def test_421_is_a_tempfail_and_a_lost_reply_is_retried(self):
		"""smtp-sink -Q rcpt (421 and hang up at RCPT): each message is
		tempfailed once, no retry, exit 0.  smtp-sink -q . (hang up at the
		final dot without a reply): each message is tried 4 times, then
		given up: 4 connection errors each, exit 1."""
		cases = (
			(["-Q", "rcpt"], 0, dict(tempfailed=10, conn_errors=0, rcpts_accepted=0)),
			(["-q", "."], 1, dict(tempfailed=0, conn_errors=40, rcpts_accepted=40,
					      conn_failed=10)),
		)
		for sink_args, status, want in cases:
			with self.subTest(sink=sink_args):
				sink = SmtpSink(self, sink_args)
				p, s = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 10,
					       "--sessions", 3, "--quiet", "--json")
				self.assertEqual(p.returncode, status, p.stderr)
				self.assertSummary(s, attempted=10, accepted=0, permfailed=0, failed=10,
						   **want)

	def test_timeout_stops_with_what_it_has(self):
		"""A server that accepts connections but never greets: --timeout 1
		ends the run after about a second with exit 1."""
		lsock = socket.socket()
		self.addCleanup(lsock.close)
		lsock.bind(("127.0.0.1", 0))
		lsock.listen(16)	# the kernel completes handshakes; nobody accepts
		t0 = time.monotonic()
		p, s = run_gen("--server", "127.0.0.1:%d" % lsock.getsockname()[1], "--messages", 10,
			       "--sessions", 2, "--timeout", 1, "--json", timeout=30)
		took = time.monotonic() - t0
		self.assertEqual(p.returncode, 1)
		self.assertTrue(s["timed_out"])
		self.assertSummary(s, accepted=0, attempted=0, failed=0)
		self.assertGreaterEqual(took, 0.9)
		self.assertLess(took, 5)

	@harness.bound(60)
	def test_silent_connection_ends_at_reply_timeout_and_is_retried(self):
		"""Regression (stall against OpenSMTPD): connections the server never
		greets used to wait until --timeout, holding their messages.  Now
		each ends after --reply-timeout as a connection error, its message
		goes out on a new connection, and the run is clean."""
		r = self.start(StallingReceiver, silent=3)
		t0 = time.monotonic()
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 30, "--sessions", 3,
			       "--reply-timeout", 0.5, "--timeout", 20, "--json", timeout=40)
		took = time.monotonic() - t0
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, attempted=30, accepted=30, failed=0, conn_failed=0,
				   conn_errors=3, reply_timeouts=3, timed_out=False)
		self.assertEqual(p.stderr.count(
			"no reply within 0.5 s (waiting for the greeting)"), 3, p.stderr)
		self.assertEqual(len(r.message_ids()), 30)
		self.assertEqual(len(r.conns()), 6)
		harness.wait_for(lambda: len(r.held) == 3, 5, what="silent connections closed")
		for held in r.held:
			self.assertGreaterEqual(held, 0.45)
			self.assertLess(held, 2.0)
		self.assertLess(took, 10)

	@harness.bound(60)
	def test_at_most_four_connections_wait_for_a_greeting(self):
		"""GEN_MAX_OPENING: with the greeting 0.3 s late, 10 sessions over 2
		threads never have more than 4 connections waiting for it (a burst
		past a small listen backlog is what made OpenSMTPD's kernel drop
		connections), and every message still goes through."""
		r = self.start(StallingReceiver, greet_delay=0.3)
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 40, "--sessions", 10,
			       "--threads", 2, "--json", timeout=40)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, attempted=40, accepted=40, failed=0, conn_errors=0,
				   reply_timeouts=0)
		self.assertEqual(r.max_waiting, 4)
		self.assertEqual(len(r.conns()), 10)
		self.assertEqual(len(r.message_ids()), 40)

	@harness.bound(60)
	def test_silent_final_reply_ends_at_reply_timeout(self):
		"""A server that takes 3 s to answer the final dot, --reply-timeout
		0.5: each try ends as a connection error; after 3 retries the
		message is given up (exit 1), well before --timeout."""
		r = self.start(receivers.ScriptedReceiver, delay=3.0)
		t0 = time.monotonic()
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 2, "--sessions", 2,
			       "--reply-timeout", 0.5, "--timeout", 30, "--json", timeout=40)
		self.assertEqual(p.returncode, 1, p.stderr)
		self.assertSummary(s, attempted=2, accepted=0, failed=2, conn_failed=2,
				   conn_errors=8, reply_timeouts=8, timed_out=False)
		self.assertIn("no reply within 0.5 s (waiting for the reply to the final dot)",
			      p.stderr)
		self.assertLess(time.monotonic() - t0, 10)

	def test_reply_timeout_option_checked(self):
		for v in ("0", "-1", "x"):
			p, _ = run_gen("--server", "127.0.0.1:25", "--reply-timeout", v)
			self.assertEqual(p.returncode, 2, v)
			self.assertIn("--reply-timeout", p.stderr)

	# --- rate, latency ------------------------------------------------------

	@harness.bound(60)
	def test_rate_paces_messages(self):
		"""--rate 50 for 100 messages: message n may start (n - 1) / 50 s
		after the start, so the run lasts at least 1.98 s."""
		sink = SmtpSink(self)
		t0 = time.monotonic()
		p, s = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 100,
			       "--sessions", 5, "--rate", 50, "--json")
		took = time.monotonic() - t0
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertSummary(s, accepted=100)
		self.assertGreaterEqual(took, 1.9)
		self.assertGreaterEqual(s["elapsed_s"], 1.9)
		self.assertLess(took, 10)

	@harness.bound(60)
	def test_latency_reflects_receiver_delay(self):
		"""aiosmtpd waiting 100 ms before each end-of-data reply: every
		percentile is at least 100 ms (less the histogram's 0.4 %)."""
		r = self.start(receivers.SmtpReceiver, delay=0.1)
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 20, "--sessions", 4,
			       "--json")
		self.assertEqual(p.returncode, 0, p.stderr)
		lat = s["latency_ms"]
		self.assertGreaterEqual(lat["p50"], 99.5, lat)
		self.assertLess(lat["p50"], 200, lat)
		self.assertTrue(lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"],
				lat)
		self.assertGreaterEqual(lat["mean"], 99.5, lat)

	# --- --eml ----------------------------------------------------------------

	def test_eml_dot_stuffing_and_message_id(self):
		"""A sample with LF line ends, its own folded Message-ID and lines
		starting with '.': each copy arrives byte for byte as the sample in
		CRLF, with our Message-ID and X-Petrel-Gen in front."""
		d = tempfile.mkdtemp(prefix="petrel-gen-eml-")
		self.addCleanup(shutil.rmtree, d, True)
		eml = Path(d) / "sample.eml"
		eml.write_bytes(b"From: <a@example.test>\nMessage-ID:\n <orig@example.test>\n"
				b"Subject: dots\n\n.leading dot\n..two dots\n.\n\nbody end\n")
		r = self.start(KeepingReceiver)
		p, s = run_gen("--server", "127.0.0.1:%d" % r.port, "--messages", 3, "--sessions", 1,
			       "--eml", eml, "--run-id", "eml", "--json")
		self.assertEqual(p.returncode, 0, p.stderr)
		with r.lock:
			contents = sorted(r.contents)
		body = (b"From: <a@example.test>\r\nSubject: dots\r\n\r\n.leading dot\r\n"
			b"..two dots\r\n.\r\n\r\nbody end\r\n")
		self.assertEqual(contents, [b"Message-ID: <%d.eml@petrel-gen>\r\nX-Petrel-Gen: %d\r\n"
					    % (n, n) + body for n in (1, 2, 3)])
		self.assertSummary(s, accepted=3, bytes=sum(len(c) for c in contents))

	# --- options --------------------------------------------------------------

	def test_bad_options_exit_2(self):
		for args in (["--messages", "5"],
			     ["--server", "127.0.0.1:25", "--sessions", "0"],
			     ["--server", "127.0.0.1:25", "--pipelining", "maybe"],
			     ["--server", "127.0.0.1:25", "--bogus"],
			     ["--server", "127.0.0.1"],
			     ["--server", "127.0.0.1:25", "--size", "100"],
			     ["--server", "127.0.0.1:25", "--eml", "/nonexistent/x.eml"],
			     ["--server", "127.0.0.1:25", "--rate", "-1"]):
			p, _ = run_gen(*args)
			self.assertEqual(p.returncode, 2, args)
			self.assertTrue(p.stderr.startswith("petrel-gen: "), (args, p.stderr))
			self.assertEqual(p.stdout, "", args)

	def test_help_documents_every_option(self):
		p, _ = run_gen("--help")
		self.assertEqual(p.returncode, 0)
		for opt in ("--server", "--threads", "--sessions", "--messages", "--size", "--eml",
			    "--rcpts", "--domains", "--domain-suffix", "--from", "--helo",
			    "--pipelining", "--starttls", "--rate", "--per-connection", "--timeout",
			    "--reply-timeout", "--run-id", "--json", "--quiet", "--help"):
			self.assertIn(opt + " ", p.stdout)

	def test_human_summary_and_quiet(self):
		sink = SmtpSink(self)
		p, _ = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 10)
		self.assertEqual(p.returncode, 0, p.stderr)
		self.assertRegex(p.stdout, r"accepted 10 ")
		self.assertRegex(p.stdout, r"latency ms +p50 [0-9.]+ +p90")
		self.assertEqual(p.stderr, "")	# not a terminal: no progress line
		p, _ = run_gen("--server", "127.0.0.1:%d" % sink.port, "--messages", 10, "--quiet")
		self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))


if __name__ == "__main__":
	unittest.main()
