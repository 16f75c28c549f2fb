/*
 * shard.c -- one thread per core, one io_uring ring per thread.
 *
 * A shard owns everything it touches: its ring, its receive buffers, its
 * listeners (each opened with SO_REUSEPORT, so the kernel spreads incoming
 * connections over the shards), its connections, its spool directory, its
 * Lua state and its log segments.  Shards talk only through the SPSC rings of
 * the group (shard_mailbox.c).
 *
 * The loop, per iteration:
 *
 *   1. reap every completion and dispatch it (shard_handle_cqe: one switch);
 *   2. drain the inbound mailboxes;
 *   3. fire due timers;
 *   4. start a spool batch (write + fdatasync, linked) if records are
 *      pending and none is in flight: this is group commit, the batch holds
 *      everything that arrived while the previous sync was in flight;
 *   5. start a log write if lines are pending;
 *   6. send one MSG_RING wake-up per shard we pushed messages to;
 *   7. submit and wait for at least one completion, bounded by the next
 *      timer deadline.
 *
 * Ring flags: SINGLE_ISSUER | DEFER_TASKRUN when the kernel has them (fewer
 * interrupts, completions run when we wait), else COOP_TASKRUN, else none.
 * Receives are multishot into a registered buffer ring; accepts are
 * multishot.  Nothing on a shard thread blocks, except start-up (policy
 * load, spool recovery, listener bind) and the rare segment rotation.
 *
 * Signals: SIGTERM, SIGINT and SIGHUP are blocked in every thread; shard 0
 * reads them from a signalfd through its ring and tells every shard (itself
 * included) to drain with a STOP message, or, for SIGHUP, reloads the policy
 * and then tells the others to with a RELOAD message.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/ptime.h"
#include "net/ring.h"
#include "shard/shard_int.h"

#define SHARD_RING_ENTRIES 4096
#define SHARD_BUF_COUNT 1024 /* power of two */
#define SHARD_BUF_SIZE 16384
#define SHARD_BUF_GROUP 0
#define SHARD_SPSC_CAPACITY 65536

struct io_uring_sqe *shard_sqe(struct shard *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (pt_unlikely(!sqe)) {
		/* The SQ is full: hand what we have to the kernel and retry. */
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
		if (!sqe)
			pt_panic("shard %u: no SQE after submit", s->id);
	}
	return sqe;
}

void shard_prep(struct io_uring_sqe *sqe, struct shard_op *op)
{
	io_uring_sqe_set_data(sqe, op);
}

static int shard_ring_init(struct shard *s)
{
	int rc = net_ring_init(&s->ring, SHARD_RING_ENTRIES, &s->ring_flags);

	if (rc != 0) {
		pt_error("io_uring_queue_init: %s", strerror(-rc));
		return PT_ERROR;
	}
	return PT_OK;
}

static int shard_buffers_init(struct shard *s)
{
	s->n_bufs = SHARD_BUF_COUNT;
	s->buf_size = SHARD_BUF_SIZE;
	return net_ring_bufs_init(&s->ring, s->n_bufs, s->buf_size, SHARD_BUF_GROUP, &s->buf_ring,
				 &s->buf_base);
}

static void shard_buffers_free(struct shard *s)
{
	net_ring_bufs_free(s->buf_ring, s->buf_base, SHARD_BUF_COUNT);
}

static void shard_signal_arm(struct shard *s)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	io_uring_prep_read(sqe, s->signal_fd, s->signal_buf, sizeof(struct signalfd_siginfo), 0);
	shard_prep(sqe, &s->signal_op);
}

static int shard_signals_init(struct shard *s)
{
	sigset_t set;

	s->signal_fd = -1;
	if (s->id != 0)
		return PT_OK;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	s->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (s->signal_fd < 0) {
		pt_error("signalfd: %m");
		return PT_ERROR;
	}
	s->signal_op.kind = SHARD_OP_SIGNAL;
	shard_signal_arm(s);
	return PT_OK;
}

