/* SPDX-License-Identifier: MIT */
/* Timers: the deadline heap of internal.h white-box (ordering, removal from
 * the middle, randomised against a sorted reference), then how the loop
 * merges due timers into the run queue (semantics.md "Run queue"). */
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "internal.h"

static struct trace tr;

#define tracef(...) trace_addf(&tr, __VA_ARGS__)

static void reset(void)
{
	memset(&tr, 0, sizeof(tr));
}

static const uint64_t ms = 1000 * 1000;

/* ---- the heap ------------------------------------------------------------- */

/* Heap property and back-pointers, checked from the outside. Plain
 * comparisons: Check's assertions cost a system call each, far too slow for
 * a check after every operation of the randomised test. */
static const char *heap_error(const struct af__timer_heap *h)
{
	for (size_t i = 0; i < h->len; i++) {
		const struct af__timer *t = h->items[i];

		if (t->index != i + 1)
			return "back-pointer (index) wrong";
		if (i > 0) {
			const struct af__timer *p = h->items[(i - 1) / 2];

			if (p->deadline > t->deadline ||
			    (p->deadline == t->deadline && p->seq >= t->seq))
				return "a parent orders after its child";
		}
	}
	return NULL;
}

#define check_heap(h)                                                          \
	do {                                                                   \
		const char *err_ = heap_error(h);                              \
		ck_assert_msg(err_ == NULL, "heap broken: %s", err_);          \
	} while (0)

static struct af__timer *pop(struct af__timer_heap *h)
{
	struct af__timer *t = af__timer_top(h);

	if (t)
		af__timer_remove(h, t);
	return t;
}

START_TEST(the_heap_orders_by_deadline_then_by_arming_order)
{
	struct af__timer_heap h = { 0 };
	struct af__timer t[6] = { { 0 } };
	static const uint64_t deadlines[6] = { 50, 30, 50, 10, 30, 50 };
	static const int want[6] = { 3, 1, 4, 0, 2, 5 };

	ck_assert_ptr_null(af__timer_top(&h));
	ck_assert_int_eq(af__timer_reserve(&h, 6), 0);
	ck_assert_uint_ge(h.cap, 6);
	for (int i = 0; i < 6; i++) {
		ck_assert(!af__timer_armed(&t[i]));
		af__timer_add(&h, &t[i], deadlines[i]);
		ck_assert(af__timer_armed(&t[i]));
		check_heap(&h);
	}
	for (int i = 0; i < 6; i++) {
		struct af__timer *got = pop(&h);

		ck_assert_ptr_eq(got, &t[want[i]]);
		ck_assert(!af__timer_armed(got));
		check_heap(&h);
	}
	ck_assert_ptr_null(af__timer_top(&h));
	ck_assert_uint_eq(h.len, 0);
	af__timer_heap_free(&h);
}
END_TEST

START_TEST(removing_from_the_middle_keeps_heap_order)
{
	struct af__timer_heap h = { 0 };
	struct af__timer t[7] = { { 0 } };
	/* Each is at least its parent, so the heap keeps insertion order:
	 * slot 3 (11) sits under slot 1 (10) while the last slot (4) sits
	 * under slot 2. Removing slot 3 moves 4 there, where it must sift
	 * up past 10. */
	static const uint64_t deadlines[7] = { 1, 10, 2, 11, 12, 3, 4 };
	static const int want[5] = { 2, 5, 6, 1, 4 };

	ck_assert_int_eq(af__timer_reserve(&h, 7), 0);
	for (int i = 0; i < 7; i++)
		af__timer_add(&h, &t[i], deadlines[i]);
	check_heap(&h);
	ck_assert_uint_eq(t[3].index, 4);
	af__timer_remove(&h, &t[3]);
	ck_assert(!af__timer_armed(&t[3]));
	check_heap(&h);
	/* The top: its replacement (3) must sift down below 2. */
	af__timer_remove(&h, &t[0]);
	check_heap(&h);
	for (int i = 0; i < 5; i++)
		ck_assert_ptr_eq(pop(&h), &t[want[i]]);
	ck_assert_ptr_null(af__timer_top(&h));
	af__timer_heap_free(&h);
}
END_TEST

