/*
 * gen.c -- petrel-gen: an SMTP load generator for Petrel's benchmarks.
 *
 *   petrel-gen --server HOST:PORT [options]     (--help lists them)
 *
 * This file holds the options, the threads, the progress line and the
 * summary; the work is done by the workers (gen_worker.c), each with its
 * own io_uring and its share of the sessions (gen_session.c), sending
 * messages built from one template (gen_msg.c) and timing each one's
 * final reply (gen_hist.c).
 *
 * Message numbers 1..M are handed out by one atomic counter, in order, to
 * whichever session is free: the --rate schedule (message n may start at
 * (n - 1) / rate seconds after the start) and the recipients' names follow
 * from the number alone, so no thread needs to know about another.
 *
 * Exit status: 0 when every message got a final reply (accepted or
 * refused), 1 on timeout or when messages were given up after connection
 * errors, 2 on bad options.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/gen.h"
#include "core/json.h"
#include "net/tls.h"

#define GEN_EXIT_OK    0
#define GEN_EXIT_FAIL  1
#define GEN_EXIT_USAGE 2

static const char gen_usage[] =
    "usage: petrel-gen --server HOST:PORT [options]\n"
    "\n"
    "An SMTP load generator: sessions send numbered messages to one server\n"
    "and report throughput and the latency of the reply to each final dot.\n"
    "\n"
    "  --server HOST:PORT     where to connect (required; [::1]:25 for IPv6)\n"
    "  --threads T            threads, each with its own io_uring (default 1)\n"
    "  --sessions N           concurrent connections, spread over the threads\n"
    "                         (default 10)\n"
    "  --messages M           messages in all (default 1000)\n"
    "  --size BYTES           message size, headers included, as the server\n"
    "                         stores it (default 2048)\n"
    "  --eml FILE             send this message instead (line ends made CRLF,\n"
    "                         dot-stuffed), its Message-ID replaced by ours\n"
    "  --rcpts K              recipients per message (default 1)\n"
    "  --domains D            recipient domains (default 1): recipient g (0, 1,\n"
    "                         ... over the run) is user<g>@d<g mod D>.<suffix>\n"
    "  --domain-suffix S      (default example.test)\n"
    "  --from ADDR            envelope and From: sender (default\n"
    "                         petrel-gen@example.test)\n"
    "  --helo NAME            EHLO name (default petrel-gen.example.test)\n"
    "  --pipelining on|off    MAIL, RCPTs and DATA in one write when the server\n"
    "                         offers PIPELINING (default on); off: one command\n"
    "                         per round trip\n"
    "  --starttls on|off      STARTTLS after EHLO, then EHLO again; the server's\n"
    "                         certificate is not checked (default off)\n"
    "  --rate R               messages/s over all sessions, paced by io_uring\n"
    "                         timeouts; 0 = unlimited (default 0)\n"
    "  --per-connection N     messages per connection before QUIT and a new\n"
    "                         connection; 0 = unlimited (default 0)\n"
    "  --timeout S            bound on the whole run; when it passes, report\n"
    "                         what was done and exit 1 (default 300)\n"
    "  --reply-timeout S      bound on each wait for the server (greeting, a\n"
    "                         reply, the TLS handshake; reset by every byte\n"
    "                         received): past it the connection is a\n"
    "                         connection error and its message is retried on\n"
    "                         a new one (default 30)\n"
    "  --run-id ID            the RUNID in Message-IDs (default: pid and time\n"
    "                         in hex)\n"
    "  --json                 print one JSON object instead of the summary\n"
    "  --quiet                no progress line, no summary, no warnings\n"
    "  --help                 this text\n"
    "\n"
    "Every message is unique: Message-ID <N.RUNID@petrel-gen> and a header\n"
    "X-Petrel-Gen: N, N = 1..M.\n"
    "\n"
    "Accounting: each message ends once, as accepted (2xx after the dot),\n"
    "tempfailed (not accepted, a 4xx anywhere in its transaction), permfailed\n"
    "(not accepted, 5xx) or, after a connection error (refused, reset,\n"
    "closed, no reply within --reply-timeout) and 3 retries on new\n"
    "connections, as a connection failure;\n"
    "failed = tempfailed + permfailed + connection failures.  A message whose\n"
    "recipients were all refused is not sent (RSET).  bytes counts the\n"
    "message bytes of accepted messages.  Latency: from writing the final dot\n"
    "to reading its reply, every message; elapsed runs from the first connect\n"
    "to the last reply.\n"
    "\n"
    "A progress line goes to stderr every second when stderr is a terminal.\n"
    "JSON keys: messages attempted accepted tempfailed permfailed failed\n"
    "conn_failed rcpts_accepted rcpts_refused conn_errors reply_timeouts bytes\n"
    "elapsed_s first_connect_mono_s last_reply_mono_s (CLOCK_MONOTONIC\n"
    "seconds) "
    "msgs_per_s bytes_per_s latency_ms{p50,p90,p99,p99_9,max,mean} sessions\n"
    "threads timed_out run_id.\n"
    "\n"
    "Exit status: 0 every message got a final reply; 1 timeout or messages\n"
    "given up after connection errors; 2 bad options.\n";

/* ---- Shared run state ---- */

