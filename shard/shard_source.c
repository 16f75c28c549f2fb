/*
 * shard_source.c -- egress sources and pools on a shard: which source sends
 * each message, and what a source is (the address to bind, its EHLO name,
 * its port).
 *
 * Sources and pools come from the policy (get_egress_source and
 * get_egress_pool, or define_egress_source / define_egress_pool at init:
 * policy/policy_source.c) and are cached here by name for their ttl
 * (KumoMTA's default: 60 s).  A name the policy cannot resolve is cached
 * too, with its error, for SHARD_SOURCE_RETRY_MS, so a broken policy costs
 * one call (and one error line) per name per interval, not one per
 * message.  A reload expires every entry (shard_sources_expire).  Entries
 * stay until the shard stops: there are as many as names the configuration
 * uses.
 *
 * Choosing the source.  When a unit becomes due (shard_unit_route), before
 * its site is known, the pool of its scheduled queue (make_queue_config
 * egress_pool) names the candidates:
 *
 *   no pool, or "unspecified"   the "unspecified" source: no bind, the host
 *                               name (KumoMTA's default);
 *   otherwise                   smooth weighted round robin over the pool's
 *                               entries (shard_wrr_pick), per scheduled
 *                               queue on this shard.
 *
 * Per scheduled queue because KumoMTA scopes its round robin so; per shard
 * because a queue's units become due on the shards that hold them and
 * sharing one counter would take a lock or a message per pick.  Each
 * shard's sequence is exact (every sum-of-weights picks give each source
 * exactly its weight), so N shards are off the configured ratio by at most
 * N partial cycles.  Smooth (nginx's upstream algorithm) rather than
 * KumoMTA's interleaved LVS form: 3:1 comes out A A B A, so the lighter
 * source is never left idle for a long run of the heavier one.  The scores
 * start again when the pool's entries change (a new generation) or the
 * scheduled queue is forgotten after being idle.
 *
 * Per message: the recipients of one message in one queue get one source,
 * so they can still share a transaction.  The queue remembers the last
 * message (its id) and its pick; recipients of a message become
 * due together and are routed one after another, so this catches them
 * without keeping a map.
 *
 * A pool is usable when it resolves, every source in it resolves (KumoMTA
 * resolves each one when it resolves the pool), and some entry has a
 * weight above 0.  Otherwise the unit gets TransientFailure 451 4.3.5
 * ("system incorrectly configured") with the reason, and waits for its
 * retry like any other deferral.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_SOURCE_RETRY_MS 60000

struct shard_pool {
	char *name;
	struct policy_egress_pool cfg;
	char *error; /* NULL when usable */
	uint64_t expires_ms;
	uint64_t generation; /* changes when the entries (names, weights, order) do */
};

static char *source_strdup(const char *s)
{
	char *copy = strdup(s);

	if (!copy)
		pt_panic("out of memory for egress sources");
	return copy;
}

/* ---- Sources ---- */

static void source_set_error(struct shard_source *src, const char *err)
{
	free(src->error);
	src->error = source_strdup(err);
	pt_error("egress source '%s': %s", src->name, err);
	src->expires_ms = pt_monotonic_ms() + SHARD_SOURCE_RETRY_MS;
}

static void source_load(struct shard *s, struct shard_source *src)
{
	struct policy_egress_source cfg;
	char err[600];

	policy_egress_source_free(&src->cfg);
	free(src->error);
	src->error = NULL;
	src->has_bind = false;
	if (policy_get_egress_source(s->policy, src->name, &cfg, err, sizeof(err)) != PT_OK) {
		source_set_error(src, err);
		return;
	}
	src->cfg = cfg;
	src->expires_ms = pt_monotonic_ms() + cfg.ttl_ms;
	if (cfg.source_address) {
		/* The policy checked it; this only turns it into a sockaddr. */
		if (dns_parse_ip(cfg.source_address, &src->bind) != PT_OK) {
			snprintf(err, sizeof(err), "source_address '%s' is not an IP address",
				 cfg.source_address);
			source_set_error(src, err);
			return;
		}
		src->has_bind = true;
	}
}

struct shard_source *shard_source_get(struct shard *s, const char *name)
{
	struct shard_source *src = pt_strmap_get(&s->sources, name);

	if (!src) {
		src = calloc(1, sizeof(*src));
		if (!src)
			pt_panic("out of memory for egress source %s", name);
		src->name = source_strdup(name);
		if (pt_strmap_put(&s->sources, src->name, src) != PT_OK)
			pt_panic("out of memory for egress source %s", name);
		source_load(s, src);
	} else if (pt_monotonic_ms() >= src->expires_ms) {
		source_load(s, src);
	}
	return src;
}

static void source_free(struct shard_source *src)
{
	policy_egress_source_free(&src->cfg);
	free(src->error);
	free(src->name);
	free(src);
}

/* ---- Pools ---- */

static bool pool_entries_equal(const struct policy_egress_pool *a,
			       const struct policy_egress_pool *b)
{
	if (a->n_entries != b->n_entries)
		return false;
	for (size_t i = 0; i < a->n_entries; i++)
		if (a->entries[i].weight != b->entries[i].weight ||
		    strcmp(a->entries[i].name, b->entries[i].name) != 0)
			return false;
	return true;
}

static void pool_set_error(struct shard_pool *pool, const char *err)
{
	free(pool->error);
	pool->error = source_strdup(err);
	pt_error("egress pool '%s': %s", pool->name, err);
	pool->expires_ms = pt_monotonic_ms() + SHARD_SOURCE_RETRY_MS;
}

