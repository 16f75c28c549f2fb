/*
 * petrelctl.c -- petrelctl, the admin API at a terminal.
 *
 *     petrelctl [--url URL] [--json] queue-summary
 *     petrelctl [--url URL] [--json] suspend --domain D [--campaign C] [--tenant T]
 *                                          [--duration 1h] [--reason R]
 *     petrelctl [--url URL] [--json] suspend-list
 *     petrelctl [--url URL] [--json] resume ID | --domain D
 *     petrelctl [--url URL] [--json] bounce (--domain D | --campaign C | --tenant T |
 *                                          --routing-domain R | --queue Q...)
 *                                         [--reason R] [--duration 10m]
 *     petrelctl [--url URL] [--json] suspend-ready-q --name SOURCE->SITE [--duration 1h]
 *                                                  [--reason R]
 *     petrelctl [--url URL] [--json] suspend-ready-q-list
 *     petrelctl [--url URL] [--json] resume-ready-q ID
 *     petrelctl [--url URL] [--json] rebind [--domain D] [--campaign C] [--tenant T]
 *                    [--routing-domain R] --set KEY=VALUE... [--always-flush] [--reason R]
 *     petrelctl [--url URL] [--json] inspect-message ID [--want-body]
 *     petrelctl [--url URL] [--json] set-log-filter FILTER
 *     petrelctl [--url URL] [--json] reload
 *     petrelctl [--url URL] [--json] trace-smtp-server [--source CIDR]
 *     petrelctl [--url URL] [--json] trace-smtp-client [--mx-addr CIDR] [--domain D]
 *                    [--routing-domain R] [--ready-queue Q] [--egress-source S]
 *                    [--mx-host H]
 *
 * Each sub-command is one request (resume --domain: the list, then one
 * DELETE per suspension of that domain) to petreld's HTTP listener
 * (shard/shard_admin.c has the endpoints, KumoMTA's paths).  The admin
 * endpoints answer trusted hosts only, so petrelctl sends no credentials:
 * run it where petreld trusts (loopback by default).
 *
 * The HTTP client is a plain blocking HTTP/1.1 exchange over one socket
 * (Connection: close, the body read to EOF): a CLI does one request at a
 * time, and this keeps petrelctl free of libcurl.  http:// only.
 *
 * Output: a table for people by default; --json prints the server's JSON
 * answer as is, for scripts.  Errors go to stderr with what was asked of
 * whom.  Exit status: 0 fine, 1 an error (petreld unreachable or it
 * refused), 2 bad usage.
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/buf.h"

#define TOOL	     "petrelctl"
#define DEFAULT_URL  "http://127.0.0.1:8000"
#define IO_TIMEOUT_S 30
#define MAX_RESPONSE (64u << 20)

static const char *opt_url = DEFAULT_URL;
static bool opt_json;

/* ---- usage ---------------------------------------------------------------------- */

