/*
 * net_dns_test.c -- the resolver against a real DNS server.
 *
 * Each test starts its own dnsmasq on a free loopback port (tests run in
 * parallel), serving the zone below from its command line, and drives the
 * resolver the way a shard does: poll() on the fds the watch callback
 * reported, dns_process_fd / dns_process_timeouts.  now_ms is made up by
 * the tests, so TTL expiry is checked to the millisecond without sleeping.
 * Every wait is bounded (DRIVE_LIMIT_MS); dnsmasq is killed by its pid in
 * the suite's .fini (and through a guardian process if the test process
 * dies first).
 *
 * The zone (dnsmasq --local=/test/: any other name under .test is
 * NXDOMAIN, without an SOA; a name with some record but not the type asked
 * is "no data"):
 *
 *   a.test          MX 10 mx1.a.test, MX 20 mx2.a.test
 *   mx1.a.test      A 127.0.0.2                 (no AAAA)
 *   mx2.a.test      A 127.0.0.3, AAAA ::3
 *   b.test          MX 5 mx1.a.test             (shares a host with a.test)
 *   tie.test        MX 10 zb.tie.test, MX 10 ab.tie.test, MX 5 m.tie.test
 *   partial.test    MX 5 gone.partial.test (no such name), MX 10 mx1.a.test
 *   noaddr.test     MX 10 nohost.noaddr.test (no such name)
 *   aonly.test      A 127.0.0.5, no MX          (implicit MX)
 *   v6only.test     AAAA ::5
 *   nullmx.test     MX 0 "."                    (RFC 7505)
 *   ttl.test        MX 10 mx.ttl.test; mx.ttl.test A 127.0.0.20 with TTL 3
 *   zero.test       A 127.0.0.21 with TTL 0
 *   h1/h2/h3.test   A 127.0.1.1 / .2 / .3
 *   big.test        24 MX with long names (too big for UDP: TCP)
 *
 * Every other TTL is 600 s (--local-ttl).  The resolver's negative_ttl is
 * 600 s too unless a test says otherwise, so an AAAA "no data" does not
 * shorten an answer's life below its records' TTLs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "net/dns.h"
#include "tests/unit/test_util.h"

#define DNSMASQ	       "/usr/sbin/dnsmasq"
#define DRIVE_LIMIT_MS 3000
#define T0	       1000000 /* the tests' made-up "now" */
#define BIG_N	       24

/* ---- dnsmasq -------------------------------------------------------------- */

struct server {
	pid_t pid;
	int port;
};

static char tmpdir[64];
static struct server zone_server, soa_server;

static const char *const zone_args[] = {
    "--local=/test/",
    "--local-ttl=600",
    "--mx-host=a.test,mx1.a.test,10",
    "--mx-host=a.test,mx2.a.test,20",
    "--host-record=mx1.a.test,127.0.0.2",
    "--host-record=mx2.a.test,127.0.0.3,::3",
    "--mx-host=b.test,mx1.a.test,5",
    "--mx-host=tie.test,zb.tie.test,10",
    "--mx-host=tie.test,ab.tie.test,10",
    "--mx-host=tie.test,m.tie.test,5",
    "--host-record=zb.tie.test,127.0.0.11",
    "--host-record=ab.tie.test,127.0.0.12",
    "--host-record=m.tie.test,127.0.0.13",
    "--mx-host=partial.test,gone.partial.test,5",
    "--mx-host=partial.test,mx1.a.test,10",
    "--mx-host=noaddr.test,nohost.noaddr.test,10",
    "--host-record=aonly.test,127.0.0.5",
    "--host-record=v6only.test,::5",
    "--dns-rr=nullmx.test,15,000000", /* preference 0, exchange: the root */
    "--mx-host=ttl.test,mx.ttl.test,10",
    "--host-record=mx.ttl.test,127.0.0.20,3",
    "--host-record=zero.test,127.0.0.21,0",
    "--host-record=h1.test,127.0.1.1",
    "--host-record=h2.test,127.0.1.2",
    "--host-record=h3.test,127.0.1.3",
    NULL,
};

/* soa.test served authoritatively: negative answers carry the zone's SOA,
 * whose TTL and MINIMUM are both --auth-ttl (9 s). */
static const char *const soa_args[] = {
    "--auth-server=ns.soa.test,127.0.0.1",
    "--auth-zone=soa.test",
    "--auth-soa=1,hostmaster.soa.test,1200,120,1209600",
    "--auth-ttl=9",
    "--host-record=h.soa.test,127.0.0.9",
    NULL,
};

/* big.test's i-th MX host: 66 octets, so 24 of them fill more than 1232. */
static const char *big_name(int i, char *buf, size_t len)
{
	snprintf(buf, len, "mx-%02d-padding-to-make-the-answer-larger-than-one-packet.big.test", i);
	return buf;
}

