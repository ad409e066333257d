/* SPDX-License-Identifier: MIT */
/* Tasks: spawning, yielding, joining, cancellation, timeouts on join, the
 * end of af_loop_run and the error codes of task.h. Orders are asserted
 * exactly with a trace (semantics.md "Run queue" and "Tasks"). */
#include <stdarg.h>

#include "testutil.h"
#include "internal.h"

static struct trace tr;

#define tracef(...) trace_addf(&tr, __VA_ARGS__)

static void reset(void)
{
	memset(&tr, 0, sizeof(tr));
}

static const uint64_t ms = 1000 * 1000;

static int tracer_fn(void *arg)
{
	trace_add(&tr, arg);
	return 0;
}

static int return_arg_fn(void *arg)
{
	return (int)(intptr_t)arg;
}

static int wait_event_fn(void *arg)
{
	int r = af_event_wait(arg);

	tracef("waiter=%s", errname(r));
	return r == 0 ? 9 : r;
}

/* ---- running -------------------------------------------------------------- */

static int not_yet_main(void *arg)
{
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, tracer_fn, "t"), 0);
	trace_add(&tr, "spawned");
	ck_assert(!af_task_done(t));
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "yielded");
	ck_assert(af_task_done(t));
	ck_assert_int_eq(af_task_join(t, NULL), 0);

	ck_assert_int_eq(af_task_spawn(&t, tracer_fn, "u"), 0);
	trace_add(&tr, "spawned");
	ck_assert_int_eq(af_sleep_ms(1), 0);
	trace_add(&tr, "slept");
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(a_spawned_task_does_not_run_until_its_creator_yields_or_blocks)
{
	reset();
	ck_assert_int_eq(run_main(not_yet_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "spawned t yielded spawned u slept");
}
END_TEST

static int two_step_fn(void *arg)
{
	const char *name = arg;

	tracef("%s1", name);
	ck_assert_int_eq(af_yield(), 0);
	tracef("%s2", name);
	return 0;
}

static int yield_main(void *arg)
{
	struct af_task *a, *b, *c;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&a, two_step_fn, "a"), 0);
	ck_assert_int_eq(af_task_spawn(&b, two_step_fn, "b"), 0);
	ck_assert_int_eq(af_task_spawn(&c, two_step_fn, "c"), 0);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "m");
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "m");
	ck_assert_int_eq(af_task_join(a, NULL), 0);
	ck_assert_int_eq(af_task_join(b, NULL), 0);
	ck_assert_int_eq(af_task_join(c, NULL), 0);
	return 0;
}

START_TEST(yield_lets_every_runnable_task_run_once_then_continues)
{
	reset();
	ck_assert_int_eq(run_main(yield_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a1 b1 c1 m a2 b2 c2 m");
}
END_TEST

/* ---- join ----------------------------------------------------------------- */

static int join_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	struct af_task *t;
	size_t before;
	int res = 0;

	(void)arg;
	before = loop->ntasks;
	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, (void *)(intptr_t)42), 0);
	ck_assert_uint_eq(loop->ntasks, before + 1);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, 42);
	/* White-box: the join freed the task. */
	ck_assert_uint_eq(loop->ntasks, before);
	return 0;
}

START_TEST(join_waits_for_the_result_and_frees_the_task)
{
	ck_assert_int_eq(run_main(join_main, NULL), 0);
}
END_TEST

static int join_finished_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	struct af_task *t;
	size_t before = loop->ntasks;
	int res = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, (void *)(intptr_t)-5), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert(af_task_done(t));
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, -5);
	ck_assert_uint_eq(loop->ntasks, before);
	return 0;
}

START_TEST(join_of_a_finished_task_returns_its_result)
{
	ck_assert_int_eq(run_main(join_finished_main, NULL), 0);
}
END_TEST

struct joiner {
	struct af_task *target;
	int r, res;
};

static int joiner_fn(void *arg)
{
	struct joiner *j = arg;

	j->r = af_task_join(j->target, &j->res);
	tracef("joiner=%s", errname(j->r));
	return 0;
}

static int two_joiners_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t, *j1;
	struct joiner j = { NULL, 1, 0 };
	int res = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, wait_event_fn, &ev), 0);
	j.target = t;
	ck_assert_int_eq(af_task_spawn(&j1, joiner_fn, &j), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_join(t, &res), -EBUSY);
	ck_assert_int_eq(af_task_join_timeout(t, 0, &res), -EBUSY);
	ck_assert_int_eq(res, 0);
	/* The first joiner is undisturbed and still gets the result. */
	af_event_set(&ev);
	ck_assert_int_eq(af_task_join(j1, NULL), 0);
	ck_assert_int_eq(j.r, 0);
	ck_assert_int_eq(j.res, 9);
	return 0;
}

START_TEST(a_second_joiner_is_refused_with_ebusy)
{
	reset();
	ck_assert_int_eq(run_main(two_joiners_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "waiter=0 joiner=0");
}
END_TEST

static int join_self_main(void *arg)
{
	int res = 12345;

	(void)arg;
	ck_assert_int_eq(af_task_join(af_task_current(), &res), -EDEADLK);
	ck_assert_int_eq(af_task_join_timeout(af_task_current(), 0, &res), -EDEADLK);
	ck_assert_int_eq(res, 12345);
	return 0;
}

START_TEST(joining_itself_is_refused_with_edeadlk)
{
	ck_assert_int_eq(run_main(join_self_main, NULL), 0);
}
END_TEST

static int join_detached_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, wait_event_fn, &ev), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_detach(t), 0);
	/* Still alive (it waits on ev), so the handle still points at it. */
	ck_assert_int_eq(af_task_join(t, NULL), -EINVAL);
	af_event_set(&ev);
	ck_assert_int_eq(af_yield(), 0);
	return 0;
}

