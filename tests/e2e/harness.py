"""harness.py -- the one helper module of Petrel's end-to-end suite.

Every e2e test starts the real build/petreld on loopback ports with a policy
written from the template below, talks to it with real clients (swaks,
Python's smtplib, raw sockets when exact bytes matter) and looks at what it
left behind with build/petrel-spool and the JSON reception logs.

What lives here, and why it is shared:

  * Env          one temp dir per test (policy, spool, logs, daemon stderr),
                 free loopback ports, the policy template; everything it
                 started is stopped and removed even when the test fails
                 (TestCase cleanups, then atexit as a last resort).
  * Petreld      a Popen of the daemon, kept by pid: start, wait ready
                 (bounded connect + greeting), SIGTERM then SIGKILL after a
                 bound, kill -9 for crash tests, stderr kept in a file and
                 shown when a test fails.
  * SMTPConn     a raw SMTP client over a socket (optionally TLS) that reads
                 replies exactly as sent, for byte-exact assertions.
  * spool_ls / spool_verify / spool_cat / spool_envelope   petrel-spool;
                 spool_segment_bytes, the size of each shard's segments.
  * reception_records / wait_for   the reception log, polled with a bound;
                 log_records / wait_records, any record type of the log;
                 log_segment_text, one zstd segment decoded (open or not).
  * delivery_policy_source   the delivering policy (KumoMTA names: queue
                 config, egress path, resolver) of the delivery suites, whose
                 fixtures live in dns.py (dnsmasq) and receivers.py.

Processes are only ever signalled by the pid of a Popen this module made.
Only the Python standard library and Debian's python3-zstandard (the log
segments are zstd frames; without the module, petrel-logs decodes them) are
used: the suite runs under Debian's /usr/bin/python3.
"""

import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("PETREL_BUILD", REPO / "build")).resolve()
KEEP = os.environ.get("PETREL_E2E_KEEP") == "1"	# keep temp dirs for debugging

HOSTNAME = "petrel.test"
GREETING = "220 %s ESMTP Petrel" % HOSTNAME
ACCEPT_RE = re.compile(r"^250 2\.0\.0 OK id=([0-9a-f]{32})$")
REPLY_SIZE = "552 5.3.4 message size exceeds fixed maximum message size"
REPLY_TOO_MANY_RCPTS = "452 4.5.3 too many recipients (100 max per message)"
REPLY_RELAY_DENIED = "550 5.7.1 relaying denied"
REPLY_BARE_CRLF = "550 5.6.0 message data contains a bare CR or LF (RFC 5321 2.3.8)"
REPLY_LINE_TOO_LONG = "500 5.5.0 line too long (512 octets max, RFC 5321 4.5.3.1.4)"
REPLY_POLICY_ERROR = "451 4.3.0 internal policy error"
REPLY_STARTTLS = "220 2.0.0 Ready to start TLS"
REPLY_QUIT = "221 2.0.0 %s closing connection" % HOSTNAME

MISSING_DEP = "missing dependency: "	# prefix of a SkipTest that run.py does not count as failed


def petreld_path():
	"""build/petreld; an AssertionError (a test failure) when it is not built."""
	path = BUILD / "petreld"
	if not path.exists():
		raise AssertionError("%s does not exist (build it with make all)" % path)
	return path


def spool_tool_path():
	return BUILD / "petrel-spool"


def logs_tool_path():
	return BUILD / "petrel-logs"


def validate(policy, cwd, env=None):
	"""`petreld --validate --policy policy` run in cwd: (exit status, stdout
	and stderr as text)."""
	p = subprocess.run([str(petreld_path()), "--validate", "--policy", str(policy)],
			   capture_output=True, timeout=60, cwd=str(cwd), stdin=subprocess.DEVNULL,
			   env=env)
	return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def note(text):
	"""A line run.py shows under the test's name whether it passed or not."""
	print("note: " + text, flush=True)


def require_tool(name):
	"""Skip (as a missing dependency, not a failure) when a program is absent."""
	path = shutil.which(name)
	if path is None:
		raise unittest.SkipTest(MISSING_DEP + name)
	return path


def bound(seconds):
	"""Decorator: the time bound run.py gives this test (default 60 s)."""
	def mark(fn):
		fn.e2e_timeout = seconds
		return fn
	return mark


def wait_for(pred, timeout, interval=0.05, what="condition"):
	"""Poll pred() until it returns something truthy; return it.  Raise
	AssertionError after timeout seconds."""
	deadline = time.monotonic() + timeout
	while True:
		v = pred()
		if v:
			return v
		if time.monotonic() >= deadline:
			raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
		time.sleep(interval)


# ---------------------------------------------------------------------------
# Cleanup of last resort.  Tests stop what they start through cleanups; this
# catches what an interrupted test (run.py's SIGTERM on timeout) left behind.

_live_daemons = []	# Petreld objects whose process may still run
_temp_dirs = []


def _cleanup_all():
	for d in list(_live_daemons):
		d.kill_hard()
	if not KEEP:
		for t in _temp_dirs:
			shutil.rmtree(t, ignore_errors=True)


atexit.register(_cleanup_all)


def _on_sigterm(signum, frame):
	# run.py sends SIGTERM when a test overruns its bound: unwind through the
	# test's finally blocks and cleanups, then atexit.
	raise SystemExit("terminated by signal %d (test time bound exceeded)" % signum)


if threading.current_thread() is threading.main_thread():
	signal.signal(signal.SIGTERM, _on_sigterm)


def free_port(host="127.0.0.1"):
	"""A TCP port nobody listens on now (the kernel's choice, so two tests
	never pick the same one by accident)."""
	with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
		s.bind((host, 0))
		return s.getsockname()[1]