/* A deterministic generator: the test must fail the same way every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

enum { NT = 512 };

static int cmp_timer(const void *a, const void *b)
{
	const struct af__timer *x = *(const struct af__timer *const *)a;
	const struct af__timer *y = *(const struct af__timer *const *)b;

	if (x->deadline != y->deadline)
		return x->deadline < y->deadline ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* First failure of the randomised test, asserted once per round. */
static const char *first_error;

static void note(const char *err)
{
	if (err && !first_error)
		first_error = err;
}

START_TEST(random_adds_and_removes_match_a_sorted_reference)
{
	static struct af__timer t[NT];
	struct af__timer *ref[NT];
	struct af__timer_heap h = { 0 };

	ck_assert_int_eq(af__timer_reserve(&h, NT), 0);
	for (int round = 0; round < 50; round++) {
		size_t nref = 0;

		memset(t, 0, sizeof(t));
		/* Few distinct deadlines, so ties (arming order) are common. */
		for (int i = 0; i < NT; i++)
			if (rng() % 4) {
				af__timer_add(&h, &t[i], rng() % 64);
				note(heap_error(&h));
			}
		/* Remove a random third, wherever it sits. */
		for (int i = 0; i < NT; i++)
			if (af__timer_armed(&t[i]) && rng() % 3 == 0) {
				af__timer_remove(&h, &t[i]);
				if (af__timer_armed(&t[i]))
					note("a removed timer is still armed");
				note(heap_error(&h));
			}
		/* Re-arm some: they tie-break after everything armed before. */
		for (int i = 0; i < NT; i++)
			if (!af__timer_armed(&t[i]) && rng() % 2) {
				af__timer_add(&h, &t[i], rng() % 64);
				note(heap_error(&h));
			}
		ck_assert_msg(!first_error, "round %d: %s", round, first_error);
		for (int i = 0; i < NT; i++)
			if (af__timer_armed(&t[i]))
				ref[nref++] = &t[i];
		ck_assert_uint_eq(nref, h.len);
		qsort(ref, nref, sizeof(ref[0]), cmp_timer);
		for (size_t i = 0; i < nref; i++) {
			if (pop(&h) != ref[i])
				note("popped out of (deadline, arming) order");
			note(heap_error(&h));
		}
		ck_assert_msg(!first_error, "round %d: %s", round, first_error);
		ck_assert_uint_eq(h.len, 0);
	}
	af__timer_heap_free(&h);
}
END_TEST

START_TEST(reserve_grows_capacity_ahead_of_need)
{
	struct af__timer_heap h = { 0 };

	ck_assert_int_eq(af__timer_reserve(&h, 1), 0);
	ck_assert_uint_ge(h.cap, 1);
	ck_assert_int_eq(af__timer_reserve(&h, 1000), 0);
	ck_assert_uint_ge(h.cap, 1000);
	ck_assert_uint_eq(h.len, 0);
	af__timer_heap_free(&h);
	ck_assert_ptr_null(h.items);
	ck_assert_uint_eq(h.cap, 0);
}
END_TEST

/* ---- the loop ------------------------------------------------------------- */

struct sleeper {
	const char *name;
	int yields;        /* before arming, to choose the arming order */
	uint64_t ns;
	uint64_t armed_at;
};

static int sleeper_fn(void *arg)
{
	struct sleeper *s = arg;

	for (int i = 0; i < s->yields; i++)
		ck_assert_int_eq(af_yield(), 0);
	s->armed_at = af__now_ns();
	ck_assert_int_eq(af_sleep_ns(s->ns), 0);
	trace_add(&tr, s->name);
	return 0;
}

static int run_sleepers(struct sleeper *s, int n)
{
	struct af_task *t[8];

	for (int i = 0; i < n; i++)
		ck_assert_int_eq(af_task_spawn(&t[i], sleeper_fn, &s[i]), 0);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	return 0;
}

/* How far apart the sleepers armed their timers. */
static uint64_t arming_spread(const struct sleeper *s, int n)
{
	uint64_t lo = UINT64_MAX, hi = 0;

	for (int i = 0; i < n; i++) {
		lo = s[i].armed_at < lo ? s[i].armed_at : lo;
		hi = s[i].armed_at > hi ? s[i].armed_at : hi;
	}
	return hi - lo;
}

