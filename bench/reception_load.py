#!/usr/bin/python3
"""reception_load.py -- the load generator and helpers of bench/reception.

    reception_load.py load --port P --messages M --size S --sessions C --label NAME --out FILE
    reception_load.py wait --port P [--timeout SECS]     wait until a greeting arrives
    reception_load.py port                                print a free loopback port
    reception_load.py table FILE...                       the comparison table and ratio

The load is one asyncio SMTP client with C concurrent sessions sharing M
messages of S bytes.  Each session pipelines (RFC 2920): MAIL, RCPT and DATA
go in one write; after the 354 the message, the final "." and, when
messages remain, the next MAIL/RCPT/DATA go in one write.  So a message costs
one round trip plus whatever the server does before its 250, which for a
durable server is the disk sync.  The latency of a message is the time from
writing its final "." to reading its end-of-data reply.

The same generator drives every system, so differences are the servers'.
Standard library only (runs under Debian's /usr/bin/python3).
"""

import argparse
import asyncio
import collections
import json
import multiprocessing
import queue
import socket
import sys
import time


class SMTPError(Exception):
	pass


def make_body(size, n):
	"""A dot-safe message of about size bytes, CRLF line ends, ending in CRLF."""
	head = ("From: <bench@client.test>\r\nTo: <rcpt@example.com>\r\n"
		"Subject: reception bench %d\r\nMessage-ID: <bench.%d@client.test>\r\n\r\n" % (n, n))
	line = "The quick brown fox jumps over the lazy dog; reception benchmark ....\r\n"
	body = head
	while len(body) + len(line) <= size:
		body += line
	pad = size - len(body) - 2
	if pad > 0:
		body += "x" * pad + "\r\n"
	return body.encode()


class Session(asyncio.Protocol):
	"""One SMTP session as a small state machine over asyncio's callbacks
	(cheaper per reply than StreamReader coroutines, so the generator is less
	often the bottleneck).  `expect` lists the replies still owed, in order."""

	def __init__(self, load, idx):
		self.load = load
		self.idx = idx
		self.n = idx
		self.buf = b""
		self.expect = collections.deque(["greeting"])
		self.more = False
		self.t0 = 0.0
		self.done = asyncio.get_running_loop().create_future()

	def connection_made(self, transport):
		self.tr = transport

	def data_received(self, data):
		buf = self.buf + data
		lines = buf.split(b"\r\n")
		self.buf = lines.pop()
		for line in lines:
			if line[3:4] == b"-":
				continue
			if not self.expect:
				self.fail("unexpected reply %r" % line)
				return
			self.reply(self.expect.popleft(), int(line[:3]), line)

	def fail(self, why):
		if not self.done.done():
			self.done.set_exception(SMTPError(why))
		self.tr.abort()

	def send_envelope(self):
		self.tr.write(self.load.envelope)
		self.expect.extend(("MAIL", "RCPT", "DATA"))

	def reply(self, kind, code, line):
		load = self.load
		if kind == "end":
			load.latencies.append(time.perf_counter() - self.t0)
			if code == 250:
				load.ok += 1
			else:
				load.failed += 1
				if len(load.errors) < 5:
					load.errors.append("end of data: %r" % line)
			if not self.more:
				self.tr.write(b"QUIT\r\n")
				self.expect.append("QUIT")
			return
		want = {"greeting": 220, "EHLO": 250, "MAIL": 250, "RCPT": 250, "DATA": 354,
			"QUIT": 221}[kind]
		if code != want:
			self.fail("%s: %r" % (kind, line))
			return
		if kind == "greeting":
			self.tr.write(b"EHLO load%d.client.test\r\n" % self.idx)
			self.expect.append("EHLO")
		elif kind == "EHLO":
			if load.claim():
				self.send_envelope()
			else:
				self.tr.write(b"QUIT\r\n")
				self.expect.append("QUIT")
		elif kind == "DATA":
			self.more = load.claim()
			self.n += load.sessions
			# One write (one system call) for the message, its final "." and
			# the next envelope: the "." goes out now, so t0 is taken here.
			body = load.bodies[self.n % len(load.bodies)]
			self.t0 = time.perf_counter()
			self.expect.append("end")
			if self.more:
				self.tr.write(body + load.dot_envelope)
				self.expect.extend(("MAIL", "RCPT", "DATA"))
			else:
				self.tr.write(body + b".\r\n")
		elif kind == "QUIT":
			self.tr.close()

	def connection_lost(self, exc):
		if not self.done.done():
			if self.expect:
				self.done.set_exception(SMTPError("connection lost, owed %s: %r"
								  % (list(self.expect), exc)))
			else:
				self.done.set_result(None)


