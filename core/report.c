/*
 * report.c -- RFC 3464 delivery status notifications and RFC 5965 feedback
 * reports (see report.h for the outcomes and the rules).
 *
 * Both parsers take the same walk: the top-level Content-Type must be
 * multipart/report; its body parts are visited once with the multipart
 * walker of core/mime.c; the report part's content (decoded from its
 * transfer encoding, which RFC 3464 forbids but some senders use anyway)
 * is read as blocks of header-like fields, and the returned message's
 * header block is searched for Petrel's own id.  Field values are copied
 * out (unfolded, trimmed, bounded), so the result outlives the message.
 *
 * A block is read into an array of fields that point into the decoded
 * content; the typed extraction below then copies what it needs.
 */
#include "core/report.h"

#include "core/mime.h"
#include "core/ptime.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A block of fields, pointing into the content it was read from. */
struct report_block {
	struct pt_mime_field f[PT_REPORT_MAX_FIELDS];
	size_t n;
};

static void __attribute__((format(printf, 3, 4)))
report_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/*
 * The next block of fields from *off; false when only blank lines or
 * nothing is left.  A block ends at a blank line (pt_mime_field_next
 * stops there).
 */
static bool report_block_next(const char *p, size_t len, size_t *off, struct report_block *b)
{
	struct pt_mime_field f;

	b->n = 0;
	while (*off < len) {
		while (pt_mime_field_next(p, len, off, &f))
			if (b->n < PT_REPORT_MAX_FIELDS)
				b->f[b->n++] = f;
		if (b->n > 0)
			return true;
	}
	return false;
}

static bool report_name_is(const struct pt_mime_field *f, const char *name)
{
	return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* The only field called name: NULL when absent; *dup when it repeats. */
static const struct pt_mime_field *report_single(const struct report_block *b, const char *name,
						 bool *dup)
{
	const struct pt_mime_field *hit = NULL;

	for (size_t i = 0; i < b->n; i++) {
		if (!report_name_is(&b->f[i], name))
			continue;
		if (hit != NULL)
			*dup = true;
		else
			hit = &b->f[i];
	}
	return hit;
}

static char *report_value(const struct pt_mime_field *f)
{
	return pt_mime_unfold_dup(f->value, f->value_len, PT_REPORT_VALUE_MAX);
}

/* An address with its angle brackets and blanks removed, in place. */
static void report_strip_address(char *s)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		memmove(s, s + 1, n - 2);
		s[n - 2] = '\0';
	}
}

/* "type; value" (Reporting-MTA, Final-Recipient, Diagnostic-Code): both
 * trimmed, malloc'd.  PT_ERROR without ';', PT_NOMEM. */
static int report_typed(const struct pt_mime_field *f, char **type, char **value)
{
	char *all = report_value(f), *semi, *v;
	size_t tn;

	if (all == NULL)
		return PT_NOMEM;
	semi = strchr(all, ';');
	if (semi == NULL) {
		free(all);
		return PT_ERROR;
	}
	for (tn = (size_t)(semi - all); tn > 0 && isspace((unsigned char)all[tn - 1]); tn--)
		;
	for (v = semi + 1; isspace((unsigned char)*v); v++)
		;
	*value = strdup(v);
	all[tn] = '\0';
	*type = all;
	if (*value == NULL) {
		free(all);
		*type = NULL;
		return PT_NOMEM;
	}
	return PT_OK;
}

static int64_t report_date(const struct pt_mime_field *f)
{
	char v[256];
	size_t n = pt_mime_unfold(f->value, f->value_len, v, sizeof(v));
	int64_t us;

	/* Before 1970 is as good as unreadable for a report of ours. */
	if (pt_mime_date(v, n, &us) != PT_OK || us < 0)
		return -1;
	return us;
}

/* ---- the report entity ------------------------------------------------------ */