static int deadline_order_main(void *arg)
{
	(void)arg;
	/* A stall of 20 ms between two arms (a loaded machine) would change
	 * the deadline order itself; such a run proves nothing, so retry. */
	for (int attempt = 0; attempt < 5; attempt++) {
		struct sleeper s[3] = {
			{ "a", 0, 60 * ms, 0 },
			{ "b", 0, 20 * ms, 0 },
			{ "c", 0, 40 * ms, 0 },
		};

		reset();
		run_sleepers(s, 3);
		if (arming_spread(s, 3) < 10 * ms)
			return 0;
	}
	ck_abort_msg("the machine stalled for 10 ms on every attempt");
	return 1;
}

START_TEST(sleepers_wake_in_deadline_order)
{
	ck_assert_int_eq(run_main(deadline_order_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "b c a");
}
END_TEST

static int arming_order_main(void *arg)
{
	/* Spawned a, b, c; armed b, c, a. Same duration: all fall due in the
	 * same wait and must run in arming order. */
	struct sleeper s[3] = {
		{ "a", 2, 20 * ms, 0 },
		{ "b", 0, 20 * ms, 0 },
		{ "c", 1, 20 * ms, 0 },
	};

	(void)arg;
	return run_sleepers(s, 3);
}

START_TEST(sleepers_with_equal_durations_wake_in_arming_order)
{
	reset();
	ck_assert_int_eq(run_main(arming_order_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "b c a");
}
END_TEST

static bool fired;

static int fire_fn(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_sleep_ms(10), 0);
	fired = true;
	return 0;
}

static int spin_main(void *arg)
{
	struct af_task *t;
	uint64_t give_up = af__now_ns() + 10000 * ms;
	long spins = 0;

	(void)arg;
	fired = false;
	ck_assert_int_eq(af_task_spawn(&t, fire_fn, NULL), 0);
	/* Never blocks: only the timer's own merit can get it to run. The
	 * deadline only turns a hang into a failure. */
	while (!fired && af__now_ns() < give_up) {
		ck_assert_int_eq(af_yield(), 0);
		spins++;
	}
	ck_assert_msg(fired, "a due timer starved behind %ld yields", spins);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(a_task_spinning_on_yield_cannot_starve_a_due_timer)
{
	ck_assert_int_eq(run_main(spin_main, NULL), 0);
}
END_TEST

static void busy_wait_until(uint64_t when)
{
	while (af__now_ns() <= when)
		;
}

/* Long enough that main can queue a task before it falls due, even on a
 * loaded machine under a sanitizer. */
#define TIMER_MS 50
static uint64_t timer_deadline;

static int timed_fn(void *arg)
{
	(void)arg;
	timer_deadline = af__now_ns() + TIMER_MS * ms;
	ck_assert_int_eq(af_sleep_ms(TIMER_MS), 0);
	trace_add(&tr, "timer");
	return 0;
}

static int late_yielder_fn(void *arg)
{
	(void)arg;
	/* Make the timer due, then yield: we are queued after it fell due. */
	busy_wait_until(timer_deadline + 5 * ms);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "y");
	return 0;
}

static int due_first_main(void *arg)
{
	struct af_task *t, *y;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, timed_fn, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&y, late_yielder_fn, NULL), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* y spun past the deadline before main got here. */
	ck_assert_uint_gt(af__now_ns(), timer_deadline);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "main");
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(af_task_join(y, NULL), 0);
	return 0;
}

