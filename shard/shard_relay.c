/*
 * shard_relay.c -- who may send to whom, and what becomes of the reports
 * sent to listener domains (KumoMTA's get_listener_domain, make_listener_
 * domain{relay_to, relay_from, log_oob, log_arf}).
 *
 * At RCPT (shard_relay_rcpt, the session's recipient hook).  Without a
 * get_listener_domain handler the rule is the listener's relay_hosts, as
 * before.  With one, every recipient is put to it, from relay hosts too
 * (KumoMTA does the same, so a bounce forwarded by an internal host is
 * still logged):
 *
 *   relay = the peer is in relay_hosts
 *        or the recipient's domain says relay_to
 *        or the sender's domain lists the peer in relay_from
 *   accepted when relay, or the recipient's domain logs OOB or ARF
 *   reports; else "550 5.7.1 relaying denied" (not an open relay).
 *
 * The sender's domain is looked up only when nothing else allowed the
 * relay.  The outcome travels with the recipient as the session's tag:
 * bit 0 relay, bits 1-2 log_oob, bits 3-4 log_arf.  Tags go by position
 * in the recipient list, which the policy can't change today; an API that
 * edits recipients must keep them in step.  Nothing is cached:
 * each RCPT calls the handler of the state the shard runs now, so a reload
 * takes effect at the next RCPT (listener_domains' data is read once per
 * state anyway).
 *
 * At the end of DATA (shard_relay_message), after
 * smtp_server_message_received, KumoMTA's per-recipient rule: a recipient
 * whose domain logs ARF reports, when the message is one, or else logs
 * OOB reports, when it is a DSN, is relayed only for LogThenRelay; any
 * other recipient is relayed when `relay` said so.  Then:
 *
 *   some recipient relayed   the others are removed from the message,
 *                            which is spooled; the report's records are
 *                            logged once it is durable (after Reception)
 *   none, but a report       its records are logged now, and the client
 *                            gets 250: the report is consumed
 *   none, no report          550: 5.6.0 naming what is wrong when the
 *                            message is a report of the wanted kind that
 *                            can't be read, else 5.7.1 relaying not
 *                            permitted (KumoMTA's reply)
 *
 * A recipient removed from a message that is no report is only noted in
 * the diagnostic log, as KumoMTA drops it silently (it was accepted at
 * RCPT only because its domain takes reports).
 *
 * Records: one OOB record per failed recipient of a DSN, or one Feedback
 * record for an ARF report (shard_log.c); both name, in original_id, the
 * id Petrel gave the reported message when the returned headers carry
 * our Received: field.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/cidr.h"
#include "net/addr.h"
#include "shard/shard_int.h"

#define RELAY_TAG_RELAY	 0x1u
#define RELAY_TAG_OOB(t) ((enum policy_report_mode)(((t) >> 1) & 3u))
#define RELAY_TAG_ARF(t) ((enum policy_report_mode)(((t) >> 3) & 3u))

static unsigned relay_tag(bool relay, const struct policy_listener_domain *ld)
{
	return (relay ? RELAY_TAG_RELAY : 0) | (unsigned)ld->log_oob << 1 |
	       (unsigned)ld->log_arf << 3;
}

/* "ip:port", "[ip]:port" for IPv6 (Rust's SocketAddr form, as KumoMTA writes it). */
static void relay_format_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char ip[64];

	pt_sockaddr_ip((const struct sockaddr *)ss, ip);
	snprintf(out, n, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, net_addr_port(ss));
}

/* The address the client reached us at; asked of the kernel once. */
static const char *relay_local_addr(struct shard_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (c->local_addr[0] != '\0')
		return c->local_addr;
	if (getsockname(c->st.fd, (struct sockaddr *)&ss, &len) == 0)
		relay_format_addr(&ss, c->local_addr, sizeof(c->local_addr));
	else
		snprintf(c->local_addr, sizeof(c->local_addr), "%s", c->listener->config->listen);
	return c->local_addr;
}

static void relay_policy_error(const char *err, struct smtp_rcpt_verdict *out)
{
	pt_error("policy error in get_listener_domain: %s", err);
	out->code = 451;
	snprintf(out->text, sizeof(out->text), "4.3.0 internal policy error");
}

