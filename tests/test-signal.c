/* SPDX-License-Identifier: MIT */
/* Signals delivered as flag sets: af_signal_watch() / af_signal_unwatch().
 * Dispositions are process-wide, so every test puts back what it changed. */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"
#include "loopstate.h"


static struct af_loop *new_loop(void)
{
	struct af_loop *loop;
	int r = af_loop_new(&loop, NULL);

	ck_assert_msg(r == 0, "af_loop_new: %s", af_strerror(r));
	return loop;
}

/* A handler of our own, to see which one a signal reaches. */
static volatile sig_atomic_t own_handler_runs;

static void own_handler(int signo)
{
	(void)signo;
	own_handler_runs++;
}

static void install(int signo, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(signo, &sa, NULL), 0);
}

static void (*current_handler(int signo))(int)
{
	struct sigaction sa;

	ck_assert_int_eq(sigaction(signo, NULL, &sa), 0);
	return sa.sa_handler;
}

/* ---- delivery -------------------------------------------------------------------- */

struct wake {
	struct af_flag f;
	pthread_t loop_thread;
	pthread_t th;
	bool to_thread;
	int r, r2;
};

static void *sender_main(void *arg)
{
	struct wake *w = arg;

	/* Late enough that the loop is asleep in the kernel. */
	sleep_ms(50);
	if (w->to_thread)
		pthread_kill(w->loop_thread, SIGUSR1);
	else
		kill(getpid(), SIGUSR1);
	return NULL;
}

static int wake_main(void *arg)
{
	struct wake *w = arg;

	w->loop_thread = pthread_self();
	ck_assert_int_eq(pthread_create(&w->th, NULL, sender_main, w), 0);
	w->r = af_flag_wait_timeout(&w->f, LONG_NS);
	ck_assert_int_eq(pthread_join(w->th, NULL), 0);
	/* One signal, one wake-up. */
	w->r2 = af_flag_wait_timeout(&w->f, 20 * MS);
	return 0;
}

static void run_wake(bool to_thread)
{
	struct af_loop *loop = new_loop();
	struct wake w = { .to_thread = to_thread, .r = 1, .r2 = 1 };
	int result = 1;

	ck_assert_int_eq(af_flag_init(&w.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&w.f, SIGUSR1), 0);
	ck_assert_int_eq(af_loop_run(loop, wake_main, &w, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(w.r, 0);
	ck_assert_int_eq(w.r2, -ETIMEDOUT);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&w.f);
	af_loop_free(loop);
}

START_TEST(a_signal_sent_to_the_process_wakes_the_task_waiting_on_the_flag)
{
	run_wake(false);
}
END_TEST

START_TEST(a_signal_sent_to_the_sleeping_loop_thread_wakes_the_task_waiting_on_the_flag)
{
	run_wake(true);
}
END_TEST

static int raise_main(void *arg)
{
	struct wake *w = arg;

	/* raise() runs the handler before it returns: the flag is set and no
	 * task waits, so the wait takes it at once. Two signals coalesce. */
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert(af_flag_is_set(&w->f));
	w->r = af_flag_wait_timeout(&w->f, 0);
	w->r2 = af_flag_wait_timeout(&w->f, 20 * MS);
	return 0;
}

START_TEST(signals_raised_before_the_wait_coalesce_into_one_wake_up)
{
	struct af_loop *loop = new_loop();
	struct wake w = { .r = 1, .r2 = 1 };
	int result = 1;

	ck_assert_int_eq(af_flag_init(&w.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&w.f, SIGUSR1), 0);
	ck_assert_int_eq(af_loop_run(loop, raise_main, &w, &result), 0);
	ck_assert_int_eq(w.r, 0);
	ck_assert_int_eq(w.r2, -ETIMEDOUT);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&w.f);
	af_loop_free(loop);
}
END_TEST

START_TEST(a_real_time_signal_can_be_watched)
{
	struct af_loop *loop = new_loop();
	struct af_flag f;

	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGRTMIN), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGRTMAX), 0);
	ck_assert_int_eq(raise(SIGRTMAX), 0);
	ck_assert(af_flag_is_set(&f));
	af_flag_clear(&f);
	ck_assert_int_eq(raise(SIGRTMIN), 0);
	ck_assert(af_flag_is_set(&f));
	ck_assert_int_eq(af_signal_unwatch(SIGRTMIN), 0);
	ck_assert_int_eq(af_signal_unwatch(SIGRTMAX), 0);
	af_flag_destroy(&f);
	af_loop_free(loop);
}
END_TEST

START_TEST(a_watched_signal_is_installed_with_sa_restart)
{
	struct af_loop *loop = new_loop();
	struct af_flag f;
	struct sigaction sa;

	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR1), 0);
	ck_assert_int_eq(sigaction(SIGUSR1, NULL, &sa), 0);
	ck_assert(sa.sa_flags & SA_RESTART);
	ck_assert_ptr_ne((void *)sa.sa_handler, (void *)SIG_DFL);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&f);
	af_loop_free(loop);
}
END_TEST

/* The signal reaches the loop thread while a task is running (spinning,
 * no system call); that task then waits on the flag without a timeout. The
 * handler has set the flag, so the wait returns at once. A watchdog thread
 * sets the flag itself after a few seconds so that a lost signal fails the
 * test instead of hanging it. */
struct busy {
	struct af_flag f;
	pthread_t loop_thread;
	atomic_bool sent;
	atomic_bool done;
	bool watchdog_fired;
	int r;
};

static void *busy_sender(void *arg)
{
	struct busy *b = arg;

	pthread_kill(b->loop_thread, SIGUSR1);
	/* Long enough for the kernel to have delivered it. */
	sleep_ms(50);
	atomic_store(&b->sent, true);
	for (int i = 0; i < 3000 && !atomic_load(&b->done); i++)
		sleep_ms(1);
	if (!atomic_load(&b->done)) {
		b->watchdog_fired = true;
		af_flag_set(&b->f);
	}
	return NULL;
}

static int busy_main(void *arg)
{
	struct busy *b = arg;
	pthread_t th;

	b->loop_thread = pthread_self();
	ck_assert_int_eq(pthread_create(&th, NULL, busy_sender, b), 0);
	while (!atomic_load(&b->sent))
		;
	b->r = af_flag_wait(&b->f);
	atomic_store(&b->done, true);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	return 0;
}

