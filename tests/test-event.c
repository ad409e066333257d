/* SPDX-License-Identifier: MIT */
/* Event: every rule of semantics.md "Event", each as its own test. The
 * interleavings are asserted exactly with a trace; the expected strings
 * follow from the FIFO run queue, not from the library's output. */
#include <pthread.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "internal.h"

static struct trace tr;

#define tracef(...) trace_addf(&tr, __VA_ARGS__)

static void reset(void)
{
	memset(&tr, 0, sizeof(tr));
}

/* A waiter: yields @delay times before waiting, so tests choose the order in
 * which waiters start waiting independently of spawn order. */
struct waiter {
	const char *name;
	struct af_event *ev;
	int delay;
	int *nwaiting;
	bool report_state;   /* also trace whether the event was set on return */
	int result;
};

static int waiter_fn(void *arg)
{
	struct waiter *w = arg;

	for (int i = 0; i < w->delay; i++)
		af_yield();
	tracef("%s-wait", w->name);
	if (w->nwaiting)
		(*w->nwaiting)++;
	w->result = af_event_wait(w->ev);
	if (w->report_state)
		tracef("%s=%s:%s", w->name, errname(w->result),
		       af_event_is_set(w->ev) ? "set" : "clear");
	else
		tracef("%s=%s", w->name, errname(w->result));
	return 0;
}

static int tracer_fn(void *arg)
{
	trace_add(&tr, arg);
	return 0;
}

static void yield_until(const int *count, int want)
{
	while (*count < want)
		ck_assert_int_eq(af_yield(), 0);
}

static void join_ok(struct af_task *t)
{
	ck_assert_int_eq(af_task_join(t, NULL), 0);
}

/* ---- set ------------------------------------------------------------------ */

static int set_order_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *ta, *tb, *tc, *tr_;
	int n = 0;
	/* Spawned a, b, c but made to wait c, a, b: wake order must follow
	 * wait order, not spawn order. */
	struct waiter a = { "a", &ev, 1, &n, false, 1 };
	struct waiter b = { "b", &ev, 2, &n, false, 1 };
	struct waiter c = { "c", &ev, 0, &n, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&ta, waiter_fn, &a), 0);
	ck_assert_int_eq(af_task_spawn(&tb, waiter_fn, &b), 0);
	ck_assert_int_eq(af_task_spawn(&tc, waiter_fn, &c), 0);
	yield_until(&n, 3);
	/* Already runnable before the set: the waiters must go behind it. */
	ck_assert_int_eq(af_task_spawn(&tr_, tracer_fn, "r"), 0);
	af_event_set(&ev);
	trace_add(&tr, "set");
	ck_assert(af_event_is_set(&ev));
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "main");
	join_ok(ta);
	join_ok(tb);
	join_ok(tc);
	join_ok(tr_);
	return 0;
}

START_TEST(set_moves_every_waiter_to_the_back_of_the_run_queue_in_wait_order_without_yielding)
{
	reset();
	ck_assert_int_eq(run_main(set_order_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "c-wait a-wait b-wait set r c=0 a=0 b=0 main");
}
END_TEST

static int set_no_waiters_main(void *arg)
{
	struct af_event ev;
	struct af_task *t;

	(void)arg;
	af_event_init(&ev);
	ck_assert(!af_event_is_set(&ev));
	ck_assert_int_eq(af_task_spawn(&t, tracer_fn, "r"), 0);
	af_event_set(&ev);
	trace_add(&tr, "set");
	ck_assert(af_event_is_set(&ev));
	/* Setting again is harmless and keeps it set. */
	af_event_set(&ev);
	ck_assert(af_event_is_set(&ev));
	join_ok(t);
	return 0;
}

START_TEST(set_with_no_waiters_only_sets_the_state)
{
	reset();
	ck_assert_int_eq(run_main(set_no_waiters_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "set r");
}
END_TEST

static int set_yield_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct waiter w1 = { "w1", &ev, 0, &n, false, 1 };
	struct waiter w2 = { "w2", &ev, 0, &n, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, waiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, waiter_fn, &w2), 0);
	yield_until(&n, 2);
	af_event_set(&ev);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "setter");
	join_ok(t1);
	join_ok(t2);
	return 0;
}

START_TEST(woken_waiters_run_before_the_setter_resumes_from_a_yield)
{
	reset();
	ck_assert_int_eq(run_main(set_yield_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1-wait w2-wait w1=0 w2=0 setter");
}
END_TEST

/* ---- wait ----------------------------------------------------------------- */

static int wait_set_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, tracer_fn, "r"), 0);
	af_event_set(&ev);
	ck_assert_int_eq(af_event_wait(&ev), 0);
	trace_add(&tr, "waited");
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), 0);
	trace_add(&tr, "waited-timeout");
	ck_assert(af_event_is_set(&ev));
	join_ok(t);
	return 0;
}

START_TEST(wait_on_a_set_event_returns_at_once_without_yielding)
{
	reset();
	ck_assert_int_eq(run_main(wait_set_main, NULL), 0);
	/* r was runnable the whole time: any yield would have run it first. */
	ck_assert_str_eq(tr.buf, "waited waited-timeout r");
}
END_TEST

static int set_clear_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct waiter w1 = { "w1", &ev, 0, &n, true, 1 };
	struct waiter w2 = { "w2", &ev, 0, &n, true, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, waiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, waiter_fn, &w2), 0);
	yield_until(&n, 2);
	af_event_set(&ev);
	af_event_clear(&ev);
	ck_assert(!af_event_is_set(&ev));
	join_ok(t1);
	join_ok(t2);
	return 0;
}