/* Tell every shard, ourselves included, to drain. */
static void shard_broadcast_stop(struct shard *s)
{
	for (unsigned i = 0; i < s->group->n; i++) {
		struct shard_msg *m = calloc(1, sizeof(*m));

		if (!m)
			pt_panic("out of memory sending STOP");
		m->kind = SHARD_MSG_STOP;
		m->from = s->id;
		if (i == s->id) {
			free(m);
			shard_begin_drain(s);
		} else if (!shard_mailbox_send(s, i, m)) {
			free(m);
			pt_panic("mailbox to shard %u full while stopping", i);
		}
	}
}

/* Cached queue, egress path, source and pool configs are asked for again at their
 * next use (a ready queue with open connections: when they are gone). */
static void shard_configs_expire(struct shard *s)
{
	size_t pos = 0;
	struct shard_sched *sq;
	struct shard_ready *rq;

	while ((sq = pt_strmap_next(&s->scheds, &pos)))
		sq->cfg_expires_ms = 0;
	pos = 0;
	while ((rq = pt_strmap_next(&s->readies, &pos)))
		rq->cfg_expires_ms = 0;
	shard_sources_expire(s);
}

/* Reload this shard's policy; on failure err says why (also logged). */
static int shard_reload_err(struct shard *s, char *err, size_t err_len)
{
	char note[256];
	uint64_t t0 = pt_monotonic_ms();

	if (policy_reload(&s->policy, s->group->cfg.policy_path, err, err_len, note,
			  sizeof(note)) != PT_OK) {
		pt_error("reload failed, keeping the running configuration: %s", err);
		return PT_ERROR;
	}
	shard_configs_expire(s);
	pt_info("policy %s reloaded in %llu ms", s->group->cfg.policy_path,
		(unsigned long long)(pt_monotonic_ms() - t0));
	if (note[0] && s->id == 0)
		pt_warn("reload: changes to %s take effect at the next start", note);
	return PT_OK;
}

int shard_reload(struct shard *s)
{
	char err[1024];

	return shard_reload_err(s, err, sizeof(err));
}

/*
 * SIGHUP (on shard 0) and POST /api/admin/bump-config-epoch (on the shard
 * that took the request): this shard loads the policy first; only when
 * that succeeds does it tell the other shards, so a broken file is
 * reported once and no shard changes.  Each shard loads its own state on
 * its own thread, between events: connections and units in flight are
 * untouched.
 */
int shard_reload_all(struct shard *s, char *err, size_t err_len)
{
	if (shard_reload_err(s, err, err_len) != PT_OK)
		return PT_ERROR;
	for (unsigned i = 0; i < s->group->n; i++) {
		struct shard_msg *m;

		if (i == s->id)
			continue;
		if (!(m = calloc(1, sizeof(*m))))
			pt_panic("out of memory sending RELOAD");
		m->kind = SHARD_MSG_RELOAD;
		m->from = s->id;
		shard_mailbox_post(s, i, m); /* kept in order when the ring is full */
	}
	return PT_OK;
}

static void shard_handle_signal(struct shard *s, struct io_uring_cqe *cqe)
{
	struct signalfd_siginfo *si = (void *)s->signal_buf;

	if (cqe->res != (int)sizeof(*si)) {
		pt_error("signalfd read: %s", cqe->res < 0 ? strerror(-cqe->res) : "short read");
		shard_signal_arm(s);
		return;
	}
	if (si->ssi_signo == SIGHUP) {
		char err[1024];

		pt_info("SIGHUP: reloading %s", s->group->cfg.policy_path);
		if (s->state == SHARD_RUNNING)
			shard_reload_all(s, err, sizeof(err));
		shard_signal_arm(s);
		return;
	}
	pt_info("%s: draining (stop accepting, finish open transactions, last sync)",
		strsignal((int)si->ssi_signo));
	shard_broadcast_stop(s);
	shard_signal_arm(s); /* a second signal during the drain is harmless */
}

