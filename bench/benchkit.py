"""benchkit.py -- what bench/compare and bench/backlog share: the processes
they start (petrel-sink, petrel-gen, petreld, a private Postfix, OpenSMTPD),
their measurement (CPU seconds and peak RSS of a process tree, the disk's
fdatasync latency) and clean-up.

Every process started here is registered in one list and stopped by its pid
(SIGTERM, a bounded wait, then SIGKILL) when the bench ends, fails or is
interrupted: Kit.close() runs from a `finally` and from SIGINT/SIGTERM.
Nothing is ever looked up or killed by name.

The private Postfix instance is bench/lib.sh's (postfix_config,
postfix_start, postfix_stop), called through bash so that one definition of
it serves every bench.
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = "/usr/bin/python3"


def build_dir():
	b = Path(os.environ.get("BUILD", "build"))
	return b if b.is_absolute() else REPO / b


def tool(name):
	"""build/NAME, or exit with what to do."""
	p = build_dir() / name
	if not os.access(p, os.X_OK):
		sys.exit("bench: %s missing; run make all" % p)
	return p


def free_port():
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def smtp_ready(port, timeout):
	"""True once 127.0.0.1:port greets with 220; False after `timeout` s."""
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		try:
			with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
				if s.recv(512).startswith(b"220"):
					s.sendall(b"QUIT\r\n")
					return True
		except OSError:
			pass
		time.sleep(0.1)
	return False


def proc_stat(pid):
	"""(ppid, cpu seconds of the process and its reaped children), or None."""
	try:
		raw = Path("/proc/%d/stat" % pid).read_text()
	except OSError:
		return None
	f = raw[raw.rindex(")") + 2:].split()
	tick = os.sysconf("SC_CLK_TCK")
	# fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
	return int(f[1]), sum(int(x) for x in f[11:15]) / tick


def proc_hwm_kb(pid):
	try:
		for line in Path("/proc/%d/status" % pid).read_text().splitlines():
			if line.startswith("VmHWM:"):
				return int(line.split()[1])
	except OSError:
		pass
	return 0


def proc_tree(root):
	"""(cpu seconds, summed peak RSS in KiB) of `root` and its descendants
	alive now.  Children that exited and were reaped count in their parent's
	cutime/cstime; their RSS is gone with them (a lower bound for a
	multi-process server, whose peaks also need not coincide)."""
	parent = {}
	for d in os.listdir("/proc"):
		if d.isdigit():
			st = proc_stat(int(d))
			if st:
				parent[int(d)] = st[0]
	tree, stack = [], [root]
	while stack:
		p = stack.pop()
		tree.append(p)
		stack.extend(c for c, pp in parent.items() if pp == p)
	cpu = sum((proc_stat(p) or (0, 0.0))[1] for p in tree)
	return cpu, sum(proc_hwm_kb(p) for p in tree)


def fsync_latency(directory, n=200, size=4096, name="fsync-probe"):
	"""p50 and p99 (ms) of write(4 KiB) + fdatasync on a file in `directory`,
	n samples back to back: what every durable 250 waits for at least once.
	(Under a load: FsyncProbe.)"""
	path = Path(directory) / name
	samples = []
	fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
	try:
		block = b"x" * size
		while len(samples) < n:
			t = time.perf_counter()
			os.write(fd, block)
			os.fdatasync(fd)
			samples.append((time.perf_counter() - t) * 1000)
	finally:
		os.close(fd)
		path.unlink()
	samples.sort()
	if not samples:
		return {"p50_ms": None, "p99_ms": None, "n": 0}
	return {"p50_ms": samples[len(samples) // 2], "p99_ms": samples[int(len(samples) * 0.99)],
		"n": len(samples)}


class FsyncProbe:
	"""bench/fsync_probe.py in a process of its own, for as long as a load
	runs beside it: the disk's fdatasync latency under that load, as each
	sync's own duration ("service": p50_ms, p99_ms, n) and from the moment
	it was due on a fixed 2 ms schedule ("arrival").  It runs at nice -10
	(root) so that the arrival figure is the disk's wait, not a wait for a
	CPU the load is using."""

	def __init__(self, kit, label="fsync-probe"):
		self.kit = kit
		self.label = label
		nice = -10 if os.geteuid() == 0 else 0
		self.proc = kit.spawn(label, [PY, REPO / "bench" / "fsync_probe.py", kit.dir], nice=nice)

	def stop(self):
		self.kit.stop(self.proc, 30)
		try:
			r = json.loads((self.kit.dir / ("%s.out" % self.label)).read_text().strip()
				       .splitlines()[-1])
		except (OSError, ValueError, IndexError):
			self.kit.log("%s: no result: %s" % (self.label, self.kit.tail(self.label)))
			return None
		out = dict(r["service"], n=r["n"])
		out["arrival"] = r["arrival"]
		out["interval_ms"] = r["interval_ms"]
		return out


class Kit:
	"""A bench run: its directory and every process it started."""

	def __init__(self, name, keep=False):
		self.name = name
		self.keep = keep
		# /var/tmp, not /tmp: the spools and queues must be on a real disk,
		# never tmpfs.  755 so Postfix's daemons (user postfix) reach below.
		self.dir = Path(tempfile.mkdtemp(prefix="petrel-%s." % name, dir="/var/tmp"))
		self.dir.chmod(0o755)
		self.procs = []		# [(label, Popen)]
		self.postfixes = []	# [Postfix] not yet stopped
		self.closed = False
		for sig in (signal.SIGINT, signal.SIGTERM):
			signal.signal(sig, self._on_signal)

	def _on_signal(self, signum, frame):
		print("%s: interrupted" % self.name, file=sys.stderr)
		self.close()
		sys.exit(130)

	def log(self, text):
		print("%s: %s" % (self.name, text), file=sys.stderr, flush=True)

	def spawn(self, label, argv, nice=0, **kw):
		"""Start argv with its output in the bench dir; `nice` lowers its
		scheduling priority (the load tools', so that on a machine they share
		with the system under test they do not take its CPU first)."""
		out = open(self.dir / ("%s.out" % label), "ab")
		err = open(self.dir / ("%s.err" % label), "ab")
		if nice:
			kw["preexec_fn"] = lambda: os.nice(nice)
		try:
			p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
					     stdout=kw.pop("stdout", out), stderr=err, **kw)
		finally:
			out.close()
			err.close()
		self.procs.append((label, p))
		return p

	def stop(self, p, timeout=10.0):
		"""SIGTERM, up to `timeout` s, then SIGKILL; returns the exit status."""
		if p.poll() is None:
			p.send_signal(signal.SIGTERM)
			try:
				p.wait(timeout)
			except subprocess.TimeoutExpired:
				self.log("pid %d still running after %.0f s, SIGKILL" % (p.pid, timeout))
				p.kill()
				p.wait()
		self.procs = [(l, q) for l, q in self.procs if q is not p]
		return p.returncode

	def tail(self, label, lines=20):
		try:
			text = (self.dir / ("%s.err" % label)).read_text(errors="replace")
		except OSError:
			return ""
		return "\n".join(text.splitlines()[-lines:])

	def close(self):
		if self.closed:
			return
		self.closed = True
		for _, p in reversed(self.procs):
			if p.poll() is None and p.returncode is None:
				try:
					os.kill(p.pid, signal.SIGCONT)	# a sink held down by SIGSTOP
				except OSError:
					pass
		for _, p in reversed(list(self.procs)):
			self.stop(p, 10.0)
		for pf in list(self.postfixes):
			pf.stop()
		if self.keep:
			self.log("kept %s" % self.dir)
		else:
			shutil.rmtree(self.dir, ignore_errors=True)


class Sink:
	"""build/petrel-sink on a loopback port, its counters in a status file."""

	def __init__(self, kit, label, args=(), nice=0):
		self.kit = kit
		self.port = free_port()
		self.status = kit.dir / ("%s.sink.json" % label)
		self.proc = kit.spawn(label + ".sink", [tool("petrel-sink"), "--listen",
							"127.0.0.1:%d" % self.port, "--status", self.status,
							"--json"] + list(args), nice=nice)
		if not smtp_ready(self.port, 10):
			sys.exit("bench: petrel-sink did not start:\n" + kit.tail(label + ".sink"))

	def counters(self):
		"""The sink's counters (it rewrites the file every 100 ms)."""
		try:
			return json.loads(self.status.read_text())
		except (OSError, ValueError):
			return {}

	def messages(self):
		return int(self.counters().get("messages", 0))

	def wait_for(self, count, timeout, stall):
		"""Wait until the sink has `count` messages: the CLOCK_MONOTONIC time
		(the sink's stamp) of the newest, or None after `timeout` s in all or
		`stall` s without growth."""
		deadline = time.monotonic() + timeout
		last, last_change = -1, time.monotonic()
		while time.monotonic() < deadline:
			c = self.counters()
			n = int(c.get("messages", 0))
			now = time.monotonic()
			if n >= count:
				return float(c["last_message_mono_s"])
			if n != last:
				last, last_change = n, now
			elif now - last_change > stall:
				return None
			time.sleep(0.02)
		return None

	def stop(self):
		self.kit.stop(self.proc, 5)
		return self.counters()


