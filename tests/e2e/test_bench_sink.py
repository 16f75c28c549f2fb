"""petrel-sink (bench/sink*.c), the benchmarks' accept-and-discard SMTP
receiver, driven by real clients: smtplib, swaks and raw sockets when the
exact bytes and their grouping matter.

The binary is $PETREL_SINK (relative to the repository root), default
build/petrel-sink; point it at build/asan/petrel-sink to run this suite
under AddressSanitizer.  Every sink runs with --status and the tests read
its counters there; it is ready when the status file exists (written by
main after the listening sockets are open and every ring thread is up), so
the readiness check opens no connection that would be counted.
"""

import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import harness
from harness import SMTPConn

SINK = Path(os.environ.get("PETREL_SINK", str(harness.BUILD / "petrel-sink")))
if not SINK.is_absolute():
	SINK = harness.REPO / SINK

HOST = "petrel-sink.test"
GREETING = "220 %s ESMTP petrel-sink" % HOST
MAIL_OK = "250 2.1.0 OK"
RCPT_OK = "250 2.1.5 OK"
DATA_GO = "354 End data with <CR><LF>.<CR><LF>"
QUEUED = "250 2.0.0 OK discarded"
RCPT_TEMP = "451 4.3.0 scripted temporary failure, try again later"
RCPT_PERM = "550 5.1.1 scripted permanent failure: no such user"
DATA_TEMP = "451 4.3.0 scripted temporary failure, try again later"
DATA_PERM = "550 5.7.1 scripted permanent failure: message refused"
NO_RCPTS = "554 5.5.1 no valid recipients"
TOO_BIG = "552 5.3.4 message size exceeds fixed maximum message size"
UNKNOWN = "500 5.5.2 command not recognized"
QUIT = "221 2.0.0 Bye"
STARTTLS = "220 2.0.0 Ready to start TLS"

COUNTERS = ("connections", "connections_open", "messages", "recipients", "bytes", "tempfail",
	    "permfail", "rejected_at_data", "oversize")


def free_port6():
	"""harness.free_port for ::1 (the harness's is IPv4 only)."""
	with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
		s.bind(("::1", 0))
		return s.getsockname()[1]


class Sink(harness.LiveProcess):
	"""One petrel-sink process, signalled only by its pid and registered with
	the harness's cleanup of last resort (harness._live_daemons); the test's
	cleanup stops it and fails the test unless it exits 0 on SIGTERM.
	running, kill_hard and _forget are the harness's (LiveProcess)."""

	def __init__(self, test, *args, threads=1, host="127.0.0.1", log=False):
		if not SINK.exists():
			raise AssertionError("%s does not exist (make build/petrel-sink)" % SINK)
		self.dir = Path(tempfile.mkdtemp(prefix="petrel-sink-"))
		harness._temp_dirs.append(str(self.dir))
		self.host = host
		self.port = free_port6() if ":" in host else harness.free_port(host)
		self.status_path = self.dir / "status.json"
		self.log_path = self.dir / "accounting.log"
		self.stdout_path = self.dir / "stdout"
		self.stderr_path = self.dir / "stderr"
		self.conns = []
		listen = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)
		self.argv = [str(SINK), "--listen", listen, "--threads", str(threads),
			     "--status", str(self.status_path)]
		if log:
			self.argv += ["--log", str(self.log_path)]
		self.argv += [str(a) for a in args]
		self.signalled = False
		with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
						     stderr=err)
		harness._live_daemons.append(self)
		test.addCleanup(self.cleanup)
		self.wait_ready()

	def wait_ready(self, timeout=10):
		def ready():
			if self.proc.poll() is not None:
				raise AssertionError("petrel-sink exited with %s before it was ready:\n%s"
						     % (self.proc.returncode, self.stderr()))
			return self.status_path.exists()
		harness.wait_for(ready, timeout, what="petrel-sink's status file")

	def stderr(self):
		return self.stderr_path.read_text(errors="replace")

	def stdout(self):
		return self.stdout_path.read_text(errors="replace")

	def status(self):
		"""The counters in the status file (replaced by rename: always whole)."""
		return json.loads(self.status_path.read_text())

	def wait_status(self, timeout=5, **want):
		"""Poll the status file until every counter in `want` has its value;
		return the whole status then."""
		last = {}

		def match():
			last.clear()
			last.update(self.status())
			return all(last.get(k) == v for k, v in want.items())
		try:
			harness.wait_for(match, timeout, what="status %r" % (want,))
		except AssertionError as e:
			raise AssertionError("%s; last status %r" % (e, last))
		return dict(last)

	def log_lines(self):
		return self.log_path.read_text().splitlines()

	def connect(self, timeout=10):
		"""A raw SMTPConn (harness) that has read the greeting."""
		c = SMTPConn(self.port, host=self.host, timeout=timeout)
		self.conns.append(c)
		c.expect(GREETING)
		return c

	def smtp(self):
		"""An smtplib client, closed by the cleanup."""
		s = smtplib.SMTP(self.host, self.port, timeout=10)
		self.conns.append(s)
		return s

	def stop(self, timeout=10):
		"""SIGTERM, then (exit status, stdout).  SIGKILL after the bound."""
		if self.running():
			self.signalled = True
			os.kill(self.proc.pid, signal.SIGTERM)
		try:
			rc = self.proc.wait(timeout=timeout)
		except subprocess.TimeoutExpired:
			self.kill_hard()
			raise AssertionError("petrel-sink still running %ds after SIGTERM" % timeout)
		self._forget()
		return rc, self.stdout()

	def cleanup(self):
		for c in self.conns:
			try:
				c.close()
			except OSError:
				pass
		died = not self.running() and not self.signalled
		rc, _ = self.stop()
		if died:
			raise AssertionError("petrel-sink died during the test with status %s:\n%s"
					     % (rc, self.stderr()))
		if rc != 0:
			raise AssertionError("petrel-sink exit status %s after SIGTERM (want 0):\n%s"
					     % (rc, self.stderr()))
		for bad in ("ERROR", "runtime error", "AddressSanitizer", "LeakSanitizer"):
			if bad in self.stderr():
				raise AssertionError("petrel-sink wrote %r on stderr:\n%s"
						     % (bad, self.stderr()))


