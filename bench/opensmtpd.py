"""opensmtpd.py -- the OpenSMTPD column of bench/compare: Debian's OpenSMTPD
run as a relay from the bench directory, without installing its package.

Why not `apt-get install opensmtpd`: on Debian 12 the package conflicts with
postfix (both provide mail-transport-agent) and the benches need Postfix.
So available() does by hand the part of the install that smtpd needs:

  * `apt-get download opensmtpd` into CACHE (kept, reused on later runs),
    `dpkg-deb -x` into the bench directory; smtpd runs from there.  It
    re-executes itself for each of its privilege-separated processes by its
    argv[0], which must be absolute (smtpd.c, start_child), as ours is.
  * its shared libraries: the lib* packages of its Depends that are missing
    are installed with apt-get, after a simulation shows that nothing would
    be removed (so never a package that conflicts with postfix); then ldd
    must find every library.
  * the users opensmtpd and opensmtpq, their groups, and their home
    /var/lib/opensmtpd/empty (PATH_CHROOT, where the unprivileged processes
    chroot), made as the package's postinst makes them.  They are left in
    place after the run, like Postfix's own users: creating system users is
    not undone by a bench, and a later run reuses them.

Its compiled-in paths cannot be moved: the queue is /var/spool/smtpd (owned
by root, mode 0711; smtpd creates the subdirectories itself, queue_backend.c
and queue_fs.c) and the control socket /var/run/smtpd.sock.  So one
OpenSMTPD runs on this machine at a time, and never beside a real one: when
the package is installed, the socket answers, or /var/spool/smtpd exists
without our marker file, the column is "not available".  We create
/var/spool/smtpd with MARKER in it ("pid PID DIR": the bench process that
owns it) and remove the whole directory, with the socket, when smtpd stops.
A marker left by a bench whose pid is gone (a crash) is taken over.

smtpd runs with -d: in the foreground, logging to stderr (the kit's
LABEL.err), where each relayed envelope gives a line

    <sessid> mta delivery evpid=<evpid> from=<...> to=<...> rcpt=<...>
    source="127.0.0.1" relay="127.0.0.1 (...)" delay=0s result="Ok" stat="250 ..."

(mta.c, mta_log).  delivered() counts result="Ok" on those lines.

Durability, as shipped (OpenSMTPD 6.8.0p2, Debian's 6.8.0p2-4): we keep its
defaults, but those do NOT fsync a message before the 250.  Read in its
source: the smtp process writes the body to a file the queue process opened
and closes it with a plain fclose() (smtp_session.c, smtp_message_end); the
queue writes each envelope with fsqueue_envelope_dump(path, ..., do_atomic=0,
do_sync=0) (queue_fs.c, queue_fs_envelope_create), and commit is two
rename()s from incoming/ to queue/ (queue_fs_message_commit).  fsync() is
only called when an envelope is updated after a failed attempt
(queue_fs_envelope_update, do_sync=1) and in the local delivery agents.  No
option turns it on.  Checked on this machine with strace on all its
processes while 5 messages were accepted and relayed: 15 rename()s (three
per message), no fsync, fdatasync, sync_file_range or syncfs.  So
OpenSMTPD's accept rate here is that of a relay whose 250 survives a crash
of smtpd but not of the machine; Postfix and petreld sync first.
bench/compare should say so beside its numbers (DURABILITY below).
"""

import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import benchkit

CACHE = Path(os.environ.get("PETREL_BENCH_CACHE", "/var/cache/petrel-bench"))
SPOOL = Path("/var/spool/smtpd")		# PATH_SPOOL, compiled in
SOCK = Path("/var/run/smtpd.sock")		# SMTPD_SOCKET, compiled in
CHROOT = Path("/var/lib/opensmtpd/empty")	# PATH_CHROOT, Debian's build
USERS = ("opensmtpd", "opensmtpq")		# SMTPD_USER, SMTPD_QUEUE_USER
MARKER = SPOOL / ".petrel-bench"
HOSTNAME = "bench.opensmtpd.test"
DURABILITY = "no fsync before 250 (OpenSMTPD default)"

_ready = {}	# str(kit.dir) -> (ok, reason, smtpd path)