static void shard_handle_cqe(struct shard *s, struct io_uring_cqe *cqe)
{
	struct shard_op *op = io_uring_cqe_get_data(cqe);

	if (!op)
		return;
	switch (op->kind) {
	case SHARD_OP_ACCEPT:
		shard_acceptor_handle(pt_container_of(op, struct shard_acceptor, accept_op), cqe);
		break;
	case SHARD_OP_RECV:
		shard_stream_handle_recv(pt_container_of(op, struct shard_stream, recv_op), cqe);
		break;
	case SHARD_OP_SEND:
		shard_stream_handle_send(pt_container_of(op, struct shard_stream, send_op), cqe);
		break;
	case SHARD_OP_SPOOL_WRITE:
	case SHARD_OP_SPOOL_SYNC:
		shard_handle_spool(s, op, cqe);
		break;
	case SHARD_OP_LOG_WRITE:
		shard_handle_log(s, cqe);
		break;
	case SHARD_OP_MAILBOX:
		/* A wake-up from another shard: the rings are drained every iteration. */
		break;
	case SHARD_OP_MSG_RING:
		if (cqe->res < 0)
			pt_warn("MSG_RING: %s", strerror(-cqe->res));
		break;
	case SHARD_OP_SIGNAL:
		shard_handle_signal(s, cqe);
		break;
	case SHARD_OP_IGNORE:
		break;
	case SHARD_OP_DNS_POLL:
		shard_handle_dns_poll(s, pt_container_of(op, struct shard_dns_watch, op), cqe);
		break;
	case SHARD_OP_OUT_CONNECT:
		shard_handle_out_connect(pt_container_of(op, struct shard_out, connect_op), cqe);
		break;
	case SHARD_OP_OUT_RECV:
		shard_handle_out_recv(pt_container_of(op, struct shard_out, recv_op), cqe);
		break;
	case SHARD_OP_OUT_SEND:
		shard_handle_out_send(pt_container_of(op, struct shard_out, send_op), cqe);
		break;
	case SHARD_OP_BODY_READ:
		shard_handle_body_read(s, pt_container_of(op, struct shard_body_read, op), cqe);
		break;
	case SHARD_OP_SEG_UNLINK:
	case SHARD_OP_SEG_DONE:
		shard_handle_janitor(s, op, cqe);
		break;
	case SHARD_OP_HTTP_ACCEPT:
		shard_acceptor_handle(pt_container_of(op, struct shard_acceptor, accept_op), cqe);
		break;
	case SHARD_OP_HTTP_RECV:
		shard_stream_handle_recv(pt_container_of(op, struct shard_stream, recv_op), cqe);
		break;
	case SHARD_OP_HTTP_SEND:
		shard_stream_handle_send(pt_container_of(op, struct shard_stream, send_op), cqe);
		break;
	default:
		pt_panic("unknown op kind %u", op->kind);
	}
}

static unsigned shard_reap(struct shard *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&s->ring, head, cqe)
	{
		shard_handle_cqe(s, cqe);
		n++;
	}
	shard_outs_reap(s);
	io_uring_cq_advance(&s->ring, n);
	return n;
}

static bool shard_drained(struct shard *s)
{
	return s->n_conns == 0 && s->n_http_conns == 0 && s->n_out == 0 &&
	       !spool_batch_busy(s->spool) && !spool_batch_ready(s->spool) && shard_log_idle(s) &&
	       shard_loghook_idle(s) && !shard_home_janitor_busy(s);
}

static void shard_wait(struct shard *s)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	int64_t next = pt_wheel_next_ms(&s->wheel);
	int rc;

	if (s->state == SHARD_DRAINING) {
		int64_t left = (int64_t)s->drain_deadline_ms - (int64_t)pt_monotonic_ms();

		next = next < 0 ? left : PT_MIN(next, left);
		if (next < 0)
			next = 0;
	}
	if (next < 0) {
		rc = io_uring_submit_and_wait(&s->ring, 1);
	} else {
		ts.tv_sec = next / 1000;
		ts.tv_nsec = (next % 1000) * 1000000;
		rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		pt_panic("io_uring wait: %s", strerror(-rc));
}