uint64_t gen_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gen_run_claim(struct gen_run *run)
{
	uint64_t n = __atomic_add_fetch(&run->next_msg, 1, __ATOMIC_RELAXED);

	return n <= run->cfg->n_messages ? n : 0;
}

void gen_run_worker_done(struct gen_run *run)
{
	pthread_mutex_lock(&run->lock);
	run->n_done++;
	pthread_cond_signal(&run->cond);
	pthread_mutex_unlock(&run->lock);
}

/* ---- Options ---- */

static void __attribute__((noreturn, format(printf, 1, 2))) gen_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("petrel-gen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(petrel-gen --help lists the options)\n", stderr);
	exit(GEN_EXIT_USAGE);
}

static uint64_t gen_opt_u64(const char *opt, const char *v, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || n < min || n > max)
		gen_usage_error("%s: expected an integer from %llu to %llu, got '%s'", opt,
				(unsigned long long)min, (unsigned long long)max, v);
	return n;
}

static double gen_opt_double(const char *opt, const char *v, double min, double max)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= min && d <= max))
		gen_usage_error("%s: expected a number from %g to %g, got '%s'", opt, min, max, v);
	return d;
}

static bool gen_opt_bool(const char *opt, const char *v)
{
	if (strcmp(v, "on") == 0)
		return true;
	if (strcmp(v, "off") == 0)
		return false;
	gen_usage_error("%s: expected on or off, got '%s'", opt, v);
}

static const char *gen_opt_name(const char *opt, const char *v)
{
	if (v[0] == '\0' || strlen(v) > 255 || strpbrk(v, " <>\r\n\t"))
		gen_usage_error("%s: '%s' is empty, longer than 255 or has spaces or <>", opt, v);
	return v;
}

/* "host:port", "[v6]:port": resolved now (numeric port). */
static void gen_opt_server(struct gen_config *cfg, const char *v)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	const char *colon = strrchr(v, ':'), *host = v;
	size_t host_len;
	int rc;

	if (!colon || colon == v || colon[1] == '\0')
		gen_usage_error("--server: expected HOST:PORT, got '%s'", v);
	host_len = (size_t)(colon - v);
	if (v[0] == '[' && colon[-1] == ']') {
		host++;
		host_len -= 2;
	}
	if (host_len == 0 || host_len >= sizeof(cfg->server_host))
		gen_usage_error("--server: bad host in '%s'", v);
	memcpy(cfg->server_host, host, host_len);
	cfg->server_host[host_len] = '\0';
	gen_opt_u64("--server port", colon + 1, 1, 65535);
	rc = getaddrinfo(cfg->server_host, colon + 1, &hints, &res);
	if (rc != 0)
		gen_usage_error("--server: %s: %s", cfg->server_host, gai_strerror(rc));
	memcpy(&cfg->addr, res->ai_addr, res->ai_addrlen);
	cfg->addr_len = res->ai_addrlen;
	freeaddrinfo(res);
}

enum {
	OPT_SERVER = 256,
	OPT_THREADS,
	OPT_SESSIONS,
	OPT_MESSAGES,
	OPT_SIZE,
	OPT_EML,
	OPT_RCPTS,
	OPT_DOMAINS,
	OPT_SUFFIX,
	OPT_FROM,
	OPT_HELO,
	OPT_PIPELINING,
	OPT_STARTTLS,
	OPT_RATE,
	OPT_PER_CONN,
	OPT_TIMEOUT,
	OPT_REPLY_TIMEOUT,
	OPT_RUN_ID,
	OPT_JSON,
	OPT_QUIET,
	OPT_HELP,
};