START_TEST(a_signal_arriving_while_a_task_runs_is_seen_by_its_next_wait)
{
	struct af_loop *loop = new_loop();
	struct busy b = { .r = 1 };
	int result = 1;

	atomic_init(&b.sent, false);
	atomic_init(&b.done, false);
	ck_assert_int_eq(af_flag_init(&b.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&b.f, SIGUSR1), 0);
	ck_assert_int_eq(af_loop_run(loop, busy_main, &b, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(b.r, 0);
	ck_assert_msg(!b.watchdog_fired, "the signal's handler did not run before the wait");
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&b.f);
	af_loop_free(loop);
}
END_TEST

/* ---- storm -------------------------------------------------------------------------- */

#define STORM_SIGNALS test_rounds(100000)

struct storm {
	struct af_flag f;
	int signo;
	pthread_t loop_thread;
	atomic_bool storm_done;
	atomic_bool ready_for_final;
	atomic_bool got_final;
	bool to_self;
	bool ack_timed_out;
	long wakes;
	int final_r;
	bool set_after_final;
};

static void storm_send(struct storm *s)
{
	if (s->to_self)
		raise(s->signo);
	else
		pthread_kill(s->loop_thread, s->signo);
}

static void *storm_sender(void *arg)
{
	struct storm *s = arg;

	for (int i = 0; i < STORM_SIGNALS; i++)
		storm_send(s);
	atomic_store(&s->storm_done, true);
	/* The task clears the flag and says so; only then does the final
	 * signal go out, so a wake-up after it can only come from it (or a
	 * straggler, which is allowed), and missing it is a lost signal. */
	for (int i = 0; !atomic_load(&s->ready_for_final); i++) {
		if (i == 10000) {
			s->ack_timed_out = true;
			return NULL;
		}
		sleep_ms(1);
	}
	storm_send(s);
#if AF_TSAN
	/* TSan defers a signal that arrives outside a call it intercepts to
	 * the state of the fiber then running and runs the handler at that
	 * fiber's next atomic or intercepted call. A task that is between its
	 * last such call and its switch to the loop parks with the signal
	 * undelivered. Only under TSan, send the final signal again until it
	 * is seen; every other build gets exactly one. */
	for (int i = 0; i < 50 && !atomic_load(&s->got_final); i++) {
		sleep_ms(200);
		if (!atomic_load(&s->got_final))
			storm_send(s);
	}
#endif
	return NULL;
}

static int storm_waiter(void *arg)
{
	struct storm *s = arg;
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, storm_sender, s), 0);
	while (!atomic_load(&s->storm_done)) {
		/* Short timeouts: the storm ends without a signal to say so. */
		int r = af_flag_wait_timeout(&s->f, 10 * MS);

		ck_assert_msg(r == 0 || r == -ETIMEDOUT, "wait returned %d", r);
		if (r == 0)
			s->wakes++;
	}
	af_flag_clear(&s->f);
	atomic_store(&s->ready_for_final, true);
	s->final_r = af_flag_wait_timeout(&s->f, LONG_NS);
	atomic_store(&s->got_final, true);
	/* Set but not woken: the library lost the wake-up. Not set: the
	 * handler never ran. */
	s->set_after_final = af_flag_is_set(&s->f);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	return 0;
}

static void storm_init(struct storm *s, struct af_loop *loop, int signo)
{
	memset(s, 0, sizeof(*s));
	s->signo = signo;
	s->final_r = 1;
	atomic_init(&s->storm_done, false);
	atomic_init(&s->ready_for_final, false);
	atomic_init(&s->got_final, false);
	ck_assert_int_eq(af_flag_init(&s->f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&s->f, signo), 0);
}

static void storm_check(struct storm *s)
{
	ck_assert(!s->ack_timed_out);
	ck_assert_int_ge(s->wakes, 1);
	ck_assert_msg(s->final_r == 0, "the final signal %d was lost: wait returned %d, "
		      "flag %s", s->signo, s->final_r,
		      s->set_after_final ? "set (wake-up lost)" : "clear (handler never ran)");
	ck_assert_int_eq(af_signal_unwatch(s->signo), 0);
	af_flag_destroy(&s->f);
}

static int storm_main(void *arg)
{
	struct storm *s = arg;

	s->loop_thread = pthread_self();
	return storm_waiter(s);
}

START_TEST(after_a_storm_of_signals_to_the_loop_thread_the_final_signal_is_observed)
{
	struct af_loop *loop = new_loop();
	struct storm s;
	int result = 1;

	storm_init(&s, loop, SIGUSR1);
	ck_assert_int_eq(af_loop_run(loop, storm_main, &s, &result), 0);
	ck_assert_int_eq(result, 0);
	storm_check(&s);
	af_loop_free(loop);
}
END_TEST

static int two_storms_main(void *arg)
{
	struct storm *s = arg;
	struct af_task *t[2];

	for (int i = 0; i < 2; i++) {
		s[i].loop_thread = pthread_self();
		ck_assert_int_eq(af_task_spawn(&t[i], storm_waiter, &s[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	return 0;
}

/* Two flags on one loop: handlers push onto the loop's pending stack while
 * the interrupted loop thread is itself collecting or pushing.
 *
 * Not under TSan: when two different signals are pending for one thread,
 * TSan's runtime (libtsan of GCC 12, and LLVM's as of this writing) runs
 * its pending-signal processing again from the handler's first atomic,
 * which saves the all-blocked mask over the thread's real one and leaves
 * the thread with every signal blocked for good. There each sender raises
 * its signal on its own thread instead: the handlers still push from two
 * threads at once while the loop collects. */
START_TEST(two_signal_storms_on_two_flags_of_one_loop_lose_neither_final_signal)
{
	struct af_loop *loop = new_loop();
	struct storm s[2];
	int result = 1;

	storm_init(&s[0], loop, SIGUSR1);
	storm_init(&s[1], loop, SIGUSR2);
#if AF_TSAN
	s[0].to_self = s[1].to_self = true;
#endif
	ck_assert_int_eq(af_loop_run(loop, two_storms_main, s, &result), 0);
	ck_assert_int_eq(result, 0);
	storm_check(&s[0]);
	storm_check(&s[1]);
	af_loop_free(loop);
}
END_TEST

/* ---- errno --------------------------------------------------------------------------- */

struct err {
	struct af_flag f;
	int seen[3];
	unsigned state_after_write;
};

static int flag_waiter(void *arg)
{
	return af_flag_wait(arg);
}

static int errno_main(void *arg)
{
	struct err *e = arg;
	struct af_loop *loop = af_loop_current();
	struct af_task *t;
	int real;

	/* Handler on a flag nobody waits on: the set only flips the bit. */
	errno = 1111;
	ck_assert_int_eq(raise(SIGUSR1), 0);
	e->seen[0] = errno;
	ck_assert_int_eq(af_flag_wait(&e->f), 0);

	/* Handler on a flag with a waiter while the loop "sleeps": the set
	 * writes the eventfd, and that write fails (EBADF) inside the
	 * handler. The interrupted code must still see its own errno. */
	ck_assert_int_eq(af_task_spawn(&t, flag_waiter, &e->f), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(t->state, AF_TASK_BLOCKED);
	real = loop->efd;
	loop->efd = -1;
	/* As sleep_until() does: the waiter is the loop's polled one, so its
	 * flag's word says the loop may be asleep too. */
	atomic_store(&loop->sleep_state, AF_SLEEPING);
	if (loop->polled)
		atomic_fetch_or(&loop->polled->state, AF_FLAG_SLEEPER);
	errno = 2222;
	ck_assert_int_eq(raise(SIGUSR1), 0);
	e->seen[1] = errno;
	e->state_after_write = atomic_load(&loop->sleep_state);
	if (loop->polled)
		atomic_fetch_and(&loop->polled->state, ~AF_FLAG_SLEEPER);
	atomic_store(&loop->sleep_state, AF_AWAKE);
	loop->efd = real;
	ck_assert_int_eq(af_task_join(t, NULL), 0);

	/* And a signal on a set flag (coalesced). */
	af_flag_set(&e->f);
	errno = 3333;
	ck_assert_int_eq(raise(SIGUSR1), 0);
	e->seen[2] = errno;
	return 0;
}

START_TEST(the_handler_preserves_errno_of_the_code_it_interrupts)
{
	struct af_loop *loop = new_loop();
	struct err e = { .seen = { 0 } };
	int result = 1;

	ck_assert_int_eq(af_flag_init(&e.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&e.f, SIGUSR1), 0);
	/* The eventfd, even on 6.7+: a FUTEX_WAKE with nobody waiting does
	 * not fail, and the point is a system call that does. */
	ck_assert_int_eq(setenv("AF_WAKE", "poll", 1), 0);
	ck_assert_int_eq(af_loop_run(loop, errno_main, &e, &result), 0);
	unsetenv("AF_WAKE");
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(e.seen[0], 1111);
	/* The failing write really happened. */
	ck_assert_uint_eq(e.state_after_write, AF_WOKEN);
	ck_assert_int_eq(e.seen[1], 2222);
	ck_assert_int_eq(e.seen[2], 3333);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	af_flag_destroy(&e.f);
	af_loop_free(loop);
}
END_TEST

/* ---- watch and unwatch --------------------------------------------------------------- */

START_TEST(watching_a_watched_signal_with_another_flag_fails_with_ebusy)
{
	struct af_loop *loop = new_loop();
	struct af_flag f, g;

	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_flag_init(&g, loop), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR1), 0);
	ck_assert_int_eq(af_signal_watch(&g, SIGUSR1), -EBUSY);
	/* The same flag again is fine, and does not stack handlers. */
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR1), 0);
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert(af_flag_is_set(&f));
	ck_assert(!af_flag_is_set(&g));
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), -ENOENT);
	af_flag_destroy(&f);
	af_flag_destroy(&g);
	af_loop_free(loop);
}
END_TEST

