"""receivers.py -- SMTP receivers that Petrel delivers to in the delivery tests.

Two kinds, both listening on one port on one or more loopback addresses
(127.0.0.x), each in an asyncio loop on a thread of the test process, so a
receiver outlives any number of petreld restarts:

  * SmtpReceiver     aiosmtpd (Debian's python3-aiosmtpd), a real SMTP server
                     nobody here wrote; optional STARTTLS with a self-signed
                     certificate made by the openssl CLI (make_cert); an
                     optional delay before each end-of-data reply.
  * ScriptedReceiver a small hand-written server for behaviours a test must
                     script: the reply to MAIL, RCPT or end of data chosen per
                     transaction (first(n, reply): `reply` for the first n
                     transactions then the normal 2xx; always(reply)), a
                     delay per transaction, never offers STARTTLS.

Both record, under one lock, what they saw:

  * connections  Conn(id, peer, local, opened, closed, tls, tls_version,
                 messages) -- local is the (address, port) the connection came
                 in on, which tells which MX host Petrel chose;
  * delivered    Delivered(rcpt, message_id, mail_from, conn, local, tls, at,
                 ehlo) one per accepted recipient of an accepted message
                 (ehlo: the EHLO name of its session, SmtpReceiver only);
  * concurrent / max_concurrent connections.
ScriptedReceiver also keeps every command line (commands) and every
transaction with its replies (transactions).

Everything is bounded: a start waits at most a few seconds for the bind, a
stop closes every connection and joins the thread with a bound, idle
connections meet a timeout.
"""

import asyncio
import importlib.util
import re
import ssl
import subprocess
import threading
import time
import unittest
from pathlib import Path

import harness

RECEIVER_HOSTNAME = "receiver.test"
IDLE_TIMEOUT = 120.0	# seconds a receiver waits for the next line
MAX_DATA = 64 << 20

_MID_RE = re.compile(rb"^Message-ID:[ \t]*(.*?)[ \t]*$", re.I | re.M)


def message_id_of(content):
	"""The Message-ID header value (str, with its angle brackets) of a message
	given as bytes, or None."""
	head = content.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
	m = _MID_RE.search(head)
	if not m:
		return None
	return m.group(1).decode("utf-8", errors="replace")


def make_cert(directory, cn="receiver.test"):
	"""A self-signed ECDSA P-256 certificate and key made with the openssl
	CLI in `directory`; returns (cert path, key path)."""
	openssl = harness.require_tool("openssl")
	d = Path(directory)
	cert, key = d / ("%s.crt" % cn), d / ("%s.key" % cn)
	p = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
			    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
			    str(cert), "-days", "2", "-subj", "/CN=%s" % cn,
			    "-addext", "subjectAltName=DNS:%s" % cn],
			   capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
	if p.returncode != 0:
		raise AssertionError("openssl req failed (%d): %s" % (p.returncode, p.stderr.decode()))
	return cert, key


def server_tls_context(cert, key):
	ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
	ctx.load_cert_chain(str(cert), str(key))
	return ctx


class Conn:
	def __init__(self, cid, peer, local):
		self.id = cid
		self.peer = peer	# (addr, port) of Petrel's side
		self.local = local	# (addr, port) this receiver was reached on
		self.opened = time.monotonic()
		self.closed = None
		self.tls = False
		self.tls_version = None
		self.tls_cipher = None
		self.ehlo = None	# the EHLO/HELO name Petrel gave (SmtpReceiver), at its last message
		self.messages = 0	# accepted messages (transactions) on this connection

	def __repr__(self):
		return "Conn(%d, peer=%s, local=%s, tls=%s, messages=%d)" % (
			self.id, self.peer, self.local, self.tls, self.messages)