/* A port free on 127.0.0.1 for both UDP and TCP (at the time of asking). */
static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert(u >= 0 && t >= 0);
	cr_assert_eq(bind(u, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(u, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	if (bind(t, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		port = -1;
	close(u);
	close(t);
	return port;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Does something answer DNS on 127.0.0.1:port within wait_ms? */
static bool dns_answers(int port, int wait_ms)
{
	/* id 0x1234, RD, one question: "probe.test" A IN */
	static const unsigned char query[] = {0x12, 0x34, 1,   0,   0,	 1,   0,   0,	0, 0,
					      0,    0,	  5,   'p', 'r', 'o', 'b', 'e', 4, 't',
					      'e',  's',  't', 0,   0,	 1,   0,   1};
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	unsigned char buf[512];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	bool ok = false;

	cr_assert(fd >= 0);
	if (sendto(fd, query, sizeof(query), 0, (struct sockaddr *)&sin, sizeof(sin)) > 0 &&
	    poll(&p, 1, wait_ms) == 1)
		ok = recv(fd, buf, sizeof(buf), 0) >= 12 && buf[0] == 0x12 && buf[1] == 0x34;
	close(fd);
	return ok;
}

static void dnsmasq_exec(int port, const char *name, const char *const *zone,
			 const char *const *extra)
{
	char port_arg[32], pid_arg[160], log_arg[160], user_arg[80];
	const char *argv[128];
	struct passwd *pw = getpwuid(geteuid());
	size_t n = 0;

	snprintf(port_arg, sizeof(port_arg), "--port=%d", port);
	snprintf(pid_arg, sizeof(pid_arg), "--pid-file=%s/%s.pid", tmpdir, name);
	snprintf(log_arg, sizeof(log_arg), "--log-facility=%s/%s.log", tmpdir, name);
	/* Stay this user (not dnsmasq's default "nobody"), who owns tmpdir. */
	snprintf(user_arg, sizeof(user_arg), "--user=%s", pw ? pw->pw_name : "root");
	const char *fixed[] = {DNSMASQ,
			       "-k",
			       "--conf-file=/dev/null",
			       "--no-resolv",
			       "--no-hosts",
			       "--listen-address=127.0.0.1",
			       "--bind-interfaces",
			       port_arg,
			       pid_arg,
			       log_arg,
			       user_arg};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		argv[n++] = fixed[i];
	for (size_t i = 0; zone[i]; i++)
		argv[n++] = zone[i];
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	execv(DNSMASQ, (char *const *)argv);
	_exit(127);
}

/*
 * The child the test forks is a guardian, not dnsmasq itself: dnsmasq
 * changes its credentials at start, which clears a parent-death signal, so
 * the guardian holds it instead (SIGTERM when the test process dies, even
 * by a crash) and passes SIGTERM on to dnsmasq.  server_stop signals the
 * guardian the same way.
 */
static volatile sig_atomic_t dnsmasq_pid;

static void guardian_on_term(int sig)
{
	(void)sig;
	if (dnsmasq_pid > 0)
		kill(dnsmasq_pid, SIGTERM);
}

static void guardian_run(pid_t test_pid, int port, const char *name, const char *const *zone,
			 const char *const *extra)
{
	struct sigaction sa = {.sa_handler = guardian_on_term};
	sigset_t term, old;
	pid_t pid;

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	sigaction(SIGTERM, &sa, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != test_pid) /* the test died before prctl */
		_exit(1);
	pid = fork();
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		dnsmasq_exec(port, name, zone, extra);
	}
	dnsmasq_pid = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	_exit(0);
}

static void server_stop(struct server *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGTERM);
	for (int i = 0; i < 200 && waitpid(s->pid, NULL, WNOHANG) == 0; i++)
		usleep(10000);
	if (waitpid(s->pid, NULL, WNOHANG) == 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* Start dnsmasq serving zone (+ extra); a few ports are tried if one is taken. */
static void server_start(struct server *s, const char *name, const char *const *zone,
			 const char *const *extra)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		int port = free_port();
		if (port < 0)
			continue;
		pid_t test_pid = getpid(), pid = fork();
		cr_assert(pid >= 0, "fork: %s", strerror(errno));
		if (pid == 0)
			guardian_run(test_pid, port, name, zone, extra);
		s->pid = pid;
		s->port = port;
		for (int i = 0; i < 50; i++) { /* at most ~5 s */
			if (dns_answers(port, 100))
				return;
			if (waitpid(pid, NULL, WNOHANG) == pid) {
				s->pid = 0;
				break; /* exited: the port was taken meanwhile */
			}
		}
		server_stop(s);
	}
	cr_assert_fail("dnsmasq did not start (see %s/%s.log)", tmpdir, name);
}

static const char *const *big_args(void)
{
	static char args[2 * BIG_N][200];
	static const char *argv[2 * BIG_N + 1];

	for (int i = 0; i < BIG_N; i++) {
		char name[96];
		big_name(i, name, sizeof(name));
		snprintf(args[2 * i], sizeof(args[0]), "--mx-host=big.test,%s,%d", name, 10 + i);
		snprintf(args[2 * i + 1], sizeof(args[0]), "--host-record=%s,127.0.2.%d", name,
			 i + 1);
		argv[2 * i] = args[2 * i];
		argv[2 * i + 1] = args[2 * i + 1];
	}
	argv[2 * BIG_N] = NULL;
	return argv;
}

static bool have_dnsmasq(void)
{
	return access(DNSMASQ, X_OK) == 0;
}

static void setup(void)
{
	if (!have_dnsmasq())
		return;
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "petrel_dns");
	server_start(&zone_server, "zone", zone_args, big_args());
}

static void teardown(void)
{
	server_stop(&zone_server);
	server_stop(&soa_server);
	if (tmpdir[0])
		test_tmpdir_remove(tmpdir);
}

TestSuite(net_dns, .init = setup, .fini = teardown, .timeout = 30);

#define NEED_DNSMASQ()                                                                             \
	do {                                                                                       \
		if (!have_dnsmasq())                                                               \
			cr_skip_test("%s is not installed", DNSMASQ);                              \
	} while (0)

/* ---- the shard's side: watches, poll, results ---------------------------- */

struct watch {
	int fd;
	bool read, write;
};

static struct watch watches[32];
static size_t n_watches;
static bool saw_write_watch;

static void on_watch(void *arg, int fd, bool want_read, bool want_write)
{
	size_t i;

	(void)arg;
	saw_write_watch |= want_write;
	for (i = 0; i < n_watches && watches[i].fd != fd; i++)
		;
	if (!want_read && !want_write) {
		if (i < n_watches)
			watches[i] = watches[--n_watches];
		return;
	}
	if (i == n_watches) {
		cr_assert_lt(n_watches, PT_ARRAY_LEN(watches));
		n_watches++;
	}
	watches[i] = (struct watch){fd, want_read, want_write};
}

/* A copy of a result, taken in the callback (the result dies after it). */
struct got {
	int calls;
	enum dns_status status;
	char name[256], error[400], site[1024];
	bool implicit_mx;
	uint64_t expires_ms;
	size_t n_hosts;
	struct {
		char name[256];
		uint16_t preference;
		size_t n_addrs;
		char addrs[8][INET6_ADDRSTRLEN];
		int family[8];
	} hosts[BIG_N];
};

static void got_copy(struct got *g, const struct dns_result *res)
{
	int calls = g->calls;

	memset(g, 0, sizeof(*g));
	g->calls = calls + 1;
	g->status = res->status;
	snprintf(g->name, sizeof(g->name), "%s", res->name);
	snprintf(g->error, sizeof(g->error), "%s", res->error);
	snprintf(g->site, sizeof(g->site), "%s", res->site);
	g->implicit_mx = res->implicit_mx;
	g->expires_ms = res->expires_ms;
	g->n_hosts = res->n_hosts;
	cr_assert_leq(res->n_hosts, BIG_N);
	for (size_t i = 0; i < res->n_hosts; i++) {
		const struct dns_host *h = &res->hosts[i];
		snprintf(g->hosts[i].name, sizeof(g->hosts[i].name), "%s", h->name);
		g->hosts[i].preference = h->preference;
		g->hosts[i].n_addrs = h->n_addrs;
		for (size_t j = 0; j < h->n_addrs && j < 8; j++) {
			snprintf(g->hosts[i].addrs[j], INET6_ADDRSTRLEN, "%s", h->addrs[j].text);
			g->hosts[i].family[j] = h->addrs[j].sa.ss_family;
		}
	}
}

static void on_result(void *arg, const struct dns_result *res)
{
	got_copy(arg, res);
}

/* Run the resolver until *calls reaches want (or nothing is left in flight
 * when want is 0); fails the test after DRIVE_LIMIT_MS. */
static void drive(struct dns_resolver *r, const int *calls, int want)
{
	uint64_t deadline = mono_ms() + DRIVE_LIMIT_MS;

	while (want ? *calls < want : dns_next_timeout_ms(r) >= 0) {
		struct pollfd p[PT_ARRAY_LEN(watches)];
		int64_t next = dns_next_timeout_ms(r);
		int wait = next < 0 || next > 50 ? 50 : (int)next, n;

		cr_assert_lt(mono_ms(), deadline, "no answer within %d ms", DRIVE_LIMIT_MS);
		for (size_t i = 0; i < n_watches; i++)
			p[i] = (struct pollfd){watches[i].fd,
					       (short)((watches[i].read ? POLLIN : 0) |
						       (watches[i].write ? POLLOUT : 0)),
					       0};
		size_t n_p = n_watches;
		n = poll(p, n_p, wait);
		cr_assert(n >= 0 || errno == EINTR);
		for (size_t i = 0; i < n_p && n > 0; i++)
			if (p[i].revents)
				dns_process_fd(r, p[i].fd,
					       p[i].revents & (POLLIN | POLLERR | POLLHUP),
					       p[i].revents & POLLOUT);
		if (n == 0 || next == 0)
			dns_process_timeouts(r);
	}
}

static struct dns_config config_for(const struct server *s, const char **servers, char *buf)
{
	struct dns_config cfg = {0};

	sprintf(buf, "127.0.0.1:%d", s->port);
	servers[0] = buf;
	cfg.name_servers = servers;
	cfg.n_name_servers = 1;
	cfg.timeout_ms = 1000;
	cfg.tries = 2;
	cfg.negative_ttl_ms = 600000;
	return cfg;
}

static struct dns_resolver *resolver_with(const struct dns_config *cfg)
{
	char err[256] = "";
	struct dns_resolver *r;

	n_watches = 0;
	saw_write_watch = false;
	r = dns_resolver_new(cfg, on_watch, NULL, err, sizeof(err));
	cr_assert_not_null(r, "dns_resolver_new: %s", err);
	return r;
}

/* A resolver pointed at the zone server, with the defaults above. */
static struct dns_resolver *resolver(void)
{
	const char *servers[1];
	char buf[64];
	struct dns_config cfg = config_for(&zone_server, servers, buf);

	return resolver_with(&cfg);
}

/* Look up and wait: returns what dns_lookup_* returned, the result in *g. */
static int lookup(struct dns_resolver *r, bool mx, const char *name, uint64_t now_ms, struct got *g)
{
	const struct dns_result *res = NULL;
	int rc;

	memset(g, 0, sizeof(*g));
	rc = mx ? dns_lookup_mx(r, name, now_ms, on_result, g, &res)
		: dns_lookup_host(r, name, now_ms, on_result, g, &res);
	if (rc == PT_OK) {
		got_copy(g, res);
		return rc;
	}
	cr_assert_eq(rc, PT_AGAIN, "lookup %s: %d", name, rc);
	cr_assert_eq(g->calls, 0, "the callback ran inside the lookup call");
	drive(r, &g->calls, 1);
	cr_assert_eq(g->calls, 1);
	return rc;
}

static struct dns_stats stats(struct dns_resolver *r)
{
	struct dns_stats s;

	dns_get_stats(r, &s);
	return s;
}

static void assert_host(const struct got *g, size_t i, const char *name, uint16_t preference,
			size_t n_addrs, const char *const *addrs)
{
	cr_assert_str_eq(g->hosts[i].name, name);
	cr_assert_eq(g->hosts[i].preference, preference, "%s preference", name);
	cr_assert_eq(g->hosts[i].n_addrs, n_addrs, "%s: %zu addresses", name, g->hosts[i].n_addrs);
	for (size_t j = 0; j < n_addrs; j++)
		cr_assert_str_eq(g->hosts[i].addrs[j], addrs[j]);
}

/* ---- MX resolution (RFC 5321 5.1) ---------------------------------------- */

Test(net_dns, mx_hosts_in_preference_order_with_their_addresses)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	cr_assert_eq(lookup(r, true, "a.test", T0, &g), PT_AGAIN);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_str_eq(g.name, "a.test");
	cr_assert_str_eq(g.error, "");
	cr_assert_not(g.implicit_mx);
	cr_assert_eq(g.n_hosts, 2);
	assert_host(&g, 0, "mx1.a.test", 10, 1, (const char *[]){"127.0.0.2"});
	/* IPv4 first, then IPv6 */
	assert_host(&g, 1, "mx2.a.test", 20, 2, (const char *[]){"127.0.0.3", "::3"});
	cr_assert_eq(g.hosts[1].family[0], AF_INET);
	cr_assert_eq(g.hosts[1].family[1], AF_INET6);
	cr_assert_str_eq(g.site, "(mx1|mx2).a.test");
	/* every record has TTL 600 s; mx1's missing AAAA counts negative_ttl (600 s) */
	cr_assert_eq(g.expires_ms, T0 + 600000);
	struct dns_stats s = stats(r);
	cr_assert_eq(s.lookups, 1);
	cr_assert_eq(s.queries_sent, 5, "MX, then A and AAAA for each host: %lu",
		     (unsigned long)s.queries_sent);
	cr_assert_eq(s.cache_hits, 0);
	cr_assert_eq(s.failures, 0);
	dns_resolver_free(r);
}

Test(net_dns, equal_preferences_are_ordered_by_name_and_names_normalized)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "TIE.Test.", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_str_eq(g.name, "tie.test");
	cr_assert_eq(g.n_hosts, 3);
	assert_host(&g, 0, "m.tie.test", 5, 1, (const char *[]){"127.0.0.13"});
	assert_host(&g, 1, "ab.tie.test", 10, 1, (const char *[]){"127.0.0.12"});
	assert_host(&g, 2, "zb.tie.test", 10, 1, (const char *[]){"127.0.0.11"});
	cr_assert_str_eq(g.site, "(m|ab|zb).tie.test");
	dns_resolver_free(r);
}

