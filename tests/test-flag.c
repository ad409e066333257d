/* SPDX-License-Identifier: MIT */
/* ThreadSafeFlag (af_flag): every rule of semantics.md, the wake-up path
 * seen through internal.h, and cross-thread stress. */
#include <poll.h>
#include <semaphore.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"
#include "loopstate.h"


static struct af__flag *fl(struct af_flag *f)
{
	return (struct af__flag *)(void *)&f->_private;
}

/* The SET, WAITING and QUEUED bits, without the LIVE tag and busy count. */
static uint32_t fstate(struct af_flag *f)
{
	return atomic_load(&fl(f)->state) & (AF_FLAG_SET | AF_FLAG_WAITING | AF_FLAG_QUEUED);
}

static void run_on_new_loop(af_task_fn fn, void *arg, int want_result)
{
	ck_assert_int_eq(run_main(fn, arg), want_result);
}

/* Loops made from now on poll no flag: every set of a flag with a waiter
 * goes through the pending stack (AF_POLL=0). Each case runs in a process
 * of its own, so this lasts until the case ends. */
static void through_the_stack(void)
{
	ck_assert_int_eq(setenv("AF_POLL", "0", 1), 0);
}

/* A thread that sets (or clears) a flag, optionally after a delay. */
struct setter {
	pthread_t th;
	struct af_flag *flag;
	unsigned delay_ms;
	int times;
	bool clear_first;
};

static void *setter_main(void *arg)
{
	struct setter *s = arg;

	if (s->delay_ms)
		sleep_ms(s->delay_ms);
	if (s->clear_first)
		af_flag_clear(s->flag);
	for (int i = 0; i < s->times; i++)
		af_flag_set(s->flag);
	return NULL;
}

static void setter_start(struct setter *s, struct af_flag *flag, unsigned delay_ms, int times,
			 bool clear_first)
{
	s->flag = flag;
	s->clear_first = clear_first;
	s->delay_ms = delay_ms;
	s->times = times;
	ck_assert_int_eq(pthread_create(&s->th, NULL, setter_main, s), 0);
}

/* From a task: blocking the loop thread in pthread_join is fine here, the
 * thread never needs the loop. */
static void setter_join(struct setter *s)
{
	ck_assert_int_eq(pthread_join(s->th, NULL), 0);
}

/* Shared state of the small scenarios: one flag, a trace, a result. */
struct sc {
	struct af_flag f;
	struct trace tr;
	int r1, r2;
	struct af_task *waiter;
};

static int waiter_waits_once(void *arg)
{
	struct sc *s = arg;

	trace_add(&s->tr, "waiting");
	s->r1 = af_flag_wait(&s->f);
	trace_add(&s->tr, "waiter-resumed");
	return s->r1;
}

static int trace_other(void *arg)
{
	trace_add(arg, "other");
	return 0;
}

/* ---- wait and set ------------------------------------------------------------ */

static int wait_on_set_flag_main(void *arg)
{
	struct sc *s = arg;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert(!af_flag_is_set(&s->f));
	af_flag_set(&s->f);
	ck_assert(af_flag_is_set(&s->f));
	ck_assert_int_eq(af_task_spawn(NULL, trace_other, &s->tr), 0);
	ck_assert_int_eq(af_flag_wait(&s->f), 0);
	/* No yield: the runnable task has not run yet. */
	trace_add(&s->tr, "returned");
	ck_assert_int_eq(af_yield(), 0);
	ck_assert(!af_flag_is_set(&s->f));
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 0), -ETIMEDOUT);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(wait_on_a_set_flag_returns_at_once_and_clears_it)
{
	struct sc s = { 0 };

	run_on_new_loop(wait_on_set_flag_main, &s, 0);
	ck_assert_str_eq(s.tr.buf, "returned other");
}
END_TEST

static int coalesce_main(void *arg)
{
	struct sc *s = arg;
	struct setter st;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	af_flag_set(&s->f);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_flag_wait(&s->f), 0);
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 20 * MS), -ETIMEDOUT);

	/* The same with the waiter parked and the sets from another thread. */
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	setter_start(&st, &s->f, 0, 2, false);
	setter_join(&st);
	ck_assert_int_eq(af_task_join(s->waiter, NULL), 0);
	ck_assert_int_eq(s->r1, 0);
	ck_assert(!af_flag_is_set(&s->f));
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 20 * MS), -ETIMEDOUT);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(two_sets_before_a_wait_make_one_wake_up_and_the_second_wait_blocks)
{
	struct sc s = { 0 };

	run_on_new_loop(coalesce_main, &s, 0);
}
END_TEST

static int clear_main(void *arg)
{
	struct sc *s = arg;
	struct setter st;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	af_flag_set(&s->f);
	af_flag_clear(&s->f);
	ck_assert(!af_flag_is_set(&s->f));
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 20 * MS), -ETIMEDOUT);

	/* Clear is safe from another thread too. */
	af_flag_set(&s->f);
	setter_start(&st, &s->f, 0, 0, true);
	setter_join(&st);
	ck_assert(!af_flag_is_set(&s->f));
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 20 * MS), -ETIMEDOUT);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(clear_discards_a_pending_set)
{
	struct sc s = { 0 };

	run_on_new_loop(clear_main, &s, 0);
}
END_TEST

/* MicroPython's ThreadSafeFlag is level-triggered: the loop looks at the
 * flag's state, so a set cleared again before it looks wakes no one. */
static int set_cleared_main(void *arg)
{
	struct sc *s = arg;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	af_flag_set(&s->f);
	af_flag_clear(&s->f);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(s->waiter->state, AF_TASK_BLOCKED);
	ck_assert_str_eq(s->tr.buf, "waiting");
	af_flag_set(&s->f);
	ck_assert_int_eq(af_task_join(s->waiter, NULL), 0);
	ck_assert_str_eq(s->tr.buf, "waiting waiter-resumed");
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_set_cleared_again_before_the_loop_looks_wakes_no_one)
{
	struct sc s = { .r1 = 1 };

	run_on_new_loop(set_cleared_main, &s, 0);
	ck_assert_int_eq(s.r1, 0);
}
END_TEST

START_TEST(a_set_cleared_again_before_the_loop_takes_the_pending_stack_wakes_no_one)
{
	struct sc s = { .r1 = 1 };

	through_the_stack();
	run_on_new_loop(set_cleared_main, &s, 0);
	ck_assert_int_eq(s.r1, 0);
}
END_TEST

/* ---- one waiter ---------------------------------------------------------------- */

static int second_waiter(void *arg)
{
	struct sc *s = arg;

	s->r2 = af_flag_wait(&s->f);
	trace_add(&s->tr, "second-returned");
	return s->r2;
}

static int ebusy_main(void *arg)
{
	struct sc *s = arg;
	struct af_task *second;
	int res = 1;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_task_spawn(&second, second_waiter, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* One round: the second waiter already returned, it never parked. */
	ck_assert(af_task_done(second));
	ck_assert_int_eq(af_task_join(second, &res), 0);
	ck_assert_int_eq(res, -EBUSY);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert(!af_task_done(s->waiter));
	ck_assert_ptr_eq(fl(&s->f)->waiter, s->waiter);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_task_join(s->waiter, &res), 0);
	ck_assert_int_eq(res, 0);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_second_waiter_gets_ebusy_at_once_and_the_first_keeps_waiting)
{
	struct sc s = { 0 };

	run_on_new_loop(ebusy_main, &s, 0);
	ck_assert_str_eq(s.tr.buf, "waiting second-returned waiter-resumed");
}
END_TEST

/* ---- ordering ------------------------------------------------------------------ */

static int setter_first_main(void *arg)
{
	struct sc *s = arg;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&s->tr, "set");
	af_flag_set(&s->f);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&s->tr, "setter-resumed");
	ck_assert_int_eq(af_task_join(s->waiter, NULL), 0);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(set_then_yield_on_the_loop_thread_resumes_the_setter_before_the_waiter)
{
	struct sc s = { 0 };

	run_on_new_loop(setter_first_main, &s, 0);
	/* The opposite of Event, where the waiter would run first. */
	ck_assert_str_eq(s.tr.buf, "waiting set setter-resumed waiter-resumed");
	ck_assert_int_eq(s.r1, 0);
}
END_TEST

/* Two yielders around a set: the batch ends with the flag's waiter still
 * to collect, which the task that parks then takes itself (loop.c,
 * collect_here()). The waiter goes behind every task queued before the
 * set was collected, as if the loop's context had collected it. */
struct yielders {
	struct sc sc;
	const char *name[2];
};

static int yield_three_times(void *arg)
{
	struct yielders *y = arg;
	const char *name = y->name[0];

	y->name[0] = y->name[1];
	for (int i = 0; i < 3; i++) {
		trace_add(&y->sc.tr, name);
		ck_assert_int_eq(af_yield(), 0);
	}
	return 0;
}

static int set_among_yielders_main(void *arg)
{
	struct yielders *y = arg;
	struct af_task *a, *b;

	ck_assert_int_eq(af_flag_init(&y->sc.f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&y->sc.waiter, waiter_waits_once, &y->sc), 0);
	ck_assert_int_eq(af_task_spawn(&a, yield_three_times, y), 0);
	ck_assert_int_eq(af_task_spawn(&b, yield_three_times, y), 0);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&y->sc.tr, "set");
	af_flag_set(&y->sc.f);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&y->sc.tr, "setter-resumed");
	ck_assert_int_eq(af_task_join(y->sc.waiter, NULL), 0);
	ck_assert_int_eq(af_task_join(a, NULL), 0);
	ck_assert_int_eq(af_task_join(b, NULL), 0);
	af_flag_destroy(&y->sc.f);
	return 0;
}

START_TEST(a_set_collected_at_the_end_of_a_batch_queues_the_waiter_behind_every_task_queued_before)
{
	struct yielders y = { .name = { "a", "b" } };

	run_on_new_loop(set_among_yielders_main, &y, 0);
	ck_assert_str_eq(y.sc.tr.buf, "waiting a b set a b setter-resumed waiter-resumed a b");
	ck_assert_int_eq(y.sc.r1, 0);
}
END_TEST

static int waiter_waits_twice(void *arg)
{
	struct sc *s = arg;

	s->r1 = af_flag_wait(&s->f);
	trace_add(&s->tr, "woken");
	s->r2 = af_flag_wait_timeout(&s->f, 50 * MS);
	trace_add(&s->tr, "second-wait-returned");
	return 0;
}

static int absorbed_main(void *arg)
{
	struct sc *s = arg;
	struct setter st;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_twice, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_yield(), 0);
	/* The loop has made the waiter runnable; it has not resumed. */
	ck_assert_int_eq(s->waiter->state, AF_TASK_RUNNABLE);
	ck_assert_int_eq(s->tr.len, 0);
	/* A repeated set changes nothing and queues nothing. */
	af_flag_set(&s->f);
	ck_assert_ptr_eq(atomic_load(&af_loop_current()->pending), NULL);
	ck_assert_uint_eq(fstate(&s->f), AF_FLAG_SET | AF_FLAG_WAITING);
	/* A fresh set lands now, from another thread: clear, then set, so it
	 * is a real 0 -> 1 transition and not just a coalesced repeat. */
	setter_start(&st, &s->f, 0, 1, true);
	setter_join(&st);
	ck_assert(af_flag_is_set(&s->f));
	ck_assert_int_eq(af_task_join(s->waiter, NULL), 0);
	ck_assert(!af_flag_is_set(&s->f));
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_set_landing_after_the_wake_but_before_the_waiter_resumed_is_absorbed)
{
	struct sc s = { 0 };

	run_on_new_loop(absorbed_main, &s, 0);
	ck_assert_int_eq(s.r1, 0);
	ck_assert_int_eq(s.r2, -ETIMEDOUT);
	ck_assert_str_eq(s.tr.buf, "woken second-wait-returned");
}
END_TEST