START_TEST(joining_a_detached_task_is_refused_with_einval)
{
	reset();
	ck_assert_int_eq(run_main(join_detached_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "waiter=0");
}
END_TEST

static int join_cancelled_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t, *jt;
	struct joiner j = { NULL, 1, 0 };

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, wait_event_fn, &ev), 0);
	j.target = t;
	ck_assert_int_eq(af_task_spawn(&jt, joiner_fn, &j), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_cancel(jt), 0);
	ck_assert_int_eq(af_task_join(jt, NULL), 0);
	ck_assert_int_eq(j.r, -ECANCELED);
	/* The handle is still valid: the target can be joined again. */
	ck_assert(!af_task_done(t));
	af_event_set(&ev);
	ck_assert_int_eq(af_task_join(t, &j.res), 0);
	ck_assert_int_eq(j.res, 9);
	return 0;
}

START_TEST(a_cancelled_join_returns_ecanceled_and_the_handle_stays_joinable)
{
	reset();
	ck_assert_int_eq(run_main(join_cancelled_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "joiner=ECANCELED waiter=0");
}
END_TEST

static struct af_task *main_task;

static int cancel_main_fn(void *arg)
{
	(void)arg;
	trace_add(&tr, "cancel-main");
	ck_assert_int_eq(af_task_cancel(main_task), 0);
	return 0;
}

static int join_woken_cancelled_main(void *arg)
{
	struct af_task *t, *x;
	int res = 0, r;

	(void)arg;
	main_task = af_task_current();
	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, (void *)(intptr_t)9), 0);
	ck_assert_int_eq(af_task_spawn(&x, cancel_main_fn, NULL), 0);
	/* t ends first and makes main runnable; x then cancels main before it
	 * resumed: the cancel wins, and the handle must stay joinable. */
	r = af_task_join(t, &res);
	tracef("join=%s", errname(r));
	ck_assert(af_task_done(t));
	r = af_task_join(t, &res);
	tracef("again=%s:%d", errname(r), res);
	ck_assert_int_eq(af_task_join(x, NULL), 0);
	return 0;
}

START_TEST(a_join_cancelled_after_the_target_ended_but_before_resuming_stays_joinable)
{
	reset();
	ck_assert_int_eq(run_main(join_woken_cancelled_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "cancel-main join=ECANCELED again=0:9");
}
END_TEST

/* ---- cancellation --------------------------------------------------------- */

static bool ran;

static int mark_ran_fn(void *arg)
{
	(void)arg;
	ran = true;
	return 1;
}

static int cancel_new_main(void *arg)
{
	struct af_task *t;
	int res = 0;

	(void)arg;
	ran = false;
	ck_assert_int_eq(af_task_spawn(&t, mark_ran_fn, NULL), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert(af_task_done(t));
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, -ECANCELED);
	ck_assert(!ran);
	return 0;
}

START_TEST(a_task_cancelled_before_it_first_ran_runs_no_code_and_ends_with_ecanceled)
{
	ck_assert_int_eq(run_main(cancel_new_main, NULL), 0);
}
END_TEST

static struct af_task *victim;

static int cancel_victim_fn(void *arg)
{
	(void)arg;
	trace_add(&tr, "canceller");
	ck_assert_int_eq(af_task_cancel(victim), 0);
	return 0;
}

static int cancel_sibling_main(void *arg)
{
	struct af_task *c;
	int res = 0;

	(void)arg;
	ran = false;
	/* The canceller runs in the same round as the victim, just ahead of
	 * it in the run queue. */
	ck_assert_int_eq(af_task_spawn(&c, cancel_victim_fn, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&victim, mark_ran_fn, NULL), 0);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "main");
	ck_assert_int_eq(af_task_join(victim, &res), 0);
	ck_assert_int_eq(res, -ECANCELED);
	ck_assert(!ran);
	ck_assert_int_eq(af_task_join(c, NULL), 0);
	return 0;
}

START_TEST(a_task_cancelled_by_a_sibling_queued_just_ahead_of_it_runs_no_code)
{
	reset();
	ck_assert_int_eq(run_main(cancel_sibling_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "canceller main");
}
END_TEST

static int cancel_once_fn(void *arg)
{
	struct af_event *ev = arg;
	int r;

	r = af_event_wait(ev);
	tracef("first=%s", errname(r));
	r = af_event_wait(ev);
	tracef("second=%s", errname(r));
	r = af_sleep_ms(1);
	tracef("sleep=%s", errname(r));
	return 0;
}

static int cancel_once_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, cancel_once_fn, &ev), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_yield(), 0);
	trace_add(&tr, "set");
	af_event_set(&ev);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(cancel_makes_the_current_blocking_call_return_ecanceled_once)
{
	reset();
	ck_assert_int_eq(run_main(cancel_once_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "first=ECANCELED set second=0 sleep=0");
}
END_TEST

static int cancel_sleeper_fn(void *arg)
{
	int r;

	(void)arg;
	r = af_sleep_ms(60 * 1000);
	tracef("sleep=%s", errname(r));
	r = af_sleep_ms(1);
	tracef("again=%s", errname(r));
	return 3;
}

static int cancel_sleeper_main(void *arg)
{
	struct af_task *t;
	int res = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, cancel_sleeper_fn, NULL), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	/* A second cancel before it resumed is still one -ECANCELED. */
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, 3);
	return 0;
}

START_TEST(cancel_interrupts_a_sleep_and_the_next_sleep_works)
{
	reset();
	ck_assert_int_eq(run_main(cancel_sleeper_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "sleep=ECANCELED again=0");
}
END_TEST

static int self_cancel_main(void *arg)
{
	int r;

	(void)arg;
	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	trace_add(&tr, "cancelled");
	r = af_sleep_ms(1);
	tracef("sleep=%s", errname(r));
	r = af_yield();
	tracef("yield=%s", errname(r));

	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	r = af_yield();
	tracef("yield=%s", errname(r));
	r = af_sleep_ms(1);
	tracef("sleep=%s", errname(r));
	return 0;
}

START_TEST(self_cancel_makes_the_next_blocking_call_return_ecanceled)
{
	reset();
	ck_assert_int_eq(run_main(self_cancel_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "cancelled sleep=ECANCELED yield=0 yield=ECANCELED sleep=0");
}
END_TEST

static int cancel_finished_main(void *arg)
{
	struct af_task *t;
	int res = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, (void *)(intptr_t)4), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert(af_task_done(t));
	ck_assert_int_eq(af_task_cancel(t), -EALREADY);
	/* The refused cancel changed nothing. */
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, 4);

	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, (void *)(intptr_t)4), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_cancel(t), -EALREADY);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, -ECANCELED);
	return 0;
}

