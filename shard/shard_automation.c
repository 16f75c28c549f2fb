/*
 * shard_automation.c -- shaping automation on the ready queue's owner
 * shard: KumoMTA's traffic-shaping automation (its TSA daemon), done in
 * place.
 *
 * Every Delivery, TransientFailure and Bounce of a ready queue is shown to
 * the rules of its path config (policy_automation.c made them).  A rule
 * matches when one of its regexes matches the response line
 * "451 4.7.1 text" (Petrel's own responses only with match_internal);
 * its trigger fires at once (Immediate) or when it has matched N times
 * within the period (Threshold), and then its actions run for `duration`:
 *
 *   Suspend     the path opens no connection and starts no transaction
 *               until then (in-flight transactions finish; units wait);
 *   SetConfig   one option of the path is overridden until then, over
 *               whatever get_egress_path_config says meanwhile.
 *
 * A rule that fires again while its action is in force extends it.  Each
 * action taken is logged (WARN), and so is its end.  The state lives with
 * the ready queue; when the queue is freed (idle), so are its suspensions,
 * which by then have no units left to hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

#define AUTO_MAX_HITS 1024 /* a Threshold counts at most this many matches */

struct auto_override {
	const struct policy_auto_action *action; /* owned by `rules` below */
	struct policy_automation *rules;	 /* a reference keeping action alive */
	uint64_t until_ms;
};

struct shard_auto {
	struct policy_automation *rules; /* the set the hit counters belong to */
	uint64_t **hits;		 /* per rule: match times (ms), a ring */
	size_t *n_hits, *next_hit;
	uint64_t suspended_until_ms;
	char *suspend_text; /* the rule that suspended, for logs */
	struct auto_override *overrides;
	size_t n_overrides;
};

static void auto_counters_free(struct shard_auto *a)
{
	if (a->rules)
		for (size_t i = 0; i < a->rules->n_rules; i++)
			free(a->hits[i]);
	free(a->hits);
	free(a->n_hits);
	free(a->next_hit);
	a->hits = NULL;
	a->n_hits = a->next_hit = NULL;
	policy_automation_unref(a->rules);
	a->rules = NULL;
}

void shard_auto_free(struct shard_ready *rq)
{
	struct shard_auto *a = rq->autom;

	if (!a)
		return;
	auto_counters_free(a);
	for (size_t i = 0; i < a->n_overrides; i++)
		policy_automation_unref(a->overrides[i].rules);
	free(a->overrides);
	free(a->suspend_text);
	free(a);
	rq->autom = NULL;
}

/* The state for rq, its counters matching the rules now configured. */
static struct shard_auto *auto_state(struct shard_ready *rq)
{
	struct policy_automation *rules = rq->cfg.automation;
	struct shard_auto *a = rq->autom;
	size_t n;

	if (!a) {
		if (!(a = rq->autom = calloc(1, sizeof(*a))))
			return NULL;
	}
	if (a->rules == rules)
		return a;
	auto_counters_free(a);
	if (!rules)
		return a;
	n = rules->n_rules;
	a->hits = calloc(n ? n : 1, sizeof(*a->hits));
	a->n_hits = calloc(n ? n : 1, sizeof(*a->n_hits));
	a->next_hit = calloc(n ? n : 1, sizeof(*a->next_hit));
	if (!a->hits || !a->n_hits || !a->next_hit) {
		auto_counters_free(a);
		return a;
	}
	a->rules = policy_automation_ref(rules);
	return a;
}

/* Count a match of rule i at now; true when its trigger fires. */
static bool auto_trigger(struct shard_auto *a, size_t i, const struct policy_auto_rule *r,
			 uint64_t now)
{
	size_t cap = (size_t)PT_MIN(r->threshold_n, (uint64_t)AUTO_MAX_HITS), oldest;

	if (r->threshold_n == 0)
		return true;
	if (!a->hits[i] && !(a->hits[i] = calloc(cap, sizeof(uint64_t))))
		return false;
	a->hits[i][a->next_hit[i]] = now;
	a->next_hit[i] = (a->next_hit[i] + 1) % cap;
	if (a->n_hits[i] < cap)
		a->n_hits[i]++;
	if (a->n_hits[i] < cap)
		return false;
	/* The ring is full: its oldest entry is the cap-th newest match. */
	oldest = a->next_hit[i];
	if (now - a->hits[i][oldest] > r->threshold_period_ms)
		return false;
	a->n_hits[i] = 0; /* fired: count afresh */
	return true;
}

