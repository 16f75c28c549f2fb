/*
 * core_report_test.c -- delivery status notifications (RFC 3464) and
 * feedback reports (RFC 5965) as core/report.c reads them: samples shaped
 * after the RFCs' own examples, one whose human-readable part is itself a
 * multipart, encoded report parts, malformed and truncated reports (every
 * prefix of each sample is parsed, so a cut anywhere is safe), Petrel's id
 * found in the returned headers, and the feedback_report JSON exactly.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/report.h"

#define PETREL_ID "0005f1a2b3c4d5e60001a1b2c3d4e5f6"

/* RFC 3464 appendix C.3 in shape: a multi-recipient DSN with a failed, a
 * delayed and another failed recipient, the returned headers carrying
 * Petrel's Received: below a later hop's. */
static const char DSN[] =
    "Date: Fri, 8 Jul 1994 09:21:47 -0400\r\n"
    "From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>\r\n"
    "Subject: Returned mail: User unknown\r\n"
    "To: <owner-ups-mib@CS.UTK.EDU>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    "      boundary=\"JAA13167.773673707/CS.UTK.EDU\"\r\n"
    "\r\n"
    "--JAA13167.773673707/CS.UTK.EDU\r\n"
    "content-type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "      ----- The following addresses had delivery problems -----\r\n"
    "<arathib@vnet.ibm.com> (unrecoverable error)\r\n"
    "<wsnell@sdcc13.ucsd.edu> (unrecoverable error)\r\n"
    "\r\n"
    "--JAA13167.773673707/CS.UTK.EDU\r\n"
    "content-type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; cs.utk.edu\r\n"
    "Arrival-Date: Fri, 8 Jul 1994 09:21:40 -0400\r\n"
    "\r\n"
    "Original-Recipient: rfc822;arathib@vnet.ibm.com\r\n"
    "Final-Recipient: rfc822;<arathib@vnet.ibm.com>\r\n"
    "Action: failed\r\n"
    "Status: 5.0.0 (permanent failure)\r\n"
    "Diagnostic-Code: smtp;  550 'arathib@vnet.IBM.COM' is not a\r\n"
    "  registered gateway user\r\n"
    "Remote-MTA: dns; vnet.ibm.com\r\n"
    "\r\n"
    "Original-Recipient: rfc822;johnh@hpnjld.njd.hp.com\r\n"
    "Final-Recipient: rfc822;johnh@hpnjld.njd.hp.com\r\n"
    "Action: delayed\r\n"
    "Status: 4.0.0 (hpnjld.njd.jp.com: host name lookup failure)\r\n"
    "\r\n"
    "Final-Recipient: rfc822;wsnell@sdcc13.ucsd.edu\r\n"
    "Action: Failed\r\n"
    "Status: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 user unknown\r\n"
    "Last-Attempt-Date: Fri, 8 Jul 1994 09:21:46 -0400\r\n"
    "Remote-MTA: dns; sdcc13.ucsd.edu\r\n"
    "\r\n"
    "--JAA13167.773673707/CS.UTK.EDU\r\n"
    "content-type: text/rfc822-headers\r\n"
    "\r\n"
    "Received: from relay.example (relay.example [192.0.2.9])\r\n"
    "\tby cs.utk.edu with ESMTP id 4711; Fri, 8 Jul 1994 09:21:40 -0400\r\n"
    "Received: from client.test (127.0.0.1)\r\n"
    "\tby petrel.test (Petrel) with ESMTP id " PETREL_ID "\r\n"
    "\tfor arathib@vnet.ibm.com; Fri, 8 Jul 1994 09:21:39 -0400\r\n"
    "Received: from older (x)\r\n"
    "\tby other.test (Petrel) with ESMTP id ffffffffffffffffffffffffffffffff\r\n"
    "From: <owner-ups-mib@CS.UTK.EDU>\r\n"
    "Subject: the original\r\n"
    "\r\n"
    "--JAA13167.773673707/CS.UTK.EDU--\r\n";

