"""dns.py -- a real DNS server (dnsmasq) on a loopback port for the delivery
tests, and a tiny DNS client to check what it answers.

    zone = dns.Zone()
    zone.mx("a.test", 10, "mx1.a.test").mx("a.test", 20, "mx2.a.test")
    zone.a("mx1.a.test", "127.0.0.11").null_mx("nullmx.test")
    server = dns.Dnsmasq(zone, workdir).start()     # server.port, server.pid
    dns.query(server.port, "a.test", dns.MX)        # -> Answer(rcode, records)
    server.stop()

dnsmasq runs in the foreground with no configuration file but its command
line: no upstream (--no-resolv), no /etc/hosts, bound to 127.0.0.1 only,
every name under the zone's suffix ("test") answered locally, so a name
with no records is NXDOMAIN and a name with only other types is NODATA.  A
null MX (RFC 7505) is an MX record with preference 0 and the root as
exchange, given to dnsmasq as raw RDATA through --dns-rr.

The client is hand-written on the standard library (Debian's python3 has
no dnspython): one question, UDP or TCP, name compression followed when
reading answers.  It is for the fixtures' self-tests and for waiting until
the server answers; Petrel itself resolves through c-ares.

The process is kept by pid and stopped by pid (SIGTERM, then SIGKILL after
a bound); harness's atexit cleanup kills it if a test is interrupted.
"""

import os
import random
import signal
import socket
import struct
import subprocess
import time
import unittest
from pathlib import Path

import harness

DNSMASQ = "/usr/sbin/dnsmasq"

A, NS, CNAME, SOA, MX, TXT, AAAA = 1, 2, 5, 6, 15, 16, 28
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5


class Zone:
	"""The records a Dnsmasq serves.  Every name must end in `suffix`; all
	other names under the suffix are NXDOMAIN."""

	def __init__(self, suffix="test", ttl=1):
		self.suffix = suffix
		self.ttl = ttl
		self.mxs = []		# (domain, preference, host)
		self.addrs = []		# (name, ipv4)
		self.null_mxs = []	# domains

	def _check(self, name):
		if not name.endswith("." + self.suffix):
			raise ValueError("%s is not under .%s" % (name, self.suffix))

	def mx(self, domain, pref, host):
		self._check(domain)
		self.mxs.append((domain, pref, host))
		return self

	def a(self, name, addr):
		self._check(name)
		self.addrs.append((name, addr))
		return self

	def null_mx(self, domain):
		self._check(domain)
		self.null_mxs.append(domain)
		return self

	def args(self):
		out = ["--local=/%s/" % self.suffix, "--local-ttl=%d" % self.ttl]
		for domain, pref, host in self.mxs:
			out.append("--mx-host=%s,%s,%d" % (domain, host, pref))
		for name, addr in self.addrs:
			out.append("--host-record=%s,%s" % (name, addr))
		for domain in self.null_mxs:
			# RDATA: preference 0 (two octets), exchange "." (one zero octet).
			out.append("--dns-rr=%s,%d,000000" % (domain, MX))
		return out


def free_udp_tcp_port(host="127.0.0.1", tries=50):
	"""A port free for both UDP and TCP on host (bounded tries)."""
	for _ in range(tries):
		with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
			u.bind((host, 0))
			port = u.getsockname()[1]
			with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
				try:
					t.bind((host, port))
				except OSError:
					continue
				return port
	raise AssertionError("no port free for both UDP and TCP after %d tries" % tries)


class Dnsmasq:
	"""One dnsmasq process serving `zone` on 127.0.0.1:<port>, UDP and TCP."""

	def __init__(self, zone, workdir, port=None):
		self.zone = zone
		self.dir = Path(workdir)
		self.port = port or free_udp_tcp_port()
		self.log_path = self.dir / ("dnsmasq-%d.log" % self.port)
		self.proc = None

	@property
	def pid(self):
		return self.proc.pid

	def argv(self):
		return [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
			"--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
			"--port=%d" % self.port, "--pid-file=", "--user=%s" % _user_name(),
			"--log-facility=%s" % self.log_path, "--log-queries",
			"--cache-size=0"] + self.zone.args()

	def start(self, timeout=10.0):
		if not os.path.exists(DNSMASQ):
			raise unittest.SkipTest(harness.MISSING_DEP + "%s (dnsmasq-base)" % DNSMASQ)
		self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
					     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
		harness._live_daemons.append(self)
		self.wait_ready(timeout)
		return self

	def wait_ready(self, timeout):
		"""Ready when a query for a name under the suffix gets any answer
		(NXDOMAIN included) over UDP and over TCP.  Bounded."""
		deadline = time.monotonic() + timeout
		probe = "ready-probe.%s" % self.zone.suffix
		last = None
		while time.monotonic() < deadline:
			if self.proc.poll() is not None:
				err = self.proc.stderr.read().decode(errors="replace")
				raise AssertionError("dnsmasq exited with status %d: %s\n%s"
						     % (self.proc.returncode, err, self.log_tail()))
			try:
				query(self.port, probe, A, timeout=0.5)
				query(self.port, probe, A, timeout=0.5, tcp=True)
				return
			except (OSError, AssertionError) as e:
				last = e
			time.sleep(0.05)
		raise AssertionError("dnsmasq on port %d not answering after %.0fs (last: %r)\n%s"
				     % (self.port, timeout, last, self.log_tail()))

	def running(self):
		return self.proc is not None and self.proc.poll() is None

	def stop(self, timeout=5.0):
		if self.proc is None:
			return
		if self.running():
			os.kill(self.proc.pid, signal.SIGTERM)
			try:
				self.proc.wait(timeout=timeout)
			except subprocess.TimeoutExpired:
				pass
		self.kill_hard()

	def kill_hard(self):
		"""SIGKILL by pid if still running (also harness's atexit hook)."""
		if self.proc is None:
			return
		if self.running():
			os.kill(self.proc.pid, signal.SIGKILL)
		try:
			self.proc.wait(timeout=10)
		except subprocess.TimeoutExpired:
			pass
		if self.proc.stderr:
			self.proc.stderr.close()
		if self in harness._live_daemons and not self.running():
			harness._live_daemons.remove(self)

	def log_tail(self, lines=40):
		try:
			text = self.log_path.read_text(errors="replace").splitlines()
		except OSError:
			text = []
		return "\n".join(["--- %s (last %d lines) ---" % (self.log_path.name, lines)]
				 + text[-lines:])