def port_in_use(port, host="127.0.0.1"):
	with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
		s.settimeout(1)
		return s.connect_ex((host, port)) == 0


def lua_str(s):
	"""A Lua string literal for s."""
	return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ---------------------------------------------------------------------------
# Policy template.

DEFAULT_MESSAGE_HOOK = r"""
petrel.on('smtp_server_message_received', function(msg)
  local subject = msg:get_first_named_header_value('Subject') or ''
  if subject:find('reject-me', 1, true) then
    petrel.reject(550, '5.7.1 rejected by policy')
  end
  if subject:find('lua-error', 1, true) then
    error('e2e deliberate runtime error')
  end
  if subject:find('policy-api', 1, true) then
    local sender = tostring(msg:sender())
    msg:set_meta('e2e_tag', 'blue')
    msg:set_meta('e2e_copy', msg:get_meta('e2e_tag') .. '-copy')
    msg:set_meta('e2e_sender', sender)
    msg:set_meta('e2e_rcpts', #msg:recipient_list())
    msg:set_meta('e2e_first_rcpt', tostring(msg:recipient_list()[1]))
    msg:set_meta('e2e_has_marker', msg:get_data():find('MARKER-42', 1, true) ~= nil)
    msg:append_header('X-E2E-Policy', 'seen ' .. sender)
  end
end)
"""


# Where the reception tests' resolver points: a loopback address no test
# serves and the discard port, so no other test's dnsmasq can answer it (a
# free port taken at policy time could be, on a machine running tests side
# by side, and an NXDOMAIN bounces the test's messages out of the spool).
DEAD_RESOLVER = "127.0.0.253:9"


def policy_source(*, listen, spool, log_dir, hostname=HOSTNAME, relay_hosts=("127.0.0.1",),
		  max_message_size=20971520, max_recipients=100, client_timeout="60s",
		  data_timeout="300s", max_connections=32768, message_hook=DEFAULT_MESSAGE_HOOK):
	"""The reception tests' policy.  Petreld delivers what it accepts, so
	its resolver points at a loopback port nobody answers on: the recipients
	of these tests are deferred (TransientFailure) and nothing leaves the
	machine."""
	relay = ", ".join(lua_str(h) for h in relay_hosts)
	return """local petrel = require 'petrel'

petrel.on('init', function()
  petrel.dns.configure_resolver{name_servers={%(dns)s}}
  petrel.define_spool{name='data', path=%(spool)s}
  petrel.configure_local_logs{log_dir=%(log)s}
  petrel.start_esmtp_listener{
    listen=%(listen)s,
    relay_hosts={%(relay)s},
    hostname=%(host)s,
    max_message_size=%(size)d,
    max_recipients_per_message=%(rcpts)d,
    client_timeout=%(timeout)s,
    data_timeout=%(data_timeout)s,
    max_connections=%(conns)d,
  }
end)
%(hook)s""" % {
		"spool": lua_str(spool), "log": lua_str(log_dir), "listen": lua_str(listen),
		"relay": relay, "host": lua_str(hostname), "size": max_message_size,
		"rcpts": max_recipients, "timeout": lua_str(client_timeout), "hook": message_hook,
		"conns": max_connections, "data_timeout": lua_str(data_timeout),
		"dns": lua_str(DEAD_RESOLVER),
	}


def lua_value(v):
	"""A Lua literal for a Python value: str, int, float, bool, None (nil), a
	list (array) or a dict (a table: identifier keys as they are, other
	string keys as ["key"], e.g. header names)."""
	if v is None:
		return "nil"
	if isinstance(v, bool):
		return "true" if v else "false"
	if isinstance(v, (int, float)):
		return repr(v)
	if isinstance(v, str):
		return lua_str(v)
	if isinstance(v, (list, tuple)):
		return "{" + ", ".join(lua_value(x) for x in v) + "}"
	if isinstance(v, dict):
		def key(k):
			if not isinstance(k, str):
				raise ValueError("Lua table key %r is not a string" % (k,))
			return k if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) else "[%s]" % lua_str(k)
		return "{" + ", ".join("%s=%s" % (key(k), lua_value(x)) for k, x in v.items()) + "}"
	raise TypeError("no Lua literal for %r" % (v,))


# Queue defaults of the delivery tests: retries come quickly (KumoMTA's
# defaults are 20 min doubling, 7 days).
DELIVERY_QUEUE = {"retry_interval": "1s", "max_retry_interval": "2s", "max_age": "1 hour"}
DELIVERY_EGRESS = {"enable_tls": "OpportunisticInsecure"}