def message(subject, mid=None, body="hello\r\n.a line that starts with a dot\r\n"):
	"""An RFC 5322 message as bytes, CRLF line ends, NOT dot-stuffed (smtplib
	stuffs it): its length is the size the sink counts."""
	head = "From: <sender@client.test>\r\nTo: <rcpt@example.com>\r\nSubject: %s\r\n" % subject
	if mid:
		head += "Message-ID: %s\r\n" % mid
	return (head + "\r\n" + body).encode()


def replies(c, n):
	"""The last lines of the next n replies of a raw connection."""
	return [c.read_reply().line for _ in range(n)]


def unverified_tls():
	ctx = ssl.create_default_context()
	ctx.check_hostname = False
	ctx.verify_mode = ssl.CERT_NONE
	return ctx


class Transactions(unittest.TestCase):
	maxDiff = None

	@harness.bound(30)
	def test_smtplib_transaction_counts_exactly_and_logs_message_id(self):
		"""One smtplib transaction, two recipients, a line starting with a dot:
		the status shows 1 connection, 1 message, 2 recipients and the exact
		unstuffed size; the log line has sender, count, size, Message-ID."""
		sink = Sink(self, log=True)
		msg = message("one", mid="<one.1@client.test>")
		s = sink.smtp()
		self.assertEqual(s.ehlo()[0], 250)
		for ext in ("pipelining", "8bitmime", "size", "enhancedstatuscodes"):
			self.assertTrue(s.has_extn(ext), (ext, s.esmtp_features))
		self.assertFalse(s.has_extn("starttls"), "STARTTLS offered without a certificate")
		self.assertEqual(s.esmtp_features["size"], "104857600")
		self.assertEqual(s.sendmail("sender@client.test", ["a@example.com", "b@example.com"],
					    msg), {})
		st = sink.wait_status(messages=1)
		self.assertEqual({k: st[k] for k in COUNTERS}, {
			"connections": 1, "connections_open": 1, "messages": 1, "recipients": 2,
			"bytes": len(msg), "tempfail": 0, "permfail": 0, "rejected_at_data": 0,
			"oversize": 0})
		self.assertEqual(sink.log_lines(),
				 ["sender@client.test 2 %d <one.1@client.test>" % len(msg)])
		s.quit()
		sink.wait_status(connections_open=0)

	@harness.bound(30)
	def test_log_message_id_from_header_block_only(self):
		"""A folded Message-ID is unfolded; a Message-ID line in the body is
		not one; no Message-ID logs "-"; the null sender logs "<>"."""
		sink = Sink(self, log=True)
		folded = b"Subject: folded\r\nMessage-ID:\r\n <folded.2@client.test>\r\nX: y\r\n\r\nbody\r\n"
		in_body = b"Subject: none\r\n\r\nMessage-ID: <body.3@client.test>\r\n"
		s = sink.smtp()
		s.sendmail("a@client.test", ["r@example.com"], folded)
		s.sendmail("", ["r@example.com", "q@example.com"], in_body)
		sink.wait_status(messages=2, bytes=len(folded) + len(in_body))
		self.assertEqual(sink.log_lines(), [
			"a@client.test 1 %d <folded.2@client.test>" % len(folded),
			"<> 2 %d -" % len(in_body)])

	@harness.bound(30)
	def test_pipelined_burst_answered_in_order_in_one_write(self):
		"""Three whole transactions (one empty, one with a stuffed dot) and QUIT
		in one write: every reply, in order, in one segment."""
		sink = Sink(self)
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		bodies = [b"Subject: 1\r\n\r\none\r\n", b"", b"Subject: 3\r\n\r\n..stuffed\r\n"]
		burst = b"".join(b"MAIL FROM:<s%d@client.test>\r\nRCPT TO:<r%d@example.com>\r\n"
				 b"DATA\r\n%s.\r\n" % (i, i, b) for i, b in enumerate(bodies)) + b"QUIT\r\n"
		c.send(burst)
		time.sleep(0.5)	# let every reply arrive before the one recv below
		c.sock.settimeout(5)
		data = c.sock.recv(65536)
		want = [MAIL_OK, RCPT_OK, DATA_GO, QUEUED] * 3 + [QUIT]
		self.assertEqual(data.decode().split("\r\n"), want + [""],
				 "replies not in order or not in one write")
		self.assertEqual(c.sock.recv(100), b"", "not closed after QUIT")
		sink.wait_status(messages=3, recipients=3, connections_open=0,
				 bytes=len(bodies[0]) + 0 + len(bodies[2]) - 1)

	@harness.bound(60)
	def test_terminator_split_across_reads(self):
		"""The same stream one byte per write: CRLF.CRLF is found wherever the
		reads cut it, the empty message included, and a lone "." line inside
		a longer one ("\\r\\n.x") is not an end."""
		sink = Sink(self)
		c = sink.connect()
		c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		stream = (b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.com>\r\n"
			  b"DATA\r\n.\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.com>\r\n"
			  b"DATA\r\nx\r\n..\r\n.x\r\n\r\n.\r\nNOOP\r\n")
		for i in range(len(stream)):
			c.send(stream[i:i + 1])
			if i % 8 == 0:
				time.sleep(0.002)	# some writes reach the sink alone
		c.read_reply()	# EHLO
		self.assertEqual(replies(c, 9), [MAIL_OK, RCPT_OK, DATA_GO, QUEUED,
						 MAIL_OK, RCPT_OK, DATA_GO, QUEUED, "250 2.0.0 OK"])
		# Second message, unstuffed: "x" CRLF "." CRLF "x" CRLF CRLF = 11 bytes (".x" loses
		# its dot: RFC 5321 4.5.2).
		sink.wait_status(messages=2, bytes=11)

	@harness.bound(30)
	def test_session_errors_and_commands(self):
		"""Sequence and syntax errors, unknown commands, RSET, NOOP, HELO,
		DATA with no accepted recipient, QUIT -- exact replies."""
		sink = Sink(self, "--permfail-match", "*@bad.test")
		c = sink.connect()
		c.cmd("MAIL FROM:<a@client.test>", "503 5.5.1 say EHLO or HELO first")
		c.cmd("FROB", UNKNOWN)
		c.cmd("", UNKNOWN)
		c.cmd("HELO client.test", "250 " + HOST)
		c.cmd("RCPT TO:<x@example.com>", "503 5.5.1 need MAIL before RCPT or DATA")
		c.cmd("DATA", "503 5.5.1 need MAIL before RCPT or DATA")
		c.cmd("MAIL TO:<a@client.test>", "501 5.5.4 syntax error in parameters or arguments")
		c.cmd("MAIL FROM:<a@client.test>", MAIL_OK)
		c.cmd("MAIL FROM:<a@client.test>", "503 5.5.1 nested MAIL command")
		c.cmd("RCPT TO:<>", "501 5.1.3 bad address syntax")
		c.cmd("RCPT TO:<x@bad.test>", RCPT_PERM)
		c.cmd("DATA", NO_RCPTS)
		c.cmd("RSET", "250 2.0.0 OK")
		c.cmd("NOOP", "250 2.0.0 OK")
		c.cmd("STARTTLS", "502 5.5.1 STARTTLS not available")
		c.cmd("X" * 2000, "500 5.5.2 line too long")
		c.cmd("rcpt to:<y@example.com>", "503 5.5.1 need MAIL before RCPT or DATA")
		c.cmd("QUIT", QUIT)
		self.assertEqual(c.sock.recv(100), b"")
		sink.wait_status(connections=1, connections_open=0, messages=0, recipients=0,
				 permfail=1)

	@harness.bound(30)
	def test_max_size(self):
		"""--max-size 100: SIZE 100 advertised; MAIL SIZE=101 refused; a
		100-byte message accepted, a 101-byte one refused after its dot."""
		sink = Sink(self, "--max-size", "100")
		c = sink.connect()
		r = c.cmd("EHLO client.test", "250")
		self.assertIn("SIZE 100", r.texts)
		c.cmd("MAIL FROM:<a@client.test> SIZE=101", TOO_BIG)
		body = b"Subject: s\r\n\r\n" + b"x" * 84 + b"\r\n"
		self.assertEqual(len(body), 100)
		self.assertEqual(c.transaction("a@client.test", ["b@example.com"], body).line, QUEUED)
		self.assertEqual(c.transaction("a@client.test", ["b@example.com"], b"x" + body).line,
				 TOO_BIG)
		sink.wait_status(messages=1, bytes=100, oversize=1)

	@harness.bound(30)
	def test_ipv6_listener(self):
		if not socket.has_ipv6:
			raise unittest.SkipTest(harness.MISSING_DEP + "IPv6")
		try:
			with socket.socket(socket.AF_INET6) as probe:
				probe.bind(("::1", 0))
		except OSError:
			raise unittest.SkipTest(harness.MISSING_DEP + "IPv6 loopback ::1")
		sink = Sink(self, host="::1")
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		self.assertEqual(c.transaction("a@client.test", ["b@example.com"], b"hi\r\n").line,
				 QUEUED)
		sink.wait_status(messages=1, bytes=4)

	@harness.bound(60)
	def test_threads_share_the_port_and_counters_sum(self):
		"""--threads 2: 20 connections of one message each, all counted."""
		sink = Sink(self, threads=2)
		msg = message("t")
		for i in range(20):
			with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
				s.sendmail("a@client.test", ["b%d@example.com" % i], msg)
		sink.wait_status(connections=20, connections_open=0, messages=20, recipients=20,
				 bytes=20 * len(msg))