Test(net_dns, mx_hosts_without_address_are_left_out_of_hosts_not_of_the_site)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "partial.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_eq(g.n_hosts, 1);
	assert_host(&g, 0, "mx1.a.test", 10, 1, (const char *[]){"127.0.0.2"});
	cr_assert_str_eq(g.site, "(gone|mx1).(partial|a).test");
	cr_assert_eq(g.expires_ms, T0 + 600000);
	dns_resolver_free(r);
}

Test(net_dns, no_mx_host_with_an_address_is_no_address_and_cached)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "noaddr.test", T0, &g);
	cr_assert_eq(g.status, DNS_NO_ADDRESS);
	cr_assert_eq(g.n_hosts, 0);
	cr_assert_str_eq(g.error, "no MX host of noaddr.test has an A or AAAA record");
	cr_assert_str_eq(g.site, "noaddr.test");
	cr_assert_eq(g.expires_ms, T0 + 600000);
	cr_assert_eq(lookup(r, true, "noaddr.test", T0 + 1, &g), PT_OK);
	cr_assert_eq(g.status, DNS_NO_ADDRESS);
	struct dns_stats s = stats(r);
	cr_assert_eq(s.cache_hits, 1);
	cr_assert_eq(s.negative_hits, 1);
	cr_assert_eq(s.queries_sent, 3);
	dns_resolver_free(r);
}