static const struct command_help {
	const char *name, *usage, *text;
} helps[] = {
    {"queue-summary", "queue-summary",
     "List the scheduled queues (campaign:tenant@domain) with the messages waiting\n"
     "in them, and the ready queues (source->site) with their messages and\n"
     "connections.  Counts are summed over shards, at most a second old.\n"},
    {"suspend", "suspend --domain D [--campaign C] [--tenant T] [--duration 1h] [--reason R]",
     "Stop delivery to domain D (optionally only campaign C / tenant T) for the\n"
     "duration (default 1 day; \"30s\", \"10m\", \"2 hours\"...).  Messages stay\n"
     "queued.  Prints the suspension's id (for resume).\n"},
    {"suspend-list", "suspend-list", "List the suspensions in force with the seconds left.\n"},
    {"resume", "resume ID | --domain D",
     "End suspension ID, or every suspension of domain D.  Held messages are\n"
     "delivered within a second.\n"},
    {"bounce",
     "bounce (--domain D | --campaign C | --tenant T | --routing-domain R | --queue Q)...\n"
     "       [--reason R] [--duration 10m]",
     "Bounce every queued message that matches (an AdminBounce log record each; never\n"
     "retried).  --queue names a scheduled queue exactly (campaign:tenant@domain, as\n"
     "queue-summary shows it; repeat it for several) and wins over the others.  With\n"
     "--duration, messages that match and become due during that time are bounced\n"
     "too.  Messages in a transaction at that moment finish it.\n"},
    {"suspend-ready-q", "suspend-ready-q --name SOURCE->SITE [--duration 1h] [--reason R]",
     "Stop new transactions on one ready queue (an egress source towards a site, as\n"
     "queue-summary lists them) for the duration (default 1 day).  Its messages\n"
     "stay ready; a transaction in progress finishes.  Prints the suspension's id.\n"},
    {"suspend-ready-q-list", "suspend-ready-q-list",
     "List the ready queue suspensions in force with the seconds left.\n"},
    {"resume-ready-q", "resume-ready-q ID",
     "End ready queue suspension ID; the queue starts again within a second.\n"},
    {"rebind",
     "rebind [--domain D] [--campaign C] [--tenant T] [--routing-domain R]\n"
     "       --set KEY=VALUE... [--always-flush] [--reason R]",
     "Move the queued messages that match (every one, when no criterion is given)\n"
     "to the queue their meta names after setting KEY to VALUE (keys: queue,\n"
     "campaign, tenant, routing_domain; an empty VALUE unsets).  routing_domain,\n"
     "or the domain of a queue (campaign:tenant@domain!routing_domain), sends\n"
     "them by that domain's MX.  A message whose queue changed is due at\n"
     "once and gets an AdminRebind log record; --always-flush makes every match\n"
     "due at once.  The change is in memory: after a restart messages route by\n"
     "the meta they were received with.\n"},
    {"inspect-message", "inspect-message ID [--want-body]",
     "Show a queued message: envelope, meta, each recipient's state (queued with\n"
     "attempts and next due time, or done) and, with --want-body, the message.\n"},
    {"set-log-filter", "set-log-filter FILTER",
     "Change petreld's diagnostic log level now, e.g. \"petreld=debug\" or \"warn\"\n"
     "(KumoMTA's syntax; levels trace, debug, info, warn, error, off).\n"},
    {"trace-smtp-server", "trace-smtp-server [--source CIDR]",
     "Print the SMTP server's sessions live, one line per event (connect, each\n"
     "command and reply line, message data sizes, TLS, close), optionally only\n"
     "for clients in CIDR, until Ctrl-C.  Events petrelctl cannot keep up with\n"
     "are dropped and counted, never slowing petreld.\n"},
    {"trace-smtp-client",
     "trace-smtp-client [--mx-addr CIDR] [--domain D] [--routing-domain R]\n"
     "       [--ready-queue SOURCE->SITE] [--egress-source S] [--mx-host H]",
     "Print petreld's outbound SMTP sessions live, one line per event (connection\n"
     "attempt with the MX host and address, each command sent and reply line\n"
     "received, message data sizes, TLS, close with its reason), until Ctrl-C.\n"
     "Each filter given must match (KumoMTA's names): the MX address in CIDR, the\n"
     "ready queue's domain, routing domain, name or egress source, the MX host's\n"
     "name.  Events petrelctl cannot keep up with are dropped and counted.\n"},
    {"reload", "reload",
     "Reload the policy, as SIGHUP does.  Prints whether it loaded; when it did not,\n"
     "petreld says why (file:line) and keeps the running configuration.\n"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " TOOL " [--url URL] [--json] COMMAND [ARGS]\n\n"
		   "Talk to petreld's admin API.  URL defaults to " DEFAULT_URL
		   " (an HTTP listener\nwhere this host is in trusted_hosts).  --json prints the "
		   "server's JSON answer.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
		fprintf(f, "  %s\n", helps[i].usage);
	fprintf(f, "\n" TOOL " COMMAND --help describes one command.\n");
}

static int command_help(const char *name, FILE *f)
{
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		if (strcmp(helps[i].name, name) != 0)
			continue;
		fprintf(f, "usage: " TOOL " [--url URL] [--json] %s\n\n%s", helps[i].usage,
			helps[i].text);
		return f == stdout ? 0 : 2;
	}
	fprintf(stderr, TOOL ": no command '%s' (" TOOL " --help lists them)\n", name);
	return 2;
}

static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, TOOL ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (cmd)
		command_help(cmd, stderr);
	else
		usage(stderr);
	return 2;
}

/* ---- HTTP ----------------------------------------------------------------------- */

struct http_answer {
	int status;
	struct pt_buf body;
};

/* Split http://host[:port][/prefix] into host and port; false on a bad URL. */
static bool url_split(const char *url, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *p, *end, *colon;

	if (strncasecmp(url, "http://", 7) != 0)
		return false;
	p = url + 7;
	end = p + strcspn(p, "/");
	if (*p == '[') { /* [v6]:port */
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (!close || (size_t)(close - p - 1) >= host_len)
			return false;
		snprintf(host, host_len, "%.*s", (int)(close - p - 1), p + 1);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		if ((size_t)((colon ? colon : end) - p) >= host_len || (colon ? colon : end) == p)
			return false;
		snprintf(host, host_len, "%.*s", (int)((colon ? colon : end) - p), p);
	}
	if (colon && end - colon - 1 > 0 && (size_t)(end - colon - 1) < port_len)
		snprintf(port, port_len, "%.*s", (int)(end - colon - 1), colon + 1);
	else if (colon)
		return false;
	else
		snprintf(port, port_len, "80");
	return true;
}

