#!/usr/bin/python3
"""run.py -- run Petrel's end-to-end suite.

    /usr/bin/python3 tests/e2e/run.py [--build DIR] [-k PATTERN] [--list]

Discovers tests/e2e/test_*.py (unittest.TestCase classes), runs each test in
its own child process with a time bound (the test's @harness.bound, default
60 s), prints every test's name, result and time, and ends with exactly

    e2e: N passed, N failed

A skip counts as a failure unless it is a missing dependency (a SkipTest
whose reason starts with harness.MISSING_DEP); those are listed before the
summary.  Exit status 0 only when nothing failed.

A child that overruns its bound gets SIGTERM (the harness unwinds through
the test's cleanups, stopping its daemons), then, 10 s later, SIGKILL to its
process group: the child is started in a session of its own, so that group
holds only it and the daemons it started.
"""

import argparse
import fnmatch
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
from pathlib import Path

sys.dont_write_bytecode = True	# no __pycache__ in the source tree
HERE = Path(__file__).resolve().parent
DEFAULT_BOUND = 60

# Exit statuses of a child running one test.
RC_PASS, RC_FAIL, RC_SKIP_DEP, RC_SKIP = 0, 1, 3, 4
FAIL_TAIL = 6	# lines of each failure's output repeated in the closing summary


def discover():
	"""[(test id "module.Class.method", bound seconds)] in file order."""
	sys.path.insert(0, str(HERE))
	tests = []
	loader = unittest.TestLoader()
	for f in sorted(HERE.glob("test_*.py")):
		mod = importlib.import_module(f.stem)
		for name in dir(mod):
			cls = getattr(mod, name)
			if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
				continue
			if cls.__module__ != mod.__name__:
				continue
			for meth in loader.getTestCaseNames(cls):
				bound = getattr(getattr(cls, meth), "e2e_timeout", DEFAULT_BOUND)
				tests.append(("%s.%s.%s" % (mod.__name__, name, meth), bound))
	return tests


def run_one(test_id):
	"""Child side: run one test, print its failure, exit with a RC_* status."""
	sys.path.insert(0, str(HERE))
	suite = unittest.TestLoader().loadTestsFromName(test_id)
	result = unittest.TestResult()
	try:
		suite.run(result)
	except SystemExit as e:	# SIGTERM from the parent, raised outside the test body
		print("interrupted: %s" % e, file=sys.stderr)
		return RC_FAIL
	for test, tb in result.errors + result.failures:
		print(tb, file=sys.stderr)
	if result.errors or result.failures:
		return RC_FAIL
	if result.skipped:
		reason = result.skipped[0][1]
		print("skipped: " + reason)
		import harness
		return RC_SKIP_DEP if reason.startswith(harness.MISSING_DEP) else RC_SKIP
	if result.testsRun != 1:
		print("ran %d tests for %s" % (result.testsRun, test_id), file=sys.stderr)
		return RC_FAIL
	return RC_PASS


def run_child(test_id, bound, env):
	"""Parent side: (status word, seconds, output)."""
	with tempfile.TemporaryFile() as out:
		t0 = time.monotonic()
		p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--one", test_id],
				     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
				     env=env, start_new_session=True)
		status = None
		try:
			rc = p.wait(timeout=bound)
		except subprocess.TimeoutExpired:
			status = "TIMEOUT"
			os.kill(p.pid, signal.SIGTERM)
			try:
				p.wait(timeout=10)
			except subprocess.TimeoutExpired:
				pass
			try:
				os.killpg(p.pid, signal.SIGKILL)	# the child's own group, by its id
			except ProcessLookupError:
				pass
			p.wait()
			rc = RC_FAIL
		except KeyboardInterrupt:
			os.kill(p.pid, signal.SIGTERM)
			p.wait()
			raise
		secs = time.monotonic() - t0
		out.seek(0)
		text = out.read().decode(errors="replace")
	if status is None:
		status = {RC_PASS: "ok", RC_SKIP_DEP: "SKIP (dependency)", RC_SKIP: "SKIP"}.get(rc, "FAIL")
	if status == "TIMEOUT":
		text += "\ntest exceeded its bound of %ds\n" % bound
	return status, secs, text


def main():
	ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
	ap.add_argument("--build", default="build", help="build directory (default: build)")
	ap.add_argument("-k", action="append", default=[], help="run tests whose id matches this glob")
	ap.add_argument("--list", action="store_true", help="list the tests and exit")
	ap.add_argument("--one", help=argparse.SUPPRESS)
	args = ap.parse_args()

	if args.one:
		sys.exit(run_one(args.one))

	build = Path(args.build)
	if not build.is_absolute():
		build = (HERE.parent.parent / build).resolve()
	os.environ["PETREL_BUILD"] = str(build)
	tests = discover()
	if args.k:
		tests = [t for t in tests if any(fnmatch.fnmatch(t[0], "*%s*" % k) for k in args.k)]
	if args.list:
		for t, b in tests:
			print("%s (bound %ds)" % (t, b))
		return 0

	env = dict(os.environ)
	env["PYTHONDONTWRITEBYTECODE"] = "1"
	passed, failed, dep_skips, failures = 0, 0, [], []
	t_all = time.monotonic()
	print("e2e: %d tests, build %s" % (len(tests), build), flush=True)
	for test_id, bound in tests:
		status, secs, text = run_child(test_id, bound, env)
		print("%-70s %-8s %6.1fs" % (test_id, status, secs), flush=True)
		notes = [l for l in text.splitlines() if l.startswith("note: ")]
		for l in notes:
			print("    " + l)
		if status == "ok":
			passed += 1
		elif status == "SKIP (dependency)":
			dep_skips.append(test_id)
			for l in text.splitlines():
				if l.startswith("skipped: "):
					print("    " + l)
		else:
			failed += 1
			lines = [l for l in text.rstrip().splitlines() if not l.startswith("note: ")]
			for l in lines:
				print("    | " + l)
			failures.append((test_id, status, lines[-FAIL_TAIL:]))
		sys.stdout.flush()
	if dep_skips:
		print("e2e: %d skipped for a missing dependency: %s" % (len(dep_skips), " ".join(dep_skips)))
	# Failures again at the end, briefly: a CI log is often read from its tail.
	for test_id, status, tail in failures:
		print("e2e: %s %s" % (status, test_id))
		for l in tail:
			print("    | " + l)
	print("e2e: total %.1fs" % (time.monotonic() - t_all))
	print("e2e: %d passed, %d failed" % (passed, failed), flush=True)
	return 0 if failed == 0 else 1


if __name__ == "__main__":
	try:
		sys.exit(main())
	except KeyboardInterrupt:
		print("e2e: interrupted")
		sys.exit(130)