Test(net_dns, a_domain_without_mx_is_its_own_host)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "aonly.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert(g.implicit_mx);
	cr_assert_eq(g.n_hosts, 1);
	assert_host(&g, 0, "aonly.test", 0, 1, (const char *[]){"127.0.0.5"});
	cr_assert_str_eq(g.site, "aonly.test");
	cr_assert_eq(stats(r).queries_sent, 3);
	dns_resolver_free(r);
}

Test(net_dns, aaaa_only_host)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, false, "v6only.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_eq(g.n_hosts, 1);
	assert_host(&g, 0, "v6only.test", 0, 1, (const char *[]){"::5"});
	cr_assert_eq(g.hosts[0].family[0], AF_INET6);
	cr_assert_str_eq(g.site, "v6only.test");
	cr_assert_eq(stats(r).queries_sent, 2);
	dns_resolver_free(r);
}

Test(net_dns, null_mx_is_a_permanent_failure)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "nullmx.test", T0, &g);
	cr_assert_eq(g.status, DNS_NULL_MX);
	cr_assert_eq(g.n_hosts, 0);
	cr_assert_str_eq(g.error, "nullmx.test does not accept mail (null MX, RFC 7505)");
	cr_assert_eq(g.expires_ms, T0 + 600000);
	cr_assert_eq(stats(r).queries_sent, 1, "no address lookups for a null MX");
	cr_assert_eq(lookup(r, true, "nullmx.test", T0, &g), PT_OK);
	cr_assert_eq(g.status, DNS_NULL_MX);
	cr_assert_eq(stats(r).negative_hits, 1);
	dns_resolver_free(r);
}