static int set_after_resume_main(void *arg)
{
	struct sc *s = arg;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_twice, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* Resumed, cleared, and parked again in its second wait. */
	ck_assert_str_eq(s->tr.buf, "woken");
	ck_assert_int_eq(s->waiter->state, AF_TASK_BLOCKED);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_task_join(s->waiter, NULL), 0);
	ck_assert(!af_flag_is_set(&s->f));
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_set_after_the_waiter_resumed_wakes_the_next_wait)
{
	struct sc s = { 0 };

	run_on_new_loop(set_after_resume_main, &s, 0);
	ck_assert_int_eq(s.r1, 0);
	ck_assert_int_eq(s.r2, 0);
}
END_TEST

struct spin {
	struct sc s;
	struct af_flag other;
	long spins;
};

static int spin_main(void *arg)
{
	struct spin *sp = arg;
	struct setter st;

	ck_assert_int_eq(af_flag_init(&sp->s.f, NULL), 0);
	ck_assert_int_eq(af_flag_init(&sp->other, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&sp->s.waiter, waiter_waits_once, &sp->s), 0);
	ck_assert_int_eq(af_yield(), 0);
	setter_start(&st, &sp->s.f, 0, 1, false);
	setter_join(&st);
	/* Polling another flag with zero timeouts parks this task on a timer
	 * that is due at once. The loop must still get round to collecting
	 * the set above and running its waiter. */
	while (!af_task_done(sp->s.waiter) && sp->spins < 100000) {
		ck_assert_int_eq(af_flag_wait_timeout(&sp->other, 0), -ETIMEDOUT);
		sp->spins++;
	}
	ck_assert_msg(af_task_done(sp->s.waiter),
		      "the flag's waiter never ran while a task polled with zero timeouts "
		      "(%ld polls)", sp->spins);
	ck_assert_int_eq(af_task_join(sp->s.waiter, NULL), 0);
	af_flag_destroy(&sp->other);
	af_flag_destroy(&sp->s.f);
	return 0;
}

START_TEST(a_task_polling_with_zero_timeouts_does_not_stop_the_loop_collecting_sets)
{
	struct spin sp = { .spins = 0 };

	run_on_new_loop(spin_main, &sp, 0);
	ck_assert_int_eq(sp.s.r1, 0);
}
END_TEST

/* ---- cancel and timeout ------------------------------------------------------- */

static void assert_free_and_clear(struct af_flag *f)
{
	ck_assert(!af_flag_is_set(f));
	ck_assert_ptr_eq(fl(f)->waiter, NULL);
	ck_assert_uint_eq(fstate(f) & AF_FLAG_WAITING, 0);
}

/* The flag still works for a parked waiter woken by a set. */
static void assert_reusable(struct sc *s)
{
	int res = 1;

	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(s->waiter->state, AF_TASK_BLOCKED);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_task_join(s->waiter, &res), 0);
	ck_assert_int_eq(res, 0);
	ck_assert(!af_flag_is_set(&s->f));
}

static int timeout_main(void *arg)
{
	struct sc *s = arg;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 10 * MS), -ETIMEDOUT);
	assert_free_and_clear(&s->f);
	assert_reusable(s);

	/* A set flag stays set across someone else's timeout elsewhere, and a
	 * timed wait on it returns at once. */
	af_flag_set(&s->f);
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 0), 0);
	ck_assert(!af_flag_is_set(&s->f));
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_timed_out_wait_leaves_the_flag_clear_and_reusable)
{
	struct sc s = { 0 };

	run_on_new_loop(timeout_main, &s, 0);
}
END_TEST

static int cancel_main(void *arg)
{
	struct sc *s = arg;
	int res = 1;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_cancel(s->waiter), 0);
	ck_assert_int_eq(af_task_join(s->waiter, &res), 0);
	ck_assert_int_eq(res, -ECANCELED);
	assert_free_and_clear(&s->f);
	assert_reusable(s);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_cancelled_wait_leaves_the_flag_clear_and_reusable)
{
	struct sc s = { 0 };

	run_on_new_loop(cancel_main, &s, 0);
}
END_TEST

static int cancel_race_main(void *arg)
{
	struct sc *s = arg;
	int res = 1;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_yield(), 0);
	/* Woken, not resumed: the cancel wins over the set. */
	ck_assert_int_eq(s->waiter->state, AF_TASK_RUNNABLE);
	ck_assert_int_eq(af_task_cancel(s->waiter), 0);
	ck_assert_int_eq(af_task_join(s->waiter, &res), 0);
	ck_assert_int_eq(res, -ECANCELED);
	/* ... but the set is not lost: the next wait takes it at once. */
	ck_assert(af_flag_is_set(&s->f));
	ck_assert_ptr_eq(fl(&s->f)->waiter, NULL);
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 0), 0);
	assert_free_and_clear(&s->f);
	assert_reusable(s);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_set_that_raced_with_a_cancel_is_seen_by_the_next_wait)
{
	struct sc s = { 0 };

	run_on_new_loop(cancel_race_main, &s, 0);
}
END_TEST

static int timed_wait_woken_main(void *arg)
{
	struct sc *s = arg;
	struct setter st;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	setter_start(&st, &s->f, 20, 1, false);
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, LONG_NS), 0);
	setter_join(&st);
	assert_free_and_clear(&s->f);
	/* The timer of that wait is gone: nothing fires later. */
	ck_assert_uint_eq(af__loop_here()->timers.len, 0);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_set_from_another_thread_ends_a_timed_wait_with_success)
{
	struct sc s = { 0 };

	run_on_new_loop(timed_wait_woken_main, &s, 0);
}
END_TEST

/* ---- keeping the loop alive, asleep -------------------------------------------- */

struct alive {
	struct af_flag f;
	uint64_t wall_ns, cpu_ns;
	long nvcsw;
	int r;
};

static int alive_main(void *arg)
{
	struct alive *a = arg;
	struct setter st;
	struct rusage ru0, ru1;
	uint64_t w0, c0;

	ck_assert_int_eq(af_flag_init(&a->f, NULL), 0);
	setter_start(&st, &a->f, 200, 1, false);
	w0 = clock_ns(CLOCK_MONOTONIC);
	c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	getrusage(RUSAGE_THREAD, &ru0);
	/* No timeout: nothing but the flag can end this wait, so the loop
	 * must neither report a deadlock nor poll. */
	a->r = af_flag_wait(&a->f);
	getrusage(RUSAGE_THREAD, &ru1);
	a->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
	a->wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
	a->nvcsw = ru1.ru_nvcsw - ru0.ru_nvcsw;
	setter_join(&st);
	af_flag_destroy(&a->f);
	return 7;
}

START_TEST(a_task_waiting_on_a_flag_keeps_the_loop_alive_asleep_in_the_kernel)
{
	struct af_loop *loop;
	struct alive a = { .r = 1 };
	int result = 0;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, alive_main, &a, &result), 0);
	af_loop_free(loop);
	ck_assert_int_eq(result, 7);
	ck_assert_int_eq(a.r, 0);
	ck_assert_msg(a.wall_ns >= 100 * MS, "the wait ended after %llu ns, before the set",
		      (unsigned long long)a.wall_ns);
	/* Sleeping in io_uring_enter costs no CPU; a 1 ms poll costs a
	 * wake-up (a voluntary context switch) per millisecond. */
	ck_assert_msg(a.cpu_ns < a.wall_ns / 2, "loop thread used %llu ns CPU in %llu ns",
		      (unsigned long long)a.cpu_ns, (unsigned long long)a.wall_ns);
	ck_assert_msg(a.nvcsw < 50, "loop thread woke %ld times while waiting", a.nvcsw);
}
END_TEST

/* ---- cancellation ------------------------------------------------------------------ */

/* A thread with a cancel pending (deferred, the default) calls
 * af_flag_set() on a flag whose loop sleeps, so the set makes its kick's
 * system call. Were that a cancellation point (write(2) is one), the thread
 * would die inside the kick with the loop's kicker count still raised; it
 * must instead return, and be cancelled at its own pthread_testcancel(). */
struct cancel_set {
	struct af_flag f;
	struct af_loop *loop;
	pthread_t th;
	atomic_bool cancel_sent;
	atomic_bool set_returned;
	atomic_int kicks;
	int enable_r;
};

static struct cancel_set cancel_set;

static void count_kicks(enum af__hook_point where, void *obj)
{
	(void)obj;
	if (where == AF_HOOK_KICK_WRITE)
		atomic_fetch_add(&cancel_set.kicks, 1);
}

static void *cancelled_setter(void *arg)
{
	struct cancel_set *c = arg;

	/* Waiting only with calls that are no cancellation points. */
	c->enable_r = pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!atomic_load(&c->cancel_sent))
		sched_yield();
	/* Asleep: the set below must kick. */
	wait_until_a_set_must_kick(c->loop, &c->f);
	/* Not a cancellation point itself: the cancel stays pending. No
	 * ck_assert in this thread: Check's progress mark writes a pipe, a
	 * cancellation point of its own. */
	c->enable_r |= pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	af_flag_set(&c->f);
	atomic_store(&c->set_returned, true);
	pthread_testcancel();
	return NULL;
}

static int cancel_set_main(void *arg)
{
	struct cancel_set *c = arg;
	void *ret = NULL;
	int r;

	c->loop = af_loop_current();
	ck_assert_int_eq(af_flag_init(&c->f, NULL), 0);
	ck_assert_int_eq(pthread_create(&c->th, NULL, cancelled_setter, c), 0);
	ck_assert_int_eq(pthread_cancel(c->th), 0);
	atomic_store(&c->cancel_sent, true);
	/* Bounded, and checked before the loop is freed: a setter killed
	 * inside its kick would leave af_loop_free() waiting for it forever. */
	r = af_flag_wait_timeout(&c->f, 2 * 1000 * MS);
	ck_assert_int_eq(pthread_join(c->th, &ret), 0);
	ck_assert_int_eq(c->enable_r, 0);
	ck_assert_msg(atomic_load(&c->set_returned),
		      "the thread was cancelled inside af_flag_set()");
	ck_assert_msg(ret == PTHREAD_CANCELED, "the setter was not cancelled at pthread_testcancel()");
	ck_assert_msg(atomic_load(&c->kicks) == 1, "the set kicked the loop %d times, not once",
		      atomic_load(&c->kicks));
	ck_assert_int_eq(r, 0);
	af_flag_destroy(&c->f);
	return 0;
}

static void cancel_set_teardown(void)
{
	atomic_store(&af__test_hook, NULL);
	unsetenv("AF_WAKE");
}

static void cancel_set_run(const char *wake)
{
	memset(&cancel_set, 0, sizeof(cancel_set));
	if (wake)
		ck_assert_int_eq(setenv("AF_WAKE", wake, 1), 0);
	atomic_store(&af__test_hook, count_kicks);
	run_on_new_loop(cancel_set_main, &cancel_set, 0);
}

START_TEST(a_set_that_kicks_a_sleeping_loop_is_not_a_cancellation_point)
{
	cancel_set_run(NULL);
}
END_TEST

/* The eventfd write of kernels before 6.7 (write(2) through libc would be
 * a cancellation point). */
START_TEST(a_set_that_writes_the_eventfd_of_a_sleeping_loop_is_not_a_cancellation_point)
{
	cancel_set_run("poll");
}
END_TEST

/* ---- errors ------------------------------------------------------------------------ */

struct errs {
	struct af_flag other_loops_flag;
	struct af_flag mine;
};