/* get_listener_domain(domain): PT_OK with ld, or out filled (refused). */
static int relay_lookup(struct shard_conn *c, const char *domain, struct policy_listener_domain *ld,
			struct smtp_rcpt_verdict *out)
{
	const struct policy_listener *pl = c->listener->config;
	char from[80], err[1024];
	struct policy_reply reply;
	bool tls = c->st.tls_state == CONN_TLS_ON;
	struct policy_conn_meta meta = {
	    .received_from = from,
	    .received_via = relay_local_addr(c),
	    .hostname = pl->hostname,
	    .reception_protocol = "ESMTP",
	    .ehlo_domain = smtp_session_ehlo(c->session),
	    .tls_cipher = tls ? tls_conn_cipher(c->st.tls) : NULL,
	    .tls_protocol_version = tls ? tls_conn_version(c->st.tls) : NULL,
	    .peer = (const struct sockaddr *)&c->peer_sa,
	};
	int rc;

	relay_format_addr(&c->peer_sa, from, sizeof(from));
	rc = policy_get_listener_domain(c->shard->policy, domain, meta.received_via, &meta, ld,
					&reply, err, sizeof(err));
	if (rc == PT_DECLINED) {
		out->code = reply.code;
		snprintf(out->text, sizeof(out->text), "%s", reply.text);
	} else if (rc != PT_OK) {
		relay_policy_error(err, out);
	}
	return rc;
}

void shard_relay_rcpt(void *ctx, const char *sender, const char *rcpt, bool relay_allowed,
		      struct smtp_rcpt_verdict *out)
{
	struct shard_conn *c = ctx;
	struct policy_listener_domain ld, sd;
	const char *at = strrchr(rcpt, '@'), *sat = strrchr(sender, '@');
	bool relay = relay_allowed;

	if (!policy_has_listener_domain_handler(c->shard->policy)) {
		memset(&ld, 0, sizeof(ld));
	} else {
		if (relay_lookup(c, at ? at + 1 : rcpt, &ld, out) != PT_OK)
			return;
		relay = relay || (ld.found && ld.relay_to);
		if (!relay && sat != NULL && sat[1] != '\0') {
			if (relay_lookup(c, sat + 1, &sd, out) != PT_OK)
				return;
			relay = sd.found && sd.relay_from_peer;
		}
	}
	if (!relay && ld.log_oob == POLICY_REPORT_IGNORE && ld.log_arf == POLICY_REPORT_IGNORE) {
		out->code = 550;
		snprintf(out->text, sizeof(out->text), "5.7.1 relaying denied");
		return;
	}
	out->tag = relay_tag(relay, &ld);
}

/* ---- the end of DATA ---------------------------------------------------------- */

void shard_report_free(struct shard_report *r)
{
	if (r == NULL)
		return;
	if (r->is_arf)
		pt_arf_free(&r->arf);
	else
		pt_dsn_free(&r->dsn);
	for (size_t i = 0; i < r->n_rcpts; i++)
		free(r->rcpts[i]);
	free(r->rcpts);
	free(r);
}

/* Keep a copy of the envelope recipients before any is removed. */
static int relay_copy_rcpts(struct shard_report *r, const struct pt_message *m)
{
	r->rcpts = calloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(*r->rcpts));
	if (r->rcpts == NULL)
		return PT_NOMEM;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		if ((r->rcpts[i] = strdup(m->rcpts[i])) == NULL)
			return PT_NOMEM;
		r->n_rcpts++;
	}
	return PT_OK;
}

static void __attribute__((format(printf, 3, 4)))
relay_reply(struct policy_reply *reply, int code, const char *fmt, ...)
{
	va_list ap;

	reply->code = code;
	va_start(ap, fmt);
	vsnprintf(reply->text, sizeof(reply->text), fmt, ap);
	va_end(ap);
}

/* Parse what the recipients want: an ARF report first (KumoMTA's order),
 * then a DSN.  *arf_rc / *dsn_rc: PT_OK, PT_DECLINED, PT_ERROR (err). */
static int relay_parse(const struct pt_message *m, bool want_oob, bool want_arf,
		       struct shard_report *r, int *arf_rc, int *dsn_rc, char *err, size_t err_len)
{
	const char *data = m->data.data ? m->data.data : "";

	*arf_rc = *dsn_rc = PT_DECLINED;
	if (want_arf)
		*arf_rc = pt_report_parse_arf(data, m->data.len, &r->arf, err, err_len);
	r->is_arf = *arf_rc == PT_OK;
	if (want_oob && *arf_rc != PT_OK && *arf_rc != PT_NOMEM)
		*dsn_rc = pt_report_parse_dsn(data, m->data.len, &r->dsn, err, err_len);
	return *arf_rc == PT_NOMEM || *dsn_rc == PT_NOMEM ? PT_NOMEM : PT_OK;
}

static void relay_remove_rcpt(struct pt_message *m, size_t i)
{
	free(m->rcpts[i]);
	memmove(&m->rcpts[i], &m->rcpts[i + 1], (m->n_rcpts - i - 1) * sizeof(*m->rcpts));
	m->n_rcpts--;
}