def delivery_policy_source(*, listen, spool, log_dir, dns_port, queue=None, egress=None,
			   queue_by_domain=None, egress_by_site=None, hostname=HOSTNAME,
			   relay_hosts=("127.0.0.1",), max_recipients=1000, listener=None,
			   message_hook="", http_listener=None):
	"""A delivering policy in KumoMTA's names (require 'kumo'):

	  * init: spool, local logs, an ESMTP listener on `listen` relaying for
	    relay_hosts, the resolver at 127.0.0.1:dns_port (dnsmasq);
	  * get_queue_config: make_queue_config{DELIVERY_QUEUE updated by queue},
	    or, for a domain in queue_by_domain, the same updated by its dict
	    (e.g. {"protocol": {"smtp": {"mx_list": ["127.0.0.5"]}}});
	  * get_egress_path_config: make_egress_path{DELIVERY_EGRESS updated by
	    egress} (egress carries smtp_port, the receivers' port), or, for a
	    site_name in egress_by_site, the same updated by its dict.

	Values are Python values rendered with lua_value; `listener` adds fields
	to start_esmtp_listener; `http_listener` (a dict) adds
	kumo.start_http_listener{...} to init."""
	q = dict(DELIVERY_QUEUE, **(queue or {}))
	e = dict(DELIVERY_EGRESS, **(egress or {}))
	lst = {"listen": listen, "relay_hosts": list(relay_hosts), "hostname": hostname,
	       "max_recipients_per_message": max_recipients}
	lst.update(listener or {})
	queue_cases = "".join(
		"  if domain == %s then\n    return kumo.make_queue_config%s\n  end\n"
		% (lua_str(d), lua_value(dict(q, **over)))
		for d, over in (queue_by_domain or {}).items())
	egress_cases = "".join(
		"  if site_name == %s then\n    return kumo.make_egress_path%s\n  end\n"
		% (lua_str(site), lua_value(dict(e, **over)))
		for site, over in (egress_by_site or {}).items())
	return """local kumo = require 'kumo'

kumo.on('init', function()
  kumo.define_spool{name='data', path=%(spool)s}
  kumo.configure_local_logs{log_dir=%(log)s}
  kumo.start_esmtp_listener%(listener)s
%(http)s  kumo.dns.configure_resolver{name_servers={%(ns)s}}
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
%(queue_cases)s  return kumo.make_queue_config%(queue)s
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
%(egress_cases)s  return kumo.make_egress_path%(egress)s
end)
%(hook)s""" % {
		"spool": lua_str(spool), "log": lua_str(log_dir), "listener": lua_value(lst),
		"ns": lua_str("127.0.0.1:%d" % dns_port), "queue_cases": queue_cases,
		"queue": lua_value(q), "egress_cases": egress_cases, "egress": lua_value(e),
		"hook": message_hook,
		"http": ("  kumo.start_http_listener%s\n" % lua_value(http_listener)
			 if http_listener is not None else ""),
	}


# ---------------------------------------------------------------------------
# A process a test started and the cleanup of last resort knows.

class LiveProcess:
	"""What a test's server process (petreld, petrel-sink) shares: `proc` (a
	Popen, or None before it starts) and `signalled`; kill_hard is what
	_cleanup_all calls for every object in _live_daemons."""

	def running(self):
		return self.proc is not None and self.proc.poll() is None

	def kill_hard(self):
		if self.running():
			self.signalled = True
			os.kill(self.proc.pid, signal.SIGKILL)
		if self.proc is not None:
			try:
				self.proc.wait(timeout=10)
			except subprocess.TimeoutExpired:
				pass
		self._forget()

	def _forget(self):
		if self in _live_daemons and not self.running():
			_live_daemons.remove(self)


# ---------------------------------------------------------------------------
# The daemon.

class Petreld(LiveProcess):
	"""One petreld process.  Signalled only through its own pid."""

	def __init__(self, policy, *, workdir, port, host="127.0.0.1", shards=None,
		     log_level="info", cwd=None, extra_args=()):
		self.policy = str(policy)
		self.port = port
		self.host = host
		self.cwd = str(cwd or workdir)
		n = len(list(Path(workdir).glob("petreld-*.stderr")))
		self.stderr_path = Path(workdir) / ("petreld-%d.stderr" % n)
		self.argv = [str(petreld_path()), "--policy", self.policy, "--log-level", log_level]
		if shards is not None:
			self.argv += ["--shards", str(shards)]
		self.argv += list(extra_args)
		self.proc = None
		self.expect_death = False	# set by kill9: the cleanup must not complain
		self.signalled = False

	@property
	def pid(self):
		return self.proc.pid

	def start(self, ready_timeout=20.0):
		err = open(self.stderr_path, "ab")
		try:
			self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
						     stdout=err, stderr=err)
		finally:
			err.close()
		_live_daemons.append(self)
		self.wait_ready(ready_timeout)
		return self

	def wait_ready(self, timeout):
		"""Ready when a connection gets the 220 greeting.  Bounded."""
		deadline = time.monotonic() + timeout
		last = None
		while time.monotonic() < deadline:
			if self.proc.poll() is not None:
				raise AssertionError("petreld exited with status %d before it was ready:\n%s"
						     % (self.proc.returncode, self.stderr_tail()))
			try:
				with socket.create_connection((self.host, self.port), timeout=2) as s:
					s.settimeout(max(0.5, deadline - time.monotonic()))
					data = b""
					while b"\r\n" not in data:
						chunk = s.recv(512)
						if not chunk:
							break
						data += chunk
					if data.startswith(b"220 "):
						return
					last = data
			except OSError as e:
				last = e
			time.sleep(0.05)
		raise AssertionError("petreld not ready on %s:%d after %.0fs (last: %r):\n%s"
				     % (self.host, self.port, timeout, last, self.stderr_tail()))

	def signal(self, sig):
		if self.running():
			self.signalled = True
			os.kill(self.proc.pid, sig)

	def wait_exit(self, timeout):
		"""Return the exit status, or None if still running after timeout."""
		try:
			return self.proc.wait(timeout=timeout)
		except subprocess.TimeoutExpired:
			return None

	def stop(self, timeout=5.0):
		"""SIGTERM, wait up to timeout, then SIGKILL.  Returns (status, seconds)
		where status is the exit status after SIGTERM, or None when it had to
		be killed."""
		t0 = time.monotonic()
		if not self.running():
			return self.proc.returncode, 0.0
		self.signal(signal.SIGTERM)
		rc = self.wait_exit(timeout)
		elapsed = time.monotonic() - t0
		if rc is None:
			self.kill_hard()
		self._forget()
		return rc, elapsed

	def kill9(self):
		"""A crash: SIGKILL, wait for it to be gone."""
		self.expect_death = True
		self.kill_hard()

	def stderr_text(self):
		try:
			return self.stderr_path.read_text(errors="replace")
		except OSError:
			return ""

	def stderr_tail(self, lines=60):
		text = self.stderr_text().splitlines()
		return "\n".join(["--- %s (last %d lines) ---" % (self.stderr_path.name, lines)]
				 + text[-lines:])

	def cleanup_check(self):
		"""Stop (if needed) at the end of a test; complain if it died on its own
		or did not exit 0 on SIGTERM."""
		if self.proc is None:
			return
		died_alone = not self.running() and not self.signalled
		rc, _ = self.stop(timeout=10)
		if self.expect_death:
			return
		if died_alone:
			raise AssertionError("petreld died during the test with status %s:\n%s"
					     % (self.proc.returncode, self.stderr_tail()))
		if rc != 0:
			raise AssertionError("petreld exit status %s after SIGTERM (want 0):\n%s"
					     % (rc, self.stderr_tail()))