static const struct option gen_options[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"sessions", required_argument, NULL, OPT_SESSIONS},
    {"messages", required_argument, NULL, OPT_MESSAGES},
    {"size", required_argument, NULL, OPT_SIZE},
    {"eml", required_argument, NULL, OPT_EML},
    {"rcpts", required_argument, NULL, OPT_RCPTS},
    {"domains", required_argument, NULL, OPT_DOMAINS},
    {"domain-suffix", required_argument, NULL, OPT_SUFFIX},
    {"from", required_argument, NULL, OPT_FROM},
    {"helo", required_argument, NULL, OPT_HELO},
    {"pipelining", required_argument, NULL, OPT_PIPELINING},
    {"starttls", required_argument, NULL, OPT_STARTTLS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"per-connection", required_argument, NULL, OPT_PER_CONN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"reply-timeout", required_argument, NULL, OPT_REPLY_TIMEOUT},
    {"run-id", required_argument, NULL, OPT_RUN_ID},
    {"json", no_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void gen_opt_one(struct gen_config *cfg, int c, const char *arg)
{
	switch (c) {
	case OPT_SERVER:
		gen_opt_server(cfg, arg);
		break;
	case OPT_THREADS:
		cfg->n_threads = (unsigned)gen_opt_u64("--threads", arg, 1, 256);
		break;
	case OPT_SESSIONS:
		cfg->n_sessions = (unsigned)gen_opt_u64("--sessions", arg, 1, 100000);
		break;
	case OPT_MESSAGES:
		cfg->n_messages = gen_opt_u64("--messages", arg, 1, UINT64_MAX / 1024);
		break;
	case OPT_SIZE:
		cfg->size = gen_opt_u64("--size", arg, 1, 64u << 20);
		break;
	case OPT_EML:
		cfg->eml_path = arg;
		break;
	case OPT_RCPTS:
		cfg->n_rcpts = (unsigned)gen_opt_u64("--rcpts", arg, 1, 1000);
		break;
	case OPT_DOMAINS:
		cfg->n_domains = (unsigned)gen_opt_u64("--domains", arg, 1, 1000000);
		break;
	case OPT_SUFFIX:
		cfg->domain_suffix = gen_opt_name("--domain-suffix", arg);
		break;
	case OPT_FROM:
		cfg->from = gen_opt_name("--from", arg);
		break;
	case OPT_HELO:
		cfg->helo = gen_opt_name("--helo", arg);
		break;
	case OPT_PIPELINING:
		cfg->pipelining = gen_opt_bool("--pipelining", arg);
		break;
	case OPT_STARTTLS:
		cfg->starttls = gen_opt_bool("--starttls", arg);
		break;
	case OPT_RATE:
		cfg->rate = gen_opt_double("--rate", arg, 0, 1e9);
		break;
	case OPT_PER_CONN:
		cfg->per_connection = gen_opt_u64("--per-connection", arg, 0, UINT64_MAX);
		break;
	case OPT_TIMEOUT:
		cfg->timeout_s = gen_opt_double("--timeout", arg, 0.001, 1e6);
		break;
	case OPT_REPLY_TIMEOUT:
		cfg->reply_timeout_s = gen_opt_double("--reply-timeout", arg, 0.01, 1e6);
		break;
	case OPT_RUN_ID:
		if (arg[0] == '\0' || strlen(arg) >= 48 ||
		    strspn(arg, "0123456789abcdefABCDEF"
				"ghijklmnopqrstuvwxyz"
				"GHIJKLMNOPQRSTUVWXYZ-_") != strlen(arg))
			gen_usage_error("--run-id: 1 to 47 letters, digits, '-' or '_', got '%s'",
					arg);
		snprintf(cfg->run_id, sizeof(cfg->run_id), "%s", arg);
		break;
	case OPT_JSON:
		cfg->json = true;
		break;
	case OPT_QUIET:
		cfg->quiet = true;
		break;
	case OPT_HELP:
		fputs(gen_usage, stdout);
		exit(GEN_EXIT_OK);
	default:
		gen_usage_error("unknown option");
	}
}

static void gen_parse_options(struct gen_config *cfg, int argc, char **argv)
{
	bool have_server = false, have_size = false;
	int c;

	*cfg = (struct gen_config){
	    .n_threads = 1,
	    .n_sessions = 10,
	    .n_messages = 1000,
	    .size = 2048,
	    .n_rcpts = 1,
	    .n_domains = 1,
	    .domain_suffix = "example.test",
	    .from = "petrel-gen@example.test",
	    .helo = "petrel-gen.example.test",
	    .pipelining = true,
	    .timeout_s = 300,
	    .reply_timeout_s = 30,
	};
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", gen_options, NULL)) != -1) {
		if (c == '?')
			gen_usage_error("unknown option or missing value: '%s'", argv[optind - 1]);
		have_server |= c == OPT_SERVER;
		have_size |= c == OPT_SIZE;
		gen_opt_one(cfg, c, optarg);
	}
	if (optind < argc)
		gen_usage_error("unexpected argument '%s'", argv[optind]);
	if (!have_server)
		gen_usage_error("--server HOST:PORT is required");
	if (have_size && cfg->eml_path)
		gen_usage_error("--size and --eml exclude each other");
	if (cfg->run_id[0] == '\0')
		snprintf(cfg->run_id, sizeof(cfg->run_id), "%x%llx", (unsigned)getpid(),
			 (unsigned long long)time(NULL));
	if (cfg->n_threads > cfg->n_sessions)
		cfg->n_threads = cfg->n_sessions; /* a thread without sessions has nothing to do */
}