START_TEST(cancel_of_a_finished_task_is_refused_with_ealready)
{
	ck_assert_int_eq(run_main(cancel_finished_main, NULL), 0);
}
END_TEST

/* ---- join with a timeout -------------------------------------------------- */

static int slow_fn(void *arg)
{
	int r;

	(void)arg;
	trace_add(&tr, "start");
	r = af_sleep_ms(60 * 1000);
	tracef("slow=%s", errname(r));
	/* Cleanup that itself blocks: join must wait for it. */
	r = af_sleep_ms(5);
	tracef("cleanup=%s", errname(r));
	return 7;
}

static int join_timeout_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	struct af_task *t;
	size_t before = loop->ntasks;
	int res = 0, r;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, slow_fn, NULL), 0);
	r = af_task_join_timeout(t, 20 * ms, &res);
	tracef("join=%s:%d", errname(r), res);
	/* Freed, as with a successful join. */
	ck_assert_uint_eq(loop->ntasks, before);
	return 0;
}

START_TEST(join_timeout_cancels_the_task_waits_for_its_cleanup_and_returns_etimedout)
{
	reset();
	ck_assert_int_eq(run_main(join_timeout_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "start slow=ECANCELED cleanup=0 join=ETIMEDOUT:7");
}
END_TEST

static int join_timeout_in_time_main(void *arg)
{
	struct af_task *t;
	int res = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, (void *)(intptr_t)8), 0);
	ck_assert_int_eq(af_task_join_timeout(t, 5000 * ms, &res), 0);
	ck_assert_int_eq(res, 8);
	return 0;
}

START_TEST(join_timeout_returns_the_result_when_the_task_ends_in_time)
{
	ck_assert_int_eq(run_main(join_timeout_in_time_main, NULL), 0);
}
END_TEST

/* ---- identity and options ------------------------------------------------- */

static int current_fn(void *arg)
{
	struct af_task **self = arg;

	*self = af_task_current();
	return 0;
}

static int identity_main(void *arg)
{
	struct af_task *t1, *t2, *seen1 = NULL, *seen2 = NULL;
	const char *n1, *n2;

	(void)arg;
	ck_assert_ptr_nonnull(af_task_current());
	ck_assert_str_eq(af_task_name(af_task_current()), "main");
	ck_assert_int_eq(af_task_spawn(&t1, current_fn, &seen1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, current_fn, &seen2), 0);
	n1 = af_task_name(t1);
	n2 = af_task_name(t2);
	ck_assert_msg(strncmp(n1, "task-", 5) == 0, "default name \"%s\"", n1);
	ck_assert_msg(strncmp(n2, "task-", 5) == 0, "default name \"%s\"", n2);
	ck_assert_str_ne(n1, n2);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_ptr_eq(seen1, t1);
	ck_assert_ptr_eq(seen2, t2);
	ck_assert_int_eq(af_task_join(t1, NULL), 0);
	ck_assert_int_eq(af_task_join(t2, NULL), 0);
	ck_assert_str_eq(af_task_name(NULL), "");
	return 0;
}

START_TEST(af_task_current_and_af_task_name_identify_tasks)
{
	ck_assert_ptr_null(af_task_current());
	ck_assert_int_eq(run_main(identity_main, NULL), 0);
	ck_assert_ptr_null(af_task_current());
}
END_TEST

static int stack_size_fn(void *arg)
{
	size_t *size = arg;

	*size = af_task_current()->stack.size;
	return 0;
}