/* A connected socket (timeout_s for each send and receive; 0: none), or -1 after saying why. */
static int http_connect(const char *host, const char *port, int timeout_s)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	struct timeval tv = {.tv_sec = timeout_s};
	int fd = -1, rc, err = 0;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, TOOL ": %s: cannot resolve %s: %s\n", opt_url, host,
			gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, TOOL ": cannot connect to petreld at %s: %s\n", opt_url,
			strerror(err));
	return fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Parse raw (a whole HTTP/1.1 response) into a. */
static bool http_parse(struct pt_buf *raw, struct http_answer *a)
{
	char *hdr_end, *p;
	size_t hlen;

	pt_buf_cstr(raw);
	if (raw->len < 12 || strncmp(raw->data, "HTTP/1.", 7) != 0 ||
	    sscanf(raw->data + 9, "%3d", &a->status) != 1)
		return false;
	hdr_end = strstr(raw->data, "\r\n\r\n");
	if (!hdr_end)
		return false;
	hlen = (size_t)(hdr_end - raw->data) + 4;
	for (p = raw->data; p < hdr_end; p = strstr(p, "\r\n") + 2)
		if (strncasecmp(p, "Transfer-Encoding:", 18) == 0)
			return false; /* petreld sends Content-Length; chunked is not expected */
	pt_buf_append(&a->body, raw->data + hlen, raw->len - hlen);
	pt_buf_cstr(&a->body);
	return true;
}

/* Connect to --url and send the request: the socket, or -1 after saying why. */
static int http_send(const char *method, const char *path, const char *body, int timeout_s)
{
	char host[256], port[16];
	struct pt_buf req = PT_BUF_INIT;
	int fd;

	if (!url_split(opt_url, host, sizeof(host), port, sizeof(port))) {
		fprintf(stderr, TOOL ": bad --url %s: expected http://HOST:PORT\n", opt_url);
		return -1;
	}
	if ((fd = http_connect(host, port, timeout_s)) < 0)
		return -1;
	pt_buf_printf(&req,
		      "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: " TOOL "\r\n"
		      "Accept: application/json\r\nConnection: close\r\n",
		      method, path, host, port);
	if (body)
		pt_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
			      strlen(body));
	pt_buf_append_str(&req, "\r\n");
	if (body)
		pt_buf_append_str(&req, body);
	if (!write_all(fd, req.data, req.len)) {
		fprintf(stderr, TOOL ": %s %s%s: send failed: %s\n", method, opt_url, path,
			strerror(errno));
		close(fd);
		fd = -1;
	}
	pt_buf_free(&req);
	return fd;
}

/* One request; false after saying why on stderr. */
static bool http_call(const char *method, const char *path, const char *body, struct http_answer *a)
{
	struct pt_buf raw = PT_BUF_INIT;
	char chunk[16384];
	bool ok = false;
	int fd;

	memset(a, 0, sizeof(*a));
	if ((fd = http_send(method, path, body, IO_TIMEOUT_S)) < 0)
		return false;
	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, TOOL ": %s %s%s: %s\n", method, opt_url, path,
				errno == EAGAIN ? "no answer within 30 s" : strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (raw.len + (size_t)n > MAX_RESPONSE) {
			fprintf(stderr, TOOL ": %s %s%s: answer too large\n", method, opt_url,
				path);
			goto out;
		}
		pt_buf_append(&raw, chunk, (size_t)n);
	}
	if (!(ok = http_parse(&raw, a)))
		fprintf(stderr, TOOL ": %s %s%s: not an HTTP answer petrelctl understands\n",
			method, opt_url, path);
out:
	close(fd);
	pt_buf_free(&raw);
	return ok;
}

/* The answer's JSON, or NULL after an error message (HTTP error or bad JSON). */
static json_t *http_json(const char *method, const char *path, const char *body,
			 struct http_answer *a)
{
	json_error_t err;
	json_t *j;

	if (!http_call(method, path, body, a))
		return NULL;
	j = json_loadb(a->body.data ? a->body.data : "", a->body.len, 0, &err);
	if (a->status < 200 || a->status > 299) {
		const char *msg = json_string_value(json_object_get(j, "error"));

		fprintf(stderr, TOOL ": %s %s%s: HTTP %d: %s\n", method, opt_url, path, a->status,
			msg	       ? msg
			: a->body.data ? a->body.data
				       : "");
		json_decref(j);
		return NULL;
	}
	if (!j)
		fprintf(stderr, TOOL ": %s %s%s: the answer is not JSON: %s\n", method, opt_url,
			path, err.text);
	return j;
}

