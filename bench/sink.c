/*
 * sink.c -- petrel-sink: an SMTP receiver that accepts and discards, the
 * "limit" column of Petrel's benchmarks and a scriptable peer for tests.
 *
 * This file is main: options, the listening sockets, the ring threads
 * (sink_io.c), the status file and the summary.  The SMTP session is
 * sink_smtp.c.
 *
 * Life of a run:
 *
 *   1. parse the options (a bad one: a message and exit status 2);
 *   2. block SIGTERM and SIGINT in every thread (main takes them with
 *      sigtimedwait), load or make the TLS certificate, open --log;
 *   3. open one SO_REUSEPORT listening socket per thread: the first
 *      decides the port (so --listen 127.0.0.1:0 works), the others bind the
 *      same port; each ring accepts on its own socket;
 *   4. start the threads; they meet main at a barrier after setting up
 *      their ring, and if any failed the run stops with status 1;
 *   5. every 100 ms rewrite --status (a temp file renamed over it, so a
 *      reader never sees half a line) until a signal comes;
 *   6. on SIGTERM/SIGINT wake every ring through its eventfd, join, write
 *      the status file a last time, print the summary, exit 0.
 *
 * Counters are per thread (one writer each, relaxed atomic stores) and
 * summed by main when it writes the status file or the summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "bench/sink.h"
#include "core/json.h"
#include "core/ptime.h"
#include "net/tls.h"

#define SINK_STATUS_PERIOD_MS 100
#define SINK_MAX_THREADS      1024
#define SINK_DEFAULT_LISTEN   "127.0.0.1:2526"
#define SINK_DEFAULT_HOSTNAME "petrel-sink.test"
#define SINK_DEFAULT_MAX_SIZE 104857600ULL

static const char sink_usage[] =
    "usage: petrel-sink [OPTION]...\n"
    "An SMTP receiver that accepts and discards (io_uring, one thread per core).\n"
    "\n"
    "Listening:\n"
    "  --listen HOST:PORT     numeric address to listen on (default " SINK_DEFAULT_LISTEN
    "; IPv6 as [::1]:PORT;\n"
    "                         port 0 picks a free port, printed at start)\n"
    "  --threads N            ring threads, each with its own SO_REUSEPORT socket\n"
    "                         (default: the number of online CPUs)\n"
    "  --pin                  pin thread i to CPU i (default: let the kernel place them)\n"
    "  --hostname NAME        name in the greeting and EHLO (default " SINK_DEFAULT_HOSTNAME ")\n"
    "  --max-size BYTES       advertised SIZE; a larger message is refused after its\n"
    "                         final dot with 552 5.3.4 (default 104857600; 0 = no limit)\n"
    "\n"
    "TLS (STARTTLS is offered only with one of these):\n"
    "  --tls-cert FILE        certificate chain, PEM (needs --tls-key)\n"
    "  --tls-key FILE         private key, PEM (needs --tls-cert)\n"
    "  --tls-self-signed      make a self-signed certificate for --hostname at start\n"
    "\n"
    "Behaviour:\n"
    "  --latency MS           hold every reply to the final \".\" for MS milliseconds\n"
    "                         (a fraction is allowed; the thread does not block)\n"
    "  --tempfail PCT         answer PCT% of RCPTs 451 4.3.0 (0..100, fraction allowed)\n"
    "  --permfail PCT         answer PCT% of RCPTs 550 5.1.1 (tempfail + permfail <= 100)\n"
    "  --tempfail-match GLOB  always 451 4.3.0 for recipients matching GLOB (fnmatch on\n"
    "                         the address inside <>, ignoring case; up to 16 times)\n"
    "  --permfail-match GLOB  always 550 5.1.1 for matching recipients (wins over\n"
    "                         --tempfail-match; up to 16 times)\n"
    "  --at rcpt|data         where outcomes are given (default rcpt).  With data, RCPTs\n"
    "                         are accepted and each transaction gets one outcome as the\n"
    "                         reply to its final \".\": 451 4.3.0 or 550 5.7.1\n"
    "  --seed N               seed of the outcome draws (default 1); thread i draws from\n"
    "                         its own stream derived from N + i, one draw per RCPT (at\n"
    "                         rcpt) or per transaction (at data)\n"
    "\n"
    "Reporting:\n"
    "  --status FILE          rewrite FILE every 100 ms and at exit with one JSON line:\n"
    "                         connections, connections_open, messages, recipients, bytes,\n"
    "                         tempfail, permfail, rejected_at_data, oversize, uptime_s,\n"
    "                         last_message_mono_s (CLOCK_MONOTONIC of the newest message)\n"
    "  --log FILE             one line per accepted message: \"FROM RCPTS BYTES MESSAGE-ID\"\n"
    "                         (the null sender as <>, a missing Message-ID as -)\n"
    "  --json                 print the summary at exit as one JSON object\n"
    "  --help                 this text\n"
    "\n"
    "Messages counts transactions answered 250 after DATA; bytes counts their size\n"
    "after dot-unstuffing.  SIGTERM or SIGINT stops the sink, prints the summary and\n"
    "exits 0.  A bad option exits 2; a failure to start exits 1.\n";

enum sink_option {
	OPT_LISTEN = 256,
	OPT_THREADS,
	OPT_PIN,
	OPT_HOSTNAME,
	OPT_MAX_SIZE,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_SELF_SIGNED,
	OPT_LATENCY,
	OPT_TEMPFAIL,
	OPT_PERMFAIL,
	OPT_TEMPFAIL_MATCH,
	OPT_PERMFAIL_MATCH,
	OPT_AT,
	OPT_SEED,
	OPT_STATUS,
	OPT_LOG,
	OPT_JSON,
	OPT_HELP,
};

static const struct option sink_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"pin", no_argument, NULL, OPT_PIN},
    {"hostname", required_argument, NULL, OPT_HOSTNAME},
    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-self-signed", no_argument, NULL, OPT_TLS_SELF_SIGNED},
    {"latency", required_argument, NULL, OPT_LATENCY},
    {"tempfail", required_argument, NULL, OPT_TEMPFAIL},
    {"permfail", required_argument, NULL, OPT_PERMFAIL},
    {"tempfail-match", required_argument, NULL, OPT_TEMPFAIL_MATCH},
    {"permfail-match", required_argument, NULL, OPT_PERMFAIL_MATCH},
    {"at", required_argument, NULL, OPT_AT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"status", required_argument, NULL, OPT_STATUS},
    {"log", required_argument, NULL, OPT_LOG},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* ---------------------------------------------------------------- options */