static int errors_main(void *arg)
{
	struct errs *e = arg;
	struct af_flag zero;

	memset(&zero, 0, sizeof(zero));
	ck_assert_int_eq(af_flag_wait(&e->other_loops_flag), -EPERM);
	ck_assert_int_eq(af_flag_wait_timeout(&e->other_loops_flag, 0), -EPERM);
	ck_assert_int_eq(af_flag_wait(NULL), -EINVAL);
	ck_assert_int_eq(af_flag_wait_timeout(NULL, 0), -EINVAL);
	ck_assert_int_eq(af_flag_wait(&zero), -EINVAL);
	ck_assert_int_eq(af_flag_wait_timeout(&zero, 0), -EINVAL);
	/* NULL means the loop of this thread. */
	ck_assert_int_eq(af_flag_init(&e->mine, NULL), 0);
	ck_assert_ptr_eq(fl(&e->mine)->loop, af_loop_current());
	ck_assert_int_eq(af_flag_wait_timeout(&e->mine, 0), -ETIMEDOUT);
	af_flag_destroy(&e->mine);
	ck_assert_int_eq(af_flag_wait(&e->mine), -EINVAL);
	return 0;
}

START_TEST(a_flag_of_another_loop_or_an_invalid_flag_is_refused)
{
	struct af_loop *other;
	struct errs e;

	ck_assert_int_eq(af_loop_new(&other, NULL), 0);
	ck_assert_int_eq(af_flag_init(&e.other_loops_flag, other), 0);
	run_on_new_loop(errors_main, &e, 0);
	af_flag_destroy(&e.other_loops_flag);
	af_loop_free(other);
}
END_TEST

START_TEST(wait_outside_a_task_fails_with_eperm)
{
	struct af_loop *loop;
	struct af_flag f;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_flag_wait(&f), -EPERM);
	ck_assert_int_eq(af_flag_wait_timeout(&f, 0), -EPERM);
	/* Set and clear need no task. */
	af_flag_set(&f);
	ck_assert(af_flag_is_set(&f));
	af_flag_clear(&f);
	ck_assert(!af_flag_is_set(&f));
	af_flag_destroy(&f);
	af_loop_free(loop);
}
END_TEST

START_TEST(init_without_a_loop_on_this_thread_fails_with_einval)
{
	struct af_loop *loop;
	struct af_flag f;

	ck_assert_ptr_eq(af_loop_current(), NULL);
	ck_assert_int_eq(af_flag_init(&f, NULL), -EINVAL);
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_flag_init(NULL, loop), -EINVAL);
	ck_assert_int_eq(af_flag_init(NULL, NULL), -EINVAL);
	af_loop_free(loop);
}
END_TEST

START_TEST(set_clear_and_is_set_ignore_a_null_or_uninitialised_flag)
{
	struct af_flag zero;

	memset(&zero, 0, sizeof(zero));
	errno = 4321;
	af_flag_set(NULL);
	af_flag_set(&zero);
	af_flag_clear(NULL);
	af_flag_clear(&zero);
	ck_assert(!af_flag_is_set(NULL));
	ck_assert(!af_flag_is_set(&zero));
	af_flag_destroy(NULL);
	af_flag_destroy(&zero);
	ck_assert_int_eq(errno, 4321);
	/* Nothing was written into the uninitialised storage. */
	for (size_t i = 0; i < sizeof(zero._private._u) / sizeof(zero._private._u[0]); i++)
		ck_assert_uint_eq(zero._private._u[i], 0);
}
END_TEST

static int destroy_with_waiter_main(void *arg)
{
	struct sc *s = arg;
	int res = 1;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	af_flag_destroy(&s->f);
	/* Refused: the flag still works and its waiter is still there. */
	ck_assert_ptr_eq(fl(&s->f)->waiter, s->waiter);
	af_flag_set(&s->f);
	ck_assert_int_eq(af_task_join(s->waiter, &res), 0);
	ck_assert_int_eq(res, 0);
	af_flag_destroy(&s->f);
	ck_assert(!af_flag_is_set(&s->f));
	ck_assert_int_eq(af_flag_wait_timeout(&s->f, 0), -EINVAL);
	return 0;
}

START_TEST(destroying_a_flag_that_a_task_waits_on_is_refused)
{
	struct sc s = { 0 };

	run_on_new_loop(destroy_with_waiter_main, &s, 0);
}
END_TEST

static int left_queued_main(void *arg)
{
	struct sc *s = arg;

	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* The loop collects this set and makes the waiter runnable behind us. */
	af_flag_set(&s->f);
	ck_assert_int_eq(af_yield(), 0);
	/* The waiter still announces WAITING until it resumes: a fresh set
	 * now queues the flag again. The waiter then runs in this same batch
	 * and the loop ends with no task left, without collecting it. */
	af_flag_clear(&s->f);
	af_flag_set(&s->f);
	ck_assert_uint_ne(fstate(&s->f) & AF_FLAG_QUEUED, 0);
	return 0;
}

START_TEST(a_flag_still_queued_when_its_loop_is_freed_can_be_destroyed_afterwards)
{
	struct af_loop *loop;
	struct sc s = { 0 };
	int result = 1;

	through_the_stack();
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_flag_init(&s.f, loop), 0);
	ck_assert_int_eq(af_loop_run(loop, left_queued_main, &s, &result), 0);
	ck_assert_int_eq(s.r1, 0);
	ck_assert_ptr_eq(atomic_load(&loop->pending), fl(&s.f));
	af_loop_free(loop);
	/* ASan catches a destroy that still reaches into the freed loop. */
	ck_assert_uint_eq(fstate(&s.f) & AF_FLAG_QUEUED, 0);
	af_flag_destroy(&s.f);
	ck_assert(!af_flag_is_set(&s.f));
}
END_TEST

/* ---- lifetimes: controlled interleavings through af__test_hook ---------------- */

/* One stall: the thread that reaches @point on @obj posts `reached` and then
 * waits (up to half a second) for `go`. Fixed code may hold the other side
 * back until the stalled thread leaves the library; the timeout lets it
 * leave, so a correct library only costs the test that half second. */
static struct stall {
	enum af__hook_point point;
	void *_Atomic obj;
	sem_t reached, go;
	atomic_bool hit;
} stall;

static void stall_hook(enum af__hook_point where, void *obj)
{
	struct timespec ts;

	if (where != stall.point || obj != atomic_load(&stall.obj) ||
	    atomic_exchange(&stall.hit, true))
		return;
	sem_post(&stall.reached);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 500 * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	while (sem_timedwait(&stall.go, &ts) < 0 && errno == EINTR)
		;
}

static void stall_arm(enum af__hook_point point, void *obj)
{
	stall.point = point;
	atomic_store(&stall.obj, obj);
	atomic_store(&stall.hit, false);
	ck_assert_int_eq(sem_init(&stall.reached, 0, 0), 0);
	ck_assert_int_eq(sem_init(&stall.go, 0, 0), 0);
	atomic_store(&af__test_hook, stall_hook);
}

static void stall_disarm(void)
{
	atomic_store(&af__test_hook, NULL);
	sem_destroy(&stall.reached);
	sem_destroy(&stall.go);
}

/* A heap flag whose waiter destroys it and reuses the memory the moment
 * its wait returns, while the setter thread is stalled inside the set. */
struct reuse {
	struct af_flag *flag;
	enum af__hook_point point;
	unsigned char fill;
	bool cancel;
	pthread_t setter;
};

static void *set_once(void *arg)
{
	af_flag_set(arg);
	return NULL;
}

static int reuse_waiter(void *arg)
{
	struct reuse *u = arg;
	int r = af_flag_wait(u->flag);

	/* Cancelled while the setter stalled between SET and queueing: the
	 * set is there for the next wait, which returns without blocking. */
	if (r == -ECANCELED)
		r = af_flag_wait(u->flag);
	ck_assert_int_eq(r, 0);
	af_flag_destroy(u->flag);
	memset(u->flag, u->fill, sizeof(*u->flag));
	free(u->flag);
	u->flag = NULL;
	sem_post(&stall.go);
	return 0;
}

static int reuse_main(void *arg)
{
	struct reuse *u = arg;
	struct af_task *w;

	ck_assert_int_eq(af_flag_init(u->flag, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&w, reuse_waiter, u), 0);
	ck_assert_int_eq(af_yield(), 0);
	stall_arm(u->point, u->flag);
	ck_assert_int_eq(pthread_create(&u->setter, NULL, set_once, u->flag), 0);
	if (u->cancel) {
		sem_wait(&stall.reached);
		ck_assert_int_eq(af_task_cancel(w), 0);
	}
	ck_assert_int_eq(af_task_join(w, NULL), 0);
	return 0;
}

static void reuse_run(enum af__hook_point point, unsigned char fill, bool cancel)
{
	struct reuse u = { .point = point, .fill = fill, .cancel = cancel };

	u.flag = malloc(sizeof(*u.flag));
	ck_assert_ptr_nonnull(u.flag);
	run_on_new_loop(reuse_main, &u, 0);
	ck_assert_int_eq(pthread_join(u.setter, NULL), 0);
	stall_disarm();
}

START_TEST(a_flag_may_be_destroyed_and_reused_as_soon_as_its_wait_returns_while_the_setter_is_before_the_kick)
{
	/* Before the fix the setter read f->loop from the reused bytes
	 * (0xa5...) after the push and crashed; ASan reported the freed read. */
	reuse_run(AF_HOOK_SET_PUSHED, 0xa5, false);
}
END_TEST

START_TEST(a_flag_may_be_destroyed_and_reused_as_soon_as_its_wait_returns_while_the_setter_is_between_set_and_queue)
{
	/* The waiter is cancelled while SET is visible but the flag is not
	 * yet queued, takes SET on its next wait and frees the flag: before
	 * the fix the setter then queued the zeroed memory. */
	reuse_run(AF_HOOK_SET_PUBLISHED, 0, true);
}
END_TEST

/* A waiter cancelled while its setter is in flight; the flag is destroyed
 * and its storage kept: the late set must leave it off the loop's list. */
struct late {
	struct af_flag f;
	struct af_task *waiter;
	pthread_t setter;
};

static int wait_for_cancel(void *arg)
{
	ck_assert_int_eq(af_flag_wait(arg), -ECANCELED);
	return 0;
}

static int late_set_main(void *arg)
{
	struct late *l = arg;

	ck_assert_int_eq(af_flag_init(&l->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&l->waiter, wait_for_cancel, &l->f), 0);
	ck_assert_int_eq(af_yield(), 0);
	stall_arm(AF_HOOK_SET_PUBLISHED, &l->f);
	ck_assert_int_eq(pthread_create(&l->setter, NULL, set_once, &l->f), 0);
	sem_wait(&stall.reached);
	ck_assert_int_eq(af_task_join_timeout(l->waiter, 0, NULL), -ETIMEDOUT);
	af_flag_destroy(&l->f);
	sem_post(&stall.go);
	ck_assert_int_eq(pthread_join(l->setter, NULL), 0);
	stall_disarm();
	/* Before the fix the late set pushed the destroyed flag here. */
	ck_assert_ptr_null(atomic_load(&af_loop_current()->pending));
	ck_assert_uint_eq(fstate(&l->f) & AF_FLAG_QUEUED, 0);
	ck_assert(!af_flag_is_set(&l->f));
	return 0;
}

START_TEST(a_set_in_flight_when_the_flag_is_destroyed_is_ignored_and_queues_nothing)
{
	struct late l = { 0 };

	run_on_new_loop(late_set_main, &l, 0);
}
END_TEST

/* Issue 7 item 3: re-initialising a flag that is still on the pending
 * stack. */
struct requeue {
	struct af_flag a, b;
	struct af_task *wa, *wb;
	int rb;
};

static int wait_b(void *arg)
{
	struct requeue *q = arg;

	q->rb = af_flag_wait(&q->b);
	return 0;
}