/* ---- Summary ---- */

struct gen_total {
	struct gen_stats s;
	double elapsed_s;
	uint64_t first_ns, last_ns; /* CLOCK_MONOTONIC: first connect, last reply */
	bool timed_out;
	bool failed; /* a worker could not run */
};

static void gen_sum(struct gen_worker *w, unsigned n, struct gen_total *t)
{
	uint64_t first = 0, last = 0;

	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < n; i++) {
		const struct gen_stats *s = &w[i].stats;
		uint64_t f = GEN_LOAD(s->first_connect_ns), l = GEN_LOAD(s->last_reply_ns);

		t->s.attempted += GEN_LOAD(s->attempted);
		t->s.accepted += GEN_LOAD(s->accepted);
		t->s.tempfailed += GEN_LOAD(s->tempfailed);
		t->s.permfailed += GEN_LOAD(s->permfailed);
		t->s.conn_failed += GEN_LOAD(s->conn_failed);
		t->s.rcpts_accepted += GEN_LOAD(s->rcpts_accepted);
		t->s.rcpts_refused += GEN_LOAD(s->rcpts_refused);
		t->s.conn_errors += GEN_LOAD(s->conn_errors);
		t->s.reply_timeouts += GEN_LOAD(s->reply_timeouts);
		t->s.bytes += GEN_LOAD(s->bytes);
		gen_hist_merge(&t->s.hist, &s->hist);
		if (f && (!first || f < first))
			first = f;
		if (l > last)
			last = l;
	}
	t->elapsed_s = first && last > first ? (double)(last - first) / 1e9 : 0;
	t->first_ns = first;
	t->last_ns = last;
}