/* Print "petrel-sink: <why>" and the hint; the caller exits 2. */
static int sink_bad_option(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "petrel-sink: ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\n(petrel-sink --help lists the options)\n");
	return 2;
}

/* A whole decimal number in [min, max]. */
static bool sink_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* A finite number in [min, max]; with percent, a trailing '%' is allowed ("10%"). */
static bool sink_parse_double(const char *s, double min, double max, bool percent, double *out)
{
	char *end;
	double v;

	if (*s == '\0')
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (percent && *end == '%')
		end++;
	if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int sink_add_match(const char **list, unsigned *n, const char *glob, const char *opt)
{
	if (*n == SINK_MATCH_MAX || glob[0] == '\0')
		return sink_bad_option(*n == SINK_MATCH_MAX ? "%s: at most 16 patterns%s"
							    : "%s: empty pattern%s",
				       opt, "");
	list[(*n)++] = glob;
	return -1;
}

/* One option; -1 to go on, else the exit status. */
static int sink_option(struct sink_config *cfg, int opt, const char *arg)
{
	uint64_t u;
	double d;

	switch (opt) {
	case OPT_LISTEN:
		cfg->listen = arg;
		break;
	case OPT_THREADS:
		if (!sink_parse_u64(arg, 1, SINK_MAX_THREADS, &u))
			return sink_bad_option("--threads '%s': want a whole number from 1 to %s",
					       arg, "1024");
		cfg->n_threads = (unsigned)u;
		break;
	case OPT_PIN:
		cfg->pin = true;
		break;
	case OPT_HOSTNAME:
		if (arg[0] == '\0' || strpbrk(arg, " \r\n"))
			return sink_bad_option("--hostname '%s': want a name without spaces%s", arg,
					       "");
		cfg->smtp.hostname = arg;
		break;
	case OPT_MAX_SIZE:
		if (!sink_parse_u64(arg, 0, UINT64_MAX / 2, &u))
			return sink_bad_option("--max-size '%s': want a number of bytes%s", arg,
					       "");
		cfg->smtp.max_size = u;
		break;
	case OPT_TLS_CERT:
		cfg->tls_cert = arg;
		break;
	case OPT_TLS_KEY:
		cfg->tls_key = arg;
		break;
	case OPT_TLS_SELF_SIGNED:
		cfg->tls_self_signed = true;
		break;
	case OPT_LATENCY:
		if (!sink_parse_double(arg, 0, 3600000, false, &d))
			return sink_bad_option("--latency '%s': want milliseconds from 0 to %s",
					       arg, "3600000");
		cfg->smtp.latency_ns = (uint64_t)llround(d * 1e6);
		break;
	case OPT_TEMPFAIL:
	case OPT_PERMFAIL:
		if (!sink_parse_double(arg, 0, 100, true, &d))
			return sink_bad_option("%s '%s': want a percentage from 0 to 100",
					       opt == OPT_TEMPFAIL ? "--tempfail" : "--permfail",
					       arg);
		*(opt == OPT_TEMPFAIL ? &cfg->smtp.tempfail_pct : &cfg->smtp.permfail_pct) = d;
		break;
	case OPT_TEMPFAIL_MATCH:
		return sink_add_match(cfg->smtp.tempfail_match, &cfg->smtp.n_tempfail_match, arg,
				      "--tempfail-match");
	case OPT_PERMFAIL_MATCH:
		return sink_add_match(cfg->smtp.permfail_match, &cfg->smtp.n_permfail_match, arg,
				      "--permfail-match");
	case OPT_AT:
		if (strcmp(arg, "rcpt") == 0)
			cfg->smtp.at = SINK_AT_RCPT;
		else if (strcmp(arg, "data") == 0)
			cfg->smtp.at = SINK_AT_DATA;
		else
			return sink_bad_option("--at '%s': want rcpt or data%s", arg, "");
		break;
	case OPT_SEED:
		if (!sink_parse_u64(arg, 0, UINT64_MAX, &cfg->seed))
			return sink_bad_option("--seed '%s': want a whole number%s", arg, "");
		break;
	case OPT_STATUS:
		cfg->status_path = arg;
		break;
	case OPT_LOG:
		cfg->log_path = arg;
		cfg->smtp.log = true;
		break;
	case OPT_JSON:
		cfg->json = true;
		break;
	case OPT_HELP:
		fputs(sink_usage, stdout);
		return 0;
	default:
		return sink_bad_option("unknown option or missing argument%s%s", "", "");
	}
	return -1;
}

/* Options that only make sense together. */
static int sink_check_options(struct sink_config *cfg)
{
	if (cfg->smtp.tempfail_pct + cfg->smtp.permfail_pct > 100.0)
		return sink_bad_option("--tempfail plus --permfail is more than 100%s%s", "%", "");
	if (!cfg->tls_cert != !cfg->tls_key)
		return sink_bad_option("--tls-cert and --tls-key go together%s%s", "", "");
	if (cfg->tls_cert && cfg->tls_self_signed)
		return sink_bad_option("--tls-self-signed and --tls-cert exclude each other%s%s",
				       "", "");
	cfg->smtp.tls = cfg->tls_cert || cfg->tls_self_signed;
	return -1;
}

/* Fill cfg from argv; -1 to run, else the exit status (0 after --help, 2 on a bad option). */
static int sink_parse_args(int argc, char **argv, struct sink_config *cfg)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int opt, rc;

	cfg->listen = SINK_DEFAULT_LISTEN;
	cfg->n_threads = (unsigned)PT_MAX(1, PT_MIN(ncpu, SINK_MAX_THREADS));
	cfg->seed = 1;
	cfg->log_fd = -1;
	cfg->smtp.hostname = SINK_DEFAULT_HOSTNAME;
	cfg->smtp.max_size = SINK_DEFAULT_MAX_SIZE;
	cfg->smtp.at = SINK_AT_RCPT;
	opterr = 0; /* our own message, with the hint */
	while ((opt = getopt_long(argc, argv, "", sink_options, NULL)) != -1) {
		if (opt == '?')
			return sink_bad_option("unknown option or missing argument: %s%s",
					       argv[optind - 1], "");
		if ((rc = sink_option(cfg, opt, optarg)) >= 0)
			return rc;
	}
	if (optind < argc)
		return sink_bad_option("unexpected argument '%s'%s", argv[optind], "");
	return sink_check_options(cfg);
}