class Load:
	def __init__(self, host, port, messages, size, sessions):
		self.host, self.port = host, port
		self.total = messages
		self.sessions = sessions
		self.claimed = 0
		self.ok = 0
		self.failed = 0
		self.broken = 0		# sessions that ended with an error
		self.errors = []
		self.latencies = []
		# Bodies vary slightly (subject) so no server can dedupe them; a few
		# hundred variants are enough and cost nothing per message.
		self.bodies = [make_body(size, i) for i in range(256)]
		self.envelope = b"MAIL FROM:<bench@client.test>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n"
		self.dot_envelope = b".\r\n" + self.envelope

	def claim(self):
		if self.claimed >= self.total:
			return False
		self.claimed += 1
		return True

	async def session(self, i):
		loop = asyncio.get_running_loop()
		tr, proto = await loop.create_connection(lambda: Session(self, i), self.host, self.port)
		try:
			await proto.done
		finally:
			tr.abort()	# no-op after a clean QUIT; frees a session cut off by the time bound

	async def run(self, timeout):
		"""All sessions, bounded by timeout seconds in total: a server that
		stops answering fails the run instead of hanging it."""
		t0 = time.perf_counter()
		tasks = [asyncio.ensure_future(self.session(i)) for i in range(self.sessions)]
		_, pending = await asyncio.wait(tasks, timeout=timeout)
		for t in pending:
			t.cancel()
		results = await asyncio.gather(*tasks, return_exceptions=True)
		if pending:
			self.errors.insert(0, "%d sessions still busy after the %ds bound" % (len(pending), timeout))
		self.seconds = time.perf_counter() - t0
		for r in results:
			if isinstance(r, BaseException):
				self.broken += 1
				if len(self.errors) < 5:
					self.errors.append("session: %r" % r)
		self.failed += self.claimed - self.ok - self.failed


def percentile(sorted_values, p):
	if not sorted_values:
		return 0.0
	k = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
	return sorted_values[k]


def run_part(a, messages, sessions, first, q):
	"""One generator process: its share of sessions and messages."""
	load = Load(a.host, a.port, messages, a.size, sessions)
	asyncio.run(load.run(a.timeout))
	q.put({"ok": load.ok, "failed": load.failed, "errors": load.errors, "seconds": load.seconds,
	       "latencies": load.latencies})


