/*
 * policy_test_util.h -- what the policy suites share: a temp directory per
 * test holding the policy file, and loading a policy text that must succeed
 * or must fail with an exact "file:line: message".  Test code only.
 */
#ifndef PT_POLICY_TEST_UTIL_H
#define PT_POLICY_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>

#include "policy/policy.h"
#include "tests/unit/test_util.h"

static char test_dir[64];
static char test_path[512];

static inline void dir_setup(void)
{
	test_tmpdir_make(test_dir, sizeof(test_dir), "petrel_policy");
}

static inline void dir_teardown(void)
{
	test_tmpdir_remove(test_dir);
}

/* Write text to <test_dir>/p.lua and return the path (test_path). */
static inline const char *write_policy(const char *text)
{
	return test_write_file(test_dir, "p.lua", text, test_path, sizeof(test_path));
}

/* Load text as a policy; it must load. */
static inline struct policy *load_ok(const char *text)
{
	struct policy *p = NULL;
	char err[512];
	int rc = policy_load(&p, write_policy(text), 0, err, sizeof(err));

	cr_assert_eq(rc, PT_OK, "policy_load failed: %s", err);
	cr_assert_not_null(p);
	return p;
}

/* Load must fail with exactly "<path>:<line>: <msg>". */
static inline void load_fails_with(const char *text, int line, const char *msg)
{
	struct policy *p = (struct policy *)1;
	char err[512], want[600];
	int rc = policy_load(&p, write_policy(text), 0, err, sizeof(err));

	snprintf(want, sizeof(want), "%s:%d: %s", test_path, line, msg);
	cr_assert_eq(rc, PT_ERROR);
	cr_assert_null(p);
	cr_assert_str_eq(err, want);
}

/* A call that must fail, and its message (without "file:line: "). */
struct policy_fail_case {
	const char *call;
	const char *msg;
};

/* Each case's call between head and tail must fail with its msg at line. */
static inline void load_fails_each(const char *head, const char *tail,
				   const struct policy_fail_case *cases, size_t n, int line)
{
	for (size_t i = 0; i < n; i++) {
		char text[4096];

		snprintf(text, sizeof(text), "%s%s%s", head, cases[i].call, tail);
		load_fails_with(text, line, cases[i].msg);
	}
}

/*
 * get_egress_path_config on a policy whose handler returns `ret` (line 3),
 * for ("example.com", "unspecified", "mx.example.com").  The policy is
 * freed before returning, so e must not depend on its state.
 */
static inline int path_for(const char *ret, struct policy_egress_path *e, char *err,
			   size_t err_len)
{
	char text[4096];
	struct policy *p;
	int rc;

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "kumo.on('get_egress_path_config', function(routing_domain, source, site)\n"
		 "  return %s\n"
		 "end)\n",
		 ret);
	p = load_ok(text);
	rc = policy_get_egress_path_config(p, "example.com", "unspecified", "mx.example.com", e,
					   err, err_len);
	policy_free(p);
	return rc;
}

#endif