/* ------------------------------------------------------------------ setup */

/* The certificate and key as PEM text, from files or made now; checked by making a context. */
static int sink_tls_setup(struct sink_config *cfg)
{
	char err[512];
	struct tls_ctx *ctx;

	if (!cfg->smtp.tls)
		return PT_OK;
	if (tls_global_init() != PT_OK) {
		fprintf(stderr, "petrel-sink: wolfSSL initialisation failed\n");
		return PT_ERROR;
	}
	if (cfg->tls_self_signed) {
		if (tls_self_signed_pem(cfg->smtp.hostname, &cfg->cert_pem, &cfg->key_pem, err,
					sizeof(err)) != PT_OK)
			goto fail;
	} else if (bench_read_file(NULL, cfg->tls_cert, SIZE_MAX, &cfg->cert_pem, err,
				   sizeof(err)) != PT_OK ||
		   bench_read_file(NULL, cfg->tls_key, SIZE_MAX, &cfg->key_pem, err, sizeof(err)) !=
			   PT_OK) {
		goto fail;
	}
	ctx = tls_ctx_new_server(cfg->cert_pem.data, cfg->cert_pem.len, cfg->key_pem.data,
				 cfg->key_pem.len, err, sizeof(err));
	if (!ctx)
		goto fail;
	tls_ctx_free(ctx);
	return PT_OK;
fail:
	fprintf(stderr, "petrel-sink: TLS: %s\n", err);
	return PT_ERROR;
}