static bool report_is_original(const char *type)
{
	return strcmp(type, "message/rfc822") == 0 || strcmp(type, "text/rfc822-headers") == 0 ||
	       strcmp(type, "message/global") == 0 || strcmp(type, "message/global-headers") == 0;
}

/* The content of a part, decoded by its Content-Transfer-Encoding. */
static int report_part_content(const struct pt_mime_part *part, struct pt_buf *out)
{
	struct pt_mime_field f;
	char cte[64] = "";
	size_t body = pt_mime_body_offset(part->p, part->len);

	if (pt_mime_find_field(part->p, part->len, "Content-Transfer-Encoding", &f))
		pt_mime_unfold(f.value, f.value_len, cte, sizeof(cte));
	return pt_mime_decode(cte, part->p + body, part->len - body, out);
}

void pt_report_petrel_id(const char *p, size_t len, char out[PT_ID_LEN + 1])
{
	struct pt_mime_field f;
	char v[PT_REPORT_VALUE_MAX];
	size_t off = 0;

	out[0] = '\0';
	while (pt_mime_field_next(p, len, &off, &f)) {
		const char *at, *id;

		if (!report_name_is(&f, "Received"))
			continue;
		pt_mime_unfold(f.value, f.value_len, v, sizeof(v));
		at = strstr(v, "(Petrel) with ");
		id = at ? strstr(at, " id ") : NULL;
		if (id == NULL)
			continue;
		id += 4;
		if (strlen(id) >= PT_ID_LEN && pt_id_valid(id, PT_ID_LEN) &&
		    !isxdigit((unsigned char)id[PT_ID_LEN])) {
			memcpy(out, id, PT_ID_LEN);
			out[PT_ID_LEN] = '\0';
			return;
		}
	}
}

/* What both parsers find among the report's parts. */
struct report_walk {
	struct pt_mime_part report; /* the first part of the wanted type */
	bool have_report;
	struct pt_mime_part original; /* the last returned message */
	bool have_original;
};

/*
 * Check the top-level type and visit the parts.  PT_DECLINED when msg is
 * not a multipart/report, or its report-type is not report_type (when
 * type_required is false, an absent report-type is accepted).
 */
static int report_walk(const char *msg, size_t len, const char *report_type, bool type_required,
		       const char *const *part_types, struct report_walk *w)
{
	struct pt_mime_ctype ct, pct;
	struct pt_mime_multipart mp;
	struct pt_mime_part part;
	size_t body = pt_mime_body_offset(msg, len);

	memset(w, 0, sizeof(*w));
	pt_mime_entity_type(msg, body, &ct);
	if (strcmp(ct.type, "multipart/report") != 0)
		return PT_DECLINED;
	if ((type_required || ct.report_type[0] != '\0') &&
	    strcmp(ct.report_type, report_type) != 0)
		return PT_DECLINED;
	pt_mime_multipart_init(&mp, msg + body, len - body, ct.boundary);
	while (pt_mime_multipart_next(&mp, &part)) {
		pt_mime_entity_type(part.p, pt_mime_body_offset(part.p, part.len), &pct);
		for (size_t i = 0; part_types[i] != NULL && !w->have_report; i++)
			if (strcmp(pct.type, part_types[i]) == 0) {
				w->report = part;
				w->have_report = true;
			}
		if (report_is_original(pct.type)) {
			w->original = part;
			w->have_original = true;
		}
	}
	return PT_OK;
}

/* Petrel's id in the returned message's header block, decoded when it can be. */
static int report_original_id(const struct report_walk *w, char out[PT_ID_LEN + 1])
{
	struct pt_buf content = PT_BUF_INIT;
	int rc;

	out[0] = '\0';
	if (!w->have_original)
		return PT_OK;
	rc = report_part_content(&w->original, &content);
	if (rc == PT_OK)
		pt_report_petrel_id(content.data ? content.data : "", content.len, out);
	pt_buf_free(&content);
	return rc == PT_NOMEM ? PT_NOMEM : PT_OK;
}