class Outcomes(unittest.TestCase):
	maxDiff = None

	def rcpt_outcomes(self, sink, n):
		"""One connection, one MAIL, RCPT r0..r<n-1> pipelined 200 per write:
		the reply line of each, in order."""
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		c.cmd("MAIL FROM:<a@client.test>", MAIL_OK)
		out = []
		for start in range(0, n, 200):
			batch = range(start, min(n, start + 200))
			c.send("".join("RCPT TO:<r%d@example.com>\r\n" % i for i in batch))
			out += replies(c, len(batch))
		c.cmd("QUIT", QUIT)
		return out

	@harness.bound(60)
	def test_random_shares_within_tolerance_and_reproducible_by_seed(self):
		"""--tempfail 10 --permfail 2 --seed 7 over 2000 RCPTs: about 200 and
		40 (binomial, +-5 sd), the counters agree exactly, and a second run
		with the same seed gives the same outcome to every recipient; seed 8
		does not."""
		args = ("--tempfail", "10", "--permfail", "2", "--seed", "7")
		first_sink = Sink(self, *args)
		first = self.rcpt_outcomes(first_sink, 2000)
		self.assertEqual(set(first), {RCPT_OK, RCPT_TEMP, RCPT_PERM})
		temp, perm = first.count(RCPT_TEMP), first.count(RCPT_PERM)
		self.assertTrue(133 <= temp <= 267, "%d tempfails of 2000 at 10%%" % temp)
		self.assertTrue(9 <= perm <= 71, "%d permfails of 2000 at 2%%" % perm)
		first_sink.wait_status(tempfail=temp, permfail=perm, recipients=2000 - temp - perm,
				       connections_open=0)
		second = self.rcpt_outcomes(Sink(self, *args), 2000)
		self.assertEqual(second, first, "same seed, different outcomes")
		other = self.rcpt_outcomes(Sink(self, "--tempfail", "10", "--permfail", "2",
						"--seed", "8"), 2000)
		self.assertNotEqual(other, first, "seeds 7 and 8 gave the same 2000 outcomes")

	@harness.bound(60)
	def test_match_patterns_refuse_exactly_the_matches(self):
		"""--permfail-match '*@bad.test' and --tempfail-match 'slow*@*': only
		the matching addresses (case ignored) are refused, permfail winning."""
		sink = Sink(self, "--permfail-match", "*@bad.test", "--tempfail-match", "slow*@*",
			    "--tempfail-match", "*@busy.test")
		rcpts = {
			"a@bad.test": RCPT_PERM, "B@BAD.Test": RCPT_PERM, "slow@bad.test": RCPT_PERM,
			"slow1@x.test": RCPT_TEMP, "SLOW@y.test": RCPT_TEMP, "q@busy.test": RCPT_TEMP,
			"ok@good.test": RCPT_OK, "a@bad.test.example": RCPT_OK, "bad.test@ok.test": RCPT_OK,
			"notslow@x.test": RCPT_OK,
		}
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		c.cmd("MAIL FROM:<a@client.test>", MAIL_OK)
		got = {r: c.cmd("RCPT TO:<%s>" % r, want[:3]).line for r, want in rcpts.items()}
		self.assertEqual(got, rcpts)
		c.cmd("QUIT", QUIT)
		sink.wait_status(permfail=3, tempfail=3, recipients=4, connections_open=0)
		# swaks, a real client: refused at RCPT, then accepted.
		rc, out = harness.run_swaks(["--server", "127.0.0.1:%d" % sink.port, "--from",
					     "a@client.test", "--to", "z@bad.test"])
		self.assertNotEqual(rc, 0, out)
		self.assertIn(RCPT_PERM, out)
		rc, out = harness.run_swaks(["--server", "127.0.0.1:%d" % sink.port, "--from",
					     "a@client.test", "--to", "z@good.test"])
		self.assertEqual(rc, 0, out)
		self.assertIn(QUEUED, out)
		sink.wait_status(permfail=4, messages=1, connections=3)

	@harness.bound(30)
	def test_at_data_gives_the_outcome_to_the_final_dot(self):
		"""--at data: RCPTs are accepted; the reply to "." is 550 5.7.1 when a
		recipient matched --permfail-match, 451 4.3.0 for --tempfail-match,
		else 250 (no random share)."""
		sink = Sink(self, "--at", "data", "--permfail-match", "*@bad.test",
			    "--tempfail-match", "*@slow.test")
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		body = b"Subject: d\r\n\r\nx\r\n"
		self.assertEqual(c.transaction("a@client.test", ["ok@good.test"], body).line, QUEUED)
		self.assertEqual(c.transaction("a@client.test", ["ok@good.test", "x@bad.test"],
					       body).line, DATA_PERM)
		self.assertEqual(c.transaction("a@client.test", ["y@slow.test"], body).line, DATA_TEMP)
		self.assertEqual(c.transaction("a@client.test", ["y@slow.test", "x@bad.test"],
					       body).line, DATA_PERM)
		sink.wait_status(messages=1, bytes=len(body), recipients=6, rejected_at_data=3,
				 permfail=2, tempfail=1)

	@harness.bound(30)
	def test_at_data_random_share(self):
		"""--at data --permfail 100: every transaction refused at its dot,
		with smtplib seeing the 550 5.7.1 from data()."""
		sink = Sink(self, "--at", "data", "--permfail", "100")
		s = sink.smtp()
		s.ehlo()
		self.assertEqual(s.mail("a@client.test")[0], 250)
		self.assertEqual(s.rcpt("b@example.com")[0], 250)
		code, text = s.data(message("refused"))
		self.assertEqual("%d %s" % (code, text.decode()), DATA_PERM)
		sink.wait_status(messages=0, rejected_at_data=1, permfail=1, recipients=1)