static int init_queued_main(void *arg)
{
	struct requeue *q = arg;

	ck_assert_int_eq(af_flag_init(&q->a, NULL), 0);
	ck_assert_int_eq(af_flag_init(&q->b, NULL), 0);
	q->rb = 1;
	ck_assert_int_eq(af_task_spawn(&q->wa, wait_for_cancel, &q->a), 0);
	ck_assert_int_eq(af_task_spawn(&q->wb, wait_b, q), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* pending: a -> b. Cancel a's waiter before the loop collects. */
	af_flag_set(&q->b);
	af_flag_set(&q->a);
	ck_assert_int_eq(af_task_cancel(q->wa), 0);
	ck_assert_uint_ne(fstate(&q->a) & AF_FLAG_QUEUED, 0);
	ck_assert_int_eq(af_flag_init(&q->a, NULL), 0);
	/* Before the fix b was cut off the stack and its waiter never woke. */
	ck_assert_int_eq(af_task_join_timeout(q->wb, 2000 * 1000000LL, NULL), 0);
	ck_assert_int_eq(q->rb, 0);
	ck_assert_int_eq(af_task_join(q->wa, NULL), 0);
	ck_assert(!af_flag_is_set(&q->a));
	af_flag_destroy(&q->a);
	af_flag_destroy(&q->b);
	return 0;
}

START_TEST(init_on_a_flag_still_queued_takes_it_off_the_loop_and_keeps_the_others)
{
	struct requeue q;

	memset(&q, 0, sizeof(q));
	through_the_stack();
	run_on_new_loop(init_queued_main, &q, 0);
}
END_TEST

/* Item 5: two threads destroy queued flags of one stopped loop at once. */
struct two {
	struct af_flag a, b;
	pthread_t th;
};

static void queue_on_stopped_loop(struct af_flag *f, struct af_loop *loop)
{
	ck_assert_int_eq(af_flag_init(f, loop), 0);
	/* As if a task had parked on it in an earlier run. */
	atomic_fetch_or(&fl(f)->state, AF_FLAG_WAITING);
	af_flag_set(f);
	atomic_fetch_and(&fl(f)->state, ~AF_FLAG_WAITING);
	ck_assert_uint_ne(fstate(f) & AF_FLAG_QUEUED, 0);
}

static void *destroy_a(void *arg)
{
	af_flag_destroy(&((struct two *)arg)->a);
	return NULL;
}

START_TEST(two_threads_destroying_queued_flags_of_one_stopped_loop_leave_its_list_empty)
{
	struct af_loop *loop;
	struct two *t = calloc(1, sizeof(*t));

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	queue_on_stopped_loop(&t->b, loop);
	queue_on_stopped_loop(&t->a, loop);
	stall_arm(AF_HOOK_UNQUEUE, &t->a);
	ck_assert_int_eq(pthread_create(&t->th, NULL, destroy_a, t), 0);
	sem_wait(&stall.reached);
	af_flag_destroy(&t->b);
	memset(&t->b, 0, sizeof(t->b));
	sem_post(&stall.go);
	ck_assert_int_eq(pthread_join(t->th, NULL), 0);
	stall_disarm();
	/* Before the fix the first destroy put b, already destroyed, back. */
	ck_assert_ptr_null(atomic_load(&loop->pending));
	af_loop_free(loop);
	free(t);
}
END_TEST

/* The pattern the lifetime rule is for: a flag on a task's stack, set by a
 * long-lived thread that nobody joins per flag. */
struct stack_rounds {
	struct af_flag *_Atomic next;
	sem_t ready;
	long rounds;
};

static void *stack_setter(void *arg)
{
	struct stack_rounds *s = arg;

	for (long i = 0; i < s->rounds; i++) {
		while (sem_wait(&s->ready) < 0)
			;
		af_flag_set(atomic_load(&s->next));
	}
	return NULL;
}

static int one_round(void *arg)
{
	struct stack_rounds *s = arg;
	struct af_flag f;

	ck_assert_int_eq(af_flag_init(&f, NULL), 0);
	atomic_store(&s->next, &f);
	sem_post(&s->ready);
	ck_assert_int_eq(af_flag_wait(&f), 0);
	af_flag_destroy(&f);
	return 0;
}

static int stack_rounds_main(void *arg)
{
	struct stack_rounds *s = arg;

	for (long i = 0; i < s->rounds; i++) {
		struct af_task *t;

		ck_assert_int_eq(af_task_spawn(&t, one_round, s), 0);
		ck_assert_int_eq(af_task_join(t, NULL), 0);
	}
	return 0;
}

/* 10^5 rounds take seconds in plain and ASan builds; TSan makes every
 * switch and wake-up an order of magnitude slower, so fewer rounds keep
 * the test within its time on a loaded machine. */
#if AF_TSAN
#define STACK_ROUNDS test_rounds(20000)
#else
#define STACK_ROUNDS test_rounds(100000)
#endif

START_TEST(a_flag_on_a_task_stack_destroyed_right_after_its_wait_survives_a_long_lived_setter)
{
	struct stack_rounds s = { .rounds = STACK_ROUNDS };
	pthread_t th;

	ck_assert_int_eq(sem_init(&s.ready, 0, 0), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, stack_setter, &s), 0);
	run_on_new_loop(stack_rounds_main, &s, 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	sem_destroy(&s.ready);
}
END_TEST

/* ---- the wake-up path (white-box) ------------------------------------------------ */

static bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

START_TEST(a_set_with_no_waiter_only_sets_the_bit_and_queues_nothing)
{
	struct af_loop *loop;
	struct af_flag f;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	atomic_store(&loop->sleep_state, AF_SLEEPING);
	af_flag_set(&f);
	ck_assert_uint_eq(fstate(&f), AF_FLAG_SET);
	ck_assert_ptr_eq(atomic_load(&loop->pending), NULL);
	/* Even a sleeping loop is not woken: nobody waits. */
	ck_assert_uint_eq(atomic_load(&loop->sleep_state), AF_SLEEPING);
	ck_assert(!fd_readable(loop->efd));
	atomic_store(&loop->sleep_state, AF_AWAKE);
	af_flag_destroy(&f);
	af_loop_free(loop);
}
END_TEST

/* The loop has never run, so no io_uring read drains its eventfd: the
 * counter shows exactly how many writes the setters made. */
START_TEST(sets_write_the_eventfd_once_per_loop_sleep_and_never_while_it_is_awake)
{
	struct af_loop *loop;
	struct af_flag f[4];
	uint64_t count = 0;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(af_flag_init(&f[i], loop), 0);
		/* As if a task were parked on each. */
		atomic_fetch_or(&fl(&f[i])->state, AF_FLAG_WAITING);
	}
	af_flag_set(&f[0]);
	ck_assert_ptr_eq(atomic_load(&loop->pending), fl(&f[0]));
	ck_assert_uint_eq(atomic_load(&loop->sleep_state), AF_AWAKE);
	ck_assert(!fd_readable(loop->efd));

	atomic_store(&loop->sleep_state, AF_SLEEPING);
	for (int i = 1; i < 4; i++)
		af_flag_set(&f[i]);
	ck_assert_uint_eq(atomic_load(&loop->sleep_state), AF_WOKEN);
	ck_assert(fd_readable(loop->efd));
	ck_assert_int_eq(read(loop->efd, &count, sizeof(count)), (ssize_t)sizeof(count));
	ck_assert_uint_eq(count, 1);

	for (int i = 0; i < 4; i++) {
		atomic_fetch_and(&fl(&f[i])->state, ~AF_FLAG_WAITING);
		af_flag_destroy(&f[i]);
	}
	ck_assert_ptr_eq(atomic_load(&loop->pending), NULL);
	af_loop_free(loop);
}
END_TEST

struct awake {
	struct sc s;
	int fake;
	bool was_readable;
	bool stack;                  /* AF_POLL=0: the set pushes the flag */
};

/* One set of the flag from another thread, with the loop's eventfd swapped
 * for a->fake while it runs: any kick the set makes is seen there, and
 * nothing else reads it. */
static void set_from_thread_seen_by_fake_eventfd(struct awake *a)
{
	struct af_loop *loop = af_loop_current();
	struct setter st;
	int real = loop->efd;

	loop->efd = a->fake;
	setter_start(&st, &a->s.f, 0, 1, false);
	setter_join(&st);
	loop->efd = real;
	a->was_readable = fd_readable(a->fake);
}