# ---------------------------------------------------------------------------
# A private RabbitMQ broker (Debian's rabbitmq-server) for the AMQP tests.

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"	# the script /usr/sbin's wrapper su's to


def _descendants(pid):
	"""Pids of every live process below pid (from /proc: each process's ppid)."""
	children = {}
	for d in Path("/proc").iterdir():
		if not d.name.isdigit():
			continue
		try:
			stat = (d / "stat").read_text()
		except OSError:
			continue
		ppid = int(stat[stat.rindex(")") + 2:].split()[1])
		children.setdefault(ppid, []).append(int(d.name))
	found, todo = [], [pid]
	while todo:
		for c in children.get(todo.pop(), []):
			found.append(c)
			todo.append(c)
	return found


def _pid_alive(pid):
	"""True while pid exists and is not a zombie."""
	try:
		stat = Path("/proc/%d/stat" % pid).read_text()
	except OSError:
		return False
	return stat[stat.rindex(")") + 2] != "Z"


class RabbitMQ(LiveProcess):
	"""A rabbitmq-server of the test's own on 127.0.0.1: its own epmd (started
	here, in the foreground, on a free loopback port), node name, cookie,
	config, mnesia and log dirs under workdir/rabbitmq, the AMQP and Erlang
	distribution ports on loopback only, no plugin.  start() waits (bounded)
	until the AMQP port answers; stop() sends SIGTERM to the server script
	we started (it stops the node) and waits for it and every process it
	started; restart() is stop() + start() on the same mnesia dir, so
	durable queues and their persistent messages survive.  close() stops
	the broker, then epmd.  Skips the test (a missing dependency) without
	rabbitmq-server.  config: lines added to its rabbitmq.conf.  Here a
	start takes 7-15 s and a stop 1-3 s."""

	_count = 0

	def __init__(self, workdir, config=""):
		if not os.path.exists(RABBITMQ_SERVER) or shutil.which("epmd") is None:
			raise unittest.SkipTest(MISSING_DEP + "rabbitmq-server")
		RabbitMQ._count += 1
		self.dir = Path(workdir) / ("rabbitmq-%d" % RabbitMQ._count)
		for sub in ("home", "mnesia", "log"):
			(self.dir / sub).mkdir(parents=True, exist_ok=True)
		self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
		self.nodename = "petrel-test-%d-%d@localhost" % (os.getpid(), RabbitMQ._count)
		(self.dir / "rabbitmq.conf").write_text(
			"listeners.tcp.default = 127.0.0.1:%d\n%s" % (self.port, config))
		(self.dir / "enabled_plugins").write_text("[].\n")
		(self.dir / "rabbitmq-env.conf").write_text("")
		cookie = self.dir / "home" / ".erlang.cookie"
		cookie.write_text("petrel%016x" % random.getrandbits(64))
		cookie.chmod(0o400)
		self.out_path = self.dir / "server.out"
		self.proc = None
		self.epmd = None
		self.signalled = False
		self.start_seconds = self.stop_seconds = None

	@property
	def url(self):
		return "amqp://guest:guest@127.0.0.1:%d/" % self.port

	def env(self):
		env = dict(os.environ)
		env.update({
			"HOME": str(self.dir / "home"),
			"ERL_EPMD_PORT": str(self.epmd_port),
			"ERL_EPMD_ADDRESS": "127.0.0.1",
			"RABBITMQ_NODENAME": self.nodename,
			"RABBITMQ_USE_LONGNAME": "false",
			"RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
			"RABBITMQ_NODE_PORT": str(self.port),
			"RABBITMQ_DIST_PORT": str(self.dist_port),
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
			"RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),	# .conf added by the server
			"RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
			"RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
			"RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
			"RABBITMQ_LOG_BASE": str(self.dir / "log"),
			"RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
		})
		return env

	def _start_epmd(self):
		if self.epmd is not None and self.epmd.poll() is None:
			return
		self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port), "-address",
					      "127.0.0.1"], stdin=subprocess.DEVNULL,
					     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
		if self not in _live_daemons:
			_live_daemons.append(self)
		wait_for(lambda: port_in_use(self.epmd_port), 10, what="epmd on port %d" % self.epmd_port)

	def start(self, timeout=90):
		"""Start the broker; return once its AMQP port accepts connections."""
		t0 = time.monotonic()
		self._start_epmd()
		out = open(self.out_path, "ab")
		try:
			self.proc = subprocess.Popen([RABBITMQ_SERVER], cwd=str(self.dir), env=self.env(),
						     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
		finally:
			out.close()
		self.signalled = False

		def up():
			if self.proc.poll() is not None:
				raise AssertionError("rabbitmq-server exited with status %d:\n%s"
						     % (self.proc.returncode, self.output_tail()))
			return port_in_use(self.port)
		wait_for(up, timeout, interval=0.2, what="rabbitmq-server on port %d" % self.port)
		self.start_seconds = time.monotonic() - t0
		return self

	def stop(self, timeout=60):
		"""Stop the node (SIGTERM to the script: it stops the node cleanly) and
		wait for every process it started; SIGKILL what outlives timeout."""
		if not self.running():
			return
		t0 = time.monotonic()
		below = _descendants(self.proc.pid)
		self.signalled = True
		os.kill(self.proc.pid, signal.SIGTERM)
		try:
			self.proc.wait(timeout=timeout)
		except subprocess.TimeoutExpired:
			pass
		deadline = time.monotonic() + 10
		while any(_pid_alive(p) for p in below) and time.monotonic() < deadline:
			time.sleep(0.1)
		self._kill_pids([self.proc.pid] + below)
		self.stop_seconds = time.monotonic() - t0

	def restart(self, timeout=90):
		self.stop()
		return self.start(timeout)

	def close(self):
		"""Stop the broker, then epmd; nothing of ours is left running."""
		self.stop()
		if self.epmd is not None and self.epmd.poll() is None:
			self.epmd.terminate()
			try:
				self.epmd.wait(timeout=10)
			except subprocess.TimeoutExpired:
				self.epmd.kill()
				self.epmd.wait(timeout=10)
		if self in _live_daemons:
			_live_daemons.remove(self)

	def running(self):
		return self.proc is not None and self.proc.poll() is None

	def _kill_pids(self, pids):
		for p in pids:
			if _pid_alive(p):
				try:
					os.kill(p, signal.SIGKILL)
				except ProcessLookupError:
					pass
		if self.proc is not None and self.proc.poll() is None:
			self.proc.wait(timeout=10)

	def kill_hard(self):
		"""Last resort (harness cleanup): SIGKILL the server, what it started,
		and epmd, by pid."""
		if self.running():
			self._kill_pids([self.proc.pid] + _descendants(self.proc.pid))
		if self.epmd is not None and self.epmd.poll() is None:
			self.epmd.kill()
			self.epmd.wait(timeout=10)
		if self in _live_daemons:
			_live_daemons.remove(self)

	def output_tail(self, lines=40):
		try:
			text = self.out_path.read_text(errors="replace").splitlines()
		except OSError:
			text = []
		return "\n".join(["--- %s (last %d lines) ---" % (self.out_path, lines)] + text[-lines:])


# ---------------------------------------------------------------------------
# A raw SMTP client: exact bytes out, exact replies in.

class Reply:
	def __init__(self, code, lines):
		self.code = code
		self.lines = lines	# full lines, e.g. ["250-petrel.test", "250 SMTPUTF8"]

	@property
	def line(self):
		"""The last (for one-line replies: the only) line, e.g. "250 2.1.0 OK"."""
		return self.lines[-1]

	@property
	def texts(self):
		return [l[4:] for l in self.lines]

	def __repr__(self):
		return "Reply(%r)" % (self.lines,)


class SMTPConn:
	def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0):
		src = (source, 0) if source else None
		self.sock = socket.create_connection((host, port), timeout=timeout, source_address=src)
		self.timeout = timeout
		self.buf = b""

	def close(self):
		try:
			self.sock.close()
		except OSError:
			pass

	def __enter__(self):
		return self

	def __exit__(self, *exc):
		self.close()

	def send(self, data):
		if isinstance(data, str):
			data = data.encode()
		self.sock.sendall(data)

	def _fill(self):
		chunk = self.sock.recv(65536)
		if not chunk:
			raise ConnectionError("server closed the connection (unread: %r)" % self.buf)
		self.buf += chunk

	def read_line(self):
		while b"\r\n" not in self.buf:
			self._fill()
		line, self.buf = self.buf.split(b"\r\n", 1)
		return line.decode("utf-8", errors="replace")

	def read_reply(self):
		lines = []
		while True:
			line = self.read_line()
			if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
				raise AssertionError("malformed reply line %r (after %r)" % (line, lines))
			lines.append(line)
			if len(line) == 3 or line[3] == " ":
				return Reply(int(line[:3]), lines)

	def expect(self, line):
		"""Read one reply and assert its last line is exactly `line` (a full
		"250 2.1.0 OK"), or, for a 3-digit string, just its code."""
		r = self.read_reply()
		if len(line) == 3:
			if r.code != int(line):
				raise AssertionError("want code %s, got %r" % (line, r.lines))
		elif r.line != line:
			raise AssertionError("want %r, got %r" % (line, r.lines))
		return r

	def cmd(self, command, want):
		self.send(command + "\r\n")
		return self.expect(want)

	def expect_accept(self):
		"""Read the end-of-data reply; assert "250 2.0.0 OK id=<32 hex>"; return the id."""
		r = self.read_reply()
		m = ACCEPT_RE.match(r.line)
		if not m or len(r.lines) != 1:
			raise AssertionError("want '250 2.0.0 OK id=<32 hex>', got %r" % (r.lines,))
		return m.group(1)

	def assert_silent(self, wait=0.5):
		"""Nothing more has arrived nor arrives within `wait` seconds."""
		if self.buf:
			raise AssertionError("unexpected extra bytes from server: %r" % self.buf)
		self.sock.settimeout(wait)
		try:
			chunk = self.sock.recv(65536)
		except (socket.timeout, TimeoutError):
			chunk = None
		finally:
			self.sock.settimeout(self.timeout)
		if chunk is not None:
			raise AssertionError("unexpected bytes from server: %r" % chunk)

	def greeting(self):
		return self.expect(GREETING)

	def ehlo(self, name="client.test"):
		r = self.cmd("EHLO " + name, "250")
		return r

	def starttls(self):
		"""Wrap the socket in TLS (no certificate verification: the daemon's
		certificate is self-signed).  Assumes the 220 has been read."""
		if self.buf:
			raise AssertionError("bytes received before the TLS handshake: %r" % self.buf)
		ctx = ssl.create_default_context()
		ctx.check_hostname = False
		ctx.verify_mode = ssl.CERT_NONE
		self.sock = ctx.wrap_socket(self.sock, server_hostname=HOSTNAME)
		return self.sock.version()

	def transaction(self, sender, rcpts, data):
		"""MAIL, RCPT..., DATA one by one, each asserted, then `data` (already
		dot-stuffed, ending in CRLF) and ".", returning the end-of-data Reply."""
		self.cmd("MAIL FROM:<%s>" % sender, "250 2.1.0 OK")
		for r in rcpts:
			self.cmd("RCPT TO:<%s>" % r, "250 2.1.5 OK")
		self.cmd("DATA", "354")
		self.send(data + b".\r\n")
		return self.read_reply()

	def send_message(self, sender, rcpts, data):
		"""A transaction that must be accepted; returns the id."""
		r = self.transaction(sender, rcpts, data)
		m = ACCEPT_RE.match(r.line)
		if not m:
			raise AssertionError("message not accepted: %r" % (r.lines,))
		return m.group(1)