class Tls(unittest.TestCase):
	@harness.bound(30)
	def test_starttls_self_signed_with_smtplib(self):
		"""--tls-self-signed: STARTTLS advertised, smtplib.starttls() with an
		unverified context, EHLO again (no STARTTLS then), one message."""
		sink = Sink(self, "--tls-self-signed")
		s = sink.smtp()
		s.ehlo()
		self.assertTrue(s.has_extn("starttls"), s.esmtp_features)
		code, text = s.starttls(context=unverified_tls())
		self.assertEqual((code, text.decode()), (220, STARTTLS[4:]))
		s.ehlo()
		self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again over TLS")
		self.assertTrue(s.has_extn("pipelining"))
		msg = message("over tls", mid="<tls@client.test>")
		self.assertEqual(s.sendmail("a@client.test", ["b@example.com"], msg), {})
		self.assertEqual(s.docmd("STARTTLS"), (503, b"5.5.1 TLS already active"))
		s.quit()
		sink.wait_status(connections=1, connections_open=0, messages=1, bytes=len(msg))

	@harness.bound(30)
	def test_input_pipelined_after_starttls_is_discarded(self):
		"""RFC 3207 4.2: "STARTTLS\\r\\nNOOP\\r\\n" in one write gets only the
		220; after the handshake the first reply is the EHLO's."""
		sink = Sink(self, "--tls-self-signed")
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		c.send("STARTTLS\r\nNOOP\r\n")
		c.expect(STARTTLS)
		c.starttls()
		r = c.cmd("EHLO client.test", "250")
		self.assertEqual(r.lines[0], "250-" + HOST)
		self.assertNotIn("STARTTLS", r.texts)
		c.cmd("MAIL FROM:<a@client.test>", MAIL_OK)


