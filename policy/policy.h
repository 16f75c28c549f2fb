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

/* kumo.start_http_listener{...} (policy_http.c).  Defaults are KumoMTA's. */
struct policy_http_listener {
	char *listen;	       /* default "127.0.0.1:8000" */
	char *hostname;	       /* default: gethostname() */
	bool use_tls;	       /* TLS from the first byte (HTTPS) */
	char *tls_certificate; /* PEM path; NULL -> self-signed generated at start */
	char *tls_private_key;
	struct pt_cidr_list trusted_hosts; /* default 127.0.0.1 and ::1 */
	uint64_t request_body_limit;	   /* octets, default 2 MiB; 413 past it */
};

struct policy_config {
	struct policy_listener *listeners;
	size_t n_listeners;
	struct policy_http_listener *http_listeners;
	size_t n_http_listeners;
	char *spool_path; /* define_spool{name='data', path=...}; default "./var/spool" */
	char *log_dir;	  /* configure_local_logs{log_dir=...}; NULL: no logs */
	/* configure_local_logs rotation and compression (KumoMTA's names). */
	uint64_t log_max_file_size;	      /* uncompressed bytes per segment, default 1e9 */
	uint64_t log_max_segment_duration_ms; /* 0: no age limit (the default) */
	int log_compression_level;	      /* 0: zstd's default (3), else 1 to 21 */
	/* kumo.dns.configure_resolver{name_servers = {...}}: "ip:port" strings
	 * (a {socket_addr = "ip:port"} table is accepted too).  0: the system's. */
	char **dns_name_servers;
	size_t n_dns_name_servers;
	uint64_t dns_timeout_ms; /* configure_resolver options.timeout; 0: default */
	/* configure_log_hook{name = ...}: the hooks every log record is offered
	 * to (should_enqueue_log_record), in the order configured. */
	char **log_hooks;
	size_t n_log_hooks;
	/* headers = {...}: configure_local_logs's (a second call replaces
	 * them) and every hook's; log_headers is their union, each name once
	 * (case-insensitively; pointers into the two lists, not owned): the
	 * fields every record captures (pt_message_capture_headers).
	 * n_log_headers 0: records carry {}. */
	char **log_local_headers, **log_hook_headers;
	size_t n_log_local_headers, n_log_hook_headers;
	char **log_headers;
	size_t n_log_headers;
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
	/* protocol = {http = {...}}: deliver by HTTP request instead (NULL: SMTP). */
	struct policy_queue_http *http;
	/* protocol = {amqp = {...}}: publish to an AMQP broker instead (NULL: not). */
	struct policy_queue_amqp *amqp;
};

struct policy_http_header {
	char *name, *value;
};

/* make_queue_config's protocol.http (policy_queue_http.c); every string malloc'd. */
struct policy_queue_http {
	char *url;	    /* as written */
	bool tls;	    /* https:// */
	bool accept_invalid_certs; /* https: any certificate (KumoMTA's http client option) */
	char *host;	    /* the URL's host: a name or an IP (IPv6 without brackets) */
	uint16_t port;	    /* the URL's, or 80 (https: 443) */
	char *connect;	    /* "host:port" or "[v6]:port": where to connect */
	char *site;	    /* "http(s)://host:port": the ready queue's site */
	char *host_field;   /* the Host header: host, with ":port" unless the default */
	char *path;	    /* origin form with the query: "/hook?x=1" */
	char *method;	    /* POST (default), PUT or PATCH */
	char *content_type; /* default message/rfc822 */
	struct policy_http_header *headers; /* in name order */
	size_t n_headers;
	char *body_template; /* NULL: the message itself is the body */
	uint32_t batch_size; /* messages per request, default 1 */
	uint64_t timeout_ms; /* a request until its whole response, default 60 s */
};

/* make_queue_config's protocol.amqp (policy_queue_amqp.c); every string malloc'd. */
struct policy_queue_amqp {
	char *url;		       /* as written */
	char *user, *password, *vhost; /* the URL's (percent-decoded; guest, guest, "/") */
	char *host;		       /* a name or an IP (IPv6 without brackets) */
	uint16_t port;		       /* the URL's, or 5672 */
	char *connect;		       /* "host:port" or "[v6]:port": where to connect */
	char *site;	     /* the ready queue's: "amqp://user@host:port/vhost[?declare=q]" */
	char *exchange;	     /* "" (default) names the default exchange */
	char *routing_key;   /* on the default exchange: the queue's name */
	bool declare_queue;  /* declare routing_key as a durable queue (exchange "") */
	bool mandatory;	     /* unroutable messages come back and are retried */
	char *content_type;  /* NULL: none */
	uint32_t window;     /* unconfirmed publishes per connection, default 64 */
	uint64_t timeout_ms; /* handshake, and an ack awaited, default 60 s */
};

/*
 * Shaping automation (KumoMTA's traffic-shaping automation, run in the
 * shard instead of a separate daemon): a rule whose regex matches a
 * response of the path triggers its actions for `duration`.  Parsed and
 * checked by make_egress_path's `automation` key (policy_automation.c);
 * immutable once made and reference-counted, so every copy of a path
 * config shares one (one shard uses it: no atomics).
 */
