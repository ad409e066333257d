/* SPDX-License-Identifier: MIT */
/* Shared helpers for the Check suites. Each suite is its own program
 * (tests/test-<module>.c) run by meson with the TAP protocol. */
#ifndef AF_TESTUTIL_H
#define AF_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asyncflag.h>

/* Run @fn as the main task of a fresh loop; fail the test if the loop could
 * not run, and return main's result. */
static inline int run_main(af_task_fn fn, void *arg)
{
	struct af_loop *loop;
	int r, result = -1;

	r = af_loop_new(&loop, NULL);
	ck_assert_msg(r == 0, "af_loop_new: %s", af_strerror(r));
	r = af_loop_run(loop, fn, arg, &result);
	ck_assert_msg(r == 0, "af_loop_run: %s", af_strerror(r));
	af_loop_free(loop);
	return result;
}

/* An ordered log of what tasks did, to assert interleavings exactly. */
struct trace {
	char buf[1024];
	size_t len;
};

static inline void trace_add(struct trace *t, const char *what)
{
	int n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s%s",
			 t->len ? " " : "", what);

	if (n > 0 && (size_t)n < sizeof(t->buf) - t->len)
		t->len += (size_t)n;
}

/* Build and run a suite with TAP output for meson; the exit code says
 * whether every test passed. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