/* ---- RFC 3464 ------------------------------------------------------------------ */

static const char *const dsn_part_types[] = {"message/delivery-status",
					     "message/global-delivery-status", NULL};
static const char *const dsn_actions[] = {"failed",  "delayed",	 "delivered",
					  "relayed", "expanded", NULL};

/* Status: class "." subject "." detail (RFC 3463), then an optional comment. */
static bool dsn_status(const struct pt_mime_field *f, struct pt_dsn_rcpt *r)
{
	char v[64];
	int a, b, c, used = 0;

	pt_mime_unfold(f->value, f->value_len, v, sizeof(v));
	if (sscanf(v, "%1d.%3d.%3d%n", &a, &b, &c, &used) != 3 || a < 2 || a > 5 || b < 0 || c < 0)
		return false;
	if (v[used] != '\0' && !isspace((unsigned char)v[used]))
		return false;
	r->status_class = a;
	r->status_subject = b;
	r->status_detail = c;
	return true;
}

static bool dsn_action_known(const char *a)
{
	for (size_t i = 0; dsn_actions[i] != NULL; i++)
		if (strcmp(a, dsn_actions[i]) == 0)
			return true;
	return false;
}

/* A recipient field "type; address": the address unbracketed for rfc822. */
static int dsn_recipient(const struct pt_mime_field *f, char **type, char **addr)
{
	int rc = report_typed(f, type, addr);

	if (rc == PT_OK && strcasecmp(*type, "rfc822") == 0)
		report_strip_address(*addr);
	return rc;
}

static void dsn_rcpt_free(struct pt_dsn_rcpt *r)
{
	free(r->final_recipient);
	free(r->final_recipient_type);
	free(r->original_recipient);
	free(r->action);
	free(r->diagnostic_type);
	free(r->diagnostic);
	free(r->remote_mta);
}

/* The optional fields of a recipient block. */
static int dsn_rcpt_optional(const struct report_block *b, struct pt_dsn_rcpt *r, bool *dup)
{
	const struct pt_mime_field *f;
	char *type = NULL;
	int rc = PT_OK;

	if ((f = report_single(b, "Original-Recipient", dup)) != NULL &&
	    (rc = dsn_recipient(f, &type, &r->original_recipient)) != PT_OK)
		return rc;
	free(type);
	type = NULL;
	if ((f = report_single(b, "Remote-MTA", dup)) != NULL &&
	    (rc = report_typed(f, &type, &r->remote_mta)) != PT_OK)
		return rc;
	free(type);
	if ((f = report_single(b, "Diagnostic-Code", dup)) != NULL &&
	    (rc = report_typed(f, &r->diagnostic_type, &r->diagnostic)) != PT_OK)
		return rc;
	if ((f = report_single(b, "Last-Attempt-Date", dup)) != NULL)
		r->last_attempt_us = report_date(f);
	return PT_OK;
}