static int opts_main(void *arg)
{
	struct af_task_opts o;
	struct af_task *t;
	size_t size = 0;
	static const char long_name[] = "a-name-that-is-longer-than-31-bytes-for-sure";

	(void)arg;
	memset(&o, 0, sizeof(o));
	o.name = "worker";
	o.stack_size = 1024 * 1024;
	ck_assert_int_eq(af_task_spawn_opts(&t, stack_size_fn, &size, &o), 0);
	ck_assert_str_eq(af_task_name(t), "worker");
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_uint_eq(size, af__stack_round(1024 * 1024));

	memset(&o, 0, sizeof(o));
	o.name = long_name;
	o.stack_size = AF_STACK_MIN;
	ck_assert_int_eq(af_task_spawn_opts(&t, stack_size_fn, &size, &o), 0);
	ck_assert_uint_eq(strlen(af_task_name(t)), 31);
	ck_assert_int_eq(strncmp(af_task_name(t), long_name, 31), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_uint_ge(size, AF_STACK_MIN);

	/* NULL opts and all-zero opts are the defaults. */
	ck_assert_int_eq(af_task_spawn_opts(&t, stack_size_fn, &size, NULL), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_uint_eq(size, AF_STACK_DEFAULT);
	memset(&o, 0, sizeof(o));
	ck_assert_int_eq(af_task_spawn_opts(&t, stack_size_fn, &size, &o), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_uint_eq(size, AF_STACK_DEFAULT);

	o.stack_size = AF_STACK_MIN - 1;
	t = NULL;
	ck_assert_int_eq(af_task_spawn_opts(&t, stack_size_fn, &size, &o), -EINVAL);
	ck_assert_ptr_null(t);
	o.stack_size = 4096;
	ck_assert_int_eq(af_task_spawn_opts(&t, stack_size_fn, &size, &o), -EINVAL);
	ck_assert_int_eq(af_task_spawn_opts(&t, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(af_task_spawn(&t, NULL, NULL), -EINVAL);
	return 0;
}

START_TEST(spawn_opts_sets_name_and_stack_size_and_refuses_stacks_below_16_kib)
{
	ck_assert_int_eq(run_main(opts_main, NULL), 0);
}
END_TEST

/* ---- sleeping ------------------------------------------------------------- */

static int sleep_main(void *arg)
{
	uint64_t t0, dt;

	(void)arg;
	t0 = af__now_ns();
	ck_assert_int_eq(af_sleep_ms(50), 0);
	dt = af__now_ns() - t0;
	ck_assert_uint_ge(dt, 50 * ms);
	ck_assert_uint_lt(dt, 5000 * ms);

	t0 = af__now_ns();
	ck_assert_int_eq(af_sleep_ns(20 * ms), 0);
	dt = af__now_ns() - t0;
	ck_assert_uint_ge(dt, 20 * ms);
	ck_assert_uint_lt(dt, 5000 * ms);
	return 0;
}

START_TEST(sleep_lasts_at_least_the_time_asked)
{
	ck_assert_int_eq(run_main(sleep_main, NULL), 0);
}
END_TEST

/* ---- many tasks ----------------------------------------------------------- */

enum { WAVE = 100, WAVES = 100 };

static int many_fn(void *arg)
{
	int *started = arg;

	(*started)++;
	/* Park so that the whole wave holds its stacks at once. */
	ck_assert_int_eq(af_yield(), 0);
	return 1;
}

static int many_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	struct af_task *t[WAVE];
	long total = 0;

	(void)arg;
	for (int w = 0; w < WAVES; w++) {
		int started = 0;

		for (int i = 0; i < WAVE; i++)
			ck_assert_int_eq(af_task_spawn(&t[i], many_fn, &started), 0);
		ck_assert_int_eq(af_yield(), 0);
		ck_assert_int_eq(started, WAVE);
		/* White-box: every freed stack is in use again, so stacks
		 * were reused rather than carved afresh. */
		if (w > 0)
			ck_assert_uint_eq(loop->stacks.len, 0);
		ck_assert_uint_eq(loop->stacks.carved, WAVE + 1);
		for (int i = 0; i < WAVE; i++) {
			int res = 0;

			ck_assert_int_eq(af_task_join(t[i], &res), 0);
			total += res;
		}
		/* All 100 come back to the pool. */
		ck_assert_uint_eq(loop->stacks.len, WAVE);
	}
	ck_assert_int_eq(total, (long)WAVE * WAVES);
	ck_assert_uint_eq(loop->ntasks, 1);
	return 0;
}

START_TEST(ten_thousand_tasks_are_spawned_and_joined_reusing_stacks)
{
	ck_assert_int_eq(run_main(many_main, NULL), 0);
}
END_TEST

/* ---- the end of the loop -------------------------------------------------- */

START_TEST(af_run_returns_the_result_of_main)
{
	ck_assert_int_eq(af_run(return_arg_fn, (void *)(intptr_t)42), 42);
	ck_assert_int_eq(af_run(return_arg_fn, (void *)(intptr_t)-3), -3);
	ck_assert_int_eq(af_run(NULL, NULL), -EINVAL);
}
END_TEST

static int cleanups;

static int leftover_sleeper_fn(void *arg)
{
	int r = af_sleep_ms(60 * 1000);

	(void)arg;
	ck_assert_int_eq(r, -ECANCELED);
	/* Cleanup may block: the loop must wait for it. */
	ck_assert_int_eq(af_sleep_ms(1), 0);
	cleanups++;
	return 0;
}

static int leftover_waiter_fn(void *arg)
{
	ck_assert_int_eq(af_event_wait(arg), -ECANCELED);
	ck_assert_int_eq(af_yield(), 0);
	cleanups++;
	return 0;
}

static int leftover_spinner_fn(void *arg)
{
	(void)arg;
	while (af_yield() == 0)
		;
	cleanups++;
	return 0;
}

static struct af_event leftover_ev;

static int leftover_main(void *arg)
{
	(void)arg;
	cleanups = 0;
	ck_assert_int_eq(af_task_spawn(NULL, leftover_sleeper_fn, NULL), 0);
	ck_assert_int_eq(af_task_spawn(NULL, leftover_waiter_fn, &leftover_ev), 0);
	ck_assert_int_eq(af_task_spawn(NULL, leftover_spinner_fn, NULL), 0);
	ck_assert_int_eq(af_yield(), 0);
	return 5;
}

START_TEST(when_main_returns_remaining_tasks_are_cancelled_and_waited_for)
{
	uint64_t t0 = af__now_ns();

	ck_assert_int_eq(run_main(leftover_main, NULL), 5);
	ck_assert_int_eq(cleanups, 3);
	/* Not the 60 s the sleeper asked for. */
	ck_assert_uint_lt(af__now_ns() - t0, 30000 * ms);
}
END_TEST

static int deadlock_wait_result;

static int deadlock_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;

	(void)arg;
	deadlock_wait_result = af_event_wait(&ev);
	return 6;
}

START_TEST(a_main_waiting_on_an_event_nothing_can_set_is_a_deadlock)
{
	struct af_loop *loop;
	int result = 0;

	deadlock_wait_result = 1;
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, deadlock_main, NULL, &result), -EDEADLK);
	ck_assert_int_eq(deadlock_wait_result, -ECANCELED);
	ck_assert_int_eq(result, 6);
	af_loop_free(loop);
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

START_TEST(spawning_outside_a_loop_is_refused_with_eperm)
{
	struct af_task *t = NULL;

	ck_assert_int_eq(af_task_spawn(&t, return_arg_fn, NULL), -EPERM);
	ck_assert_int_eq(af_task_spawn(NULL, return_arg_fn, NULL), -EPERM);
	ck_assert_int_eq(af_task_spawn_opts(&t, return_arg_fn, NULL, NULL), -EPERM);
	ck_assert_ptr_null(t);
}
END_TEST

START_TEST(yield_and_sleep_outside_a_task_are_refused_with_eperm)
{
	ck_assert_int_eq(af_yield(), -EPERM);
	ck_assert_int_eq(af_sleep_ms(1), -EPERM);
	ck_assert_int_eq(af_sleep_ns(0), -EPERM);
}
END_TEST

static int null_main(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_task_join(NULL, NULL), -EINVAL);
	ck_assert_int_eq(af_task_join_timeout(NULL, 0, NULL), -EINVAL);
	ck_assert_int_eq(af_task_cancel(NULL), -EINVAL);
	ck_assert_int_eq(af_task_detach(NULL), -EINVAL);
	ck_assert(!af_task_done(NULL));
	return 0;
}

START_TEST(null_task_handles_are_refused_with_einval)
{
	ck_assert_int_eq(run_main(null_main, NULL), 0);
}
END_TEST


/* ---- regressions found in review, and resource exhaustion ------------------ */

static int count_body(void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int spawn_detached_and_return(void *arg)
{
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(af_task_spawn(NULL, count_body, arg), 0);
	return 11;
}

START_TEST(main_returning_before_its_detached_tasks_ran_ends_them_without_running_them)
{
	int runs = 0;

	/* Cancelling a detached task that never ran frees it; the loop must
	 * not touch it afterwards (ASan builds check that). */
	ck_assert_int_eq(run_main(spawn_detached_and_return, &runs), 11);
	ck_assert_int_eq(runs, 0);
}
END_TEST

static int join_or_detach_main(void *arg)
{
	struct af_task *self = af_task_current();

	(void)arg;
	ck_assert_int_eq(af_task_detach(self), -EINVAL);
	ck_assert_int_eq(af_task_join_timeout(self, 0, NULL), -EDEADLK);
	return 3;
}

static int join_main_from_child(void *arg)
{
	int r = 0;

	return af_task_join(arg, &r);
}

static int main_joined_by_child(void *arg)
{
	struct af_task *child;
	int r = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&child, join_main_from_child, af_task_current()), 0);
	ck_assert_int_eq(af_task_join(child, &r), 0);
	ck_assert_int_eq(r, -EINVAL);
	return 4;
}