START_TEST(a_due_timer_runs_before_tasks_that_yielded_after_it_fell_due)
{
	reset();
	ck_assert_int_eq(run_main(due_first_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "timer y main");
}
END_TEST

static int tracer_fn(void *arg)
{
	trace_add(&tr, arg);
	return 0;
}

static int queued_before_main(void *arg)
{
	(void)arg;
	for (int attempt = 0; attempt < 5; attempt++) {
		struct af_task *t, *early;
		bool valid;

		reset();
		ck_assert_int_eq(af_task_spawn(&t, timed_fn, NULL), 0);
		ck_assert_int_eq(af_yield(), 0); /* t arms its timer */
		/* Queued before the timer falls due (unless a loaded machine
		 * stalled us past it: then this run proves nothing) ... */
		ck_assert_int_eq(af_task_spawn(&early, tracer_fn, "early"), 0);
		valid = af__now_ns() < timer_deadline;
		/* ... main yields after it fell due. */
		busy_wait_until(timer_deadline + 5 * ms);
		ck_assert_int_eq(af_yield(), 0);
		trace_add(&tr, "main");
		ck_assert_int_eq(af_task_join(t, NULL), 0);
		ck_assert_int_eq(af_task_join(early, NULL), 0);
		if (valid)
			return 0;
	}
	ck_abort_msg("the machine stalled for %d ms on every attempt", TIMER_MS);
	return 1;
}

START_TEST(due_timers_are_queued_by_due_time_behind_tasks_queued_before_they_fell_due)
{
	reset();
	ck_assert_int_eq(run_main(queued_before_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "early timer main");
}
END_TEST

static int sleep_zero_main(void *arg)
{
	struct af_task *a, *b;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&a, tracer_fn, "a"), 0);
	ck_assert_int_eq(af_task_spawn(&b, tracer_fn, "b"), 0);
	ck_assert_int_eq(af_sleep_ns(0), 0);
	trace_add(&tr, "main");
	ck_assert_int_eq(af_task_join(a, NULL), 0);
	ck_assert_int_eq(af_task_join(b, NULL), 0);
	return 0;
}

START_TEST(sleep_of_zero_is_a_yield_that_lets_the_runnable_tasks_run_first)
{
	reset();
	ck_assert_int_eq(run_main(sleep_zero_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a b main");
}
END_TEST

static int spin_sleep_zero_fn(void *arg)
{
	int *n = arg;

	while (*n < 5) {
		ck_assert_int_eq(af_sleep_ns(0), 0);
		tracef("s%d", (*n)++);
	}
	return 0;
}

static int spin_yield_fn(void *arg)
{
	int *n = arg;

	while (*n < 5) {
		ck_assert_int_eq(af_yield(), 0);
		tracef("y%d", (*n)++);
	}
	return 0;
}

static int sleep_zero_alternates_main(void *arg)
{
	struct af_task *s, *y;
	int ns = 0, ny = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&s, spin_sleep_zero_fn, &ns), 0);
	ck_assert_int_eq(af_task_spawn(&y, spin_yield_fn, &ny), 0);
	ck_assert_int_eq(af_task_join(s, NULL), 0);
	ck_assert_int_eq(af_task_join(y, NULL), 0);
	return 0;
}

START_TEST(sleep_of_zero_in_a_loop_takes_turns_with_a_yielding_task)
{
	reset();
	ck_assert_int_eq(run_main(sleep_zero_alternates_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "s0 y0 s1 y1 s2 y2 s3 y3 s4 y4");
}
END_TEST

static int zero_timeout_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;

	(void)arg;
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), -ETIMEDOUT);
	ck_assert(!af_event_is_set(&ev));
	/* No waiter was left behind: set wakes nobody, clear works, and a
	 * second zero timeout expires the same way. */
	af_event_set(&ev);
	af_event_clear(&ev);
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), -ETIMEDOUT);
	af_event_set(&ev);
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), 0);
	return 0;
}

START_TEST(a_zero_timeout_on_an_event_wait_expires)
{
	ck_assert_int_eq(run_main(zero_timeout_main, NULL), 0);
}
END_TEST

/* ---- huge timeouts -------------------------------------------------------------- */

struct huge {
	int p[2];
	struct af_event ev;
	int r[4];
};

static int huge_sleeper(void *arg)
{
	struct huge *h = arg;

	h->r[0] = af_sleep_ns(UINT64_MAX);
	return 0;
}

static int huge_event_waiter(void *arg)
{
	struct huge *h = arg;

	h->r[1] = af_event_wait_timeout(&h->ev, INT64_MAX);
	return 0;
}

static int huge_reader(void *arg)
{
	struct huge *h = arg;
	char c;

	h->r[2] = af_read_timeout(h->p[0], &c, 1, AF_OFFSET_CURRENT, INT64_MAX);
	h->r[3] = af_read_timeout(h->p[0], &c, 1, AF_OFFSET_CURRENT, INT64_MAX - 1);
	return 0;
}

static int idle_job(void *arg)
{
	(void)arg;
	sleep_ms(200);
	return 0;
}