def _run(argv, timeout=120, **kw):
	return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
			      capture_output=True, text=True, timeout=timeout, **kw)


def _last_line(p):
	lines = (p.stderr or p.stdout or "").strip().splitlines()
	return lines[-1] if lines else "exit status %d" % p.returncode


def _pid_alive(pid):
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		return False
	except PermissionError:
		return True
	return True


def _marker_owner():
	"""The pid in MARKER, or None when there is no readable marker."""
	try:
		return int(MARKER.read_text().split()[1])
	except (OSError, IndexError, ValueError):
		return None


def _socket_answers():
	with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
		s.settimeout(2)
		try:
			s.connect(str(SOCK))
			return True
		except OSError:
			return False


def _conflict():
	"""Why the fixed paths are not ours to use now, or None."""
	p = _run(["dpkg-query", "-W", "-f=${Status}", "opensmtpd"], timeout=30)
	if p.returncode == 0 and "install ok installed" in p.stdout:
		return "a system OpenSMTPD is installed (package opensmtpd)"
	ours = SPOOL.exists() and _marker_owner() is not None
	if SOCK.exists() and (not ours or _socket_answers()):
		return "%s exists: an OpenSMTPD is installed or running" % SOCK
	if SPOOL.exists() and not ours:
		return "%s exists and is not the bench's" % SPOOL
	owner = _marker_owner()
	if ours and owner != os.getpid() and _pid_alive(owner):
		return "%s is in use by another bench (pid %d)" % (SPOOL, owner)
	return None


def _fetch():
	"""The cached opensmtpd .deb, downloading it once; (path, None) or
	(None, reason)."""
	arch = _run(["dpkg", "--print-architecture"], timeout=30).stdout.strip()
	found = sorted(CACHE.glob("opensmtpd_*_%s.deb" % arch))
	if found:
		return found[-1], None
	CACHE.mkdir(parents=True, exist_ok=True)
	# Sandbox user root: the cache is root's, not _apt's.
	get = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", "opensmtpd"]
	p = _run(get, cwd=CACHE)
	if p.returncode != 0:	# no package lists yet: update once, then retry
		_run(["apt-get", "-q", "update"], timeout=300)
		p = _run(get, cwd=CACHE)
	found = sorted(CACHE.glob("opensmtpd_*_%s.deb" % arch))
	if p.returncode != 0 or not found:
		return None, "cannot fetch the opensmtpd package: %s" % _last_line(p)
	return found[-1], None


def _library_packages(deb):
	"""The shared-library packages among the .deb's Depends."""
	p = _run(["dpkg-deb", "-f", deb, "Depends"], timeout=30)
	names = []
	for alt in p.stdout.split(","):
		name = alt.split("|")[0].split("(")[0].strip()
		if name.startswith(("lib", "zlib")):
			names.append(name)
	return names


def _installed(pkg):
	p = _run(["dpkg-query", "-W", "-f=${Status}", pkg], timeout=30)
	return p.returncode == 0 and "install ok installed" in p.stdout