static int dsn_rcpt(const struct report_block *b, size_t idx, struct pt_dsn_rcpt *r, char *err,
		    size_t err_len)
{
	const struct pt_mime_field *fin, *act, *st;
	bool dup = false;
	int rc;

	memset(r, 0, sizeof(*r));
	r->last_attempt_us = -1;
	fin = report_single(b, "Final-Recipient", &dup);
	act = report_single(b, "Action", &dup);
	st = report_single(b, "Status", &dup);
	if (fin == NULL || act == NULL || st == NULL) {
		const char *missing = "Status";

		if (fin == NULL)
			missing = "Final-Recipient";
		else if (act == NULL)
			missing = "Action";
		report_err(err, err_len, "recipient block %zu has no %s field", idx, missing);
		return PT_ERROR;
	}
	rc = dsn_recipient(fin, &r->final_recipient_type, &r->final_recipient);
	if (rc == PT_ERROR)
		report_err(err, err_len,
			   "recipient block %zu: Final-Recipient is not 'type; address'", idx);
	if (rc != PT_OK)
		return rc;
	if ((r->action = report_value(act)) == NULL)
		return PT_NOMEM;
	for (char *c = r->action; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	if (!dsn_action_known(r->action)) {
		report_err(err, err_len, "recipient block %zu: unknown Action '%s'", idx,
			   r->action);
		return PT_ERROR;
	}
	if (!dsn_status(st, r)) {
		report_err(err, err_len, "recipient block %zu: Status is not a status code", idx);
		return PT_ERROR;
	}
	rc = dsn_rcpt_optional(b, r, &dup);
	if (rc == PT_ERROR)
		report_err(err, err_len, "recipient block %zu: a field is not 'type; value'", idx);
	else if (rc == PT_OK && dup) {
		report_err(err, err_len, "recipient block %zu repeats a field", idx);
		rc = PT_ERROR;
	}
	return rc;
}

static int dsn_per_message(const struct report_block *b, struct pt_dsn *d, char *err,
			   size_t err_len)
{
	const struct pt_mime_field *f;
	bool dup = false;
	int rc;

	f = report_single(b, "Reporting-MTA", &dup);
	if (f == NULL) {
		report_err(err, err_len, "the per-message block has no Reporting-MTA field");
		return PT_ERROR;
	}
	rc = report_typed(f, &d->reporting_mta_type, &d->reporting_mta);
	if (rc == PT_ERROR)
		report_err(err, err_len, "Reporting-MTA is not 'type; name'");
	if (rc != PT_OK)
		return rc;
	if ((f = report_single(b, "Original-Envelope-Id", &dup)) != NULL &&
	    (d->original_envelope_id = report_value(f)) == NULL)
		return PT_NOMEM;
	if ((f = report_single(b, "Arrival-Date", &dup)) != NULL)
		d->arrival_us = report_date(f);
	if (dup) {
		report_err(err, err_len, "the per-message block repeats a field");
		return PT_ERROR;
	}
	return PT_OK;
}

static int dsn_blocks(const char *p, size_t len, struct pt_dsn *d, char *err, size_t err_len)
{
	struct report_block *b = malloc(sizeof(*b));
	size_t off = 0;
	int rc;

	if (b == NULL)
		return PT_NOMEM;
	if (!report_block_next(p, len, &off, b)) {
		report_err(err, err_len, "the delivery-status part is empty");
		free(b);
		return PT_ERROR;
	}
	rc = dsn_per_message(b, d, err, err_len);
	while (rc == PT_OK && d->n_rcpts < PT_REPORT_MAX_RCPTS &&
	       report_block_next(p, len, &off, b)) {
		struct pt_dsn_rcpt *more = realloc(d->rcpts, (d->n_rcpts + 1) * sizeof(*more));

		if (more == NULL) {
			rc = PT_NOMEM;
			break;
		}
		d->rcpts = more;
		rc = dsn_rcpt(b, d->n_rcpts + 1, &d->rcpts[d->n_rcpts], err, err_len);
		d->n_rcpts++; /* counted even when it failed: pt_dsn_free frees what it holds */
	}
	free(b);
	return rc;
}

int pt_report_parse_dsn(const char *msg, size_t len, struct pt_dsn *out, char *err, size_t err_len)
{
	struct report_walk w;
	struct pt_buf content = PT_BUF_INIT;
	int rc;

	memset(out, 0, sizeof(*out));
	out->arrival_us = -1;
	/* KumoMTA does not insist on report-type=delivery-status; nor do we. */
	rc = report_walk(msg, len, "delivery-status", false, dsn_part_types, &w);
	if (rc != PT_OK)
		return rc;
	if (!w.have_report) {
		report_err(err, err_len, "the report has no message/delivery-status part");
		return PT_ERROR;
	}
	rc = report_part_content(&w.report, &content);
	if (rc == PT_ERROR)
		report_err(err, err_len,
			   "the delivery-status part has an unknown transfer encoding");
	if (rc == PT_OK)
		rc = dsn_blocks(content.data ? content.data : "", content.len, out, err, err_len);
	pt_buf_free(&content);
	if (rc == PT_OK)
		rc = report_original_id(&w, out->original_id);
	if (rc != PT_OK)
		pt_dsn_free(out);
	return rc;
}

void pt_dsn_free(struct pt_dsn *d)
{
	for (size_t i = 0; i < d->n_rcpts; i++)
		dsn_rcpt_free(&d->rcpts[i]);
	free(d->rcpts);
	free(d->reporting_mta_type);
	free(d->reporting_mta);
	free(d->original_envelope_id);
	memset(d, 0, sizeof(*d));
	d->arrival_us = -1;
}

/* ---- RFC 5965 ------------------------------------------------------------------ */

static const char *const arf_part_types[] = {"message/feedback-report", NULL};

/* Fields KumoMTA reads into fields of their own; the rest are extensions. */
static const char *const arf_single[] = {
    "feedback-type",	    "user-agent",	  "version",	   "arrival-date", "incidents",
    "original-envelope-id", "original-mail-from", "reporting-mta", "source-ip",	   NULL};
static const char *const arf_required[] = {"feedback-type", "user-agent", "version", NULL};
static const char *const arf_multiple[] = {"authentication-results", "original-rcpt-to",
					   "reported-domain", "reported-uri", NULL};

static bool report_name_in(const char *name, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

static const struct pt_report_field *arf_get(const struct pt_arf *a, const char *name)
{
	for (size_t i = 0; i < a->n_fields; i++)
		if (strcmp(a->fields[i].name, name) == 0)
			return &a->fields[i];
	return NULL;
}

static size_t arf_count(const struct pt_arf *a, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < a->n_fields; i++)
		n += strcmp(a->fields[i].name, name) == 0;
	return n;
}

/* Copy the block's fields into a (names lower case; addresses unbracketed). */
static int arf_fields(const struct report_block *b, struct pt_arf *a)
{
	a->fields = calloc(b->n ? b->n : 1, sizeof(*a->fields));
	if (a->fields == NULL)
		return PT_NOMEM;
	for (size_t i = 0; i < b->n; i++) {
		struct pt_report_field *f = &a->fields[i];

		f->name = strndup(b->f[i].name, b->f[i].name_len);
		f->value = report_value(&b->f[i]);
		a->n_fields++;
		if (f->name == NULL || f->value == NULL)
			return PT_NOMEM;
		for (char *c = f->name; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		if (strcmp(f->name, "original-mail-from") == 0 ||
		    strcmp(f->name, "original-rcpt-to") == 0)
			report_strip_address(f->value);
	}
	return PT_OK;
}

/* KumoMTA's checks: required fields, singles once, incidents a number,
 * Reporting-MTA "type; name". */
static int arf_check(const struct pt_arf *a, char *err, size_t err_len)
{
	const struct pt_report_field *f;
	char *end;

	for (size_t i = 0; arf_required[i] != NULL; i++)
		if (arf_get(a, arf_required[i]) == NULL) {
			report_err(err, err_len, "the feedback report has no %s field",
				   arf_required[i]);
			return PT_ERROR;
		}
	for (size_t i = 0; arf_single[i] != NULL; i++)
		if (arf_count(a, arf_single[i]) > 1) {
			report_err(err, err_len, "the feedback report repeats %s", arf_single[i]);
			return PT_ERROR;
		}
	if ((f = arf_get(a, "incidents")) != NULL &&
	    (strtoul(f->value, &end, 10) > UINT32_MAX || end == f->value || *end != '\0' ||
	     !isdigit((unsigned char)f->value[0]))) {
		report_err(err, err_len, "Incidents is not a number");
		return PT_ERROR;
	}
	if ((f = arf_get(a, "reporting-mta")) != NULL && strchr(f->value, ';') == NULL) {
		report_err(err, err_len, "Reporting-MTA is not 'type; name'");
		return PT_ERROR;
	}
	return PT_OK;
}

/* The returned message as KumoMTA logs it: the part's content as it came,
 * CRLF made LF. */
static int arf_original(const struct report_walk *w, struct pt_arf *a)
{
	const struct pt_mime_part *part = &w->original;
	size_t body = pt_mime_body_offset(part->p, part->len), o = 0;

	if (!w->have_original)
		return PT_OK;
	a->original_message = malloc(part->len - body + 1);
	if (a->original_message == NULL)
		return PT_NOMEM;
	for (size_t i = body; i < part->len; i++)
		if (!(part->p[i] == '\r' && i + 1 < part->len && part->p[i + 1] == '\n'))
			a->original_message[o++] = part->p[i];
	a->original_message[o] = '\0';
	a->original_message_len = o;
	return PT_OK;
}

int pt_report_parse_arf(const char *msg, size_t len, struct pt_arf *out, char *err, size_t err_len)
{
	struct report_walk w;
	struct pt_buf content = PT_BUF_INIT;
	struct report_block *b = NULL;
	size_t off = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	/* RFC 5965 2: report-type=feedback-report is required (KumoMTA too). */
	rc = report_walk(msg, len, "feedback-report", true, arf_part_types, &w);
	if (rc != PT_OK)
		return rc;
	if (!w.have_report) {
		report_err(err, err_len, "the report has no message/feedback-report part");
		return PT_ERROR;
	}
	rc = report_part_content(&w.report, &content);
	if (rc == PT_ERROR)
		report_err(err, err_len,
			   "the feedback-report part has an unknown transfer encoding");
	if (rc == PT_OK && (b = malloc(sizeof(*b))) == NULL)
		rc = PT_NOMEM;
	if (rc == PT_OK) {
		report_block_next(content.data ? content.data : "", content.len, &off, b);
		rc = arf_fields(b, out);
	}
	free(b);
	pt_buf_free(&content);
	if (rc == PT_OK)
		rc = arf_check(out, err, err_len);
	if (rc == PT_OK)
		rc = arf_original(&w, out);
	if (rc == PT_OK)
		rc = report_original_id(&w, out->original_id);
	if (rc != PT_OK)
		pt_arf_free(out);
	return rc;
}

void pt_arf_free(struct pt_arf *a)
{
	for (size_t i = 0; i < a->n_fields; i++) {
		free(a->fields[i].name);
		free(a->fields[i].value);
	}
	free(a->fields);
	free(a->original_message);
	memset(a, 0, sizeof(*a));
}

/* ---- the feedback_report object ------------------------------------------------ */

static void arf_json_single(const struct pt_arf *a, struct pt_json *j, const char *key,
			    const char *name)
{
	const struct pt_report_field *f = arf_get(a, name);

	pt_json_key_str(j, key, f ? f->value : NULL);
}

static void arf_json_list(const struct pt_arf *a, struct pt_json *j, const char *key,
			  const char *name)
{
	pt_json_key(j, key);
	pt_json_arr_begin(j);
	for (size_t i = 0; i < a->n_fields; i++)
		if (strcmp(a->fields[i].name, name) == 0)
			pt_json_str(j, a->fields[i].value);
	pt_json_arr_end(j);
}

/* Arrival-Date, else Received-Date (as KumoMTA's fallback); null when unreadable. */
static void arf_json_arrival(const struct pt_arf *a, struct pt_json *j)
{
	const struct pt_report_field *f = arf_get(a, "arrival-date");
	int64_t us = -1;
	char when[32];

	if (f == NULL)
		f = arf_get(a, "received-date");
	if (f != NULL && (pt_mime_date(f->value, strlen(f->value), &us) != PT_OK || us < 0))
		us = -1;
	pt_json_key_str(j, "arrival_date", us >= 0 ? pt_time_rfc3339((uint64_t)us, when) : NULL);
}

static void arf_json_reporting_mta(const struct pt_arf *a, struct pt_json *j)
{
	const struct pt_report_field *f = arf_get(a, "reporting-mta");
	const char *semi, *name;
	size_t tn;

	if (f == NULL || (semi = strchr(f->value, ';')) == NULL) {
		pt_json_key_null(j, "reporting_mta");
		return;
	}
	for (tn = (size_t)(semi - f->value); tn > 0 && isspace((unsigned char)f->value[tn - 1]);
	     tn--)
		;
	for (name = semi + 1; isspace((unsigned char)*name); name++)
		;
	pt_json_key(j, "reporting_mta");
	pt_json_obj_begin(j);
	pt_json_key_strn(j, "mta_type", f->value, tn);
	pt_json_key_str(j, "name", name);
	pt_json_obj_end(j);
}

/* Whether a field is an extension, and the first of its name (so each
 * name is written once, with all its values). */
static bool arf_extension_first(const struct pt_arf *a, size_t i)
{
	const char *name = a->fields[i].name;

	if (report_name_in(name, arf_single) || report_name_in(name, arf_multiple))
		return false;
	if (strcmp(name, "received-date") == 0 && arf_get(a, "arrival-date") == NULL)
		return false; /* used as the arrival date */
	for (size_t k = 0; k < i; k++)
		if (strcmp(a->fields[k].name, name) == 0)
			return false;
	return true;
}

static void arf_json_extensions(const struct pt_arf *a, struct pt_json *j)
{
	const char *last = NULL;

	pt_json_key(j, "extensions");
	pt_json_obj_begin(j);
	/* Names in byte order, as KumoMTA's BTreeMap writes them: pick the
	 * smallest name above the last one each round (O(n^2) over at most
	 * PT_REPORT_MAX_FIELDS fields). */
	for (;;) {
		const char *next = NULL;

		for (size_t i = 0; i < a->n_fields; i++) {
			const char *name = a->fields[i].name;

			if (!arf_extension_first(a, i) || (last && strcmp(name, last) <= 0))
				continue;
			if (next == NULL || strcmp(name, next) < 0)
				next = name;
		}
		if (next == NULL)
			break;
		arf_json_list(a, j, next, next);
		last = next;
	}
	pt_json_obj_end(j);
}

void pt_arf_json(const struct pt_arf *a, struct pt_json *j)
{
	const struct pt_report_field *f;

	pt_json_obj_begin(j);
	arf_json_single(a, j, "feedback_type", "feedback-type");
	arf_json_single(a, j, "user_agent", "user-agent");
	arf_json_single(a, j, "version", "version");
	arf_json_arrival(a, j);
	if ((f = arf_get(a, "incidents")) != NULL)
		pt_json_key_int(j, "incidents", (int64_t)strtoul(f->value, NULL, 10));
	else
		pt_json_key_null(j, "incidents");
	arf_json_single(a, j, "original_envelope_id", "original-envelope-id");
	arf_json_single(a, j, "original_mail_from", "original-mail-from");
	arf_json_reporting_mta(a, j);
	arf_json_single(a, j, "source_ip", "source-ip");
	arf_json_list(a, j, "authentication_results", "authentication-results");
	arf_json_list(a, j, "original_rcpto_to", "original-rcpt-to");
	arf_json_list(a, j, "reported_domain", "reported-domain");
	arf_json_list(a, j, "reported_uri", "reported-uri");
	arf_json_extensions(a, j);
	if (a->original_message != NULL)
		pt_json_key_strn(j, "original_message", a->original_message,
				 a->original_message_len);
	else
		pt_json_key_null(j, "original_message");
	pt_json_key_null(j, "supplemental_trace");
	pt_json_obj_end(j);
}