static int awake_main(void *arg)
{
	struct awake *a = arg;
	struct af_loop *loop = af_loop_current();

	ck_assert_int_eq(af_flag_init(&a->s.f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&a->s.waiter, waiter_waits_once, &a->s), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(a->s.waiter->state, AF_TASK_BLOCKED);
	/* This task runs, so the loop is awake. */
	ck_assert_uint_eq(atomic_load(&loop->sleep_state), AF_AWAKE);
	set_from_thread_seen_by_fake_eventfd(a);
	if (a->stack) {
		ck_assert_ptr_eq(atomic_load(&loop->pending), fl(&a->s.f));
		ck_assert_ptr_null(loop->polled);
	} else {
		/* The polled waiter's set touched nothing of the loop's, not
		 * even its sleep state: the loop finds it in the flag's word. */
		ck_assert_ptr_null(atomic_load(&loop->pending));
		ck_assert_ptr_eq(loop->polled, fl(&a->s.f));
		ck_assert_uint_eq(fstate(&a->s.f), AF_FLAG_SET | AF_FLAG_WAITING);
		ck_assert_uint_ne(atomic_load(&fl(&a->s.f)->state) & AF_FLAG_POLLED, 0);
	}
	ck_assert_int_eq(af_task_join(a->s.waiter, NULL), 0);
	ck_assert_ptr_null(loop->polled);
	ck_assert_uint_eq(atomic_load(&fl(&a->s.f)->state) & AF_FLAG_POLLED, 0);
	af_flag_destroy(&a->s.f);
	return 0;
}

/* @fn on a new loop, with a fake eventfd for its set: no kick was written
 * and the waiter's wait returned 0. */
static void awake_run_with(af_task_fn fn, bool stack)
{
	struct awake a = { .s = { .r1 = 1 }, .stack = stack };

	if (stack)
		through_the_stack();
	a.fake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(a.fake, 0);
	run_on_new_loop(fn, &a, 0);
	close(a.fake);
	ck_assert(!a.was_readable);
	ck_assert_int_eq(a.s.r1, 0);
}

static void awake_run(bool stack)
{
	awake_run_with(awake_main, stack);
}

START_TEST(a_set_from_another_thread_while_the_loop_is_awake_makes_no_system_call)
{
	awake_run(false);
}
END_TEST

START_TEST(a_set_through_the_pending_stack_while_the_loop_is_awake_makes_no_system_call)
{
	awake_run(true);
}
END_TEST

/* ---- the polled flag ---------------------------------------------------------- */

/* Two flags, a waiter on each: the first to park is the loop's polled
 * waiter, the other goes through the pending stack. */
struct pair {
	struct sc a, b;
};

static int polled_and_stacked_main(void *arg)
{
	struct pair *p = arg;
	struct af_loop *loop = af_loop_current();
	struct setter st;

	ck_assert_int_eq(af_flag_init(&p->a.f, NULL), 0);
	ck_assert_int_eq(af_flag_init(&p->b.f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&p->a.waiter, waiter_waits_once, &p->a), 0);
	ck_assert_int_eq(af_task_spawn(&p->b.waiter, waiter_waits_once, &p->b), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(loop->polled, fl(&p->a.f));
	ck_assert_uint_ne(atomic_load(&fl(&p->a.f)->state) & AF_FLAG_POLLED, 0);
	ck_assert_uint_eq(atomic_load(&fl(&p->b.f)->state) & AF_FLAG_POLLED, 0);
	setter_start(&st, &p->a.f, 0, 1, false);
	setter_join(&st);
	ck_assert_ptr_null(atomic_load(&loop->pending));
	setter_start(&st, &p->b.f, 0, 1, false);
	setter_join(&st);
	ck_assert_ptr_eq(atomic_load(&loop->pending), fl(&p->b.f));
	ck_assert_int_eq(af_task_join(p->a.waiter, NULL), 0);
	ck_assert_int_eq(af_task_join(p->b.waiter, NULL), 0);
	ck_assert_ptr_null(loop->polled);
	ck_assert_uint_eq(fstate(&p->a.f), 0);
	ck_assert_uint_eq(fstate(&p->b.f), 0);
	af_flag_destroy(&p->a.f);
	af_flag_destroy(&p->b.f);
	return 0;
}

START_TEST(the_first_waiter_is_polled_and_a_second_flags_waiter_goes_through_the_pending_stack)
{
	struct pair p = { .a = { .r1 = 1 }, .b = { .r1 = 1 } };

	run_on_new_loop(polled_and_stacked_main, &p, 0);
	ck_assert_int_eq(p.a.r1, 0);
	ck_assert_int_eq(p.b.r1, 0);
}
END_TEST

static int slot_freed_main(void *arg)
{
	struct pair *p = arg;
	struct af_loop *loop = af_loop_current();

	ck_assert_int_eq(af_flag_init(&p->a.f, NULL), 0);
	ck_assert_int_eq(af_flag_init(&p->b.f, NULL), 0);
	/* A timeout gives the slot up. */
	ck_assert_int_eq(af_flag_wait_timeout(&p->a.f, 1 * MS), -ETIMEDOUT);
	ck_assert_ptr_null(loop->polled);
	/* The loop slept with the word marked, and the timeout's detach took
	 * the mark off with the slot. */
	ck_assert_uint_eq(atomic_load(&fl(&p->a.f)->state) & (AF_FLAG_POLLED | AF_FLAG_SLEEPER), 0);
	/* So does a cancel. */
	ck_assert_int_eq(af_task_spawn(&p->a.waiter, wait_for_cancel, &p->a.f), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(loop->polled, fl(&p->a.f));
	ck_assert_int_eq(af_task_cancel(p->a.waiter), 0);
	ck_assert_ptr_null(loop->polled);
	ck_assert_int_eq(af_task_join(p->a.waiter, NULL), 0);
	ck_assert_uint_eq(atomic_load(&fl(&p->a.f)->state) & AF_FLAG_POLLED, 0);
	/* The next waiter, of another flag, is polled and woken. */
	ck_assert_int_eq(af_task_spawn(&p->b.waiter, waiter_waits_once, &p->b), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(loop->polled, fl(&p->b.f));
	af_flag_set(&p->b.f);
	ck_assert_int_eq(af_task_join(p->b.waiter, NULL), 0);
	ck_assert_ptr_null(loop->polled);
	af_flag_destroy(&p->a.f);
	af_flag_destroy(&p->b.f);
	return 0;
}

START_TEST(a_polled_waiter_that_times_out_or_is_cancelled_leaves_the_slot_to_the_next_waiter)
{
	struct pair p = { .b = { .r1 = 1 } };

	run_on_new_loop(slot_freed_main, &p, 0);
	ck_assert_int_eq(p.b.r1, 0);
}
END_TEST

/* A flag still on the pending stack from an earlier waiter (cancelled
 * after its set, the set cleared) when a new waiter parks on it as the
 * polled one: its next set does not push it again, and the loop's check of
 * the polled word leaves it to the stack, which wakes the waiter once and
 * in the order of the sets: after a flag set before it. */
struct named {
	struct af_flag f;
	const char *name;
	struct trace *tr;
	int r;
};

static int named_waiter(void *arg)
{
	struct named *n = arg;
	char line[16];

	n->r = af_flag_wait(&n->f);
	snprintf(line, sizeof(line), "%s-woken", n->name);
	trace_add(n->tr, line);
	return 0;
}

struct queued_polled {
	struct trace tr;
	struct named f, g;
};

static int queued_then_polled_main(void *arg)
{
	struct queued_polled *q = arg;
	struct af_loop *loop = af_loop_current();
	struct af__flag *f = fl(&q->f.f);
	struct af_task *wf, *wg;
	uint64_t wakes;

	ck_assert_int_eq(af_flag_init(&q->f.f, NULL), 0);
	ck_assert_int_eq(af_flag_init(&q->g.f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&wf, named_waiter, &q->f), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_spawn(&wg, named_waiter, &q->g), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(loop->polled, f);
	wakes = loop->outside_wakes;
	af_flag_set(&q->g.f);
	ck_assert_ptr_eq(atomic_load(&loop->pending), fl(&q->g.f));
	/* As if an earlier, non-polled waiter's set had left f queued. */
	atomic_fetch_or(&f->state, AF_FLAG_QUEUED);
	f->next = fl(&q->g.f);
	atomic_store(&loop->pending, f);
	af_flag_set(&q->f.f);
	ck_assert_ptr_eq(atomic_load(&loop->pending), f);
	ck_assert_ptr_eq(f->next, fl(&q->g.f));
	ck_assert_int_eq(af_task_join(wf, NULL), 0);
	ck_assert_int_eq(af_task_join(wg, NULL), 0);
	ck_assert_str_eq(q->tr.buf, "g-woken f-woken");
	ck_assert_uint_eq(loop->outside_wakes - wakes, 2);
	ck_assert_ptr_null(loop->polled);
	ck_assert_ptr_null(atomic_load(&loop->pending));
	ck_assert_uint_eq(fstate(&q->f.f), 0);
	af_flag_destroy(&q->f.f);
	af_flag_destroy(&q->g.f);
	return 0;
}

START_TEST(a_flag_still_queued_when_its_waiter_became_the_polled_one_is_woken_once_by_the_stack)
{
	struct queued_polled q = { .f = { .name = "f", .r = 1 }, .g = { .name = "g", .r = 1 } };

	q.f.tr = q.g.tr = &q.tr;
	run_on_new_loop(queued_then_polled_main, &q, 0);
	ck_assert_int_eq(q.f.r, 0);
	ck_assert_int_eq(q.g.r, 0);
}
END_TEST

/* A loop with nothing to run sleeps with SLEEPER on its polled flag's word:
 * a thread waits to see the mark and the sleep, then sets. Only a set that
 * takes the mark for a kick can wake this loop; the wake clears the mark. */
struct marked {
	struct sc s;
	struct af_loop *loop;
	pthread_t th;
	_Atomic bool saw_mark;
};

static void *set_once_marked_asleep(void *arg)
{
	struct marked *m = arg;

	/* Bounded (about 2 s): if the mark never shows, the set still comes
	 * and the case fails, on saw_mark or, the loop never woken, on its
	 * timeout. */
	for (int i = 0; i < 20000; i++) {
		uint32_t st = atomic_load(&fl(&m->s.f)->state);
		unsigned ss = atomic_load(&m->loop->sleep_state);

		if ((st & AF_FLAG_SLEEPER) && (ss & AF_SLEEP_MASK) == AF_SLEEPING) {
			atomic_store(&m->saw_mark, true);
			break;
		}
		usleep(100);
	}
	af_flag_set(&m->s.f);
	return NULL;
}

static int marked_main(void *arg)
{
	struct marked *m = arg;

	m->loop = af_loop_current();
	ck_assert_int_eq(af_flag_init(&m->s.f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&m->s.waiter, waiter_waits_once, &m->s), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(m->loop->polled, fl(&m->s.f));
	/* Awake: no mark. */
	ck_assert_uint_eq(atomic_load(&fl(&m->s.f)->state) & AF_FLAG_SLEEPER, 0);
	ck_assert_int_eq(pthread_create(&m->th, NULL, set_once_marked_asleep, m), 0);
	ck_assert_int_eq(af_task_join(m->s.waiter, NULL), 0);
	ck_assert_int_eq(pthread_join(m->th, NULL), 0);
	ck_assert(atomic_load(&m->saw_mark));
	ck_assert_uint_eq(atomic_load(&fl(&m->s.f)->state) & (AF_FLAG_SLEEPER | AF_FLAG_BUSY_MASK), 0);
	af_flag_destroy(&m->s.f);
	return 0;
}

START_TEST(a_loop_asleep_under_its_polled_waiter_marks_the_flag_and_the_set_that_finds_the_mark_wakes_it)
{
	struct marked m = { .s = { .r1 = 1 } };

	run_on_new_loop(marked_main, &m, 0);
	ck_assert_int_eq(m.s.r1, 0);
}
END_TEST

/* The setter of an awake loop's polled waiter is stalled right after its
 * CAS: the waiter returns, destroys the flag and frees it while the setter
 * is still inside af_flag_set(). Destroy must not wait for that setter (it
 * would wait forever: the setter goes on only once the memory is gone),
 * and the setter must not touch the flag again (ASan would see it). */
struct freed_early {
	struct af_flag *flag;
	struct af_task *waiter;
	pthread_t setter;
};

static int wait_destroy_free(void *arg)
{
	struct freed_early *e = arg;

	ck_assert_int_eq(af_flag_wait(e->flag), 0);
	af_flag_destroy(e->flag);
	memset(e->flag, 0, sizeof(*e->flag));
	free(e->flag);
	e->flag = NULL;
	sem_post(&stall.go);
	return 0;
}

static int freed_early_main(void *arg)
{
	struct freed_early *e = arg;

	ck_assert_int_eq(af_flag_init(e->flag, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&e->waiter, wait_destroy_free, e), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(af_loop_current()->polled, fl(e->flag));
	stall_arm(AF_HOOK_SET_PUBLISHED, e->flag);
	ck_assert_int_eq(pthread_create(&e->setter, NULL, set_once, e->flag), 0);
	/* This task keeps the loop awake until the setter is past its CAS. */
	sem_wait(&stall.reached);
	ck_assert_uint_eq(atomic_load(&fl(e->flag)->state) & AF_FLAG_BUSY_MASK, 0);
	ck_assert_int_eq(af_task_join(e->waiter, NULL), 0);
	ck_assert_ptr_null(e->flag);
	return 0;
}

START_TEST(the_set_of_an_awake_loops_polled_waiter_is_done_with_the_flag_at_its_cas)
{
	struct freed_early e = { 0 };

	e.flag = malloc(sizeof(*e.flag));
	ck_assert_ptr_nonnull(e.flag);
	run_on_new_loop(freed_early_main, &e, 0);
	ck_assert_int_eq(pthread_join(e.setter, NULL), 0);
	stall_disarm();
}
END_TEST

/* A loop woken by a timer while its polled waiter stays parked leaves the
 * mark: the next set counts itself busy, finds the loop awake and makes
 * no system call, and the waiter's clear takes the mark off. */
static int stale_mark_main(void *arg)
{
	struct awake *a = arg;
	struct af_loop *loop = af_loop_current();

	ck_assert_int_eq(af_flag_init(&a->s.f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&a->s.waiter, waiter_waits_once, &a->s), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* A timer already due when the loop looks needs no sleep: sleep
	 * again until one did (100 tries, so that a loop that never marks
	 * fails). */
	for (int i = 0; i < 100 && !(atomic_load(&fl(&a->s.f)->state) & AF_FLAG_SLEEPER); i++)
		ck_assert_int_eq(af_sleep_ms(2), 0);
	ck_assert_uint_ne(atomic_load(&fl(&a->s.f)->state) & AF_FLAG_SLEEPER, 0);
	ck_assert_uint_eq(atomic_load(&loop->sleep_state), AF_AWAKE);
	set_from_thread_seen_by_fake_eventfd(a);
	ck_assert_uint_eq(atomic_load(&fl(&a->s.f)->state) & AF_FLAG_BUSY_MASK, 0);
	ck_assert_ptr_null(atomic_load(&loop->pending));
	ck_assert_int_eq(af_task_join(a->s.waiter, NULL), 0);
	ck_assert_uint_eq(atomic_load(&fl(&a->s.f)->state) & AF_FLAG_SLEEPER, 0);
	af_flag_destroy(&a->s.f);
	return 0;
}

START_TEST(a_mark_left_by_a_loop_that_woke_for_a_timer_costs_the_next_set_no_system_call)
{
	awake_run_with(stale_mark_main, false);
}
END_TEST

#define MANY_FLAGS 10000
#define MANY_WAITERS 16

struct many {
	struct af_flag *flags;
	int woken[MANY_WAITERS];
	int idx[MANY_WAITERS];
	struct af_task *tasks[MANY_WAITERS];
	int target;
};

struct many_arg {
	struct many *m;
	int w;
};

static int many_waiter(void *arg)
{
	struct many_arg *a = arg;
	int r = af_flag_wait(&a->m->flags[a->m->idx[a->w]]);

	if (r == 0)
		a->m->woken[a->w]++;
	return r;
}

struct many_setter {
	struct many *m;
	bool waited[MANY_FLAGS];
};

static void *many_setter_main(void *arg)
{
	struct many_setter *ms = arg;

	/* Every flag nobody waits on, then the one with a waiter. */
	for (int i = 0; i < MANY_FLAGS; i++)
		if (!ms->waited[i])
			af_flag_set(&ms->m->flags[i]);
	af_flag_set(&ms->m->flags[ms->m->idx[ms->m->target]]);
	return NULL;
}

static int many_main(void *arg)
{
	struct many *m = arg;
	struct many_arg args[MANY_WAITERS];
	struct many_setter *ms = calloc(1, sizeof(*ms));
	struct af_loop *loop = af_loop_current();
	struct af__flag *head;
	pthread_t th;
	int spins = 0;

	ck_assert_ptr_nonnull(ms);
	ms->m = m;
	for (int i = 0; i < MANY_FLAGS; i++)
		ck_assert_int_eq(af_flag_init(&m->flags[i], NULL), 0);
	for (int w = 0; w < MANY_WAITERS; w++) {
		m->idx[w] = w * (MANY_FLAGS / MANY_WAITERS) + 7;
		ms->waited[m->idx[w]] = true;
		args[w] = (struct many_arg){ m, w };
		ck_assert_int_eq(af_task_spawn(&m->tasks[w], many_waiter, &args[w]), 0);
	}
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(atomic_load(&loop->pending), NULL);
	m->target = 11;
	ck_assert_int_eq(pthread_create(&th, NULL, many_setter_main, ms), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	/* 10000 flags set, one waited on: exactly one flag to collect. */
	head = atomic_load(&loop->pending);
	ck_assert_ptr_eq(head, fl(&m->flags[m->idx[m->target]]));
	ck_assert_ptr_eq(head->next, NULL);
	while (m->woken[m->target] == 0 && spins++ < 10)
		ck_assert_int_eq(af_yield(), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_yield(), 0);
	for (int w = 0; w < MANY_WAITERS; w++) {
		int res = 1;

		ck_assert_int_eq(m->woken[w], w == m->target);
		if (w != m->target)
			ck_assert_int_eq(af_task_cancel(m->tasks[w]), 0);
		ck_assert_int_eq(af_task_join(m->tasks[w], &res), 0);
		ck_assert_int_eq(res, w == m->target ? 0 : -ECANCELED);
	}
	for (int i = 0; i < MANY_FLAGS; i++)
		af_flag_destroy(&m->flags[i]);
	free(ms);
	return 0;
}

START_TEST(among_ten_thousand_set_flags_the_loop_collects_only_the_one_with_a_waiter)
{
	struct many m = { 0 };

	m.flags = calloc(MANY_FLAGS, sizeof(*m.flags));
	ck_assert_ptr_nonnull(m.flags);
	run_on_new_loop(many_main, &m, 0);
	free(m.flags);
}
END_TEST

/* ---- stress ------------------------------------------------------------------------ */

#define STORM_THREADS 4
#define STORM_SETS 100000

struct storm {
	struct af_flag f;
	pthread_t th[STORM_THREADS];
	atomic_int last[STORM_THREADS];
	long wakes;
};

struct storm_thread {
	struct storm *s;
	int id;
};

static void *storm_setter(void *arg)
{
	struct storm_thread *t = arg;

	for (int i = 0; i < STORM_SETS; i++)
		af_flag_set(&t->s->f);
	/* The final set comes after the value, so the wait that consumes it
	 * (or any later one) must see the value. */
	atomic_store_explicit(&t->s->last[t->id], 1, memory_order_relaxed);
	af_flag_set(&t->s->f);
	return NULL;
}

static bool storm_all_final(struct storm *s)
{
	for (int i = 0; i < STORM_THREADS; i++)
		if (!atomic_load_explicit(&s->last[i], memory_order_relaxed))
			return false;
	return true;
}

static int storm_main(void *arg)
{
	struct storm *s = arg;
	struct storm_thread ts[STORM_THREADS];

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	for (int i = 0; i < STORM_THREADS; i++) {
		ts[i] = (struct storm_thread){ s, i };
		ck_assert_int_eq(pthread_create(&s->th[i], NULL, storm_setter, &ts[i]), 0);
	}
	/* At least one wait even if every thread has finished already (a
	 * loaded machine may run them all before we get here): their final
	 * sets must then have left the flag set. */
	do {
		int r = af_flag_wait_timeout(&s->f, LONG_NS);

		ck_assert_msg(r == 0, "lost wake-up: wait returned %d after %ld wakes; "
				      "final sets seen: %d %d %d %d", r, s->wakes,
			      atomic_load(&s->last[0]), atomic_load(&s->last[1]),
			      atomic_load(&s->last[2]), atomic_load(&s->last[3]));
		s->wakes++;
	} while (!storm_all_final(s));
	for (int i = 0; i < STORM_THREADS; i++)
		ck_assert_int_eq(pthread_join(s->th[i], NULL), 0);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(four_threads_storming_sets_never_lose_their_final_set)
{
	struct storm s = { .wakes = 0 };

	run_on_new_loop(storm_main, &s, 0);
	ck_assert_int_ge(s.wakes, 1);
	ck_assert_int_le(s.wakes, STORM_THREADS * (STORM_SETS + 1));
}
END_TEST

/* A thread that sets the flag until told to stop, pausing a little
 * between sets so that waits really park and sets land at every point
 * of the wait/cancel/timeout paths. */
struct racer {
	struct af_flag *f;
	atomic_bool stop, started;
	long sets;
	pthread_t th;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	unsigned spin = 1;

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		af_flag_set(r->f);
		r->sets++;
		/* release/acquire is not needed: started only says "running". */
		atomic_store_explicit(&r->started, true, memory_order_relaxed);
		spin = spin * 1103515245u + 12345u;
		for (volatile unsigned i = 0; i < ((spin >> 16) & 1023); i++)
			;
	}
	return NULL;
}

static void racer_start(struct racer *r, struct af_flag *f)
{
	r->f = f;
	r->sets = 0;
	atomic_init(&r->stop, false);
	atomic_init(&r->started, false);
	ck_assert_int_eq(pthread_create(&r->th, NULL, racer_main, r), 0);
	/* On a crowded machine the new thread may not run for a while: wait
	 * until it sets, so the rounds really race with it. */
	while (!atomic_load_explicit(&r->started, memory_order_relaxed))
		sched_yield();
}

static void racer_stop(struct racer *r)
{
	atomic_store(&r->stop, true);
	ck_assert_int_eq(pthread_join(r->th, NULL), 0);
}

/* After a storm: a clean flag, one waiter parked, one set from another
 * thread must wake it. */
static void assert_final_set_wakes_final_wait(struct sc *s)
{
	struct setter st;

	af_flag_clear(&s->f);
	assert_free_and_clear(&s->f);
	s->r1 = 1;
	ck_assert_int_eq(af_task_spawn(&s->waiter, waiter_waits_once, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(s->waiter->state, AF_TASK_BLOCKED);
	setter_start(&st, &s->f, 0, 1, false);
	setter_join(&st);
	ck_assert_int_eq(af_task_join(s->waiter, NULL), 0);
	ck_assert_msg(s->r1 == 0, "final wait returned %d", s->r1);
}

#define RACE_ROUNDS test_rounds(10000)

static int cancel_storm_waiter(void *arg)
{
	return af_flag_wait_timeout(arg, LONG_NS);
}

static int cancel_storm_main(void *arg)
{
	struct sc *s = arg;
	struct racer rc;
	long took = 0, cancelled = 0;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	racer_start(&rc, &s->f);
	for (int i = 0; i < RACE_ROUNDS; i++) {
		struct af_task *t;
		int res = 1, c;

		ck_assert_int_eq(af_task_spawn(&t, cancel_storm_waiter, &s->f), 0);
		/* 0 yields: cancelled before it ran; 1: parked or took the
		 * flag; 2-3: maybe woken and not yet resumed. */
		for (int y = 0; y < i % 4; y++)
			ck_assert_int_eq(af_yield(), 0);
		c = af_task_cancel(t);
		ck_assert_msg(c == 0 || c == -EALREADY, "cancel returned %d", c);
		ck_assert_int_eq(af_task_join(t, &res), 0);
		ck_assert_msg(res == 0 || res == -ECANCELED, "round %d: wait returned %d", i, res);
		if (res == 0)
			took++;
		else
			cancelled++;
		ck_assert_ptr_eq(fl(&s->f)->waiter, NULL);
		ck_assert_uint_eq(fstate(&s->f) & AF_FLAG_WAITING, 0);
	}
	racer_stop(&rc);
	ck_assert_int_gt(rc.sets, 0);
	assert_final_set_wakes_final_wait(s);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(sets_racing_with_cancelled_waits_lose_no_wake_up)
{
	struct sc s = { 0 };

	run_on_new_loop(cancel_storm_main, &s, 0);
}
END_TEST

static int timeout_storm_main(void *arg)
{
	struct sc *s = arg;
	struct racer rc;
	long ok = 0, timedout = 0;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	racer_start(&rc, &s->f);
	for (int i = 0; i < RACE_ROUNDS * 2; i++) {
		int r;

		/* Half the waits start on a cleared flag, so they park and the
		 * timer and the set race for them. */
		if (i & 1)
			af_flag_clear(&s->f);
		r = af_flag_wait_timeout(&s->f, (int64_t)(i % 20) * 1000);
		ck_assert_msg(r == 0 || r == -ETIMEDOUT, "round %d: wait returned %d", i, r);
		if (r == 0)
			ok++;
		else
			timedout++;
		ck_assert_ptr_eq(fl(&s->f)->waiter, NULL);
		ck_assert_uint_eq(fstate(&s->f) & AF_FLAG_WAITING, 0);
	}
	racer_stop(&rc);
	ck_assert_int_gt(ok, 0);
	assert_final_set_wakes_final_wait(s);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(sets_racing_with_tiny_timeouts_lose_no_wake_up)
{
	struct sc s = { 0 };

	run_on_new_loop(timeout_storm_main, &s, 0);
}
END_TEST

/* One set per round, each landing after a random few hundred nanoseconds
 * from the moment the task announces its wait: across the rounds the sets
 * hit every step between the task parking and the loop blocking in the
 * kernel, where a set that is neither collected nor kicked is lost. */
#define PINGPONG_ROUNDS test_rounds(20000)

struct pingpong {
	struct af_flag f;
	atomic_int round;
	atomic_bool quit;
	int failed_round;
	int r;
};

static void *pingpong_setter(void *arg)
{
	struct pingpong *p = arg;
	unsigned rnd = 12345;

	for (int i = 1; i <= PINGPONG_ROUNDS; i++) {
		while (atomic_load_explicit(&p->round, memory_order_acquire) < i)
			if (atomic_load_explicit(&p->quit, memory_order_relaxed))
				return NULL;
		rnd = rnd * 1103515245u + 12345u;
		for (volatile unsigned k = 0; k < ((rnd >> 16) & 2047); k++)
			;
		af_flag_set(&p->f);
	}
	return NULL;
}

static int pingpong_main(void *arg)
{
	struct pingpong *p = arg;
	pthread_t th;

	ck_assert_int_eq(af_flag_init(&p->f, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, pingpong_setter, p), 0);
	for (int i = 1; i <= PINGPONG_ROUNDS; i++) {
		atomic_store_explicit(&p->round, i, memory_order_release);
		p->r = af_flag_wait_timeout(&p->f, 2 * 1000 * MS);
		if (p->r != 0) {
			p->failed_round = i;
			break;
		}
	}
	atomic_store(&p->quit, true);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	af_flag_destroy(&p->f);
	return 0;
}

START_TEST(a_set_landing_while_the_loop_falls_asleep_is_not_lost)
{
	struct pingpong p = { .r = 1 };

	atomic_init(&p.round, 0);
	atomic_init(&p.quit, false);
	run_on_new_loop(pingpong_main, &p, 0);
	ck_assert_msg(p.r == 0, "round %d: the set was lost (wait returned %d)", p.failed_round, p.r);
}
END_TEST

/* The same race on the eventfd poll, which kernels before 6.7 use; on 6.7+
 * the test above runs the futex wait. */
START_TEST(a_set_landing_while_the_loop_falls_asleep_on_its_eventfd_poll_is_not_lost)
{
	struct pingpong p = { .r = 1 };

	atomic_init(&p.round, 0);
	atomic_init(&p.quit, false);
	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	run_on_new_loop(pingpong_main, &p, 0);
	unsetenv("AF_WAKE");
	ck_assert_msg(p.r == 0, "round %d: the set was lost (wait returned %d)", p.failed_round, p.r);
}
END_TEST

/* Four loops on four threads: each round, every loop bumps its round
 * number and sets every other loop's flag, then waits on its own flag until
 * every other loop has reached the round. A lost cross-loop wake-up leaves
 * one loop waiting forever. */
#define NLOOPS 4
#define LOOP_ROUNDS test_rounds(2000)

struct mesh {
	struct af_loop *loops[NLOOPS];
	struct af_flag flags[NLOOPS];
	atomic_int round[NLOOPS];
	int result[NLOOPS];
	int run_r[NLOOPS];
	long waits[NLOOPS];
};

struct mesh_arg {
	struct mesh *m;
	int id;
	pthread_t th;
};

static int mesh_min_other(struct mesh *m, int id)
{
	int min = 1 << 30;

	for (int j = 0; j < NLOOPS; j++) {
		int r = atomic_load_explicit(&m->round[j], memory_order_relaxed);

		if (j != id && r < min)
			min = r;
	}
	return min;
}

static int mesh_main(void *arg)
{
	struct mesh_arg *a = arg;
	struct mesh *m = a->m;

	for (int round = 1; round <= LOOP_ROUNDS; round++) {
		atomic_store_explicit(&m->round[a->id], round, memory_order_relaxed);
		for (int j = 0; j < NLOOPS; j++)
			if (j != a->id)
				af_flag_set(&m->flags[j]);
		while (mesh_min_other(m, a->id) < round) {
			int r = af_flag_wait_timeout(&m->flags[a->id], LONG_NS);

			if (r != 0)
				return r;
			m->waits[a->id]++;
		}
	}
	return 0;
}

static void *mesh_thread(void *arg)
{
	struct mesh_arg *a = arg;

	a->m->run_r[a->id] = af_loop_run(a->m->loops[a->id], mesh_main, a,
					 &a->m->result[a->id]);
	return NULL;
}

START_TEST(loops_on_four_threads_wake_each_other_through_flags)
{
	struct mesh *m = calloc(1, sizeof(*m));
	struct mesh_arg args[NLOOPS];

	ck_assert_ptr_nonnull(m);
	for (int i = 0; i < NLOOPS; i++) {
		ck_assert_int_eq(af_loop_new(&m->loops[i], NULL), 0);
		ck_assert_int_eq(af_flag_init(&m->flags[i], m->loops[i]), 0);
	}
	for (int i = 0; i < NLOOPS; i++) {
		args[i] = (struct mesh_arg){ .m = m, .id = i };
		ck_assert_int_eq(pthread_create(&args[i].th, NULL, mesh_thread, &args[i]), 0);
	}
	for (int i = 0; i < NLOOPS; i++)
		ck_assert_int_eq(pthread_join(args[i].th, NULL), 0);
	for (int i = 0; i < NLOOPS; i++) {
		ck_assert_int_eq(m->run_r[i], 0);
		ck_assert_msg(m->result[i] == 0, "loop %d: wait returned %d (lost wake-up) at round %d",
			      i, m->result[i], atomic_load(&m->round[i]));
		ck_assert_int_eq(atomic_load(&m->round[i]), LOOP_ROUNDS);
		af_flag_destroy(&m->flags[i]);
		af_loop_free(m->loops[i]);
	}
	free(m);
}
END_TEST

/* ---- how an io_uring loop sees a kick ------------------------------------------ */

/* Rounds in which the setter sets only once the loop sleeps in the kernel,
 * so that every round is exactly one kick and one eventfd write. */
#define ASLEEP_ROUNDS 50

struct asleep {
	struct af_flag f;
	struct af_loop *loop;
	atomic_int round;
	int r;
	int failed_round;
	bool cancel_poll;        /* end the loop's eventfd poll before each round */
	bool ppoll;              /* the loop slept in ppoll (TSan, valgrind) */
	int removed;             /* poll-remove completions that found the poll */
	int racing;              /* ... that found it completing (-EALREADY) */
	int absent;              /* ... that found none (-ENOENT): not armed yet */
	uint8_t wake_ran;        /* efd_wake once the loop has run */
};

static void *asleep_setter(void *arg)
{
	struct asleep *a = arg;

	for (int i = 1; i <= ASLEEP_ROUNDS; i++) {
		while (atomic_load_explicit(&a->round, memory_order_acquire) < i)
			sched_yield();
		wait_until_a_set_must_kick(a->loop, &a->f);
		af_flag_set(&a->f);
	}
	return NULL;
}

struct remove_op {
	struct af__op op;
	struct asleep *a;
	bool done;
};

static void remove_done(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	struct remove_op *rm = (struct remove_op *)(void *)op;

	(void)flags;
	loop->ninflight--;
	if (res == 0)
		rm->a->removed++;
	else if (res == -EALREADY)
		rm->a->racing++;
	else if (res == -ENOENT)
		rm->a->absent++;
	rm->done = true;
}

/* What the kernel does to a multishot poll when it ends it (a CQ overflow):
 * one last completion without IORING_CQE_F_MORE. */
static void end_the_eventfd_poll(struct asleep *a, struct remove_op *rm)
{
	struct io_uring_sqe *sqe = af__loop_sqe(a->loop);

	rm->op.complete = remove_done;
	rm->a = a;
	rm->done = false;
	io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&a->loop->efd_op);
	io_uring_sqe_set_data(sqe, &rm->op);
	/* Counted in flight, so that the loop asks the kernel for its
	 * completion while it runs us (DEFER_TASKRUN posts it only then). */
	a->loop->ninflight++;
	af__loop_flush(a->loop);
	while (!rm->done)
		ck_assert_int_eq(af_yield(), 0);
}

static int asleep_main(void *arg)
{
	struct asleep *a = arg;
	struct remove_op rm;
	pthread_t th;

	ck_assert_int_eq(af_flag_init(&a->f, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, asleep_setter, a), 0);
	for (int i = 1; i <= ASLEEP_ROUNDS; i++) {
		if (a->cancel_poll)
			end_the_eventfd_poll(a, &rm);
		atomic_store_explicit(&a->round, i, memory_order_release);
		a->r = af_flag_wait_timeout(&a->f, LONG_NS);
		if (a->r != 0) {
			a->failed_round = i;
			break;
		}
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	af_flag_destroy(&a->f);
	return 0;
}

/* Runs the rounds on a new io_uring loop and returns what is left in its
 * eventfd's counter. */
static uint64_t run_asleep(struct asleep *a, uint8_t want_wake)
{
	struct af_loop_opts o = { .flags = AF_LOOP_BACKEND_IO_URING };
	uint64_t count = 0;
	int result = -1;

	ck_assert_int_eq(af_loop_new(&a->loop, &o), 0);
	a->ppoll = a->loop->ppoll_mode;
	ck_assert_uint_eq(a->loop->efd_wake, a->ppoll ? AF__WAKE_READ : want_wake);
	atomic_init(&a->round, 0);
	ck_assert_int_eq(af_loop_run(a->loop, asleep_main, a, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_msg(a->r == 0, "round %d: the set was lost (wait returned %d)", a->failed_round,
		      a->r);
	if (fd_readable(a->loop->efd))
		ck_assert_int_eq(read(a->loop->efd, &count, sizeof(count)), (ssize_t)sizeof(count));
	a->wake_ran = a->loop->efd_wake;
	af_loop_free(a->loop);
	return count;
}

/* Asks the kernel itself, not the library: IORING_OP_FUTEX_WAIT (6.7+). */
static bool kernel_has_futex_wait(void)
{
	struct io_uring_probe *probe = io_uring_get_probe();
	bool yes = probe && io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC + 3);

	if (probe)
		io_uring_free_probe(probe);
	return yes;
}

START_TEST(on_linux_6_7_a_loop_asleep_in_the_ring_is_woken_by_futex_wake_and_its_eventfd_is_never_written)
{
	struct asleep a = { .r = 1 };
	char *park = getenv("AF_PARK") ? strdup(getenv("AF_PARK")) : NULL;
	uint64_t count;

	unsetenv("AF_WAKE");
	/* The ring's own wait: a parked loop's kick is a FUTEX_WAKE on every
	 * kernel (test-loop.c, "parking"). */
	ck_assert_int_eq(setenv("AF_PARK", "0", 1), 0);
	count = run_asleep(&a, AF__WAKE_POLL);
	if (park)
		setenv("AF_PARK", park, 1);
	else
		unsetenv("AF_PARK");
	free(park);
	if (a.ppoll) {
		/* TSan, valgrind: ppoll on the eventfd, read every time. */
		ck_assert_uint_eq(a.wake_ran, AF__WAKE_READ);
	} else if (kernel_has_futex_wait()) {
		/* Every round was a kick, and none wrote the eventfd. */
		ck_assert_uint_eq(a.wake_ran, AF__WAKE_FUTEX);
		ck_assert_uint_eq(count, 0);
	} else {
		ck_assert_uint_eq(a.wake_ran, AF__WAKE_POLL);
		ck_assert_uint_eq(count, ASLEEP_ROUNDS);
	}
}
END_TEST

START_TEST(an_io_uring_loop_is_woken_by_a_poll_on_its_eventfd_that_it_never_reads)
{
	struct asleep a = { .r = 1 };
	uint64_t count;

	/* The path a kernel before 6.7 takes. */
	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	count = run_asleep(&a, AF__WAKE_POLL);
	unsetenv("AF_WAKE");
	/* One write per round, none read: the count is the rounds. ppoll
	 * mode (TSan, valgrind) reads every write instead. */
	ck_assert_uint_eq(count, a.ppoll ? 0 : ASLEEP_ROUNDS);
}
END_TEST

START_TEST(with_af_wake_read_the_loop_reads_every_kick_and_loses_no_wake_up)
{
	struct asleep a = { .r = 1 };

	/* The path a kernel without multishot poll (before 5.13) takes. */
	ck_assert_int_eq(setenv("AF_WAKE", "read", 1), 0);
	ck_assert_uint_eq(run_asleep(&a, AF__WAKE_READ), 0);
	unsetenv("AF_WAKE");
}
END_TEST

START_TEST(a_poll_the_kernel_ended_is_armed_again_and_the_next_set_still_wakes)
{
	struct asleep a = { .r = 1, .cancel_poll = true };

	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	(void)run_asleep(&a, AF__WAKE_POLL);
	unsetenv("AF_WAKE");
	/* In read mode the remove finds no poll. On the poll path it finds
	 * the armed poll every round but the first (the loop arms it at its
	 * first sleep in the ring, after the first remove), and ends it
	 * unless the kick of the round before is still on its way into it
	 * (the loop saw that set without sleeping in the kernel, so the
	 * poll's wake-up waits for the next enter): then -EALREADY, and the
	 * poll goes on. */
	if (a.ppoll) {
		ck_assert_int_eq(a.removed + a.racing, 0);
	} else {
		ck_assert_int_le(a.absent, 1);
		ck_assert_int_eq(a.removed + a.racing + a.absent, ASLEEP_ROUNDS);
		ck_assert_int_gt(a.removed, 0);
	}
}
END_TEST

/* ---- spinning before sleeping (af_loop_opts.spin_ns) ------------------------------- */

static int run_spinning(af_task_fn fn, void *arg)
{
	struct af_loop_opts o = { .spin_ns = AF_LOOP_SPIN_MAX_NS };
	struct af_loop *loop;
	int result = -1;

	ck_assert_int_eq(af_loop_new(&loop, &o), 0);
	ck_assert_int_eq(af_loop_run(loop, fn, arg, &result), 0);
	af_loop_free(loop);
	return result;
}

struct spinning {
	struct af_flag f;
	int fake;
	int r;
	bool was_readable;
};

static void *set_after_10ms(void *arg)
{
	sleep_ms(10);
	af_flag_set(arg);
	return NULL;
}

static int spinning_main(void *arg)
{
	struct spinning *s = arg;
	struct af_loop *loop = af_loop_current();
	pthread_t th;
	int real = loop->efd;

	ck_assert_int_eq(af_flag_init(&s->f, NULL), 0);
	/* A kick would now write an eventfd that nothing watches: only the
	 * spin can see this set in time. */
	loop->efd = s->fake;
	ck_assert_int_eq(pthread_create(&th, NULL, set_after_10ms, &s->f), 0);
	s->r = af_flag_wait_timeout(&s->f, 3000 * MS);
	loop->efd = real;
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	s->was_readable = fd_readable(s->fake);
	af_flag_destroy(&s->f);
	return 0;
}

START_TEST(a_spinning_loop_sees_a_set_from_another_thread_with_no_system_call)
{
	struct spinning s = { .r = 1 };

	s.fake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(s.fake, 0);
	ck_assert_int_eq(run_spinning(spinning_main, &s), 0);
	close(s.fake);
	ck_assert_int_eq(s.r, 0);
	ck_assert(!s.was_readable);
}
END_TEST

static int spin_timer_main(void *arg)
{
	uint64_t t0 = now_ns();

	ck_assert_int_eq(af_sleep_ms(20), 0);
	*(uint64_t *)arg = now_ns() - t0;
	return 0;
}

START_TEST(a_spinning_loop_stops_spinning_at_the_next_timer)
{
	uint64_t took = 0;

	ck_assert_int_eq(run_spinning(spin_timer_main, &took), 0);
	/* A spin that ignored the timer would end after its full second. */
	ck_assert_uint_ge(took, 20 * MS);
	ck_assert_uint_lt(took, 500 * MS);
}
END_TEST

struct spin_io {
	int fds[2];
	uint64_t took;
	int r;
};

static void *write_after_10ms(void *arg)
{
	struct spin_io *s = arg;

	sleep_ms(10);
	ck_assert_int_eq(write(s->fds[1], "x", 1), 1);
	return NULL;
}

static int spin_io_main(void *arg)
{
	struct spin_io *s = arg;
	pthread_t th;
	uint64_t t0 = now_ns();
	char c;

	ck_assert_int_eq(pthread_create(&th, NULL, write_after_10ms, s), 0);
	s->r = af_read(s->fds[0], &c, 1, -1);
	s->took = now_ns() - t0;
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	return 0;
}

START_TEST(a_spinning_loop_completes_io_that_lands_during_the_spin)
{
	struct spin_io s = { .r = -1 };

	ck_assert_int_eq(pipe(s.fds), 0);
	ck_assert_int_eq(run_spinning(spin_io_main, &s), 0);
	close(s.fds[0]);
	close(s.fds[1]);
	ck_assert_int_eq(s.r, 1);
	/* Completions that only a look at the kernel posts (DEFER_TASKRUN,
	 * epoll) would otherwise wait for the spin's full second. */
	ck_assert_uint_lt(s.took, 500 * MS);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("flag");
	TCase *tc;

	tc = tcase_create("wait and set");
	tcase_add_test(tc, wait_on_a_set_flag_returns_at_once_and_clears_it);
	tcase_add_test(tc, two_sets_before_a_wait_make_one_wake_up_and_the_second_wait_blocks);
	tcase_add_test(tc, clear_discards_a_pending_set);
	tcase_add_test(tc, a_set_cleared_again_before_the_loop_looks_wakes_no_one);
	tcase_add_test(tc, a_set_cleared_again_before_the_loop_takes_the_pending_stack_wakes_no_one);
	tcase_add_test(tc, a_set_from_another_thread_ends_a_timed_wait_with_success);
	suite_add_tcase(s, tc);

	tc = tcase_create("one waiter");
	tcase_add_test(tc, a_second_waiter_gets_ebusy_at_once_and_the_first_keeps_waiting);
	suite_add_tcase(s, tc);

	tc = tcase_create("ordering");
	tcase_add_test(tc, set_then_yield_on_the_loop_thread_resumes_the_setter_before_the_waiter);
	tcase_add_test(tc,
		       a_set_collected_at_the_end_of_a_batch_queues_the_waiter_behind_every_task_queued_before);
	tcase_add_test(tc, a_set_landing_after_the_wake_but_before_the_waiter_resumed_is_absorbed);
	tcase_add_test(tc, a_set_after_the_waiter_resumed_wakes_the_next_wait);
	tcase_add_test(tc, a_task_polling_with_zero_timeouts_does_not_stop_the_loop_collecting_sets);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancel and timeout");
	tcase_add_test(tc, a_timed_out_wait_leaves_the_flag_clear_and_reusable);
	tcase_add_test(tc, a_cancelled_wait_leaves_the_flag_clear_and_reusable);
	tcase_add_test(tc, a_set_that_raced_with_a_cancel_is_seen_by_the_next_wait);
	suite_add_tcase(s, tc);

	tc = tcase_create("keeping the loop alive");
	tcase_add_test(tc, a_task_waiting_on_a_flag_keeps_the_loop_alive_asleep_in_the_kernel);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancellation");
	tcase_add_checked_fixture(tc, NULL, cancel_set_teardown);
	tcase_add_test(tc, a_set_that_kicks_a_sleeping_loop_is_not_a_cancellation_point);
	tcase_add_test(tc, a_set_that_writes_the_eventfd_of_a_sleeping_loop_is_not_a_cancellation_point);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, a_flag_of_another_loop_or_an_invalid_flag_is_refused);
	tcase_add_test(tc, wait_outside_a_task_fails_with_eperm);
	tcase_add_test(tc, init_without_a_loop_on_this_thread_fails_with_einval);
	tcase_add_test(tc, set_clear_and_is_set_ignore_a_null_or_uninitialised_flag);
	tcase_add_test(tc, destroying_a_flag_that_a_task_waits_on_is_refused);
	tcase_add_test(tc, a_flag_still_queued_when_its_loop_is_freed_can_be_destroyed_afterwards);
	suite_add_tcase(s, tc);

	for (int stack = 0; stack < 2; stack++) {
		tc = tcase_create(stack ? "lifetime, through the pending stack" : "lifetime");
		if (stack)
			tcase_add_checked_fixture(tc, through_the_stack, NULL);
		tcase_set_timeout(tc, 120);
		tcase_add_test(tc, a_flag_may_be_destroyed_and_reused_as_soon_as_its_wait_returns_while_the_setter_is_before_the_kick);
		tcase_add_test(tc, a_flag_may_be_destroyed_and_reused_as_soon_as_its_wait_returns_while_the_setter_is_between_set_and_queue);
		tcase_add_test(tc, a_set_in_flight_when_the_flag_is_destroyed_is_ignored_and_queues_nothing);
		tcase_add_test(tc, a_flag_on_a_task_stack_destroyed_right_after_its_wait_survives_a_long_lived_setter);
		suite_add_tcase(s, tc);
	}
	/* These two are about the stack alone: they ask for it themselves. */
	tcase_add_test(tc, init_on_a_flag_still_queued_takes_it_off_the_loop_and_keeps_the_others);
	tcase_add_test(tc, two_threads_destroying_queued_flags_of_one_stopped_loop_leave_its_list_empty);

	tc = tcase_create("wake-up path");
	tcase_add_test(tc, a_set_with_no_waiter_only_sets_the_bit_and_queues_nothing);
	tcase_add_test(tc, sets_write_the_eventfd_once_per_loop_sleep_and_never_while_it_is_awake);
	tcase_add_test(tc, a_set_from_another_thread_while_the_loop_is_awake_makes_no_system_call);
	tcase_add_test(tc, a_set_through_the_pending_stack_while_the_loop_is_awake_makes_no_system_call);
	tcase_add_test(tc, among_ten_thousand_set_flags_the_loop_collects_only_the_one_with_a_waiter);
	tcase_add_test(tc, an_io_uring_loop_is_woken_by_a_poll_on_its_eventfd_that_it_never_reads);
	tcase_add_test(tc, with_af_wake_read_the_loop_reads_every_kick_and_loses_no_wake_up);
	tcase_add_test(tc, a_poll_the_kernel_ended_is_armed_again_and_the_next_set_still_wakes);
	tcase_add_test(tc,
		       on_linux_6_7_a_loop_asleep_in_the_ring_is_woken_by_futex_wake_and_its_eventfd_is_never_written);
	suite_add_tcase(s, tc);

	tc = tcase_create("the polled flag");
	tcase_add_test(tc, the_first_waiter_is_polled_and_a_second_flags_waiter_goes_through_the_pending_stack);
	tcase_add_test(tc, a_polled_waiter_that_times_out_or_is_cancelled_leaves_the_slot_to_the_next_waiter);
	tcase_add_test(tc, a_flag_still_queued_when_its_waiter_became_the_polled_one_is_woken_once_by_the_stack);
	tcase_add_test(tc, a_loop_asleep_under_its_polled_waiter_marks_the_flag_and_the_set_that_finds_the_mark_wakes_it);
	tcase_add_test(tc, the_set_of_an_awake_loops_polled_waiter_is_done_with_the_flag_at_its_cas);
	tcase_add_test(tc, a_mark_left_by_a_loop_that_woke_for_a_timer_costs_the_next_set_no_system_call);
	suite_add_tcase(s, tc);

	tc = tcase_create("spinning before sleeping");
	tcase_add_test(tc, a_spinning_loop_sees_a_set_from_another_thread_with_no_system_call);
	tcase_add_test(tc, a_spinning_loop_stops_spinning_at_the_next_timer);
	tcase_add_test(tc, a_spinning_loop_completes_io_that_lands_during_the_spin);
	suite_add_tcase(s, tc);

	for (int stack = 0; stack < 2; stack++) {
		tc = tcase_create(stack ? "stress, through the pending stack" : "stress");
		if (stack)
			tcase_add_checked_fixture(tc, through_the_stack, NULL);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, four_threads_storming_sets_never_lose_their_final_set);
		tcase_add_test(tc, a_set_landing_while_the_loop_falls_asleep_is_not_lost);
		tcase_add_test(tc, a_set_landing_while_the_loop_falls_asleep_on_its_eventfd_poll_is_not_lost);
		tcase_add_test(tc, sets_racing_with_cancelled_waits_lose_no_wake_up);
		tcase_add_test(tc, sets_racing_with_tiny_timeouts_lose_no_wake_up);
		tcase_add_test(tc, loops_on_four_threads_wake_each_other_through_flags);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