static void shard_loop(struct shard *s)
{
	for (;;) {
		shard_reap(s);
		shard_mailbox_drain(s);
		pt_wheel_advance(&s->wheel, pt_monotonic_ms());
		shard_dns_kick(s);
		shard_loghook_kick(s); /* hook messages join the batch kicked next */
		shard_commit_kick(s);
		shard_log_kick(s);
		shard_mailbox_wake(s);
		if (s->state == SHARD_DRAINING) {
			if (shard_drained(s)) {
				/* Hand over what the last iteration prepared (wake-ups). */
				io_uring_submit(&s->ring);
				break;
			}
			if (pt_monotonic_ms() >= s->drain_deadline_ms) {
				pt_warn("drain deadline passed with %u connections in (and %u HTTP) and "
					"%u out open; closing them",
					s->n_conns, s->n_http_conns, s->n_out);
				shard_conns_abort(s);
				shard_http_abort(s);
				shard_outs_abort(s);
				/* Wait for the in-flight spool batch: its clients get their answer.
				 * And for a log write: its buffer must outlive it. */
				s->drain_deadline_ms = pt_monotonic_ms() + 1000;
				/* The aborts logged records: their hook messages join a batch. */
				shard_loghook_kick(s);
				shard_commit_kick(s);
				if (!spool_batch_busy(s->spool) && !shard_log_busy(s)) {
					io_uring_submit(&s->ring);
					break;
				}
			}
		}
		shard_wait(s);
	}
}

/*
 * Start-up barrier: report whether setup worked, then wait until every shard
 * has reported.  Returns true when all succeeded and the loop may run.  A
 * mutex and condition variable are fine here: this runs once, before any
 * traffic.
 */
static bool shard_started(struct shard *s, bool ok)
{
	struct shard_group *g = s->group;
	bool go;

	pthread_mutex_lock(&g->start_lock); /* start-up barrier only: never on a hot path */
	g->n_started++;
	if (!ok)
		g->n_failed++;
	pthread_cond_broadcast(&g->start_cond);
	while (!g->launch_done || g->n_started < g->n_launched)
		pthread_cond_wait(&g->start_cond, &g->start_lock);
	go = g->n_failed == 0 && g->n_launched == g->n;
	pthread_mutex_unlock(&g->start_lock);
	return go;
}

/* Live messages found by spool_open, kept until the ring is up. */
struct shard_recovered {
	struct spool_entry *entries;
	size_t n, cap;
};

static void shard_collect_entry(void *arg, const struct spool_entry *e)
{
	struct shard_recovered *r = arg;
	struct spool_entry *x;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;

		x = realloc(r->entries, cap * sizeof(*x));
		if (!x)
			pt_panic("out of memory recovering the spool");
		r->entries = x;
		r->cap = cap;
	}
	x = &r->entries[r->n++];
	*x = *e;
	x->states = NULL;
	if (e->n_states) {
		struct spool_rcpt_state *st = malloc(e->n_states * sizeof(*st));

		if (!st)
			pt_panic("out of memory recovering the spool");
		memcpy(st, e->states, e->n_states * sizeof(*st));
		x->states = st;
	}
}

static void shard_recovered_free(struct shard_recovered *r)
{
	for (size_t i = 0; i < r->n; i++)
		free((void *)r->entries[i].states);
	free(r->entries);
}

static void shard_housekeeping(struct pt_timer *t)
{
	struct shard *s = pt_container_of(t, struct shard, housekeeping_timer);

	pt_timer_add(&s->wheel, t, pt_monotonic_ms() + 1000);
	shard_home_housekeeping(s);
	shard_routes_housekeeping(s);
	shard_readies_housekeeping(s);
	shard_metrics_tick(s);
}