/* One listening socket per thread on the same port. */
static int sink_listen_all(struct sink_config *cfg, struct sink_thread *threads, unsigned *port)
{
	char err[256];

	*port = 0;
	for (unsigned i = 0; i < cfg->n_threads; i++) {
		threads[i].listen_fd = sink_listen_open(cfg->listen, port, err, sizeof(err));
		if (threads[i].listen_fd < 0) {
			fprintf(stderr, "petrel-sink: %s\n", err);
			return PT_ERROR;
		}
	}
	return PT_OK;
}

/* ------------------------------------------------------------- reporting */

static void sink_sum(const struct sink_thread *threads, unsigned n, struct sink_counters *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < n; i++) {
		const struct sink_counters *c = &threads[i].counters;

		sum->connections += sink_counter_read(&c->connections);
		sum->connections_open += sink_counter_read(&c->connections_open);
		sum->messages += sink_counter_read(&c->messages);
		sum->recipients += sink_counter_read(&c->recipients);
		sum->bytes += sink_counter_read(&c->bytes);
		sum->tempfail += sink_counter_read(&c->tempfail);
		sum->permfail += sink_counter_read(&c->permfail);
		sum->rejected_at_data += sink_counter_read(&c->rejected_at_data);
		sum->oversize += sink_counter_read(&c->oversize);
		sum->last_message_ns = PT_MAX(sum->last_message_ns,
					      sink_counter_read(&c->last_message_ns));
	}
}

