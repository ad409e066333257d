/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim: CLOCK_MONOTONIC that ticks every 4 ms, as a coarse
 * clock source or an emulated guest's clock can read. The scheduler's
 * ordering rules (tests/test-timer.c) must not rest on the clock moving
 * between two readings. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <time.h>

int clock_gettime(clockid_t clock, struct timespec *ts);

int clock_gettime(clockid_t clock, struct timespec *ts)
{
	static int (*real)(clockid_t, struct timespec *);
	int r;

	if (!real)
		real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	r = real(clock, ts);
	if (r == 0 && clock == CLOCK_MONOTONIC)
		ts->tv_nsec -= ts->tv_nsec % 4000000;
	return r;
}