enum policy_auto_kind { POLICY_AUTO_SUSPEND, POLICY_AUTO_SET_CONFIG };
struct policy_egress_path;
struct policy_auto_action {
	enum policy_auto_kind kind;
	int field;			  /* SET_CONFIG: policy_egress_field_copy's index */
	char *text;			  /* "Suspend", "SetConfig connection_limit=1": for logs */
	struct policy_egress_path *value; /* SET_CONFIG: a path with that field set */
};
struct policy_auto_rule {
	char *text;   /* the regexes as written, for logs */
	void **regex; /* pcre2_code * each */
	size_t n_regex;
	struct policy_auto_action *actions;
	size_t n_actions;
	uint64_t threshold_n;	      /* 0: Immediate; else n matches ... */
	uint64_t threshold_period_ms; /* ... within this period */
	uint64_t duration_ms;
	bool match_internal; /* also Petrel's own responses (connection failures...) */
};
struct policy_automation {
	unsigned refs;
	struct policy_auto_rule *rules;
	size_t n_rules;
};
/* Does one of r's regexes match the response line ("451 4.7.1 text")? */
bool policy_auto_rule_matches(const struct policy_auto_rule *r, const char *line, size_t n);
struct policy_automation *policy_automation_ref(struct policy_automation *a);
void policy_automation_unref(struct policy_automation *a);

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
	struct policy_automation *automation;	/* shaping automation rules, or NULL */
};
/* Copy one field (a policy_auto_action's) from src into dst. */
void policy_egress_field_copy(struct policy_egress_path *dst, const struct policy_egress_path *src,
			      int field);

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
/*
 * The checker make_queue_config runs on protocol.http.body_template, so a
 * template mistake is a Lua error at that line (net/template.c is out of
 * policy/'s reach: petreld passes it in).  PT_OK, or PT_ERROR with err
 * ("line N: ...").  Set once before any policy loads; NULL (unit tests):
 * templates are checked when first used.
 */
typedef int (*policy_template_check_fn)(const char *text, size_t len, char *err, size_t err_len);
void policy_set_template_check(policy_template_check_fn fn);
void policy_free(struct policy *p);
/*
 * Parse a KumoMTA-style duration ("60s", "5m", "1 hour", "2 days", "500ms")
 * of n bytes into *out_ms.  PT_OK, or PT_ERROR with *why a sentence
 * (static).  (policy_duration.c; also used by the admin API.)
 */
int policy_duration_parse(const char *s, size_t n, uint64_t *out_ms, const char **why);
/* An MX answer for kumo.dns.lookup_mx; site and error are malloc'd by the
 * lookup function and freed by the policy. */
enum policy_mx_status { POLICY_MX_OK, POLICY_MX_NULL, POLICY_MX_FAIL };
struct policy_mx_answer {
	enum policy_mx_status status;
	bool implicit_mx;
	char *site;  /* the MX rollup site name (OK) */
	char *error; /* a sentence (FAIL) */
};
/* Answer n domains (may block: the caller is a policy set-up path). */
typedef void (*policy_mx_lookup_fn)(void *ctx, const char *const *domains, size_t n,
				    struct policy_mx_answer *out);
/* Give the state its MX lookup (the shard's, after load and after every
 * reload: policy_reload carries it over). */
void policy_set_mx_lookup(struct policy *p, policy_mx_lookup_fn fn, void *ctx);
/* Called after every event handler has run, with the event's name (a
 * static string: compare pointers or text) and the handler's time in
 * nanoseconds; for lua_event_latency.  Events without a handler are not
 * reported.  Carried over by policy_reload, as the MX lookup is. */
typedef void (*policy_event_timing_fn)(void *ctx, const char *event, uint64_t ns);
void policy_set_event_timing(struct policy *p, policy_event_timing_fn fn, void *ctx);

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
/* http_message_generated(msg) for a message made by the HTTP injection
 * API: the same contract as policy_smtp_server_message_received. */
int policy_http_message_generated(struct policy *p, struct pt_message *msg,
				  struct policy_reply *reply);
/*
 * should_enqueue_log_record(msg, hook_name) for a log record offered to the
 * hook named hook (configure_log_hook); msg is the record's message (data:
 * the record's JSON, meta log_record: the record).  PT_OK with *enqueue the
 * handler's answer (false for nil or without a handler); PT_ERROR when it
 * raised or returned another type (logged with file:line), *enqueue false.
 */
int policy_should_enqueue_log_record(struct policy *p, struct pt_message *msg, const char *hook,
				     bool *enqueue);
/*
 * http_server_validate_auth_basic(user, password): password is NULL when
 * the client sent none (passed as nil).  PT_OK with *valid the handler's
 * boolean (false without a handler); PT_ERROR when it raised or returned
 * anything but a boolean (logged with file:line).
 */