START_TEST(set_then_clear_before_the_waiters_run_still_wakes_every_waiter)
{
	reset();
	ck_assert_int_eq(run_main(set_clear_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1-wait w2-wait w1=0:clear w2=0:clear");
}
END_TEST

static int clear_blocks_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t;
	int n = 0;
	struct waiter w = { "w", &ev, 0, &n, false, 1 };

	(void)arg;
	af_event_set(&ev);
	af_event_clear(&ev);
	ck_assert(!af_event_is_set(&ev));
	ck_assert_int_eq(af_task_spawn(&t, waiter_fn, &w), 0);
	yield_until(&n, 1);
	/* A few rounds: a waiter that did not block would have traced by now. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "set");
	af_event_set(&ev);
	join_ok(t);
	return 0;
}

START_TEST(clear_makes_later_waits_block_until_the_next_set)
{
	reset();
	ck_assert_int_eq(run_main(clear_blocks_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w-wait set w=0");
}
END_TEST

/* ---- fairness ------------------------------------------------------------- */

struct pingpong {
	struct af_event ping, pong;
	int rounds;
};

static int ping_fn(void *arg)
{
	struct pingpong *p = arg;

	for (int i = 0; i < p->rounds; i++) {
		trace_add(&tr, "a");
		af_event_set(&p->pong);
		ck_assert_int_eq(af_event_wait(&p->ping), 0);
		af_event_clear(&p->ping);
	}
	return 0;
}

static int pong_fn(void *arg)
{
	struct pingpong *p = arg;

	for (int i = 0; i < p->rounds; i++) {
		ck_assert_int_eq(af_event_wait(&p->pong), 0);
		af_event_clear(&p->pong);
		trace_add(&tr, "b");
		af_event_set(&p->ping);
	}
	return 0;
}

static int spinner_fn(void *arg)
{
	int n = *(int *)arg;

	for (int i = 0; i < n; i++) {
		trace_add(&tr, "c");
		ck_assert_int_eq(af_yield(), 0);
	}
	return 0;
}

static int pingpong_main(void *arg)
{
	struct pingpong p = { AF_EVENT_INIT, AF_EVENT_INIT, 3 };
	struct af_task *a, *b, *c;
	int spins = 6;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&a, ping_fn, &p), 0);
	ck_assert_int_eq(af_task_spawn(&b, pong_fn, &p), 0);
	ck_assert_int_eq(af_task_spawn(&c, spinner_fn, &spins), 0);
	join_ok(a);
	join_ok(b);
	join_ok(c);
	return 0;
}

START_TEST(set_clear_wait_ping_pong_does_not_starve_a_yielding_task)
{
	reset();
	ck_assert_int_eq(run_main(pingpong_main, NULL), 0);
	/* c gets a turn between every hand-over of the ping-pong; a waiter
	 * queued ahead of runnable tasks would give "a b a b a b c c c ...". */
	ck_assert_str_eq(tr.buf, "a b c a c b c a c b c c");
}
END_TEST

/* ---- cancellation --------------------------------------------------------- */

struct rewaiter {
	const char *name;
	struct af_event *ev, *ev2;
	int *nwaiting;
};

/* Waits on ev; whatever it returns, waits on ev2 with the same wait node,
 * so a stale link left in ev's waiters would show up as a wrong wake. */
static int rewaiter_fn(void *arg)
{
	struct rewaiter *w = arg;
	int r;

	(*w->nwaiting)++;
	r = af_event_wait(w->ev);
	tracef("%s=%s", w->name, errname(r));
	r = af_event_wait(w->ev2);
	tracef("%s2=%s", w->name, errname(r));
	return 0;
}

static int cancel_waiting_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT, ev2 = AF_EVENT_INIT;
	struct af_task *t1, *t2;
	int n = 0, n2 = 0;
	struct rewaiter w1 = { "w1", &ev, &ev2, &n };
	struct waiter w2 = { "w2", &ev, 0, &n2, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, rewaiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, waiter_fn, &w2), 0);
	yield_until(&n, 1);
	yield_until(&n2, 1);
	ck_assert_int_eq(af_task_cancel(t1), 0);
	ck_assert_int_eq(af_yield(), 0); /* w1 sees the cancel, parks on ev2 */
	trace_add(&tr, "set");
	af_event_set(&ev);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "set2");
	af_event_set(&ev2);
	join_ok(t1);
	join_ok(t2);
	return 0;
}

/* A cancel that arrives while the task runs ends its next wait at once,
 * whether the event has no waiter yet or one already: the task must leave
 * no trace in the event, and the other waiter is still woken by a set. */
static struct af_event self_ev;

static int self_cancel_waiter(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	return af_event_wait(&self_ev);
}

static int plain_waiter(void *arg)
{
	(void)arg;
	return af_event_wait(&self_ev);
}

static int self_cancel_main(void *arg)
{
	bool with_other = *(bool *)arg;
	struct af_task *other = NULL, *t;
	int r = -1;

	af_event_init(&self_ev);
	if (with_other) {
		ck_assert_int_eq(af_task_spawn(&other, plain_waiter, NULL), 0);
		ck_assert_int_eq(af_yield(), 0); /* other now waits */
	}
	ck_assert_int_eq(af_task_spawn(&t, self_cancel_waiter, NULL), 0);
	ck_assert_int_eq(af_task_join(t, &r), 0);
	ck_assert_int_eq(r, -ECANCELED);
	if (other) {
		af_event_set(&self_ev);
		ck_assert_int_eq(af_task_join(other, &r), 0);
		ck_assert_int_eq(r, 0);
	}
	return 0;
}