START_TEST(watching_an_invalid_or_reserved_signal_fails_with_einval)
{
	static const int bad[] = { 0, -1, NSIG, NSIG + 1, SIGKILL, SIGSTOP,
				   SIGSEGV, SIGBUS, SIGILL, SIGFPE };
	struct af_loop *loop = new_loop();
	struct af_flag f, zero;

	memset(&zero, 0, sizeof(zero));
	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(af_signal_watch(&f, bad[i]) == -EINVAL, "signal %d accepted", bad[i]);
	/* The C library keeps the signals below SIGRTMIN for itself. */
	ck_assert_int_eq(af_signal_watch(&f, SIGRTMIN - 1), -EINVAL);
	ck_assert_int_eq(af_signal_unwatch(SIGRTMIN - 1), -ENOENT);
	ck_assert_int_eq(af_signal_watch(NULL, SIGUSR1), -EINVAL);
	ck_assert_int_eq(af_signal_watch(&zero, SIGUSR1), -EINVAL);
	/* None of that left anything watched. */
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), -ENOENT);
	af_flag_destroy(&f);
	af_loop_free(loop);
}
END_TEST

START_TEST(unwatching_a_signal_that_is_not_watched_fails_with_enoent)
{
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), -ENOENT);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR2), -ENOENT);
	ck_assert_int_eq(af_signal_unwatch(0), -EINVAL);
	ck_assert_int_eq(af_signal_unwatch(-1), -EINVAL);
	ck_assert_int_eq(af_signal_unwatch(NSIG), -EINVAL);
}
END_TEST

START_TEST(unwatch_restores_the_handler_that_was_there_before)
{
	struct af_loop *loop = new_loop();
	struct af_flag f;

	install(SIGUSR1, own_handler);
	install(SIGUSR2, SIG_IGN);
	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR1), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR2), 0);
	own_handler_runs = 0;
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert_int_eq(own_handler_runs, 0);
	ck_assert(af_flag_is_set(&f));
	af_flag_clear(&f);

	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);
	ck_assert_ptr_eq((void *)current_handler(SIGUSR1), (void *)own_handler);
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert_int_eq(own_handler_runs, 1);
	ck_assert(!af_flag_is_set(&f));

	ck_assert_int_eq(af_signal_unwatch(SIGUSR2), 0);
	ck_assert_ptr_eq((void *)current_handler(SIGUSR2), (void *)SIG_IGN);
	ck_assert_int_eq(raise(SIGUSR2), 0);
	ck_assert(!af_flag_is_set(&f));

	install(SIGUSR1, SIG_DFL);
	install(SIGUSR2, SIG_DFL);
	af_flag_destroy(&f);
	af_loop_free(loop);
}
END_TEST

/* A handler stalled inside the library (through af__test_hook) on another
 * thread while the signal is unwatched. */
static struct {
	struct af_flag *_Atomic flag;
	sem_t reached, go, done;
} inflight;

static void stall_in_handler(enum af__hook_point where, void *obj)
{
	struct timespec ts;
	int saved_errno = errno;

	if (where != AF_HOOK_SIGNAL || obj != atomic_load(&inflight.flag))
		return;
	sem_post(&inflight.reached);
	/* Bounded: a fixed unwatch waits for this handler, so the test must
	 * let it go on its own. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 500 * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	while (sem_timedwait(&inflight.go, &ts) < 0 && errno == EINTR)
		;
	errno = saved_errno; /* a handler must not change it (TSan checks) */
}

static void *take_signals_until_done(void *arg)
{
	(void)arg;
	while (sem_wait(&inflight.done) < 0 && errno == EINTR)
		;
	return NULL;
}

START_TEST(unwatch_returns_only_after_a_handler_running_on_another_thread_has_left)
{
	struct af_loop *loop = new_loop();
	struct af_flag f;
	pthread_t th;
	bool set_when_unwatched;

	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(sem_init(&inflight.reached, 0, 0), 0);
	ck_assert_int_eq(sem_init(&inflight.go, 0, 0), 0);
	ck_assert_int_eq(sem_init(&inflight.done, 0, 0), 0);
	atomic_store(&inflight.flag, &f);
	atomic_store(&af__test_hook, stall_in_handler);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR2), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, take_signals_until_done, NULL), 0);
	ck_assert_int_eq(pthread_kill(th, SIGUSR2), 0);
	while (sem_wait(&inflight.reached) < 0)
		;
	ck_assert_int_eq(af_signal_unwatch(SIGUSR2), 0);
	/* Before the fix unwatch returned while the handler was still on its
	 * way to af_flag_set(), so the flag's storage could not be released. */
	set_when_unwatched = af_flag_is_set(&f);
	sem_post(&inflight.go);
	sem_post(&inflight.done);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	atomic_store(&af__test_hook, NULL);
	ck_assert(set_when_unwatched);
	af_flag_destroy(&f);
	af_loop_free(loop);
	sem_destroy(&inflight.reached);
	sem_destroy(&inflight.go);
	sem_destroy(&inflight.done);
}
END_TEST

