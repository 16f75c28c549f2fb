/*
 * dns_sync.c -- MX lookups that wait for their answers: a private resolver
 * (its own c-ares channel and cache, the same lookup code as the shards')
 * driven by poll(2) until every answer is in or the deadline passes.
 *
 * For the rare caller that cannot go on without the answer: the policy's
 * kumo.dns.lookup_mx, which the shaping helper calls once per policy load
 * to map its domain blocks to MX rollup sites.  Never on a hot path: it
 * blocks its thread for up to timeout_ms.
 */
#include "net/dns.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"

#define SYNC_MAX_FDS 32

struct sync_state {
	struct pollfd fds[SYNC_MAX_FDS];
	size_t n_fds;
	size_t pending;
};

struct sync_slot {
	struct sync_state *st;
	struct dns_sync_mx *out;
	bool done;
};

static void sync_watch(void *arg, int fd, bool want_read, bool want_write)
{
	struct sync_state *st = arg;
	short events = (short)((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0));
	size_t i;

	for (i = 0; i < st->n_fds && st->fds[i].fd != fd; i++)
		;
	if (events == 0) {
		if (i < st->n_fds)
			st->fds[i] = st->fds[--st->n_fds];
		return;
	}
	if (i == st->n_fds) {
		if (st->n_fds == SYNC_MAX_FDS)
			return; /* c-ares retries; the deadline bounds us */
		st->n_fds++;
	}
	st->fds[i] = (struct pollfd){.fd = fd, .events = events};
}

static void sync_fill(struct dns_sync_mx *o, const struct dns_result *res)
{
	o->status = res->status;
	o->implicit_mx = res->implicit_mx;
	o->site = strdup(res->site ? res->site : res->name);
	o->error = strdup(res->error ? res->error : "");
}

static void sync_done(void *arg, const struct dns_result *res)
{
	struct sync_slot *slot = arg;

	sync_fill(slot->out, res);
	slot->done = true;
	slot->st->pending--;
}

int dns_sync_mx(const struct dns_config *cfg, const char *const *domains, size_t n,
		uint64_t timeout_ms, struct dns_sync_mx *out, char *err, size_t err_len)
{
	struct sync_state st = {.n_fds = 0, .pending = 0};
	struct sync_slot *slots = calloc(n ? n : 1, sizeof(*slots));
	struct dns_resolver *r;
	uint64_t deadline = pt_monotonic_ms() + timeout_ms;

	memset(out, 0, n * sizeof(*out));
	if (!slots) {
		snprintf(err, err_len, "out of memory");
		return PT_NOMEM;
	}
	r = dns_resolver_new(cfg, sync_watch, &st, err, err_len);
	if (!r) {
		free(slots);
		return PT_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		const struct dns_result *res = NULL;
		int rc;

		slots[i] = (struct sync_slot){.st = &st, .out = &out[i]};
		rc = dns_lookup_mx(r, domains[i], pt_monotonic_ms(), sync_done, &slots[i], &res);
		if (rc == PT_OK) {
			sync_fill(&out[i], res);
			slots[i].done = true;
		} else if (rc == PT_AGAIN) {
			st.pending++;
		} else {
			out[i].status = DNS_TEMPFAIL;
			out[i].error = strdup("out of memory");
			slots[i].done = true;
		}
	}
	while (st.pending > 0) {
		uint64_t now = pt_monotonic_ms();
		int64_t next = dns_next_timeout_ms(r);
		int wait, got;

		if (now >= deadline)
			break;
		wait = (int)PT_MIN(deadline - now, (uint64_t)(next < 0 ? 1000 : next));
		got = poll(st.fds, st.n_fds, wait);
		if (got > 0) {
			/* Copy: callbacks may change the set while we walk it. */
			struct pollfd ready[SYNC_MAX_FDS];
			size_t n_ready = st.n_fds;

			memcpy(ready, st.fds, n_ready * sizeof(*ready));
			for (size_t i = 0; i < n_ready; i++)
				if (ready[i].revents)
					dns_process_fd(r, ready[i].fd,
						       ready[i].revents &
							   (POLLIN | POLLERR | POLLHUP),
						       ready[i].revents & POLLOUT);
		}
		dns_process_timeouts(r);
	}
	dns_resolver_free(r); /* drops what is still pending, without callbacks */
	for (size_t i = 0; i < n; i++)
		if (!slots[i].done) {
			out[i].status = DNS_TEMPFAIL;
			out[i].site = strdup(domains[i]);
			out[i].error = strdup("DNS lookup timed out");
		}
	free(slots);
	return PT_OK;
}

void dns_sync_mx_free(struct dns_sync_mx *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(out[i].site);
		free(out[i].error);
		out[i].site = out[i].error = NULL;
	}
}