/* Run a request whose answer prints as JSON with --json or via table(). */
static int run(const char *method, const char *path, json_t *req, void (*table)(json_t *))
{
	struct http_answer a;
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_t *j;
	int rc = 1;

	if (req && !body) {
		fprintf(stderr, TOOL ": out of memory\n");
		return 1;
	}
	j = http_json(method, path, body, &a);
	if (j) {
		if (opt_json)
			printf("%s\n", a.body.data);
		else
			table(j);
		rc = 0;
	}
	json_decref(j);
	free(body);
	pt_buf_free(&a.body);
	return rc;
}

/* ---- output --------------------------------------------------------------------- */

static const char *str_or(json_t *o, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : def;
}

static void table_summary(json_t *j)
{
	json_t *row;
	size_t i;

	printf("%-50s %10s\n", "SCHEDULED QUEUE", "COUNT");
	json_array_foreach(json_object_get(j, "scheduled"), i, row)
	{
		printf("%-50s %10lld\n", str_or(row, "queue", "?"),
		       (long long)json_integer_value(json_object_get(row, "count")));
	}
	printf("\n%-50s %10s %12s\n", "READY QUEUE (SOURCE->SITE)", "COUNT", "CONNECTIONS");
	json_array_foreach(json_object_get(j, "ready"), i, row)
	{
		printf("%-50s %10lld %12lld\n", str_or(row, "path", "?"),
		       (long long)json_integer_value(json_object_get(row, "count")),
		       (long long)json_integer_value(json_object_get(row, "connections")));
	}
}

static void table_suspensions(json_t *j)
{
	json_t *row;
	size_t i;

	printf("%-32s  %-24s %-12s %-12s %9s  %s\n", "ID", "DOMAIN", "CAMPAIGN", "TENANT",
	       "SECS LEFT", "REASON");
	json_array_foreach(j, i, row)
	{
		printf("%-32s  %-24s %-12s %-12s %9lld  %s\n", str_or(row, "id", "?"),
		       str_or(row, "domain", "*"), str_or(row, "campaign", "*"),
		       str_or(row, "tenant", "*"),
		       (long long)json_integer_value(json_object_get(row, "duration")),
		       str_or(row, "reason", ""));
	}
}

static void table_id(json_t *j)
{
	printf("%s\n", str_or(j, "id", "?"));
}

static void table_resumed(json_t *j)
{
	(void)j;
}

static void table_ready_suspensions(json_t *j)
{
	json_t *row;
	size_t i;

	printf("%-32s  %-40s %9s  %s\n", "ID", "READY QUEUE", "SECS LEFT", "REASON");
	json_array_foreach(j, i, row)
	{
		printf("%-32s  %-40s %9lld  %s\n", str_or(row, "id", "?"), str_or(row, "name", "?"),
		       (long long)json_integer_value(json_object_get(row, "duration")),
		       str_or(row, "reason", ""));
	}
}

static void table_rebound(json_t *j)
{
	(void)j;
	printf("rebind sent: matching queued messages move now (AdminRebind log records)\n");
}

static void table_log_filter(json_t *j)
{
	(void)j;
	printf("diagnostic log filter set\n");
}

static void table_reloaded(json_t *j)
{
	(void)j;
	printf("configuration reloaded\n");
}

static void table_message(json_t *j)
{
	json_t *m = json_object_get(j, "message"), *row, *v;
	const char *key;
	size_t i;

	printf("id:      %s\nsender:  <%s>\n", str_or(j, "id", "?"), str_or(m, "sender", ""));
	printf("\n%-40s %-8s %8s  %s\n", "RECIPIENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT");
	json_array_foreach(json_object_get(m, "recipients"), i, row)
	{
		printf("%-40s %-8s %8lld  %s\n", str_or(row, "recipient", "?"),
		       str_or(row, "state", "?"),
		       (long long)json_integer_value(json_object_get(row, "num_attempts")),
		       str_or(row, "due", "-"));
	}
	printf("\nmeta:\n");
	json_object_foreach(json_object_get(m, "meta"), key, v)
	{
		char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

		printf("  %s = %s\n", key, text ? text : "?");
		free(text);
	}
	if (json_is_string(json_object_get(m, "data")))
		printf("\n%s", str_or(m, "data", ""));
}