/* The counters as one JSON object (no newline) appended to b. */
static void sink_json(struct pt_buf *b, const struct sink_counters *c, double uptime_s)
{
	struct pt_json j;
	char up[32];
	int n = snprintf(up, sizeof(up), "%.3f", uptime_s);

	pt_json_init(&j, b);
	pt_json_obj_begin(&j);
	pt_json_key_int(&j, "connections", (int64_t)c->connections);
	pt_json_key_int(&j, "connections_open", (int64_t)c->connections_open);
	pt_json_key_int(&j, "messages", (int64_t)c->messages);
	pt_json_key_int(&j, "recipients", (int64_t)c->recipients);
	pt_json_key_int(&j, "bytes", (int64_t)c->bytes);
	pt_json_key_int(&j, "tempfail", (int64_t)c->tempfail);
	pt_json_key_int(&j, "permfail", (int64_t)c->permfail);
	pt_json_key_int(&j, "rejected_at_data", (int64_t)c->rejected_at_data);
	pt_json_key_int(&j, "oversize", (int64_t)c->oversize);
	pt_json_key_raw(&j, "uptime_s", up, (size_t)n);
	n = snprintf(up, sizeof(up), "%.6f", (double)c->last_message_ns / 1e9);
	pt_json_key_raw(&j, "last_message_mono_s", up, (size_t)n);
	pt_json_obj_end(&j);
}

/* Write the status file: a temp file beside it, renamed over it (atomic for readers). */
static void sink_status_write(const struct sink_config *cfg, const struct sink_counters *c,
			      double uptime_s)
{
	struct pt_buf b = PT_BUF_INIT, tmp = PT_BUF_INIT;
	FILE *f;

	sink_json(&b, c, uptime_s);
	pt_buf_append(&b, "\n", 1);
	pt_buf_printf(&tmp, "%s.tmp", cfg->status_path);
	f = fopen(pt_buf_cstr(&tmp), "w");
	if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0 ||
	    rename(pt_buf_cstr(&tmp), cfg->status_path) != 0) {
		static bool warned;

		if (!warned)
			fprintf(stderr, "petrel-sink: --status %s: %s\n", cfg->status_path,
				strerror(errno));
		warned = true;
		if (f)
			unlink(pt_buf_cstr(&tmp));
	}
	pt_buf_free(&b);
	pt_buf_free(&tmp);
}

static double sink_rate(uint64_t n, double seconds)
{
	return seconds > 0 ? (double)n / seconds : 0;
}

static void sink_summary(const struct sink_config *cfg, const struct sink_counters *c,
			 double uptime_s)
{
	struct pt_buf b = PT_BUF_INIT;

	if (cfg->json) {
		sink_json(&b, c, uptime_s);
		printf("%s\n", pt_buf_cstr(&b));
		pt_buf_free(&b);
		fflush(stdout);
		return;
	}
	printf("petrel-sink: %.3f s, %u thread%s\n", uptime_s, cfg->n_threads,
	       cfg->n_threads == 1 ? "" : "s");
	printf("connections       %llu (%llu open)\n", (unsigned long long)c->connections,
	       (unsigned long long)c->connections_open);
	printf("messages          %llu (%.1f/s)\n", (unsigned long long)c->messages,
	       sink_rate(c->messages, uptime_s));
	printf("recipients        %llu\n", (unsigned long long)c->recipients);
	printf("bytes             %llu (%.1f MB/s)\n", (unsigned long long)c->bytes,
	       sink_rate(c->bytes, uptime_s) / 1e6);
	printf("tempfail          %llu\n", (unsigned long long)c->tempfail);
	printf("permfail          %llu\n", (unsigned long long)c->permfail);
	printf("rejected_at_data  %llu\n", (unsigned long long)c->rejected_at_data);
	printf("oversize          %llu\n", (unsigned long long)c->oversize);
	fflush(stdout);
}

/* ------------------------------------------------------------------- run */

/* Start the threads; true when every one set up its ring. */
static bool sink_start(struct sink_config *cfg, struct sink_thread *threads,
		       pthread_barrier_t *barrier, unsigned *n_started)
{
	bool ok = true;

	*n_started = 0;
	pthread_barrier_init(barrier, NULL, cfg->n_threads + 1);
	for (unsigned i = 0; i < cfg->n_threads; i++) {
		struct sink_thread *t = &threads[i];

		t->index = i;
		t->cfg = cfg;
		t->started = barrier;
		t->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (t->wake_fd < 0 || pthread_create(&t->tid, NULL, sink_io_thread, t) != 0) {
			/* The barrier counts on every thread: without this one we cannot go on. */
			fprintf(stderr, "petrel-sink: cannot start thread %u: %s\n", i,
				strerror(errno));
			exit(1);
		}
		(*n_started)++;
	}
	pthread_barrier_wait(barrier);
	for (unsigned i = 0; i < cfg->n_threads; i++)
		ok &= threads[i].setup_status == PT_OK;
	return ok;
}

