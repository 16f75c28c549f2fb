/*
 * shard.h -- the per-core runtime, as petreld's main sees it.
 *
 * petreld creates a shard group (N shards, the rings between every ordered
 * pair), starts one pinned thread per shard and joins them.  Everything a
 * shard does happens on its own thread; see shard.c for the loop.
 */
#ifndef PT_SHARD_H
#define PT_SHARD_H

#include "core/pt.h"

struct shard_group;

/* The listen() backlog of every listener socket (the kernel caps it at
 * net.core.somaxconn; petreld warns at start when that is lower). */
#define SHARD_LISTEN_BACKLOG 4096

struct shard_group_config {
	const char *policy_path;
	unsigned n_shards;
	bool pin;		 /* pin shard i to online CPU i % ncpu */
	const char *tls_cert_pem; /* for listeners without their own certificate; not copied */
	size_t tls_cert_len;
	const char *tls_key_pem;
	size_t tls_key_len;
	const char *nodeid;	 /* UUID text for log records; not copied */
	uint64_t drain_ms;	 /* how long a drain may take (default 4500) */
};

/* Allocate the group and the SPSC rings.  NULL on allocation failure. */
struct shard_group *shard_group_new(const struct shard_group_config *cfg);
/* Compile body_template text and say what is wrong (policy_template_check_fn,
 * given to policy_set_template_check before the policy loads). */
int shard_out_http_template_check(const char *text, size_t len, char *err, size_t err_len);
/*
 * Start every shard thread and wait for all of them to finish start-up
 * (policy loaded, spool recovered, listeners bound).  PT_OK, or PT_ERROR
 * when one failed (the reason was logged; the ones that started are stopped).
 * SIGTERM, SIGINT and SIGHUP must already be blocked in the calling thread
 * (the threads inherit the mask; shard 0 reads them from a signalfd).
 */
int shard_group_start(struct shard_group *g);
/* Wait for every shard thread to end (after a signal).  Returns the number
 * of shards that ended with an error. */
int shard_group_join(struct shard_group *g);
void shard_group_free(struct shard_group *g);

#endif
