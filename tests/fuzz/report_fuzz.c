/*
 * report_fuzz.c -- libFuzzer entry point for the report readers
 * (core/report.c) and the MIME pieces under them (core/mime.c).
 *
 * The whole input is one message as received (header block and body), as
 * shard/shard_relay.c hands it over; every input goes through both
 * parsers, the feedback_report writer when it is an ARF report, and the
 * Petrel id search over the whole input.  Seeds: tests/fuzz/corpus/report
 * (a DSN and an ARF report shaped after the RFCs' examples).
 *
 * Besides the sanitizers (ASan also reports a leaked field), the run
 * aborts when a promise is broken:
 *   - each parser answers PT_OK, PT_DECLINED, PT_ERROR or PT_NOMEM, and
 *     leaves nothing allocated unless PT_OK;
 *   - PT_ERROR comes with a reason (a non-empty err);
 *   - a DSN has a Reporting-MTA and at most PT_REPORT_MAX_RCPTS recipient
 *     blocks, each with a final recipient, a known action and a status
 *     class of 2 to 5;
 *   - an ARF report has at most PT_REPORT_MAX_FIELDS fields, each value at
 *     most PT_REPORT_VALUE_MAX bytes, and its JSON is balanced;
 *   - an original id is "" or exactly 32 lowercase hex digits;
 *   - no input is both a DSN and an ARF report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/report.h"

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "report_fuzz: %s\n", what);
	abort();
}

static void fuzz_check_id(const char *id)
{
	if (id[0] != '\0' && !pt_id_valid(id, strlen(id)))
		fuzz_fail("original id is not an id");
}

static void fuzz_check_dsn(const struct pt_dsn *d)
{
	static const char *const actions[] = {"failed", "delayed", "delivered", "relayed",
					      "expanded"};

	if (d->reporting_mta == NULL || d->reporting_mta_type == NULL)
		fuzz_fail("DSN without Reporting-MTA");
	if (d->n_rcpts > PT_REPORT_MAX_RCPTS)
		fuzz_fail("too many recipients");
	for (size_t i = 0; i < d->n_rcpts; i++) {
		const struct pt_dsn_rcpt *r = &d->rcpts[i];
		bool known = false;

		if (r->final_recipient == NULL || r->action == NULL)
			fuzz_fail("recipient without final recipient or action");
		for (size_t k = 0; k < sizeof(actions) / sizeof(actions[0]); k++)
			known |= strcmp(r->action, actions[k]) == 0;
		if (!known)
			fuzz_fail("unknown action");
		if (r->status_class < 2 || r->status_class > 5)
			fuzz_fail("status class out of range");
		if ((r->diagnostic == NULL) != (r->diagnostic_type == NULL))
			fuzz_fail("diagnostic half there");
	}
	fuzz_check_id(d->original_id);
}

static void fuzz_check_arf(const struct pt_arf *a)
{
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	long depth = 0;
	bool in_string = false;

	if (a->n_fields > PT_REPORT_MAX_FIELDS)
		fuzz_fail("too many fields");
	for (size_t i = 0; i < a->n_fields; i++)
		if (strlen(a->fields[i].value) > PT_REPORT_VALUE_MAX)
			fuzz_fail("value too long");
	fuzz_check_id(a->original_id);
	pt_json_init(&j, &b);
	pt_arf_json(a, &j);
	for (size_t i = 0; i < b.len; i++) {
		char c = b.data[i];

		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			else if ((unsigned char)c < 0x20)
				fuzz_fail("control character in a JSON string");
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth < 0)
			fuzz_fail("unbalanced JSON");
	}
	if (depth != 0 || in_string)
		fuzz_fail("unbalanced JSON");
	pt_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	char err[256], id[PT_ID_LEN + 1];
	struct pt_dsn d;
	struct pt_arf a;
	int drc, arc;

	err[0] = '\0';
	drc = pt_report_parse_dsn(msg, size, &d, err, sizeof(err));
	if (drc != PT_OK && drc != PT_DECLINED && drc != PT_ERROR && drc != PT_NOMEM)
		fuzz_fail("DSN: unknown status");
	if (drc == PT_ERROR && err[0] == '\0')
		fuzz_fail("DSN: an error without a reason");
	if (drc == PT_OK) {
		fuzz_check_dsn(&d);
		pt_dsn_free(&d);
	} else if (d.rcpts != NULL || d.reporting_mta != NULL) {
		fuzz_fail("DSN: something left after a failure");
	}
	err[0] = '\0';
	arc = pt_report_parse_arf(msg, size, &a, err, sizeof(err));
	if (arc != PT_OK && arc != PT_DECLINED && arc != PT_ERROR && arc != PT_NOMEM)
		fuzz_fail("ARF: unknown status");
	if (arc == PT_ERROR && err[0] == '\0')
		fuzz_fail("ARF: an error without a reason");
	if (arc == PT_OK) {
		fuzz_check_arf(&a);
		pt_arf_free(&a);
	} else if (a.fields != NULL || a.original_message != NULL) {
		fuzz_fail("ARF: something left after a failure");
	}
	if (drc == PT_OK && arc == PT_OK)
		fuzz_fail("both a DSN and an ARF report");
	pt_report_petrel_id(msg, size, id);
	fuzz_check_id(id);
	return 0;
}
