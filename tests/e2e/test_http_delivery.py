"""HTTP delivery (make_queue_config protocol.http): a queue that hands its
mail to an HTTP endpoint, with the queue's retry schedule and the path's
shaping, as a real HTTP server (Python's http.server) sees it.

The receiver (HttpReceiver) runs a ThreadingHTTPServer on 127.0.0.1 on a
free port in a thread of the test process; it answers each request with the
next status of its script (then 200), optionally after a delay, and records
every request's method, path, headers and body.  petreld (two shards)
delivers the domain http.test by HTTP; messages come in over SMTP
(smtplib).  What Petrel did is read from both ends: the requests and the
Delivery / TransientFailure / Bounce records of the JSON log.
"""

import http.server
import json
import smtplib
import threading
import time

import harness
import receivers
from harness import make_message

SENDER = "sender@client.test"
DOMAIN = "http.test"
TYPES = ("Delivery", "TransientFailure", "Bounce", "Expiration")
META_HOOK = """
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('tag', 'blue')
end)
"""


class Request:
	def __init__(self, method, path, headers, body, status, peer):
		self.method, self.path, self.headers, self.body, self.status, self.peer = (
			method, path, headers, body, status, peer)


class HttpReceiver:
	"""statuses: the answers to the first requests, in order (then 200);
	"drop" closes the connection without a byte of answer; delay: seconds
	to wait before each answer."""

	def __init__(self, statuses=(), delay=0.0, body=b"busy", tls=None):
		self.statuses = list(statuses)
		self.delay = delay
		self.body = body
		self.lock = threading.Lock()
		self.requests = []
		receiver = self

		class Handler(http.server.BaseHTTPRequestHandler):
			protocol_version = "HTTP/1.1"	# keep-alive

			def log_message(self, *args):
				pass

			def do_POST(self):
				n = int(self.headers.get("Content-Length", "0"))
				body = self.rfile.read(n) if n else b""
				if receiver.delay:
					time.sleep(receiver.delay)
				with receiver.lock:
					status = receiver.statuses.pop(0) if receiver.statuses else 200
					receiver.requests.append(Request(self.command, self.path,
									 dict(self.headers), body, status,
									 self.client_address))
				if status == "drop":
					self.close_connection = True
					return
				answer = b"ok" if status == 200 else receiver.body
				self.send_response(status)
				self.send_header("Content-Length", str(len(answer)))
				self.end_headers()
				self.wfile.write(answer)

		self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
		self.server.daemon_threads = True
		if tls is not None:	# (cert, key): HTTPS
			ctx = receivers.server_tls_context(*tls)
			self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
							     do_handshake_on_connect=False)
		self.port = self.server.server_address[1]
		self.thread = threading.Thread(target=self.server.serve_forever,
					       kwargs={"poll_interval": 0.1}, daemon=True)

	def start(self):
		self.thread.start()
		return self

	def stop(self):
		self.server.shutdown()
		self.server.server_close()
		self.thread.join(5)

	def seen(self):
		with self.lock:
			return list(self.requests)