static void sink_stop(struct sink_thread *threads, unsigned n)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < n; i++)
		if (write(threads[i].wake_fd, &one, sizeof(one)) != sizeof(one))
			fprintf(stderr, "petrel-sink: waking thread %u: %s\n", i, strerror(errno));
	for (unsigned i = 0; i < n; i++) {
		pthread_join(threads[i].tid, NULL);
		close(threads[i].wake_fd);
	}
}

/* Wait for SIGTERM/SIGINT, rewriting the status file every period. */
static void sink_wait(const struct sink_config *cfg, const struct sink_thread *threads,
		      const sigset_t *signals, uint64_t start_ns)
{
	struct timespec period = {0, SINK_STATUS_PERIOD_MS * 1000000L};
	struct sink_counters sum;

	for (;;) {
		int sig = sigtimedwait(signals, NULL, &period);

		if (sig == SIGTERM || sig == SIGINT)
			return;
		if (cfg->status_path) {
			sink_sum(threads, cfg->n_threads, &sum);
			sink_status_write(cfg, &sum, (double)(pt_monotonic_ns() - start_ns) / 1e9);
		}
	}
}

int main(int argc, char **argv)
{
	struct sink_config cfg = {0};
	struct sink_thread *threads = NULL;
	struct sink_counters sum;
	pthread_barrier_t barrier;
	unsigned port, n_started = 0;
	sigset_t signals;
	uint64_t start_ns;
	double uptime;
	int rc, status = 1;

	if ((rc = sink_parse_args(argc, argv, &cfg)) >= 0)
		return rc;
	/* Before any thread exists, so that every thread inherits the mask. */
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (sink_tls_setup(&cfg) != PT_OK)
		goto out;
	if (cfg.log_path) {
		cfg.log_fd =
		    open(cfg.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (cfg.log_fd < 0) {
			fprintf(stderr, "petrel-sink: --log %s: %s\n", cfg.log_path,
				strerror(errno));
			goto out;
		}
	}
	threads = aligned_alloc(64, sizeof(*threads) * cfg.n_threads);
	if (!threads)
		goto out;
	memset(threads, 0, sizeof(*threads) * cfg.n_threads);
	for (unsigned i = 0; i < cfg.n_threads; i++)
		threads[i].listen_fd = -1;
	if (sink_listen_all(&cfg, threads, &port) != PT_OK)
		goto out;
	start_ns = pt_monotonic_ns();
	if (!sink_start(&cfg, threads, &barrier, &n_started)) {
		fprintf(stderr, "petrel-sink: a ring thread failed to start\n");
		sink_stop(threads, n_started);
		goto out;
	}
	fprintf(stderr, "petrel-sink: listening on %s, port %u (%u thread%s%s%s)\n", cfg.listen,
		port, cfg.n_threads, cfg.n_threads == 1 ? "" : "s",
		cfg.smtp.tls ? ", STARTTLS" : "", cfg.pin ? ", pinned" : "");
	sink_wait(&cfg, threads, &signals, start_ns);
	sink_stop(threads, n_started);
	uptime = (double)(pt_monotonic_ns() - start_ns) / 1e9;
	sink_sum(threads, cfg.n_threads, &sum);
	if (cfg.status_path)
		sink_status_write(&cfg, &sum, uptime);
	sink_summary(&cfg, &sum, uptime);
	status = 0;
out:
	if (threads && n_started == 0)
		for (unsigned i = 0; i < cfg.n_threads; i++)
			if (threads[i].listen_fd >= 0)
				close(threads[i].listen_fd);
	if (n_started)
		pthread_barrier_destroy(&barrier);
	free(threads);
	if (cfg.log_fd >= 0)
		close(cfg.log_fd);
	pt_buf_free(&cfg.cert_pem);
	pt_buf_free(&cfg.key_pem);
	if (cfg.smtp.tls)
		tls_global_cleanup();
	return status;
}
