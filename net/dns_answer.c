/*
 * dns_answer.c -- what the resolver hands out and keeps: answers packed in
 * one allocation, the cache of them, name checks, KumoMTA's site names and
 * IP literals.
 *
 * An answer's block:
 *
 *   struct dns_answer            the result and the bookkeeping
 *   struct dns_host[n_hosts]     result.hosts
 *   struct dns_addr[total]       every host's addresses, host after host
 *   char[]                       name, error, site, the host names
 *
 * One malloc and one free per answer, and a cached answer can be handed to
 * any number of callers without copying: it never changes after
 * dns_answer_new.
 *
 * The cache maps (kind, name) to an answer: one pt_strmap per kind, keyed
 * by the answer's own result.name.  Entries also sit on a list in insertion
 * order; past max entries the oldest goes, whatever its TTL (the bound is
 * what matters: a shard must not grow without limit on a flood of distinct
 * domains).  Expired entries are dropped when a lookup finds them.
 */
#include "net/dns_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_ALIGN(n) (((n) + 15) & ~(size_t)15)

/* ---- answers ------------------------------------------------------------ */

static size_t dns_draft_size(const struct dns_draft *d, size_t *n_addrs)
{
	size_t strings, addrs = 0;

	strings = strlen(d->name) + 1 + strlen(d->error ? d->error : "") + 1 +
		  strlen(d->site ? d->site : d->name) + 1;
	for (size_t i = 0; i < d->n_hosts; i++) {
		addrs += d->hosts[i].n_addrs;
		strings += strlen(d->hosts[i].name) + 1;
	}
	*n_addrs = addrs;
	return DNS_ALIGN(sizeof(struct dns_answer)) +
	       DNS_ALIGN(d->n_hosts * sizeof(struct dns_host)) + addrs * sizeof(struct dns_addr) +
	       strings;
}

/* Copy s to *p and advance it. */
static const char *dns_put_str(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *out = *p;

	memcpy(out, s, n);
	*p += n;
	return out;
}

struct dns_answer *dns_answer_new(const struct dns_draft *d)
{
	size_t n_addrs, size = dns_draft_size(d, &n_addrs);
	struct dns_answer *a = calloc(1, size);
	struct dns_host *hosts;
	struct dns_addr *addrs;
	char *text;

	if (!a)
		return NULL;
	hosts = (struct dns_host *)((char *)a + DNS_ALIGN(sizeof(*a)));
	addrs = (struct dns_addr *)((char *)hosts + DNS_ALIGN(d->n_hosts * sizeof(*hosts)));
	text = (char *)(addrs + n_addrs);
	a->kind = d->kind;
	a->refs = 1;
	a->result.status = d->status;
	a->result.name = dns_put_str(&text, d->name);
	a->result.error = dns_put_str(&text, d->error ? d->error : "");
	a->result.site = dns_put_str(&text, d->site ? d->site : d->name);
	a->result.implicit_mx = d->implicit_mx;
	a->result.expires_ms = d->expires_ms;
	a->result.hosts = hosts;
	a->result.n_hosts = d->n_hosts;
	for (size_t i = 0; i < d->n_hosts; i++) {
		hosts[i].name = dns_put_str(&text, d->hosts[i].name);
		hosts[i].preference = d->hosts[i].preference;
		hosts[i].addrs = addrs;
		hosts[i].n_addrs = d->hosts[i].n_addrs;
		if (d->hosts[i].n_addrs > 0)
			memcpy(addrs, d->hosts[i].addrs, d->hosts[i].n_addrs * sizeof(*addrs));
		addrs += d->hosts[i].n_addrs;
	}
	return a;
}

struct dns_answer *dns_answer_ref(struct dns_answer *a)
{
	a->refs++;
	return a;
}

void dns_answer_unref(struct dns_answer *a)
{
	if (a && --a->refs == 0)
		free(a);
}

/* ---- the cache ---------------------------------------------------------- */

static void dns_cache_unlink(struct dns_cache *c, struct dns_answer *a)
{
	if (a->older)
		a->older->newer = a->newer;
	else
		c->oldest = a->newer;
	if (a->newer)
		a->newer->older = a->older;
	else
		c->newest = a->older;
	a->older = a->newer = NULL;
}

static void dns_cache_drop(struct dns_cache *c, struct dns_answer *a)
{
	pt_strmap_del(&c->map[a->kind], a->result.name);
	dns_cache_unlink(c, a);
	a->cached = false;
	c->n--;
	dns_answer_unref(a);
}

struct dns_answer *dns_cache_get(struct dns_cache *c, enum dns_kind kind, const char *name,
				 uint64_t now_ms)
{
	struct dns_answer *a = pt_strmap_get(&c->map[kind], name);

	if (a && now_ms >= a->result.expires_ms) {
		dns_cache_drop(c, a);
		return NULL;
	}
	return a;
}

int dns_cache_put(struct dns_cache *c, struct dns_answer *a)
{
	struct dns_answer *old = pt_strmap_get(&c->map[a->kind], a->result.name);

	if (old)
		dns_cache_drop(c, old);
	if (pt_strmap_put(&c->map[a->kind], a->result.name, a) != PT_OK)
		return PT_NOMEM;
	dns_answer_ref(a);
	a->cached = true;
	a->older = c->newest;
	a->newer = NULL;
	if (c->newest)
		c->newest->newer = a;
	else
		c->oldest = a;
	c->newest = a;
	c->n++;
	while (c->n > c->max)
		dns_cache_drop(c, c->oldest);
	return PT_OK;
}