START_TEST(a_task_that_cancelled_itself_gets_ecanceled_from_its_next_wait_on_an_event_without_waiters)
{
	bool with_other = false;

	ck_assert_int_eq(run_main(self_cancel_main, &with_other), 0);
}
END_TEST

START_TEST(a_task_that_cancelled_itself_gets_ecanceled_from_its_next_wait_and_the_other_waiter_is_still_woken)
{
	bool with_other = true;

	ck_assert_int_eq(run_main(self_cancel_main, &with_other), 0);
}
END_TEST

START_TEST(cancelling_a_waiter_removes_it_from_the_waiters)
{
	reset();
	ck_assert_int_eq(run_main(cancel_waiting_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w2-wait w1=ECANCELED set w2=0 set2 w12=0");
}
END_TEST

static int cancel_woken_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct waiter w1 = { "w1", &ev, 0, &n, false, 1 };
	struct waiter w2 = { "w2", &ev, 0, &n, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, waiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, waiter_fn, &w2), 0);
	yield_until(&n, 2);
	af_event_set(&ev);
	/* w1 is runnable now but has not resumed: the cancel wins. */
	ck_assert_int_eq(af_task_cancel(t1), 0);
	join_ok(t1);
	join_ok(t2);
	ck_assert(af_event_is_set(&ev));
	ck_assert_int_eq(w1.result, -ECANCELED);
	ck_assert_int_eq(w2.result, 0);
	return 0;
}

START_TEST(cancel_after_set_but_before_the_waiter_resumed_makes_wait_return_ecanceled)
{
	reset();
	ck_assert_int_eq(run_main(cancel_woken_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1-wait w2-wait w1=ECANCELED w2=0");
}
END_TEST

static int cancel_lone_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t1, *t2, *t3;
	int n1 = 0, n2 = 0;
	struct waiter w1 = { "w1", &ev, 0, &n1, false, 1 };
	struct waiter w2 = { "w2", &ev, 0, &n2, false, 1 };
	struct waiter w3 = { "w3", &ev, 0, &n2, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, waiter_fn, &w1), 0);
	yield_until(&n1, 1);
	/* The only waiter leaves: the next two wait as if it never had. */
	ck_assert_int_eq(af_task_cancel(t1), 0);
	join_ok(t1);
	ck_assert_int_eq(af_task_spawn(&t2, waiter_fn, &w2), 0);
	ck_assert_int_eq(af_task_spawn(&t3, waiter_fn, &w3), 0);
	yield_until(&n2, 2);
	trace_add(&tr, "set");
	af_event_set(&ev);
	join_ok(t2);
	join_ok(t3);
	return 0;
}

START_TEST(cancelling_the_only_waiter_leaves_no_trace_of_it_in_the_event)
{
	reset();
	ck_assert_int_eq(run_main(cancel_lone_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1-wait w1=ECANCELED w2-wait w3-wait set w2=0 w3=0");
}
END_TEST

static int cancel_woken_middle_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t[3];
	int n = 0;
	struct waiter w[3] = {
		{ "a", &ev, 0, &n, false, 1 },
		{ "b", &ev, 0, &n, false, 1 },
		{ "c", &ev, 0, &n, false, 1 },
	};

	(void)arg;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_task_spawn(&t[i], waiter_fn, &w[i]), 0);
	yield_until(&n, 3);
	af_event_set(&ev);
	/* b is woken, not resumed: its wait ends cancelled where it stands in
	 * the run queue, not moved behind c. */
	ck_assert_int_eq(af_task_cancel(t[1]), 0);
	trace_add(&tr, "set");
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "main");
	for (int i = 0; i < 3; i++)
		join_ok(t[i]);
	return 0;
}

START_TEST(cancelling_a_woken_waiter_keeps_its_place_among_the_woken)
{
	reset();
	ck_assert_int_eq(run_main(cancel_woken_middle_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a-wait b-wait c-wait set a=0 b=ECANCELED c=0 main");
}
END_TEST

/* Waits on @ev twice: the second wait begins while waiters woken by the
 * same set have not run yet. */
struct twice {
	const char *name;
	struct af_event *ev;
	int *nwaiting;
};

static int twice_fn(void *arg)
{
	struct twice *w = arg;

	for (int i = 0; i < 2; i++) {
		(*w->nwaiting)++;
		tracef("%s=%s", w->name, errname(af_event_wait(w->ev)));
	}
	return 0;
}

static int wait_again_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t[3];
	int n = 0;
	struct twice w[3] = { { "a", &ev, &n }, { "b", &ev, &n }, { "c", &ev, &n } };

	(void)arg;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_task_spawn(&t[i], twice_fn, &w[i]), 0);
	yield_until(&n, 3);
	af_event_set(&ev);
	af_event_clear(&ev);
	yield_until(&n, 6);
	trace_add(&tr, "set2");
	af_event_set(&ev);
	for (int i = 0; i < 3; i++)
		join_ok(t[i]);
	return 0;
}

