/* SPDX-License-Identifier: MIT */
/* The loop: creation and options, ring features, who may run it and when,
 * several loops on several threads, and io_uring refused by seccomp. */
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "syscall.h"
#define AF_TESTUTIL_SUBMIT_HOOK
#include "testutil.h"
#include "loopstate.h"

#define KiB ((size_t)1024)

static struct af_loop *const not_written = (struct af_loop *)(uintptr_t)0x5a5a;

static int return_arg(void *arg)
{
	return (int)(intptr_t)arg;
}

/* ---- creation ----------------------------------------------------------------------- */

static int stack_size_of_a_task(void *arg)
{
	*(size_t *)arg = af_task_current()->stack.size;
	return 0;
}

static int spawn_and_measure(void *arg)
{
	struct af_task *t;

	ck_assert_int_eq(af_task_spawn(&t, stack_size_of_a_task, arg), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(new_with_null_options_gives_the_defaults)
{
	struct af_loop *loop = not_written;
	size_t stack = 0;
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_ptr_ne(loop, not_written);
	ck_assert_uint_eq(loop->ring_entries, 256);
	if (!on_epoll())
		ck_assert_uint_eq(loop->ring.sq.ring_entries, 256);
	ck_assert_uint_eq(loop->stacks.cap, 64);
	ck_assert_uint_eq(loop->stack_size, 256 * KiB);
	ck_assert_int_eq(af_loop_run(loop, spawn_and_measure, &stack, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_uint_eq(stack, 256 * KiB);
	af_loop_free(loop);
}
END_TEST

START_TEST(new_with_options_uses_them)
{
	struct af_loop *loop;
	struct af_loop_opts opts = { .ring_entries = 100, .stack_size = 20000, .stack_cache = 3 };
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t stack = 0;
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, &opts), 0);
	/* The kernel rounds the ring up to a power of two. */
	if (!on_epoll())
		ck_assert_uint_eq(loop->ring.sq.ring_entries, 128);
	ck_assert_uint_eq(loop->stacks.cap, 3);
	ck_assert_int_eq(af_loop_run(loop, spawn_and_measure, &stack, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_uint_eq(stack, (20000 + page - 1) / page * page);
	af_loop_free(loop);
}
END_TEST

START_TEST(options_at_their_limits_are_accepted)
{
	struct af_loop *loop;
	struct af_loop_opts opts = { .ring_entries = 32768, .stack_size = 16 * KiB,
				     .stack_cache = 4096 };

	ck_assert_int_eq(af_loop_new(&loop, &opts), 0);
	ck_assert_uint_eq(loop->stack_size, 16 * KiB);
	af_loop_free(loop);
}
END_TEST

static void assert_refused(const struct af_loop_opts *opts, const char *what)
{
	struct af_loop *loop = not_written;
	int r = af_loop_new(&loop, opts);

	ck_assert_msg(r == -EINVAL, "%s: af_loop_new returned %d", what, r);
	ck_assert_msg(loop == not_written, "%s: the out pointer was written", what);
}

START_TEST(out_of_range_options_fail_with_einval)
{
	assert_refused(&(struct af_loop_opts){ .ring_entries = 32769 }, "ring_entries 32769");
	assert_refused(&(struct af_loop_opts){ .ring_entries = UINT32_MAX }, "ring_entries max");
	assert_refused(&(struct af_loop_opts){ .stack_size = 16 * KiB - 1 }, "stack_size 16 KiB - 1");
	assert_refused(&(struct af_loop_opts){ .stack_size = 1 }, "stack_size 1");
	assert_refused(&(struct af_loop_opts){ .flags = 1u << 3 }, "flags bit 3");
	assert_refused(&(struct af_loop_opts){ .flags = AF_LOOP_BACKEND_IO_URING |
							AF_LOOP_BACKEND_EPOLL },
		       "both backends");
	assert_refused(&(struct af_loop_opts){ .stack_cache = 4097 }, "stack_cache 4097");
	assert_refused(&(struct af_loop_opts){ .stack_cache = UINT32_MAX }, "stack_cache max");
	assert_refused(&(struct af_loop_opts){ .flags = AF_LOOP_BASIC_RING | (1u << 31) },
		       "flags bit 31");
	assert_refused(&(struct af_loop_opts){ .spin_ns = AF_LOOP_SPIN_MAX_NS + 1 },
		       "spin_ns 1 s + 1");
	for (size_t i = 0; i < sizeof(((struct af_loop_opts *)0)->_reserved) / sizeof(uint64_t);
	     i++) {
		struct af_loop_opts opts = { 0 };

		opts._reserved[i] = 1;
		assert_refused(&opts, "a reserved field");
	}
	ck_assert_int_eq(af_loop_new(NULL, NULL), -EINVAL);
	ck_assert_int_eq(af_loop_new(NULL, &(struct af_loop_opts){ 0 }), -EINVAL);
}
END_TEST

START_TEST(free_and_features_accept_null)
{
	af_loop_free(NULL);
	ck_assert_uint_eq(af_loop_features(NULL), 0);
}
END_TEST

/* ---- features ----------------------------------------------------------------------- */

#define RING_BITS (AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER | AF_FEATURE_DEFER_TASKRUN)

/* A small program touching every wake-up path: a timer, a flag set by
 * another thread, an Event between tasks. */
struct scenario {
	struct af_flag flag;
	struct af_event ev;
	struct trace tr;
	pthread_t th;
};

static void *scenario_setter(void *arg)
{
	struct scenario *s = arg;

	sleep_ms(20);
	af_flag_set(&s->flag);
	return NULL;
}

static int scenario_flag_waiter(void *arg)
{
	struct scenario *s = arg;
	int r = af_flag_wait_timeout(&s->flag, LONG_NS);

	trace_add(&s->tr, r == 0 ? "flag" : "flag-failed");
	af_event_set(&s->ev);
	return r;
}

static int scenario_event_waiter(void *arg)
{
	struct scenario *s = arg;
	int r = af_event_wait_timeout(&s->ev, LONG_NS);

	trace_add(&s->tr, r == 0 ? "event" : "event-failed");
	return r;
}

static int scenario_main(void *arg)
{
	struct scenario *s = arg;
	struct af_task *a, *b;
	int ra = 1, rb = 1;

	ck_assert_int_eq(af_flag_init(&s->flag, NULL), 0);
	af_event_init(&s->ev);
	ck_assert_int_eq(af_task_spawn(&a, scenario_flag_waiter, s), 0);
	ck_assert_int_eq(af_task_spawn(&b, scenario_event_waiter, s), 0);
	ck_assert_int_eq(af_sleep_ms(1), 0);
	trace_add(&s->tr, "slept");
	ck_assert_int_eq(pthread_create(&s->th, NULL, scenario_setter, s), 0);
	ck_assert_int_eq(af_task_join(a, &ra), 0);
	ck_assert_int_eq(af_task_join(b, &rb), 0);
	ck_assert_int_eq(pthread_join(s->th, NULL), 0);
	ck_assert_int_eq(ra, 0);
	ck_assert_int_eq(rb, 0);
	af_flag_destroy(&s->flag);
	return 0;
}

START_TEST(a_basic_ring_has_no_optional_setup_flags_and_still_runs_everything)
{
	struct af_loop *loop;
	struct af_loop_opts opts = { .flags = AF_LOOP_BASIC_RING };
	struct scenario s = { .tr = { .len = 0 } };
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, &opts), 0);
	ck_assert_uint_eq(af_loop_features(loop) & RING_BITS, 0);
	ck_assert_int_eq(af_loop_run(loop, scenario_main, &s, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_str_eq(s.tr.buf, "slept flag event");
	af_loop_free(loop);
}
END_TEST

START_TEST(a_default_loop_uses_every_setup_flag_the_kernel_accepts)
{
	struct io_uring ring;
	struct io_uring_params p;
	struct af_loop *loop;
	struct scenario s = { .tr = { .len = 0 } };
	int result = 1;
	bool kernel_has_all;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN;
	kernel_has_all = io_uring_queue_init_params(8, &ring, &p) == 0;
	if (kernel_has_all)
		io_uring_queue_exit(&ring);

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	/* Sleeping in ppoll (TSan, valgrind) needs completions posted without
	 * entering io_uring, so that mode asks for a plain ring on purpose. */
	if (loop->ppoll_mode)
		ck_assert_uint_eq(af_loop_features(loop) & RING_BITS, 0);
	else if (kernel_has_all)
		ck_assert_uint_eq(af_loop_features(loop) & RING_BITS, RING_BITS);
	/* DEFER_TASKRUN cannot come without SINGLE_ISSUER. */
	if (af_loop_features(loop) & AF_FEATURE_DEFER_TASKRUN)
		ck_assert(af_loop_features(loop) & AF_FEATURE_SINGLE_ISSUER);
	/* Whatever it got, it works. */
	ck_assert_int_eq(af_loop_run(loop, scenario_main, &s, &result), 0);
	ck_assert_str_eq(s.tr.buf, "slept flag event");
	af_loop_free(loop);
}
END_TEST

START_TEST(features_report_the_assembly_switch_exactly_when_it_is_built)
{
	struct af_loop *loop;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
#if AF_SWITCH_ASM
	ck_assert_uint_eq(af_loop_features(loop) & AF_FEATURE_ASM_SWITCH, AF_FEATURE_ASM_SWITCH);
#else
	ck_assert_uint_eq(af_loop_features(loop) & AF_FEATURE_ASM_SWITCH, 0);
#endif
	af_loop_free(loop);
}
END_TEST

/* ---- running ------------------------------------------------------------------------ */

START_TEST(run_with_a_null_loop_or_main_fails_with_einval)
{
	struct af_loop *loop;
	int result = 12345;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(NULL, return_arg, NULL, &result), -EINVAL);
	ck_assert_int_eq(af_loop_run(loop, NULL, NULL, &result), -EINVAL);
	ck_assert_int_eq(result, 12345);
	/* The refused calls did not bind the loop to anything. */
	ck_assert_uint_eq(atomic_load(&loop->owner), 0);
	/* A NULL result pointer is fine. */
	ck_assert_int_eq(af_loop_run(loop, return_arg, (void *)3, NULL), 0);
	af_loop_free(loop);
}
END_TEST

struct nested {
	struct af_loop *other;
	int same, other_r;
};

static int nested_main(void *arg)
{
	struct nested *n = arg;
	int result = 777;

	n->same = af_loop_run(af_loop_current(), return_arg, NULL, &result);
	n->other_r = af_loop_run(n->other, return_arg, NULL, &result);
	ck_assert_int_eq(result, 777);
	return 0;
}

START_TEST(running_a_loop_from_one_of_its_tasks_fails_with_ebusy_and_another_loop_with_eperm)
{
	struct nested n = { .same = 1, .other_r = 1 };
	int result = 1;

	ck_assert_int_eq(af_loop_new(&n.other, NULL), 0);
	ck_assert_int_eq(run_main(nested_main, &n), 0);
	ck_assert_int_eq(n.same, -EBUSY);
	ck_assert_int_eq(n.other_r, -EPERM);
	/* The refused call left the other loop free to run here. */
	ck_assert_uint_eq(atomic_load(&n.other->owner), 0);
	ck_assert_int_eq(af_loop_run(n.other, return_arg, (void *)5, &result), 0);
	ck_assert_int_eq(result, 5);
	af_loop_free(n.other);
}
END_TEST

struct second_thread {
	struct af_loop *loop;
	int r, result;
};

static void *run_on_thread(void *arg)
{
	struct second_thread *st = arg;

	st->r = af_loop_run(st->loop, return_arg, (void *)9, &st->result);
	return NULL;
}

static int run_elsewhere_meanwhile(void *arg)
{
	pthread_t th;

	/* Blocking the loop thread in pthread_join is fine: the other
	 * thread needs nothing from this loop. */
	ck_assert_int_eq(pthread_create(&th, NULL, run_on_thread, arg), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	return 0;
}

START_TEST(a_loop_runs_only_on_the_thread_that_ran_it_first)
{
	struct second_thread st = { .r = 1, .result = 1 };
	pthread_t th;
	int result = 1;

	ck_assert_int_eq(af_loop_new(&st.loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(st.loop, return_arg, (void *)1, &result), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, run_on_thread, &st), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(st.r, -EPERM);
	ck_assert_int_eq(st.result, 1);
	af_loop_free(st.loop);

	/* Nor while it runs here. */
	st.r = st.result = 1;
	ck_assert_int_eq(af_loop_new(&st.loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(st.loop, run_elsewhere_meanwhile, &st, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(st.r, -EPERM);
	ck_assert_int_eq(st.result, 1);
	af_loop_free(st.loop);

	/* The other way round: first run on a thread, then here. */
	st.r = st.result = 1;
	ck_assert_int_eq(af_loop_new(&st.loop, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, run_on_thread, &st), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(st.r, 0);
	ck_assert_int_eq(st.result, 9);
	ck_assert_int_eq(af_loop_run(st.loop, return_arg, (void *)1, &result), -EPERM);
	af_loop_free(st.loop);
}
END_TEST

static int sleeper(void *arg)
{
	int *seen = arg;

	*seen = af_sleep_ms(60 * 1000);
	return *seen;
}

static int twice_main(void *arg)
{
	int *seen = arg;

	ck_assert_ptr_eq(af_loop_current(), af__loop_here());
	/* Left sleeping: the loop cancels it when main returns. */
	ck_assert_int_eq(af_task_spawn(NULL, sleeper, seen), 0);
	ck_assert_int_eq(af_yield(), 0);
	return 41;
}

START_TEST(a_loop_can_run_again_after_a_run_returned)
{
	struct af_loop *loop;
	int result = 0, seen1 = 0, seen2 = 0;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, twice_main, &seen1, &result), 0);
	ck_assert_int_eq(result, 41);
	ck_assert_int_eq(seen1, -ECANCELED);
	ck_assert_int_eq(af_loop_run(loop, twice_main, &seen2, &result), 0);
	ck_assert_int_eq(result, 41);
	ck_assert_int_eq(seen2, -ECANCELED);
	ck_assert_uint_eq(loop->nalive, 0);
	af_loop_free(loop);
}
END_TEST

#define NTHREADS 4

struct together {
	pthread_barrier_t barrier;
	struct af_loop *loops[NTHREADS];
	pthread_t th[NTHREADS];
	int r[NTHREADS], result[NTHREADS];
	struct af_loop *seen[NTHREADS];
};

struct together_arg {
	struct together *t;
	int id;
};

static int ping(void *arg)
{
	struct af_event *evs = arg;
	int r = af_event_wait_timeout(&evs[0], LONG_NS);

	af_event_set(&evs[1]);
	return r;
}

static int together_main(void *arg)
{
	struct together_arg *a = arg;
	struct af_event evs[2];
	struct af_task *t;
	int res = 1, b;

	a->t->seen[a->id] = af_loop_current();
	/* Every loop's main is running at this point, or this never returns
	 * (the test's timeout catches that). */
	b = pthread_barrier_wait(&a->t->barrier);
	ck_assert(b == 0 || b == PTHREAD_BARRIER_SERIAL_THREAD);
	af_event_init(&evs[0]);
	af_event_init(&evs[1]);
	ck_assert_int_eq(af_task_spawn(&t, ping, evs), 0);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	af_event_set(&evs[0]);
	ck_assert_int_eq(af_event_wait_timeout(&evs[1], LONG_NS), 0);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, 0);
	return 100 + a->id;
}

static void *together_thread(void *arg)
{
	struct together_arg *a = arg;

	a->t->r[a->id] = af_loop_run(a->t->loops[a->id], together_main, a, &a->t->result[a->id]);
	return NULL;
}

START_TEST(loops_on_several_threads_run_at_the_same_time)
{
	struct together t;
	struct together_arg args[NTHREADS];

	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(pthread_barrier_init(&t.barrier, NULL, NTHREADS), 0);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(af_loop_new(&t.loops[i], NULL), 0);
	for (int i = 0; i < NTHREADS; i++) {
		args[i] = (struct together_arg){ &t, i };
		ck_assert_int_eq(pthread_create(&t.th[i], NULL, together_thread, &args[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_join(t.th[i], NULL), 0);
	for (int i = 0; i < NTHREADS; i++) {
		ck_assert_int_eq(t.r[i], 0);
		ck_assert_int_eq(t.result[i], 100 + i);
		ck_assert_ptr_eq(t.seen[i], t.loops[i]);
		af_loop_free(t.loops[i]);
	}
	pthread_barrier_destroy(&t.barrier);
}
END_TEST

struct current {
	struct af_loop *in_main, *in_task, *in_thread;
};

static void *current_on_thread(void *arg)
{
	((struct current *)arg)->in_thread = af_loop_current();
	return NULL;
}

static int current_task(void *arg)
{
	((struct current *)arg)->in_task = af_loop_current();
	return 0;
}

static int current_main(void *arg)
{
	struct current *c = arg;
	struct af_task *t;
	pthread_t th;

	c->in_main = af_loop_current();
	ck_assert_int_eq(af_task_spawn(&t, current_task, c), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, current_on_thread, c), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	return 0;
}

START_TEST(current_is_the_running_loop_inside_its_tasks_and_null_elsewhere)
{
	struct af_loop *loop;
	struct current c = { .in_thread = not_written };
	int result = 1;

	ck_assert_ptr_eq(af_loop_current(), NULL);
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_ptr_eq(af_loop_current(), NULL);
	ck_assert_int_eq(af_loop_run(loop, current_main, &c, &result), 0);
	ck_assert_ptr_eq(c.in_main, loop);
	ck_assert_ptr_eq(c.in_task, loop);
	ck_assert_ptr_eq(c.in_thread, NULL);
	ck_assert_ptr_eq(af_loop_current(), NULL);
	af_loop_free(loop);
}
END_TEST

static struct af_loop *volatile loop_in_handler;

static void note_current_loop(int signo)
{
	(void)signo;
	loop_in_handler = af_loop_current();
}

static int raise_in_task(void *arg)
{
	(void)arg;
	return raise(SIGUSR2);
}

START_TEST(current_can_be_read_from_a_signal_handler_on_the_loop_thread)
{
	struct af_loop *loop;
	struct sigaction sa, old;
	int result = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = note_current_loop;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, &old), 0);
	loop_in_handler = not_written;
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, raise_in_task, NULL, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_ptr_eq(loop_in_handler, loop);
	ck_assert_int_eq(raise(SIGUSR2), 0);
	ck_assert_ptr_eq(loop_in_handler, NULL);
	ck_assert_int_eq(sigaction(SIGUSR2, &old, NULL), 0);
	af_loop_free(loop);
}
END_TEST

START_TEST(af_run_returns_the_result_of_main)
{
	ck_assert_int_eq(af_run(return_arg, (void *)42), 42);
	ck_assert_int_eq(af_run(return_arg, (void *)-7), -7);
	ck_assert_int_eq(af_run(return_arg, NULL), 0);
	ck_assert_int_eq(af_run(NULL, NULL), -EINVAL);
}
END_TEST

struct leftover {
	int sleeper_r;
	bool sleeper_ended;
};

static int leftover_sleeper(void *arg)
{
	struct leftover *l = arg;

	l->sleeper_r = af_sleep_ms(60 * 1000);
	/* It may still block while unwinding; the loop waits for it. */
	ck_assert_int_eq(af_sleep_ms(1), 0);
	l->sleeper_ended = true;
	return 0;
}

static int leftover_main(void *arg)
{
	ck_assert_int_eq(af_task_spawn(NULL, leftover_sleeper, arg), 0);
	ck_assert_int_eq(af_yield(), 0);
	return 3;
}

START_TEST(when_main_returns_the_remaining_tasks_are_cancelled_and_run_to_their_end)
{
	struct af_loop *loop;
	struct leftover l = { .sleeper_r = 1 };
	int result = 0;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, leftover_main, &l, &result), 0);
	ck_assert_int_eq(result, 3);
	ck_assert_int_eq(l.sleeper_r, -ECANCELED);
	ck_assert(l.sleeper_ended);
	af_loop_free(loop);
}
END_TEST

static int deadlock_main(void *arg)
{
	struct af_event ev = AF_EVENT_INIT;

	(void)arg;
	return af_event_wait(&ev);
}

START_TEST(a_loop_where_nothing_can_wake_any_task_reports_edeadlk)
{
	struct af_loop *loop;
	int result = 0;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, deadlock_main, NULL, &result), -EDEADLK);
	/* main was cancelled so it could unwind; its result is still filled in. */
	ck_assert_int_eq(result, -ECANCELED);
	af_loop_free(loop);
}
END_TEST

static int free_running_main(void *arg)
{
	(void)arg;
	af_loop_free(af_loop_current());
	/* Still here, still working. */
	ck_assert_int_eq(af_sleep_ms(1), 0);
	return 8;
}

START_TEST(freeing_a_running_loop_is_refused)
{
	ck_assert_int_eq(run_main(free_running_main, NULL), 8);
}
END_TEST

/* ---- io_uring refused ------------------------------------------------------------ */

#ifdef THIS_AUDIT_ARCH
/* What a container runtime's profile does: io_uring_setup fails with @err. */
static int refuse_io_uring_setup(int err)
{
	struct sock_filter filter[] = {
		SECCOMP_BY_NR,
		SECCOMP_REFUSE(__NR_io_uring_setup, err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	return seccomp_install(&prog);
}

static int count_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

struct refused {
	int filter_r;
	int new_r;
	unsigned features;
	int run_r;
	int forced_r;
	int fds_before, fds_after;
	bool out_untouched;
};

static void refused_child(void *arg, void *out)
{
	struct refused *r = out;
	int err = (int)(intptr_t)arg;
	struct af_loop *loop = not_written;

	r->filter_r = refuse_io_uring_setup(err);
	r->new_r = af_loop_new(&loop, NULL);
	r->features = af_loop_features(loop);
	af_loop_free(loop);
	r->run_r = af_run(return_arg, (void *)1);
	loop = not_written;
	r->fds_before = count_fds();
	r->forced_r = af_loop_new(&loop, &(struct af_loop_opts){
						.flags = AF_LOOP_BACKEND_IO_URING });
	r->out_untouched = loop == not_written;
	r->fds_after = count_fds();
}

static void run_refused(int err, struct refused *out)
{
	in_child_report(refused_child, (void *)(intptr_t)err, out, sizeof(*out));
	ck_assert_msg(out->filter_r == 0, "could not install the seccomp filter: %d", out->filter_r);
}
#endif

/* A filter that refuses io_uring_setup with @err: the default loop falls
 * back to epoll and runs; only a loop that insists on io_uring fails, with
 * the filter's errno, leaving the out pointer and the descriptor table as
 * they were. */
static void assert_refused_io_uring(int err)
{
#ifdef THIS_AUDIT_ARCH
	struct refused r;

	run_refused(err, &r);
	ck_assert_int_eq(r.new_r, 0);
	ck_assert_uint_eq(r.features & (AF_FEATURE_BACKEND_EPOLL | AF_FEATURE_BACKEND_IO_URING),
			  AF_FEATURE_BACKEND_EPOLL);
	ck_assert_int_eq(r.run_r, 1);
	ck_assert_int_eq(r.forced_r, -err);
	ck_assert(r.out_untouched);
	ck_assert_int_eq(r.fds_after, r.fds_before);
#else
	(void)err;
	ck_abort_msg("no seccomp audit arch known for this machine");
#endif
}

START_TEST(with_io_uring_setup_refused_with_enosys_a_loop_runs_on_epoll_and_io_uring_only_gives_enosys)
{
	assert_refused_io_uring(ENOSYS);
	ck_assert_ptr_nonnull(strstr(af_strerror(-ENOSYS), "seccomp"));
}
END_TEST

START_TEST(with_io_uring_setup_refused_with_eperm_a_loop_runs_on_epoll_and_io_uring_only_gives_eperm)
{
	assert_refused_io_uring(EPERM);
	ck_assert_ptr_nonnull(strstr(af_strerror(-EPERM), "seccomp"));
	ck_assert_ptr_nonnull(strstr(af_strerror(EPERM), "io_uring"));
}
END_TEST

/* ---- fault injection: the kernel pushes back on a submit --------------------- */

static struct af_flag busy_flag;

static void *set_busy_flag_later(void *arg)
{
	(void)arg;
	sleep_ms(100);
	af_flag_set(&busy_flag);
	return NULL;
}

static int flush_reaps_eventfd_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	uint64_t one = 1;
	pthread_t th;

	(void)arg;
	ck_assert_int_eq(af_flag_init(&busy_flag, loop), 0);
	ck_assert_int_eq(af_sleep_ms(1), 0); /* the eventfd read is in the kernel */
	/* Complete that read, then have a flush (as a full submission queue
	 * would) meet -EBUSY: it reaps, and so consumes the read. */
	ck_assert_int_eq(write(loop->efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	submit_busy = 1;
	af__loop_flush(loop);
	/* The loop must not go to sleep deaf to the eventfd. */
	ck_assert_int_eq(pthread_create(&th, NULL, set_busy_flag_later, NULL), 0);
	/* No timeout of our own: its expiry would wake a deaf loop and hide
	 * the bug. A hang ends at the test case's timeout instead. */
	ck_assert_int_eq(af_flag_wait(&busy_flag), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	af_flag_destroy(&busy_flag);
	return 0;
}

START_TEST(a_flush_that_reaps_the_eventfd_read_leaves_the_loop_able_to_wake)
{
	/* The eventfd's request is what the flush reaps: keep it on 6.7+. */
	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	ck_assert_int_eq(run_main(flush_reaps_eventfd_main, NULL), 0);
	unsetenv("AF_WAKE");
}
END_TEST

/* ---- lifetime: a kick in flight while the loop is freed -------------------- */

static struct {
	struct af_loop *_Atomic loop;
	sem_t reached, go;
	struct af_flag flag;
} kick;

static void stall_kick(enum af__hook_point where, void *obj)
{
	struct timespec ts;

	if (where != AF_HOOK_KICK_WRITE || obj != atomic_load(&kick.loop))
		return;
	atomic_store(&kick.loop, NULL);
	sem_post(&kick.reached);
	/* Bounded: a fixed af_loop_free() waits for this kick. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 500 * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	while (sem_timedwait(&kick.go, &ts) < 0 && errno == EINTR)
		;
}

static void *set_kick_flag(void *arg)
{
	struct af_loop *loop = arg;

	/* Set while the loop sleeps, so that this kick wins the write. */
	wait_until_a_set_must_kick(loop, &kick.flag);
	af_flag_set(&kick.flag);
	return NULL;
}

/* Wakes the loop some other way while the kick is stalled, as a timer or
 * a completion would, so that the loop runs to its end meanwhile. */
static void *wake_otherwise(void *arg)
{
	struct af_loop *loop = arg;
	uint64_t one = 1;

	while (sem_wait(&kick.reached) < 0)
		;
	ck_assert_int_eq(write(loop->efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	return NULL;
}

static int stalled_kick_main(void *arg)
{
	pthread_t *th = arg;
	struct af_loop *loop = af_loop_current();

	ck_assert_int_eq(pthread_create(&th[0], NULL, set_kick_flag, loop), 0);
	ck_assert_int_eq(pthread_create(&th[1], NULL, wake_otherwise, loop), 0);
	ck_assert_int_eq(af_flag_wait(&kick.flag), 0);
	ck_assert_int_eq(pthread_join(th[1], NULL), 0);
	return 0;
}

START_TEST(a_loop_freed_while_a_kick_is_in_flight_never_writes_a_descriptor_it_closed)
{
	struct af_loop *loop;
	pthread_t th[2];
	int efd, p[2], result = -1;
	char buf[8];

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_flag_init(&kick.flag, loop), 0);
	ck_assert_int_eq(sem_init(&kick.reached, 0, 0), 0);
	ck_assert_int_eq(sem_init(&kick.go, 0, 0), 0);
	atomic_store(&kick.loop, loop);
	atomic_store(&af__test_hook, stall_kick);
	/* wake_otherwise() writes the eventfd: keep the loop watching it
	 * (on 6.7+ it would sleep on a futex wait instead). */
	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	ck_assert_int_eq(af_loop_run(loop, stalled_kick_main, th, &result), 0);
	unsetenv("AF_WAKE");
	ck_assert_int_eq(result, 0);
	efd = loop->efd;
	ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	/* The flag is still live: reported in debug builds, and harmless. */
	af_loop_free(loop);
	/* Another file takes the eventfd's number, as open() would. */
	ck_assert_int_eq(dup2(p[1], efd), efd);
	sem_post(&kick.go);
	ck_assert_int_eq(pthread_join(th[0], NULL), 0);
	atomic_store(&af__test_hook, NULL);
	/* Before the fix the kick wrote its 8 bytes into the pipe. */
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	af_flag_destroy(&kick.flag);
	close(efd);
	close(p[0]);
	close(p[1]);
	sem_destroy(&kick.reached);
	sem_destroy(&kick.go);
}
END_TEST

/* ---- fork() from a task -------------------------------------------------- */

/* In the child: what the calls on the inherited loop returned, or 100 +
 * the step that went wrong, as its exit status. */
static int child_status(struct af_loop *loop, int run_result)
{
	int result = 0;

	if (run_result != -ECHILD)
		return 101;
	if (af_sleep_ms(1) != -EPERM) /* no task runs here any more */
		return 102;
	if (af_loop_run(loop, return_arg, NULL, &result) != -ECHILD)
		return 103;
	af_loop_free(loop);
	return 0;
}

/* TSan cannot follow a fork() made on a coroutine's stack: it reports
 * races in the child that are its own lost fiber state. There every child
 * execs at once. */
#if AF_TSAN
static const bool under_tsan = true;
#else
static const bool under_tsan = false;
#endif

struct forks {
	pid_t parent;
	int rounds, children_ok;
	int step_in_child;
};

static int fork_main(void *arg)
{
	struct forks *fk = arg;

	for (int i = 0; i < fk->rounds; i++) {
		int st;
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			if (i % 2 || under_tsan)
				execl("/bin/true", "true", (char *)NULL);
			/* The natural thing: carry on as the task, call
			 * into the loop, return through af_loop_run(). */
			fk->step_in_child = af_sleep_ms(1);
			return 7;
		}
		/* The parent keeps using its loop: timers and the ring. */
		while (waitpid(pid, &st, WNOHANG) == 0)
			ck_assert_int_eq(af_sleep_ms(1), 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			fk->children_ok++;
	}
	return 0;
}

START_TEST(after_twenty_forks_in_a_task_the_parent_loop_runs_on_and_children_get_echild)
{
	struct af_loop *loop;
	struct forks fk = { .parent = getpid(), .rounds = 20 };
	int result = -1, r;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	r = af_loop_run(loop, fork_main, &fk, &result);
	if (getpid() != fk.parent) {
		/* The child: its task saw -ECHILD, then returned 7. */
		if (fk.step_in_child != -ECHILD)
			_exit(104);
		if (result != 7)
			_exit(105);
		_exit(child_status(loop, r));
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(fk.children_ok, 20);
	af_loop_free(loop);
}
END_TEST

/* ---- parking: with nothing in flight, a bare FUTEX_WAIT ---------------------- */

static struct {
	char *park, *wake;       /* the environment as the test found it */
} park_env;

static void park_env_set(const char *park)
{
	const char *p = getenv("AF_PARK"), *w = getenv("AF_WAKE");

	park_env.park = p ? strdup(p) : NULL;
	park_env.wake = w ? strdup(w) : NULL;
	/* The ring setup runs every suite with AF_PARK=0: these tests say
	 * what they need themselves. */
	ck_assert_int_eq(setenv("AF_PARK", park, 1), 0);
	ck_assert_int_eq(unsetenv("AF_WAKE"), 0);
}

static void park_env_restore(void)
{
	if (park_env.park)
		setenv("AF_PARK", park_env.park, 1);
	else
		unsetenv("AF_PARK");
	if (park_env.wake)
		setenv("AF_WAKE", park_env.wake, 1);
	free(park_env.park);
	free(park_env.wake);
	memset(&park_env, 0, sizeof(park_env));
	atomic_store(&af__test_hook, NULL);
}

struct parking {
	struct af_loop *loop;
	pthread_t loop_thread;
	struct af_flag flag, other;
	_Atomic unsigned seen;   /* sleep_state as the helper thread found it */
	_Atomic unsigned seen_again; /* ... at a second sleep, where there is one */
	bool efd_armed;          /* the loop's eventfd request, after the wait */
	int pipe[2];
	_Atomic int signals;
	sem_t stalled, go;
};

static void *set_when_asleep(void *arg)
{
	struct parking *c = arg;

	atomic_store(&c->seen, wait_asleep_with(c->loop, 0));
	af_flag_set(&c->flag);
	return NULL;
}

/* Wait on @f, made here, while @helper, on a thread of its own, ends the
 * sleeps and sets it. The caller destroys @f. */
static void wait_on_with_helper(struct parking *c, struct af_flag *f, void *(*helper)(void *))
{
	pthread_t th;

	c->loop = af_loop_current();
	c->loop_thread = pthread_self();
	ck_assert_int_eq(af_flag_init(f, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, helper, c), 0);
	/* No timeout: a timer would end the sleep and hide a lost wake-up,
	 * which hangs the test instead (Check's timeout fails it). */
	ck_assert_int_eq(af_flag_wait(f), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
}

/* The same on c->flag. */
static int wait_with_helper(struct parking *c, void *(*helper)(void *))
{
	wait_on_with_helper(c, &c->flag, helper);
	af_flag_destroy(&c->flag);
	return 0;
}

static int wait_for_a_set_main(void *arg)
{
	return wait_with_helper(arg, set_when_asleep);
}

/* Run @fn as main and check where the helper thread found the loop
 * asleep: parked (@parked) or in the ring. */
static void assert_slept(struct parking *c, int (*fn)(void *), bool parked)
{
	unsigned seen;

	ck_assert_int_eq(run_main(fn, c), 0);
	seen = atomic_load(&c->seen);
	if (parked)
		ck_assert_msg(seen & AF_SLEEP_PARKED, "the loop slept in the ring (0x%x)", seen);
	else
		ck_assert_msg(!(seen & AF_SLEEP_PARKED), "the loop parked (0x%x)", seen);
}

/* assert_slept(), with c->pipe open for @fn's read. */
static void assert_slept_with_pipe(struct parking *c, int (*fn)(void *), bool parked)
{
	ck_assert_int_eq(pipe2(c->pipe, O_CLOEXEC), 0);
	assert_slept(c, fn, parked);
	close(c->pipe[0]);
	close(c->pipe[1]);
}

START_TEST(a_loop_with_nothing_in_flight_parks_and_a_set_from_a_thread_wakes_it)
{
	struct parking c = { 0 };

	park_env_set("1");
	assert_slept(&c, wait_for_a_set_main, true);
}
END_TEST

START_TEST(with_af_park_0_the_same_loop_sleeps_in_the_ring)
{
	struct parking c = { 0 };

	park_env_set("0");
	assert_slept(&c, wait_for_a_set_main, false);
}
END_TEST

static int watch_then_wait_main(void *arg)
{
	struct parking *c = arg;

	ck_assert_int_eq(af_flag_init(&c->other, NULL), 0);
	ck_assert_int_eq(af_signal_watch(&c->other, SIGUSR1), 0);
	/* A first sleep submits the signalfd's read: the set's sleep has it
	 * in flight, not queued, and only the read keeps it in the ring. */
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(wait_for_a_set_main(c), 0);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&c->other);
	return 0;
}

START_TEST(a_loop_that_watches_a_signal_sleeps_in_the_ring_where_its_signalfd_is_read)
{
	struct parking c = { 0 };

	park_env_set("1");
	assert_slept(&c, watch_then_wait_main, false);
}
END_TEST

static int read_pipe(void *arg)
{
	struct parking *c = arg;
	char b;

	return af_read(c->pipe[0], &b, 1, -1) == 1 ? 0 : -EIO;
}

static int read_in_flight_main(void *arg)
{
	struct parking *c = arg;
	struct af_task *t;
	int result = -1;

	ck_assert_int_eq(af_task_spawn(&t, read_pipe, c), 0);
	ck_assert_int_eq(af_yield(), 0); /* the read is submitted */
	ck_assert_int_eq(wait_for_a_set_main(c), 0);
	ck_assert_int_eq(write(c->pipe[1], "x", 1), 1);
	ck_assert_int_eq(af_task_join(t, &result), 0);
	ck_assert_int_eq(result, 0);
	return 0;
}

START_TEST(a_loop_with_a_read_in_flight_sleeps_in_the_ring_where_it_completes)
{
	struct parking c = { 0 };

	park_env_set("1");
	assert_slept_with_pipe(&c, read_in_flight_main, false);
}
END_TEST

static void *watch_parked(void *arg)
{
	struct parking *c = arg;

	atomic_store(&c->seen, wait_asleep_with(c->loop, AF_SLEEP_PARKED));
	return NULL;
}

static int timeout_while_parked_main(void *arg)
{
	struct parking *c = arg;
	pthread_t th;
	uint64_t t0;

	c->loop = af_loop_current();
	ck_assert_int_eq(af_flag_init(&c->flag, NULL), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, watch_parked, c), 0);
	t0 = now_ns();
	ck_assert_int_eq(af_flag_wait_timeout(&c->flag, 50 * MS), -ETIMEDOUT);
	/* Correctness, not speed: the deadline is absolute CLOCK_MONOTONIC. */
	ck_assert_uint_ge(now_ns() - t0, 50 * (uint64_t)MS);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	af_flag_destroy(&c->flag);
	return 0;
}

START_TEST(a_parked_loop_wakes_at_its_next_timer_and_not_before)
{
	struct parking c = { 0 };

	park_env_set("1");
	assert_slept(&c, timeout_while_parked_main, true);
}
END_TEST

static struct parking *interrupted;

static void count_signal(int signo)
{
	(void)signo;
	atomic_fetch_add(&interrupted->signals, 1);
}

static void *interrupt_then_set(void *arg)
{
	struct parking *c = arg;

	atomic_store(&c->seen, wait_asleep_with(c->loop, AF_SLEEP_PARKED));
	pthread_kill(c->loop_thread, SIGUSR2);
	while (atomic_load(&c->signals) == 0)
		sched_yield();
	/* Parked again after the interrupted wait, and still wakeable. */
	atomic_store(&c->seen_again, wait_asleep_with(c->loop, AF_SLEEP_PARKED));
	af_flag_set(&c->flag);
	return NULL;
}

static int interrupted_park_main(void *arg)
{
	return wait_with_helper(arg, interrupt_then_set);
}

START_TEST(a_signal_handler_that_interrupts_a_parked_loop_leaves_it_wakeable)
{
	struct parking c = { 0 };
	struct sigaction sa = { .sa_handler = count_signal }, old;

	park_env_set("1");
	interrupted = &c;
	/* No SA_RESTART: the futex wait ends with EINTR. */
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, &old), 0);
	assert_slept(&c, interrupted_park_main, true);
	ck_assert_int_eq(sigaction(SIGUSR2, &old, NULL), 0);
	ck_assert_int_eq(atomic_load(&c.signals), 1);
	/* EINTR is no refusal: the loop parks again. */
	ck_assert_msg(atomic_load(&c.seen_again) & AF_SLEEP_PARKED,
		      "the loop did not park again (0x%x)", atomic_load(&c.seen_again));
}
END_TEST

/* A kicker stalled between winning a parked sleep and its FUTEX_WAKE: the
 * loop wakes at a timer meanwhile and parks again with that kicker still
 * counted in the word; then the kicker's late wake and count drop change
 * the word under the new wait (a spare wake-up, or an -EAGAIN to wait
 * through). A set made after all that must still wake the loop. */
static struct parking *stalled;

static void stall_parked_kick(enum af__hook_point where, void *obj)
{
	struct parking *c = stalled;

	if (where != AF_HOOK_KICK_WRITE || !c || obj != c->loop)
		return;
	stalled = NULL; /* only the first kick */
	sem_post(&c->stalled);
	while (sem_wait(&c->go) < 0)
		;
}

static void *set_stalled(void *arg)
{
	struct parking *c = arg;

	wait_asleep_with(c->loop, AF_SLEEP_PARKED);
	/* And past the polled flag's mark: a set before it needs no kick. */
	wait_until_a_set_must_kick(c->loop, &c->flag);
	af_flag_set(&c->flag);
	return NULL;
}

static void *release_then_set(void *arg)
{
	struct parking *c = arg;
	uint64_t end = now_ns() + 2000 * (uint64_t)MS;

	while (sem_wait(&c->stalled) < 0)
		;
	/* Parked again, the stalled kicker still counted. */
	atomic_store(&c->seen, wait_asleep_with(c->loop, AF_SLEEP_PARKED | AF_KICKER_ONE));
	sem_post(&c->go);
	/* Once its count is dropped: asleep, for the new set to wake. */
	while ((atomic_load(&c->loop->sleep_state) & ~(AF_SLEEP_MASK | AF_SLEEP_PARKED)) &&
	       now_ns() < end)
		sched_yield();
	wait_asleep_with(c->loop, 0);
	af_flag_set(&c->other);
	return NULL;
}

static int first_flag_waiter(void *arg)
{
	struct parking *c = arg;

	return af_flag_wait(&c->flag);
}

static int stalled_kicker_main(void *arg)
{
	struct parking *c = arg;
	pthread_t th[2];
	struct af_task *t;
	int result = -1;

	c->loop = af_loop_current();
	ck_assert_int_eq(af_flag_init(&c->flag, NULL), 0);
	ck_assert_int_eq(af_flag_init(&c->other, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&t, first_flag_waiter, c), 0);
	ck_assert_int_eq(pthread_create(&th[0], NULL, set_stalled, c), 0);
	ck_assert_int_eq(pthread_create(&th[1], NULL, release_then_set, c), 0);
	/* The timer that ends the stalled kicker's sleep. */
	ck_assert_int_eq(af_sleep_ms(30), 0);
	ck_assert_int_eq(af_task_join(t, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(af_flag_wait(&c->other), 0);
	ck_assert_int_eq(pthread_join(th[0], NULL), 0);
	ck_assert_int_eq(pthread_join(th[1], NULL), 0);
	af_flag_destroy(&c->flag);
	af_flag_destroy(&c->other);
	return 0;
}

START_TEST(a_kicker_stalled_past_its_parked_sleep_never_costs_a_later_set_its_wake_up)
{
	struct parking c = { 0 };
	unsigned both = AF_SLEEP_PARKED | AF_KICKER_ONE;

	park_env_set("1");
	ck_assert_int_eq(sem_init(&c.stalled, 0, 0), 0);
	ck_assert_int_eq(sem_init(&c.go, 0, 0), 0);
	stalled = &c;
	atomic_store(&af__test_hook, stall_parked_kick);
	ck_assert_int_eq(run_main(stalled_kicker_main, &c), 0);
	ck_assert_msg((atomic_load(&c.seen) & both) == both &&
			      (atomic_load(&c.seen) & AF_SLEEP_MASK) == AF_SLEEPING,
		      "the loop did not park again with the kicker counted (0x%x)",
		      atomic_load(&c.seen));
	sem_destroy(&c.stalled);
	sem_destroy(&c.go);
}
END_TEST


static void *write_when_asleep(void *arg)
{
	struct parking *c = arg;

	wait_asleep_with(c->loop, 0);
	ck_assert_int_eq(write(c->pipe[1], "x", 1), 1);
	return NULL;
}

/* The first sleep is in the ring (a read in flight); on 6.7+ it queues a
 * futex wait there, which the read's completion leaves queued. The next
 * sleep parks: a FUTEX_WAKE of one waiter would go to that older wait. */
static int ring_then_park_main(void *arg)
{
	struct parking *c = arg;
	struct af_task *t;
	pthread_t th;
	int result = -1;

	c->loop = af_loop_current();
	ck_assert_int_eq(af_task_spawn(&t, read_pipe, c), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, write_when_asleep, c), 0);
	ck_assert_int_eq(af_task_join(t, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(wait_for_a_set_main(c), 0);
	c->efd_armed = c->loop->efd_armed;
	return 0;
}

START_TEST(a_parked_loop_is_woken_even_with_a_ring_futex_wait_queued_from_an_earlier_sleep)
{
	struct parking c = { 0 };

	park_env_set("1");
	assert_slept_with_pipe(&c, ring_then_park_main, true);
}
END_TEST

struct park_refused {
	int filter_r;
	int run_r, main_r;
	bool may_park_before, may_park_after;
	uint64_t slept_ns;
};

static int sleep_three_times_main(void *arg)
{
	struct park_refused *r = arg;
	uint64_t t0 = now_ns();

	r->may_park_before = af_loop_current()->may_park;
	for (int i = 0; i < 3; i++)
		if (af_sleep_ms(5) < 0)
			return -1;
	r->slept_ns = now_ns() - t0;
	r->may_park_after = af_loop_current()->may_park;
	return 0;
}

/* What an old container profile does on 32-bit Arm to futex_time64: the
 * parked wait (FUTEX_WAIT_BITSET_PRIVATE, which nothing else in this
 * single-threaded child calls) fails with EPERM. */
static void park_refused_child(void *arg, void *out)
{
	struct park_refused *r = out;
#ifdef THIS_AUDIT_ARCH
	struct sock_filter filter[] = {
		SECCOMP_BY_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF__NR_FUTEX_TS64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAIT_BITSET_PRIVATE, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	(void)arg;
	r->filter_r = seccomp_install(&prog);
	r->main_r = -1;
	r->run_r = af_run(sleep_three_times_main, r);
	r->main_r = r->run_r;
#else
	(void)arg;
	r->filter_r = -ENOSYS;
#endif
}

START_TEST(a_loop_whose_parked_wait_is_refused_sleeps_in_the_ring_from_then_on)
{
	struct park_refused r;

	park_env_set("1");
	in_child_report(park_refused_child, NULL, &r, sizeof(r));
	ck_assert_msg(r.filter_r == 0, "could not install the seccomp filter: %d", r.filter_r);
	ck_assert_int_eq(r.run_r, 0);
	ck_assert(r.may_park_before);
	ck_assert_msg(!r.may_park_after, "the loop kept trying to park");
	ck_assert_uint_ge(r.slept_ns, 15 * (uint64_t)MS);
}
END_TEST

START_TEST(a_parked_loop_whose_kicks_would_write_the_eventfd_is_woken_by_a_futex_wake)
{
	struct parking c = { 0 };

	/* The kick of kernels before 6.7, where the ring has no futex wait:
	 * the first sleep, in the ring, arms the eventfd's multishot poll,
	 * which stays armed through the parked one, and no write ends it. */
	park_env_set("1");
	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	assert_slept_with_pipe(&c, ring_then_park_main, true);
	ck_assert_msg(c.efd_armed, "the eventfd's poll was not armed");
}
END_TEST

static void *watch_while_parked(void *arg)
{
	struct parking *c = arg;

	atomic_store(&c->seen, wait_asleep_with(c->loop, AF_SLEEP_PARKED));
	if (af_signal_watch(&c->other, SIGUSR1) == 0)
		pthread_kill(c->loop_thread, SIGUSR1);
	else
		af_flag_set(&c->other); /* the main task's assertion says why */
	return NULL;
}

static int watched_while_parked_main(void *arg)
{
	struct parking *c = arg;

	/* Only the loop's signalfd read can set it. */
	wait_on_with_helper(c, &c->other, watch_while_parked);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&c->other);
	return 0;
}

START_TEST(a_signal_watched_from_another_thread_while_the_loop_is_parked_is_read_by_the_loop)
{
	struct parking c = { 0 };
	sigset_t usr1;

	park_env_set("1");
	/* Blocked in every thread (the helper inherits it): no handler runs,
	 * and only the loop's signalfd read can take the signal. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &usr1, NULL), 0);
	assert_slept(&c, watched_while_parked_main, true);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc;
	bool never_parks;
	const TTest *parking[] = {
		a_loop_with_nothing_in_flight_parks_and_a_set_from_a_thread_wakes_it,
		with_af_park_0_the_same_loop_sleeps_in_the_ring,
		a_loop_that_watches_a_signal_sleeps_in_the_ring_where_its_signalfd_is_read,
		a_loop_with_a_read_in_flight_sleeps_in_the_ring_where_it_completes,
		a_parked_loop_whose_kicks_would_write_the_eventfd_is_woken_by_a_futex_wake,
		a_parked_loop_is_woken_even_with_a_ring_futex_wait_queued_from_an_earlier_sleep,
		a_parked_loop_wakes_at_its_next_timer_and_not_before,
		a_signal_handler_that_interrupts_a_parked_loop_leaves_it_wakeable,
		a_kicker_stalled_past_its_parked_sleep_never_costs_a_later_set_its_wake_up,
		a_loop_whose_parked_wait_is_refused_sleeps_in_the_ring_from_then_on,
		a_signal_watched_from_another_thread_while_the_loop_is_parked_is_read_by_the_loop,
	};

	tc = tcase_create("creation");
	tcase_add_test(tc, new_with_null_options_gives_the_defaults);
	tcase_add_test(tc, new_with_options_uses_them);
	tcase_add_test(tc, options_at_their_limits_are_accepted);
	tcase_add_test(tc, out_of_range_options_fail_with_einval);
	tcase_add_test(tc, free_and_features_accept_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("features");
	tcase_add_test(tc, a_basic_ring_has_no_optional_setup_flags_and_still_runs_everything);
	tcase_add_uring_test(tc, a_default_loop_uses_every_setup_flag_the_kernel_accepts,
			     "a default loop runs on epoll: it has no ring");
	tcase_add_test(tc, features_report_the_assembly_switch_exactly_when_it_is_built);
	suite_add_tcase(s, tc);

	tc = tcase_create("running");
	tcase_add_test(tc, run_with_a_null_loop_or_main_fails_with_einval);
	tcase_add_test(tc, running_a_loop_from_one_of_its_tasks_fails_with_ebusy_and_another_loop_with_eperm);
	tcase_add_test(tc, a_loop_runs_only_on_the_thread_that_ran_it_first);
	tcase_add_test(tc, a_loop_can_run_again_after_a_run_returned);
	tcase_add_test(tc, loops_on_several_threads_run_at_the_same_time);
	tcase_add_test(tc, current_is_the_running_loop_inside_its_tasks_and_null_elsewhere);
	tcase_add_test(tc, current_can_be_read_from_a_signal_handler_on_the_loop_thread);
	tcase_add_test(tc, af_run_returns_the_result_of_main);
	tcase_add_test(tc, when_main_returns_the_remaining_tasks_are_cancelled_and_run_to_their_end);
	tcase_add_test(tc, a_loop_where_nothing_can_wake_any_task_reports_edeadlk);
	tcase_add_test(tc, freeing_a_running_loop_is_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("io_uring refused");
	tcase_add_test(tc, with_io_uring_setup_refused_with_enosys_a_loop_runs_on_epoll_and_io_uring_only_gives_enosys);
	tcase_add_test(tc, with_io_uring_setup_refused_with_eperm_a_loop_runs_on_epoll_and_io_uring_only_gives_eperm);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifetime");
	tcase_add_test(tc, a_loop_freed_while_a_kick_is_in_flight_never_writes_a_descriptor_it_closed);
	suite_add_tcase(s, tc);

	tc = tcase_create("fork");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, after_twenty_forks_in_a_task_the_parent_loop_runs_on_and_children_get_echild);
	suite_add_tcase(s, tc);

	tc = tcase_create("parking");
	/* A lost wake-up hangs: a case takes well under a second otherwise. */
	tcase_set_timeout(tc, 10);
	tcase_add_checked_fixture(tc, NULL, park_env_restore);
	never_parks = loop_never_sleeps_outside_ring(false);
	for (size_t i = 0; i < sizeof(parking) / sizeof(parking[0]); i++)
		tcase_add_test_unless(tc, parking[i], never_parks,
				      "neither the epoll backend nor ppoll mode (TSan, valgrind) parks");
	suite_add_tcase(s, tc);

	tc = tcase_create("fault-injection");
	tcase_set_timeout(tc, 20);
	tcase_add_uring_test(tc, a_flush_that_reaps_the_eventfd_read_leaves_the_loop_able_to_wake,
			     "epoll has no submission queue to flush");
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