def make_message(subject="e2e", body="hello from the e2e suite\r\n", size=None,
		 sender="sender@client.test", to="rcpt@example.com", extra_headers=()):
	"""An RFC 5322 message as bytes with CRLF line ends, already dot-stuffed.
	With size, the body is padded with 70-octet lines up to about `size` bytes."""
	head = ["From: <%s>" % sender, "To: <%s>" % to, "Subject: " + subject,
		"Message-ID: <%x.%d@client.test>" % (random.getrandbits(64), os.getpid())]
	head += list(extra_headers)
	text = "\r\n".join(head) + "\r\n\r\n" + body
	if size is not None:
		line = "x" * 68 + "\r\n"
		while len(text) + len(line) <= size:
			text += line
	return dot_stuff(text.encode())


_MID_RE = re.compile(rb"^Message-ID: (<[^>\r\n]*>)\r$", re.M)


def dot_stuff(data):
	"""RFC 5321 4.5.2: a line starting with "." gets one more."""
	if data.startswith(b"."):
		data = b"." + data
	return data.replace(b"\r\n.", b"\r\n..")


def ids_in(text):
	"""Ids in every "250 2.0.0 OK id=..." of a transcript (swaks output)."""
	return re.findall(r"250 2\.0\.0 OK id=([0-9a-f]{32})", text)


