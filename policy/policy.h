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
	char *listen;			     /* "127.0.0.1:2525" or "[::1]:2525" as given */
	char *hostname;			     /* default: gethostname() */
	char *banner;			     /* NULL -> default */
	struct pt_cidr_list relay_hosts;     /* default: 127.0.0.1 */
	uint64_t max_message_size;	     /* default 20 MiB (KumoMTA) */
	unsigned max_recipients_per_message; /* default 100 */
	unsigned max_connections;	     /* default 32768 */
	char *tls_certificate;		     /* PEM path; NULL -> self-signed generated at start */
	char *tls_private_key;
	uint64_t client_timeout_ms; /* idle command timeout, default 60 s (KumoMTA) */
	uint64_t data_timeout_ms;   /* DATA inactivity, default 300 s */
};

struct policy_config {
	struct policy_listener *listeners;
	size_t n_listeners;
	char *spool_path; /* define_spool{name='data', path=...}; default "./var/spool" */
	char *log_dir;	  /* configure_local_logs{log_dir=...}; NULL: no logs */
	/* kumo.dns.configure_resolver{name_servers = {...}}: "ip:port" strings
	 * (a {socket_addr = "ip:port"} table is accepted too).  0: the system's. */
	char **dns_name_servers;
	size_t n_dns_name_servers;
	uint64_t dns_timeout_ms; /* configure_resolver options.timeout; 0: default */
};

/* A rate such as "100/s", "500/min", "10000/h", "5/d" (KumoMTA's syntax):
 * n events per period_ms.  n == 0: unlimited (the option was not given). */
struct policy_rate {
	uint64_t n;
	uint64_t period_ms;
};

/* kumo.make_queue_config{...}, from the get_queue_config event. */
struct policy_queue_config {
	uint64_t retry_interval_ms;	/* first retry delay, default 20 min; doubles per attempt */
	uint64_t max_retry_interval_ms; /* cap on the doubled delay; 0: no cap */
	uint64_t max_age_ms;		/* default 7 days: then Expiration */
	struct policy_rate max_message_rate; /* per queue; 0: unlimited */
	char *egress_pool;		     /* NULL: the default pool ("unspecified" source) */
	/* protocol = {smtp = {mx_list = {...}}}: deliver to these hosts in this
	 * order instead of the MX records.  Each entry is checked and kept as
	 * written: "host", "host:port", "ip", "ip:port", "[ip]", "[ip]:port" or
	 * a bare IPv6 address; {name=, addr=} tables are reduced to their addr
	 * (an IP address, optionally with a port).  NULL/0: by MX. */
	char **mx_list;
	size_t n_mx_list;
};

/* KumoMTA's enable_tls values (net/smtp_client.h has the same order). */
enum policy_tls {
	POLICY_TLS_OPPORTUNISTIC = 0,
	POLICY_TLS_OPPORTUNISTIC_INSECURE,
	POLICY_TLS_REQUIRED,
	POLICY_TLS_REQUIRED_INSECURE,
	POLICY_TLS_DISABLED,
};

/* kumo.make_egress_path{...}, from the get_egress_path_config event.
 * Defaults are KumoMTA's. */
struct policy_egress_path {
	unsigned connection_limit;		/* 32 */
	struct policy_rate max_message_rate;	/* unlimited */
	struct policy_rate max_connection_rate; /* unlimited */
	unsigned max_deliveries_per_connection; /* 1024 */
	unsigned max_recipients_per_batch;	/* 100 */
	enum policy_tls enable_tls;		/* Opportunistic */
	bool enable_pipelining;			/* true */
	uint64_t idle_timeout_ms;		/* 60 s (KumoMTA's docs; its code says 5 s) */
	char *ehlo_domain;			/* NULL: the machine's host name */
	uint16_t smtp_port;			/* 25 */
	uint64_t connect_timeout_ms;		/* 60 s */
	uint64_t banner_timeout_ms;		/* 60 s */
	uint64_t ehlo_timeout_ms;		/* 300 s */
	uint64_t starttls_timeout_ms;		/* 5 s */
	uint64_t mail_from_timeout_ms;		/* 300 s */
	uint64_t rcpt_to_timeout_ms;		/* 300 s */
	uint64_t data_timeout_ms;		/* 300 s */
	uint64_t data_dot_timeout_ms;		/* 300 s */
	uint64_t rset_timeout_ms;		/* 5 s */
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
/*
 * Reload: load path into a new state (top-level code and init, as at
 * start) and, when that succeeds, replace *pp with it and free the old
 * one.  The running configuration (listeners, spool, logs, resolver) is
 * kept: init settings apply at start only; note gets the names of the
 * calls whose settings changed ("" when none), so the caller can say so.
 * PT_OK, or PT_ERROR with err as policy_load and *pp untouched.  The
 * caller must hold no reference into the old Lua state (run it between
 * events).
 */
int policy_reload(struct policy **pp, const char *path, char *err, size_t err_len, char *note,
		  size_t note_len);
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

/*
 * get_queue_config(domain, tenant, campaign, routing_domain) -> make_queue_config.
 * Any argument may be NULL (passed as nil).  Without a handler, or when it
 * returns nil (KumoMTA's rule), out holds the defaults.  PT_OK (out filled;
 * release with policy_queue_config_free), or PT_ERROR with err =
 * "file:line: message" (a raised error where it was raised; a value that is
 * not a make_queue_config result at the handler's definition); out then
 * holds the defaults, so using or freeing it is safe either way.
 */
int policy_get_queue_config(struct policy *p, const char *domain, const char *tenant,
			    const char *campaign, const char *routing_domain,
			    struct policy_queue_config *out, char *err, size_t err_len);
/* KumoMTA's defaults; nothing allocated. */
void policy_queue_config_defaults(struct policy_queue_config *out);
/* Free q's strings; q then holds the defaults (freeing it again is harmless). */
void policy_queue_config_free(struct policy_queue_config *q);

/*
 * get_egress_path_config(routing_domain, egress_source, site_name) ->
 * make_egress_path.  Same contract as policy_get_queue_config.
 */
int policy_get_egress_path_config(struct policy *p, const char *routing_domain,
				  const char *egress_source, const char *site_name,
				  struct policy_egress_path *out, char *err, size_t err_len);
/* KumoMTA's defaults (listed above); nothing allocated. */
void policy_egress_path_defaults(struct policy_egress_path *out);
/* Free e's strings; e then holds the defaults. */
void policy_egress_path_free(struct policy_egress_path *e);

/* Parse a rate: "<n>/<period>" where the period is a unit (s, sec, second,
 * m, min, minute, h, hr, hour, d, day) optionally preceded by a count
 * ("100/10s"), as KumoMTA's throttle specs; n may hold "_" or ","
 * separators ("1,000/h"), a "local:" prefix is accepted, and spaces around
 * the parts are allowed.  PT_OK (n >= 1, period_ms >= 1000), or PT_ERROR
 * with a static reason in *why (out untouched). */
int policy_rate_parse(const char *s, struct policy_rate *out, const char **why);

/* The string value of a meta JSON text (as stored by set_meta): a JSON
 * string unescaped into out (NUL-terminated; when longer than out_len - 1
 * bytes, cut at the last whole UTF-8 character that fits), a number or
 * boolean as its JSON text.  PT_OK, or PT_ERROR (out "" when out_len > 0)
 * for null, objects, arrays, a string holding \u0000, bad text, a NULL
 * json or out_len 0. */
int policy_meta_string(const char *json, char *out, size_t out_len);

#endif