/* RFC 5965 appendix B.2 in shape, the returned message carrying Petrel's Received:. */
static const char ARF[] =
    "From: <abusedesk@example.com>\r\n"
    "Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n"
    "Subject: FW: Earn money\r\n"
    "To: <abuse@example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report;\r\n"
    "     boundary=\"part1_13d.2e68ed54_boundary\"\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "This is an email abuse report for an email message received from IP\r\n"
    "192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/feedback-report\r\n"
    "\r\n"
    "Feedback-Type: abuse\r\n"
    "User-Agent: SomeGenerator/1.0\r\n"
    "Version: 1\r\n"
    "Original-Mail-From: <somespammer@example.net>\r\n"
    "Original-Rcpt-To: <user@example.com>\r\n"
    "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
    "Reporting-MTA: dns; mail.example.com\r\n"
    "Source-IP: 192.0.2.1\r\n"
    "Authentication-Results: mail.example.com;\r\n"
    "               spf=fail smtp.mail=somespammer@example.com\r\n"
    "Reported-Domain: example.net\r\n"
    "Reported-Uri: http://example.net/earn_money.html\r\n"
    "Reported-Uri: mailto:user@example.com\r\n"
    "Removal-Recipient: user@example.com\r\n"
    "Incidents: 3\r\n"
    "\r\n"
    "--part1_13d.2e68ed54_boundary\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Disposition: inline\r\n"
    "\r\n"
    "From: <somespammer@example.net>\r\n"
    "Received: from mailserver.example.net (mailserver.example.net\r\n"
    "    [192.0.2.1]) by petrel.test (Petrel) with ESMTPS id " PETREL_ID ";\r\n"
    "    Tue, 08 Mar 2005 14:00:00 -0400\r\n"
    "Subject: Earn money\r\n"
    "\r\n"
    "Spam Spam Spam\r\n"
    "--part1_13d.2e68ed54_boundary--\r\n";

static int dsn(const char *m, size_t len, struct pt_dsn *d, char *err)
{
	return pt_report_parse_dsn(m, len, d, err, 256);
}

/* A copy of m[0, n) in a buffer of exactly n bytes, so ASan sees any read past it. */
static char *exact(const char *m, size_t n)
{
	char *p = malloc(n ? n : 1);

	cr_assert_not_null(p);
	memcpy(p, m, n);
	return p;
}

Test(report, dsn_rfc3464_example)
{
	struct pt_dsn d;
	char err[256] = "";

	cr_assert_eq(dsn(DSN, strlen(DSN), &d, err), PT_OK, "%s", err);
	cr_assert_str_eq(d.reporting_mta_type, "dns");
	cr_assert_str_eq(d.reporting_mta, "cs.utk.edu");
	cr_assert_null(d.original_envelope_id);
	cr_assert_eq(d.arrival_us, (int64_t)773673700 * 1000000);
	cr_assert_eq(d.n_rcpts, 3);
	cr_assert_str_eq(d.rcpts[0].final_recipient, "arathib@vnet.ibm.com", "brackets removed");
	cr_assert_str_eq(d.rcpts[0].final_recipient_type, "rfc822");
	cr_assert_str_eq(d.rcpts[0].original_recipient, "arathib@vnet.ibm.com");
	cr_assert_str_eq(d.rcpts[0].action, "failed");
	cr_assert_eq(d.rcpts[0].status_class, 5);
	cr_assert_eq(d.rcpts[0].status_subject, 0);
	cr_assert_eq(d.rcpts[0].status_detail, 0);
	cr_assert_str_eq(d.rcpts[0].diagnostic_type, "smtp");
	cr_assert_str_eq(d.rcpts[0].diagnostic,
			 "550 'arathib@vnet.IBM.COM' is not a  registered gateway user");
	cr_assert_str_eq(d.rcpts[0].remote_mta, "vnet.ibm.com");
	cr_assert_eq(d.rcpts[0].last_attempt_us, -1);
	cr_assert_str_eq(d.rcpts[1].action, "delayed");
	cr_assert_eq(d.rcpts[1].status_class, 4);
	cr_assert_null(d.rcpts[1].diagnostic);
	cr_assert_null(d.rcpts[2].original_recipient);
	cr_assert_str_eq(d.rcpts[2].action, "failed", "Action is case-insensitive");
	cr_assert_eq(d.rcpts[2].status_subject, 1);
	cr_assert_eq(d.rcpts[2].status_detail, 1);
	cr_assert_eq(d.rcpts[2].last_attempt_us, (int64_t)773673706 * 1000000);
	cr_assert_str_eq(d.original_id, PETREL_ID, "the first Received: Petrel wrote");
	pt_dsn_free(&d);
}

/* A DSN as Gmail and Exchange send them: the human part is
 * multipart/alternative; the report part base64; CRLF made LF by a relay;
 * no report-type (KumoMTA does not require it for a DSN). */