# ---------------------------------------------------------------------------
# petrel-spool and the reception log.

LS_RE = re.compile(r"^(?P<id>[0-9a-f]{32}) shard=(?P<shard>\d+) segment=(?P<segment>\d+) "
		   r"offset=(?P<offset>\d+) size=(?P<size>\d+) rcpts=(?P<rcpts>\d+) "
		   r"created=(?P<created>\S+)(?: done=(?P<done>\d+)/\d+ attempts=(?P<attempts>\d+))?$")


def run_spool_tool(spool, *args, timeout=120):
	tool = spool_tool_path()
	if not tool.exists():
		raise AssertionError("%s does not exist (build it with make all)" % tool)
	return subprocess.run([str(tool), "--spool", str(spool)] + list(args), capture_output=True,
			      timeout=timeout)


def spool_ls(spool):
	"""Parse `petrel-spool ls`: {id: {shard, segment, offset, size, rcpts, created}}.
	Asserts the exit status, every line's format, no duplicate ids, and that
	the "<N> messages" count on stderr matches."""
	p = run_spool_tool(spool, "ls")
	out = p.stdout.decode(errors="replace")
	err = p.stderr.decode(errors="replace")
	if p.returncode != 0:
		raise AssertionError("petrel-spool ls exit %d:\n%s%s" % (p.returncode, out, err))
	entries = {}
	for line in out.splitlines():
		if not line.strip():
			continue
		m = LS_RE.match(line)
		if not m:
			raise AssertionError("petrel-spool ls: unparsable line %r" % line)
		e = {k: (v if k in ("id", "created") else int(v)) for k, v in m.groupdict().items()
		     if v is not None}
		if e["id"] in entries:
			raise AssertionError("petrel-spool ls lists id %s twice" % e["id"])
		entries[e["id"]] = e
	counts = re.findall(r"^(\d+) messages?$", err, re.M)
	if not counts:
		raise AssertionError("petrel-spool ls: no '<N> messages' line on stderr: %r" % err)
	if int(counts[-1]) != len(entries):
		raise AssertionError("petrel-spool ls: stderr says %s messages, %d listed"
				     % (counts[-1], len(entries)))
	return entries


def spool_verify(spool):
	"""(exit status, stdout + stderr) of `petrel-spool verify`."""
	p = run_spool_tool(spool, "verify")
	return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def spool_cat(spool, msg_id):
	"""The stored message (bytes) of `petrel-spool cat ID`."""
	p = run_spool_tool(spool, "cat", msg_id)
	if p.returncode != 0:
		raise AssertionError("petrel-spool cat %s exit %d: %r" % (msg_id, p.returncode, p.stderr))
	return p.stdout