static void pool_load(struct shard *s, struct shard_pool *pool)
{
	struct policy_egress_pool cfg;
	char err[800];

	free(pool->error);
	pool->error = NULL;
	if (policy_get_egress_pool(s->policy, pool->name, &cfg, err, sizeof(err)) != PT_OK) {
		pool_set_error(pool, err);
		return;
	}
	if (!pool_entries_equal(&cfg, &pool->cfg))
		pool->generation = ++s->pool_generation;
	policy_egress_pool_free(&pool->cfg);
	pool->cfg = cfg;
	pool->expires_ms = pt_monotonic_ms() + cfg.ttl_ms;
	for (size_t i = 0; i < cfg.n_entries; i++) {
		struct shard_source *src = shard_source_get(s, cfg.entries[i].name);

		if (src->error) {
			snprintf(err, sizeof(err), "source '%s': %s", src->name, src->error);
			pool_set_error(pool, err);
			return;
		}
	}
}

static struct shard_pool *pool_get(struct shard *s, const char *name)
{
	struct shard_pool *pool = pt_strmap_get(&s->pools, name);

	if (!pool) {
		pool = calloc(1, sizeof(*pool));
		if (!pool)
			pt_panic("out of memory for egress pool %s", name);
		pool->name = source_strdup(name);
		if (pt_strmap_put(&s->pools, pool->name, pool) != PT_OK)
			pt_panic("out of memory for egress pool %s", name);
		pool_load(s, pool);
	} else if (pt_monotonic_ms() >= pool->expires_ms) {
		pool_load(s, pool);
	}
	return pool;
}

static void pool_free(struct shard_pool *pool)
{
	policy_egress_pool_free(&pool->cfg);
	free(pool->error);
	free(pool->name);
	free(pool);
}

/* ---- Choosing ---- */

size_t shard_wrr_pick(int64_t *current, const struct policy_egress_pool_entry *entries, size_t n)
{
	size_t best = SIZE_MAX;
	int64_t total = 0;

	for (size_t i = 0; i < n; i++) {
		if (entries[i].weight == 0)
			continue;
		current[i] += entries[i].weight;
		total += entries[i].weight;
		/* Ties go to the earlier entry, so the sequence is deterministic. */
		if (best == SIZE_MAX || current[i] > current[best])
			best = i;
	}
	if (best != SIZE_MAX)
		current[best] -= total;
	return best;
}

/* source NULL: the pool gave none (the unit fails; its log record says
 * the pool and a null source). */
static void unit_set_source(struct shard_unit *u, const char *source, const char *pool)
{
	free(u->source);
	free(u->pool);
	u->source = source ? source_strdup(source) : NULL;
	u->pool = pool ? source_strdup(pool) : NULL;
}

/* Fresh scores for the pool's current entries. */
static void sched_wrr_reset(struct shard_sched *sq, const struct shard_pool *pool)
{
	size_t n = pool->cfg.n_entries;

	free(sq->wrr);
	sq->wrr = n ? calloc(n, sizeof(*sq->wrr)) : NULL;
	if (n && !sq->wrr)
		pt_panic("out of memory for the round robin of queue %s", sq->name);
	sq->n_wrr = n;
	sq->wrr_generation = pool->generation;
	sq->have_last = false;
}

int shard_source_pick(struct shard *s, struct shard_sched *sq, struct shard_unit *u,
		      struct smtp_client_reply *r)
{
	const char *name = sq->cfg.egress_pool;
	struct shard_pool *pool;
	size_t i;

	if (!name || strcmp(name, POLICY_SOURCE_UNSPECIFIED) == 0) {
		unit_set_source(u, POLICY_SOURCE_UNSPECIFIED, name);
		return PT_OK;
	}
	pool = pool_get(s, name);
	unit_set_source(u, NULL, name);
	if (pool->error) {
		smtp_client_local_reply(r, 451, 3, 5, NULL, "egress pool '%s' is not usable: %s",
					name, pool->error);
		return PT_ERROR;
	}
	if (sq->wrr_generation != pool->generation || sq->n_wrr != pool->cfg.n_entries)
		sched_wrr_reset(sq, pool);
	if (sq->have_last && strcmp(sq->last_id, u->id) == 0) {
		i = sq->last_pick;
	} else {
		i = shard_wrr_pick(sq->wrr, pool->cfg.entries, pool->cfg.n_entries);
		if (i == SIZE_MAX) {
			smtp_client_local_reply(
			    r, 451, 3, 5, NULL,
			    "egress pool '%s' has no source with a weight above 0", name);
			return PT_ERROR;
		}
		sq->have_last = true;
		memcpy(sq->last_id, u->id, sizeof(sq->last_id));
		sq->last_pick = i;
	}
	unit_set_source(u, pool->cfg.entries[i].name, name);
	return PT_OK;
}

/* ---- Life ---- */

void shard_sources_expire(struct shard *s)
{
	struct shard_source *src;
	struct shard_pool *pool;
	size_t pos = 0;

	while ((src = pt_strmap_next(&s->sources, &pos)))
		src->expires_ms = 0;
	pos = 0;
	while ((pool = pt_strmap_next(&s->pools, &pos)))
		pool->expires_ms = 0;
}

void shard_sources_free(struct shard *s)
{
	struct shard_source *src;
	struct shard_pool *pool;
	size_t pos = 0;

	while ((src = pt_strmap_next(&s->sources, &pos)))
		source_free(src);
	pt_strmap_free(&s->sources);
	pos = 0;
	while ((pool = pt_strmap_next(&s->pools, &pos)))
		pool_free(pool);
	pt_strmap_free(&s->pools);
}
