/*
 * petreld.c -- the daemon's main: parse the command line, check the policy
 * once, prepare what shards share read-only (a self-signed certificate, the
 * node id), block the signals, start one shard per core and wait.
 *
 * main() itself does no work after start-up: shard 0 receives signals
 * through a signalfd on its ring and relays a drain to the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef PT_MIMALLOC
#include <mimalloc.h>
#endif

#include "core/buf.h"
#include "core/dir.h"
#include "net/tls.h"
#include "policy/policy.h"
#include "shard/shard.h"

#define PETREL_VERSION "0.1.0"

struct options {
	const char *policy;
	unsigned shards;
	bool validate;
	bool pin;
	enum pt_log_level level;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: petreld [--policy FILE] [--shards N] [--validate] [--log-level LEVEL]\n"
		"\n"
		"Petrel mail transfer agent.  One shard (thread, io_uring ring, spool\n"
		"directory) per core; the Lua policy says what to listen on and what to do\n"
		"with mail.\n"
		"\n"
		"  --policy FILE      Lua policy (default: policy/default.lua)\n"
		"  --shards N         number of shards (default: online CPUs)\n"
		"  --no-pin           do not pin shard threads to CPUs\n"
		"  --validate         load the policy, run its init event, report errors\n"
		"                     as file:line and exit (0 when it is fine)\n"
		"  --log-level LEVEL  debug, info (default), warn or error\n"
		"  --version, --help\n"
		"\n"
		"SIGTERM or SIGINT drains: stop accepting, finish open transactions, last\n"
		"sync, exit within 5 seconds.  SIGHUP reloads the policy and the files it\n"
		"reads on every shard, keeping connections and queued mail; a policy that\n"
		"fails to load is reported and the running one kept.  Listeners, spool,\n"
		"logs and resolver settings (the init event) apply at start only.\n");
}

static int parse_level(const char *s, enum pt_log_level *out)
{
	static const char *names[] = { "debug", "info", "warn", "error" };

	for (size_t i = 0; i < PT_ARRAY_LEN(names); i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum pt_log_level)i;
			return PT_OK;
		}
	return PT_ERROR;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "shards", required_argument, NULL, 's' },
		{ "validate", no_argument, NULL, 'V' },
		{ "no-pin", no_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long n;
	char *end;
	int c;

	o->policy = "policy/default.lua";
	o->shards = (unsigned)PT_MAX(1, sysconf(_SC_NPROCESSORS_ONLN));
	o->pin = true;
	o->level = PT_LOG_INFO;
	while ((c = getopt_long(argc, argv, "p:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o->policy = optarg;
			break;
		case 's':
			n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 256) {
				fprintf(stderr, "petreld: --shards wants a number from 1 to 256\n");
				return 2;
			}
			o->shards = (unsigned)n;
			break;
		case 'V':
			o->validate = true;
			break;
		case 'P':
			o->pin = false;
			break;
		case 'l':
			if (parse_level(optarg, &o->level) != PT_OK) {
				fprintf(stderr, "petreld: --log-level wants debug, info, warn or error\n");
				return 2;
			}
			break;
		case 'v':
			printf("petreld %s\n", PETREL_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "petreld: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

/* A node id (UUID v4 text) kept in <spool>/nodeid so log records name this node. */
static void load_nodeid(const char *spool_path, char out[37])
{
	char path[4096];
	uint8_t r[16];
	int fd;

	snprintf(path, sizeof(path), "%s/nodeid", spool_path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, out, 36);

		close(fd);
		if (n == 36) {
			out[36] = '\0';
			return;
		}
	}
	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		memset(r, 0x5a, sizeof(r));
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
		 r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
		 r[14], r[15]);
	pt_mkdir_p(spool_path, 0750);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0 || write(fd, out, 36) != 36)
		pt_warn("cannot store the node id in %s: %m", path);
	if (fd >= 0)
		close(fd);
}

/* Warn when the file-descriptor limit is below what the listeners may need. */
static void check_nofile(const struct policy_config *pc)
{
	struct rlimit rl;
	uint64_t want = 64;

	for (size_t i = 0; i < pc->n_listeners; i++)
		want += pc->listeners[i].max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = PT_MIN(rl.rlim_max, want);
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < want)
			pt_warn("RLIMIT_NOFILE is %llu, below the %llu the listeners may need "
				"(raise LimitNOFILE / ulimit -n)",
				(unsigned long long)rl.rlim_cur, (unsigned long long)want);
	}
}

/* First number in a /proc or /sys file, or -1. */
static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Warn when net.core.somaxconn caps the listen backlog below Petrel's. */
static void check_somaxconn(const struct policy_config *pc)
{
	long v;

	if (pc->n_listeners == 0)
		return;
	v = read_long("/proc/sys/net/core/somaxconn");
	if (v >= 0 && v < SHARD_LISTEN_BACKLOG)
		pt_warn("net.core.somaxconn is %ld, below the listen backlog of %d: bursts of "
			"new connections may be refused (tuning/high-volume.conf raises it)",
			v, SHARD_LISTEN_BACKLOG);
}

/* The transparent huge page mode: the word in [brackets] of the sysfs file. */
static void thp_mode(char *out, size_t len)
{
	char line[128] = "", *a, *b;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	snprintf(out, len, "unknown");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && (a = strchr(line, '[')) && (b = strchr(a, ']')))
		snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
	fclose(f);
}

