/*
 * report.h -- delivery status notifications (RFC 3464) and feedback
 * reports (ARF, RFC 5965) read from a received message, in the shapes
 * KumoMTA logs them as OOB and Feedback records.
 *
 * A report is a multipart/report entity (RFC 6522) at the top of the
 * message.  Its parts are read with core/mime.h, one level deep (the
 * human-readable part may itself be a multipart: it is skipped whole):
 *
 *   DSN  the message/delivery-status (or message/global-delivery-status,
 *        RFC 6533) part: a per-message block, then one block per
 *        recipient, separated by blank lines;
 *   ARF  the message/feedback-report part: one block of fields;
 *   both the returned message (message/rfc822, text/rfc822-headers,
 *        message/global, message/global-headers): its header block is
 *        searched for the Received: field Petrel writes at reception,
 *        "by <host> (Petrel) with <proto> id <id>", which names the id
 *        Petrel gave the message the report is about.
 *
 * Outcomes of the parsers:
 *   PT_OK        a report; out is filled (free it with the matching _free)
 *   PT_DECLINED  not a report of that kind (not multipart/report, or
 *                another report-type): the message is ordinary mail
 *   PT_ERROR     a report of that kind that can't be read (a required
 *                field missing or malformed, the report part missing):
 *                err says what, for a reply a person can act on
 *   PT_NOMEM
 * out needs no freeing after anything but PT_OK.
 *
 * The rules are KumoMTA's (kumo-log-types rfc3464.rs, rfc5965.rs):
 * required fields, single fields that must not repeat, addresses with
 * their angle brackets removed.  One difference: a date that does not
 * parse is treated as absent instead of making the whole report
 * unreadable, so a bounce with an odd Last-Attempt-Date is still logged.
 *
 * Bounds: at most PT_REPORT_MAX_RCPTS recipient blocks (more are
 * ignored), PT_REPORT_MAX_FIELDS fields per block (likewise), field
 * values cut at PT_REPORT_VALUE_MAX bytes.  Nothing recurses.
 */
#ifndef PT_REPORT_H
#define PT_REPORT_H

#include "core/id.h"
#include "core/json.h"

#define PT_REPORT_MAX_RCPTS  1024
#define PT_REPORT_MAX_FIELDS 256
#define PT_REPORT_VALUE_MAX  4096

/* One recipient block of a DSN (RFC 3464 2.3). */
struct pt_dsn_rcpt {
	char *final_recipient;	    /* the address of Final-Recipient: "rfc822;<a@b>" -> "a@b" */
	char *final_recipient_type; /* "rfc822" */
	char *original_recipient;   /* the address of Original-Recipient, or NULL */
	char *action;		    /* failed, delayed, delivered, relayed or expanded */
	int status_class, status_subject, status_detail; /* Status: "5.1.1" */
	char *diagnostic_type;				 /* "smtp" of Diagnostic-Code, or NULL */
	char *diagnostic;				 /* the text after "smtp;", or NULL */
	char *remote_mta;				 /* the name of Remote-MTA, or NULL */
	int64_t last_attempt_us; /* Last-Attempt-Date, -1 when absent or unreadable */
};

struct pt_dsn {
	char *reporting_mta_type;   /* "dns" of Reporting-MTA */
	char *reporting_mta;	    /* its name */
	char *original_envelope_id; /* NULL when absent */
	int64_t arrival_us;	    /* Arrival-Date, -1 when absent or unreadable */
	struct pt_dsn_rcpt *rcpts;
	size_t n_rcpts;
	/* Petrel's id of the returned message (see the top), "" when none. */
	char original_id[PT_ID_LEN + 1];
};

struct pt_report_field {
	char *name;  /* lower case */
	char *value; /* unfolded and trimmed */
};

struct pt_arf {
	/* Every field of the message/feedback-report part, in order. */
	struct pt_report_field *fields;
	size_t n_fields;
	/* The returned message as it came (not decoded), LF line ends, or NULL. */
	char *original_message;
	size_t original_message_len;
	char original_id[PT_ID_LEN + 1];
};

/* Parse msg[0, len) (the message as received: header block and body). */
int pt_report_parse_dsn(const char *msg, size_t len, struct pt_dsn *out, char *err, size_t err_len);
int pt_report_parse_arf(const char *msg, size_t len, struct pt_arf *out, char *err, size_t err_len);
void pt_dsn_free(struct pt_dsn *d);
void pt_arf_free(struct pt_arf *a);

/*
 * Write a's feedback_report object (the value only: call pt_json_key
 * first) in KumoMTA's shape: feedback_type, user_agent, version,
 * arrival_date (RFC 3339, Received-Date when Arrival-Date is absent),
 * incidents, original_envelope_id, original_mail_from, reporting_mta
 * {mta_type, name}, source_ip, authentication_results, original_rcpto_to
 * (KumoMTA's spelling), reported_domain, reported_uri, extensions (every
 * other field: name -> [values], names sorted), original_message and
 * supplemental_trace (always null: Petrel writes no X-KumoRef).  a must
 * have come from pt_report_parse_arf with PT_OK.
 */
void pt_arf_json(const struct pt_arf *a, struct pt_json *j);

/*
 * The id in the first Received: field Petrel wrote ("(Petrel) with ...
 * id <32 hex>") in the header block of p[0, len), into out; "" when none.
 */
void pt_report_petrel_id(const char *p, size_t len, char out[PT_ID_LEN + 1]);

#endif