void dns_cache_free(struct dns_cache *c)
{
	while (c->oldest)
		dns_cache_drop(c, c->oldest);
	for (int k = 0; k < DNS_KIND_N; k++)
		pt_strmap_free(&c->map[k]);
}

/* ---- names -------------------------------------------------------------- */

int dns_name_normalize(const char *in, char *out)
{
	size_t len = strlen(in), label = 0;

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return PT_ERROR;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '.') {
			if (label == 0) /* an empty label: "a..b", ".a" */
				return PT_ERROR;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63) /* RFC 1035 2.3.4 */
				return PT_ERROR;
		} else {
			return PT_ERROR;
		}
		out[i] = (char)tolower(c);
	}
	out[len] = '\0';
	return PT_OK;
}

/* ---- site names --------------------------------------------------------- */

/* One name split into labels, right to left (offsets into text: a name
 * is at most 254 octets here, so they fit in one). */
struct dns_split {
	char text[DNS_NAME_MAX + 2];
	uint8_t label[DNS_NAME_MAX + 2]; /* "a..b" has empty labels too */
	size_t n;
};

static void dns_split(const char *name, struct dns_split *s)
{
	size_t len = strlen(name);
	char *p;

	if (len > DNS_NAME_MAX + 1)
		len = DNS_NAME_MAX + 1;
	for (size_t i = 0; i < len; i++)
		s->text[i] = (char)tolower((unsigned char)name[i]);
	s->text[len] = '\0';
	if (len > 0 && s->text[len - 1] == '.')
		s->text[--len] = '\0';
	s->n = 0;
	while (len > 0 && (p = memrchr(s->text, '.', len)) != NULL) {
		*p = '\0';
		s->label[s->n++] = (uint8_t)(p + 1 - s->text);
		len = (size_t)(p - s->text);
	}
	s->label[s->n++] = 0;
}

static const char *dns_split_label(const struct dns_split *s, size_t pos)
{
	return s->text + s->label[pos];
}

/*
 * Write position pos (0: the rightmost label) into out: the distinct labels
 * there in order of first appearance, "(a|b)" when more than one, then "?"
 * when some name has no label at pos.
 */
static char *dns_site_position(const struct dns_split *s, size_t n, size_t pos, char *out)
{
	size_t distinct = 0;
	bool short_name = false;
	char *start = out;

	out++; /* room for "(" */
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		if (pos >= s[i].n) {
			short_name = true;
			continue;
		}
		for (size_t j = 0; j < i && !seen; j++)
			seen = pos < s[j].n && strcmp(dns_split_label(&s[j], pos),
						      dns_split_label(&s[i], pos)) == 0;
		if (seen)
			continue;
		if (distinct++ > 0)
			*out++ = '|';
		out = stpcpy(out, dns_split_label(&s[i], pos));
	}
	if (distinct > 1) {
		*start = '(';
		*out++ = ')';
	} else {
		memmove(start, start + 1, (size_t)(out - start - 1));
		out--;
	}
	if (short_name)
		*out++ = '?';
	return out;
}

char *dns_site_factor(const char *const *names, size_t n_names)
{
	struct dns_split *s = calloc(n_names ? n_names : 1, sizeof(*s));
	size_t max_labels = 0, size = 1;
	char *site, *p;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n_names; i++) {
		dns_split(names[i], &s[i]);
		max_labels = PT_MAX(max_labels, s[i].n);
		size += strlen(names[i]) + 1; /* s[i].text is cut into labels now */
	}
	/* Each position adds at most "(", ")", "?", "." and a "|" per name. */
	size += max_labels * (4 + n_names);
	site = malloc(size);
	if (!site) {
		free(s);
		return NULL;
	}
	p = site;
	for (size_t pos = max_labels; pos-- > 0;) {
		p = dns_site_position(s, n_names, pos, p);
		if (pos > 0)
			*p++ = '.';
	}
	*p = '\0';
	free(s);
	return site;
}

int dns_site_name(const char *const *names, size_t n_names, char *out, size_t out_len)
{
	char *site;
	size_t len;

	if (n_names == 0)
		return PT_ERROR;
	site = dns_site_factor(names, n_names);
	if (!site)
		return PT_ERROR;
	len = strlen(site);
	if (len >= out_len) {
		free(site);
		return PT_ERROR;
	}
	memcpy(out, site, len + 1);
	free(site);
	return PT_OK;
}

/* ---- IP literals -------------------------------------------------------- */

int dns_parse_ip(const char *s, struct dns_addr *a)
{
	char text[INET6_ADDRSTRLEN + 8];
	unsigned char bytes[16];
	size_t len = strlen(s);

	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
		/* RFC 5321 4.1.3: "[IPv6:...]"; "[::1]" is accepted as KumoMTA does. */
		if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
			s += 5;
			len -= 5;
			if (!memchr(s, ':', len))
				return PT_ERROR;
		}
	}
	if (len == 0 || len >= sizeof(text))
		return PT_ERROR;
	memcpy(text, s, len);
	text[len] = '\0';
	if (inet_pton(AF_INET, text, bytes) == 1) {
		dns_addr_set(a, AF_INET, bytes);
		return PT_OK;
	}
	if (inet_pton(AF_INET6, text, bytes) == 1) {
		dns_addr_set(a, AF_INET6, bytes);
		return PT_OK;
	}
	return PT_ERROR;
}