def _install_libraries(kit, deb):
	"""Install the missing library packages; None or the reason not to."""
	missing = [n for n in _library_packages(deb) if not _installed(n)]
	if not missing:
		return None
	sim = _run(["apt-get", "-s", "install", "--no-install-recommends"] + missing)
	removes = [l.split()[1] for l in sim.stdout.splitlines() if l.startswith("Remv ")]
	if sim.returncode != 0 or removes:
		return "its libraries %s cannot be installed beside postfix%s" % (
			" ".join(missing), (" (would remove %s)" % " ".join(removes)) if removes else
			": " + _last_line(sim))
	kit.log("opensmtpd: installing %s" % " ".join(missing))
	p = _run(["apt-get", "-q", "-y", "install", "--no-install-recommends"] + missing,
		 timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
	if p.returncode != 0:
		return "apt-get install %s failed: %s" % (" ".join(missing), _last_line(p))
	return None


def _make_users():
	"""The users and groups of the package's postinst, and their home."""
	for name in USERS:
		try:
			grp.getgrnam(name)
		except KeyError:
			p = _run(["addgroup", "--system", name], timeout=60)
			if p.returncode != 0:
				return "addgroup %s: %s" % (name, _last_line(p))
		try:
			pwd.getpwnam(name)
		except KeyError:
			gecos = "OpenSMTPD Daemon" if name == "opensmtpd" else "OpenSMTPD queue user"
			p = _run(["adduser", "--system", "--home", CHROOT, "--no-create-home",
				  "--disabled-password", "--gecos", gecos, "--ingroup", name, name],
				 timeout=60)
			if p.returncode != 0:
				return "adduser %s: %s" % (name, _last_line(p))
	# Left in place after the run, like the users whose home it is.
	CHROOT.mkdir(parents=True, exist_ok=True)
	os.chown(CHROOT, 0, 0)
	CHROOT.chmod(0o755)
	return None


def _prepare(kit):
	deb, why = _fetch()
	if why:
		return False, why, None
	root = kit.dir / "opensmtpd-pkg"
	p = _run(["dpkg-deb", "-x", deb, root], timeout=60)
	smtpd = root / "usr/sbin/smtpd"
	if p.returncode != 0 or not os.access(smtpd, os.X_OK):
		return False, "dpkg-deb -x %s: %s" % (deb.name, _last_line(p)), None
	why = _install_libraries(kit, deb)
	if why:
		return False, why, None
	ldd = _run(["ldd", smtpd], timeout=30)
	lost = [l.split()[0] for l in ldd.stdout.splitlines() if "not found" in l]
	if ldd.returncode != 0 or lost:
		return False, "shared libraries not found: %s" % (" ".join(lost) or
								   _last_line(ldd)), None
	why = _make_users()
	if why:
		return False, why, None
	# A configuration check (-n) proves the binary, its libraries and users.
	conf = kit.dir / "opensmtpd-check.conf"
	conf.write_text(_config(benchkit.free_port(), benchkit.free_port(), 1))
	p = _run([smtpd, "-n", "-f", conf], timeout=30)
	if p.returncode != 0:
		return False, "smtpd -n: %s" % _last_line(p), None
	return True, "OpenSMTPD from %s" % deb.name, smtpd


def available(kit):
	"""(True, what) when OpenSMTPD can run in this kit: package fetched (or
	cached) and extracted, libraries, users and chroot present, no system
	OpenSMTPD in the way; else (False, why).  The preparation is done once
	per kit; a conflict is looked for on every call (another bench may have
	started, or ended, since)."""
	if os.geteuid() != 0:
		return False, "needs root (users, /var/spool/smtpd)"
	conflict = _conflict()
	if conflict:
		return False, conflict
	key = str(kit.dir)
	if key not in _ready:
		_ready[key] = _prepare(kit)
	ok, why, _ = _ready[key]
	return ok, why


def _config(port, relayhost_port, concurrency):
	return """# Private benchmark instance; see bench/opensmtpd.py.
# Queue durability is OpenSMTPD's default (it has no option for it).
listen on 127.0.0.1 port %(port)d hostname %(host)s
action "relay" relay host smtp+notls://127.0.0.1:%(relay)d helo %(host)s
match from src 127.0.0.1 for any action "relay"
# Messages per inbound session: 100 by default, then 452 to every MAIL; the
# generator keeps its sessions for the whole run, as Postfix (no such
# limit) and petreld let it.
smtp limit max-mails 100000000
# As many connections to the smart host as petrel's connection_limit and
# Postfix's destination concurrency; and no pause between two new
# connections on a route (5 s by default, 2 s per relay, 3 s after a
# disconnect: politeness toward a remote host, which on loopback only
# throttles the ramp-up to the limit).
mta limit max-conn-per-route %(c)d max-conn-per-host %(c)d max-conn-per-connector %(c)d
mta limit max-conn-per-relay %(c)d max-conn-per-domain %(c)d max-conn-per-source %(c)d
mta limit conn-delay-route 0 conn-delay-relay 0 reconn-delay-route 0
""" % {"port": port, "relay": relayhost_port, "host": HOSTNAME, "c": max(concurrency, 1)}


def _start_time(pid):
	try:
		raw = Path("/proc/%d/stat" % pid).read_text()
	except OSError:
		return None
	return raw[raw.rindex(")") + 2:].split()[19]


def _descendants(root):
	"""{pid: start time} of root's descendants now."""
	parent = {}
	for d in os.listdir("/proc"):
		if d.isdigit():
			st = benchkit.proc_stat(int(d))
			if st:
				parent[int(d)] = st[0]
	found, stack = {}, [root]
	while stack:
		p = stack.pop()
		for c, pp in parent.items():
			if pp == p and c not in found:
				start = _start_time(c)
				if start is not None:
					found[c] = start
					stack.append(c)
	return found


class OpenSMTPD:
	"""Debian's smtpd from the bench directory, relaying everything from
	127.0.0.1 to smtp+notls://127.0.0.1:relayhost_port; self.port is its
	listener, self.pid the parent of all its processes."""

	def __init__(self, kit, label, relayhost_port, concurrency=32):
		ok, why = available(kit)
		if not ok:
			sys.exit("bench: opensmtpd not available: %s" % why)
		self.kit = kit
		self.label = label
		self.dir = kit.dir / label
		self.dir.mkdir(exist_ok=True)
		self.port = benchkit.free_port()
		self.children = {}
		self.proc = None
		self._claim()
		# Stopped by Kit.close() too, which calls stop() on this list.
		kit.postfixes.append(self)
		conf = self.dir / "smtpd.conf"
		conf.write_text(_config(self.port, relayhost_port, concurrency))
		smtpd = _ready[str(kit.dir)][2]
		self.proc = kit.spawn(label, [smtpd, "-d", "-f", conf])
		self.pid = self.proc.pid
		if not self._wait_ready(20):
			tail = kit.tail(label)
			self.stop()
			sys.exit("bench: opensmtpd did not start:\n" + tail)
		self.children = _descendants(self.pid)

	def _claim(self):
		"""Create /var/spool/smtpd as smtpd wants it (root, 0711), with our
		marker; take over one a dead bench left."""
		if SPOOL.exists():
			shutil.rmtree(SPOOL)	# _conflict() said: ours, its owner gone
		if SOCK.exists() and not _socket_answers():
			SOCK.unlink()
		SPOOL.mkdir(mode=0o711)	# fails if another bench got there first
		os.chown(SPOOL, 0, 0)
		SPOOL.chmod(0o711)
		MARKER.write_text("pid %d %s\n" % (os.getpid(), self.kit.dir))

	def _wait_ready(self, timeout):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if self.proc.poll() is not None:
				return False
			if benchkit.smtp_ready(self.port, 0.5):
				return True
		return False

	def stop(self):
		"""SIGTERM (smtpd's parent stops and reaps its children), a bounded
		wait, SIGKILL; then any child left (by pid and start time), the
		queue and the socket.  Returns the exit status."""
		if self not in self.kit.postfixes:
			return self.proc.returncode if self.proc else None
		self.kit.postfixes.remove(self)
		rc = None
		if self.proc is not None:
			self.children.update(_descendants(self.pid))
			rc = self.kit.stop(self.proc, 15)
			self._reap_children()
		if _marker_owner() == os.getpid():
			shutil.rmtree(SPOOL, ignore_errors=True)
			if SOCK.exists() and not _socket_answers():
				SOCK.unlink()
		return rc

	def _reap_children(self):
		deadline = time.monotonic() + 5
		left = self.alive_children()
		for pid in left:
			self.kit.log("%s: smtpd child %d left after its parent, SIGTERM" % (self.label, pid))
			os.kill(pid, signal.SIGTERM)
		while left and time.monotonic() < deadline:
			time.sleep(0.05)
			left = self.alive_children()
		for pid in left:
			os.kill(pid, signal.SIGKILL)

	def alive_children(self):
		"""Pids of its processes seen so far that still run (same start
		time, so never a reused pid)."""
		return [p for p, st in self.children.items() if _start_time(p) == st]

	def log_text(self):
		try:
			return (self.kit.dir / ("%s.err" % self.label)).read_text(errors="replace")
		except OSError:
			return ""

	def delivered(self):
		"""Envelopes it relayed: its `mta delivery ... result="Ok"` lines
		(one per recipient; bench messages have one)."""
		return sum(1 for l in self.log_text().splitlines()
			   if " mta delivery " in l and 'result="Ok"' in l)