def cmd_load(a):
	"""With --procs N the sessions and messages are split over N processes
	(one asyncio loop each), for when one Python process is the bottleneck."""
	procs = max(1, min(a.procs, a.sessions))
	if procs == 1:
		q = queue.SimpleQueue()
		t0 = time.perf_counter()
		run_part(a, a.messages, a.sessions, 0, q)
		parts = [q.get()]
	else:
		ctx = multiprocessing.get_context("fork")
		q = ctx.SimpleQueue()
		ps = []
		t0 = time.perf_counter()
		for i in range(procs):
			msgs = a.messages // procs + (1 if i < a.messages % procs else 0)
			sess = a.sessions // procs + (1 if i < a.sessions % procs else 0)
			p = ctx.Process(target=run_part, args=(a, msgs, sess, i, q))
			p.start()
			ps.append(p)
		parts = [q.get() for _ in ps]
		for p in ps:
			p.join()
	seconds = time.perf_counter() - t0
	ok = sum(p["ok"] for p in parts)
	failed = sum(p["failed"] for p in parts)
	errors = [e for p in parts for e in p["errors"]][:5]
	lat = sorted(x for p in parts for x in p["latencies"])
	res = {
		"system": a.label, "messages": ok, "failed": failed, "seconds": round(seconds, 3),
		"rate": round(ok / seconds, 1) if seconds > 0 else 0.0,
		"p50_ms": round(percentile(lat, 50) * 1000, 3),
		"p99_ms": round(percentile(lat, 99) * 1000, 3),
		"max_ms": round((lat[-1] if lat else 0) * 1000, 3),
		"size": a.size, "sessions": a.sessions, "procs": procs, "errors": errors,
	}
	with open(a.out, "w") as f:
		json.dump(res, f)
	print("%s: %d ok, %d failed in %.2fs (%.0f msgs/s)" % (a.label, ok, failed, seconds, res["rate"]))
	for e in errors:
		print("  error: " + e)
	return 0 if failed == 0 and not errors else 1


def cmd_wait(a):
	deadline = time.monotonic() + a.timeout
	while time.monotonic() < deadline:
		try:
			with socket.create_connection((a.host, a.port), timeout=2) as s:
				s.settimeout(max(0.5, deadline - time.monotonic()))
				if s.recv(512).startswith(b"220"):
					s.sendall(b"QUIT\r\n")
					return 0
		except OSError:
			pass
		time.sleep(0.1)
	print("no SMTP greeting on %s:%d after %ds" % (a.host, a.port, a.timeout), file=sys.stderr)
	return 1


def cmd_port(a):
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		print(s.getsockname()[1])
	return 0


def cmd_table(a):
	rows = []
	for f in a.files:
		with open(f) as fh:
			rows.append(json.load(fh))
	print()
	print("%-22s %9s %7s %9s %10s %9s %9s %9s" % ("system", "messages", "failed", "seconds",
							  "msgs/s", "p50 ms", "p99 ms", "max ms"))
	for r in rows:
		print("%-22s %9d %7d %9.2f %10.0f %9.2f %9.2f %9.2f" % (
			r["system"], r["messages"], r["failed"], r["seconds"], r["rate"],
			r["p50_ms"], r["p99_ms"], r["max_ms"]))
	by = {r["system"]: r for r in rows}
	if "petrel" in by and "postfix" in by and by["postfix"]["rate"] > 0:
		print()
		print("reception: petrel/postfix %.1fx" % (by["petrel"]["rate"] / by["postfix"]["rate"]))
	return 0


def main():
	ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
	sub = ap.add_subparsers(dest="cmd", required=True)
	p = sub.add_parser("load")
	p.add_argument("--host", default="127.0.0.1")
	p.add_argument("--port", type=int, required=True)
	p.add_argument("--messages", type=int, default=20000)
	p.add_argument("--size", type=int, default=2048)
	p.add_argument("--sessions", type=int, default=20)
	p.add_argument("--procs", type=int, default=1, help="generator processes (default 1)")
	p.add_argument("--timeout", type=int, default=150, help="bound on the whole run (seconds)")
	p.add_argument("--label", required=True)
	p.add_argument("--out", required=True)
	p = sub.add_parser("wait")
	p.add_argument("--host", default="127.0.0.1")
	p.add_argument("--port", type=int, required=True)
	p.add_argument("--timeout", type=int, default=20)
	sub.add_parser("port")
	p = sub.add_parser("table")
	p.add_argument("files", nargs="+")
	a = ap.parse_args()
	return {"load": cmd_load, "wait": cmd_wait, "port": cmd_port, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
	try:
		sys.exit(main())
	except KeyboardInterrupt:
		sys.exit(130)