def spool_envelope(spool, msg_id):
	p = run_spool_tool(spool, "cat", "--envelope", msg_id)
	if p.returncode != 0:
		raise AssertionError("petrel-spool cat --envelope %s exit %d: %r"
				     % (msg_id, p.returncode, p.stderr))
	try:
		return json.loads(p.stdout)
	except ValueError as e:
		raise AssertionError("petrel-spool cat --envelope: not JSON (%s): %r" % (e, p.stdout))


def header_block(message):
	"""The header lines of a message (bytes) as unfolded strings."""
	head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace")
	return re.sub(r"\r\n[ \t]+", " ", head).split("\r\n")


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SEGMENT_NAME_RE = re.compile(r"^\d{8}-\d{6}")


def log_segment_text(path, data=None):
	"""The JSON lines of one log segment (bytes).  A segment is a zstd frame;
	the one being written has no frame end yet but ends on a block boundary,
	so it decodes up to petreld's last write.  Decoded by python3-zstandard
	when it is there, else by petrel-logs cat.  Plain files (no zstd magic)
	are returned as they are."""
	if data is None:
		data = Path(path).read_bytes()
	if not data.startswith(ZSTD_MAGIC):
		return data
	try:
		import zstandard
	except ImportError:
		zstandard = None
	if zstandard is not None:
		return zstandard.ZstdDecompressor().decompressobj().decompress(data)
	p = subprocess.run([str(logs_tool_path()), "cat", str(path)], capture_output=True,
			   timeout=60, stdin=subprocess.DEVNULL)
	if p.returncode != 0:
		raise AssertionError("petrel-logs cat %s: exit %d: %s" %
				     (path, p.returncode, p.stderr.decode(errors="replace")))
	return p.stdout


def reception_records(log_dir):
	"""Every JSON record in every segment under <log_dir>/<shard>/ (zstd
	segments, open or finished; a line still being written is skipped)."""
	recs = []
	root = Path(log_dir)
	if not root.is_dir():
		return recs
	for f in sorted(root.glob("*/*")):
		if not f.is_file() or not SEGMENT_NAME_RE.match(f.name):
			continue
		try:
			data = log_segment_text(f)
		except FileNotFoundError:	# removed at start-up (held no record)
			continue
		for raw in data.split(b"\n"):
			if not raw.strip():
				continue
			try:
				recs.append(json.loads(raw))
			except ValueError:
				if not data.endswith(raw):	# only the unfinished last line may be partial
					raise AssertionError("%s: bad JSON line %r" % (f, raw[:200]))
	return recs


def wait_reception(log_dir, ids, timeout=10):
	"""Poll the reception log until it has a Reception record for every id;
	return {id: record}."""
	want = set(ids)

	def found():
		got = {r.get("id"): r for r in reception_records(log_dir) if r.get("type") == "Reception"}
		return got if want <= set(got) else None
	return wait_for(found, timeout, interval=0.1, what="reception records for %s" % sorted(want))


def log_records(log_dir, type=None):
	"""Every JSON log record of every shard (<log_dir>/<shard>/*), or only
	those whose "type" is `type` (a string or a tuple of strings)."""
	recs = reception_records(log_dir)
	if type is None:
		return recs
	types = (type,) if isinstance(type, str) else tuple(type)
	return [r for r in recs if r.get("type") in types]


def wait_records(log_dir, type, count, timeout, where=None, what=None):
	"""Poll the log until at least `count` records of `type` (and matching
	where(record), when given) are there; return all those matching."""
	def found():
		recs = [r for r in log_records(log_dir, type) if where is None or where(r)]
		return recs if len(recs) >= count else None
	return wait_for(found, timeout, interval=0.1,
			what=what or "%d %s record(s) in %s" % (count, type, log_dir))


def record_time(text):
	"""An RFC 3339 timestamp of a log record as seconds since the epoch."""
	import datetime
	t = text[:-1] + "+00:00" if text.endswith("Z") else text
	return datetime.datetime.fromisoformat(t).timestamp()


def spool_segment_bytes(spool):
	"""{shard number: total size of its *.seg files}, for every shard dir."""
	out = {}
	root = Path(spool)
	for d in sorted(root.iterdir()) if root.is_dir() else []:
		if d.is_dir() and d.name.isdigit():
			total = 0
			for f in d.glob("*.seg"):
				try:
					total += f.stat().st_size
				except FileNotFoundError:	# deleted while we looked
					pass
			out[int(d.name)] = total
	return out


def run_swaks(args, timeout=60):
	"""Run swaks; return (exit status, transcript)."""
	swaks = require_tool("swaks")
	p = subprocess.run([swaks] + list(args), capture_output=True, timeout=timeout,
			   stdin=subprocess.DEVNULL)
	return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


# ---------------------------------------------------------------------------
# Per-test environment.