/* Which recipients to relay (keep[i]); returns whether any took the report. */
static bool relay_decide(struct shard_conn *c, const struct pt_message *m, int arf_rc, int dsn_rc,
			 bool *keep)
{
	bool was_report = false;

	for (size_t i = 0; i < m->n_rcpts; i++) {
		unsigned tag = smtp_session_rcpt_tag(c->session, i);
		enum policy_report_mode mode = POLICY_REPORT_IGNORE;

		if (arf_rc == PT_OK)
			mode = RELAY_TAG_ARF(tag);
		else if (dsn_rc == PT_OK)
			mode = RELAY_TAG_OOB(tag);
		if (mode != POLICY_REPORT_IGNORE) {
			was_report = true;
			keep[i] = mode == POLICY_REPORT_LOG_THEN_RELAY;
		} else {
			keep[i] = (tag & RELAY_TAG_RELAY) != 0;
		}
	}
	return was_report;
}

/* Nothing to relay: a report is logged and consumed; anything else refused. */
static int relay_nothing(struct shard_conn *c, struct pt_message *m, struct shard_report *r,
			 bool was_report, int arf_rc, int dsn_rc, const char *err,
			 struct policy_reply *reply)
{
	if (!was_report) {
		if (arf_rc == PT_ERROR)
			relay_reply(reply, 550, "5.6.0 malformed feedback report: %s", err);
		else if (dsn_rc == PT_ERROR)
			relay_reply(reply, 550, "5.6.0 malformed delivery status notification: %s",
				    err);
		else
			relay_reply(reply, 550, "%s", "5.7.1 relaying not permitted");
		return PT_DECLINED;
	}
	if (relay_copy_rcpts(r, m) != PT_OK) {
		relay_reply(reply, 451, "%s", "4.3.0 out of memory, try again later");
		return PT_DECLINED;
	}
	shard_log_report(c->shard, m, c, r);
	pt_info("%s: message %s: %s logged, not relayed", c->peer_ip, m->id,
		r->is_arf ? "feedback report" : "delivery status notification");
	relay_reply(reply, 250, "2.0.0 OK id=%s", m->id);
	return PT_DECLINED;
}

int shard_relay_message(struct shard_conn *c, struct pt_message *m, struct policy_reply *reply)
{
	struct shard_report *r;
	bool want_oob = false, want_arf = false, was_report, *keep;
	int arf_rc, dsn_rc, rc = PT_OK;
	char err[256] = "";
	size_t n_keep = 0;

	for (size_t i = 0; i < m->n_rcpts; i++) {
		unsigned tag = smtp_session_rcpt_tag(c->session, i);

		want_oob |= RELAY_TAG_OOB(tag) != POLICY_REPORT_IGNORE;
		want_arf |= RELAY_TAG_ARF(tag) != POLICY_REPORT_IGNORE;
	}
	/* The usual case: every recipient was accepted to be relayed, no parse. */
	if (!want_oob && !want_arf)
		return PT_OK;
	r = calloc(1, sizeof(*r));
	keep = calloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(*keep));
	if (r == NULL || keep == NULL ||
	    relay_parse(m, want_oob, want_arf, r, &arf_rc, &dsn_rc, err, sizeof(err)) != PT_OK) {
		free(keep);
		shard_report_free(r);
		relay_reply(reply, 451, "%s", "4.3.0 out of memory, try again later");
		return PT_DECLINED;
	}
	was_report = relay_decide(c, m, arf_rc, dsn_rc, keep);
	for (size_t i = 0; i < m->n_rcpts; i++)
		n_keep += keep[i];
	if (n_keep == 0) {
		rc = relay_nothing(c, m, r, was_report, arf_rc, dsn_rc, err, reply);
		shard_report_free(r);
	} else if (was_report && relay_copy_rcpts(r, m) != PT_OK) {
		shard_report_free(r);
		relay_reply(reply, 451, "%s", "4.3.0 out of memory, try again later");
		rc = PT_DECLINED;
	} else {
		for (size_t i = m->n_rcpts; i-- > 0;) {
			if (keep[i])
				continue;
			if (!was_report)
				pt_info("%s: message %s: %s dropped: not a report", c->peer_ip,
					m->id, m->rcpts[i]);
			relay_remove_rcpt(m, i);
		}
		if (was_report)
			c->report = r;
		else
			shard_report_free(r);
	}
	free(keep);
	return rc;
}

void shard_relay_committed(struct shard_conn *c, const struct pt_message *m, bool ok)
{
	if (c->report == NULL)
		return;
	if (ok)
		shard_log_report(c->shard, m, c, c->report);
	shard_report_free(c->report);
	c->report = NULL;
}
