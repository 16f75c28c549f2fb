"""SMTP reception as a client sees it: replies, limits, pipelining, TLS, policy
hooks, and what lands in the spool and the reception log."""

import smtplib
import socket

import harness
from harness import (REPLY_BARE_CRLF, REPLY_LINE_TOO_LONG, REPLY_POLICY_ERROR, REPLY_QUIT,
		     REPLY_RELAY_DENIED, REPLY_SIZE, REPLY_STARTTLS, REPLY_TOO_MANY_RCPTS,
		     make_message, spool_ls)

SENDER = "sender@client.test"
RCPT = "rcpt@example.com"


class DefaultPolicy(harness.PetrelTest):
	@harness.bound(60)
	def test_default_policy_swaks(self):
		"""policy/default.lua as shipped, run from an empty cwd: 127.0.0.1:2525
		takes a message from swaks with 250."""
		harness.require_tool("swaks")
		policy = harness.REPO / "policy" / "default.lua"
		self.assertTrue(policy.is_file(), "%s is missing" % policy)
		if harness.port_in_use(2525):
			self.fail("127.0.0.1:2525 is already in use on this machine; the default-policy "
				  "test needs it (stop whatever listens there)")
		cwd = self.env.dir / "cwd"
		cwd.mkdir()
		self.env.start(policy=policy, port=2525, cwd=cwd)
		rc, out = harness.run_swaks(["--server", "127.0.0.1:2525", "--to", "someone@example.com",
					     "--from", SENDER])
		self.assertEqual(rc, 0, out)
		ids = harness.ids_in(out)
		self.assertEqual(len(ids), 1, out)
		self.assertEqual(set(spool_ls(cwd / "var" / "spool")), set(ids))


class Session(harness.PetrelTest):
	def test_greeting_ehlo_quit(self):
		"""Exact greeting, the EHLO extensions, QUIT's 221 and the close."""
		self.env.start()
		c = self.env.connect()
		r = c.ehlo()
		self.assertTrue(r.texts[0].startswith(harness.HOSTNAME), r.lines)
		ext = set(r.texts[1:])
		for want in ("PIPELINING", "SIZE 20971520", "8BITMIME", "ENHANCEDSTATUSCODES",
			     "SMTPUTF8", "STARTTLS"):
			self.assertIn(want, ext, r.lines)
		c.cmd("QUIT", REPLY_QUIT)
		self.assertEqual(c.sock.recv(100), b"", "connection not closed after QUIT")

	def test_pipelining_raw(self):
		"""MAIL/RCPT/RCPT/DATA in one write get their four replies in order;
		the end of data pipelined with the next MAIL/RCPT/DATA too."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		c.send("MAIL FROM:<%s>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		       "DATA\r\n" % SENDER)
		c.expect("250 2.1.0 OK")
		c.expect("250 2.1.5 OK")
		c.expect("250 2.1.5 OK")
		c.expect("354")
		c.send(make_message(subject="pipelined 1") + b".\r\nMAIL FROM:<%s>\r\n"
		       b"RCPT TO:<c@example.com>\r\nDATA\r\n" % SENDER.encode())
		id1 = c.expect_accept()
		c.expect("250 2.1.0 OK")
		c.expect("250 2.1.5 OK")
		c.expect("354")
		c.send(make_message(subject="pipelined 2") + b".\r\nQUIT\r\n")
		id2 = c.expect_accept()
		c.expect(REPLY_QUIT)
		self.assertNotEqual(id1, id2)
		ls = spool_ls(self.env.spool)
		self.assertEqual(set(ls), {id1, id2})
		self.assertEqual(ls[id1]["rcpts"], 2)
		self.assertEqual(ls[id2]["rcpts"], 1)
		env = harness.spool_envelope(self.env.spool, id1)
		self.assertEqual(env["recipients"], ["a@example.com", "b@example.com"])
		self.assertEqual(env["sender"], SENDER)

	def test_pipelining_swaks(self):
		"""swaks --pipeline: 250 with an id that is in the spool."""
		self.env.start()
		rc, out = harness.run_swaks(["--server", "127.0.0.1:%d" % self.env.port, "--pipeline",
					     "--to", RCPT, "--from", SENDER])
		self.assertEqual(rc, 0, out)
		ids = harness.ids_in(out)
		self.assertEqual(len(ids), 1, out)
		self.assertEqual(set(spool_ls(self.env.spool)), set(ids))

	def test_dot_stuffing_and_stored_bytes(self):
		"""The stored message is our Received: line then the data exactly as
		sent, dot-unstuffed; its size agrees everywhere."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		raw = (b"From: <s@client.test>\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n"
		       b"plain\r\n")
		mid = c.send_message(SENDER, [RCPT], harness.dot_stuff(raw))
		stored = harness.spool_cat(self.env.spool, mid)
		self.assertTrue(stored.startswith(b"Received: "), stored[:200])
		self.assertTrue(stored.endswith(raw), stored)
		received = harness.header_block(stored)[0]
		self.assertIn("with ESMTP", received)
		self.assertNotIn("ESMTPS", received)
		ls = spool_ls(self.env.spool)
		self.assertEqual(ls[mid]["size"], len(stored))