Test(net_dns, nxdomain_is_a_permanent_failure)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "nope.test", T0, &g);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_str_eq(g.error, "nope.test: no such domain (NXDOMAIN)");
	cr_assert_str_eq(g.site, "nope.test");
	cr_assert_eq(g.n_hosts, 0);
	lookup(r, false, "nope.test", T0, &g);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_eq(stats(r).queries_sent, 3);
	dns_resolver_free(r);
}

/* ---- the cache ------------------------------------------------------------ */

Test(net_dns, second_lookup_is_answered_from_the_cache)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	cr_assert_eq(lookup(r, true, "a.test", T0, &g), PT_AGAIN);
	cr_assert_eq(lookup(r, true, "a.test", T0 + 1000, &g), PT_OK);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_eq(g.n_hosts, 2);
	cr_assert_str_eq(g.site, "(mx1|mx2).a.test");
	struct dns_stats s = stats(r);
	cr_assert_eq(s.lookups, 2);
	cr_assert_eq(s.cache_hits, 1);
	cr_assert_eq(s.negative_hits, 0);
	cr_assert_eq(s.queries_sent, 5);
	/* b.test's only MX host is a.test's mx1: its addresses come from the cache */
	cr_assert_eq(lookup(r, true, "b.test", T0, &g), PT_AGAIN);
	assert_host(&g, 0, "mx1.a.test", 5, 1, (const char *[]){"127.0.0.2"});
	cr_assert_str_eq(g.site, "mx1.a.test");
	cr_assert_eq(stats(r).queries_sent, 6);
	/* and so does a host lookup */
	cr_assert_eq(lookup(r, false, "mx2.a.test", T0, &g), PT_OK);
	assert_host(&g, 0, "mx2.a.test", 0, 2, (const char *[]){"127.0.0.3", "::3"});
	dns_resolver_free(r);
}

Test(net_dns, answer_expires_with_its_smallest_ttl)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "ttl.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_eq(g.expires_ms, T0 + 3000, "MX TTL 600 s, A TTL 3 s: %lu",
		     (unsigned long)(g.expires_ms - T0));
	cr_assert_eq(stats(r).queries_sent, 3);
	cr_assert_eq(lookup(r, true, "ttl.test", T0 + 2999, &g), PT_OK);
	cr_assert_eq(stats(r).queries_sent, 3);
	cr_assert_eq(lookup(r, true, "ttl.test", T0 + 3000, &g), PT_AGAIN);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_eq(g.expires_ms, T0 + 3000 + 3000);
	cr_assert_eq(stats(r).queries_sent, 6, "MX and the host asked again");
	dns_resolver_free(r);
}

Test(net_dns, ttls_are_bounded_by_the_configuration)
{
	NEED_DNSMASQ();
	const char *servers[1];
	char buf[64];
	struct dns_config cfg = config_for(&zone_server, servers, buf);
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, false, "zero.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert_eq(g.expires_ms, T0 + 1000, "TTL 0 is raised to cache_min_ttl (1 s)");
	dns_resolver_free(r);

	cfg.cache_max_ttl_ms = 2000;
	r = resolver_with(&cfg);
	lookup(r, true, "a.test", T0, &g);
	cr_assert_eq(g.expires_ms, T0 + 2000);
	dns_resolver_free(r);
}

Test(net_dns, negative_answers_are_cached_for_negative_ttl)
{
	NEED_DNSMASQ();
	const char *servers[1];
	char buf[64];
	struct dns_config cfg = config_for(&zone_server, servers, buf);
	struct got g;

	cfg.negative_ttl_ms = 5000;
	struct dns_resolver *r = resolver_with(&cfg);
	lookup(r, true, "nope.test", T0, &g);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_eq(g.expires_ms, T0 + 5000);
	cr_assert_eq(lookup(r, true, "nope.test", T0 + 4999, &g), PT_OK);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_eq(stats(r).negative_hits, 1);
	cr_assert_eq(stats(r).queries_sent, 1);
	cr_assert_eq(lookup(r, true, "nope.test", T0 + 5000, &g), PT_AGAIN);
	cr_assert_eq(stats(r).queries_sent, 2);
	dns_resolver_free(r);
}