def gen(kit, label, port, messages, size, sessions, extra=(), timeout=600, nice=0):
	"""Run build/petrel-gen against 127.0.0.1:port and return its --json
	summary plus "t0" (CLOCK_MONOTONIC of its first connect) and "rc"."""
	argv = [tool("petrel-gen"), "--server", "127.0.0.1:%d" % port, "--messages", messages,
		"--size", size, "--sessions", sessions, "--timeout", timeout, "--json"] + list(extra)
	t0 = time.monotonic()
	ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
	p = kit.spawn(label + ".gen", argv, nice=nice, stdout=subprocess.PIPE)
	out, _ = p.communicate()
	ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
	kit.procs = [(l, q) for l, q in kit.procs if q is not p]
	try:
		res = json.loads(out)
	except ValueError:
		res = {}
	res["t0"] = float(res.get("first_connect_mono_s") or t0)
	res["rc"] = p.returncode
	# The generator is the only child reaped meanwhile: its CPU seconds.
	res["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
	if p.returncode != 0:
		kit.log("%s: petrel-gen exit status %d: %s" % (label, p.returncode,
							   kit.tail(label + ".gen", 5)))
	return res


def petrel_policy(kit, label, port, sink_port, connection_limit=32, egress_extra=""):
	"""A relay policy: everything to the sink as smart host, no TLS."""
	d = kit.dir / label
	d.mkdir(exist_ok=True)
	path = d / "relay.lua"
	path.write_text("""local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool{name='data', path='%(d)s/spool'}
  kumo.configure_local_logs{log_dir='%(d)s/log'}
  kumo.start_esmtp_listener{listen='127.0.0.1:%(port)d', relay_hosts={'127.0.0.1'},
    hostname='bench.petrel.test', max_message_size=20971520,
    max_recipients_per_message=1000, client_timeout='60s'}
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config{protocol={smtp={mx_list={'127.0.0.1'}}}}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path{smtp_port=%(sink)d, enable_tls='Disabled',
    connection_limit=%(limit)d%(extra)s}
end)
""" % {"d": d, "port": port, "sink": sink_port, "limit": connection_limit,
       "extra": (", " + egress_extra) if egress_extra else ""})
	return path


class Petrel:
	"""build/petreld with a relay policy."""

	def __init__(self, kit, label, sink_port, shards=None, **policy_kw):
		self.kit = kit
		self.label = label
		self.port = free_port()
		self.dir = kit.dir / label
		policy = petrel_policy(kit, label, self.port, sink_port, **policy_kw)
		argv = [tool("petreld"), "--policy", policy, "--log-level", "warn"]
		if shards:
			argv += ["--shards", shards]
		self.proc = kit.spawn(label, argv)
		if not smtp_ready(self.port, 30):
			sys.exit("bench: petreld did not start:\n" + kit.tail(label))
		self.pid = self.proc.pid

	def stop(self):
		rc = self.kit.stop(self.proc, 15)
		if rc != 0:
			self.kit.log("%s: petreld exit status %d after SIGTERM:\n%s"
				     % (self.label, rc, self.kit.tail(self.label)))
		return rc

	def spool_bytes(self):
		return sum(f.stat().st_size for f in (self.dir / "spool").rglob("*") if f.is_file())


class Postfix:
	"""A private Postfix instance (bench/lib.sh) relaying to a smart host."""

	def __init__(self, kit, label, relayhost_port, concurrency=32):
		self.kit = kit
		self.dir = kit.dir / label
		self.port = free_port()
		main_cf_extra = ("relayhost = [127.0.0.1]:%d\n"
				 "# As many connections to the smart host as petrel's connection_limit.\n"
				 "default_destination_concurrency_limit = %d\n" % (relayhost_port, concurrency))
		script = ('. "$REPO/bench/lib.sh"; postfix_config "$1" "$2" && printf "%s" "$3" '
			  '>>"$1/etc/main.cf" && postfix_start "$1" "$2"')
		self.started = True
		self.pid = None
		kit.postfixes.append(self)
		p = subprocess.run(["bash", "-c", script, "postfix", str(self.dir), str(self.port),
				    main_cf_extra],
				   env=dict(os.environ, REPO=str(REPO), BENCH=kit.name, PY=PY),
				   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
				   stderr=subprocess.PIPE, text=True, timeout=60)
		if p.returncode != 0:
			sys.exit("bench: private postfix did not start:\n" + p.stderr)
		self.pid = self.master_pid()

	def master_pid(self):
		try:
			return int((self.dir / "queue/pid/master.pid").read_text().strip())
		except (OSError, ValueError):
			return None

	def stop(self):
		"""Also after a start cut short: postfix_stop reads the pid file."""
		if not self.started:
			return
		self.started = False
		self.kit.postfixes.remove(self)
		subprocess.run(["bash", "-c", '. "$REPO/bench/lib.sh"; pf_dir=$1; pf_master=$2; '
				'postfix_stop', "postfix", str(self.dir), str(self.pid or "")],
			       env=dict(os.environ, REPO=str(REPO), BENCH=self.kit.name, PY=PY),
			       stdin=subprocess.DEVNULL, timeout=60)

	def delivered(self):
		try:
			return (self.dir / "maillog").read_text(errors="replace").count("status=sent")
		except OSError:
			return 0