/* ---- commands ------------------------------------------------------------------- */

/* One option's value into obj: --queue Q adds to queue_names, --set K=V to
 * data, others set their key (dashes become underscores). */
static int put_opt(const char *cmd, json_t *obj, const char *name, const char *value)
{
	char key[64];
	const char *eq;

	if (strcmp(name, "queue") == 0) {
		if (!json_object_get(obj, "queue_names"))
			json_object_set_new(obj, "queue_names", json_array());
		json_array_append_new(json_object_get(obj, "queue_names"), json_string(value));
		return 0;
	}
	if (strcmp(name, "set") == 0) {
		if (!(eq = strchr(value, '=')) || eq == value)
			return usage_error(cmd, "%s: --set wants KEY=VALUE, not '%s'", cmd, value);
		if (!json_object_get(obj, "data"))
			json_object_set_new(obj, "data", json_object());
		snprintf(key, sizeof(key), "%.*s", (int)(eq - value), value);
		json_object_set_new(json_object_get(obj, "data"), key, json_string(eq + 1));
		return 0;
	}
	snprintf(key, sizeof(key), "%s", name);
	for (char *p = key; *p; p++)
		if (*p == '-')
			*p = '_';
	json_object_set_new(obj, key, value ? json_string(value) : json_true());
	return 0;
}

/* The options of a sub-command into obj (allowed: names; "+name" a flag
 * without value); 0, -1 for --help, or 2 after a usage error. */
static int parse_opts(const char *cmd, int argc, char **argv, const char *const *allowed,
		      json_t *obj, const char **positional)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int kind = 0; /* 1 takes a value, 2 a flag */

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return -1;
		if (strncmp(a, "--", 2) != 0) {
			if (!positional || *positional)
				return usage_error(cmd, "unexpected argument '%s'", a);
			*positional = a;
			continue;
		}
		for (size_t k = 0; allowed[k] && !kind; k++) {
			if (allowed[k][0] == '+' && strcmp(a + 2, allowed[k] + 1) == 0)
				kind = 2;
			else if (strcmp(a + 2, allowed[k]) == 0)
				kind = 1;
		}
		if (!kind)
			return usage_error(cmd, "%s: unknown option %s", cmd, a);
		if (kind == 2) {
			put_opt(cmd, obj, a + 2, NULL);
			continue;
		}
		if (i + 1 >= argc || !argv[i + 1][0])
			return usage_error(cmd, "%s: %s needs a value", cmd, a);
		if (put_opt(cmd, obj, a + 2, argv[++i]))
			return 2;
	}
	return 0;
}

static int cmd_post(const char *cmd, const char *path, int argc, char **argv, bool need_domain)
{
	static const char *const suspend_opts[] = {"domain",   "campaign", "tenant",
						   "duration", "reason",   NULL};
	static const char *const bounce_opts[] = {"domain", "campaign", "tenant", "routing-domain",
						  "queue",  "duration", "reason", NULL};
	json_t *o = json_object();
	int rc = parse_opts(cmd, argc, argv, need_domain ? suspend_opts : bounce_opts, o, NULL);

	if (rc == 0 && need_domain && !json_object_get(o, "domain"))
		rc = usage_error(cmd, "%s: --domain is required", cmd);
	if (rc == 0 && !json_object_get(o, "domain") && !json_object_get(o, "campaign") &&
	    !json_object_get(o, "tenant") && !json_object_get(o, "routing_domain") &&
	    !json_object_get(o, "queue_names"))
		rc = usage_error(cmd,
				 "%s: name --domain, --campaign, --tenant, --routing-domain "
				 "or --queue",
				 cmd);
	if (rc) {
		json_decref(o);
		return rc < 0 ? command_help(cmd, stdout) : rc;
	}
	if (!json_object_get(o, "reason"))
		json_object_set_new(o, "reason", json_string("petrelctl"));
	rc = run("POST", path, o, table_id);
	json_decref(o);
	return rc;
}

/* DELETE suspension id at path (suspend/v1 or suspend-ready-q/v1). */
static int resume_one(const char *path, const char *id)
{
	json_t *o = json_pack("{s:s}", "id", id);
	int rc = run("DELETE", path, o, table_resumed);

	if (rc == 0 && !opt_json)
		printf("resumed %s\n", id);
	json_decref(o);
	return rc;
}