class Delivered:
	def __init__(self, rcpt, message_id, mail_from, conn, tls, at, content=b""):
		self.rcpt = rcpt
		self.message_id = message_id
		self.content = content	# the message as received (bytes)
		self.mail_from = mail_from
		self.conn = conn.id
		self.local = conn.local[0]
		self.peer = conn.peer[0]
		self.ehlo = conn.ehlo
		self.tls = tls
		self.at = at		# time.monotonic() when the 2xx was sent

	def __repr__(self):
		return "Delivered(%s, %s, conn=%d, local=%s, tls=%s)" % (
			self.rcpt, self.message_id, self.conn, self.local, self.tls)


class _Base:
	"""An asyncio loop on a thread, servers on (addr, port) for each address,
	and the shared records."""

	kind = "receiver"

	def __init__(self, addrs, port, delay=0.0):
		self.addrs = [addrs] if isinstance(addrs, str) else list(addrs)
		self.port = port
		self.delay = delay
		self.lock = threading.Lock()
		self.connections = []
		self.delivered = []
		self.concurrent = 0
		self.max_concurrent = 0
		self.loop = None
		self.thread = None
		self.servers = []
		self._live = set()	# transports or writers to close on stop

	# --- life --------------------------------------------------------------

	def start(self, timeout=10.0):
		self.loop = asyncio.new_event_loop()
		ready = threading.Event()

		def run():
			asyncio.set_event_loop(self.loop)
			self.loop.call_soon(ready.set)
			self.loop.run_forever()
		self.thread = threading.Thread(target=run, name="%s:%d" % (self.kind, self.port),
					       daemon=True)
		self.thread.start()
		if not ready.wait(timeout):
			raise AssertionError("%s loop did not start" % self.kind)
		fut = asyncio.run_coroutine_threadsafe(self._bind(), self.loop)
		try:
			fut.result(timeout)
		except Exception:
			self.stop()
			raise
		return self

	async def _bind(self):
		for a in self.addrs:
			self.servers.append(await self._serve(a))

	def stop(self, timeout=5.0):
		"""Close the listeners and every connection; join the thread."""
		if self.loop is None or self.thread is None:
			return
		if self.loop.is_running():
			fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
			try:
				fut.result(timeout)
			except Exception:	# noqa: BLE001 -- best effort; the loop is stopped below
				pass
			self.loop.call_soon_threadsafe(self.loop.stop)
		self.thread.join(timeout)
		if self.thread.is_alive():
			raise AssertionError("%s on port %d did not stop within %.0fs"
					     % (self.kind, self.port, timeout))
		self.loop.close()
		self.loop = None
		self.thread = None

	async def _shutdown(self):
		for s in self.servers:
			s.close()
		for t in list(self._live):
			t.close()
		for s in self.servers:
			try:
				await asyncio.wait_for(s.wait_closed(), 2)
			except asyncio.TimeoutError:
				pass
		self.servers = []
		tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
		for t in tasks:
			t.cancel()
		if tasks:
			await asyncio.wait(tasks, timeout=2)

	# --- records -----------------------------------------------------------

	def _open(self, peer, local):
		with self.lock:
			c = Conn(len(self.connections) + 1, peer, local)
			self.connections.append(c)
			self.concurrent += 1
			self.max_concurrent = max(self.max_concurrent, self.concurrent)
			return c

	def _close(self, c):
		with self.lock:
			if c.closed is None:
				c.closed = time.monotonic()
				self.concurrent -= 1

	def _deliver(self, c, mail_from, rcpts, content, tls):
		mid = message_id_of(content)
		now = time.monotonic()
		with self.lock:
			c.messages += 1
			for r in rcpts:
				self.delivered.append(Delivered(r, mid, mail_from, c, tls, now, content))

	def deliveries(self):
		with self.lock:
			return list(self.delivered)

	def conns(self):
		with self.lock:
			return list(self.connections)

	def count(self):
		with self.lock:
			return len(self.delivered)

	def message_ids(self):
		with self.lock:
			return {d.message_id for d in self.delivered}

	def rcpts(self):
		"""Every accepted recipient, in arrival order (duplicates kept)."""
		with self.lock:
			return [d.rcpt for d in self.delivered]


# ---------------------------------------------------------------------------
# aiosmtpd