int policy_http_validate_auth_basic(struct policy *p, const char *user, const char *password,
				    bool *valid);

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
/* A deep copy of src into *out (NULL src: NULL).  PT_OK or PT_NOMEM. */
int policy_queue_http_copy(struct policy_queue_http **out, const struct policy_queue_http *src);
void policy_queue_http_free(struct policy_queue_http *h);
/* True when content_type is application/json (parameters ignored). */
bool policy_queue_http_is_json(const struct policy_queue_http *h);
/* The same pair for protocol.amqp. */
int policy_queue_amqp_copy(struct policy_queue_amqp **out, const struct policy_queue_amqp *src);
void policy_queue_amqp_free(struct policy_queue_amqp *a);

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

/* The built-in source and pool: no bind, the host name (KumoMTA's). */
#define POLICY_SOURCE_UNSPECIFIED "unspecified"

/* kumo.make_egress_source{...}, from get_egress_source or define_egress_source. */
struct policy_egress_source {
	char *name;
	char *source_address; /* an IPv4 or IPv6 literal to bind; NULL: the kernel's choice */
	char *ehlo_domain;    /* NULL: the path's ehlo_domain, else the host name */
	uint16_t remote_port; /* 0: the path's smtp_port */
	uint64_t ttl_ms;      /* how long a shard may cache it; 60 s */
};

struct policy_egress_pool_entry {
	char *name;	 /* an egress source */
	uint32_t weight; /* default 1; 0: never chosen */
};

/* kumo.make_egress_pool{...}, from get_egress_pool or define_egress_pool. */
struct policy_egress_pool {
	char *name;
	struct policy_egress_pool_entry *entries; /* in the order given; names unique */
	size_t n_entries;
	uint64_t ttl_ms; /* 60 s */
};

/*
 * get_egress_source(name) -> make_egress_source.  "unspecified" is the
 * built-in source and never reaches the policy (KumoMTA's rule).  The
 * handler's value wins; when it returns nil, or there is no handler, the
 * source made by define_egress_source{name = name} at init, if any.
 * PT_OK (out filled; release with policy_egress_source_free), or PT_ERROR
 * with err = "file:line: message" (nothing defines the name, the handler
 * raised, returned another type or a source of another name); out is then
 * empty (all NULL), so freeing it is harmless.
 */
int policy_get_egress_source(struct policy *p, const char *name, struct policy_egress_source *out,
			     char *err, size_t err_len);
void policy_egress_source_free(struct policy_egress_source *s);
/* Deep copy: PT_OK or PT_NOMEM (dst then empty). */
int policy_egress_source_copy(struct policy_egress_source *dst,
			      const struct policy_egress_source *src);

/*
 * get_egress_pool(name) -> make_egress_pool; same contract as
 * policy_get_egress_source (define_egress_pool is the init-time form).
 * NULL or "unspecified" is the built-in pool holding only the
 * "unspecified" source with weight 1.
 */
int policy_get_egress_pool(struct policy *p, const char *name, struct policy_egress_pool *out,
			   char *err, size_t err_len);
void policy_egress_pool_free(struct policy_egress_pool *pool);

/* What to do with a report sent to a listener domain (KumoMTA's
 * LogReportDisposition; false is Ignore, true LogThenRelay). */
enum policy_report_mode {
	POLICY_REPORT_IGNORE = 0,
	POLICY_REPORT_LOG_THEN_DROP,
	POLICY_REPORT_LOG_THEN_RELAY,
};

/* kumo.make_listener_domain{...}, from the get_listener_domain event. */
struct policy_listener_domain {
	bool found;	      /* the handler returned a value (false: nil or no handler) */
	bool relay_to;	      /* anyone may send to the domain, and it is relayed */
	bool relay_from_peer; /* the peer is in relay_from (for the sender's domain) */
	enum policy_report_mode log_oob, log_arf;
};

/* What conn_meta:get_meta() reads (KumoMTA's predefined keys); any may be
 * NULL (nil).  Not copied: valid for the duration of the call only. */
struct policy_conn_meta {
	const char *received_from; /* "ip:port" of the client */
	const char *received_via;  /* "ip:port" of the listener */
	const char *hostname;
	const char *reception_protocol;
	const char *ehlo_domain;
	const char *tls_cipher, *tls_protocol_version;
	const struct sockaddr *peer; /* matched against relay_from */
};

/*
 * get_listener_domain(domain, listener, conn_meta) -> make_listener_domain
 * or nil.  PT_OK with out filled (out->found false for nil or no handler),
 * PT_DECLINED when the handler called kumo.reject (reply filled), PT_ERROR
 * with err = "file:line: message" (raised, or a value of another type);
 * out is all false/Ignore unless PT_OK.
 */
int policy_get_listener_domain(struct policy *p, const char *domain, const char *listener,
			       const struct policy_conn_meta *meta,
			       struct policy_listener_domain *out, struct policy_reply *reply,
			       char *err, size_t err_len);
/* Whether the policy has a get_listener_domain handler (cheap; lets the
 * caller skip preparing conn_meta). */
bool policy_has_listener_domain_handler(struct policy *p);

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