static double gen_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void gen_report_json(const struct gen_config *cfg, const struct gen_total *t)
{
	const struct gen_hist *h = &t->s.hist;
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	char num[64];
	double el = t->elapsed_s;
	const double ps[] = {50, 90, 99, 99.9};
	const char *pk[] = {"p50", "p90", "p99", "p99_9"};

#define GEN_JSON_NUM(key, fmt, v)                                                                  \
	do {                                                                                       \
		int n_ = snprintf(num, sizeof(num), fmt, v);                                       \
		pt_json_key_raw(&j, key, num, (size_t)n_);                                         \
	} while (0)

	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key_int(&j, "messages", (int64_t)cfg->n_messages);
	pt_json_key_int(&j, "attempted", (int64_t)t->s.attempted);
	pt_json_key_int(&j, "accepted", (int64_t)t->s.accepted);
	pt_json_key_int(&j, "tempfailed", (int64_t)t->s.tempfailed);
	pt_json_key_int(&j, "permfailed", (int64_t)t->s.permfailed);
	pt_json_key_int(&j, "failed",
			(int64_t)(t->s.tempfailed + t->s.permfailed + t->s.conn_failed));
	pt_json_key_int(&j, "conn_failed", (int64_t)t->s.conn_failed);
	pt_json_key_int(&j, "rcpts_accepted", (int64_t)t->s.rcpts_accepted);
	pt_json_key_int(&j, "rcpts_refused", (int64_t)t->s.rcpts_refused);
	pt_json_key_int(&j, "conn_errors", (int64_t)t->s.conn_errors);
	pt_json_key_int(&j, "reply_timeouts", (int64_t)t->s.reply_timeouts);
	pt_json_key_int(&j, "bytes", (int64_t)t->s.bytes);
	GEN_JSON_NUM("elapsed_s", "%.6f", el);
	GEN_JSON_NUM("first_connect_mono_s", "%.6f", (double)t->first_ns / 1e9);
	GEN_JSON_NUM("last_reply_mono_s", "%.6f", (double)t->last_ns / 1e9);
	GEN_JSON_NUM("msgs_per_s", "%.1f", el > 0 ? (double)t->s.accepted / el : 0.0);
	GEN_JSON_NUM("bytes_per_s", "%.0f", el > 0 ? (double)t->s.bytes / el : 0.0);
	pt_json_key(&j, "latency_ms");
	pt_json_obj_begin(&j);
	for (size_t i = 0; i < PT_ARRAY_LEN(ps); i++)
		GEN_JSON_NUM(pk[i], "%.3f", gen_ms(gen_hist_percentile(h, ps[i])));
	GEN_JSON_NUM("max", "%.3f", gen_ms(h->max_ns));
	GEN_JSON_NUM("mean", "%.3f", h->count ? gen_ms(h->sum_ns / h->count) : 0.0);
	pt_json_obj_end(&j);
	pt_json_key_int(&j, "sessions", cfg->n_sessions);
	pt_json_key_int(&j, "threads", cfg->n_threads);
	pt_json_key_bool(&j, "timed_out", t->timed_out);
	pt_json_key_str(&j, "run_id", cfg->run_id);
	pt_json_obj_end(&j);
#undef GEN_JSON_NUM
	printf("%s\n", pt_buf_cstr(&b));
	pt_buf_free(&b);
}

static void gen_report_human(const struct gen_config *cfg, const struct gen_total *t)
{
	const struct gen_hist *h = &t->s.hist;
	double el = t->elapsed_s;

	printf("petrel-gen: %llu messages, %u sessions, %u thread%s%s\n",
	       (unsigned long long)cfg->n_messages, cfg->n_sessions, cfg->n_threads,
	       cfg->n_threads == 1 ? "" : "s", t->timed_out ? " -- TIMED OUT" : "");
	printf("  messages    attempted %llu  accepted %llu  tempfailed %llu  permfailed %llu"
	       "  conn-failed %llu\n",
	       (unsigned long long)t->s.attempted, (unsigned long long)t->s.accepted,
	       (unsigned long long)t->s.tempfailed, (unsigned long long)t->s.permfailed,
	       (unsigned long long)t->s.conn_failed);
	printf("  recipients  accepted %llu  refused %llu\n",
	       (unsigned long long)t->s.rcpts_accepted, (unsigned long long)t->s.rcpts_refused);
	printf("  connections errors %llu  (no reply in time %llu)\n",
	       (unsigned long long)t->s.conn_errors, (unsigned long long)t->s.reply_timeouts);
	printf("  throughput  %.3f s  %.1f msgs/s  %.2f MB/s (%llu bytes)\n", el,
	       el > 0 ? (double)t->s.accepted / el : 0.0,
	       el > 0 ? (double)t->s.bytes / el / 1e6 : 0.0, (unsigned long long)t->s.bytes);
	printf("  latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
	       gen_ms(gen_hist_percentile(h, 50)), gen_ms(gen_hist_percentile(h, 90)),
	       gen_ms(gen_hist_percentile(h, 99)), gen_ms(gen_hist_percentile(h, 99.9)),
	       gen_ms(h->max_ns), h->count ? gen_ms(h->sum_ns / h->count) : 0.0);
}

/* ---- Threads ---- */

static void gen_progress(struct gen_worker *w, unsigned n, uint64_t *last_done, uint64_t *last_ns)
{
	struct gen_total *t = calloc(1, sizeof(*t));
	uint64_t done, now = gen_now_ns();

	if (!t)
		return;
	gen_sum(w, n, t);
	done = t->s.accepted + t->s.tempfailed + t->s.permfailed + t->s.conn_failed;
	fprintf(stderr, "petrel-gen: %llu sent, %.0f msgs/s, p99 %.3f ms\n",
		(unsigned long long)done,
		(double)(done - *last_done) * 1e9 / (double)(now - *last_ns + 1),
		gen_ms(gen_hist_percentile(&t->s.hist, 99)));
	*last_done = done;
	*last_ns = now;
	free(t);
}

