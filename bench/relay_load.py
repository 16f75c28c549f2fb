#!/usr/bin/python3
"""relay_load.py -- the driver of bench/relay: load a relay, watch the sink.

    relay_load.py run --port P --sink-log FILE --messages M --size S --sessions C
                      [--procs N] [--timeout T] [--stall S] --label NAME --out FILE
    relay_load.py count --sink-log FILE      messages the sink has received so far
    relay_load.py table FILE...              the comparison table and the ratios

`run` sends M messages of S bytes over C pipelining sessions to the relay on
127.0.0.1:P, with bench/reception_load.py's generator (the one `make bench`
uses), and meanwhile watches the sink the relay delivers to.  The sink is
Postfix's smtp-sink started with -c: on every final "." (and every session
end) it writes its counters, "sess=N quit=N mesg=N\\r", to its stdout,
which bench/relay sends to FILE; the last complete "mesg=" there is the
number of messages it has received.

Times are taken on one clock, time.monotonic() (CLOCK_MONOTONIC, the same
in every process): t0 when the generator processes are let go, the end of
acceptance when the last of them has its last reply, the end of the relay
when the sink's count reaches the number of messages the relay accepted
(checked every 20 ms).  So

    accepted/s = accepted / (end of acceptance - t0)
    relayed/s  = accepted / (end of relay - t0)      (end to end)

and p50/p99 are the relay's reply latency, final "." to 250, as in
bench/reception.

The wait is bounded twice: T seconds from t0 in all, and S seconds without
the sink's count growing once acceptance is over (a relay that does not
deliver is reported after S seconds, not after T).  A run that ends before
the sink has everything records how many it got and how long it waited.

Standard library only (runs under Debian's /usr/bin/python3).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import re
import signal
import sys
import time

sys.dont_write_bytecode = True	# no __pycache__ left in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reception_load  # noqa: E402  (the generator, shared with bench/reception)

POLL = 0.02		# seconds between two looks at the sink's counter
MESG = re.compile(rb"mesg=(\d+)\r")


class SinkCounter:
	"""The sink's message count, read from the tail of its -c output."""

	def __init__(self, path):
		self.fd = os.open(path, os.O_RDONLY)
		self.last = 0

	def read(self):
		size = os.fstat(self.fd).st_size
		tail = os.pread(self.fd, 256, max(0, size - 256))
		found = MESG.findall(tail)
		if found:
			self.last = int(found[-1])
		return self.last

	def close(self):
		os.close(self.fd)


def sink_count(path):
	c = SinkCounter(path)
	try:
		return c.read()
	finally:
		c.close()


def generator(a, messages, sessions, go, q):
	"""One generator process: build its load, wait for the start, run it,
	report what it got and when its last reply came (time.monotonic)."""
	try:
		load = reception_load.Load("127.0.0.1", a.port, messages, a.size, sessions)
		if not go.wait(a.timeout):
			return		# the parent never gave the start: it is gone
		asyncio.run(load.run(a.timeout))
		q.put({"ok": load.ok, "failed": load.failed, "errors": load.errors,
		       "end": time.monotonic(), "latencies": load.latencies})
	except BaseException as e:  # the parent must hear from every child
		q.put({"ok": 0, "failed": messages, "errors": ["generator: %r" % e],
		       "end": time.monotonic(), "latencies": []})


def start_generators(a, go, q):
	ctx = multiprocessing.get_context("fork")
	procs = max(1, min(a.procs, a.sessions))
	ps = []
	for i in range(procs):
		msgs = a.messages // procs + (1 if i < a.messages % procs else 0)
		sess = a.sessions // procs + (1 if i < a.sessions % procs else 0)
		p = ctx.Process(target=generator, args=(a, msgs, sess, go, q), daemon=True)
		p.start()
		ps.append(p)
	return ps


def stop_generators(ps):
	for p in ps:
		p.join(2)
		if p.is_alive():
			p.kill()
			p.join(2)


def watch(a, ps, q, sink, base, t0):
	"""Collect the generators' reports and follow the sink until it has every
	accepted message or a bound passes.  Returns (parts, relayed, t_relay,
	t_stop)."""
	parts = []
	deadline = t0 + a.timeout
	t_relay = None
	last_n, last_change = 0, t0
	while True:
		try:
			parts.append(q.get(timeout=POLL))
		except queue.Empty:
			pass
		now = time.monotonic()
		n = sink.read() - base
		if n != last_n:
			last_n, last_change = n, now
		accepting = len(parts) < len(ps)
		if accepting and not any(p.is_alive() for p in ps) and q.empty():
			parts += [{"ok": 0, "failed": 0, "end": now, "latencies": [],
				   "errors": ["a generator process died without a report"]}] * (
				len(ps) - len(parts))
			accepting = False
		if not accepting:
			ok = sum(p["ok"] for p in parts)
			t_end = max(p["end"] for p in parts)
			if n >= ok:
				t_relay = now
				break
			if now - max(last_change, t_end) >= a.stall:
				break
		if now >= deadline:
			break
	return parts, last_n, t_relay, now