START_TEST(woken_waiters_that_wait_again_before_the_rest_have_run_are_woken_by_the_next_set)
{
	reset();
	ck_assert_int_eq(run_main(wait_again_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a=0 b=0 c=0 set2 a=0 b=0 c=0");
}
END_TEST

/* ---- timeouts ------------------------------------------------------------- */

struct timed_rewaiter {
	struct af_event *ev, *ev2;
	int64_t timeout_ns;
	uint64_t elapsed_ns;
};

static int timed_rewaiter_fn(void *arg)
{
	struct timed_rewaiter *w = arg;
	uint64_t t0 = af__now_ns();
	int r;

	r = af_event_wait_timeout(w->ev, w->timeout_ns);
	w->elapsed_ns = af__now_ns() - t0;
	tracef("t=%s", errname(r));
	/* Same wait node on another event: a stale link in ev would be seen. */
	r = af_event_wait(w->ev2);
	tracef("t2=%s", errname(r));
	return 0;
}

static int timeout_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT, ev2 = AF_EVENT_INIT;
	struct af_task *tt, *tw;
	int n = 0;
	struct timed_rewaiter t = { &ev, &ev2, 20 * 1000 * 1000, 0 };
	struct waiter w = { "w", &ev, 0, &n, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&tt, timed_rewaiter_fn, &t), 0);
	ck_assert_int_eq(af_task_spawn(&tw, waiter_fn, &w), 0);
	/* Until the timeout has expired; w keeps waiting without one. Polled
	 * rather than slept, so a loaded machine cannot reorder the trace. */
	while (t.elapsed_ns == 0)
		ck_assert_int_eq(af_sleep_ms(5), 0);
	trace_add(&tr, "slept");
	ck_assert(!af_event_is_set(&ev));
	af_event_set(&ev);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "set2");
	af_event_set(&ev2);
	join_ok(tt);
	join_ok(tw);
	ck_assert_uint_ge(t.elapsed_ns, 20u * 1000 * 1000);
	ck_assert_uint_lt(t.elapsed_ns, 5000ull * 1000 * 1000);
	return 0;
}

START_TEST(wait_timeout_expiry_returns_etimedout_removes_the_waiter_and_leaves_the_event_unchanged)
{
	reset();
	ck_assert_int_eq(run_main(timeout_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w-wait t=ETIMEDOUT slept w=0 set2 t2=0");
}
END_TEST

static int timeout_set_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;

	(void)arg;
	af_event_set(&ev);
	ck_assert_int_eq(af_event_wait_timeout(&ev, 20 * 1000 * 1000), 0);
	af_event_clear(&ev);
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), -ETIMEDOUT);
	/* A timeout leaves a cleared event cleared. */
	ck_assert(!af_event_is_set(&ev));
	return 0;
}

START_TEST(wait_timeout_of_zero_expires_and_leaves_a_cleared_event_cleared)
{
	ck_assert_int_eq(run_main(timeout_set_main, NULL), 0);
}
END_TEST

struct timed_waiter {
	const char *name;
	struct af_event *ev;
	int64_t timeout_ns;
	int *nwaiting;
};

static int timed_waiter_fn(void *arg)
{
	struct timed_waiter *w = arg;

	(*w->nwaiting)++;
	tracef("%s=%s", w->name, errname(af_event_wait_timeout(w->ev, w->timeout_ns)));
	return 0;
}

static int set_before_due_timeout_runs_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	/* A zero timeout is due at once, but fires only between batches:
	 * the set below comes first. Two waiters, as a lone one is woken
	 * another way. */
	struct timed_waiter w1 = { "w1", &ev, 0, &n }, w2 = { "w2", &ev, 0, &n };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, timed_waiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, timed_waiter_fn, &w2), 0);
	yield_until(&n, 2);
	af_event_set(&ev);
	trace_add(&tr, "set");
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "main");
	join_ok(t1);
	join_ok(t2);
	/* The wake took the timer with it. */
	ck_assert_uint_eq(af_loop_current()->timers.len, 0);
	return 0;
}

START_TEST(a_set_wakes_a_timed_waiter_whose_timeout_falls_due_before_it_runs_with_0)
{
	reset();
	ck_assert_int_eq(run_main(set_before_due_timeout_runs_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "set w1=0 w2=0 main");
}
END_TEST

static int sleeper_fn(void *arg)
{
	int *n = arg;

	(*n)++;
	ck_assert_int_eq(af_sleep_ns(0), 0);
	trace_add(&tr, "s");
	return 0;
}

static int timer_due_before_set_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *tw1, *tw2, *ts;
	int n = 0, ns = 0;
	struct waiter w1 = { "w1", &ev, 0, &n, false, 1 };
	struct waiter w2 = { "w2", &ev, 0, &n, false, 1 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&tw1, waiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&tw2, waiter_fn, &w2), 0);
	yield_until(&n, 2);
	/* The sleeper's timer is due at once; main, queued before any timer
	 * was armed, runs before it fires. */
	ck_assert_int_eq(af_task_spawn(&ts, sleeper_fn, &ns), 0);
	yield_until(&ns, 1);
	af_event_set(&ev);
	trace_add(&tr, "set");
	/* The timer fell due before the waiters were woken: it fires first. */
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "main");
	join_ok(tw1);
	join_ok(tw2);
	join_ok(ts);
	return 0;
}