START_TEST(destroying_a_flag_unwatches_its_signals)
{
	struct af_loop *loop = new_loop();
	struct af_flag f, g;

	install(SIGUSR1, own_handler);
	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_flag_init(&g, loop), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR1), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR2), 0);
	ck_assert_int_eq(af_signal_watch(&g, SIGHUP), 0);
	af_flag_destroy(&f);

	ck_assert_ptr_eq((void *)current_handler(SIGUSR1), (void *)own_handler);
	ck_assert_ptr_eq((void *)current_handler(SIGUSR2), (void *)SIG_DFL);
	own_handler_runs = 0;
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert_int_eq(own_handler_runs, 1);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), -ENOENT);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR2), -ENOENT);
	/* The signals are free for another flag; g's watch was not touched. */
	ck_assert_int_eq(af_signal_watch(&g, SIGUSR1), 0);
	ck_assert_int_eq(af_signal_unwatch(SIGHUP), 0);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR1), 0);

	install(SIGUSR1, SIG_DFL);
	af_flag_destroy(&g);
	af_loop_free(loop);
}
END_TEST

/* ---- signals the loop's thread blocks: read from the loop's signalfd ---------- */

static sigset_t only(int signo)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, signo);
	return set;
}

static bool is_pending(int signo)
{
	sigset_t set;

	ck_assert_int_eq(sigpending(&set), 0);
	return sigismember(&set, signo) == 1;
}

/* Takes back a signal that a test left pending on purpose. */
static void consume(int signo)
{
	sigset_t set = only(signo);
	struct timespec zero = { 0, 0 };

	ck_assert_int_eq(sigtimedwait(&set, NULL, &zero), signo);
}

struct blocked {
	struct af_flag f;
	int signo;
	pthread_t loop_thread;
	pthread_t helper;        /* does not block the signal */
	sem_t helper_go;
	int rounds;
	_Atomic int acked;       /* rounds the task has seen */
	int r[3];
};

static void *blocked_sender(void *arg)
{
	struct blocked *b = arg;

	for (int i = 0; i < b->rounds; i++) {
		/* Late enough, in round 0, that the loop is asleep; later
		 * rounds land wherever the loop is. */
		if (i == 0)
			sleep_ms(50);
		kill(getpid(), b->signo);
		/* acquire: the task's wait has returned before we send again,
		 * so each signal is its own wake-up. */
		while (atomic_load_explicit(&b->acked, memory_order_acquire) == i)
			sched_yield();
	}
	return NULL;
}

static int blocked_main(void *arg)
{
	struct blocked *b = arg;
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, blocked_sender, b), 0);
	for (int i = 0; i < b->rounds; i++) {
		int r = af_flag_wait_timeout(&b->f, LONG_NS);

		if (r != 0) {
			b->r[0] = r;
			break;
		}
		atomic_store_explicit(&b->acked, i + 1, memory_order_release);
	}
	if (b->r[0] != 0)
		atomic_store_explicit(&b->acked, -1, memory_order_release);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	b->r[1] = af_flag_wait_timeout(&b->f, 20 * MS);
	return 0;
}

/* Blocks @signo on this thread (and so in every thread it creates), runs
 * @rounds signals to the process through the loop and puts the mask back. */