/*
 * Say at start which allocator backs the heap and whether it uses large
 * pages: mimalloc takes 2 MiB pages when MIMALLOC_LARGE_OS_PAGES=1 (set by
 * tuning/petreld.service), from the reserved pool (vm.nr_hugepages,
 * tuning/high-volume.conf) first, else through transparent huge pages.
 */
static void report_memory(void)
{
	char thp[32];
	long reserved = read_long("/proc/sys/vm/nr_hugepages");

	thp_mode(thp, sizeof(thp));
#ifdef PT_MIMALLOC
	int v = mi_version();
	bool large = mi_option_is_enabled(mi_option_large_os_pages);

	pt_info("memory: mimalloc %d.%d.%d, large OS pages %s; %ld huge pages reserved "
		"(vm.nr_hugepages), transparent huge pages %s",
		v / 100, v / 10 % 10, v % 10,
		large ? "on" : "off (MIMALLOC_LARGE_OS_PAGES=1 turns them on)", reserved, thp);
	if (large && reserved <= 0 && strcmp(thp, "never") == 0)
		pt_warn("large OS pages were asked for, but no huge pages are reserved and "
			"transparent huge pages are off: the heap uses 4 KiB pages "
			"(tuning/high-volume.conf sets vm.nr_hugepages)");
#else
	pt_info("memory: the C library's allocator (a sanitizer build); %ld huge pages "
		"reserved, transparent huge pages %s",
		reserved, thp);
#endif
}

static bool needs_self_signed(const struct policy_config *pc, const char **hostname)
{
	for (size_t i = 0; i < pc->n_listeners; i++)
		if (!pc->listeners[i].tls_certificate) {
			*hostname = pc->listeners[i].hostname;
			return true;
		}
	/* An HTTPS listener without a certificate of its own. */
	for (size_t i = 0; i < pc->n_http_listeners; i++)
		if (pc->http_listeners[i].use_tls && !pc->http_listeners[i].tls_certificate) {
			*hostname = pc->http_listeners[i].hostname;
			return true;
		}
	return false;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct shard_group_config gc = { 0 };
	struct shard_group *g;
	struct policy *p;
	struct pt_buf cert = PT_BUF_INIT, key = PT_BUF_INIT;
	const char *hostname;
	char err[1024], nodeid[37];
	sigset_t set;
	int rc;

	pt_log_set_thread_name("main");
	if ((rc = parse_args(argc, argv, &o)) >= 0)
		return rc;
	pt_log_set_level(o.level);
	policy_set_template_check(shard_out_http_template_check);
	if (policy_load(&p, o.policy, 0, err, sizeof(err)) != PT_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (o.validate) {
		const struct policy_config *pc = policy_config(p);

		printf("%s: OK (%zu listener%s", o.policy, pc->n_listeners,
		       pc->n_listeners == 1 ? "" : "s");
		if (pc->n_http_listeners > 0)
			printf(", %zu HTTP listener%s", pc->n_http_listeners,
			       pc->n_http_listeners == 1 ? "" : "s");
		printf(")\n");
		policy_free(p);
		return 0;
	}
	if (tls_global_init() != PT_OK) {
		pt_error("wolfSSL initialisation failed");
		return 1;
	}
	if (needs_self_signed(policy_config(p), &hostname)) {
		if (tls_self_signed_pem(hostname, &cert, &key, err, sizeof(err)) != PT_OK) {
			pt_error("%s", err);
			return 1;
		}
		pt_info("generated a self-signed certificate for %s (set tls_certificate and "
			"tls_private_key in start_esmtp_listener or start_http_listener to use "
			"your own)",
			hostname);
	}
	check_nofile(policy_config(p));
	check_somaxconn(policy_config(p));
	report_memory();
	load_nodeid(policy_config(p)->spool_path, nodeid);
	policy_free(p);

	/* Shards inherit this mask; shard 0 takes the signals from a signalfd.
	 * An ignored signal is discarded even while blocked, and a daemon
	 * started in the background by a non-interactive shell inherits
	 * SIGINT ignored: the dispositions go back to their defaults first. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	gc.policy_path = o.policy;
	gc.n_shards = o.shards;
	gc.pin = o.pin;
	gc.tls_cert_pem = cert.len ? cert.data : NULL;
	gc.tls_cert_len = cert.len;
	gc.tls_key_pem = key.len ? key.data : NULL;
	gc.tls_key_len = key.len;
	gc.nodeid = nodeid;
	g = shard_group_new(&gc);
	if (!g) {
		pt_error("out of memory creating %u shards", o.shards);
		return 1;
	}
	if (shard_group_start(g) != PT_OK) {
		pt_error("start-up failed; see the messages above");
		shard_group_free(g);
		return 1;
	}
	pt_info("petreld %s ready: %u shard%s, policy %s", PETREL_VERSION, o.shards,
		o.shards == 1 ? "" : "s", o.policy);
	rc = shard_group_join(g);
	shard_group_free(g);
	pt_buf_free(&cert);
	pt_buf_free(&key);
	tls_global_cleanup();
	pt_info("exited cleanly");
	return rc ? 1 : 0;
}