class Latency(unittest.TestCase):
	@harness.bound(30)
	def test_final_dot_reply_held_for_the_latency(self):
		"""--latency 200: smtplib's data() takes at least 200 ms; pipelined
		commands behind a held reply are answered after it, in order, and
		a second transaction in the same batch waits its own 200 ms."""
		sink = Sink(self, "--latency", "200")
		s = sink.smtp()
		s.ehlo()
		s.mail("a@client.test")
		s.rcpt("b@example.com")
		t0 = time.monotonic()
		code, text = s.data(message("slow"))
		self.assertGreaterEqual(time.monotonic() - t0, 0.2)
		self.assertEqual("%d %s" % (code, text.decode()), QUEUED)
		self.assertEqual(s.noop()[0], 250)	# not delayed, answered
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		c.cmd("MAIL FROM:<a@client.test>", MAIL_OK)
		c.cmd("RCPT TO:<b@example.com>", RCPT_OK)
		c.cmd("DATA", DATA_GO)
		t0 = time.monotonic()
		c.send("one\r\n.\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
		       "two\r\n.\r\nNOOP\r\n")
		c.expect(QUEUED)
		t1 = time.monotonic()
		self.assertEqual(replies(c, 4), [MAIL_OK, RCPT_OK, DATA_GO, QUEUED])
		t2 = time.monotonic()
		c.expect("250 2.0.0 OK")
		self.assertGreaterEqual(t1 - t0, 0.2)
		self.assertGreaterEqual(t2 - t0, 0.4)
		sink.wait_status(messages=3, bytes=len(message("slow")) + 10)

	@harness.bound(30)
	def test_fractional_latency_accepted(self):
		sink = Sink(self, "--latency", "50.5")
		c = sink.connect()
		c.cmd("EHLO client.test", "250")
		t0 = time.monotonic()
		self.assertEqual(c.transaction("a@client.test", ["b@example.com"], b"x\r\n").line,
				 QUEUED)
		self.assertGreaterEqual(time.monotonic() - t0, 0.0505)