static int cmd_resume(int argc, char **argv)
{
	static const char *const opts[] = {"domain", NULL};
	const char *id = NULL, *domain;
	struct http_answer a;
	json_t *o = json_object(), *list, *row;
	size_t i, n = 0;
	int rc = parse_opts("resume", argc, argv, opts, o, &id);

	domain = json_string_value(json_object_get(o, "domain"));
	if (rc == 0 && !id == !domain)
		rc = usage_error("resume", "resume: give an ID or --domain D (one of them)");
	if (rc || id) {
		json_decref(o);
		return rc < 0 ? command_help("resume", stdout)
		       : rc   ? rc
			      : resume_one("/api/admin/suspend/v1", id);
	}
	list = http_json("GET", "/api/admin/suspend/v1", NULL, &a);
	pt_buf_free(&a.body);
	json_array_foreach(list, i, row)
	{
		const char *d = str_or(row, "domain", "");

		if (strcasecmp(d, domain) != 0)
			continue;
		n++;
		rc |= resume_one("/api/admin/suspend/v1", str_or(row, "id", ""));
	}
	if (list && n == 0) {
		fprintf(stderr, TOOL ": resume: no suspension of %s in force\n", domain);
		rc = 1;
	}
	json_decref(list);
	json_decref(o);
	return list ? rc : 1;
}

/* A command without options or arguments: GET/POST path, print with table. */
static int cmd_plain(const char *cmd, const char *method, const char *path, int argc, char **argv,
		     void (*table)(json_t *))
{
	static const char *const none[] = {NULL};
	json_t *o = json_object();
	int rc = parse_opts(cmd, argc, argv, none, o, NULL);

	json_decref(o);
	if (rc)
		return rc < 0 ? command_help(cmd, stdout) : rc;
	return run(method, path, NULL, table);
}

/* POST path with the options; `required` (a JSON key) must be given
 * (else `missing` is the usage error); reason defaults to "petrelctl". */
static int cmd_post_reason(const char *cmd, const char *path, int argc, char **argv,
			   const char *const *opts, const char *required, const char *missing,
			   void (*table)(json_t *))
{
	json_t *o = json_object();
	int rc = parse_opts(cmd, argc, argv, opts, o, NULL);

	if (rc == 0 && !json_object_get(o, required))
		rc = usage_error(cmd, "%s: %s", cmd, missing);
	if (rc == 0) {
		if (!json_object_get(o, "reason"))
			json_object_set_new(o, "reason", json_string("petrelctl"));
		rc = run("POST", path, o, table);
	} else if (rc < 0) {
		rc = command_help(cmd, stdout);
	}
	json_decref(o);
	return rc;
}

static int cmd_suspend_ready_q(int argc, char **argv)
{
	static const char *const opts[] = {"name", "duration", "reason", NULL};

	return cmd_post_reason("suspend-ready-q", "/api/admin/suspend-ready-q/v1", argc, argv, opts,
			       "name", "--name is required", table_id);
}

static int cmd_resume_ready_q(int argc, char **argv)
{
	static const char *const none[] = {NULL};
	const char *id = NULL;
	json_t *o = json_object();
	int rc = parse_opts("resume-ready-q", argc, argv, none, o, &id);

	json_decref(o);
	if (rc == 0 && !id)
		rc = usage_error("resume-ready-q", "resume-ready-q: give the suspension's ID");
	if (rc)
		return rc < 0 ? command_help("resume-ready-q", stdout) : rc;
	return resume_one("/api/admin/suspend-ready-q/v1", id);
}

static int cmd_rebind(int argc, char **argv)
{
	static const char *const opts[] = {"domain", "campaign",      "tenant", "routing-domain",
					   "set",    "+always-flush", "reason", NULL};

	return cmd_post_reason("rebind", "/api/admin/rebind/v1", argc, argv, opts, "data",
			       "--set KEY=VALUE is required", table_rebound);
}

static int cmd_inspect(int argc, char **argv)
{
	static const char *const opts[] = {"+want-body", NULL};
	const char *id = NULL;
	char path[160];
	json_t *o = json_object();
	int rc = parse_opts("inspect-message", argc, argv, opts, o, &id);

	if (rc == 0 && (!id || strlen(id) > 64 || id[strcspn(id, "&?#% ")]))
		rc = usage_error("inspect-message", "inspect-message: give a message ID");
	if (rc == 0) {
		snprintf(path, sizeof(path), "/api/admin/inspect-message/v1?id=%s&want_body=%s", id,
			 json_object_get(o, "want_body") ? "true" : "false");
		rc = run("GET", path, NULL, table_message);
	} else if (rc < 0) {
		rc = command_help("inspect-message", stdout);
	}
	json_decref(o);
	return rc;
}

