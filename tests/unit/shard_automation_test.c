/*
 * shard_automation_test.c -- the shaping automation engine
 * (shard_automation.c) on a ready queue: an Immediate Suspend, a
 * Threshold that fires only at its count within its period, SetConfig
 * overriding the path's option and surviving a config refresh, internal
 * responses skipped unless match_internal, and the end of a suspension.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/ptime.h"
#include "policy/policy.h"
#include "shard/shard_int.h"
#include "tests/unit/policy_test_util.h"

TestSuite(shard_automation, .init = dir_setup, .fini = dir_teardown);

/* A ready queue whose cfg comes from make_egress_path{ <args> }. */
static void rq_with(struct shard_ready *rq, const char *args)
{
	char text[4096], err[512];
	struct policy *p;

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "kumo.on('get_egress_path_config', function(d, s, site)\n"
		 "  return kumo.make_egress_path %s\n"
		 "end)\n",
		 args);
	p = load_ok(text);
	memset(rq, 0, sizeof(*rq));
	rq->key = "unspecified->mx.test";
	cr_assert_eq(policy_get_egress_path_config(p, "d.test", "unspecified", "mx.test", &rq->cfg,
						   err, sizeof(err)),
		     PT_OK, "%s", err);
	policy_free(p);
}

static void see(struct shard_ready *rq, int code, const char *text, bool local)
{
	struct smtp_client_reply r = {.code = code,
				      .enh_class = code / 100,
				      .enh_subject = 7,
				      .enh_detail = 1,
				      .local = local};

	snprintf(r.content, sizeof(r.content), "%s", text);
	shard_auto_observe(NULL, rq, &r);
}

static void rq_done(struct shard_ready *rq)
{
	shard_auto_free(rq);
	policy_egress_path_free(&rq->cfg);
}

Test(shard_automation, immediate_suspend)
{
	struct shard_ready rq;
	uint64_t until = 0, now = pt_monotonic_ms();

	rq_with(&rq, "{ automation = { { regex = '^451 .*rate limited', action = 'Suspend', "
		     "duration = '1h' } } }");
	see(&rq, 250, "ok", false);
	see(&rq, 451, "try later", false);
	cr_assert_not(shard_auto_suspended(&rq, now, &until));
	see(&rq, 451, "you are rate limited", false);
	cr_assert(shard_auto_suspended(&rq, now, &until));
	cr_assert_geq(until, now + 3600 * 1000 - 1000);
	/* Over when its time has come. */
	cr_assert_not(shard_auto_suspended(&rq, until, &until));
	rq_done(&rq);
}

Test(shard_automation, threshold_counts_within_the_period)
{
	struct shard_ready rq;
	uint64_t until;

	rq_with(&rq, "{ automation = { { regex = 'slow down', action = 'Suspend', "
		     "trigger = { Threshold = '3/h' }, duration = '10m' } } }");
	see(&rq, 421, "slow down", false);
	see(&rq, 421, "slow down", false);
	cr_assert_not(shard_auto_suspended(&rq, pt_monotonic_ms(), &until));
	see(&rq, 421, "slow down", false);
	cr_assert(shard_auto_suspended(&rq, pt_monotonic_ms(), &until));
	rq_done(&rq);
}

Test(shard_automation, set_config_overrides_and_survives_refresh)
{
	struct shard_ready rq;
	struct policy_egress_path fresh;

	rq_with(&rq, "{ connection_limit = 10, automation = { { regex = 'too many', "
		     "duration = '1h', action = { SetConfig = { name = 'connection_limit', "
		     "value = 2 } } } } }");
	cr_assert_eq(rq.cfg.connection_limit, 10);
	see(&rq, 421, "too many connections", false);
	cr_assert_eq(rq.cfg.connection_limit, 2);
	cr_assert_gt(shard_auto_next_expiry(&rq), pt_monotonic_ms());
	/* A refreshed config (as ready_load gets it) keeps the override. */
	fresh = rq.cfg;
	fresh.connection_limit = 10;
	rq.cfg = fresh;
	shard_auto_apply_overrides(&rq);
	cr_assert_eq(rq.cfg.connection_limit, 2);
	rq_done(&rq);
}

Test(shard_automation, internal_responses_need_match_internal)
{
	struct shard_ready rq;
	uint64_t until;

	rq_with(&rq, "{ automation = { { regex = 'refused', action = 'Suspend', duration = '1h' }, "
		     "{ regex = 'timed out', action = 'Suspend', duration = '2h', "
		     "match_internal = true } } }");
	see(&rq, 451, "connection refused", true);
	cr_assert_not(shard_auto_suspended(&rq, pt_monotonic_ms(), &until));
	see(&rq, 451, "connect timed out", true);
	cr_assert(shard_auto_suspended(&rq, pt_monotonic_ms(), &until));
	rq_done(&rq);
}