Test(net_dns, negative_ttl_comes_from_the_soa_when_there_is_one)
{
	NEED_DNSMASQ();
	const char *servers[1];
	char buf[64];
	struct got g;

	server_start(&soa_server, "soa", soa_args, NULL);
	struct dns_config cfg = config_for(&soa_server, servers, buf);
	struct dns_resolver *r = resolver_with(&cfg);
	lookup(r, true, "nx.soa.test", T0, &g);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_eq(g.expires_ms, T0 + 9000, "SOA 9 s, not negative_ttl: %lu",
		     (unsigned long)(g.expires_ms - T0));
	/* no MX ("no data", SOA 9 s): implicit MX with A TTL 9 s, AAAA "no data" */
	lookup(r, true, "h.soa.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK);
	cr_assert(g.implicit_mx);
	assert_host(&g, 0, "h.soa.test", 0, 1, (const char *[]){"127.0.0.9"});
	cr_assert_eq(g.expires_ms, T0 + 9000);
	dns_resolver_free(r);
}

Test(net_dns, cache_is_bounded_and_drops_the_oldest)
{
	NEED_DNSMASQ();
	const char *servers[1];
	char buf[64];
	struct dns_config cfg = config_for(&zone_server, servers, buf);
	struct got g;

	cfg.cache_max_entries = 2;
	struct dns_resolver *r = resolver_with(&cfg);
	lookup(r, false, "h1.test", T0, &g);
	lookup(r, false, "h2.test", T0, &g);
	lookup(r, false, "h3.test", T0, &g);
	cr_assert_eq(stats(r).queries_sent, 6);
	cr_assert_eq(lookup(r, false, "h3.test", T0, &g), PT_OK);
	cr_assert_eq(lookup(r, false, "h2.test", T0, &g), PT_OK);
	cr_assert_eq(lookup(r, false, "h1.test", T0, &g), PT_AGAIN, "h1 was evicted");
	assert_host(&g, 0, "h1.test", 0, 1, (const char *[]){"127.0.1.1"});
	cr_assert_eq(stats(r).queries_sent, 8);
	dns_resolver_free(r);
}

/* ---- failures ------------------------------------------------------------- */

Test(net_dns, refused_port_is_a_temporary_failure_and_not_cached)
{
	NEED_DNSMASQ();
	struct server nobody = {.port = free_port()};
	const char *servers[1];
	char buf[64];
	struct dns_config cfg = config_for(&nobody, servers, buf);
	struct got g;

	cfg.timeout_ms = 300;
	cfg.tries = 1;
	struct dns_resolver *r = resolver_with(&cfg);
	uint64_t start = mono_ms();
	lookup(r, true, "a.test", T0, &g);
	cr_assert_eq(g.status, DNS_TEMPFAIL);
	cr_assert(strncmp(g.error, "MX lookup for a.test failed: ", 29) == 0, "%s", g.error);
	cr_assert_lt(mono_ms() - start, 2000);
	cr_assert_eq(lookup(r, true, "a.test", T0, &g), PT_AGAIN,
		     "temporary failures are not cached");
	cr_assert_eq(g.status, DNS_TEMPFAIL);
	struct dns_stats s = stats(r);
	cr_assert_eq(s.failures, 2);
	cr_assert_eq(s.cache_hits, 0);
	cr_assert_eq(s.queries_sent, 2);
	dns_resolver_free(r);
}

Test(net_dns, silent_server_times_out_within_the_bound)
{
	NEED_DNSMASQ();
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int hole = socket(AF_INET, SOCK_DGRAM, 0); /* receives, never answers */
	struct server silent;
	const char *servers[1];
	char buf[64];
	struct got g;

	cr_assert_eq(bind(hole, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(hole, (struct sockaddr *)&sin, &len), 0);
	silent.port = ntohs(sin.sin_port);
	struct dns_config cfg = config_for(&silent, servers, buf);
	cfg.timeout_ms = 200;
	cfg.tries = 1;
	struct dns_resolver *r = resolver_with(&cfg);
	uint64_t start = mono_ms();
	lookup(r, false, "h1.test", T0, &g);
	uint64_t took = mono_ms() - start;
	cr_assert_eq(g.status, DNS_TEMPFAIL);
	cr_assert_str_eq(g.error,
			 "A/AAAA lookup for h1.test failed: Timeout while contacting DNS servers");
	cr_assert_geq(took, 150);
	cr_assert_lt(took, 2000);
	cr_assert_eq(dns_next_timeout_ms(r), -1);
	dns_resolver_free(r);
	close(hole);
}

Test(net_dns_offline, bad_name_servers_are_refused)
{
	static const char *const bad[] = {"127.0.0.1:99999", "localhost", "[::1",      "[::1]x",
					  "127.0.0.1:",	     "",	  "1.2.3.4:5x"};
	static const char *const good[] = {"[::1]:53", "::1", "10.0.0.1", "127.0.0.1:5353"};
	struct dns_config cfg = {0};
	char err[256];

	for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
		cfg.name_servers = &bad[i];
		cfg.n_name_servers = 1;
		err[0] = '\0';
		cr_assert_null(dns_resolver_new(&cfg, on_watch, NULL, err, sizeof(err)), "%s",
			       bad[i]);
		cr_assert(strstr(err, "bad name server") != NULL, "%s: %s", bad[i], err);
	}
	cfg.name_servers = good;
	cfg.n_name_servers = PT_ARRAY_LEN(good);
	struct dns_resolver *r = dns_resolver_new(&cfg, on_watch, NULL, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	dns_resolver_free(r);
}

/* ---- sharing, cancelling, callbacks ---------------------------------------- */

Test(net_dns, lookups_in_flight_share_their_queries)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	const struct dns_result *res;
	struct got g1 = {0}, g2 = {0}, g3 = {0};

	cr_assert_eq(dns_lookup_mx(r, "a.test", T0, on_result, &g1, &res), PT_AGAIN);
	cr_assert_eq(dns_lookup_mx(r, "A.TEST", T0, on_result, &g2, &res), PT_AGAIN);
	cr_assert_eq(dns_lookup_host(r, "mx1.a.test", T0, on_result, &g3, &res), PT_AGAIN);
	cr_assert_eq(stats(r).queries_sent, 3, "one MX query, A and AAAA for mx1");
	drive(r, &g2.calls, 1);
	drive(r, &g1.calls, 1);
	drive(r, &g3.calls, 1);
	cr_assert_eq(g1.calls, 1);
	cr_assert_eq(g2.calls, 1);
	cr_assert_eq(g3.calls, 1);
	cr_assert_eq(g1.status, DNS_OK);
	cr_assert_str_eq(g2.site, g1.site);
	cr_assert_eq(g2.n_hosts, 2);
	assert_host(&g3, 0, "mx1.a.test", 0, 1, (const char *[]){"127.0.0.2"});
	/* mx1's A and AAAA were asked once, for both the MX and the host lookup */
	cr_assert_eq(stats(r).queries_sent, 5);
	cr_assert_eq(stats(r).lookups, 3);
	dns_resolver_free(r);
}

Test(net_dns, cancel_forgets_the_callback_but_the_cache_is_filled)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	const struct dns_result *res;
	struct got g1 = {0}, g2 = {0}, g;

	cr_assert_eq(dns_lookup_mx(r, "a.test", T0, on_result, &g1, &res), PT_AGAIN);
	cr_assert_eq(dns_lookup_mx(r, "a.test", T0, on_result, &g2, &res), PT_AGAIN);
	dns_cancel(r, on_result, &g1);
	drive(r, &g2.calls, 1);
	cr_assert_eq(g1.calls, 0);
	cr_assert_eq(g2.status, DNS_OK);

	cr_assert_eq(dns_lookup_mx(r, "tie.test", T0, on_result, &g1, &res), PT_AGAIN);
	dns_cancel(r, on_result, &g1);
	drive(r, NULL, 0); /* until nothing is in flight */
	cr_assert_eq(g1.calls, 0);
	cr_assert_eq(lookup(r, true, "tie.test", T0, &g), PT_OK);
	cr_assert_eq(g.n_hosts, 3);
	dns_resolver_free(r);
}