static int cmd_set_log_filter(int argc, char **argv)
{
	static const char *const none[] = {NULL};
	const char *filter = NULL;
	json_t *o = json_object();
	int rc = parse_opts("set-log-filter", argc, argv, none, o, &filter);

	if (rc == 0 && !filter)
		rc = usage_error("set-log-filter", "set-log-filter: give a FILTER");
	if (rc == 0) {
		json_object_set_new(o, "filter", json_string(filter));
		rc = run("POST", "/api/admin/set_diagnostic_log_filter/v1", o, table_log_filter);
	} else if (rc < 0) {
		rc = command_help("set-log-filter", stdout);
	}
	json_decref(o);
	return rc;
}

/* ---- trace-smtp-server ---------------------------------------------------------- */

/* One JSON line of the trace, as is (--json) or as a row. */
static void trace_print(const char *line)
{
	json_t *j = json_loads(line, 0, NULL);
	const char *type = str_or(j, "type", "?"), *t = str_or(j, "time", "");

	if (opt_json)
		printf("%s\n", line);
	else if (strcmp(type, "subscribed") == 0 && !json_object_get(j, "mx_addr"))
		printf("tracing SMTP sessions (source %s); Ctrl-C ends\n",
		       str_or(j, "source", "any"));
	else if (strcmp(type, "subscribed") == 0)
		printf("tracing outbound SMTP sessions; Ctrl-C ends\n");
	else if (strcmp(type, "dropped") == 0)
		printf("... %lld events dropped (the trace is slower than the traffic)\n",
		       (long long)json_integer_value(json_object_get(j, "count")));
	else if (strcmp(type, "data") == 0)
		printf("%-15s %-8s %-15s %-7s %lld bytes\n", strlen(t) > 11 ? t + 11 : t,
		       str_or(j, "session", "?"), str_or(j, "peer", "?"), type,
		       (long long)json_integer_value(json_object_get(j, "bytes")));
	else if (json_object_get(j, "line"))
		printf("%-15s %-8s %-15s %-7s %s\n", strlen(t) > 11 ? t + 11 : t,
		       str_or(j, "session", "?"), str_or(j, "peer", "?"), type,
		       str_or(j, "line", ""));
	else
		printf("%-15s %-8s %-15s %s\n", strlen(t) > 11 ? t + 11 : t,
		       str_or(j, "session", "?"), str_or(j, "peer", "?"), type);
	fflush(stdout);
	json_decref(j);
}

/* Chunks of in into lines, each printed; in keeps what is not whole yet.
 * 1: more to read, 0: the last chunk came, -1: bad framing. */
static int trace_chunks(struct pt_buf *in, struct pt_buf *lines)
{
	for (;;) {
		char *crlf = in->len ? memmem(in->data, in->len, "\r\n", 2) : NULL, *end, *nl;
		unsigned long size;
		size_t head;

		if (!crlf)
			return 1;
		size = strtoul(in->data, &end, 16);
		if (end == in->data || size > MAX_RESPONSE)
			return -1;
		head = (size_t)(crlf + 2 - in->data);
		if (size == 0)
			return 0;
		if (in->len < head + size + 2)
			return 1;
		pt_buf_append(lines, in->data + head, size);
		pt_buf_consume(in, head + size + 2);
		while ((nl = lines->len ? memchr(lines->data, '\n', lines->len) : NULL)) {
			*nl = '\0';
			trace_print(lines->data);
			pt_buf_consume(lines, (size_t)(nl - lines->data) + 1);
		}
	}
}

/* Print the trace from fd until petreld ends it (0) or an error (1). */
static int trace_stream(int fd, const char *path)
{
	struct pt_buf in = PT_BUF_INIT, lines = PT_BUF_INIT;
	char chunk[16384], *hdr_end;
	int status = 0, rc = 1;
	bool body = false;

	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, TOOL ": GET %s%s: %s\n", opt_url, path,
				n == 0 ? "petreld closed the trace" : strerror(errno));
			break;
		}
		pt_buf_append(&in, chunk, (size_t)n);
		if (!body && (hdr_end = memmem(in.data, in.len, "\r\n\r\n", 4))) {
			if (sscanf(in.data, "HTTP/1.%*d %d", &status) != 1 || status != 200)
				break; /* an error answer: read it whole below */
			pt_buf_consume(&in, (size_t)(hdr_end + 4 - in.data));
			body = true;
		}
		if (body && (rc = trace_chunks(&in, &lines)) <= 0) {
			if (rc < 0)
				fprintf(stderr, TOOL ": GET %s%s: bad chunked framing\n", opt_url,
					path);
			rc = -rc;
			break;
		}
		rc = 1;
	}
	pt_buf_free(&in);
	pt_buf_free(&lines);
	return status && status != 200 ? -status : rc;
}