def _user_name():
	"""dnsmasq drops to `nobody` when started as root unless told otherwise;
	staying as the current user keeps the log file ours."""
	import pwd
	return pwd.getpwuid(os.getuid()).pw_name


# ---------------------------------------------------------------------------
# A minimal DNS client (RFC 1035 4.1).

class Answer:
	def __init__(self, rcode, records, aa):
		self.rcode = rcode
		self.records = records	# [(type, ttl, data)]; data: MX (pref, host), A "a.b.c.d"
		self.aa = aa

	def of(self, rtype):
		return [d for t, _, d in self.records if t == rtype]

	def __repr__(self):
		return "Answer(rcode=%d, records=%r)" % (self.rcode, self.records)


def _encode_name(name):
	out = b""
	for label in name.rstrip(".").split("."):
		if label:
			out += bytes([len(label)]) + label.encode("ascii")
	return out + b"\0"


def _read_name(msg, off, depth=0):
	"""(name, offset after the name in place) following compression pointers."""
	if depth > 20:
		raise AssertionError("DNS name compression loop")
	labels = []
	while True:
		if off >= len(msg):
			raise AssertionError("DNS name runs past the message")
		n = msg[off]
		if n == 0:
			return ".".join(labels), off + 1
		if n & 0xC0 == 0xC0:
			ptr = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
			rest, _ = _read_name(msg, ptr, depth + 1)
			if rest:
				labels.append(rest)
			return ".".join(labels), off + 2
		labels.append(msg[off + 1:off + 1 + n].decode("ascii", errors="replace"))
		off += 1 + n


def _parse(msg, qid):
	if len(msg) < 12:
		raise AssertionError("short DNS reply (%d octets)" % len(msg))
	rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
	if rid != qid:
		raise AssertionError("DNS reply id %d, want %d" % (rid, qid))
	off = 12
	for _ in range(qd):
		_, off = _read_name(msg, off)
		off += 4
	records = []
	for _ in range(an):
		_, off = _read_name(msg, off)
		rtype, _, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
		off += 10
		rdata_off = off
		off += rdlen
		if rtype == MX:
			pref = struct.unpack("!H", msg[rdata_off:rdata_off + 2])[0]
			host, _ = _read_name(msg, rdata_off + 2)
			data = (pref, host)
		elif rtype == A:
			data = socket.inet_ntoa(msg[rdata_off:rdata_off + 4])
		elif rtype == AAAA:
			data = socket.inet_ntop(socket.AF_INET6, msg[rdata_off:rdata_off + 16])
		else:
			data = msg[rdata_off:off]
		records.append((rtype, ttl, data))
	return Answer(flags & 0xF, records, bool(flags & 0x0400))


def query(port, name, rtype, host="127.0.0.1", timeout=2.0, tcp=False):
	"""Ask host:port one question (recursion desired); return an Answer.
	Raises OSError on timeout or a refused socket."""
	qid = random.randrange(1 << 16)
	msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) \
		+ struct.pack("!HH", rtype, 1)
	if tcp:
		with socket.create_connection((host, port), timeout=timeout) as s:
			s.sendall(struct.pack("!H", len(msg)) + msg)
			data = b""
			while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
				chunk = s.recv(65536)
				if not chunk:
					raise OSError("DNS TCP connection closed after %d octets" % len(data))
				data += chunk
			return _parse(data[2:2 + struct.unpack("!H", data[:2])[0]], qid)
	with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
		s.settimeout(timeout)
		s.connect((host, port))	# connected: a closed port fails at once (ICMP)
		s.send(msg)
		deadline = time.monotonic() + timeout
		while True:
			data = s.recv(65536)
			if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
				return _parse(data, qid)
			if time.monotonic() > deadline:
				raise OSError("no DNS reply with id %d" % qid)