static int huge_main(void *arg)
{
	struct huge *h = arg;
	struct af_loop *loop = af_loop_current();
	struct af_task *t[3];
	uint64_t rounds;

	ck_assert_int_eq(pipe(h->p), 0);
	af_event_init(&h->ev);
	ck_assert_int_eq(af_task_spawn(&t[0], huge_sleeper, h), 0);
	ck_assert_int_eq(af_task_spawn(&t[1], huge_event_waiter, h), 0);
	ck_assert_int_eq(af_task_spawn(&t[2], huge_reader, h), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* With nothing due, the loop sleeps through the job. A deadline that
	 * the kernel overflows (now + KTIME_MAX) ends each sleep at once: the
	 * loop would spin through thousands of rounds. */
	rounds = loop->round;
	ck_assert_int_eq(af_run_blocking(idle_job, NULL, NULL), 0);
	ck_assert_uint_lt(loop->round - rounds, 20);
	/* Nothing timed out either. */
	ck_assert_int_eq(write(h->p[1], "ab", 2), 2);
	af_event_set(&h->ev);
	ck_assert_int_eq(af_task_cancel(t[0]), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	ck_assert_int_eq(h->r[0], -ECANCELED);
	ck_assert_int_eq(h->r[1], 0);
	ck_assert_int_eq(h->r[2], 1);
	ck_assert_int_eq(h->r[3], 1);
	close(h->p[0]);
	close(h->p[1]);
	return 0;
}

START_TEST(timeouts_up_to_int64_max_neither_expire_nor_make_the_loop_spin)
{
	struct huge h;

	memset(&h, 0, sizeof(h));
	ck_assert_int_eq(run_main(huge_main, &h), 0);
}
END_TEST

START_TEST(a_deadline_saturates_and_a_kernel_timeout_is_clamped_to_a_valid_timespec)
{
	struct __kernel_timespec k;

	ck_assert_uint_eq(af__deadline(-1), UINT64_MAX);
	ck_assert_uint_lt(af__deadline(INT64_MAX), UINT64_MAX);
	ck_assert_uint_ge(af__deadline(INT64_MAX), af__deadline(0));
	/* Whatever the width of time_t, never negative or wrapped, and never
	 * so long that the kernel's now + timeout could overflow. */
	k = af__kernel_ts(UINT64_MAX);
	ck_assert_int_ge(k.tv_sec, 0);
	ck_assert_int_le(k.tv_sec, INT32_MAX);
	ck_assert_int_ge(k.tv_nsec, 0);
	ck_assert_int_lt(k.tv_nsec, 1000000000);
	k = af__kernel_ts((uint64_t)INT64_MAX);
	ck_assert_int_le(k.tv_sec, INT32_MAX);
	k = af__kernel_ts(1500000001);
	ck_assert_int_eq(k.tv_sec, 1);
	ck_assert_int_eq(k.tv_nsec, 500000001);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("timer");
	TCase *tc;

	tc = tcase_create("heap");
	tcase_add_test(tc, the_heap_orders_by_deadline_then_by_arming_order);
	tcase_add_test(tc, removing_from_the_middle_keeps_heap_order);
	tcase_add_test(tc, random_adds_and_removes_match_a_sorted_reference);
	tcase_add_test(tc, reserve_grows_capacity_ahead_of_need);
	suite_add_tcase(s, tc);

	tc = tcase_create("order");
	tcase_add_test(tc, sleepers_wake_in_deadline_order);
	tcase_add_test(tc, sleepers_with_equal_durations_wake_in_arming_order);
	suite_add_tcase(s, tc);

	tc = tcase_create("run-queue");
	tcase_add_test(tc, a_task_spinning_on_yield_cannot_starve_a_due_timer);
	tcase_add_test(tc, a_due_timer_runs_before_tasks_that_yielded_after_it_fell_due);
	tcase_add_test(tc, due_timers_are_queued_by_due_time_behind_tasks_queued_before_they_fell_due);
	tcase_add_test(tc, sleep_of_zero_is_a_yield_that_lets_the_runnable_tasks_run_first);
	tcase_add_test(tc, sleep_of_zero_in_a_loop_takes_turns_with_a_yielding_task);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts");
	tcase_add_test(tc, a_zero_timeout_on_an_event_wait_expires);
	tcase_add_test(tc, timeouts_up_to_int64_max_neither_expire_nor_make_the_loop_spin);
	tcase_add_test(tc, a_deadline_saturates_and_a_kernel_timeout_is_clamped_to_a_valid_timespec);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