class Tls(harness.PetrelTest):
	def test_starttls_swaks(self):
		"""swaks --tls: 250 after STARTTLS; the stored Received: says ESMTPS."""
		self.env.start()
		rc, out = harness.run_swaks(["--server", "127.0.0.1:%d" % self.env.port, "--tls",
					     "--to", RCPT, "--from", SENDER])
		self.assertEqual(rc, 0, out)
		self.assertIn(REPLY_STARTTLS, out)
		ids = harness.ids_in(out)
		self.assertEqual(len(ids), 1, out)
		self.assertRegex(out, r"(?m)^<~  250 2\.0\.0 OK id=%s" % ids[0])
		stored = harness.spool_cat(self.env.spool, ids[0])
		received = harness.header_block(stored)[0]
		self.assertTrue(received.startswith("Received: "), received)
		self.assertIn("ESMTPS", received)

	def test_bytes_after_starttls_discarded(self):
		"""RFC 3207 6: "STARTTLS\\r\\nNOOP\\r\\n" in one write; the NOOP is
		dropped; after the handshake the session is new and EHLO's reply is
		the first thing read (without STARTTLS offered again)."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		c.send("STARTTLS\r\nNOOP\r\n")
		c.expect(REPLY_STARTTLS)
		version = c.starttls()
		harness.note("TLS %s" % version)
		r = c.cmd("EHLO client.test", "250")
		self.assertGreater(len(r.lines), 1, "first reply after TLS is not EHLO's: %r" % r.lines)
		self.assertTrue(r.texts[0].startswith(harness.HOSTNAME), r.lines)
		self.assertNotIn("STARTTLS", r.texts, "STARTTLS offered again after TLS (RFC 3207 4.2)")
		c.cmd("NOOP", "250")
		c.assert_silent(0.5)
		mid = c.send_message(SENDER, [RCPT], make_message(subject="after tls"))
		self.assertIn("ESMTPS", harness.header_block(harness.spool_cat(self.env.spool, mid))[0])

	def test_mail_before_ehlo_after_tls_refused(self):
		"""After the handshake the session starts over: MAIL without a new
		EHLO is a bad sequence (503)."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		c.cmd("STARTTLS", REPLY_STARTTLS)
		c.starttls()
		c.cmd("MAIL FROM:<%s>" % SENDER, "503")