class Lifecycle(unittest.TestCase):
	maxDiff = None

	def two_messages(self, sink):
		msg = message("m")
		s = sink.smtp()
		s.sendmail("a@client.test", ["b@example.com", "c@example.com"], msg)
		s.sendmail("a@client.test", ["d@example.com"], msg)
		s.quit()
		sink.wait_status(messages=2, connections_open=0)
		return len(msg)

	@harness.bound(30)
	def test_sigterm_prints_json_summary_and_exits_0(self):
		sink = Sink(self, "--json", "--tempfail-match", "t@*")
		size = self.two_messages(sink)
		s = sink.smtp()
		s.ehlo()
		s.mail("a@client.test")
		self.assertEqual(s.rcpt("t@example.com")[0], 451)
		rc, out = sink.stop()
		self.assertEqual(rc, 0, sink.stderr())
		lines = out.splitlines()
		self.assertEqual(len(lines), 1, out)
		summary = json.loads(lines[0])
		self.assertGreater(summary.pop("uptime_s"), 0)
		# The newest message's CLOCK_MONOTONIC stamp: before the stop, after start.
		stamp = summary.pop("last_message_mono_s")
		self.assertTrue(0 < stamp <= time.monotonic(), stamp)
		self.assertEqual(summary, {
			"connections": 2, "connections_open": 1, "messages": 2, "recipients": 3,
			"bytes": 2 * size, "tempfail": 1, "permfail": 0, "rejected_at_data": 0,
			"oversize": 0})
		final = sink.status()	# rewritten at exit with the same counters
		final.pop("uptime_s")
		self.assertEqual(final.pop("last_message_mono_s"), stamp)
		self.assertEqual(final, summary)

	@harness.bound(30)
	def test_sigint_prints_human_summary(self):
		sink = Sink(self)
		size = self.two_messages(sink)
		sink.signalled = True
		os.kill(sink.proc.pid, signal.SIGINT)
		rc, out = sink.stop()
		self.assertEqual(rc, 0, sink.stderr())
		self.assertRegex(out, r"^petrel-sink: \d+\.\d{3} s, 1 thread\n")
		self.assertIn("\nmessages          2 (", out)
		self.assertIn("\nrecipients        3\n", out)
		self.assertIn("\nbytes             %d (" % (2 * size), out)
		self.assertIn("\nconnections       1 (0 open)\n", out)

	def run_sink(self, *args):
		p = subprocess.run([str(SINK)] + list(args), capture_output=True, text=True,
				   timeout=10, stdin=subprocess.DEVNULL)
		return p.returncode, p.stdout, p.stderr

	@harness.bound(30)
	def test_bad_options_exit_2_with_a_message(self):
		if not SINK.exists():
			raise AssertionError("%s does not exist" % SINK)
		port = harness.free_port()
		cases = [
			(["--bogus"], "--bogus"),
			(["--threads", "0"], "--threads '0'"),
			(["--threads", "two"], "--threads 'two'"),
			(["--threads"], "--threads"),
			(["--tempfail", "101"], "--tempfail '101'"),
			(["--permfail", "-1"], "--permfail '-1'"),
			(["--tempfail", "60", "--permfail", "50"], "more than 100%"),
			(["--latency", "soon"], "--latency 'soon'"),
			(["--at", "both"], "--at 'both'"),
			(["--seed", "x"], "--seed 'x'"),
			(["--max-size", "1k"], "--max-size '1k'"),
			(["--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"),
			(["--listen", "127.0.0.1:%d" % port, "extra"], "unexpected argument 'extra'"),
		]
		for args, why in cases:
			rc, out, err = self.run_sink(*args)
			self.assertEqual((rc, out), (2, ""), (args, err))
			self.assertTrue(err.startswith("petrel-sink: "), (args, err))
			self.assertIn(why, err, args)
			self.assertIn("--help", err, args)
		self.assertFalse(harness.port_in_use(port))
		rc, out, err = self.run_sink("--listen", "localhost:25")
		self.assertEqual(rc, 1, err)	# starts, then cannot listen: 1, not 2
		self.assertIn("numeric address", err)

	@harness.bound(30)
	def test_help_documents_every_option(self):
		rc, out, err = self.run_sink("--help")
		self.assertEqual((rc, err), (0, ""))
		for opt in ("--listen", "--threads", "--pin", "--hostname", "--max-size", "--tls-cert",
			    "--tls-key", "--tls-self-signed", "--latency", "--tempfail", "--permfail",
			    "--tempfail-match", "--permfail-match", "--at", "--seed", "--status",
			    "--log", "--json", "--help"):
			self.assertRegex(out, r"(?m)^  %s\b" % opt)