static int shard_setup(struct shard *s)
{
	const struct policy_config *pc;
	struct spool_config sc;
	struct shard_recovered rec = { 0 };
	char err[512];
	int rc;

	pt_idgen_init(&s->idgen, (uint16_t)s->id);
	pt_wheel_init(&s->wheel, pt_monotonic_ms());
	if (policy_load(&s->policy, s->group->cfg.policy_path, s->id, err, sizeof(err)) != PT_OK) {
		pt_error("%s", err);
		return PT_ERROR;
	}
	policy_set_event_timing(s->policy, shard_metrics_lua_event, s); /* lua_event_latency */
	pc = policy_config(s->policy);
	memset(&sc, 0, sizeof(sc));
	sc.path = pc->spool_path;
	sc.shard = s->id;
	if (spool_open(&s->spool, &sc, shard_collect_entry, &rec, err, sizeof(err)) != PT_OK) {
		pt_error("spool: %s", err);
		shard_recovered_free(&rec);
		return PT_ERROR;
	}
	pt_info("spool %s/%u: %zu live messages recovered", pc->spool_path, s->id, rec.n);
	if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0 || !s->hostname[0])
		snprintf(s->hostname, sizeof(s->hostname), "localhost");
	shard_route_init(s);
	if (shard_ring_init(s) != PT_OK || shard_buffers_init(s) != PT_OK ||
	    shard_dns_init(s) != PT_OK || shard_home_init(s) != PT_OK) {
		shard_recovered_free(&rec);
		return PT_ERROR;
	}
	rc = shard_home_recover(s, rec.entries, rec.n);
	shard_recovered_free(&rec);
	if (rc != PT_OK)
		return PT_ERROR;
	pt_timer_init(&s->housekeeping_timer, shard_housekeeping);
	pt_timer_add(&s->wheel, &s->housekeeping_timer, pt_monotonic_ms() + 1000);
	s->spool_write_op.kind = SHARD_OP_SPOOL_WRITE;
	s->spool_sync_op.kind = SHARD_OP_SPOOL_SYNC;
	s->log_op.kind = SHARD_OP_LOG_WRITE;
	s->mailbox_op.kind = SHARD_OP_MAILBOX;
	s->msg_ring_op.kind = SHARD_OP_MSG_RING;
	if (shard_loghook_open(s) != PT_OK) {
		pt_error("log hooks: out of memory");
		return PT_ERROR;
	}
	if (shard_log_open(s) != PT_OK || shard_signals_init(s) != PT_OK ||
	    shard_listeners_open(s) != PT_OK || shard_http_open(s) != PT_OK)
		return PT_ERROR;
	shard_disk_watch_start(s);
	return PT_OK;
}

static void shard_pin(struct shard *s)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int rc;

	if (!s->group->cfg.pin || ncpu <= 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(s->id % (unsigned)ncpu, &set);
	rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc)
		pt_warn("cannot pin to CPU %ld: %s", s->id % ncpu, strerror(rc));
}

static void shard_teardown(struct shard *s)
{
	shard_outs_free(s);
	shard_readies_free(s);
	shard_units_free(s);
	shard_admin_free(s);
	shard_trace_free(s);
	shard_route_free(s);
	shard_sources_free(s);
	shard_dns_free(s);
	shard_home_free(s);
	tls_ctx_free(s->tls_client_verify);
	tls_ctx_free(s->tls_client_insecure);
	tls_thread_cleanup();
	shard_listeners_close(s);
	shard_http_close(s);
	shard_log_close(s);
	shard_loghook_close(s);
	if (s->spool)
		spool_close(s->spool);
	free(s->janitor);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->ring.ring_fd > 0)
		io_uring_queue_exit(&s->ring);
	shard_buffers_free(s);
	if (s->policy)
		policy_free(s->policy);
	free(s->wake);
	s->wake = NULL;
	free(s->metric_rows);
	s->metric_rows = NULL;
}

static void *shard_main(void *arg)
{
	struct shard *s = arg;
	char name[32];

	snprintf(name, sizeof(name), "shard %u", s->id);
	pt_log_set_thread_name(name);
	shard_pin(s);
	if (shard_setup(s) != PT_OK) {
		s->exit_status = 1;
		shard_started(s, false);
		shard_teardown(s);
		return NULL;
	}
	if (!shard_started(s, true)) {
		/* Another shard failed: stop without serving. */
		shard_teardown(s);
		return NULL;
	}
	s->state = SHARD_RUNNING;
	pt_info("serving (ring flags 0x%x%s)", s->ring_flags,
		(s->ring_flags & IORING_SETUP_DEFER_TASKRUN) ? ": SINGLE_ISSUER|DEFER_TASKRUN" : "");
	shard_loop(s);
	s->state = SHARD_DONE;
	shard_teardown(s);
	pt_info("stopped");
	return NULL;
}

struct shard_group *shard_group_new(const struct shard_group_config *cfg)
{
	struct shard_group *g = calloc(1, sizeof(*g));
	unsigned n = cfg->n_shards;