class Limits(harness.PetrelTest):
	def test_size_param_and_oversized_body(self):
		"""max_message_size=10000: SIZE=10001 gets 552 at MAIL, SIZE=10000 is
		fine; an oversized body gets 552 at the end of data; the session then
		takes a small message.  Only that one is spooled."""
		self.env.start(policy=self.env.write_policy(max_message_size=10000))
		c = self.env.connect()
		r = c.ehlo()
		self.assertIn("SIZE 10000", r.texts)
		c.cmd("MAIL FROM:<%s> SIZE=10001" % SENDER, REPLY_SIZE)
		c.cmd("MAIL FROM:<%s> SIZE=10000" % SENDER, "250 2.1.0 OK")
		c.cmd("RSET", "250")
		r = c.transaction(SENDER, [RCPT], make_message(subject="too big", size=20000))
		self.assertEqual(r.lines, [REPLY_SIZE])
		c.cmd("NOOP", "250")
		mid = c.send_message(SENDER, [RCPT], make_message(subject="small", size=2000))
		self.assertEqual(set(spool_ls(self.env.spool)), {mid})

	def test_too_many_recipients(self):
		"""101 RCPTs pipelined: 100 x 250, then 452 4.5.3; the message goes
		to exactly the first 100."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		rcpts = ["r%03d@example.com" % i for i in range(101)]
		c.cmd("MAIL FROM:<%s>" % SENDER, "250 2.1.0 OK")
		c.send("".join("RCPT TO:<%s>\r\n" % r for r in rcpts))
		for i in range(100):
			c.expect("250 2.1.5 OK")
		c.expect(REPLY_TOO_MANY_RCPTS)
		c.cmd("DATA", "354")
		c.send(make_message(subject="hundred") + b".\r\n")
		mid = c.expect_accept()
		ls = spool_ls(self.env.spool)
		self.assertEqual(list(ls), [mid])
		self.assertEqual(ls[mid]["rcpts"], 100)
		env = harness.spool_envelope(self.env.spool, mid)
		self.assertEqual(env["recipients"], rcpts[:100])

	def test_command_line_length(self):
		"""RFC 5321 4.5.3.1.4: a 512-octet command line (CRLF included) is
		fine, 513 gets 500 5.5.0 and exactly one reply; the session goes on."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		line512 = "NOOP " + "a" * (512 - 2 - 5)
		self.assertEqual(len(line512) + 2, 512)
		c.cmd(line512, "250")
		c.cmd(line512 + "b", REPLY_LINE_TOO_LONG)
		c.assert_silent(0.5)
		c.cmd("MAIL FROM:<%s>" % SENDER, "250 2.1.0 OK")
		c.cmd("RCPT TO:<%s@example.com>" % ("r" * 64), "250 2.1.5 OK")	# 4.5.3.1.1
		c.cmd("DATA", "354")
		c.send(make_message(subject="after long line") + b".\r\n")
		mid = c.expect_accept()
		self.assertEqual(spool_ls(self.env.spool)[mid]["rcpts"], 1)


	def test_text_line_length(self):
		"""RFC 5321 4.5.3.1.6: a 1000-octet text line (CRLF included) is
		stored as sent; a 1001-octet one gets the message refused with 550
		5.6.0 at the end of data (never an early end); the session goes on."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		line1000 = b"y" * 998 + b"\r\n"
		head = b"From: <s@client.test>\r\nSubject: long text line\r\n\r\n"
		mid = c.send_message(SENDER, [RCPT], head + line1000)
		self.assertTrue(harness.spool_cat(self.env.spool, mid).endswith(line1000))
		r = c.transaction(SENDER, [RCPT], head + b"z" * 999 + b"\r\n")
		self.assertEqual(r.lines, ["550 5.6.0 message data has a line longer than 1000 octets "
					   "(RFC 5321 4.5.3.1.6)"])
		c.assert_silent(0.3)
		mid2 = c.send_message(SENDER, [RCPT], make_message(subject="after long text line"))
		self.assertEqual(set(spool_ls(self.env.spool)), {mid, mid2})


class Relay(harness.PetrelTest):
	def test_relay_denied_for_other_address(self):
		"""relay_hosts={'127.0.0.1'}: a client bound to 127.0.0.2 gets 550 5.7.1
		at RCPT; one from 127.0.0.1 gets 250 (smtplib as the client)."""
		self.env.start()
		with smtplib.SMTP("127.0.0.1", self.env.port, source_address=("127.0.0.2", 0),
				  timeout=10) as s:
			s.ehlo("outsider.test")
			self.assertEqual(s.mail(SENDER), (250, b"2.1.0 OK"))
			code, text = s.rcpt(RCPT)
			self.assertEqual("%d %s" % (code, text.decode()), REPLY_RELAY_DENIED)
		with smtplib.SMTP("127.0.0.1", self.env.port, source_address=("127.0.0.1", 0),
				  timeout=10) as s:
			s.ehlo("insider.test")
			self.assertEqual(s.mail(SENDER), (250, b"2.1.0 OK"))
			self.assertEqual(s.rcpt(RCPT), (250, b"2.1.5 OK"))
			code, text = s.data(make_message(subject="insider"))
			self.assertEqual(code, 250)
			self.assertRegex(text.decode(), r"^2\.0\.0 OK id=[0-9a-f]{32}$")
		self.assertEqual(len(spool_ls(self.env.spool)), 1)


class Smuggling(harness.PetrelTest):
	def _session(self):
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		return c

	def _data(self, c):
		c.cmd("MAIL FROM:<%s>" % SENDER, "250 2.1.0 OK")
		c.cmd("RCPT TO:<%s>" % RCPT, "250 2.1.5 OK")
		c.cmd("DATA", "354")

	def _still_works(self, c):
		mid = c.send_message(SENDER, [RCPT], make_message(subject="after smuggling"))
		ls = spool_ls(self.env.spool)
		self.assertEqual(list(ls), [mid])
		env = harness.spool_envelope(self.env.spool, mid)
		self.assertEqual(env["sender"], SENDER)
		self.assertEqual(env["recipients"], [RCPT])

	def test_lf_dot_crlf_smuggling(self):
		"""'\\n.\\r\\n' does not end DATA: the smuggled MAIL/RCPT/DATA stay
		content; one 550 5.6.0 for the lot; nothing spooled."""
		c = self._session()
		self._data(c)
		c.send(b"Subject: smuggle\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\n"
		       b"DATA\r\nsmuggled\r\n")
		c.assert_silent(0.5)
		c.send(b".\r\n")
		c.expect(REPLY_BARE_CRLF)
		c.assert_silent(1.0)
		self.assertEqual(spool_ls(self.env.spool), {})
		self._still_works(c)

	def test_bare_lf_line_end(self):
		c = self._session()
		self._data(c)
		c.send(b"Subject: bare lf\r\n\r\nline one\nline two\r\n.\r\n")
		c.expect(REPLY_BARE_CRLF)
		c.assert_silent(0.5)
		self.assertEqual(spool_ls(self.env.spool), {})
		self._still_works(c)

	def test_bare_cr(self):
		c = self._session()
		self._data(c)
		c.send(b"Subject: bare cr\r\n\r\nline one\rline two\r\n.\r\n")
		c.expect(REPLY_BARE_CRLF)
		self.assertEqual(spool_ls(self.env.spool), {})
		self._still_works(c)

	def test_crlf_dot_lf_does_not_end_data(self):
		"""'\\r\\n.\\n' is not the end of data: no reply until CRLF.CRLF."""
		c = self._session()
		self._data(c)
		c.send(b"Subject: dot lf\r\n\r\nhello\r\n.\nNOOP\r\n")
		c.assert_silent(1.0)
		c.send(b".\r\n")
		c.expect(REPLY_BARE_CRLF)
		c.assert_silent(0.5)
		self.assertEqual(spool_ls(self.env.spool), {})
		self._still_works(c)


class PolicyHooks(harness.PetrelTest):
	def test_policy_reject(self):
		"""petrel.reject(550, '5.7.1 rejected by policy') is the reply as given;
		nothing spooled; the next transaction is accepted."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		r = c.transaction(SENDER, [RCPT], make_message(subject="please reject-me"))
		self.assertEqual(r.lines, ["550 5.7.1 rejected by policy"])
		self.assertEqual(spool_ls(self.env.spool), {})
		mid = c.send_message(SENDER, [RCPT], make_message(subject="fine"))
		self.assertEqual(list(spool_ls(self.env.spool)), [mid])

	def test_lua_runtime_error(self):
		"""A Lua error in smtp_server_message_received: 451 4.3.0; the next
		transaction on the same connection gets 250."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		r = c.transaction(SENDER, [RCPT], make_message(subject="lua-error please"))
		self.assertEqual(r.lines, [REPLY_POLICY_ERROR])
		mid = c.send_message(SENDER, [RCPT], make_message(subject="fine"))
		self.assertEqual(list(spool_ls(self.env.spool)), [mid])
		log = self.env.daemons[0].stderr_text()
		self.assertIn("e2e deliberate runtime error", log, "the Lua error was not logged")

	def test_policy_api(self):
		"""sender(), recipient_list(), get/set_meta, get_data() and
		append_header() as seen in the stored envelope and message."""
		self.env.start()
		c = self.env.connect()
		c.ehlo()
		mid = c.send_message("api@x.test", ["one@example.com", "two@example.net"],
				     make_message(subject="policy-api", body="MARKER-42\r\n"))
		env = harness.spool_envelope(self.env.spool, mid)
		meta = env["meta"]
		self.assertEqual(meta.get("e2e_tag"), "blue", env)
		self.assertEqual(meta.get("e2e_copy"), "blue-copy", env)
		self.assertEqual(meta.get("e2e_sender"), "api@x.test", env)
		self.assertEqual(meta.get("e2e_rcpts"), 2, env)
		self.assertEqual(meta.get("e2e_first_rcpt"), "one@example.com", env)
		self.assertIs(meta.get("e2e_has_marker"), True, env)
		headers = harness.header_block(harness.spool_cat(self.env.spool, mid))
		self.assertIn("X-E2E-Policy: seen api@x.test", headers)


class ReceptionLog(harness.PetrelTest):
	def test_reception_records(self):
		"""One Reception record per accepted message with the right id,
		sender, recipient (string for one, array for several), size, peer."""
		self.env.start()
		c = self.env.connect()
		c.ehlo("logger.client.test")
		id1 = c.send_message(SENDER, [RCPT], make_message(subject="log one", size=3000))
		id2 = c.send_message("other@client.test", ["a@example.com", "b@example.org"],
				     make_message(subject="log two"))
		r = c.transaction(SENDER, [RCPT], make_message(subject="reject-me"))
		self.assertEqual(r.code, 550)
		recs = harness.wait_reception(self.env.log_dir, [id1, id2])
		all_recs = [x for x in harness.reception_records(self.env.log_dir)
			    if x.get("type") == "Reception"]
		self.assertEqual(len(all_recs), 2, all_recs)
		ls = spool_ls(self.env.spool)
		one, two = recs[id1], recs[id2]
		self.assertEqual(one["sender"], SENDER)
		self.assertEqual(one["recipient"], RCPT)
		self.assertEqual(one["queue"], "example.com")
		self.assertEqual(two["sender"], "other@client.test")
		self.assertEqual(two["recipient"], ["a@example.com", "b@example.org"])
		for mid, rec in ((id1, one), (id2, two)):
			self.assertEqual(rec["id"], mid)
			self.assertEqual(rec["size"], ls[mid]["size"], rec)
			self.assertEqual(rec["site"], "", rec)
			self.assertEqual(rec["peer_address"], {"name": "logger.client.test",
							       "addr": "127.0.0.1"}, rec)
			self.assertEqual(rec["reception_protocol"], "ESMTP", rec)
			self.assertIsInstance(rec["meta"], dict, rec)
			for k in ("timestamp", "created", "nodeid", "queue"):
				self.assertIn(k, rec)
				self.assertIsNotNone(rec[k], k)
		self.assertGreater(one["size"], 3000)
		files = sorted(p.relative_to(self.env.log_dir).as_posix()
			       for p in self.env.log_dir.glob("*/*"))
		harness.note("log files: %s" % " ".join(files))
		self.assertRegex(files[0], r"^\d+/\d{8}-\d{6}")