class HttpDelivery(harness.PetrelTest):

	def start(self, http, statuses=(), delay=0.0, egress=None, tls=None):
		"""The receiver, then petreld delivering DOMAIN by HTTP with `http`
		(protocol.http fields; url filled in)."""
		self.receiver = HttpReceiver(statuses, delay, tls=tls).start()
		self.addCleanup(self.receiver.stop)
		http = dict({"url": "%s://127.0.0.1:%d/hook?k=1" % ("https" if tls else "http",
								     self.receiver.port)}, **http)
		policy = self.env.write_delivery_policy(
			harness.free_port(), message_hook=META_HOOK, egress=egress,
			queue_by_domain={DOMAIN: {"protocol": {"http": http}}})
		d = self.env.start(policy, shards=2)
		self.addCleanup(d.stop)
		return d

	def send(self, rcpts, subject="http delivery"):
		"""One message over SMTP (smtplib)."""
		msg = make_message(subject=subject, to=rcpts[0], sender=SENDER)
		with smtplib.SMTP("127.0.0.1", self.env.port, timeout=10) as c:
			self.assertEqual(c.sendmail(SENDER, rcpts, msg), {})

	def records(self, type=TYPES):
		return sorted(harness.log_records(self.env.log_dir, type),
			      key=lambda r: r.get("timestamp", ""))

	def wait_records(self, type, count, timeout=20):
		def found():
			recs = self.records(type)
			return recs if len(recs) >= count else None
		return harness.wait_for(found, timeout, interval=0.1,
					what="%d %s record(s)" % (count, type))

	def reception_ids(self, count):
		def found():
			recs = harness.log_records(self.env.log_dir, "Reception")
			return recs if len(recs) >= count else None
		return [r["id"] for r in harness.wait_for(found, 10, what="receptions")]

	@harness.bound(60)
	def test_503_retried_then_delivered_once(self):
		"""Three 503s, then 200: every message is posted until it is
		delivered, exactly once with 200; a TransientFailure per 503, with
		the HTTP status in the response; the headers and the body template
		as configured."""
		k, n = 3, 3
		self.start({"headers": {"X-Key": "s3cret", "Authorization": "Bearer t"},
			    "content_type": "text/plain",
			    "body_template": "id={{ id }} rcpt={{ recipient }} tag={{ meta.tag }} "
					     "from={{ sender }}\n{{ data }}"},
			   statuses=[503] * k)
		rcpts = ["user%d@%s" % (i, DOMAIN) for i in range(n)]
		for r in rcpts:
			self.send([r])
		ids = self.reception_ids(n)
		delivered = self.wait_records("Delivery", n, timeout=30)
		time.sleep(0.5)	# nothing more may come
		reqs = self.receiver.seen()
		self.assertEqual(len(reqs), n + k, [(r.status, r.body[:40]) for r in reqs])
		ok = [r for r in reqs if r.status == 200]
		self.assertEqual(len(ok), n)
		got = sorted(r.body.split(b" ", 1)[0].decode() for r in ok)
		self.assertEqual(got, sorted("id=" + i for i in ids))
		for r in reqs:
			self.assertEqual(r.method, "POST")
			self.assertEqual(r.path, "/hook?k=1")
			self.assertEqual(r.headers.get("X-Key"), "s3cret")
			self.assertEqual(r.headers.get("Authorization"), "Bearer t")
			self.assertEqual(r.headers.get("Content-Type"), "text/plain")
			self.assertEqual(r.headers.get("Host"), "127.0.0.1:%d" % self.receiver.port)
			self.assertRegex(r.body.decode(), r"^id=[0-9a-f]{32} rcpt=user\d@http\.test "
					 r"tag=blue from=sender@client\.test\n")
			self.assertIn(b"Subject: http delivery\r\n", r.body)
		self.assertEqual(sorted(r["recipient"] for r in delivered), sorted(rcpts))
		for rec in delivered:
			self.assertEqual(rec["delivery_protocol"], "HTTP")
			self.assertEqual(rec["site"], "http://127.0.0.1:%d" % self.receiver.port)
			self.assertEqual(rec["response"]["code"], 250)
			self.assertEqual(rec["response"]["content"], "HTTP 200 OK: ok")
		tf = self.records("TransientFailure")
		self.assertEqual(len(tf), k)
		for rec in tf:
			self.assertEqual(rec["response"]["code"], 451)
			self.assertEqual(rec["response"]["content"], "HTTP 503 Service Unavailable: busy")
			self.assertEqual(rec["delivery_protocol"], "HTTP")
		self.assertEqual(self.records("Bounce"), [])
		# Each TransientFailure came before its recipient's Delivery.
		last = {rec["recipient"]: rec["timestamp"] for rec in delivered}
		for rec in tf:
			self.assertLess(rec["timestamp"], last[rec["recipient"]])

	@harness.bound(60)
	def test_json_batches(self):
		"""batch_size 4, application/json: requests carry JSON arrays of the
		rendered bodies, every (id, recipient) exactly once, and a slow
		receiver lets several ready units share one request."""
		self.start({"content_type": "application/json", "batch_size": 4,
			    "body_template": '{"id": {{ id | tojson }}, "rcpt": {{ recipient | tojson }},'
					     ' "meta": {{ meta | tojson }}}'},
			   delay=0.3, egress={"connection_limit": 1})
		sent = []
		for i in range(5):
			rcpts = ["b%d@%s" % (i, DOMAIN)] + (["c%d@%s" % (i, DOMAIN)] if i % 2 else [])
			self.send(rcpts)
			sent += rcpts
		ids = self.reception_ids(5)
		self.wait_records("Delivery", len(sent), timeout=30)
		time.sleep(0.5)
		reqs = self.receiver.seen()
		items = []
		for r in reqs:
			self.assertEqual(r.headers.get("Content-Type"), "application/json")
			body = json.loads(r.body)
			self.assertIsInstance(body, list)
			self.assertTrue(1 <= len(body) <= 4, body)
			items += body
		pairs = sorted((x["id"], x["rcpt"]) for x in items)
		self.assertEqual(len(pairs), len(set(pairs)))
		self.assertEqual(sorted(x[1] for x in pairs), sorted(sent))
		self.assertEqual(sorted(set(x[0] for x in pairs)), sorted(ids))
		self.assertTrue(all(x["meta"].get("tag") == "blue" for x in items), items)
		self.assertLess(len(reqs), len(sent), "no request carried more than one unit")
		self.assertEqual(self.records(("TransientFailure", "Bounce")), [])

	@harness.bound(60)
	def test_400_bounces(self):
		"""A 400 is permanent: one request, a Bounce with the status and the
		receiver's text, no retry."""
		self.start({}, statuses=[400])
		self.send(["bad@" + DOMAIN])
		bounce = self.wait_records("Bounce", 1)[0]
		time.sleep(1.5)	# past retry_interval: no second attempt
		self.assertEqual(len(self.receiver.seen()), 1)
		self.assertEqual(bounce["response"]["code"], 550)
		self.assertEqual(bounce["response"]["content"], "HTTP 400 Bad Request: busy")
		self.assertEqual(bounce["delivery_protocol"], "HTTP")
		self.assertEqual(self.receiver.seen()[0].headers.get("Content-Type"), "message/rfc822")
		self.assertEqual(self.records(("Delivery", "TransientFailure")), [])

	@harness.bound(60)
	def test_refused_connection_is_transient(self):
		"""Nobody listening: TransientFailure (connection refused), retried."""
		port = harness.free_port()
		policy = self.env.write_delivery_policy(
			harness.free_port(),
			queue_by_domain={DOMAIN: {"protocol": {"http": {
				"url": "http://127.0.0.1:%d/" % port}}}})
		d = self.env.start(policy, shards=2)
		self.addCleanup(d.stop)
		self.send(["nobody@" + DOMAIN])
		recs = self.wait_records("TransientFailure", 2, timeout=15)
		for rec in recs:
			self.assertEqual(rec["response"]["code"], 451)
			self.assertIn("Connection refused", rec["response"]["content"])
			self.assertEqual(rec["delivery_protocol"], "HTTP")
		self.assertEqual(self.records(("Delivery", "Bounce")), [])

	@harness.bound(60)
	def test_keep_alive_and_idle_close_race(self):
		"""The connection is reused for the next message; when the server
		closes a reused connection under a request (no byte of answer), the
		unit goes to a new connection at once: delivered, no
		TransientFailure, no retry wait."""
		self.start({}, statuses=[200, 200, "drop"])
		for i in range(3):
			self.send(["k%d@%s" % (i, DOMAIN)])
			self.wait_records("Delivery", i + 1, timeout=10)
		reqs = self.receiver.seen()
		self.assertEqual([r.status for r in reqs], [200, 200, "drop", 200])
		self.assertEqual(reqs[0].peer, reqs[1].peer, "keep-alive: one connection")
		self.assertEqual(reqs[1].peer, reqs[2].peer)
		self.assertNotEqual(reqs[2].peer, reqs[3].peer)
		self.assertEqual(reqs[2].body, reqs[3].body)
		self.assertEqual(self.records(("TransientFailure", "Bounce")), [])
		rec = self.records("Delivery")[2]
		self.assertEqual(rec["num_attempts"], 0)

	@harness.bound(30)
	def test_config_mistakes_are_lua_errors_with_line(self):
		"""petreld --validate: a body_template that does not compile,
		accept_invalid_certs on http:// and a batch that is not JSON are
		refused at the make_queue_config line."""
		cases = [
			("{ url = 'http://127.0.0.1:1/', body_template = '{{ id | nope }}' }",
			 "protocol.http.body_template: line 1: unknown filter 'nope'"),
			("{ url = 'http://127.0.0.1:1/', accept_invalid_certs = true }",
			 "protocol.http.accept_invalid_certs applies to https:// URLs only"),
			("{ url = 'http://127.0.0.1:1/', batch_size = 3 }",
			 "protocol.http.batch_size 3 needs content_type 'application/json'"),
		]
		for http, want in cases:
			path = self.env.dir / "bad.lua"
			path.write_text("local kumo = require 'kumo'\nlocal x = 1\n"
					"kumo.make_queue_config { protocol = { http = %s } }\n" % http)
			rc, out = harness.validate(path, self.env.dir)
			self.assertEqual(rc, 1, out)
			self.assertIn("bad.lua:3: make_queue_config: " + want, out)

	@harness.bound(60)
	def test_https(self):
		"""https:// with accept_invalid_certs to a self-signed receiver:
		delivered over TLS (the record names the TLS version); the same
		receiver without accept_invalid_certs fails verification: a
		TransientFailure, nothing posted."""
		cert = receivers.make_cert(self.env.dir, "127.0.0.1")
		self.start({"accept_invalid_certs": True}, tls=cert)
		self.send(["tls@" + DOMAIN])
		rec = self.wait_records("Delivery", 1)[0]
		self.assertEqual(rec["response"]["content"], "HTTP 200 OK: ok")
		self.assertTrue(rec["tls_protocol_version"].startswith("TLSv1."), rec)
		self.assertEqual(rec["site"], "https+insecure://127.0.0.1:%d" % self.receiver.port)
		self.assertEqual(len(self.receiver.seen()), 1)
		self.assertEqual(self.receiver.seen()[0].headers.get("Host"),
				 "127.0.0.1:%d" % self.receiver.port)

	@harness.bound(60)
	def test_https_unverified_certificate_is_refused(self):
		cert = receivers.make_cert(self.env.dir, "127.0.0.1")
		self.start({}, tls=cert)
		self.send(["tls@" + DOMAIN])
		rec = self.wait_records("TransientFailure", 1)[0]
		self.assertEqual(rec["response"]["code"], 451)
		self.assertIn("TLS handshake with 127.0.0.1 failed", rec["response"]["content"])
		self.assertEqual(rec["site"], "https://127.0.0.1:%d" % self.receiver.port)
		self.assertEqual(self.receiver.seen(), [])
		self.assertEqual(self.records(("Delivery", "Bounce")), [])