static void run_blocked(int signo, int rounds)
{
	struct af_loop *loop = new_loop();
	struct blocked b = { .signo = signo, .rounds = rounds };
	sigset_t set = only(signo), old;
	int result = 1;

	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	ck_assert_int_eq(af_flag_init(&b.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&b.f, signo), 0);
	ck_assert_int_eq(af_loop_run(loop, blocked_main, &b, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(b.r[0], 0);
	ck_assert_int_eq(atomic_load(&b.acked), rounds);
	/* One signal, one wake-up, and the loop took it off the pending set. */
	ck_assert_int_eq(b.r[1], -ETIMEDOUT);
	ck_assert(!is_pending(signo));
	af_flag_destroy(&b.f);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

START_TEST(a_signal_blocked_in_every_thread_is_read_by_the_loop_and_wakes_the_task)
{
	run_blocked(SIGUSR2, 1);
}
END_TEST

/* A loop kept busy by a task that only yields, with a signal watched
 * through its signalfd: flags set from another thread are taken at the end
 * of a round by the task that parks (loop.c, collect_here()), and a signal
 * sent meanwhile is read once the loop next enters the kernel. */
struct busy_signal {
	struct af_flag sig, set;
	_Atomic bool stop;
	_Atomic int acked;
	int rounds;
};

static int busy_spinner(void *arg)
{
	struct busy_signal *b = arg;

	while (!atomic_load(&b->stop))
		ck_assert_int_eq(af_yield(), 0);
	return 0;
}

static void *busy_setter(void *arg)
{
	struct busy_signal *b = arg;

	for (int i = 0; i < b->rounds; i++) {
		af_flag_set(&b->set);
		while (atomic_load(&b->acked) == i)
			sched_yield();
		if (i == b->rounds / 2)
			kill(getpid(), SIGUSR2);
	}
	return NULL;
}

static int busy_signal_main(void *arg)
{
	struct busy_signal *b = arg;
	struct af_task *spinner;
	pthread_t th;

	ck_assert_int_eq(af_task_spawn(&spinner, busy_spinner, b), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, busy_setter, b), 0);
	for (int i = 0; i < b->rounds; i++) {
		ck_assert_int_eq(af_flag_wait_timeout(&b->set, LONG_NS), 0);
		atomic_store(&b->acked, i + 1);
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	atomic_store(&b->stop, true);
	ck_assert_int_eq(af_task_join(spinner, NULL), 0);
	/* Now the loop sleeps, and its ring hands it the signal. */
	ck_assert_int_eq(af_flag_wait_timeout(&b->sig, LONG_NS), 0);
	return 0;
}

START_TEST(a_busy_loop_reading_a_blocked_signal_still_wakes_flags_and_gets_the_signal)
{
	struct af_loop *loop = new_loop();
	struct busy_signal b = { .rounds = (int)test_rounds(2000) };
	sigset_t set = only(SIGUSR2), old;
	int result = 1;

	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	ck_assert_int_eq(af_flag_init(&b.sig, loop), 0);
	ck_assert_int_eq(af_flag_init(&b.set, loop), 0);
	ck_assert_int_eq(af_signal_watch(&b.sig, SIGUSR2), 0);
	ck_assert_int_eq(af_loop_run(loop, busy_signal_main, &b, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert(!is_pending(SIGUSR2));
	af_flag_destroy(&b.set);
	af_flag_destroy(&b.sig);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

/* While a busy loop takes flags at the ends of its rounds, its signalfd
 * read still gets the loop's context when it needs it: to be submitted
 * again after a signal was read (so that a signal already pending is taken
 * at once), and, on a ring without DEFER_TASKRUN, to have the completion
 * the kernel posted by itself reaped. Either way the signal reaches its
 * flag while the loop is still busy. */
struct busy_read {
	struct busy_signal b;
	bool send_while_busy;    /* else: pending before the busy phase */
};

static void *busy_read_setter(void *arg)
{
	struct busy_read *r = arg;

	for (int i = 0; !atomic_load(&r->b.stop); i++) {
		af_flag_set(&r->b.set);
		if (r->send_while_busy && i == 200)
			kill(getpid(), SIGUSR2);
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 }, NULL);
	}
	return NULL;
}

static int busy_read_waiter(void *arg)
{
	struct busy_read *r = arg;

	/* Timed, so that it notices the stop without a last set. */
	while (!atomic_load(&r->b.stop))
		(void)af_flag_wait_timeout(&r->b.set, 10 * MS);
	return 0;
}

static int busy_read_main(void *arg)
{
	struct busy_read *r = arg;
	struct af_task *spinner, *waiter;
	pthread_t th;
	int got;

	/* The first signal is read while the loop sleeps; the read that
	 * follows it is armed but not yet submitted. */
	kill(getpid(), SIGUSR2);
	ck_assert_int_eq(af_flag_wait_timeout(&r->b.sig, LONG_NS), 0);
	if (!r->send_while_busy)
		kill(getpid(), SIGUSR2);
	ck_assert_int_eq(af_task_spawn(&spinner, busy_spinner, &r->b), 0);
	ck_assert_int_eq(af_task_spawn(&waiter, busy_read_waiter, r), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, busy_read_setter, r), 0);
	got = af_flag_wait_timeout(&r->b.sig, LONG_NS);
	atomic_store(&r->b.stop, true);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(af_task_join(spinner, NULL), 0);
	ck_assert_int_eq(af_task_join(waiter, NULL), 0);
	ck_assert_msg(got == 0, "the signal did not reach its flag while the loop was busy: %s",
		      af_strerror(got));
	return 0;
}

static void run_busy_read(unsigned loop_flags, bool send_while_busy)
{
	struct af_loop *loop;
	struct busy_read r = { .send_while_busy = send_while_busy };
	sigset_t set = only(SIGUSR2), old;
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, &(struct af_loop_opts){ .flags = loop_flags }), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	ck_assert_int_eq(af_flag_init(&r.b.sig, loop), 0);
	ck_assert_int_eq(af_flag_init(&r.b.set, loop), 0);
	ck_assert_int_eq(af_signal_watch(&r.b.sig, SIGUSR2), 0);
	ck_assert_int_eq(af_loop_run(loop, busy_read_main, &r, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert(!is_pending(SIGUSR2));
	af_flag_destroy(&r.b.set);
	af_flag_destroy(&r.b.sig);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

START_TEST(a_signal_pending_when_a_busy_loop_rearms_its_read_reaches_the_flag_while_it_is_busy)
{
	run_busy_read(0, false);
}
END_TEST

START_TEST(on_a_basic_ring_a_signal_sent_while_the_loop_is_busy_reaches_the_flag_while_it_is_busy)
{
	run_busy_read(AF_LOOP_BASIC_RING, true);
}
END_TEST

START_TEST(a_thousand_signals_blocked_in_every_thread_wake_the_task_a_thousand_times)
{
	run_blocked(SIGUSR2, 1000);
}
END_TEST

START_TEST(a_blocked_real_time_signal_is_read_by_the_loop_like_any_other)
{
	run_blocked(SIGRTMIN + 4, 100);
}
END_TEST

/* More queued signals than one read of the signalfd takes: the loop reads
 * again until none is left. Each read is a set, so the task sees one
 * wake-up or a few, as it would with handlers, but never none. */
static int queued_main(void *arg)
{
	struct blocked *b = arg;

	b->r[0] = af_flag_wait_timeout(&b->f, LONG_NS);
	/* Give the loop turns to read the rest. */
	b->r[1] = af_sleep_ms(20);
	return 0;
}

START_TEST(queued_blocked_signals_are_all_read_and_wake_the_task)
{
	struct af_loop *loop = new_loop();
	struct blocked b = { .signo = SIGRTMIN + 4 };
	sigset_t set = only(b.signo), old;
	int result = 1;

	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	/* Real-time signals queue: ten are pending before the loop runs. */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(sigqueue(getpid(), b.signo, (union sigval){ .sival_int = i }), 0);
	ck_assert_int_eq(af_flag_init(&b.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&b.f, b.signo), 0);
	ck_assert_int_eq(af_loop_run(loop, queued_main, &b, &result), 0);
	ck_assert_int_eq(b.r[0], 0);
	ck_assert_int_eq(b.r[1], 0);
	ck_assert(!is_pending(b.signo));
	af_flag_destroy(&b.f);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

static void *helper_main(void *arg)
{
	struct blocked *b = arg;

	/* The handler runs here for signals sent to the process. */
	while (sem_wait(&b->helper_go) != 0)
		;
	return NULL;
}

static void *two_way_sender(void *arg)
{
	struct blocked *b = arg;

	sleep_ms(50);
	kill(getpid(), b->signo);
	while (atomic_load_explicit(&b->acked, memory_order_acquire) == 0)
		sched_yield();
	sleep_ms(50);
	/* Blocked there: it stays pending on the loop thread, for its
	 * signalfd. */
	pthread_kill(b->loop_thread, b->signo);
	return NULL;
}

static int two_way_main(void *arg)
{
	struct blocked *b = arg;
	pthread_t th;

	b->loop_thread = pthread_self();
	ck_assert_int_eq(pthread_create(&th, NULL, two_way_sender, b), 0);
	b->r[0] = af_flag_wait_timeout(&b->f, LONG_NS);
	atomic_store_explicit(&b->acked, 1, memory_order_release);
	b->r[1] = af_flag_wait_timeout(&b->f, LONG_NS);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	b->r[2] = af_flag_wait_timeout(&b->f, 20 * MS);
	return 0;
}

START_TEST(a_signal_blocked_only_in_the_loop_thread_reaches_the_flag_both_ways)
{
	struct af_loop *loop = new_loop();
	struct blocked b = { .signo = SIGUSR2 };
	sigset_t set = only(b.signo), old;
	int result = 1;

	ck_assert_int_eq(sem_init(&b.helper_go, 0, 0), 0);
	/* The helper starts before the block, so it keeps the signal open. */
	ck_assert_int_eq(pthread_create(&b.helper, NULL, helper_main, &b), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	ck_assert_int_eq(af_flag_init(&b.f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&b.f, b.signo), 0);
	ck_assert_int_eq(af_loop_run(loop, two_way_main, &b, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(b.r[0], 0);
	ck_assert_int_eq(b.r[1], 0);
	ck_assert_int_eq(b.r[2], -ETIMEDOUT);
	ck_assert(!is_pending(b.signo));
	ck_assert_int_eq(sem_post(&b.helper_go), 0);
	ck_assert_int_eq(pthread_join(b.helper, NULL), 0);
	sem_destroy(&b.helper_go);
	af_flag_destroy(&b.f);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

static int nap_main(void *arg)
{
	(void)arg;
	return af_sleep_ms(50);
}

/* Once unwatched, the loop no longer takes the signal: it stays pending for
 * whoever reads it next, as if the library had never seen it. */
START_TEST(an_unwatched_blocked_signal_stays_pending_for_its_next_reader)
{
	struct af_loop *loop = new_loop();
	struct af_flag f;
	sigset_t set = only(SIGUSR2), old;
	int result = 1;

	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	ck_assert_int_eq(af_flag_init(&f, loop), 0);
	ck_assert_int_eq(af_signal_watch(&f, SIGUSR2), 0);
	ck_assert_int_eq(af_signal_unwatch(SIGUSR2), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR2), 0);
	ck_assert_int_eq(af_loop_run(loop, nap_main, NULL, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert(!af_flag_is_set(&f));
	ck_assert(is_pending(SIGUSR2));
	consume(SIGUSR2);
	af_flag_destroy(&f);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

/* ---- sleeping for signals ------------------------------------------------------- */

/* A loop whose only business in the ring is its signalfd's read, and whose
 * last wake-ups were signals, sleeps in sigtimedwait() for them (loop.c,
 * wait_for_signals()); a kick is then SIGURG, sent to its thread. The
 * helper thread below sends the signals and watches how the loop sleeps. */
#define WARM_SIGNALS 6

struct sigsleep {
	struct af_loop *loop;
	struct af_flag sig, other;
	_Atomic int acked;       /* signals the task has seen */
	_Atomic unsigned seen[WARM_SIGNALS]; /* sleep_state before each signal */
	_Atomic unsigned seen_last; /* before the helper's last step */
	void (*last)(struct sigsleep *c); /* the helper's last step, or NULL */
	int (*task_last)(struct sigsleep *c); /* what the task waits for last */
	uint64_t slept_ns;
	bool block_kick;         /* block SIGURG too (most programs leave it) */
	pthread_t loop_thread;
	_Atomic bool ready_last; /* the task is ready for the last step */
};

static void *sigsleep_helper(void *arg)
{
	struct sigsleep *c = arg;

	for (int i = 0; i < WARM_SIGNALS; i++) {
		atomic_store(&c->seen[i], wait_asleep_with(c->loop, i >= 3 ? AF_SLEEP_SIGWAIT : 0));
		kill(getpid(), SIGUSR2);
		while (atomic_load(&c->acked) == i)
			sched_yield();
	}
	if (c->last)
		c->last(c);
	return NULL;
}

/* For a last step that needs the task's own last preparations done. */
static void wait_ready_last(struct sigsleep *c)
{
	while (!atomic_load(&c->ready_last))
		sched_yield();
}

static int sigsleep_main(void *arg)
{
	struct sigsleep *c = arg;
	pthread_t th;

	c->loop = af_loop_current();
	c->loop_thread = pthread_self();
	ck_assert_int_eq(pthread_create(&th, NULL, sigsleep_helper, c), 0);
	/* No timeouts: a timer would end the sleep and hide a lost wake-up,
	 * which hangs the test instead (the tcase's timeout fails it). */
	for (int i = 0; i < WARM_SIGNALS; i++) {
		ck_assert_int_eq(af_flag_wait(&c->sig), 0);
		atomic_store(&c->acked, i + 1);
	}
	if (c->task_last)
		ck_assert_int_eq(c->task_last(c), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	return 0;
}

/* Runs sigsleep_main() on a new loop with SIGUSR2 (and SIGUSR1, and SIGURG
 * if c->block_kick, for the cases that watch them) blocked in every thread
 * and watched by c->sig, parking allowed whatever the test setup says. */
static void run_sigsleep_with(struct sigsleep *c, const char *park)
{
	struct af_loop *loop;
	sigset_t set, old;
	int result = 1;

	/* Each case runs in a process of its own (CK_FORK=yes). */
	ck_assert_int_eq(setenv("AF_PARK", park, 1), 0);
	ck_assert_int_eq(unsetenv("AF_WAKE"), 0);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGUSR1);
	if (c->block_kick)
		sigaddset(&set, SIGURG);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	loop = new_loop();
	ck_assert_int_eq(af_flag_init(&c->sig, loop), 0);
	ck_assert_int_eq(af_flag_init(&c->other, loop), 0);
	ck_assert_int_eq(af_signal_watch(&c->sig, SIGUSR2), 0);
	ck_assert_int_eq(af_loop_run(loop, sigsleep_main, c, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert(!is_pending(SIGUSR2));
	af_flag_destroy(&c->other);
	af_flag_destroy(&c->sig);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

static void run_sigsleep(struct sigsleep *c)
{
	run_sigsleep_with(c, "1");
}

static bool sigwaited(unsigned st)
{
	return (st & AF_SLEEP_MASK) == AF_SLEEPING && (st & AF_SLEEP_SIGWAIT);
}

/* The helper's last step found the loop asleep in sigtimedwait(). */
static void assert_last_sleep_sigwaited(struct sigsleep *c)
{
	unsigned st = atomic_load(&c->seen_last);

	ck_assert_msg(sigwaited(st), "the loop was not in a sigwait (0x%x)", st);
}

START_TEST(a_loop_woken_by_its_signals_sleeps_in_sigtimedwait_and_each_signal_wakes_the_task)
{
	struct sigsleep c = { 0 };

	ck_assert(current_handler(SIGURG) == SIG_DFL);
	run_sigsleep(&c);
	ck_assert_msg(!sigwaited(atomic_load(&c.seen[0])),
		      "the first sleep, before any signal, was a sigwait (0x%x)",
		      atomic_load(&c.seen[0]));
	for (int i = 3; i < WARM_SIGNALS; i++)
		ck_assert_msg(sigwaited(atomic_load(&c.seen[i])),
			      "sleep %d, after %d signals, was not a sigwait (0x%x)", i, i,
			      atomic_load(&c.seen[i]));
	/* The library changes no disposition, and the kick left nothing. */
	ck_assert(current_handler(SIGURG) == SIG_DFL);
	ck_assert(!is_pending(SIGURG));
}
END_TEST

/* The hook runs on the loop's thread with SLEEPING|SIGWAIT published and
 * the wait not begun: a set made there kicks at once, and its SIGURG must
 * stay pending for the wait to take (a handler would eat it first). */
static struct af_flag *_Atomic hook_flag;

static void set_in_the_window(enum af__hook_point where, void *obj)
{
	struct af_flag *f;

	(void)obj;
	if (where != AF_HOOK_SIGWAIT)
		return;
	f = atomic_exchange(&hook_flag, NULL);
	if (f)
		af_flag_set(f);
}

static int arm_hook_and_wait_other(struct sigsleep *c)
{
	atomic_store(&hook_flag, &c->other);
	return af_flag_wait(&c->other);
}

START_TEST(a_set_made_after_the_sleep_is_published_and_before_the_wait_begins_ends_the_wait)
{
	struct sigsleep c = { .task_last = arm_hook_and_wait_other };

	atomic_store(&af__test_hook, set_in_the_window);
	run_sigsleep(&c);
	atomic_store(&af__test_hook, NULL);
	ck_assert_msg(atomic_load(&hook_flag) == NULL, "the loop never slept in sigtimedwait()");
	ck_assert(!is_pending(SIGURG));
}
END_TEST

static int task_sees_sigurg_unblocked(struct sigsleep *c)
{
	sigset_t now;

	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &now), 0);
	return sigismember(&now, SIGURG) == 1 ? -EINVAL : 0;
}

START_TEST(tasks_run_with_the_signal_mask_the_program_gave_the_loop_thread)
{
	struct sigsleep c = { .task_last = task_sees_sigurg_unblocked };

	run_sigsleep(&c);
	ck_assert_msg(sigwaited(atomic_load(&c.seen[WARM_SIGNALS - 1])),
		      "the loop was not in a sigwait (0x%x)", atomic_load(&c.seen[WARM_SIGNALS - 1]));
}
END_TEST

static void set_other_when_sigwaiting(struct sigsleep *c)
{
	atomic_store(&c->seen_last, wait_asleep_with(c->loop, AF_SLEEP_SIGWAIT));
	af_flag_set(&c->other);
}

static int wait_other(struct sigsleep *c)
{
	return af_flag_wait(&c->other);
}

START_TEST(a_set_from_another_thread_ends_a_sleep_in_sigtimedwait)
{
	struct sigsleep c = { .last = set_other_when_sigwaiting, .task_last = wait_other };

	run_sigsleep(&c);
	assert_last_sleep_sigwaited(&c);
	/* The kick came as SIGURG, and the sleep took it: none is left. */
	ck_assert(!is_pending(SIGURG));
}
END_TEST

static void watch_other_when_sigwaiting(struct sigsleep *c)
{
	atomic_store(&c->seen_last, wait_asleep_with(c->loop, AF_SLEEP_SIGWAIT));
	ck_assert_int_eq(af_signal_watch(&c->other, SIGUSR1), 0);
	kill(getpid(), SIGUSR1);
}

START_TEST(a_signal_watched_while_the_loop_sleeps_in_sigtimedwait_reaches_its_flag)
{
	struct sigsleep c = { .last = watch_other_when_sigwaiting, .task_last = wait_other };

	run_sigsleep(&c);
	assert_last_sleep_sigwaited(&c);
	ck_assert(!is_pending(SIGUSR1));
}
END_TEST

static void watch_sigurg_when_sigwaiting(struct sigsleep *c)
{
	atomic_store(&c->seen_last, wait_asleep_with(c->loop, AF_SLEEP_SIGWAIT));
	ck_assert_int_eq(af_signal_watch(&c->other, SIGURG), 0);
	/* Once the loop sleeps again, with the new mask, in the ring. */
	sleep_ms(20);
	kill(getpid(), SIGURG);
}

START_TEST(watching_the_kick_signal_itself_ends_the_sleeps_in_sigtimedwait_and_it_reaches_its_flag)
{
	struct sigsleep c = { .last = watch_sigurg_when_sigwaiting, .task_last = wait_other,
			      .block_kick = true };

	run_sigsleep(&c);
	assert_last_sleep_sigwaited(&c);
	ck_assert(!is_pending(SIGURG));
}
END_TEST

static void watch_sleeping(struct sigsleep *c)
{
	atomic_store(&c->seen_last, wait_asleep_with(c->loop, AF_SLEEP_SIGWAIT));
}

static int sleep_20ms(struct sigsleep *c)
{
	uint64_t t0 = now_ns();
	int r = af_sleep_ms(20);

	c->slept_ns = now_ns() - t0;
	return r;
}

START_TEST(a_sleep_in_sigtimedwait_ends_at_the_next_timer)
{
	struct sigsleep c = { .last = watch_sleeping, .task_last = sleep_20ms };

	run_sigsleep(&c);
	assert_last_sleep_sigwaited(&c);
	ck_assert_uint_ge(c.slept_ns, 20 * (uint64_t)MS);
}
END_TEST

START_TEST(with_af_sigwait_0_a_loop_woken_by_its_signals_sleeps_in_the_ring)
{
	struct sigsleep c = { 0 };

	ck_assert_int_eq(setenv("AF_SIGWAIT", "0", 1), 0);
	run_sigsleep(&c);
	for (int i = 0; i < WARM_SIGNALS; i++)
		ck_assert_msg(!sigwaited(atomic_load(&c.seen[i])), "sleep %d was a sigwait (0x%x)",
			      i, atomic_load(&c.seen[i]));
	ck_assert(current_handler(SIGURG) == SIG_DFL);
}
END_TEST

START_TEST(with_af_park_0_a_loop_woken_by_its_signals_sleeps_in_the_ring)
{
	struct sigsleep c = { 0 };

	run_sigsleep_with(&c, "0");
	for (int i = 0; i < WARM_SIGNALS; i++)
		ck_assert_msg(!sigwaited(atomic_load(&c.seen[i])), "sleep %d was a sigwait (0x%x)",
			      i, atomic_load(&c.seen[i]));
}
END_TEST

/* SIGUSR1 is watched but blocked in no thread: sent to the loop's thread
 * while it sleeps in sigtimedwait() for SIGUSR2, it runs the handler
 * there, which ends the wait and kicks. */
static void *send_unblocked(void *arg)
{
	struct sigsleep *c = arg;

	wait_ready_last(c);
	atomic_store(&c->seen_last, wait_asleep_with(c->loop, AF_SLEEP_SIGWAIT));
	pthread_kill(c->loop_thread, SIGUSR1);
	return NULL;
}

static void unblock_usr1_and_send(struct sigsleep *c)
{
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, send_unblocked, c), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
}

static int watch_usr1_unblocked_and_wait(struct sigsleep *c)
{
	sigset_t usr1;

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL), 0);
	ck_assert_int_eq(af_signal_watch(&c->other, SIGUSR1), 0);
	atomic_store(&c->ready_last, true);
	return af_flag_wait(&c->other);
}

START_TEST(a_watched_signal_the_loop_thread_does_not_block_ends_a_sleep_in_sigtimedwait_through_its_handler)
{
	struct sigsleep c = { .last = unblock_usr1_and_send, .task_last = watch_usr1_unblocked_and_wait };

	run_sigsleep(&c);
	assert_last_sleep_sigwaited(&c);
	ck_assert(!is_pending(SIGUSR1));
}
END_TEST

START_TEST(a_program_with_its_own_sigurg_handler_keeps_its_loops_out_of_sigtimedwait)
{
	struct sigsleep c = { 0 };

	install(SIGURG, own_handler);
	run_sigsleep(&c);
	for (int i = 0; i < WARM_SIGNALS; i++)
		ck_assert_msg(!sigwaited(atomic_load(&c.seen[i])), "sleep %d was a sigwait (0x%x)",
			      i, atomic_load(&c.seen[i]));
	ck_assert(current_handler(SIGURG) == own_handler);
	ck_assert_int_eq(own_handler_runs, 0);
	install(SIGURG, SIG_DFL);
}
END_TEST

/* Signals and sets from two threads at once, each waiting for its own
 * answer: the loop's sleeps go back and forth between sigtimedwait() and
 * the ring as the score moves, and a kick may land after the sleep it was
 * for ended. Nothing may be lost. */
struct sigstorm {
	struct af_flag sig, set;
	_Atomic int sig_acked, set_acked;
	int rounds;
};

static void *storm_signaller(void *arg)
{
	struct sigstorm *c = arg;

	for (int i = 0; i < c->rounds; i++) {
		kill(getpid(), SIGUSR2);
		while (atomic_load(&c->sig_acked) == i)
			sched_yield();
	}
	return NULL;
}

static void *storm_setter(void *arg)
{
	struct sigstorm *c = arg;

	for (int i = 0; i < c->rounds; i++) {
		/* A pause every fourth set, so that signals alone wake the
		 * loop meanwhile and it goes back to sigtimedwait(). */
		if (i % 4 == 0)
			sleep_ms(1);
		af_flag_set(&c->set);
		while (atomic_load(&c->set_acked) == i)
			sched_yield();
	}
	return NULL;
}

static int storm_set_waiter(void *arg)
{
	struct sigstorm *c = arg;

	for (int i = 0; i < c->rounds; i++) {
		ck_assert_int_eq(af_flag_wait(&c->set), 0);
		atomic_store(&c->set_acked, i + 1);
	}
	return 0;
}

static int sigstorm_main(void *arg)
{
	struct sigstorm *c = arg;
	struct af_task *t;
	pthread_t a, b;

	ck_assert_int_eq(af_task_spawn(&t, storm_set_waiter, c), 0);
	ck_assert_int_eq(pthread_create(&a, NULL, storm_signaller, c), 0);
	ck_assert_int_eq(pthread_create(&b, NULL, storm_setter, c), 0);
	for (int i = 0; i < c->rounds; i++) {
		ck_assert_int_eq(af_flag_wait(&c->sig), 0);
		atomic_store(&c->sig_acked, i + 1);
	}
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(pthread_join(a, NULL), 0);
	ck_assert_int_eq(pthread_join(b, NULL), 0);
	return 0;
}

static atomic_int sigwaits_seen;

static void count_sigwaits(enum af__hook_point where, void *obj)
{
	(void)obj;
	if (where == AF_HOOK_SIGWAIT)
		atomic_fetch_add(&sigwaits_seen, 1);
}

START_TEST(signals_and_sets_from_two_threads_lose_no_wake_up_whichever_way_the_loop_sleeps)
{
	struct sigstorm c = { .rounds = (int)test_rounds(2000) };
	struct af_loop *loop;
	sigset_t set = only(SIGUSR2), old;
	int result = 1;

	ck_assert_int_eq(setenv("AF_PARK", "1", 1), 0);
	ck_assert_int_eq(unsetenv("AF_WAKE"), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	loop = new_loop();
	ck_assert_int_eq(af_flag_init(&c.sig, loop), 0);
	ck_assert_int_eq(af_flag_init(&c.set, loop), 0);
	ck_assert_int_eq(af_signal_watch(&c.sig, SIGUSR2), 0);
	atomic_store(&af__test_hook, count_sigwaits);
	ck_assert_int_eq(af_loop_run(loop, sigstorm_main, &c, &result), 0);
	atomic_store(&af__test_hook, NULL);
	ck_assert_int_eq(result, 0);
	/* Some sleeps were sigwaits, or the case tested only the ring. */
	ck_assert_int_gt(atomic_load(&sigwaits_seen), 0);
	af_flag_destroy(&c.set);
	af_flag_destroy(&c.sig);
	af_loop_free(loop);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("signal");
	TCase *tc;
	bool never_sigwaits;
	const TTest *sigwaits[] = {
		a_loop_woken_by_its_signals_sleeps_in_sigtimedwait_and_each_signal_wakes_the_task,
		a_set_from_another_thread_ends_a_sleep_in_sigtimedwait,
		a_set_made_after_the_sleep_is_published_and_before_the_wait_begins_ends_the_wait,
		tasks_run_with_the_signal_mask_the_program_gave_the_loop_thread,
		a_signal_watched_while_the_loop_sleeps_in_sigtimedwait_reaches_its_flag,
		watching_the_kick_signal_itself_ends_the_sleeps_in_sigtimedwait_and_it_reaches_its_flag,
		a_sleep_in_sigtimedwait_ends_at_the_next_timer,
		with_af_sigwait_0_a_loop_woken_by_its_signals_sleeps_in_the_ring,
		with_af_park_0_a_loop_woken_by_its_signals_sleeps_in_the_ring,
		a_watched_signal_the_loop_thread_does_not_block_ends_a_sleep_in_sigtimedwait_through_its_handler,
		a_program_with_its_own_sigurg_handler_keeps_its_loops_out_of_sigtimedwait,
		signals_and_sets_from_two_threads_lose_no_wake_up_whichever_way_the_loop_sleeps,
	};

	tc = tcase_create("delivery");
	tcase_add_test(tc, a_signal_sent_to_the_process_wakes_the_task_waiting_on_the_flag);
	tcase_add_test(tc, a_signal_sent_to_the_sleeping_loop_thread_wakes_the_task_waiting_on_the_flag);
	tcase_add_test(tc, signals_raised_before_the_wait_coalesce_into_one_wake_up);
	tcase_add_test(tc, a_watched_signal_is_installed_with_sa_restart);
	tcase_add_test(tc, a_real_time_signal_can_be_watched);
	tcase_add_test(tc, the_handler_preserves_errno_of_the_code_it_interrupts);
	tcase_add_test(tc, a_signal_arriving_while_a_task_runs_is_seen_by_its_next_wait);
	suite_add_tcase(s, tc);

	tc = tcase_create("storm");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, after_a_storm_of_signals_to_the_loop_thread_the_final_signal_is_observed);
	tcase_add_test(tc, two_signal_storms_on_two_flags_of_one_loop_lose_neither_final_signal);
	suite_add_tcase(s, tc);

	tc = tcase_create("blocked signals");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, a_signal_blocked_in_every_thread_is_read_by_the_loop_and_wakes_the_task);
	tcase_add_test(tc, a_busy_loop_reading_a_blocked_signal_still_wakes_flags_and_gets_the_signal);
	tcase_add_uring_test(tc, a_signal_pending_when_a_busy_loop_rearms_its_read_reaches_the_flag_while_it_is_busy,
			     "the epoll backend sees a signalfd only when the loop waits");
	tcase_add_uring_test(tc, on_a_basic_ring_a_signal_sent_while_the_loop_is_busy_reaches_the_flag_while_it_is_busy,
			     "the epoll backend sees a signalfd only when the loop waits");
	tcase_add_test(tc, a_signal_blocked_only_in_the_loop_thread_reaches_the_flag_both_ways);
	tcase_add_test(tc, a_blocked_real_time_signal_is_read_by_the_loop_like_any_other);
	tcase_add_test(tc, queued_blocked_signals_are_all_read_and_wake_the_task);
	tcase_add_test(tc, a_thousand_signals_blocked_in_every_thread_wake_the_task_a_thousand_times);
	tcase_add_test(tc, an_unwatched_blocked_signal_stays_pending_for_its_next_reader);
	suite_add_tcase(s, tc);

	tc = tcase_create("sleeping for signals");
	/* A lost wake-up hangs: a case takes well under a second otherwise. */
	tcase_set_timeout(tc, 30);
	never_sigwaits = loop_never_sleeps_outside_ring(true);
	for (size_t i = 0; i < sizeof(sigwaits) / sizeof(sigwaits[0]); i++)
		tcase_add_test_unless(tc, sigwaits[i], never_sigwaits,
				      "only an io_uring loop with DEFER_TASKRUN, outside ppoll mode "
				      "(TSan, valgrind), sleeps in sigtimedwait()");
	suite_add_tcase(s, tc);

	tc = tcase_create("watch and unwatch");
	tcase_add_test(tc, watching_a_watched_signal_with_another_flag_fails_with_ebusy);
	tcase_add_test(tc, watching_an_invalid_or_reserved_signal_fails_with_einval);
	tcase_add_test(tc, unwatching_a_signal_that_is_not_watched_fails_with_enoent);
	tcase_add_test(tc, unwatch_restores_the_handler_that_was_there_before);
	tcase_add_test(tc, destroying_a_flag_unwatches_its_signals);
	tcase_add_test(tc, unwatch_returns_only_after_a_handler_running_on_another_thread_has_left);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