Test(report, dsn_nested_multipart_encoded_lf)
{
	const char *m = "Content-Type: multipart/report; boundary=outer\n"
			"\n"
			"--outer\n"
			"Content-Type: multipart/alternative; boundary=\"outer-alt\"\n"
			"\n"
			"--outer-alt\n"
			"Content-Type: text/plain\n"
			"\n"
			"--outer\n"
			"looks like a delimiter but is not at the start of a line: ok\n"
			"--outer-alt\n"
			"Content-Type: text/html\n"
			"\n"
			"<p>bounce</p>\n"
			"--outer-alt--\n"
			"\n"
			"--outer\n"
			"Content-Type: message/delivery-status\n"
			"Content-Transfer-Encoding: base64\n"
			"\n"
			/* "Reporting-MTA: dns; mx.google.com\n\nFinal-Recipient: rfc822; x@y\n"
			   "Action: failed\nStatus: 5.7.1\n" */
			"UmVwb3J0aW5nLU1UQTogZG5zOyBteC5nb29nbGUuY29tCgpGaW5hbC1SZWNpcGllbnQ6IHJm\n"
			"YzgyMjsgeEB5CkFjdGlvbjogZmFpbGVkClN0YXR1czogNS43LjEK\n"
			"--outer--\n";
	struct pt_dsn d;
	char err[256] = "";

	cr_assert_eq(dsn(m, strlen(m), &d, err), PT_OK, "%s", err);
	cr_assert_str_eq(d.reporting_mta, "mx.google.com");
	cr_assert_eq(d.n_rcpts, 1);
	cr_assert_str_eq(d.rcpts[0].final_recipient, "x@y");
	cr_assert_eq(d.rcpts[0].status_detail, 1);
	cr_assert_str_eq(d.original_id, "", "no returned headers");
	pt_dsn_free(&d);
}

static void dsn_fails(const char *m, const char *want)
{
	struct pt_dsn d;
	char err[256] = "";

	cr_assert_eq(dsn(m, strlen(m), &d, err), PT_ERROR, "want an error for:\n%s", m);
	cr_assert_str_eq(err, want);
	cr_assert_null(d.rcpts, "nothing to free after an error");
}

#define DSN_HEAD                                                                                   \
	"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"          \
	"--b\r\nContent-Type: message/delivery-status\r\n\r\n"

Test(report, dsn_malformed)
{
	dsn_fails(DSN_HEAD
		  "Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\n--b--\r\n",
		  "the per-message block has no Reporting-MTA field");
	dsn_fails(DSN_HEAD
		  "Reporting-MTA: dns; a\r\n\r\nAction: failed\r\nStatus: 5.0.0\r\n--b--\r\n",
		  "recipient block 1 has no Final-Recipient field");
	dsn_fails(DSN_HEAD "Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
			   "Action: failed\r\nStatus: five\r\n--b--\r\n",
		  "recipient block 1: Status is not a status code");
	dsn_fails(DSN_HEAD "Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: a@b\r\n"
			   "Action: failed\r\nStatus: 5.0.0\r\n--b--\r\n",
		  "recipient block 1: Final-Recipient is not 'type; address'");
	dsn_fails(DSN_HEAD "Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
			   "Action: bounced\r\nStatus: 5.0.0\r\n--b--\r\n",
		  "recipient block 1: unknown Action 'bounced'");
	dsn_fails(DSN_HEAD "Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
			   "Action: failed\r\nStatus: 5.0.0\r\nAction: failed\r\n--b--\r\n",
		  "recipient block 1 repeats a field");
	dsn_fails(DSN_HEAD "\r\n\r\n--b--\r\n", "the delivery-status part is empty");
	dsn_fails("Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n",
		  "the report has no message/delivery-status part");
	dsn_fails(
	    "Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: "
	    "message/delivery-status\r\nContent-Transfer-Encoding: x-gzip\r\n\r\nx\r\n--b--\r\n",
	    "the delivery-status part has an unknown transfer encoding");
}

Test(report, dsn_not_a_report)
{
	struct pt_dsn d;
	const char *plain = "Subject: hi\r\n\r\nReporting-MTA: dns; a\r\n";
	const char *arf =
	    "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n"
	    "\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
	    "Reporting-MTA: dns; a\r\n--b--\r\n";

	cr_assert_eq(dsn(plain, strlen(plain), &d, NULL), PT_DECLINED);
	cr_assert_eq(dsn(arf, strlen(arf), &d, NULL), PT_DECLINED, "another report-type");
	cr_assert_eq(dsn("", 0, &d, NULL), PT_DECLINED);
}

/* Cut anywhere: never a crash (ASan runs this suite too); cut inside the
 * returned message, still the whole report; cut before the status part, an error. */