/* The options in o as a query string on path, values percent-encoded. */
static void trace_query(struct pt_buf *path, json_t *o)
{
	const char *key;
	json_t *v;
	char sep = '?';

	json_object_foreach(o, key, v) {
		pt_buf_printf(path, "%c%s=", sep, key);
		for (const char *p = json_string_value(v); p && *p; p++) {
			if (strchr("-._~", *p) || (*p >= '0' && *p <= '9') ||
			    ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
				pt_buf_append(path, p, 1);
			else
				pt_buf_printf(path, "%%%02X", (unsigned char)*p);
		}
		sep = '&';
	}
}

/* trace-smtp-server and trace-smtp-client: the filters, then the stream. */
static int cmd_trace(const char *cmd, int argc, char **argv)
{
	static const char *const server_opts[] = {"source", NULL};
	static const char *const client_opts[] = {
	    "mx-addr", "domain", "routing-domain", "ready-queue", "egress-source", "mx-host", NULL};
	bool client = strcmp(cmd, "trace-smtp-client") == 0;
	json_t *o = json_object(), *err;
	struct http_answer a;
	struct pt_buf pb = PT_BUF_INIT;
	char path[4096];
	int rc = parse_opts(cmd, argc, argv, client ? client_opts : server_opts, o, NULL), fd;

	if (rc) {
		json_decref(o);
		return rc < 0 ? command_help(cmd, stdout) : rc;
	}
	pt_buf_printf(&pb, "/api/admin/%s/v1", cmd);
	trace_query(&pb, o);
	snprintf(path, sizeof(path), "%s", pt_buf_cstr(&pb));
	pt_buf_free(&pb);
	json_decref(o);
	if ((fd = http_send("GET", path, NULL, 0)) < 0)
		return 1;
	rc = trace_stream(fd, path);
	close(fd);
	if (rc >= 0)
		return rc;
	/* Refused (400, 403, 503): ask again for the whole answer, to say why. */
	if ((err = http_json("GET", path, NULL, &a)))
		json_decref(err);
	pt_buf_free(&a.body);
	return 1;
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			opt_json = true;
		} else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
			opt_url = argv[++i];
		} else if (strncmp(argv[i], "--url=", 6) == 0) {
			opt_url = argv[i] + 6;
		} else if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			return usage_error(NULL, "unknown option %s", argv[i]);
		}
	}
	if (i >= argc)
		return usage_error(NULL, "no command given");
	argc -= i + 1;
	const char *cmd = argv[i];
	argv += i + 1;
	if (strcmp(cmd, "queue-summary") == 0)
		return cmd_plain(cmd, "GET", "/api/admin/queue-summary/v1", argc, argv,
				 table_summary);
	if (strcmp(cmd, "suspend") == 0)
		return cmd_post("suspend", "/api/admin/suspend/v1", argc, argv, true);
	if (strcmp(cmd, "suspend-list") == 0)
		return cmd_plain(cmd, "GET", "/api/admin/suspend/v1", argc, argv,
				 table_suspensions);
	if (strcmp(cmd, "resume") == 0)
		return cmd_resume(argc, argv);
	if (strcmp(cmd, "bounce") == 0)
		return cmd_post("bounce", "/api/admin/bounce/v1", argc, argv, false);
	if (strcmp(cmd, "suspend-ready-q") == 0)
		return cmd_suspend_ready_q(argc, argv);
	if (strcmp(cmd, "suspend-ready-q-list") == 0)
		return cmd_plain(cmd, "GET", "/api/admin/suspend-ready-q/v1", argc, argv,
				 table_ready_suspensions);
	if (strcmp(cmd, "resume-ready-q") == 0)
		return cmd_resume_ready_q(argc, argv);
	if (strcmp(cmd, "rebind") == 0)
		return cmd_rebind(argc, argv);
	if (strcmp(cmd, "inspect-message") == 0)
		return cmd_inspect(argc, argv);
	if (strcmp(cmd, "set-log-filter") == 0)
		return cmd_set_log_filter(argc, argv);
	if (strcmp(cmd, "reload") == 0)
		return cmd_plain(cmd, "POST", "/api/admin/bump-config-epoch", argc, argv,
				 table_reloaded);
	if (strcmp(cmd, "trace-smtp-server") == 0 || strcmp(cmd, "trace-smtp-client") == 0)
		return cmd_trace(cmd, argc, argv);
	if (strcmp(cmd, "help") == 0)
		return argc > 0 ? command_help(argv[0], stdout) : (usage(stdout), 0);
	return usage_error(NULL, "unknown command '%s'", cmd);
}