static void auto_fire(struct shard *s, struct shard_ready *rq, struct shard_auto *a,
		      const struct policy_auto_rule *r, const char *line, uint64_t now)
{
	uint64_t until = now + r->duration_ms;

	for (size_t k = 0; k < r->n_actions; k++) {
		const struct policy_auto_action *act = &r->actions[k];

		if (act->kind == POLICY_AUTO_SUSPEND) {
			if (until > a->suspended_until_ms) {
				char *text = strdup(r->text);

				if (text) {
					free(a->suspend_text);
					a->suspend_text = text;
				}
				a->suspended_until_ms = until;
			}
		} else {
			size_t j;

			for (j = 0; j < a->n_overrides; j++)
				if (a->overrides[j].action->field == act->field)
					break;
			if (j == a->n_overrides) {
				struct auto_override *more =
				    realloc(a->overrides, (j + 1) * sizeof(*more));

				if (!more)
					continue;
				a->overrides = more;
				a->n_overrides++;
			} else {
				policy_automation_unref(a->overrides[j].rules);
			}
			a->overrides[j] =
			    (struct auto_override){.action = act,
						   .rules = policy_automation_ref(a->rules),
						   .until_ms = until};
			policy_egress_field_copy(&rq->cfg, act->value, act->field);
			shard_ready_limits_changed(rq);
		}
		pt_warn("shaping automation: %s: rule \"%s\" matched \"%s\": %s for %llu s",
			rq->key, r->text, line, act->text,
			(unsigned long long)(r->duration_ms / 1000));
	}
	(void)s;
}

void shard_auto_observe(struct shard *s, struct shard_ready *rq, const struct smtp_client_reply *r)
{
	struct shard_auto *a;
	char line[1100];
	int n;
	uint64_t now;

	if (!rq->cfg.automation || !(a = auto_state(rq)) || !a->rules)
		return;
	if (r->enh_class >= 0)
		n = snprintf(line, sizeof(line), "%d %d.%d.%d %s", r->code, r->enh_class,
			     r->enh_subject, r->enh_detail, r->content);
	else
		n = snprintf(line, sizeof(line), "%d %s", r->code, r->content);
	if (n < 0)
		return;
	now = pt_monotonic_ms();
	for (size_t i = 0; i < a->rules->n_rules; i++) {
		const struct policy_auto_rule *rule = &a->rules->rules[i];

		if (r->local && !rule->match_internal)
			continue;
		if (!policy_auto_rule_matches(rule, line, strlen(line)))
			continue;
		if (auto_trigger(a, i, rule, now))
			auto_fire(s, rq, a, rule, line, now);
	}
}

bool shard_auto_suspended(struct shard_ready *rq, uint64_t now_ms, uint64_t *until_ms)
{
	struct shard_auto *a = rq->autom;

	if (!a || a->suspended_until_ms == 0)
		return false;
	if (now_ms >= a->suspended_until_ms) {
		pt_warn("shaping automation: %s: suspension by rule \"%s\" is over", rq->key,
			a->suspend_text ? a->suspend_text : "?");
		a->suspended_until_ms = 0;
		return false;
	}
	*until_ms = a->suspended_until_ms;
	return true;
}

void shard_auto_apply_overrides(struct shard_ready *rq)
{
	struct shard_auto *a = rq->autom;
	uint64_t now = pt_monotonic_ms();
	size_t w = 0;

	if (!a)
		return;
	for (size_t i = 0; i < a->n_overrides; i++) {
		struct auto_override *o = &a->overrides[i];

		if (now >= o->until_ms) {
			pt_warn("shaping automation: %s: %s is over", rq->key, o->action->text);
			policy_automation_unref(o->rules);
			continue;
		}
		policy_egress_field_copy(&rq->cfg, o->action->value, o->action->field);
		a->overrides[w++] = *o;
	}
	a->n_overrides = w;
}

uint64_t shard_auto_next_expiry(const struct shard_ready *rq)
{
	const struct shard_auto *a = rq->autom;
	uint64_t next = 0;

	if (!a)
		return 0;
	for (size_t i = 0; i < a->n_overrides; i++)
		if (next == 0 || a->overrides[i].until_ms < next)
			next = a->overrides[i].until_ms;
	return next;
}
