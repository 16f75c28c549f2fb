"""The JSON log on disk: zstd-compressed segments per shard, rotated by
size (max_file_size) and age (max_segment_duration), closed at SIGTERM,
repaired at the start after a kill -9, and read by petrel-logs (cat, tail
-f) and by Debian's zstd command, a decoder nobody here wrote.

The harness reads the logs of every suite with python3-zstandard, a third
decoder, while petreld runs (the open segment included).

Run only these:  /usr/bin/python3 tests/e2e/run.py -k 'test_logs*'
"""

import json
import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import harness
from harness import REPLY_QUIT, make_message

SENDER = "sender@client.test"
LOGS_LINE = "petrel.configure_local_logs{log_dir=%s}"


def logs_tool():
	path = harness.logs_tool_path()
	if not path.exists():
		raise AssertionError("%s does not exist (build it with make all)" % path)
	return str(path)


def run_logs(*args, timeout=60):
	"""petrel-logs ARGS: (exit status, stdout, stderr) as text."""
	p = subprocess.run([logs_tool()] + [str(a) for a in args], capture_output=True,
			   timeout=timeout, stdin=subprocess.DEVNULL)
	return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def segments(log_dir):
	"""Every segment file of every shard, in petrel-logs' order: by name (the
	start time), then by shard."""
	out = []
	for d in Path(log_dir).iterdir():
		if d.is_dir() and d.name.isdigit():
			out += [(f.name, int(d.name), f) for f in d.iterdir()
				if f.is_file() and harness.SEGMENT_NAME_RE.match(f.name)]
	return [f for _, _, f in sorted(out)]


def shard_segments(log_dir, shard):
	d = Path(log_dir) / str(shard)
	return sorted(f for f in d.iterdir() if harness.SEGMENT_NAME_RE.match(f.name))


def writable(path):
	return os.stat(path).st_mode & 0o222 != 0