START_TEST(a_timer_due_before_a_set_fires_ahead_of_the_waiters_it_wakes)
{
	reset();
	ck_assert_int_eq(run_main(timer_due_before_set_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1-wait w2-wait set s w1=0 w2=0 main");
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

static int null_main(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_event_wait(NULL), -EINVAL);
	ck_assert_int_eq(af_event_wait_timeout(NULL, 0), -EINVAL);
	ck_assert_int_eq(af_event_wait_timeout(NULL, -1), -EINVAL);
	/* void calls: must simply not crash. */
	af_event_set(NULL);
	af_event_clear(NULL);
	af_event_init(NULL);
	ck_assert(!af_event_is_set(NULL));
	return 0;
}

START_TEST(null_event_is_refused_with_einval)
{
	ck_assert_int_eq(run_main(null_main, NULL), 0);
}
END_TEST

static int set_it_main(void *arg)
{
	af_event_set(arg);
	return 0;
}

START_TEST(wait_outside_a_task_is_refused_with_eperm)
{
	struct af_event ev = AF_EVENT_INIT;

	ck_assert_int_eq(af_event_wait(&ev), -EPERM);
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), -EPERM);
	ck_assert_int_eq(af_event_wait_timeout(&ev, -1), -EPERM);
	/* Even on a set event, which a task would pass without blocking:
	 * the caller is not a task. */
	ck_assert_int_eq(run_main(set_it_main, &ev), 0);
	ck_assert(af_event_is_set(&ev));
	ck_assert_int_eq(af_event_wait(&ev), -EPERM);
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), -EPERM);
}
END_TEST

/* A wait in a child of fork(): only the test on entry keeps the child from
 * handing over to the parent's tasks, since the hand-over that follows it
 * does not test again. A second task is runnable at the fork, so that a
 * wait that went on would switch straight to it. */
struct forked_wait {
	pid_t parent;
	bool stop;
};

static int fork_bystander_fn(void *arg)
{
	struct forked_wait *fw = arg;

	while (!fw->stop) {
		/* The parent's task, running in the child. */
		if (getpid() != fw->parent)
			_exit(3);
		af_yield();
	}
	return 0;
}

static int fork_wait_main(void *arg)
{
	struct forked_wait *fw = arg;
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t;
	pid_t pid;
	int st, r;

	ck_assert_int_eq(af_task_spawn(&t, fork_bystander_fn, fw), 0);
	ck_assert_int_eq(af_yield(), 0); /* t has run, and is runnable again */
	/* Used once, so that the child's wait is by a task of its loop. */
	af_event_set(&ev);
	af_event_clear(&ev);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* TSan cannot follow a fork() made on a coroutine's stack
		 * (test-loop.c): there the child only execs. */
#if AF_TSAN
		execl("/bin/true", "true", (char *)NULL);
#endif
		_exit(af_event_wait(&ev) == -ECHILD && !af_event_is_set(&ev) ? 0 : 4);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	fw->stop = true;
	ck_assert_int_eq(af_task_join(t, &r), 0);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

START_TEST(a_wait_in_a_child_of_fork_returns_echild_and_runs_none_of_the_parents_tasks)
{
	struct forked_wait fw = { .parent = getpid() };

	ck_assert_int_eq(run_main(fork_wait_main, &fw), 0);
}
END_TEST

/* ---- initialisation ------------------------------------------------------- */

static struct af_event static_ev;

static int static_waiter_fn(void *arg)
{
	int *n = arg;

	(*n)++;
	return af_event_wait(&static_ev) == 0 ? 7 : -1;
}

static int static_main(void *arg)
{
	struct af_task *t;
	int n = 0, res = 0;

	(void)arg;
	ck_assert(!af_event_is_set(&static_ev));
	ck_assert_int_eq(af_task_spawn(&t, static_waiter_fn, &n), 0);
	yield_until(&n, 1);
	ck_assert(!af_task_done(t));
	af_event_set(&static_ev);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, 7);
	ck_assert(af_event_is_set(&static_ev));
	return 0;
}

START_TEST(zero_initialised_static_event_is_a_cleared_event_that_works)
{
	ck_assert_int_eq(run_main(static_main, NULL), 0);
}
END_TEST

static int macro_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t;
	int n = 0;
	struct waiter w = { "w", &ev, 0, &n, false, 1 };

	(void)arg;
	ck_assert(!af_event_is_set(&ev));
	ck_assert_int_eq(af_task_spawn(&t, waiter_fn, &w), 0);
	yield_until(&n, 1);
	ck_assert(!af_task_done(t));
	af_event_set(&ev);
	join_ok(t);
	ck_assert_int_eq(w.result, 0);
	return 0;
}

START_TEST(af_event_init_macro_gives_a_cleared_event_that_works)
{
	reset();
	ck_assert_int_eq(run_main(macro_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w-wait w=0");
}
END_TEST

static int init_main(void *arg)
{
	struct af_event ev;

	(void)arg;
	memset(&ev, 0xa5, sizeof(ev));
	af_event_init(&ev);
	ck_assert(!af_event_is_set(&ev));
	ck_assert_int_eq(af_event_wait_timeout(&ev, 0), -ETIMEDOUT);
	af_event_set(&ev);
	ck_assert_int_eq(af_event_wait(&ev), 0);
	return 0;
}

START_TEST(af_event_init_turns_garbage_into_a_cleared_event)
{
	ck_assert_int_eq(run_main(init_main, NULL), 0);
}
END_TEST

/* ---- threads -------------------------------------------------------------- */

static void *foreign_set(void *arg)
{
	af_event_set(arg);
	return NULL;
}

static void *foreign_clear(void *arg)
{
	af_event_clear(arg);
	return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, fn, arg), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
}

/* Runs @fn on a plain thread with stderr captured; returns what it wrote. */
static char *capture_stderr_of_thread(void *(*fn)(void *), void *arg)
{
	static char out[2048];
	FILE *f = tmpfile();
	int saved;
	ssize_t n;

	ck_assert_ptr_nonnull(f);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fileno(f), STDERR_FILENO), 0);
	run_thread(fn, arg);
	fflush(stderr);
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
	n = pread(fileno(f), out, sizeof(out) - 1, 0);
	ck_assert_int_ge(n, 0);
	out[n] = '\0';
	fclose(f);
	return out;
}