START_TEST(the_main_task_cannot_be_detached_or_joined)
{
	ck_assert_int_eq(run_main(join_or_detach_main, NULL), 3);
	ck_assert_int_eq(run_main(main_joined_by_child, NULL), 4);
}
END_TEST

static struct af_flag late_flag;

static int late_helper(void *arg)
{
	(void)arg;
	return af_flag_wait(&late_flag);
}

static int unwinding_spawner(void *arg)
{
	struct af_event never = AF_EVENT_INIT;

	ck_assert_int_eq(af_event_wait(&never), -ECANCELED);
	/* A cleanup helper spawned while the loop winds down. */
	ck_assert_int_eq(af_task_spawn(NULL, late_helper, NULL), 0);
	(*(int *)arg)++;
	return 0;
}

static int spawner_main(void *arg)
{
	ck_assert_int_eq(af_flag_init(&late_flag, NULL), 0);
	ck_assert_int_eq(af_task_spawn(NULL, unwinding_spawner, arg), 0);
	ck_assert_int_eq(af_yield(), 0);
	return 0;
}

START_TEST(tasks_spawned_while_the_loop_winds_down_are_cancelled_too)
{
	int unwound = 0;

	/* Without it the helper waits on its flag forever and the loop never
	 * returns (Check's timeout fails the test). */
	ck_assert_int_eq(run_main(spawner_main, &unwound), 0);
	ck_assert_int_eq(unwound, 1);
}
END_TEST

static int deadlock_twice(void *arg)
{
	struct af_event never = AF_EVENT_INIT;
	struct trace *log = arg;

	ck_assert_int_eq(af_event_wait(&never), -ECANCELED);
	trace_add(log, "first");
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_sleep_ms(1), 0);
	ck_assert_int_eq(af_event_wait(&never), -ECANCELED);
	trace_add(log, "second");
	return 5;
}

START_TEST(a_second_deadlock_after_progress_is_cancelled_again_not_abandoned)
{
	struct af_loop *loop;
	struct trace seen = { 0 };
	int result = -1;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, deadlock_twice, &seen, &result), -EDEADLK);
	ck_assert_int_eq(result, 5);
	ck_assert_str_eq(seen.buf, "first second");
	af_loop_free(loop);
}
END_TEST

static int deadlock_forever(void *arg)
{
	struct af_event never = AF_EVENT_INIT;
	int r;

	(void)arg;
	do {
		r = af_event_wait(&never); /* ignores its cancellation */
	} while (r == -ECANCELED);
	return 6;
}

START_TEST(tasks_that_block_on_nothing_again_after_the_deadlock_cancel_are_abandoned)
{
	struct af_loop *loop;
	int result = -1;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, deadlock_forever, NULL, &result), -EDEADLK);
	ck_assert_int_eq(result, -EDEADLK);
	af_loop_free(loop);
}
END_TEST

static int huge_stack_main(void *arg)
{
	struct af_task_opts o = { .stack_size = ((size_t)1 << 30) + 1 };
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn_opts(&t, count_body, NULL, &o), -EINVAL);
	o.stack_size = SIZE_MAX - 100;
	ck_assert_int_eq(af_task_spawn_opts(&t, count_body, NULL, &o), -EINVAL);
	return 0;
}

START_TEST(stack_sizes_above_one_gib_are_refused_instead_of_wrapping)
{
	struct af_loop *loop;
	struct af_loop_opts o = { .stack_size = ((size_t)1 << 30) + 1 };

	ck_assert_int_eq(run_main(huge_stack_main, NULL), 0);
	ck_assert_int_eq(af_loop_new(&loop, &o), -EINVAL);
}
END_TEST


static int fresh_waiter(void *arg)
{
	struct af_event never = AF_EVENT_INIT;
	int r = af_event_wait(&never);

	*(int *)arg = r;
	return r;
}

static int deadlock_then_spawn(void *arg)
{
	struct af_event never = AF_EVENT_INIT;
	struct af_task *b;
	int r = 0;

	ck_assert_int_eq(af_event_wait(&never), -ECANCELED);
	/* Carrying on after the cancel: a task created now never saw the
	 * first deadlock and must get a cancel of its own, not be dropped. */
	ck_assert_int_eq(af_task_spawn(&b, fresh_waiter, arg), 0);
	ck_assert_int_eq(af_task_join(b, &r), -ECANCELED);
	ck_assert_int_eq(af_task_join(b, &r), 0);
	return 0;
}