struct chain {
	struct dns_resolver *r;
	struct got first, second;
	int rc;
};

static void on_chain(void *arg, const struct dns_result *res)
{
	struct chain *c = arg;
	const struct dns_result *now;

	got_copy(&c->first, res);
	/* from inside a callback: a cached answer, then a new lookup */
	cr_assert_eq(dns_lookup_host(c->r, "mx1.a.test", T0, on_result, &c->second, &now), PT_OK);
	cr_assert_str_eq(now->hosts[0].addrs[0].text, "127.0.0.2");
	c->rc = dns_lookup_mx(c->r, "tie.test", T0, on_result, &c->second, &now);
}

Test(net_dns, a_callback_may_start_lookups)
{
	NEED_DNSMASQ();
	struct chain c = {.r = resolver()};
	const struct dns_result *res;

	cr_assert_eq(dns_lookup_mx(c.r, "a.test", T0, on_chain, &c, &res), PT_AGAIN);
	drive(c.r, &c.first.calls, 1);
	cr_assert_eq(c.rc, PT_AGAIN);
	drive(c.r, &c.second.calls, 1);
	cr_assert_eq(c.second.status, DNS_OK);
	cr_assert_str_eq(c.second.site, "(m|ab|zb).tie.test");
	dns_resolver_free(c.r);
}

Test(net_dns, free_with_lookups_in_flight_calls_nothing)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	const struct dns_result *res;
	struct got g = {0};

	cr_assert_eq(dns_lookup_mx(r, "a.test", T0, on_result, &g, &res), PT_AGAIN);
	cr_assert_eq(dns_lookup_host(r, "h1.test", T0, on_result, &g, &res), PT_AGAIN);
	cr_assert_gt(n_watches, 0, "c-ares asked for its socket to be watched");
	dns_resolver_free(r);
	cr_assert_eq(g.calls, 0);
	cr_assert_eq(n_watches, 0, "every watch was dropped");
}

Test(net_dns, large_answer_falls_back_to_tcp)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	lookup(r, true, "big.test", T0, &g);
	cr_assert_eq(g.status, DNS_OK, "%s", g.error);
	cr_assert_eq(g.n_hosts, BIG_N);
	for (int i = 0; i < BIG_N; i++) {
		char addr[32], name[96];
		snprintf(addr, sizeof(addr), "127.0.2.%d", i + 1);
		assert_host(&g, (size_t)i, big_name(i, name, sizeof(name)), (uint16_t)(10 + i), 1,
			    (const char *[]){addr});
	}
	cr_assert(saw_write_watch, "the MX answer came over TCP (a write watch while connecting)");
	dns_resolver_free(r);
}

/* ---- answered at once ------------------------------------------------------ */

Test(net_dns, literals_and_bad_names_are_answered_at_once)
{
	NEED_DNSMASQ();
	struct dns_resolver *r = resolver();
	struct got g;

	cr_assert_eq(lookup(r, true, "[127.0.0.9]", T0, &g), PT_OK);
	cr_assert_eq(g.status, DNS_OK);
	assert_host(&g, 0, "127.0.0.9", 0, 1, (const char *[]){"127.0.0.9"});
	cr_assert_str_eq(g.site, "127.0.0.9");
	cr_assert_eq(lookup(r, true, "[IPv6:::1]", T0, &g), PT_OK);
	assert_host(&g, 0, "::1", 0, 1, (const char *[]){"::1"});
	cr_assert_eq(lookup(r, false, "127.0.0.7", T0, &g), PT_OK);
	assert_host(&g, 0, "127.0.0.7", 0, 1, (const char *[]){"127.0.0.7"});
	cr_assert_eq(lookup(r, true, "bad name.test", T0, &g), PT_OK);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_str_eq(g.error, "\"bad name.test\" is not a valid domain name");
	cr_assert_eq(lookup(r, true, "a..test", T0, &g), PT_OK);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_eq(lookup(r, true, "[127.0.0.999]", T0, &g), PT_OK);
	cr_assert_eq(g.status, DNS_NXDOMAIN);
	cr_assert_eq(stats(r).queries_sent, 0);
	cr_assert_eq(stats(r).lookups, 6);
	dns_resolver_free(r);
}

/* ---- pure functions --------------------------------------------------------- */

static void assert_site(const char *want, size_t n, const char *const *names)
{
	char out[512];

	cr_assert_eq(dns_site_name(names, n, out, sizeof(out)), PT_OK);
	cr_assert_str_eq(out, want);
}