def zstd_test(path):
	"""`zstd -t`: (exit status, output) -- 0 for a whole frame."""
	p = subprocess.run([harness.require_tool("zstd"), "-t", "-q", str(path)],
			   capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
	return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def zstd_cat(path):
	p = subprocess.run([harness.require_tool("zstd"), "-dc", str(path)], capture_output=True,
			   timeout=60, stdin=subprocess.DEVNULL)
	if p.returncode != 0:
		raise AssertionError("zstd -dc %s: exit %d: %s" % (path, p.returncode, p.stderr))
	return p.stdout.decode()


def lines_of(text):
	return [ln for ln in text.split("\n") if ln]


class LineReader:
	"""Lines of a pipe, read by a thread, taken with a bound."""

	def __init__(self, stream):
		self.q = queue.Queue()
		self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
		self.t.start()

	def _run(self, stream):
		for line in iter(stream.readline, b""):
			self.q.put(line.decode(errors="replace").rstrip("\n"))
		self.q.put(None)

	def until(self, pred, timeout, what):
		"""Lines until pred(line) holds; all of them.  AssertionError after
		timeout seconds or at the end of the stream."""
		got = []
		deadline = time.monotonic() + timeout
		while True:
			left = deadline - time.monotonic()
			if left <= 0:
				raise AssertionError("timed out after %.0fs waiting for %s; got %r"
						     % (timeout, what, got))
			try:
				line = self.q.get(timeout=left)
			except queue.Empty:
				continue
			if line is None:
				raise AssertionError("stream ended while waiting for %s; got %r" % (what, got))
			got.append(line)
			if pred(line):
				return got


class LogSegments(harness.PetrelTest):
	def start(self, shards=2, **logs):
		"""petreld with configure_local_logs{log_dir, **logs} (the reception
		policy: recipients are deferred, nothing leaves the machine)."""
		text = harness.policy_source(listen="127.0.0.1:%d" % self.env.port,
					     spool=str(self.env.spool), log_dir=str(self.env.log_dir))
		opts = dict(log_dir=str(self.env.log_dir), **logs)
		old = LOGS_LINE % harness.lua_str(str(self.env.log_dir))
		self.assertIn(old, text)
		text = text.replace(old, "petrel.configure_local_logs%s" % harness.lua_value(opts))
		self.policy = self.env.write_policy(text=text)
		return self.env.start(self.policy, shards=shards)

	def send(self, n, size=None, sessions=1):
		"""n messages over `sessions` connections; their ids."""
		ids = []
		for s in range(sessions):
			c = self.env.connect()
			c.ehlo("logs.client.test")
			for i in range(s, n, sessions):
				ids.append(c.send_message(SENDER, ["r%d@example.com" % i],
							  make_message(subject="log %d" % i, size=size)))
			c.cmd("QUIT", REPLY_QUIT)
			c.close()
		return ids

	def receptions(self, recs):
		return sorted(r["id"] for r in recs if r.get("type") == "Reception")

	@harness.bound(90)
	def test_cat_and_zstd_read_the_same_records_nothing_lost_at_sigterm(self):
		"""Two shards, 40 messages over 8 connections, SIGTERM right after the
		last 250: every segment is a whole zstd frame and read-only; `petrel-logs
		cat DIR` prints exactly what `zstd -dc` of each segment in name order
		prints, and every accepted message has its one Reception record."""
		d = self.start(shards=2)
		ids = self.send(40, sessions=8)
		rc, _ = d.stop(timeout=10)
		self.assertEqual(rc, 0, d.stderr_tail())
		segs = segments(self.env.log_dir)
		self.assertTrue(segs, "no log segment")
		zstd_lines = []
		for s in segs:
			self.assertFalse(writable(s), "%s still writable after SIGTERM" % s)
			rc, out = zstd_test(s)
			self.assertEqual(rc, 0, "%s: %s" % (s, out))
			zstd_lines += lines_of(zstd_cat(s))
		rc, out, err = run_logs("cat", self.env.log_dir)
		self.assertEqual(rc, 0, err)
		self.assertEqual(err, "")
		self.assertEqual(lines_of(out), zstd_lines)
		recs = [json.loads(ln) for ln in zstd_lines]
		self.assertEqual(self.receptions(recs), sorted(ids))
		# The harness's decoder (python3-zstandard) agrees.
		self.assertEqual(sorted(json.dumps(r, sort_keys=True) for r in recs),
				 sorted(json.dumps(r, sort_keys=True)
					for r in harness.log_records(self.env.log_dir)))
		harness.note("%d records in %d segments of shards %s, %d bytes compressed"
			     % (len(recs), len(segs), sorted({s.parent.name for s in segs}),
				sum(s.stat().st_size for s in segs)))

	@harness.bound(90)
	def test_max_file_size_rotates_after_the_record_that_fills_a_segment(self):
		"""max_file_size = 4000: the shards write several segments each; each
		finished one holds at least 4000 uncompressed bytes and ends with the
		record that reached them; all of them together hold every record.
		(Which shard logs what depends on how the kernel spreads the
		connections, so the counts are over the shards that logged.)"""
		d = self.start(shards=2, max_file_size=4000)
		ids = self.send(30, size=1500, sessions=3)
		harness.wait_reception(self.env.log_dir, ids, timeout=20)
		rc, _ = d.stop(timeout=10)
		self.assertEqual(rc, 0, d.stderr_tail())
		all_recs = []
		counts = [len(shard_segments(self.env.log_dir, s)) for s in (0, 1)]
		self.assertGreaterEqual(max(counts), 5, counts)
		for shard in (0, 1):
			segs = shard_segments(self.env.log_dir, shard)
			for s in segs:
				rc, out = zstd_test(s)
				self.assertEqual(rc, 0, "%s: %s" % (s, out))
				text = zstd_cat(s)
				lines = lines_of(text)
				self.assertTrue(text.endswith("\n"), s)
				if s != segs[-1]:
					self.assertGreaterEqual(len(text.encode()), 4000, s)
					last = len(lines[-1].encode()) + 1
					self.assertLess(len(text.encode()) - last, 4000,
							"%s: went on after the record that filled it" % s)
				all_recs += [json.loads(ln) for ln in lines]
		self.assertEqual(self.receptions(all_recs), sorted(ids))
		harness.note("segments per shard: %s" % counts)

	@harness.bound(60)
	def test_max_segment_duration_closes_an_idle_segment(self):
		"""max_segment_duration = '1s': a segment holding one record is closed
		(read-only, a whole frame) by the timer while petreld runs and nothing
		else is logged; the next record starts a new segment."""
		self.start(shards=1, max_segment_duration="1s")
		first = self.send(1)
		harness.wait_reception(self.env.log_dir, first)
		segs = shard_segments(self.env.log_dir, 0)
		self.assertEqual(len(segs), 1, segs)
		harness.wait_for(lambda: not writable(segs[0]), 10, what="the segment to be closed")
		rc, out = zstd_test(segs[0])
		self.assertEqual(rc, 0, out)
		self.assertIn(first[0], zstd_cat(segs[0]))
		second = self.send(1)
		harness.wait_reception(self.env.log_dir, second)
		segs = shard_segments(self.env.log_dir, 0)
		self.assertGreaterEqual(len(segs), 2, segs)
		self.assertNotIn(second[0], zstd_cat(segs[0]))

	@harness.bound(60)
	def test_tail_follow_shows_records_written_after_it_started(self):
		"""`petrel-logs tail -f -n 1 DIR` prints the newest record, then a
		Reception logged after it started -- here in a segment of its own
		(max_file_size = 1 rotates after every record), so tail follows the
		rotation too; SIGTERM ends it with status 0."""
		self.start(shards=2, max_file_size=1)
		first = self.send(1)
		harness.wait_reception(self.env.log_dir, first)
		p = subprocess.Popen([logs_tool(), "tail", "-f", "-n", "1", str(self.env.log_dir)],
				     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
				     stdin=subprocess.DEVNULL)
		try:
			out = LineReader(p.stdout)
			got = out.until(lambda ln: first[0] in ln, 10, "the first record")
			self.assertEqual(len(got), 1, got)
			second = self.send(1)
			got = out.until(lambda ln: second[0] in ln and '"Reception"' in ln, 10,
					"the new Reception record")
			self.assertEqual(json.loads(got[-1])["id"], second[0])
		finally:
			p.send_signal(signal.SIGTERM)
			try:
				rc = p.wait(timeout=5)
			except subprocess.TimeoutExpired:
				p.kill()
				rc = p.wait(timeout=5)
		self.assertEqual(rc, 0, p.stderr.read().decode(errors="replace"))

	@harness.bound(90)
	def test_kill9_leaves_a_readable_segment_closed_at_the_next_start(self):
		"""After kill -9 the open segment has no frame end (zstd -t fails) but
		every record written before decodes (petrel-logs cat, status 0: the
		file is still writable, so it reads as open); the next start closes it
		after its last whole block and marks it done: zstd -t passes and no
		record is lost."""
		d = self.start(shards=1)
		ids = self.send(5)
		harness.wait_reception(self.env.log_dir, ids)
		d.kill9()
		segs = shard_segments(self.env.log_dir, 0)
		self.assertEqual(len(segs), 1, segs)
		self.assertTrue(writable(segs[0]))
		rc, out = zstd_test(segs[0])
		self.assertNotEqual(rc, 0, "an open segment has no frame end: %s" % out)
		rc, out, err = run_logs("cat", "--type", "Reception", self.env.log_dir)
		self.assertEqual(rc, 0, err)
		self.assertEqual(sorted(json.loads(ln)["id"] for ln in lines_of(out)), sorted(ids))
		d2 = self.start(shards=1)
		self.assertIn("log segment %s was left open" % segs[0], d2.stderr_text())
		self.assertFalse(writable(segs[0]))
		rc, out = zstd_test(segs[0])
		self.assertEqual(rc, 0, out)
		self.assertEqual(self.receptions(json.loads(ln) for ln in lines_of(zstd_cat(segs[0]))),
				 sorted(ids))

	@harness.bound(60)
	def test_petrel_logs_filters_and_reports_bad_segments(self):
		"""--type (comma list) and --id select records; tail without -f prints
		the newest N; a finished segment cut short or corrupt is reported by
		name with status 1 (the others are still printed); bad usage is 2."""
		d = self.start(shards=1)
		ids = self.send(3)
		harness.wait_records(self.env.log_dir, "TransientFailure", 3, timeout=30)
		rc, _ = d.stop(timeout=10)
		self.assertEqual(rc, 0, d.stderr_tail())
		rc, out, err = run_logs("cat", "--type", "Reception", self.env.log_dir)
		self.assertEqual((rc, err), (0, ""))
		self.assertEqual(sorted(json.loads(ln)["id"] for ln in lines_of(out)), sorted(ids))
		rc, out, err = run_logs("cat", "--type", "Reception,TransientFailure", "--id", ids[1],
					self.env.log_dir)
		self.assertEqual((rc, err), (0, ""))
		types = sorted(json.loads(ln)["type"] for ln in lines_of(out))
		self.assertIn("Reception", types)
		self.assertIn("TransientFailure", types)
		self.assertEqual({json.loads(ln)["id"] for ln in lines_of(out)}, {ids[1]})
		rc, out, err = run_logs("tail", "-n", "2", "--type", "Reception", self.env.log_dir)
		self.assertEqual((rc, err), (0, ""))
		self.assertEqual([json.loads(ln)["id"] for ln in lines_of(out)], ids[1:])
		# A finished segment cut short, and one with garbage: named, status 1.
		seg = shard_segments(self.env.log_dir, 0)[0]
		data = seg.read_bytes()
		short = seg.parent / "20000101-000000.000000001"
		short.write_bytes(data[:-2])
		short.chmod(0o440)
		bad = seg.parent / "20000101-000000.000000002"
		bad.write_bytes(data[:8] + b"\xff" * 40)
		bad.chmod(0o440)
		rc, out, err = run_logs("cat", "--type", "Reception", self.env.log_dir)
		self.assertEqual(rc, 1, err)
		self.assertIn(str(short), err)
		self.assertIn("cut short", err)
		self.assertIn(str(bad), err)
		self.assertIn("zstd", err)
		self.assertTrue(set(ids) <= {json.loads(ln)["id"] for ln in lines_of(out)}, out)
		for args in (["cat"], ["tail"], ["tail", "-n", "x", "d"], ["frob", "d"],
			     ["cat", "--type"]):
			rc, _, err = run_logs(*args)
			self.assertEqual(rc, 2, "%s: %s" % (args, err))
		rc, out, _ = run_logs("--help")
		self.assertEqual(rc, 0)
		self.assertIn("tail [-f]", out)
		self.assertTrue(re.search(r"--type T", out), out)

	@harness.bound(90)
	def test_a_full_disk_loses_counted_records_and_logging_resumes(self):
		"""The log on a 256 KiB tmpfs filled up: petreld keeps accepting mail,
		each failed write is logged with the records it lost, the segment is
		cut back and closed as a whole frame; once space returns (a second
		later at most) new records go to a new segment.  Every accepted
		message has its Reception unless a reported loss covers it."""
		fs = self.env.dir / "logfs"
		fs.mkdir()
		p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(fs)],
				   capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
		if p.returncode != 0:
			self.skipTest(harness.MISSING_DEP + "mounting a tmpfs (root): %s"
				      % p.stderr.decode(errors="replace").strip())
		self.addCleanup(subprocess.run, ["umount", "-l", str(fs)], timeout=30)
		self.env.log_dir = fs / "log"
		d = self.start(shards=1)
		before = self.send(3)
		harness.wait_reception(self.env.log_dir, before)
		filler = fs / "filler"
		fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
		try:	# take every free block
			while os.write(fd, b"\0" * 4096) > 0:
				pass
		except OSError:
			pass
		finally:
			os.close(fd)
		# Records of random recipients compress poorly: more than the page
		# the segment has left.
		during = []
		c = self.env.connect()
		c.ehlo("logs.client.test")
		for i in range(10):
			rcpts = ["r%016x@example.com" % random.getrandbits(64) for _ in range(20)]
			during.append(c.send_message(SENDER, rcpts, make_message(subject="full %d" % i)))
		c.cmd("QUIT", REPLY_QUIT)
		c.close()
		harness.wait_for(lambda: "records lost" in d.stderr_text(), 10,
				 what="a reported log write failure")
		filler.unlink()
		time.sleep(1.2)	# the hold before a new segment
		after = self.send(3)
		harness.wait_reception(self.env.log_dir, after, timeout=10)
		rc, _ = d.stop(timeout=10)
		self.assertEqual(rc, 0, d.stderr_tail())
		err = d.stderr_text()
		lost = sum(int(n) for n in re.findall(r"\((\d+) records lost\)", err))
		lost += sum(int(n) for n in re.findall(r"(\d+) records lost: no log segment", err))
		self.assertGreater(lost, 0, err)
		segs = shard_segments(self.env.log_dir, 0)
		self.assertGreaterEqual(len(segs), 2, segs)
		for s in segs:
			self.assertFalse(writable(s), s)
			rc, out = zstd_test(s)
			self.assertEqual(rc, 0, "%s: %s" % (s, out))
		got = set(self.receptions(json.loads(ln) for s in segs for ln in lines_of(zstd_cat(s))))
		self.assertTrue(set(before) <= got and set(after) <= got, (before, after, got))
		missing = set(during) - got
		self.assertLessEqual(len(missing), lost, (missing, lost))
		harness.note("%d records reported lost, %d of %d Receptions written while full missing"
			     % (lost, len(missing), len(during)))