class Env:
	"""A temp dir with spool/, log/, the policy and the daemon's stderr; a port;
	everything started through it is stopped by the test's cleanups."""

	def __init__(self, test):
		self.test = test
		self.dir = Path(tempfile.mkdtemp(prefix="petrel-e2e-"))
		_temp_dirs.append(str(self.dir))
		self.spool = self.dir / "spool"
		self.log_dir = self.dir / "log"
		self.port = free_port()
		self.daemons = []
		self.conns = []
		test.addCleanup(self._cleanup)

	def write_policy(self, name="policy.lua", text=None, **kw):
		if text is None:
			kw.setdefault("listen", "127.0.0.1:%d" % self.port)
			kw.setdefault("spool", str(self.spool))
			kw.setdefault("log_dir", str(self.log_dir))
			text = policy_source(**kw)
		path = self.dir / name
		path.write_text(text)
		return path

	def write_delivery_policy(self, dns_port, name="policy.lua", **kw):
		"""delivery_policy_source for this env (listen, spool, log dir filled in)."""
		kw.setdefault("listen", "127.0.0.1:%d" % self.port)
		kw.setdefault("spool", str(self.spool))
		kw.setdefault("log_dir", str(self.log_dir))
		path = self.dir / name
		path.write_text(delivery_policy_source(dns_port=dns_port, **kw))
		return path

	def start(self, policy=None, port=None, **kw):
		"""Start petreld (policy: a path, default a fresh default template) and
		wait until it greets."""
		if policy is None:
			policy = self.write_policy()
		d = Petreld(policy, workdir=self.dir, port=port or self.port, **kw)
		self.daemons.append(d)
		return d.start()

	def connect(self, source=None, timeout=10.0, greet=True, port=None):
		c = SMTPConn(port or self.port, source=source, timeout=timeout)
		self.conns.append(c)
		if greet:
			c.greeting()
		return c

	def logs(self):
		return "\n".join(d.stderr_tail() for d in self.daemons if d.proc is not None)

	def _cleanup(self):
		for c in self.conns:
			c.close()
		errors = []
		for d in self.daemons:
			try:
				d.cleanup_check()
			except AssertionError as e:
				errors.append(str(e))
		if errors:
			raise AssertionError("\n".join(errors))


class PetrelTest(unittest.TestCase):
	"""Base class: self.env is a fresh Env; the daemons' stderr is printed
	when the test fails (run.py prints a failed test's output)."""

	maxDiff = None

	def setUp(self):
		self.env = Env(self)

	def run(self, result=None):
		result = result if result is not None else self.defaultTestResult()
		before = len(result.failures) + len(result.errors)
		out = super().run(result)
		if len(result.failures) + len(result.errors) > before and getattr(self, "env", None):
			print(self.env.logs(), file=sys.stderr)
			print("temp dir: %s%s" % (self.env.dir, "" if KEEP else " (removed at exit; "
						   "PETREL_E2E_KEEP=1 keeps it)"), file=sys.stderr)
		return out


def segment_file(spool, shard, seq):
	"""The file of segment `seq`: <spool>/<shard>/<seq as %016x>.seg
	(spool/spool_segment.c, LAYOUT)."""
	path = Path(spool) / str(shard) / ("%016x.seg" % seq)
	if not path.is_file():
		names = sorted(f.name for f in (Path(spool) / str(shard)).glob("*"))
		raise AssertionError("segment %d: no %s (the shard dir has %s)" % (seq, path, names))
	return path


class Load:
	"""`sessions` threads, each one smtplib connection sending `per_session`
	messages of about `size` bytes one after another.  Records the id of every
	250 and how many transactions broke off with their outcome unknown.

	With unique=True every message is made afresh with its own Message-ID:
	mids maps each acknowledged id to its Message-ID, and inflight_mids holds
	the Message-IDs of transactions cut off after DATA was sent (the
	delivery tests follow messages by Message-ID at the receiver)."""

	def __init__(self, port, sessions, per_session, size=1024, rcpt="load@example.com",
		     unique=False):
		self.port = port
		self.sessions = sessions
		self.per_session = per_session
		self.size = size
		self.unique = unique
		self.msg = make_message(subject="load", size=size, to=rcpt)
		self.rcpt = rcpt
		self.mids = {}		# id -> Message-ID (unique=True)
		self.inflight_mids = []	# Message-IDs whose outcome is unknown (unique=True)
		self.lock = threading.Lock()
		self.acked = []		# ids that got "250 2.0.0 OK id=..."
		self.refused = []	# (code, text) of end-of-data replies that were not 250
		self.unknown = 0	# transactions cut off after DATA was sent
		self.errors = []	# connection errors (expected after a kill -9)
		self.threads = [threading.Thread(target=self._worker, args=(i,), daemon=True)
				for i in range(sessions)]

	def start(self):
		for t in self.threads:
			t.start()
		return self

	def join(self, timeout):
		deadline = time.monotonic() + timeout
		for t in self.threads:
			t.join(max(0.0, deadline - time.monotonic()))
		alive = sum(t.is_alive() for t in self.threads)
		if alive:
			raise AssertionError("%d load sessions still running after %.0fs" % (alive, timeout))

	def count(self):
		with self.lock:
			return len(self.acked)

	def _worker(self, i):
		import smtplib
		in_data = False
		mid = None
		try:
			with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
				s.ehlo("load%d.client.test" % i)
				for n in range(self.per_session):
					msg = self.msg
					if self.unique:
						msg = make_message(subject="load %d.%d" % (i, n), size=self.size,
								   to=self.rcpt)
						mid = _MID_RE.search(msg).group(1).decode()
					code, text = s.mail("load%d@client.test" % i)
					if code != 250:
						raise AssertionError("MAIL: %d %r" % (code, text))
					code, text = s.rcpt(self.rcpt)
					if code != 250:
						raise AssertionError("RCPT: %d %r" % (code, text))
					in_data = True
					code, text = s.data(msg)
					in_data = False
					line = "%d %s" % (code, text.decode(errors="replace"))
					m = ACCEPT_RE.match(line)
					with self.lock:
						if m:
							self.acked.append(m.group(1))
							if self.unique:
								self.mids[m.group(1)] = mid
						else:
							self.refused.append(line)
		except Exception as e:	# noqa: BLE001 -- every failure is recorded for the test to judge
			with self.lock:
				self.errors.append("session %d: %r" % (i, e))
				if in_data:
					self.unknown += 1
					if self.unique:
						self.inflight_mids.append(mid)