	if (!g)
		return NULL;
	g->cfg = *cfg;
	if (!g->cfg.drain_ms)
		g->cfg.drain_ms = 4500;
	g->n = n;
	g->n_joinable = n;
	g->shards = calloc(n, sizeof(*g->shards));
	g->rings = calloc((size_t)n * n, sizeof(*g->rings));
	g->metrics = shard_metrics_new(n);
	if (!g->shards || !g->rings || !g->metrics)
		goto fail;
	for (unsigned from = 0; from < n; from++)
		for (unsigned to = 0; to < n; to++)
			if (from != to && !(g->rings[from * n + to] = pt_spsc_new(SHARD_SPSC_CAPACITY)))
				goto fail;
	for (unsigned i = 0; i < n; i++) {
		struct shard *s = &g->shards[i];

		s->group = g;
		s->id = i;
		s->metrics = pt_metrics_shard(g->metrics, i);
		s->signal_fd = -1;
		s->wake = calloc(n, sizeof(bool));
		s->overflow_head = calloc(n, sizeof(*s->overflow_head));
		s->overflow_tail = calloc(n, sizeof(*s->overflow_tail));
		if (!s->wake || !s->overflow_head || !s->overflow_tail)
			goto fail;
	}
	pthread_mutex_init(&g->start_lock, NULL);
	pthread_cond_init(&g->start_cond, NULL);
	return g;
fail:
	shard_group_free(g);
	return NULL;
}

int shard_group_start(struct shard_group *g)
{
	unsigned launched = 0;
	bool ok;

	for (; launched < g->n; launched++) {
		int rc = pthread_create(&g->shards[launched].thread, NULL, shard_main,
					&g->shards[launched]);
		if (rc) {
			pt_error("pthread_create: %s", strerror(rc));
			break;
		}
	}
	pthread_mutex_lock(&g->start_lock); /* main thread, start-up barrier only */
	g->n_launched = launched;
	g->launch_done = true;
	pthread_cond_broadcast(&g->start_cond);
	while (g->n_started < launched)
		pthread_cond_wait(&g->start_cond, &g->start_lock);
	ok = launched == g->n && g->n_failed == 0;
	pthread_mutex_unlock(&g->start_lock);
	if (ok)
		return PT_OK;
	/* Every shard saw the failure at the barrier and is tearing down. */
	for (unsigned i = 0; i < launched; i++)
		pthread_join(g->shards[i].thread, NULL);
	g->n_joinable = 0;
	return PT_ERROR;
}

int shard_group_join(struct shard_group *g)
{
	int failed = 0;

	for (unsigned i = 0; i < g->n_joinable; i++) {
		pthread_join(g->shards[i].thread, NULL);
		failed += g->shards[i].exit_status != 0;
	}
	return failed;
}

/* A message left in a ring or an overflow list at exit. */
static void shard_msg_destroy(void *p)
{
	struct shard_msg *m = p;

	if (m->kind == SHARD_MSG_UNIT)
		shard_unit_destroy(m->unit);
	if (m->kind == SHARD_MSG_BODY && m->body) {
		pt_message_clear(m->body);
		free(m->body);
	}
	if (m->kind == SHARD_MSG_ADMIN && m->admin) {
		shard_admin_entry_free(m->admin);
	}
	free(m->text);
	free(m->trace);
	free(m);
}

void shard_group_free(struct shard_group *g)
{
	if (!g)
		return;
	if (g->rings) {
		unsigned n = g->cfg.n_shards;

		for (size_t i = 0; i < (size_t)n * n; i++) {
			void *m;

			if (!g->rings[i])
				continue;
			while ((m = pt_spsc_pop(g->rings[i])))
				shard_msg_destroy(m);
			pt_spsc_free(g->rings[i]);
		}
		free(g->rings);
	}
	for (unsigned i = 0; g->shards && i < g->n; i++) {
		struct shard *s = &g->shards[i];

		for (unsigned to = 0; s->overflow_head && to < g->n; to++)
			while (s->overflow_head[to]) {
				struct shard_msg *m = s->overflow_head[to];

				s->overflow_head[to] = m->next;
				shard_msg_destroy(m);
			}
		free(s->overflow_head);
		free(s->overflow_tail);
	}
	free(g->shards);
	pt_metrics_free(g->metrics);
	free(g);
}