def cmd_run(a):
	sink = SinkCounter(a.sink_log)
	base = sink.read()
	ctx = multiprocessing.get_context("fork")
	go, q = ctx.Event(), ctx.Queue()
	ps = start_generators(a, go, q)
	time.sleep(0.2)		# let them build their messages before the clock starts
	t0 = time.monotonic()
	go.set()
	try:
		parts, relayed, t_relay, t_stop = watch(a, ps, q, sink, base, t0)
	except BaseException:	# SIGTERM (below) or an error: no grace for the generators
		for p in ps:
			if p.is_alive():
				p.kill()
		raise
	finally:
		stop_generators(ps)
		sink.close()
	accepting = len(parts) < len(ps)
	ok = sum(p["ok"] for p in parts)
	failed = a.messages - ok
	errors = [e for p in parts for e in p["errors"]][:5]
	if accepting:
		errors.insert(0, "generator still busy after the %ds bound" % a.timeout)
	t_acc = max((p["end"] for p in parts), default=t_stop) - t0
	lat = sorted(x for p in parts for x in p["latencies"])
	complete = t_relay is not None and ok > 0
	res = {
		"system": a.label, "sent": a.messages, "accepted": ok, "failed": failed,
		"accept_seconds": round(t_acc, 3),
		"accept_rate": round(ok / t_acc, 1) if t_acc > 0 else 0.0,
		"relayed": relayed, "complete": complete,
		"relay_seconds": round((t_relay if complete else t_stop) - t0, 3),
		"relay_rate": round(ok / (t_relay - t0), 1) if complete else None,
		"p50_ms": round(reception_load.percentile(lat, 50) * 1000, 3),
		"p99_ms": round(reception_load.percentile(lat, 99) * 1000, 3),
		"size": a.size, "sessions": a.sessions, "procs": len(ps), "errors": errors,
	}
	with open(a.out, "w") as f:
		json.dump(res, f)
	print("%s: %d accepted, %d failed in %.2fs (%.0f msgs/s)" % (
		a.label, ok, failed, t_acc, res["accept_rate"]))
	if complete:
		print("%s: the sink had all %d after %.2fs (%.0f msgs/s end to end)" % (
			a.label, ok, res["relay_seconds"], res["relay_rate"]))
	else:
		print("%s: relayed %d of %d within %.0f s" % (
			a.label, relayed, ok, res["relay_seconds"]))
	for e in errors:
		print("  error: " + e)
	return 0 if complete and failed == 0 and not errors else 1


def cmd_count(a):
	print(sink_count(a.sink_log))
	return 0


def ratio(by, num, den, fmt):
	n, d = by.get(num), by.get(den)
	if not n or not d:
		return "%s/%s n/a (not run)" % (num, den)
	for r in (n, d):
		if not r["complete"]:
			return "%s/%s n/a (%s incomplete)" % (num, den, r["system"])
	return ("%s/%s " + fmt) % (num, den, n["relay_rate"] / d["relay_rate"])


def cmd_table(a):
	rows = []
	for f in a.files:
		with open(f) as fh:
			rows.append(json.load(fh))
	print()
	print("%-8s %8s %8s %8s %10s %8s %8s %10s %8s %8s" % (
		"system", "sent", "accepted", "accept s", "accepted/s", "relayed", "e2e s",
		"relayed/s", "p50 ms", "p99 ms"))
	for r in rows:
		rate = "%10.0f" % r["relay_rate"] if r["complete"] else "%10s" % "-"
		print("%-8s %8d %8d %8.2f %10.0f %8d %8.2f %s %8.2f %8.2f" % (
			r["system"], r["sent"], r["accepted"], r["accept_seconds"], r["accept_rate"],
			r["relayed"], r["relay_seconds"], rate, r["p50_ms"], r["p99_ms"]))
	print()
	for r in rows:
		if not r["complete"]:
			print("%s: relayed %d of %d within %.0f s" % (
				r["system"], r["relayed"], r["accepted"], r["relay_seconds"]))
	by = {r["system"]: r for r in rows}
	print("relay: %s, %s" % (ratio(by, "petrel", "postfix", "%.1f\u00d7"),
				 ratio(by, "petrel", "limit", "%.2f")))
	return 0


def main():
	ap = argparse.ArgumentParser(description=__doc__,
				     formatter_class=argparse.RawDescriptionHelpFormatter)
	sub = ap.add_subparsers(dest="cmd", required=True)
	p = sub.add_parser("run")
	p.add_argument("--port", type=int, required=True, help="the relay's (or the sink's) port")
	p.add_argument("--sink-log", required=True, help="smtp-sink -c output")
	p.add_argument("--messages", type=int, default=20000)
	p.add_argument("--size", type=int, default=2048)
	p.add_argument("--sessions", type=int, default=20)
	p.add_argument("--procs", type=int, default=1, help="generator processes (default 1)")
	p.add_argument("--timeout", type=int, default=300, help="bound on the whole run (seconds)")
	p.add_argument("--stall", type=int, default=30,
		       help="give up when the sink count has not grown for this long (seconds)")
	p.add_argument("--label", required=True)
	p.add_argument("--out", required=True)
	p = sub.add_parser("count")
	p.add_argument("--sink-log", required=True)
	p = sub.add_parser("table")
	p.add_argument("files", nargs="+")
	a = ap.parse_args()
	return {"run": cmd_run, "count": cmd_count, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
	# bench/relay stops this driver by its pid with SIGTERM; exit through
	# the finally clauses so that the generator processes go too.
	signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(143))
	try:
		sys.exit(main())
	except KeyboardInterrupt:
		sys.exit(130)
