"""tuning/: the sysctl profiles, tuning/check and tuning/apply --dry-run,
run against a fake /proc/sys tree in a temp dir (never the real one:
every run passes --root or PETREL_SYSCTL_ROOT, and apply only ever runs
with --dry-run)."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import harness

TUNING = harness.REPO / "tuning"
HIGH_VOLUME = TUNING / "high-volume.conf"
SEED = TUNING / "kumomta-seed.conf"

# The values of https://docs.kumomta.com/userguide/operation/performance/
# ("Tuning sysctl.conf"), which kumomta-seed.conf must hold unchanged.
KUMO_DOCS = {
	"vm.max_map_count": "768000",
	"net.core.rmem_default": "32768",
	"net.core.wmem_default": "32768",
	"net.core.rmem_max": "262144",
	"net.core.wmem_max": "262144",
	"fs.file-max": "250000",
	"net.ipv4.ip_local_port_range": "5000 63000",
	"net.ipv4.tcp_tw_reuse": "1",
	"kernel.shmmax": "68719476736",
	"net.core.somaxconn": "1024",
	"vm.nr_hugepages": "20",
	"kernel.shmmni": "4096",
}

# Keys the issue names for Petrel's own profile.
HIGH_VOLUME_KEYS = {
	"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_tw_reuse", "fs.file-max", "fs.nr_open", "net.core.rmem_max",
	"net.core.wmem_max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
	"net.core.netdev_max_backlog", "vm.nr_hugepages", "vm.swappiness",
	"vm.dirty_background_bytes", "vm.dirty_bytes",
}


def profile_lines(path):
	"""[(line index, key, value)] of the `key = value` lines, parsed here
	independently of tuning/sysctl_profile.py."""
	out = []
	for i, line in enumerate(Path(path).read_text().splitlines()):
		s = line.strip()
		if s and s[0] not in "#;":
			key, _, value = s.partition("=")
			out.append((i, key.strip(), value.strip()))
	return out


def profile_values(path):
	return {k: v for _, k, v in profile_lines(path)}


def kernel_text(value):
	"""A value as the kernel prints it: fields tab-separated, newline."""
	return "\t".join(value.split()) + "\n"


def parse_table(stdout):
	"""{key: (current, wanted, status)} of check's table, and its last line.
	Columns are at least two spaces apart; values hold single spaces."""
	lines = stdout.splitlines()
	assert lines[0].startswith("# "), stdout
	assert re.split(r"\s{2,}", lines[1]) == ["key", "current", "wanted", "status"], stdout
	rows = {}
	for l in lines[2:-1]:
		cells = re.split(r"\s{2,}", l.rstrip())
		assert len(cells) == 4, "bad row %r in\n%s" % (l, stdout)
		rows[cells[0]] = tuple(cells[1:])
	return rows, lines[-1]


class TuningTest(unittest.TestCase):
	maxDiff = None

	def setUp(self):
		self.dir = Path(tempfile.mkdtemp(prefix="petrel-tuning-"))
		if not harness.KEEP:
			self.addCleanup(shutil.rmtree, self.dir, True)
		self.root = self.dir / "proc-sys"
		self.root.mkdir()

	def fake_tree(self, values):
		"""Write {dotted key: value} under self.root as the kernel would."""
		for key, value in values.items():
			p = self.root / key.replace(".", "/")
			p.parent.mkdir(parents=True, exist_ok=True)
			p.write_text(kernel_text(value))

	def snapshot(self):
		return {str(p.relative_to(self.root)): (p.read_bytes(), p.stat().st_mtime_ns)
			for p in sorted(self.root.rglob("*")) if p.is_file()}

	def run_tool(self, tool, *args, env_root=None):
		env = {k: v for k, v in os.environ.items() if k != "PETREL_SYSCTL_ROOT"}
		if env_root is not None:
			env["PETREL_SYSCTL_ROOT"] = str(env_root)
		p = subprocess.run([str(TUNING / tool)] + [str(a) for a in args], capture_output=True,
				   text=True, timeout=20, stdin=subprocess.DEVNULL, env=env,
				   cwd=str(self.dir))
		return p.returncode, p.stdout, p.stderr

	def write_profile(self, text):
		path = self.dir / "test.conf"
		path.write_text(text)
		return path


class Check(TuningTest):
	@harness.bound(30)
	def test_all_match_exits_0_and_every_row_ok(self):
		want = profile_values(HIGH_VOLUME)
		self.fake_tree(want)
		before = self.snapshot()
		rc, out, err = self.run_tool("check", "--root", self.root)	# default profile
		self.assertEqual(rc, 0, out + err)
		self.assertEqual(err, "")
		rows, last = parse_table(out)
		norm = {k: " ".join(v.split()) for k, v in want.items()}
		self.assertEqual(rows, {k: (v, v, "ok") for k, v in norm.items()})
		self.assertEqual(last, "%d keys: %d ok, 0 differ" % (len(want), len(want)))
		self.assertIn(str(HIGH_VOLUME), out.splitlines()[0])
		self.assertEqual(self.snapshot(), before, "check wrote to the tree")

	@harness.bound(30)
	def test_one_difference_exits_1_with_that_row_diff(self):
		want = profile_values(HIGH_VOLUME)
		self.fake_tree(dict(want, **{"net.core.somaxconn": "4096"}))
		rc, out, err = self.run_tool("check", "--root", self.root, HIGH_VOLUME)
		self.assertEqual(rc, 1, out + err)
		rows, last = parse_table(out)
		self.assertEqual(rows["net.core.somaxconn"], ("4096", "65535", "DIFF"))
		self.assertEqual([k for k, r in rows.items() if r[2] != "ok"], ["net.core.somaxconn"])
		self.assertEqual(last, "%d keys: %d ok, 1 differ" % (len(want), len(want) - 1))

	@harness.bound(30)
	def test_missing_key_is_absent_and_a_difference(self):
		want = profile_values(HIGH_VOLUME)
		self.fake_tree({k: v for k, v in want.items() if k != "vm.nr_hugepages"})
		(self.root / "vm/swappiness").unlink()
		(self.root / "vm/swappiness").mkdir()	# a key path that is not a file
		rc, out, err = self.run_tool("check", "--root", self.root, HIGH_VOLUME)
		self.assertEqual(rc, 1, out + err)
		rows, last = parse_table(out)
		self.assertEqual(rows["vm.nr_hugepages"], ("-", "512", "absent"))
		self.assertEqual(rows["vm.swappiness"], ("-", "10", "unreadable"))
		self.assertEqual(sorted(k for k, r in rows.items() if r[2] != "ok"),
				 ["vm.nr_hugepages", "vm.swappiness"])
		self.assertEqual(last, "%d keys: %d ok, 2 differ" % (len(want), len(want) - 2))

	@harness.bound(30)
	def test_multi_value_keys_compare_whitespace_normalised(self):
		prof = self.write_profile(
			"# receive buffers\n"
			"net.ipv4.tcp_rmem =   4096  87380\t6291456  \n"
			"# ports\n"
			"net/ipv4/ip_local_port_range=10240 65535\n"
			"# send buffers, one field differs\n"
			"net.ipv4.tcp_wmem = 4096 65536 16777216\n")
		self.fake_tree({"net.ipv4.ip_local_port_range": "10240 65535",
				"net.ipv4.tcp_wmem": "4096 16384 16777216"})
		(self.root / "net/ipv4/tcp_rmem").write_text("4096 \t 87380\t\t6291456\n")
		rc, out, err = self.run_tool("check", prof, env_root=self.root)	# root from the env
		self.assertEqual(rc, 1, out + err)
		rows, last = parse_table(out)
		self.assertEqual(rows, {
			"net.ipv4.tcp_rmem": ("4096 87380 6291456", "4096 87380 6291456", "ok"),
			"net/ipv4/ip_local_port_range": ("10240 65535", "10240 65535", "ok"),
			"net.ipv4.tcp_wmem": ("4096 16384 16777216", "4096 65536 16777216", "DIFF"),
		})
		self.assertEqual(last, "3 keys: 2 ok, 1 differ")

	@harness.bound(30)
	def test_seed_profile_found_by_name(self):
		self.fake_tree(KUMO_DOCS)
		rc, out, err = self.run_tool("check", "--root=%s" % self.root, "kumomta-seed.conf")
		self.assertEqual(rc, 0, out + err)
		rows, last = parse_table(out)
		self.assertEqual(rows, {k: (v, v, "ok") for k, v in KUMO_DOCS.items()})
		self.assertEqual(last, "12 keys: 12 ok, 0 differ")

	@harness.bound(30)
	def test_usage_errors_exit_2_with_a_message(self):
		missing = self.dir / "nope" / "profile.conf"
		rc, out, err = self.run_tool("check", "--root", self.root, missing)
		self.assertEqual((rc, out), (2, ""))
		self.assertEqual(err, "check: %s: no such profile\n" % missing)

		bad = self.write_profile("# fine\nnet.core.somaxconn = 1\nthis line has no equals sign\n")
		rc, out, err = self.run_tool("check", "--root", self.root, bad)
		self.assertEqual((rc, out), (2, ""))
		self.assertEqual(err, "check: %s:3: expected `key = value`, got "
				 "'this line has no equals sign'\n" % bad)

		rc, out, err = self.run_tool("check", "--root", self.dir / "no-such-root", HIGH_VOLUME)
		self.assertEqual((rc, out), (2, ""))
		self.assertEqual(err, "check: %s: not a directory (the sysctl root)\n"
				 % (self.dir / "no-such-root"))

		rc, out, err = self.run_tool("check", "--bogus")
		self.assertEqual((rc, out), (2, ""))
		self.assertEqual(err, "check: unknown option --bogus\n"
				 "usage: check [--root DIR] [PROFILE]\n")


class Apply(TuningTest):
	@harness.bound(30)
	def test_dry_run_prints_the_writes_and_changes_nothing(self):
		want = profile_values(HIGH_VOLUME)
		self.fake_tree(dict(want, **{"net.core.somaxconn": "4096",
					     "net.ipv4.tcp_rmem": "4096 131072 6291456"}))
		before = self.snapshot()
		rc, out, err = self.run_tool("apply", HIGH_VOLUME, "--dry-run", "--root", self.root)
		self.assertEqual(rc, 0, out + err)
		self.assertEqual(err, "")
		lines = out.splitlines()
		self.assertEqual(lines[0], "# dry run: %s into %s, nothing is written"
				 % (HIGH_VOLUME, self.root))
		writes = [l for l in lines if l.startswith("would write ")]
		self.assertEqual(writes, [
			"would write net.core.somaxconn = 65535  (%s, now 4096)"
			% (self.root / "net/core/somaxconn"),
			"would write net.ipv4.tcp_rmem = 4096 131072 16777216  (%s, now 4096 131072 6291456)"
			% (self.root / "net/ipv4/tcp_rmem"),
		])
		self.assertIn("unchanged vm.swappiness = 10", lines)
		self.assertEqual(len(lines), 1 + len(want))
		self.assertEqual(self.snapshot(), before, "--dry-run wrote to the tree")

	@harness.bound(30)
	def test_dry_run_reports_absent_keys_and_usage_errors(self):
		prof = self.write_profile("# present\nvm.swappiness = 10\n# missing, required\n"
					  "vm.nope = 1\n# missing, optional\n-vm.maybe = 2\n")
		self.fake_tree({"vm.swappiness": "60"})
		before = self.snapshot()
		rc, out, err = self.run_tool("apply", "--dry-run", prof, env_root=self.root)
		self.assertEqual(rc, 1, out + err)
		self.assertEqual(out.splitlines()[1:], [
			"would write vm.swappiness = 10  (%s, now 60)" % (self.root / "vm/swappiness"),
			"cannot write vm.nope: absent",
			"would skip vm.maybe (absent, optional)",
		])
		self.assertEqual(self.snapshot(), before)

		rc, out, err = self.run_tool("apply", "--dry-run")
		self.assertEqual((rc, out), (2, ""))
		self.assertEqual(err, "apply: which profile? (high-volume.conf or kumomta-seed.conf)\n"
				 "usage: apply PROFILE [--dry-run] [--root DIR]\n")
		rc, out, err = self.run_tool("apply", self.dir / "missing.conf", "--dry-run",
					     "--root", self.root)
		self.assertEqual((rc, out), (2, ""))
		self.assertEqual(err, "apply: %s: no such profile\n" % (self.dir / "missing.conf"))


class Profiles(unittest.TestCase):
	maxDiff = None

	def test_every_key_has_a_comment_line_directly_above(self):
		for path in (HIGH_VOLUME, SEED):
			lines = path.read_text().splitlines()
			entries = profile_lines(path)
			self.assertGreater(len(entries), 10, path)
			for i, key, value in entries:
				above = lines[i - 1].strip() if i > 0 else ""
				self.assertTrue(above.startswith("#") and len(above.lstrip("# ")) >= 8,
						"%s:%d: %s has no comment line above it" % (path.name, i + 1, key))
				self.assertNotEqual(value, "", "%s: %s has no value" % (path.name, key))

	def test_profiles_hold_the_expected_keys_once(self):
		for path in (HIGH_VOLUME, SEED):
			keys = [k for _, k, _ in profile_lines(path)]
			self.assertEqual(len(keys), len(set(keys)), "%s repeats a key" % path.name)
		self.assertEqual(profile_values(SEED), KUMO_DOCS)
		hv = profile_values(HIGH_VOLUME)
		self.assertEqual(HIGH_VOLUME_KEYS - set(hv), set())
		self.assertIn("docs.kumomta.com/userguide/operation/performance", SEED.read_text())
		# fs.nr_open must allow the unit's LimitNOFILE, or systemd cannot set it.
		unit = (TUNING / "petreld.service").read_text()
		nofile = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M).group(1)
		self.assertGreaterEqual(int(hv["fs.nr_open"]), int(nofile))
		# petreld listens with a backlog of 4096 (shard/shard.h) and warns below it.
		self.assertGreaterEqual(int(hv["net.core.somaxconn"]), 4096)

	@harness.bound(60)
	def test_unit_passes_systemd_analyze_verify(self):
		"""petreld.service as systemd reads it, with ExecStart pointing at the
		build (verify wants the binary to exist)."""
		tool = harness.require_tool("systemd-analyze")
		petreld = harness.petreld_path()
		with tempfile.TemporaryDirectory(prefix="petrel-unit-") as d:
			unit = Path(d) / "petreld.service"
			text = (TUNING / "petreld.service").read_text()
			self.assertEqual(text.count("/usr/local/sbin/petreld --"), 2)
			unit.write_text(text.replace("/usr/local/sbin/petreld", str(petreld)))
			p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
					   timeout=50, stdin=subprocess.DEVNULL)
		self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))


class StartupReport(harness.PetrelTest):
	"""What petreld says at start about memory and limits (item 5 of issue 5:
	large pages reported at start, a warning when RLIMIT_NOFILE is short).
	Each test runs in a child process of its own, so changing its environment
	and limits touches nothing else."""

	def started_stderr(self):
		d = self.env.start()
		text = d.stderr_text()
		d.stop()
		return text

	def test_large_pages_reported_on_and_off(self):
		os.environ.pop("MIMALLOC_LARGE_OS_PAGES", None)
		off = self.started_stderr()
		self.assertRegex(off, r"memory: mimalloc \d+\.\d+\.\d+, large OS pages off "
				 r"\(MIMALLOC_LARGE_OS_PAGES=1 turns them on\); -?\d+ huge pages "
				 r"reserved \(vm.nr_hugepages\), transparent huge pages \w+")
		os.environ["MIMALLOC_LARGE_OS_PAGES"] = "1"
		on = self.started_stderr()
		self.assertRegex(on, r"memory: mimalloc \d+\.\d+\.\d+, large OS pages on;")
		reserved = Path("/proc/sys/vm/nr_hugepages").read_text().split()[0]
		self.assertIn("; %s huge pages reserved" % reserved, on)

	def test_short_nofile_limit_warns(self):
		import resource
		resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))
		text = self.started_stderr()
		self.assertRegex(text, r"WARN: RLIMIT_NOFILE is 512, below the \d+ the listeners "
				 r"may need \(raise LimitNOFILE / ulimit -n\)")