static int foreign_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct waiter w1 = { "w1", &ev, 0, &n, false, 1 };
	struct waiter w2 = { "w2", &ev, 0, &n, false, 1 };
	char *msg;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t1, waiter_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, waiter_fn, &w2), 0);
	yield_until(&n, 2);
	/* The loop thread blocks in pthread_join meanwhile, which is fine:
	 * the foreign set must be refused without the loop's help. */
	msg = capture_stderr_of_thread(foreign_set, &ev);
#if AF_DEBUG
	ck_assert_msg(strstr(msg, "af_event_set") && strstr(msg, "af_flag_set"),
		      "debug message should name af_event_set and point to af_flag_set, got: \"%s\"",
		      msg);
#else
	(void)msg;
#endif
	ck_assert(!af_event_is_set(&ev));
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert(!af_task_done(t1));
	ck_assert(!af_task_done(t2));
	trace_add(&tr, "set");
	af_event_set(&ev);
	join_ok(t1);
	join_ok(t2);
	return 0;
}

START_TEST(set_from_a_plain_thread_is_refused_and_the_waiters_stay_waiting)
{
	reset();
	ck_assert_int_eq(run_main(foreign_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1-wait w2-wait set w1=0 w2=0");
}
END_TEST

static int foreign_clear_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;

	(void)arg;
	af_event_set(&ev);
	run_thread(foreign_clear, &ev);
	/* The event belongs to this loop (it was used here): a foreign
	 * thread may not change it. */
	ck_assert(af_event_is_set(&ev));
	return 0;
}

START_TEST(clear_from_a_plain_thread_is_refused)
{
	ck_assert_int_eq(run_main(foreign_clear_main, NULL), 0);
}
END_TEST

/* ---- tasks that hand over to one another directly ------------------------------ */

/* A task that blocks switches straight to the next runnable one, and two
 * tasks in a ping-pong begin batch after batch without the loop's own
 * context. These tests check that everything the loop does between batches
 * still happens around such a pair: collecting flags, I/O and timers,
 * starting new tasks, and cancelling what is left when main returns. */
struct volley {
	struct af_event ping, pong;
	bool stop;
	long rounds;
	long trace_rounds;  /* trace the first rounds as "pN" */
	long signal_at;     /* set reached once this many rounds are done */
	struct af_event reached;
	af_task_fn middle;  /* for volley_main(): the third task, given the volley */
};

static int volley_server(void *arg)
{
	struct volley *v = arg;
	struct af_task *self = af_task_current();

	while (!v->stop) {
		int r;

		af_event_set(&v->ping);
		r = af_event_wait(&v->pong);
		/* However it was resumed (by the loop or by a task that
		 * blocked), the task knows itself. */
		ck_assert_ptr_eq(af_task_current(), self);
		if (r < 0)
			return r;
		af_event_clear(&v->pong);
		if (++v->rounds <= v->trace_rounds)
			tracef("p%ld", v->rounds);
		if (v->rounds == v->signal_at)
			af_event_set(&v->reached);
	}
	af_event_set(&v->ping); /* let the receiver see the stop */
	return 0;
}

static int volley_receiver(void *arg)
{
	struct volley *v = arg;
	struct af_task *self = af_task_current();

	for (;;) {
		int r = af_event_wait(&v->ping);

		ck_assert_ptr_eq(af_task_current(), self);
		if (r < 0)
			return r;
		af_event_clear(&v->ping);
		af_event_set(&v->pong);
		if (v->stop)
			return 0;
	}
}

/* Spawns the pair, runs @middle (which ends the volley by setting stop,
 * one way or another) and joins all three. */
static void volley_run(struct volley *v, af_task_fn middle, void *arg)
{
	struct af_task *a, *b, *m;
	int ra = 1, rb = 1, rm = 1;

	ck_assert_int_eq(af_task_spawn(&a, volley_server, v), 0);
	ck_assert_int_eq(af_task_spawn(&b, volley_receiver, v), 0);
	ck_assert_int_eq(af_task_spawn(&m, middle, arg), 0);
	ck_assert_int_eq(af_task_join(m, &rm), 0);
	ck_assert_int_eq(af_task_join(a, &ra), 0);
	ck_assert_int_eq(af_task_join(b, &rb), 0);
	ck_assert_int_eq(rm, 0);
	ck_assert_int_eq(ra, 0);
	ck_assert_int_eq(rb, 0);
	ck_assert_int_gt(v->rounds, 0);
}

static int volley_main(void *arg)
{
	struct volley *v = arg;

	volley_run(v, v->middle, v);
	return 0;
}

/* A ping-pong with @middle (given the volley) beside it leaves @want in
 * the trace. */
static void assert_volley_trace(af_task_fn middle, const char *want)
{
	struct volley v = { .middle = middle };

	reset();
	ck_assert_int_eq(run_main(volley_main, &v), 0);
	ck_assert_str_eq(tr.buf, want);
}

struct flag_stop {
	struct volley v;
	struct af_flag flag;
	bool from_thread;
};

static void *flag_setter_thread(void *arg)
{
	/* Not a timing assumption: the test passes either way, but it is
	 * about a set that lands while the flag's waiter is parked. */
	usleep(10000);
	af_flag_set(arg);
	return NULL;
}

static int flag_stopper(void *arg)
{
	struct flag_stop *fs = arg;
	pthread_t th;
	int r;

	if (fs->from_thread) {
		ck_assert_int_eq(pthread_create(&th, NULL, flag_setter_thread, &fs->flag), 0);
		r = af_flag_wait(&fs->flag);
		ck_assert_int_eq(pthread_join(th, NULL), 0);
	} else {
		r = af_flag_wait(&fs->flag);
	}
	tracef("flag=%s", errname(r));
	fs->v.stop = true;
	return 0;
}

static int flag_volley_main(void *arg)
{
	struct flag_stop *fs = arg;

	ck_assert_int_eq(af_flag_init(&fs->flag, af_loop_current()), 0);
	volley_run(&fs->v, flag_stopper, fs);
	af_flag_destroy(&fs->flag);
	return 0;
}

START_TEST(a_flag_set_from_another_thread_reaches_its_waiter_while_two_tasks_ping_pong)
{
	struct flag_stop fs = { .from_thread = true };

	reset();
	ck_assert_int_eq(run_main(flag_volley_main, &fs), 0);
	ck_assert_str_eq(tr.buf, "flag=0");
}
END_TEST

static int round_setter(void *arg)
{
	struct flag_stop *fs = arg;

	fs->v.trace_rounds = 6;
	/* Yield until the volley runs, then set the flag between two of its
	 * hand-overs: the waiter runs when the loop next collects. */
	while (fs->v.rounds < 2)
		ck_assert_int_eq(af_yield(), 0);
	tracef("set");
	af_flag_set(&fs->flag);
	return 0;
}

static int flag_round_main(void *arg)
{
	struct flag_stop *fs = arg;
	struct af_task *setter;

	ck_assert_int_eq(af_flag_init(&fs->flag, af_loop_current()), 0);
	ck_assert_int_eq(af_task_spawn(&setter, round_setter, fs), 0);
	volley_run(&fs->v, flag_stopper, fs);
	ck_assert_int_eq(af_task_join(setter, NULL), 0);
	af_flag_destroy(&fs->flag);
	return 0;
}

START_TEST(a_flag_set_on_the_loop_thread_during_a_ping_pong_wakes_its_waiter_at_the_next_collect)
{
	struct flag_stop fs = { .from_thread = false };

	reset();
	ck_assert_int_eq(run_main(flag_round_main, &fs), 0);
	/* The setter yields between hand-overs and sets after the server's
	 * round 2; the waiter runs behind the tasks already runnable, in the
	 * batch after the set, and stops the volley, which ends its round. */
	ck_assert_str_eq(tr.buf, "p1 p2 set p3 flag=0 p4");
}
END_TEST

static int sleep_stopper(void *arg)
{
	struct volley *v = arg;
	int r = af_sleep_ms(2);

	tracef("slept=%s", errname(r));
	v->stop = true;
	return 0;
}

START_TEST(a_sleep_ends_while_two_tasks_ping_pong)
{
	assert_volley_trace(sleep_stopper, "slept=0");
}
END_TEST

struct pipe_stop {
	struct volley v;
	int fds[2];
};

static void *pipe_writer_thread(void *arg)
{
	struct pipe_stop *ps = arg;

	ck_assert_int_eq(write(ps->fds[1], "x", 1), 1);
	return NULL;
}

static int read_stopper(void *arg)
{
	struct pipe_stop *ps = arg;
	pthread_t th;
	char c = 0;
	int r;

	ck_assert_int_eq(pthread_create(&th, NULL, pipe_writer_thread, ps), 0);
	r = af_read(ps->fds[0], &c, 1, AF_OFFSET_CURRENT);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	tracef("read=%d:%c", r, c);
	ps->v.stop = true;
	return 0;
}

static int read_volley_main(void *arg)
{
	struct pipe_stop *ps = arg;

	volley_run(&ps->v, read_stopper, ps);
	return 0;
}

START_TEST(a_read_completes_while_two_tasks_ping_pong)
{
	struct pipe_stop ps = { 0 };

	reset();
	ck_assert_int_eq(pipe(ps.fds), 0);
	ck_assert_int_eq(run_main(read_volley_main, &ps), 0);
	close(ps.fds[0]);
	close(ps.fds[1]);
	ck_assert_str_eq(tr.buf, "read=1:x");
}
END_TEST

static int job_fn(void *arg)
{
	(void)arg;
	usleep(1000); /* lands while the pair hands over, if anything does */
	return 5;
}

static int job_stopper(void *arg)
{
	struct volley *v = arg;
	int res = 0, r = af_run_blocking(job_fn, NULL, &res);

	tracef("job=%s:%d", errname(r), res);
	v->stop = true;
	return 0;
}

START_TEST(a_blocking_job_finishes_while_two_tasks_ping_pong)
{
	assert_volley_trace(job_stopper, "job=0:5");
}
END_TEST

static int newcomer_fn(void *arg)
{
	struct volley *v = arg;

	tracef("new");
	v->stop = true;
	return 0;
}

/* Spawns a task between two hand-overs of the volley. */
static int spawner(void *arg)
{
	struct volley *v = arg;
	struct af_task *t;

	v->trace_rounds = 4;
	while (v->rounds < 1)
		ck_assert_int_eq(af_yield(), 0);
	tracef("spawn");
	ck_assert_int_eq(af_task_spawn(&t, newcomer_fn, v), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(a_task_spawned_during_a_ping_pong_runs_in_the_next_batch)
{
	assert_volley_trace(spawner, "p1 spawn new p2");
}
END_TEST

static int volley_forever_main(void *arg)
{
	struct volley *v = arg;
	struct af_task *a, *b;

	ck_assert_int_eq(af_task_spawn(&a, volley_server, v), 0);
	ck_assert_int_eq(af_task_spawn(&b, volley_receiver, v), 0);
	ck_assert_int_eq(af_task_detach(a), 0);
	ck_assert_int_eq(af_task_detach(b), 0);
	/* Woken in round 1000, main runs ahead of the receiver in the next
	 * batch and returns; the receiver then blocks with only the server
	 * to hand over to. */
	v->signal_at = 1000;
	ck_assert_int_eq(af_event_wait(&v->reached), 0);
	return 7;
}

START_TEST(a_ping_pong_still_running_when_main_returns_is_cancelled)
{
	struct volley v = { 0 };

	ck_assert_int_eq(run_main(volley_forever_main, &v), 7);
	ck_assert(!v.stop);
	ck_assert_int_ge(v.rounds, 1000);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("event");
	TCase *tc;

	tc = tcase_create("set");
	tcase_add_test(tc, set_moves_every_waiter_to_the_back_of_the_run_queue_in_wait_order_without_yielding);
	tcase_add_test(tc, set_with_no_waiters_only_sets_the_state);
	tcase_add_test(tc, woken_waiters_run_before_the_setter_resumes_from_a_yield);
	suite_add_tcase(s, tc);

	tc = tcase_create("wait");
	tcase_add_test(tc, wait_on_a_set_event_returns_at_once_without_yielding);
	tcase_add_test(tc, set_then_clear_before_the_waiters_run_still_wakes_every_waiter);
	tcase_add_test(tc, clear_makes_later_waits_block_until_the_next_set);
	tcase_add_test(tc, woken_waiters_that_wait_again_before_the_rest_have_run_are_woken_by_the_next_set);
	suite_add_tcase(s, tc);

	tc = tcase_create("fairness");
	tcase_add_test(tc, set_clear_wait_ping_pong_does_not_starve_a_yielding_task);
	suite_add_tcase(s, tc);

	tc = tcase_create("direct");
	tcase_add_test(tc, a_flag_set_from_another_thread_reaches_its_waiter_while_two_tasks_ping_pong);
	tcase_add_test(tc, a_flag_set_on_the_loop_thread_during_a_ping_pong_wakes_its_waiter_at_the_next_collect);
	tcase_add_test(tc, a_sleep_ends_while_two_tasks_ping_pong);
	tcase_add_test(tc, a_read_completes_while_two_tasks_ping_pong);
	tcase_add_test(tc, a_blocking_job_finishes_while_two_tasks_ping_pong);
	tcase_add_test(tc, a_task_spawned_during_a_ping_pong_runs_in_the_next_batch);
	tcase_add_test(tc, a_ping_pong_still_running_when_main_returns_is_cancelled);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancel");
	tcase_add_test(tc, cancelling_a_waiter_removes_it_from_the_waiters);
	tcase_add_test(tc, cancel_after_set_but_before_the_waiter_resumed_makes_wait_return_ecanceled);
	tcase_add_test(tc, cancelling_a_woken_waiter_keeps_its_place_among_the_woken);
	tcase_add_test(tc, cancelling_the_only_waiter_leaves_no_trace_of_it_in_the_event);
	tcase_add_test(tc, a_task_that_cancelled_itself_gets_ecanceled_from_its_next_wait_on_an_event_without_waiters);
	tcase_add_test(tc, a_task_that_cancelled_itself_gets_ecanceled_from_its_next_wait_and_the_other_waiter_is_still_woken);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeout");
	tcase_add_test(tc, wait_timeout_expiry_returns_etimedout_removes_the_waiter_and_leaves_the_event_unchanged);
	tcase_add_test(tc, wait_timeout_of_zero_expires_and_leaves_a_cleared_event_cleared);
	tcase_add_test(tc, a_set_wakes_a_timed_waiter_whose_timeout_falls_due_before_it_runs_with_0);
	tcase_add_test(tc, a_timer_due_before_a_set_fires_ahead_of_the_waiters_it_wakes);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, null_event_is_refused_with_einval);
	tcase_add_test(tc, wait_outside_a_task_is_refused_with_eperm);
	tcase_add_test(tc, a_wait_in_a_child_of_fork_returns_echild_and_runs_none_of_the_parents_tasks);
	suite_add_tcase(s, tc);

	tc = tcase_create("init");
	tcase_add_test(tc, zero_initialised_static_event_is_a_cleared_event_that_works);
	tcase_add_test(tc, af_event_init_macro_gives_a_cleared_event_that_works);
	tcase_add_test(tc, af_event_init_turns_garbage_into_a_cleared_event);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_test(tc, set_from_a_plain_thread_is_refused_and_the_waiters_stay_waiting);
	tcase_add_test(tc, clear_from_a_plain_thread_is_refused);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