/* Wait for the workers, printing progress every second on a terminal. */
static void gen_wait(struct gen_run *run, struct gen_worker *w, unsigned n)
{
	bool tty = !run->cfg->quiet && isatty(STDERR_FILENO);
	uint64_t last_done = 0, last_ns = gen_now_ns();
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	pthread_mutex_lock(&run->lock);
	while (run->n_done < n) {
		until.tv_sec++;
		while (run->n_done < n &&
		       pthread_cond_timedwait(&run->cond, &run->lock, &until) != ETIMEDOUT)
			;
		if (run->n_done < n && tty) {
			pthread_mutex_unlock(&run->lock);
			gen_progress(w, n, &last_done, &last_ns);
			pthread_mutex_lock(&run->lock);
		}
	}
	pthread_mutex_unlock(&run->lock);
}

static int gen_run_all(struct gen_run *run, struct gen_worker *w, struct gen_total *t)
{
	const struct gen_config *cfg = run->cfg;
	unsigned n = cfg->n_threads, started = 0;
	int rc = PT_OK;

	for (unsigned i = 0; i < n; i++) {
		w[i].run = run;
		w[i].id = i;
		w[i].n_sessions = cfg->n_sessions / n + (i < cfg->n_sessions % n ? 1 : 0);
		w[i].sessions = calloc(w[i].n_sessions, sizeof(*w[i].sessions));
		if (!w[i].sessions)
			return PT_NOMEM;
		for (unsigned k = 0; k < w[i].n_sessions; k++) {
			struct gen_session *s = &w[i].sessions[k];

			s->worker = &w[i];
			s->id = k * n + i;
			s->fd = -1;
			s->connect_op = (struct gen_op){GEN_OP_CONNECT, s};
			s->send_op = (struct gen_op){GEN_OP_SEND, s};
			s->recv_op = (struct gen_op){GEN_OP_RECV, s};
			s->pace_op = (struct gen_op){GEN_OP_PACE, s};
		}
	}
	run->start_ns = gen_now_ns();
	run->deadline_ns = run->start_ns + (uint64_t)(cfg->timeout_s * 1e9);
	for (; started < n; started++) {
		if (pthread_create(&w[started].thread, NULL, gen_worker_main, &w[started]) != 0) {
			fprintf(stderr, "petrel-gen: cannot start thread %u\n", started);
			rc = PT_ERROR;
			break;
		}
	}
	if (started == n)
		gen_wait(run, w, n);
	for (unsigned i = 0; i < started; i++)
		pthread_join(w[i].thread, NULL);
	gen_sum(w, n, t);
	for (unsigned i = 0; i < started; i++) {
		if (w[i].failed)
			rc = PT_ERROR;
		t->timed_out |= w[i].stop && !w[i].failed;
	}
	return rc;
}

int main(int argc, char **argv)
{
	static struct gen_config cfg;
	static struct gen_msg msg;
	struct gen_run run = {.cfg = &cfg, .msg = &msg};
	struct gen_worker *w = NULL;
	struct gen_total *t = NULL;
	char err[512];
	int rc, status = GEN_EXIT_FAIL;
	uint64_t finished;

	gen_parse_options(&cfg, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	if (gen_msg_init(&msg, &cfg, err, sizeof(err)) != PT_OK)
		gen_usage_error("%s", err);
	if (cfg.starttls && tls_global_init() != PT_OK) {
		fprintf(stderr, "petrel-gen: TLS initialisation failed\n");
		goto out;
	}
	pthread_mutex_init(&run.lock, NULL);
	pthread_cond_init(&run.cond, NULL);
	w = calloc(cfg.n_threads, sizeof(*w));
	t = calloc(1, sizeof(*t));
	if (!w || !t) {
		fprintf(stderr, "petrel-gen: out of memory\n");
		goto out;
	}
	rc = gen_run_all(&run, w, t);
	if (cfg.json)
		gen_report_json(&cfg, t);
	else if (!cfg.quiet)
		gen_report_human(&cfg, t);
	finished = t->s.accepted + t->s.tempfailed + t->s.permfailed;
	status = rc == PT_OK && finished == cfg.n_messages ? GEN_EXIT_OK : GEN_EXIT_FAIL;
out:
	for (unsigned i = 0; w && i < cfg.n_threads; i++)
		free(w[i].sessions);
	free(w);
	free(t);
	gen_msg_free(&msg);
	if (cfg.starttls)
		tls_global_cleanup();
	return status;
}
