/*
 * shard_dns.c -- the shard's resolver (net/dns.c, c-ares) on its ring.
 *
 * c-ares tells us through the watch callback which of its sockets it wants
 * to read or write; each becomes a one-shot POLL_ADD on the ring.  When the
 * poll completes, dns_process_fd() reads the answers (and calls back the
 * units or connections waiting for them), then the poll is armed again if
 * c-ares still wants the socket.  When c-ares gives a socket up (both
 * wants false, just before it closes it), a poll still in the ring is
 * removed and the watch freed when its completion arrives: a closed fd
 * number may be reused at once, so a dead watch is never matched again.
 * c-ares' own timeouts (retries, giving up) run from a wheel timer set to
 * dns_next_timeout_ms() after every loop iteration.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

static struct shard_op dns_ignore = { SHARD_OP_IGNORE };

static void dns_watch_arm(struct shard *s, struct shard_dns_watch *w)
{
	struct io_uring_sqe *sqe = shard_sqe(s);
	unsigned mask = (w->want_read ? POLLIN : 0) | (w->want_write ? POLLOUT : 0);

	io_uring_prep_poll_add(sqe, w->fd, mask);
	shard_prep(sqe, &w->op);
	w->armed = true;
	w->armed_mask = mask;
}

static void dns_watch_remove(struct shard *s, struct shard_dns_watch *w)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)&w->op);
	shard_prep(sqe, &dns_ignore);
}

static void dns_watch_unlink(struct shard *s, struct shard_dns_watch *w)
{
	for (struct shard_dns_watch **p = &s->dns_watches; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	free(w);
}

static void dns_watch_cb(void *arg, int fd, bool want_read, bool want_write)
{
	struct shard *s = arg;
	struct shard_dns_watch *w;

	for (w = s->dns_watches; w; w = w->next)
		if (w->fd == fd && !w->dead)
			break;
	if (!w) {
		if (!want_read && !want_write)
			return;
		w = calloc(1, sizeof(*w));
		if (!w)
			pt_panic("out of memory watching a DNS socket");
		w->op.kind = SHARD_OP_DNS_POLL;
		w->fd = fd;
		w->next = s->dns_watches;
		s->dns_watches = w;
	}
	w->want_read = want_read;
	w->want_write = want_write;
	if (!want_read && !want_write) {
		w->dead = true;
		if (w->armed)
			dns_watch_remove(s, w);
		else if (!w->in_poll)
			dns_watch_unlink(s, w);
		return;
	}
	if (w->in_poll)
		return; /* shard_handle_dns_poll arms it after processing */
	if (!w->armed)
		dns_watch_arm(s, w);
	else if (w->armed_mask != ((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0)))
		dns_watch_remove(s, w); /* re-armed with the new mask when it completes */
}

void shard_handle_dns_poll(struct shard *s, struct shard_dns_watch *w, struct io_uring_cqe *cqe)
{
	w->armed = false;
	if (w->dead) {
		dns_watch_unlink(s, w);
		return;
	}
	/* Processing may give the socket up: in_poll keeps w alive until here. */
	w->in_poll = true;
	if (cqe->res > 0)
		dns_process_fd(s->dns, w->fd, cqe->res & (POLLIN | POLLERR | POLLHUP),
			       cqe->res & (POLLOUT | POLLERR));
	w->in_poll = false;
	if (w->dead) {
		dns_watch_unlink(s, w);
		return;
	}
	if (!w->armed && (w->want_read || w->want_write))
		dns_watch_arm(s, w);
	shard_dns_kick(s);
}

static void dns_timer_fn(struct pt_timer *t)
{
	struct shard *s = pt_container_of(t, struct shard, dns_timer);

	dns_process_timeouts(s->dns);
	shard_dns_kick(s);
}

void shard_dns_kick(struct shard *s)
{
	int64_t ms;

	if (!s->dns)
		return;
	ms = dns_next_timeout_ms(s->dns);
	if (ms < 0) {
		pt_timer_del(&s->wheel, &s->dns_timer);
		return;
	}
	pt_timer_add(&s->wheel, &s->dns_timer, pt_monotonic_ms() + (uint64_t)ms);
}

/*
 * kumo.dns.lookup_mx for this shard's policy: a blocking lookup on a
 * private resolver with the policy's name servers (net/dns_sync.c).  The
 * shard stalls while it waits, at most SHARD_MX_SYNC_MS: the shaping helper
 * calls it once per policy load, never per message.
 */
#define SHARD_MX_SYNC_MS 5000

static void shard_mx_lookup(void *ctx, const char *const *domains, size_t n,
			    struct policy_mx_answer *out)
{
	struct shard *s = ctx;
	const struct policy_config *pc = policy_config(s->policy);
	struct dns_sync_mx *got = calloc(n ? n : 1, sizeof(*got));
	struct dns_config cfg;
	char err[256];
	uint64_t t0 = pt_monotonic_ms();

	memset(&cfg, 0, sizeof(cfg));
	cfg.name_servers = (const char *const *)pc->dns_name_servers;
	cfg.n_name_servers = pc->n_dns_name_servers;
	cfg.timeout_ms = pc->dns_timeout_ms;
	if (!got || dns_sync_mx(&cfg, domains, n, SHARD_MX_SYNC_MS, got, err, sizeof(err)) != PT_OK) {
		for (size_t i = 0; i < n; i++) {
			out[i].status = POLICY_MX_FAIL;
			out[i].error = strdup(got ? err : "out of memory");
		}
		free(got);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		out[i].status = got[i].status == DNS_OK	       ? POLICY_MX_OK
				: got[i].status == DNS_NULL_MX ? POLICY_MX_NULL
							       : POLICY_MX_FAIL;
		out[i].implicit_mx = got[i].implicit_mx;
		out[i].site = got[i].site;
		out[i].error = got[i].error;
	}
	free(got); /* the strings now belong to out */
	pt_info("kumo.dns.lookup_mx: %zu domain%s in %llu ms", n, n == 1 ? "" : "s",
		(unsigned long long)(pt_monotonic_ms() - t0));
}

int shard_dns_init(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	struct dns_config cfg;
	char err[256];

	memset(&cfg, 0, sizeof(cfg));
	cfg.name_servers = (const char *const *)pc->dns_name_servers;
	cfg.n_name_servers = pc->n_dns_name_servers;
	cfg.timeout_ms = pc->dns_timeout_ms;
	pt_timer_init(&s->dns_timer, dns_timer_fn);
	s->dns = dns_resolver_new(&cfg, dns_watch_cb, s, err, sizeof(err));
	if (!s->dns) {
		pt_error("DNS resolver: %s", err);
		return PT_ERROR;
	}
	policy_set_mx_lookup(s->policy, shard_mx_lookup, s);
	return PT_OK;
}

void shard_dns_free(struct shard *s)
{
	if (s->dns)
		dns_resolver_free(s->dns);
	s->dns = NULL;
	while (s->dns_watches) {
		struct shard_dns_watch *w = s->dns_watches;

		s->dns_watches = w->next;
		free(w);
	}
}