Test(report, dsn_truncated)
{
	const char *cut_in_original = strstr(DSN, "From: <owner-ups-mib");
	const char *cut_in_human = strstr(DSN, "<wsnell@");
	const char *cut_in_block = strstr(DSN, "Action: Failed");
	struct pt_dsn d;
	char err[256];

	for (size_t n = 0; n <= strlen(DSN); n++) {
		char *cut = exact(DSN, n);
		int rc = dsn(cut, n, &d, err);

		cr_assert(rc == PT_OK || rc == PT_ERROR || rc == PT_DECLINED);
		if (rc == PT_OK)
			pt_dsn_free(&d);
		free(cut);
	}
	cr_assert_eq(dsn(DSN, (size_t)(cut_in_original - DSN), &d, err), PT_OK, "%s", err);
	cr_assert_eq(d.n_rcpts, 3);
	cr_assert_str_eq(d.original_id, PETREL_ID);
	pt_dsn_free(&d);
	cr_assert_eq(dsn(DSN, (size_t)(cut_in_human - DSN), &d, err), PT_ERROR);
	cr_assert_str_eq(err, "the report has no message/delivery-status part");
	cr_assert_eq(dsn(DSN, (size_t)(cut_in_block - DSN), &d, err), PT_ERROR);
	cr_assert_str_eq(err, "recipient block 3 has no Action field");
}

Test(report, petrel_id_search)
{
	char id[PT_ID_LEN + 1];
	const char *h =
	    "Received: by x (Petrel) with ESMTP id " PETREL_ID "a; now\r\n"
	    "Received: by y (Postfix) with ESMTP id " PETREL_ID "\r\n"
	    "Received: by z (Petrel) with SMTP id 0005F1A2B3C4D5E60001A1B2C3D4E5F6\r\n"
	    "Received: from q by w (Petrel) with ESMTP id\r\n " PETREL_ID "\r\n"
	    "\r\n"
	    "Received: by body (Petrel) with ESMTP id 1111111111111111111111111111111\r\n";

	pt_report_petrel_id(h, strlen(h), id);
	cr_assert_str_eq(id, PETREL_ID, "too long, not ours, upper case: skipped; folded: found");
	pt_report_petrel_id("Subject: x\r\n\r\n", 14, id);
	cr_assert_str_eq(id, "");
}

static int arf(const char *m, size_t len, struct pt_arf *a, char *err)
{
	return pt_report_parse_arf(m, len, a, err, 256);
}

static char *arf_json(const struct pt_arf *a)
{
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	char *s;

	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key(&j, "feedback_report");
	pt_arf_json(a, &j);
	pt_json_obj_end(&j);
	s = strdup(pt_buf_cstr(&b));
	pt_buf_free(&b);
	return s;
}

Test(report, arf_rfc5965_example)
{
	struct pt_arf a;
	char err[256] = "", *json;

	cr_assert_eq(arf(ARF, strlen(ARF), &a, err), PT_OK, "%s", err);
	cr_assert_eq(a.n_fields, 14);
	cr_assert_str_eq(a.fields[0].name, "feedback-type");
	cr_assert_str_eq(a.fields[0].value, "abuse");
	cr_assert_str_eq(a.original_id, PETREL_ID);
	json = arf_json(&a);
	cr_assert_str_eq(
	    json,
	    "{\"feedback_report\":{\"feedback_type\":\"abuse\",\"user_agent\":\"SomeGenerator/"
	    "1.0\","
	    "\"version\":\"1\",\"arrival_date\":\"2005-03-08T18:00:00.000000Z\",\"incidents\":3,"
	    "\"original_envelope_id\":null,\"original_mail_from\":\"somespammer@example.net\","
	    "\"reporting_mta\":{\"mta_type\":\"dns\",\"name\":\"mail.example.com\"},"
	    "\"source_ip\":\"192.0.2.1\",\"authentication_results\":[\"mail.example.com;"
	    "               spf=fail smtp.mail=somespammer@example.com\"],"
	    "\"original_rcpto_to\":[\"user@example.com\"],\"reported_domain\":[\"example.net\"],"
	    "\"reported_uri\":[\"http://example.net/earn_money.html\",\"mailto:user@example.com\"],"
	    "\"extensions\":{\"removal-recipient\":[\"user@example.com\"]},"
	    "\"original_message\":\"From: <somespammer@example.net>\\nReceived: from "
	    "mailserver.example.net (mailserver.example.net\\n    [192.0.2.1]) by petrel.test "
	    "(Petrel) with ESMTPS id " PETREL_ID ";\\n    Tue, 08 Mar 2005 14:00:00 -0400\\n"
	    "Subject: Earn money\\n\\nSpam Spam Spam\",\"supplemental_trace\":null}}");
	free(json);
	pt_arf_free(&a);
}