Test(net_dns_offline, site_names_factor_like_kumomta)
{
	char small[8];

	assert_site("(mta5|mta6|mta7).am0.yahoodns.net", 3,
		    (const char *[]){"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net",
				     "mta7.am0.yahoodns.net"});
	assert_site("(mta5|mta6|mta7).am0.yahoodns.net", 3,
		    (const char *[]){"mta5.AM0.yahoodns.net", "mta6.am0.yAHOodns.net",
				     "mta7.am0.yahoodns.net"});
	assert_site(
	    "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com", 5,
	    (const char *[]){"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com",
			     "alt2.gmail-smtp-in.l.google.com", "alt3.gmail-smtp-in.l.google.com",
			     "alt4.gmail-smtp-in.l.google.com"});
	assert_site("(example-com|mx-biz).mail.(protection|am0).(outlook|yahoodns).(com|net)", 3,
		    (const char *[]){"example-com.mail.protection.outlook.com.",
				     "mx-biz.mail.am0.yahoodns.net.",
				     "mx-biz.mail.am0.yahoodns.net."});
	assert_site("mx.example.com", 1, (const char *[]){"MX.Example.com."});
	assert_site("alt1?.x.l.google.com", 2,
		    (const char *[]){"x.l.google.com", "alt1.x.l.google.com"});
	cr_assert_eq(
	    dns_site_name((const char *[]){"mx1.a.test", "mx2.a.test"}, 2, small, sizeof(small)),
	    PT_ERROR);
	cr_assert_eq(dns_site_name(NULL, 0, small, sizeof(small)), PT_ERROR);
}

static void assert_ip(const char *in, int family, const char *text)
{
	struct dns_addr a;

	cr_assert_eq(dns_parse_ip(in, &a), PT_OK, "%s", in);
	cr_assert_eq(a.sa.ss_family, family, "%s", in);
	cr_assert_str_eq(a.text, text);
	if (family == AF_INET) {
		cr_assert_eq(a.sa_len, sizeof(struct sockaddr_in));
		cr_assert_eq(((struct sockaddr_in *)&a.sa)->sin_port, 0);
	} else {
		cr_assert_eq(a.sa_len, sizeof(struct sockaddr_in6));
		cr_assert_eq(((struct sockaddr_in6 *)&a.sa)->sin6_port, 0);
	}
}

Test(net_dns_offline, parse_ip_literals)
{
	static const char *const bad[] = {
	    "",		  "[]",		"a.test",    "127.0.0.1:25",
	    "[127.0.0.1", "127.0.0.1]", "300.1.1.1", "[IPv6:127.0.0.1]",
	    "[IPv6:]",	  "::1::2",	" 127.0.0.1"};
	struct dns_addr a;

	assert_ip("127.0.0.1", AF_INET, "127.0.0.1");
	assert_ip("[127.0.0.1]", AF_INET, "127.0.0.1");
	assert_ip("::1", AF_INET6, "::1");
	assert_ip("[::1]", AF_INET6, "::1");
	assert_ip("[IPv6:::1]", AF_INET6, "::1");
	assert_ip("[ipv6:2001:DB8::1]", AF_INET6, "2001:db8::1");
	for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
		cr_assert_eq(dns_parse_ip(bad[i], &a), PT_ERROR, "\"%s\"", bad[i]);
}

/* dns_sync_mx: several domains at once, each with the answer the async
 * lookup gives (site, status), waiting inside the call. */
Test(net_dns, sync_mx_answers_every_domain)
{
	NEED_DNSMASQ();
	const char *servers[1];
	char buf[64], err[256] = "";
	struct dns_config cfg = config_for(&zone_server, servers, buf);
	const char *domains[] = {"a.test", "aonly.test", "nullmx.test", "nope.test"};
	struct dns_sync_mx out[4];

	cr_assert_eq(dns_sync_mx(&cfg, domains, 4, 5000, out, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(out[0].status, DNS_OK);
	cr_assert_str_eq(out[0].site, "(mx1|mx2).a.test");
	cr_assert_str_eq(out[0].error, "");
	cr_assert_eq(out[1].status, DNS_OK);
	cr_assert(out[1].implicit_mx);
	cr_assert_str_eq(out[1].site, "aonly.test");
	cr_assert_eq(out[2].status, DNS_NULL_MX);
	cr_assert_eq(out[3].status, DNS_NXDOMAIN);
	cr_assert_neq(out[3].error[0], '\0');
	dns_sync_mx_free(out, 4);
}

/* A server that never answers: the call returns by its deadline with
 * every domain a temporary failure. */
Test(net_dns, sync_mx_returns_by_its_deadline)
{
	NEED_DNSMASQ();
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int hole = socket(AF_INET, SOCK_DGRAM, 0);
	struct server silent;
	const char *servers[1], *domains[] = {"a.test", "b.test"};
	char buf[64], err[256] = "";
	struct dns_sync_mx out[2];
	uint64_t start, took;

	cr_assert_eq(bind(hole, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(hole, (struct sockaddr *)&sin, &len), 0);
	silent.port = ntohs(sin.sin_port);
	struct dns_config cfg = config_for(&silent, servers, buf);
	cfg.timeout_ms = 5000;
	start = mono_ms();
	cr_assert_eq(dns_sync_mx(&cfg, domains, 2, 300, out, err, sizeof(err)), PT_OK, "%s", err);
	took = mono_ms() - start;
	cr_assert_geq(took, 250);
	cr_assert_lt(took, 2000);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(out[i].status, DNS_TEMPFAIL);
		cr_assert_str_eq(out[i].error, "DNS lookup timed out");
	}
	dns_sync_mx_free(out, 2);
	close(hole);
}
