/*
 * policy.h -- one LuaJIT state per shard running the user's policy file.
 *
 * Loading runs the file's top-level code, which registers handlers with
 * kumo.on()/petrel.on(), then the `init` event, whose calls
 * (start_esmtp_listener, define_spool, configure_local_logs, ...) fill a
 * struct policy_config.  After that the shard calls event functions such as
 * policy_smtp_server_message_received().  Every Lua error is reported with
 * file:line.  The state has no os.execute, io.popen or other way to block
 * or start processes.
 */
#ifndef PT_POLICY_H
#define PT_POLICY_H

#include "core/cidr.h"
#include "core/message.h"

struct policy;

struct policy_listener {
	char *listen;		   /* "127.0.0.1:2525" or "[::1]:2525" as given */
	char *hostname;		   /* default: gethostname() */
	char *banner;		   /* NULL -> default */
	struct pt_cidr_list relay_hosts; /* default: 127.0.0.1 */
	uint64_t max_message_size; /* default 20 MiB (KumoMTA) */
	unsigned max_recipients_per_message; /* default 100 */
	unsigned max_connections;  /* default 32768 */
	char *tls_certificate;	   /* PEM path; NULL -> self-signed generated at start */
	char *tls_private_key;
	uint64_t client_timeout_ms; /* idle command timeout, default 60 s (KumoMTA) */
	uint64_t data_timeout_ms;   /* DATA inactivity, default 300 s */
};

struct policy_config {
	struct policy_listener *listeners;
	size_t n_listeners;
	char *spool_path; /* define_spool{name='data', path=...}; default "./var/spool" */
	char *log_dir;	  /* configure_local_logs{log_dir=...}; NULL: no logs */
};

/* A reply decided by policy (kumo.reject, or 451 on a Lua error). */
struct policy_reply {
	int code;	/* e.g. 550 */
	char text[512]; /* "5.7.1 go away" (enhanced code first) */
};

/*
 * Load path into a new state for shard, run it and the init event.
 * PT_OK with *out, or PT_ERROR with err = "file:line: message".
 */
int policy_load(struct policy **out, const char *path, unsigned shard, char *err, size_t err_len);
void policy_free(struct policy *p);
/* The configuration init produced (owned by p). */
const struct policy_config *policy_config(const struct policy *p);

/*
 * Run smtp_server_message_received(msg) if the policy registered it.
 * PT_OK: accept (the handler may have edited msg: meta, headers).
 * PT_DECLINED: kumo.reject() was called; reply filled.
 * PT_ERROR: the handler raised an error; reply is 451 4.3.0, and the error
 *           (file:line: message) was logged.
 */
int policy_smtp_server_message_received(struct policy *p, struct pt_message *msg,
					struct policy_reply *reply);

#endif
