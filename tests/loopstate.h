/* SPDX-License-Identifier: MIT */
/* How a test's helper thread sees a loop sleep: the sleep-state word
 * (src/internal.h), for the cases that check which way the loop slept. */
#ifndef AF_TESTS_LOOPSTATE_H
#define AF_TESTS_LOOPSTATE_H

#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>

#include "internal.h"
#include "testutil.h"

/* The sleep-state word once @loop sleeps with the marks @want set (2 s at
 * most: the caller's assertion on the word then fails). */
static inline unsigned wait_asleep_with(struct af_loop *loop, unsigned want)
{
	uint64_t end = now_ns() + 2000 * (uint64_t)MS;
	unsigned s;

	for (;;) {
		s = atomic_load(&loop->sleep_state);
		if ((s & AF_SLEEP_MASK) == AF_SLEEPING && (s & want) == want)
			return s;
		if (now_ns() > end)
			return s;
		sched_yield();
	}
}

/* Until a set of @flag (waited on by a task of @loop) must kick the loop:
 * it has published SLEEPING and, when the waiter is its polled one, marked
 * the flag's word (AF_FLAG_SLEEPER), which sleep_until() does just after.
 * Before the mark such a set needs no kick: the loop still looks at the
 * word. Only atomics are read, so there is no data race with the loop.
 * The sleep state first: a waiter announces POLLED before its loop can
 * publish the sleep, so the word read after SLEEPING shows it; read the
 * other way round, an old word without POLLED could pass for a flag that
 * needs no mark. */
static inline void wait_until_a_set_must_kick(struct af_loop *loop, struct af_flag *flag)
{
	_Atomic uint32_t *word = &((struct af__flag *)(void *)&flag->_private)->state;

	for (;;) {
		unsigned ss = atomic_load(&loop->sleep_state);
		uint32_t st = atomic_load(word);

		if ((ss & AF_SLEEP_MASK) == AF_SLEEPING &&
		    (!(st & AF_FLAG_POLLED) || (st & AF_FLAG_SLEEPER)))
			return;
		sched_yield();
	}
}

/* Whether a loop made here never sleeps outside the ring: on the epoll
 * backend and in ppoll mode (TSan, valgrind) it neither parks nor sleeps in
 * sigtimedwait(), and without DEFER_TASKRUN (@sigwait) it does not do the
 * latter. Called before Check runs a test: no ck_assert. */
static inline bool loop_never_sleeps_outside_ring(bool sigwait)
{
	struct af_loop *loop;
	bool never;

	if (on_epoll() || af_loop_new(&loop, NULL) < 0)
		return true;
	never = loop->ppoll_mode ||
		(sigwait && !(loop->ring.flags & IORING_SETUP_DEFER_TASKRUN));
	af_loop_free(loop);
	return never;
}

#endif
