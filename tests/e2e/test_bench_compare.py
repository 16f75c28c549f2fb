"""bench/compare and bench/backlog, smoke runs with tiny numbers: every
column must produce numbers (not particular ones: performance is measured by
running the benches, never asserted here), the last line must be the ratio
line, and nothing the bench started may outlive it."""

import json
import os
import signal
import subprocess
import tempfile
import unittest
from pathlib import Path

import harness

BENCH = harness.REPO / "bench"


def bench_env():
	return dict(os.environ, BUILD=str(harness.BUILD))


def run_bench(name, args, timeout):
	"""Run bench/NAME in its own session; (rc, stdout, stderr).  On overrun
	the whole session gets SIGTERM, the bench's own clean-up stops what it
	started."""
	p = subprocess.Popen([str(BENCH / name)] + args, stdout=subprocess.PIPE,
			     stderr=subprocess.PIPE, text=True, env=bench_env(),
			     stdin=subprocess.DEVNULL, start_new_session=True)
	before = set(Path("/var/tmp").glob("petrel-%s.*" % name))
	try:
		out, err = p.communicate(timeout=timeout)
	except subprocess.TimeoutExpired:
		os.killpg(p.pid, signal.SIGTERM)
		out, err = p.communicate(timeout=60)
		raise AssertionError("bench/%s overran %d s:\n%s\n%s" % (name, timeout, out, err))
	# Everything it started is gone, and so is its directory.
	left = children_of_session(p.pid)
	for pid in left:
		os.kill(pid, signal.SIGKILL)
	if left:
		raise AssertionError("bench/%s left processes %s" % (name, left))
	made = set(Path("/var/tmp").glob("petrel-%s.*" % name)) - before
	if made:
		raise AssertionError("bench/%s left %s" % (name, sorted(made)))
	return p.returncode, out, err


def children_of_session(sid):
	"""Pids whose session id is `sid` (what a bench started and left)."""
	left = []
	for d in os.listdir("/proc"):
		if not d.isdigit():
			continue
		try:
			f = Path("/proc/%s/stat" % d).read_text()
		except OSError:
			continue
		fields = f[f.rindex(")") + 2:].split()
		if int(fields[3]) == sid:
			left.append(int(d))
	return left


class Compare(unittest.TestCase):
	maxDiff = None

	@harness.bound(300)
	def test_smoke_every_column_has_numbers(self):
		for t in ("postfix", "smtp-sink"):
			harness.require_tool(t)
		with tempfile.TemporaryDirectory(prefix="petrel-compare-test-") as d:
			out_json = Path(d) / "compare.json"
			rc, out, err = run_bench("compare", [
				"--messages", "200", "--sessions", "4", "--size", "1024",
				"--timeout", "120", "--stall", "30", "--json", str(out_json)], 280)
			self.assertEqual(rc, 0, out + err)
			res = json.loads(out_json.read_text())
		lines = out.strip().splitlines()
		self.assertRegex(lines[-1], r"^relay: petrel/postfix \d+\.\d×, petrel/limit \d+\.\d\d$")
		self.assertRegex(out, r"scaling: petrel \d+ shards? / 1 shard \d+\.\d\d×")
		for what in ("idle", "under load", "under load, from when due"):
			self.assertRegex(out, r"p99 accept at \d+ msg/s \(half load\): petrel \d+\.\d\d ms; "
					 r"fdatasync p99 %s \d+\.\d\d ms \+ 5 ms = \d+\.\d\d ms: "
					 r"(within|over)" % what)
		self.assertRegex(out, r"fdatasync under that load \(a probe beside it, one 4 KiB sync due "
				 r"every 2 ms, \d+ samples\): each sync's own time p50 \d+\.\d\d ms, "
				 r"p99 \d+\.\d\d ms; from when it was due p50 \d+\.\d\d ms, "
				 r"p99 \d+\.\d\d ms")
		self.assertRegex(out, r"CPU per message: limit: petrel-gen \+ petrel-sink \d+\.\d µs; "
				 r"petrel column: petreld \d+\.\d µs, petrel-gen \+ petrel-sink \d+\.\d µs; "
				 r"with the \d+ CPUs shared and busy, petrel/limit <= [^=]+ = \d+\.\d\d")
		cb = res["cpu_bound"]
		self.assertAlmostEqual(cb["ratio"], cb["load_limit"] / (cb["relay"] + cb["load_relay"]))
		for r in res["rows"]:
			if "accepted" in r and r["column"] in ("limit", "petrel"):
				self.assertGreater(r["load_cpu_s_per_1k"], 0, r["column"])
		half = next(r for r in res["rows"] if r["column"] == "petrel-50")
		probe = half["fsync_under_load"]
		self.assertGreater(probe["n"], 0)
		# A sync is never done before it was due: from-due >= its own time.
		self.assertGreaterEqual(probe["arrival"]["p99_ms"], probe["p99_ms"] * 0.999)
		cols = [r["column"] for r in res["rows"]]
		self.assertEqual(cols, ["limit", "postfix", "opensmtpd", "petrel", "petrel-1",
					"petrel-50"])
		for r in res["rows"]:
			if r["column"] == "opensmtpd" and "unavailable" in r:
				harness.note("opensmtpd column not available: %s" % r["unavailable"])
				continue
			self.assertEqual(r["accepted"], 200, r)
			for k in ("accepted_per_s", "relayed_per_s", "p50_ms", "p99_ms",
				  "cpu_s_per_1k", "peak_rss_mib"):
				self.assertIsInstance(r[k], (int, float), (r["column"], k))
				self.assertGreater(r[k], 0, (r["column"], k))
		self.assertEqual(res["notes"], [n for n in res["notes"] if n.startswith("opensmtpd: ")])

	@harness.bound(60)
	def test_bad_column_is_refused(self):
		rc, out, err = run_bench("compare", ["--only", "limit,sendmail"], 50)
		self.assertEqual(rc, 2)
		self.assertIn("unknown column sendmail", err)


class Backlog(unittest.TestCase):
	@harness.bound(180)
	def test_smoke_small_backlog_drains(self):
		with tempfile.TemporaryDirectory(prefix="petrel-backlog-test-") as d:
			out_json = Path(d) / "backlog.json"
			rc, out, err = run_bench("backlog", [
				"--messages", "500", "--sessions", "4", "--size", "1500",
				"--timeout", "120", "--json", str(out_json)], 170)
			self.assertEqual(rc, 0, out + err)
			res = json.loads(out_json.read_text())
		self.assertEqual(res["accepted"], 500)
		for k in ("inject_msgs_per_s", "rss_kib", "peak_rss_kib", "spool_bytes",
			  "drain_msgs_per_s"):
			self.assertGreater(res[k], 0, k)
		# The backlog is on disk: at least the bodies.
		self.assertGreater(res["spool_bytes"], 500 * 1500)
		self.assertRegex(out, r"memory: peak RSS \d+\.\d MiB for a 500-message backlog")