Test(report, arf_minimal_and_extensions_sorted)
{
	const char *m =
	    "Content-Type: multipart/report; report-type=\"Feedback-Report\"; boundary=b\r\n"
	    "\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\n"
	    "Zeta: 2\r\nFeedback-Type: fraud\r\nUser-Agent: x/1\r\nVersion: 1\r\n"
	    "Alpha: 1\r\nZeta: 1\r\nReceived-Date: Thu, 8 Mar 2005 14:00:00 +0000\r\n"
	    "--b--\r\n";
	struct pt_arf a;
	char err[256] = "", *json;

	cr_assert_eq(arf(m, strlen(m), &a, err), PT_OK, "%s", err);
	json = arf_json(&a);
	cr_assert_str_eq(
	    json, "{\"feedback_report\":{\"feedback_type\":\"fraud\",\"user_agent\":\"x/1\","
		  "\"version\":\"1\",\"arrival_date\":\"2005-03-08T14:00:00.000000Z\","
		  "\"incidents\":null,\"original_envelope_id\":null,\"original_mail_from\":null,"
		  "\"reporting_mta\":null,\"source_ip\":null,\"authentication_results\":[],"
		  "\"original_rcpto_to\":[],\"reported_domain\":[],\"reported_uri\":[],"
		  "\"extensions\":{\"alpha\":[\"1\"],\"zeta\":[\"2\",\"1\"]},"
		  "\"original_message\":null,\"supplemental_trace\":null}}");
	cr_assert_str_eq(a.original_id, "");
	free(json);
	pt_arf_free(&a);
}

static void arf_fails(const char *fields, const char *want)
{
	char m[1024], err[256] = "";
	struct pt_arf a;

	snprintf(m, sizeof(m),
		 "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n"
		 "\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\n%s--b--\r\n",
		 fields);
	cr_assert_eq(arf(m, strlen(m), &a, err), PT_ERROR, "want an error for:\n%s", m);
	cr_assert_str_eq(err, want);
	cr_assert_null(a.fields);
}

Test(report, arf_malformed)
{
	arf_fails("Feedback-Type: abuse\r\nUser-Agent: x\r\n",
		  "the feedback report has no version field");
	arf_fails("Feedback-Type: abuse\r\nUser-Agent: x\r\nVersion: 1\r\nFeedback-Type: fraud\r\n",
		  "the feedback report repeats feedback-type");
	arf_fails("Feedback-Type: abuse\r\nUser-Agent: x\r\nVersion: 1\r\nIncidents: many\r\n",
		  "Incidents is not a number");
	arf_fails("Feedback-Type: abuse\r\nUser-Agent: x\r\nVersion: 1\r\nReporting-MTA: x\r\n",
		  "Reporting-MTA is not 'type; name'");
	arf_fails("", "the feedback report has no feedback-type field");
}

Test(report, arf_not_a_report_and_truncated)
{
	struct pt_arf a;
	char err[256];
	const char *no_type = "Content-Type: multipart/report; boundary=part1_13d.2e68ed54_boundary"
			      "\r\n\r\n--part1_13d.2e68ed54_boundary\r\n"
			      "Content-Type: message/feedback-report\r\n\r\n"
			      "Feedback-Type: abuse\r\nUser-Agent: x\r\nVersion: 1\r\n";

	cr_assert_eq(arf(no_type, strlen(no_type), &a, err), PT_DECLINED,
		     "report-type=feedback-report is required");
	cr_assert_eq(arf(DSN, strlen(DSN), &a, err), PT_DECLINED, "a DSN is not an ARF report");
	for (size_t n = 0; n <= strlen(ARF); n++) {
		char *cut = exact(ARF, n);
		int rc = arf(cut, n, &a, err);

		cr_assert(rc == PT_OK || rc == PT_ERROR || rc == PT_DECLINED);
		if (rc == PT_OK)
			pt_arf_free(&a);
		free(cut);
	}
	cr_assert_eq(arf(ARF, (size_t)(strstr(ARF, "Spam Spam") - ARF), &a, err), PT_OK);
	cr_assert_str_eq(a.original_id, PETREL_ID);
	pt_arf_free(&a);
}