START_TEST(a_task_created_after_a_deadlock_is_cancelled_at_the_next_one_not_abandoned)
{
	struct af_loop *loop;
	int result = -1, seen = 1;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, deadlock_then_spawn, &seen, &result), -EDEADLK);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(seen, -ECANCELED);
	af_loop_free(loop);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define AF_TEST_SANITIZED 1
#endif

#if !AF_TEST_SANITIZED
#include <sys/resource.h>

/* Cap the address space a little above what the process maps now. The
 * sanitizers reserve terabytes of shadow, so this only runs unsanitized
 * (Check forks each test, so the limit dies with it). */
static void limit_address_space(size_t headroom)
{
	unsigned long pages = 0;
	struct rlimit rl;
	FILE *f = fopen("/proc/self/statm", "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	rl.rlim_cur = rl.rlim_max = pages * (rlim_t)sysconf(_SC_PAGESIZE) + headroom;
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
}

static int enomem_main(void *arg)
{
	struct af_task_opts o = { .name = "big", .stack_size = (size_t)512 << 20 };
	struct af_task *t;

	limit_address_space((size_t)64 << 20);
	/* The stack is mapped at spawn, so spawning is what fails. */
	ck_assert_int_eq(af_task_spawn_opts(&t, count_body, arg, &o), -ENOMEM);
	return 0;
}
#endif

START_TEST(a_task_whose_stack_cannot_be_mapped_fails_to_spawn_with_enomem)
{
#if AF_TEST_SANITIZED
	/* Needs an address-space limit the sanitizers cannot live with: the
	 * plain and ucontext builds run it. */
	return;
#else
	int runs = 0;

	ck_assert_int_eq(run_main(enomem_main, &runs), 0);
	ck_assert_int_eq(runs, 0);
#endif
}
END_TEST

START_TEST(af_loop_new_reports_enomem_when_the_ring_cannot_be_mapped)
{
#if AF_TEST_SANITIZED
	return;
#else
	struct af_loop *loop = NULL;

	limit_address_space(0);
	/* Out of memory is no reason to fall back to epoll. */
	ck_assert_int_eq(af_loop_new(&loop, NULL), -ENOMEM);
	ck_assert_ptr_null(loop);
#endif
}
END_TEST

/* ---- what a blocking call keeps ---------------------------------------------- */

/* keep_call(fn, arg, &changed) calls fn(arg) with a known value in every
 * register the ABI says a callee must preserve, and sets a bit in changed
 * for each that came back different: the switch, and on x86_64 the stubs
 * the blocking calls return through (src/resume_x86_64.S), are assembly
 * that no compiler checks. */
#if defined(__x86_64__)
#define HAVE_KEEP_CALL 1
__asm__(".pushsection .text\n"
	".p2align 4\n"
	".type keep_call, @function\n"
	"keep_call:\n"
	"	pushq %rbp\n	pushq %rbx\n	pushq %r12\n	pushq %r13\n"
	"	pushq %r14\n	pushq %r15\n	pushq %rdx\n"
	"	movq %rdi, %rax\n	movq %rsi, %rdi\n"
	"	movabsq $0x0101010101010101, %rbx\n"
	"	movabsq $0x0202020202020202, %rbp\n"
	"	movabsq $0x0303030303030303, %r12\n"
	"	movabsq $0x0404040404040404, %r13\n"
	"	movabsq $0x0505050505050505, %r14\n"
	"	movabsq $0x0606060606060606, %r15\n"
	"	call *%rax\n"
	"	xorl %ecx, %ecx\n"
	"	movabsq $0x0101010101010101, %rdx\n	cmpq %rdx, %rbx\n	je 1f\n	orl $1, %ecx\n1:\n"
	"	movabsq $0x0202020202020202, %rdx\n	cmpq %rdx, %rbp\n	je 1f\n	orl $2, %ecx\n1:\n"
	"	movabsq $0x0303030303030303, %rdx\n	cmpq %rdx, %r12\n	je 1f\n	orl $4, %ecx\n1:\n"
	"	movabsq $0x0404040404040404, %rdx\n	cmpq %rdx, %r13\n	je 1f\n	orl $8, %ecx\n1:\n"
	"	movabsq $0x0505050505050505, %rdx\n	cmpq %rdx, %r14\n	je 1f\n	orl $16, %ecx\n1:\n"
	"	movabsq $0x0606060606060606, %rdx\n	cmpq %rdx, %r15\n	je 1f\n	orl $32, %ecx\n1:\n"
	"	popq %rdx\n	movl %ecx, (%rdx)\n"
	"	popq %r15\n	popq %r14\n	popq %r13\n	popq %r12\n	popq %rbx\n	popq %rbp\n"
	"	ret\n"
	".size keep_call, .-keep_call\n"
	".popsection\n");

/* The rounding-mode bits of MXCSR (13-14) and of the x87 control word
 * (10-11, here shifted to 26-27). */
static unsigned get_fp_mode(void)
{
	unsigned m;
	unsigned short cw;

	__asm__ volatile("stmxcsr %0" : "=m"(m));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	return (m & 0x6000u) | ((unsigned)(cw & 0x0c00u) << 16);
}

static void set_fp_mode(unsigned mode)
{
	unsigned m;
	unsigned short cw;

	__asm__ volatile("stmxcsr %0" : "=m"(m));
	m = (m & ~0x6000u) | (mode & 0x6000u);
	__asm__ volatile("ldmxcsr %0" : : "m"(m));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	cw = (unsigned short)((cw & ~0x0c00u) | ((mode >> 16) & 0x0c00u));
	__asm__ volatile("fldcw %0" : : "m"(cw));
}

#define FP_TOWARD_ZERO (0x6000u | (0x0c00u << 16))
#elif defined(__aarch64__) && AF_SWITCH_ASM
#define HAVE_KEEP_CALL 1
/* x19-x28 and d8-d15 (x29 and x30 stay real: the frame chain and where
 * to return). */
__asm__(".pushsection .text\n"
	".p2align 4\n"
	".type keep_call, %function\n"
	"keep_call:\n"
	"	sub sp, sp, #176\n"
	"	stp x19, x20, [sp, #0]\n	stp x21, x22, [sp, #16]\n"
	"	stp x23, x24, [sp, #32]\n	stp x25, x26, [sp, #48]\n"
	"	stp x27, x28, [sp, #64]\n	stp x29, x30, [sp, #80]\n"
	"	stp d8, d9, [sp, #96]\n	stp d10, d11, [sp, #112]\n"
	"	stp d12, d13, [sp, #128]\n	stp d14, d15, [sp, #144]\n"
	"	str x2, [sp, #160]\n"
	"	mov x9, x0\n	mov x0, x1\n"
	"	mov x19, #19\n	mov x20, #20\n	mov x21, #21\n	mov x22, #22\n"
	"	mov x23, #23\n	mov x24, #24\n	mov x25, #25\n	mov x26, #26\n"
	"	mov x27, #27\n	mov x28, #28\n"
	"	mov x10, #8\n	fmov d8, x10\n	mov x10, #9\n	fmov d9, x10\n"
	"	mov x10, #10\n	fmov d10, x10\n	mov x10, #11\n	fmov d11, x10\n"
	"	mov x10, #12\n	fmov d12, x10\n	mov x10, #13\n	fmov d13, x10\n"
	"	mov x10, #14\n	fmov d14, x10\n	mov x10, #15\n	fmov d15, x10\n"
	"	blr x9\n"
	"	mov w11, #0\n"
	"	cmp x19, #19\n	b.eq 1f\n	orr w11, w11, #1\n1:\n"
	"	cmp x20, #20\n	b.eq 1f\n	orr w11, w11, #2\n1:\n"
	"	cmp x21, #21\n	b.eq 1f\n	orr w11, w11, #4\n1:\n"
	"	cmp x22, #22\n	b.eq 1f\n	orr w11, w11, #8\n1:\n"
	"	cmp x23, #23\n	b.eq 1f\n	orr w11, w11, #16\n1:\n"
	"	cmp x24, #24\n	b.eq 1f\n	orr w11, w11, #32\n1:\n"
	"	cmp x25, #25\n	b.eq 1f\n	orr w11, w11, #64\n1:\n"
	"	cmp x26, #26\n	b.eq 1f\n	orr w11, w11, #128\n1:\n"
	"	cmp x27, #27\n	b.eq 1f\n	orr w11, w11, #256\n1:\n"
	"	cmp x28, #28\n	b.eq 1f\n	orr w11, w11, #512\n1:\n"
	"	fmov x10, d8\n	cmp x10, #8\n	b.eq 1f\n	orr w11, w11, #1024\n1:\n"
	"	fmov x10, d9\n	cmp x10, #9\n	b.eq 1f\n	orr w11, w11, #2048\n1:\n"
	"	fmov x10, d10\n	cmp x10, #10\n	b.eq 1f\n	orr w11, w11, #4096\n1:\n"
	"	fmov x10, d11\n	cmp x10, #11\n	b.eq 1f\n	orr w11, w11, #8192\n1:\n"
	"	fmov x10, d12\n	cmp x10, #12\n	b.eq 1f\n	orr w11, w11, #16384\n1:\n"
	"	fmov x10, d13\n	cmp x10, #13\n	b.eq 1f\n	orr w11, w11, #32768\n1:\n"
	"	fmov x10, d14\n	cmp x10, #14\n	b.eq 1f\n	orr w11, w11, #65536\n1:\n"
	"	fmov x10, d15\n	cmp x10, #15\n	b.eq 1f\n	orr w11, w11, #131072\n1:\n"
	"	ldr x2, [sp, #160]\n	str w11, [x2]\n"
	"	ldp x19, x20, [sp, #0]\n	ldp x21, x22, [sp, #16]\n"
	"	ldp x23, x24, [sp, #32]\n	ldp x25, x26, [sp, #48]\n"
	"	ldp x27, x28, [sp, #64]\n	ldp x29, x30, [sp, #80]\n"
	"	ldp d8, d9, [sp, #96]\n	ldp d10, d11, [sp, #112]\n"
	"	ldp d12, d13, [sp, #128]\n	ldp d14, d15, [sp, #144]\n"
	"	add sp, sp, #176\n"
	"	ret\n"
	".size keep_call, .-keep_call\n"
	".popsection\n");

/* FPCR's rounding mode, RMode (bits 22-23). */
static unsigned get_fp_mode(void)
{
	uint64_t v;

	__asm__ volatile("mrs %0, fpcr" : "=r"(v));
	return (unsigned)(v & (3u << 22));
}

static void set_fp_mode(unsigned mode)
{
	uint64_t v;

	__asm__ volatile("mrs %0, fpcr" : "=r"(v));
	v = (v & ~(uint64_t)(3u << 22)) | mode;
	__asm__ volatile("msr fpcr, %0" : : "r"(v));
}

#define FP_TOWARD_ZERO (3u << 22)
#endif

#if HAVE_KEEP_CALL
/* fn is called with arg whatever its type: void (*)(void) is only how C
 * passes "some function" without a cast it warns about. */
int keep_call(void (*fn)(void), void *arg, unsigned *changed);

struct keep {
	struct af_event ping, pong, open;
	int rounds;
	int partner_mode_wrong;
};

/* The other side, blocking at call sites of its own, in the default
 * rounding mode it was made with. */
static int keep_partner(void *arg)
{
	struct keep *k = arg;

	for (int i = 0; i < k->rounds; i++) {
		if (af_event_wait(&k->ping) != 0)
			return -1;
		k->partner_mode_wrong += get_fp_mode() != 0;
		af_event_clear(&k->ping);
		af_event_set(&k->pong);
		if (af_yield() != 0)
			return -1;
	}
	return 0;
}

static int keep_main(void *arg)
{
	struct keep *k = arg;
	struct af_task *partner;
	unsigned changed = 0, all = 0;
	int r, bad = 0, pr = -1;

	af_event_init(&k->ping);
	af_event_init(&k->pong);
	af_event_init(&k->open);
	af_event_set(&k->open);
	ck_assert_int_eq(af_task_spawn(&partner, keep_partner, k), 0);
	/* The partner was made with the default rounding mode: every switch
	 * between us must bring each its own back. */
	set_fp_mode(FP_TOWARD_ZERO);
	for (int i = 0; i < k->rounds; i++) {
		af_event_set(&k->ping);
		r = keep_call((void (*)(void))af_event_wait, &k->pong, &changed);
		all |= changed;
		bad += r != 0;
		af_event_clear(&k->pong);
		r = keep_call((void (*)(void))af_yield, NULL, &changed);
		all |= changed;
		bad += r != 0;
		r = keep_call((void (*)(void))af_sleep_ns, (void *)(uintptr_t)1000, &changed);
		all |= changed;
		bad += r != 0;
		/* A wait that does not block: the stub's other way back. */
		r = keep_call((void (*)(void))af_event_wait, &k->open, &changed);
		all |= changed;
		bad += r != 0;
		bad += get_fp_mode() != FP_TOWARD_ZERO;
	}
	set_fp_mode(0);
	ck_assert_int_eq(af_task_join(partner, &pr), 0);
	ck_assert_int_eq(pr, 0);
	ck_assert_msg(all == 0, "callee-saved registers changed across a blocking call: mask 0x%x",
		      all);
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(k->partner_mode_wrong, 0);
	return 0;
}

START_TEST(blocking_calls_keep_the_callers_callee_saved_registers_and_rounding_mode)
{
	struct keep k = { .rounds = 200 };

	ck_assert_int_eq(run_main(keep_main, &k), 0);
}
END_TEST
#endif

static Suite *make_suite(void)
{
	Suite *s = suite_create("task");
	TCase *tc;

	tc = tcase_create("run");
	tcase_add_test(tc, a_spawned_task_does_not_run_until_its_creator_yields_or_blocks);
	tcase_add_test(tc, yield_lets_every_runnable_task_run_once_then_continues);
	suite_add_tcase(s, tc);

	tc = tcase_create("join");
	tcase_add_test(tc, join_waits_for_the_result_and_frees_the_task);
	tcase_add_test(tc, join_of_a_finished_task_returns_its_result);
	tcase_add_test(tc, a_second_joiner_is_refused_with_ebusy);
	tcase_add_test(tc, joining_itself_is_refused_with_edeadlk);
	tcase_add_test(tc, joining_a_detached_task_is_refused_with_einval);
	tcase_add_test(tc, a_cancelled_join_returns_ecanceled_and_the_handle_stays_joinable);
	tcase_add_test(tc, a_join_cancelled_after_the_target_ended_but_before_resuming_stays_joinable);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancel");
	tcase_add_test(tc, a_task_cancelled_before_it_first_ran_runs_no_code_and_ends_with_ecanceled);
	tcase_add_test(tc, a_task_cancelled_by_a_sibling_queued_just_ahead_of_it_runs_no_code);
	tcase_add_test(tc, cancel_makes_the_current_blocking_call_return_ecanceled_once);
	tcase_add_test(tc, cancel_interrupts_a_sleep_and_the_next_sleep_works);
	tcase_add_test(tc, self_cancel_makes_the_next_blocking_call_return_ecanceled);
	tcase_add_test(tc, cancel_of_a_finished_task_is_refused_with_ealready);
	suite_add_tcase(s, tc);

	tc = tcase_create("join-timeout");
	tcase_add_test(tc, join_timeout_cancels_the_task_waits_for_its_cleanup_and_returns_etimedout);
	tcase_add_test(tc, join_timeout_returns_the_result_when_the_task_ends_in_time);
	suite_add_tcase(s, tc);

	tc = tcase_create("identity");
	tcase_add_test(tc, af_task_current_and_af_task_name_identify_tasks);
	tcase_add_test(tc, spawn_opts_sets_name_and_stack_size_and_refuses_stacks_below_16_kib);
	suite_add_tcase(s, tc);

	tc = tcase_create("sleep");
	tcase_add_test(tc, sleep_lasts_at_least_the_time_asked);
	suite_add_tcase(s, tc);

#if HAVE_KEEP_CALL
	tc = tcase_create("registers");
	tcase_add_test(tc, blocking_calls_keep_the_callers_callee_saved_registers_and_rounding_mode);
	suite_add_tcase(s, tc);
#endif

	tc = tcase_create("many");
	tcase_add_test(tc, ten_thousand_tasks_are_spawned_and_joined_reusing_stacks);
	suite_add_tcase(s, tc);

	tc = tcase_create("loop-end");
	tcase_add_test(tc, af_run_returns_the_result_of_main);
	tcase_add_test(tc, when_main_returns_remaining_tasks_are_cancelled_and_waited_for);
	tcase_add_test(tc, a_main_waiting_on_an_event_nothing_can_set_is_a_deadlock);
	suite_add_tcase(s, tc);

	tc = tcase_create("regressions");
	tcase_add_test(tc, main_returning_before_its_detached_tasks_ran_ends_them_without_running_them);
	tcase_add_test(tc, the_main_task_cannot_be_detached_or_joined);
	tcase_add_test(tc, tasks_spawned_while_the_loop_winds_down_are_cancelled_too);
	tcase_add_test(tc, a_second_deadlock_after_progress_is_cancelled_again_not_abandoned);
	tcase_add_test(tc, tasks_that_block_on_nothing_again_after_the_deadlock_cancel_are_abandoned);
	tcase_add_test(tc, a_task_created_after_a_deadlock_is_cancelled_at_the_next_one_not_abandoned);
	tcase_add_test(tc, stack_sizes_above_one_gib_are_refused_instead_of_wrapping);
	suite_add_tcase(s, tc);

	tc = tcase_create("out-of-memory");
	tcase_add_test(tc, a_task_whose_stack_cannot_be_mapped_fails_to_spawn_with_enomem);
	tcase_add_uring_test(tc, af_loop_new_reports_enomem_when_the_ring_cannot_be_mapped,
			     "an epoll loop maps no ring");
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, spawning_outside_a_loop_is_refused_with_eperm);
	tcase_add_test(tc, yield_and_sleep_outside_a_task_are_refused_with_eperm);
	tcase_add_test(tc, null_task_handles_are_refused_with_einval);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
