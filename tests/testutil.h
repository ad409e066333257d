/* SPDX-License-Identifier: MIT */
/* Shared helpers for the Check suites. Each suite is its own program
 * (tests/test-<module>.c) run by meson with the TAP protocol. */
#ifndef AF_TESTUTIL_H
#define AF_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* printf-style trace_add(). */
static inline void trace_addf(struct trace *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void trace_addf(struct trace *t, const char *fmt, ...)
{
	char buf[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	trace_add(t, buf);
}

/* Short names for results in traces. */
static inline const char *errname(int r)
{
	switch (r) {
	case 0: return "0";
	case -ECANCELED: return "ECANCELED";
	case -ETIMEDOUT: return "ETIMEDOUT";
	case -EINVAL: return "EINVAL";
	case -EPERM: return "EPERM";
	case -EBUSY: return "EBUSY";
	case -EDEADLK: return "EDEADLK";
	case -EALREADY: return "EALREADY";
	default: return "other";
	}
}

#define US ((int64_t)1000)
#define MS ((int64_t)1000 * 1000)
/* Generous: only a lost wake-up or completion ever waits this long. */
#define LONG_NS ((int64_t)10 * 1000 * MS)

static inline uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* Sleep the calling thread (not a task) for @ms, through signals. */
static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
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