class SmtpReceiver(_Base):
	"""aiosmtpd on each address; STARTTLS offered when tls=(cert, key)."""

	kind = "aiosmtpd"

	def __init__(self, addrs, port, tls=None, delay=0.0, line_length_limit=None):
		super().__init__(addrs, port, delay)
		self.tls_files = tls
		# aiosmtpd's 1001 (RFC 5321 4.5.3.1.6) unless given: a log hook's
		# message is one JSON line, often longer.
		self.line_length_limit = line_length_limit

	def start(self, timeout=10.0):
		if importlib.util.find_spec("aiosmtpd") is None:
			raise unittest.SkipTest(harness.MISSING_DEP + "python3-aiosmtpd")
		return super().start(timeout)

	async def _serve(self, addr):
		from aiosmtpd.smtp import SMTP

		recv = self
		ctx = server_tls_context(*self.tls_files) if self.tls_files else None

		class Handler:
			async def handle_DATA(self, server, session, envelope):
				if recv.delay:
					await asyncio.sleep(recv.delay)
				c = server.e2e_conn
				c.ehlo = session.host_name
				recv._deliver(c, envelope.mail_from, list(envelope.rcpt_tos),
					      envelope.original_content or envelope.content,
					      session.ssl is not None)
				return "250 2.0.0 OK received"

		handler = Handler()

		class RecordingSMTP(SMTP):
			e2e_conn = None
			line_length_limit = self.line_length_limit or SMTP.line_length_limit

			def connection_made(self, transport):
				super().connection_made(transport)
				if self.e2e_conn is None:
					self.e2e_conn = recv._open(transport.get_extra_info("peername"),
								   transport.get_extra_info("sockname"))
					recv._live.add(transport)
					self.e2e_transport = transport
				elif self.session.ssl is not None:
					obj = self.session.ssl.get("ssl_object")
					c = self.e2e_conn
					c.tls = True
					if obj is not None:
						c.tls_version = obj.version()
						c.tls_cipher = (obj.cipher() or (None,))[0]

			def connection_lost(self, error):
				if self.e2e_conn is not None:
					recv._close(self.e2e_conn)
					recv._live.discard(self.e2e_transport)
				super().connection_lost(error)

		def factory():
			return RecordingSMTP(handler, hostname=RECEIVER_HOSTNAME, ident="aiosmtpd e2e",
					     tls_context=ctx, require_starttls=False, timeout=IDLE_TIMEOUT,
					     loop=self.loop)
		return await self.loop.create_server(factory, host=addr, port=self.port)


# ---------------------------------------------------------------------------
# The scripted receiver

def first(n, reply):
	"""A script: `reply` for transactions 0..n-1 (counted over the receiver's
	whole life, every connection), then the normal reply."""
	return lambda txn: reply if txn < n else None


def always(reply):
	return lambda txn: reply


class Txn:
	def __init__(self, n, conn, mail_from):
		self.n = n
		self.conn = conn.id
		self.mail_from = mail_from
		self.rcpts = []		# (address, reply line)
		self.data_reply = None
		self.message_id = None
		self.started = time.monotonic()	# when MAIL FROM was accepted
		self.ended = None	# time.monotonic() of the end-of-data reply

	def __repr__(self):
		return "Txn(%d, conn=%d, rcpts=%r, data=%r)" % (self.n, self.conn, self.rcpts,
								 self.data_reply)


class ScriptedReceiver(_Base):
	"""A hand-written ESMTP server (PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES,
	SIZE; never STARTTLS).  mail, rcpt, data: scripts (txn number -> reply
	line or None for the normal 2xx), for MAIL FROM, each RCPT TO, and the
	end of data."""

	kind = "scripted"

	def __init__(self, addrs, port, mail=None, rcpt=None, data=None, delay=0.0):
		super().__init__(addrs, port, delay)
		self.mail_script = mail
		self.rcpt_script = rcpt
		self.data_script = data
		self.commands = []	# (conn id, line)
		self.transactions = []
		self._txn_count = 0

	async def _serve(self, addr):
		return await asyncio.start_server(self._session, host=addr, port=self.port)

	def _command(self, c, line):
		with self.lock:
			self.commands.append((c.id, line))

	def command_lines(self):
		with self.lock:
			return [l for _, l in self.commands]

	def txns(self):
		with self.lock:
			return list(self.transactions)

	async def _session(self, reader, writer):
		c = self._open(writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
		self._live.add(writer)
		try:
			await self._dialogue(c, reader, writer)
		except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError,
			asyncio.LimitOverrunError, ValueError):
			pass
		finally:
			self._close(c)
			self._live.discard(writer)
			writer.close()

	async def _line(self, reader):
		line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
		if not line:
			raise ConnectionError("peer closed")
		return line

	async def _dialogue(self, c, reader, writer):
		def say(text):
			writer.write(text.encode() + b"\r\n")

		say("220 %s ESMTP scripted e2e receiver" % RECEIVER_HOSTNAME)
		await writer.drain()
		txn = None
		while True:
			line = (await self._line(reader)).decode("utf-8", errors="replace").rstrip("\r\n")
			self._command(c, line)
			verb = line.split(" ", 1)[0].upper()
			upper = line.upper()
			if verb == "EHLO":
				say("250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
				    "250 SIZE %d" % (RECEIVER_HOSTNAME, MAX_DATA))
				txn = None
			elif verb == "HELO":
				say("250 %s" % RECEIVER_HOSTNAME)
				txn = None
			elif upper.startswith("MAIL FROM:"):
				with self.lock:
					n = self._txn_count
					self._txn_count += 1
				reply = (self.mail_script and self.mail_script(n)) or "250 2.1.0 OK"
				if txn is not None:
					reply = "503 5.5.1 nested MAIL command"
				elif reply.startswith("2"):
					txn = Txn(n, c, _path(line[10:]))
					with self.lock:
						self.transactions.append(txn)
				say(reply)
			elif upper.startswith("RCPT TO:"):
				if txn is None:
					say("503 5.5.1 need MAIL first")
				else:
					reply = (self.rcpt_script and self.rcpt_script(txn.n)) or "250 2.1.5 OK"
					txn.rcpts.append((_path(line[8:]), reply))
					say(reply)
			elif verb == "DATA":
				if txn is None or not any(r.startswith("2") for _, r in txn.rcpts):
					say("554 5.5.1 no valid recipients")
				else:
					say("354 end data with <CR><LF>.<CR><LF>")
					await writer.drain()
					content = await self._read_data(reader)
					if self.delay:
						await asyncio.sleep(self.delay)
					reply = (self.data_script and self.data_script(txn.n)) or \
						"250 2.0.0 OK received"
					txn.message_id = message_id_of(content)
					txn.data_reply = reply
					txn.ended = time.monotonic()
					if reply.startswith("2"):
						self._deliver(c, txn.mail_from,
							      [a for a, r in txn.rcpts if r.startswith("2")],
							      content, False)
					say(reply)
					txn = None
			elif verb == "RSET":
				txn = None
				say("250 2.0.0 OK")
			elif verb == "NOOP":
				say("250 2.0.0 OK")
			elif verb == "QUIT":
				say("221 2.0.0 bye")
				await writer.drain()
				return
			elif verb == "STARTTLS":
				say("502 5.5.1 STARTTLS not offered")
			else:
				say("500 5.5.2 command not recognised")
			await writer.drain()

	async def _read_data(self, reader):
		parts = []
		size = 0
		while True:
			line = await self._line(reader)
			if line == b".\r\n":
				return b"".join(parts)
			if line.startswith(b"."):
				line = line[1:]
			size += len(line)
			if size > MAX_DATA:
				raise ValueError("message too large")
			parts.append(line)


def _path(arg):
	"""The address in "<a@b> PARAMS" (RFC 5321 4.1.2)."""
	arg = arg.strip()
	if arg.startswith("<"):
		return arg[1:arg.index(">")] if ">" in arg else arg[1:]
	return arg.split(" ", 1)[0]
