/* SPDX-License-Identifier: MIT */
/* The event loop: a FIFO run queue merged with a timer heap, and one
 * kernel wait per iteration when nothing is runnable, through the loop's
 * backend (io_uring or epoll: src/loop/). Wake-ups from other threads and
 * signal handlers arrive through flag.c's pending stack and, if the loop
 * sleeps, a write to its eventfd. */
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop/backend.h"
#include "prefetch.h"
#include "syscall.h"

#if AF_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

__thread struct af_loop *af__tls_loop __attribute__((tls_model("initial-exec")));

/* Under valgrind and ThreadSanitizer the loop sleeps in ppoll rather than
 * io_uring_enter: valgrind holds its big lock across a system call it does
 * not know to block (starving the threads that would wake us), and TSan
 * delivers a signal only inside a libc call it intercepts, while liburing
 * enters the kernel without libc. ppoll is known to both. The ring is then
 * a plain one: with COOP_TASKRUN or DEFER_TASKRUN completions are posted
 * only when we enter io_uring, so polling its fd would never wake. */
static bool sleep_in_ppoll_mode(void)
{
#if AF_TSAN
	return true;
#else
	return RUNNING_ON_VALGRIND;
#endif
}

#define AF_RING_DEFAULT 256u
#define AF_RING_MAX 32768u
#define AF_STACK_CACHE_DEFAULT 64u
#define AF_STACK_CACHE_MAX 4096u

_Static_assert(sizeof(pthread_t) <= sizeof(unsigned long),
	       "the loop keeps its owner thread in an atomic unsigned long");

static int opts_check(const struct af_loop_opts *o)
{
	if (!o)
		return 0;
	if (o->flags & ~(AF_LOOP_BASIC_RING | AF_LOOP_BACKEND_IO_URING | AF_LOOP_BACKEND_EPOLL))
		return -EINVAL;
	if ((o->flags & AF_LOOP_BACKEND_IO_URING) && (o->flags & AF_LOOP_BACKEND_EPOLL))
		return -EINVAL;
	if (o->ring_entries > AF_RING_MAX)
		return -EINVAL;
	if (o->stack_size && (o->stack_size < AF_STACK_MIN || o->stack_size > AF_STACK_MAX))
		return -EINVAL;
	/* An operation and its linked timeout must fit one submission. */
	if (o->ring_entries == 1)
		return -EINVAL;
	if (o->blocking_threads > 256)
		return -EINVAL;
	if (o->stack_cache > AF_STACK_CACHE_MAX)
		return -EINVAL;
	if (o->spin_ns > AF_LOOP_SPIN_MAX_NS)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(o->_reserved) / sizeof(o->_reserved[0]); i++)
		if (o->_reserved[i])
			return -EINVAL;
	return 0;
}

/* io_uring refused: by seccomp (EPERM, or ENOSYS from a filter that
 * pretends the call does not exist), the kernel.io_uring_disabled sysctl
 * (EPERM), an LSM (EACCES), a kernel without it (ENOSYS) or one too old for
 * even a plain ring (EINVAL: the options were checked already) or for the
 * loop's sleep (EOPNOTSUPP: no IORING_FEAT_EXT_ARG). Running out of memory
 * or descriptors is not a reason to switch: it fails here. */
static bool worth_falling_back(int err)
{
	return err == -EPERM || err == -ENOSYS || err == -EACCES || err == -EINVAL ||
	       err == -EOPNOTSUPP;
}

static int backend_try(struct af_loop *loop, const struct af__backend *b, unsigned entries,
		       unsigned flags)
{
	int r = b->open(loop, entries, flags);

	if (r == 0)
		loop->backend = b;
	return r;
}

/* The option, else AF_BACKEND from the environment, else io_uring with
 * epoll when io_uring cannot be set up. A backend asked for by name is
 * the only one tried: its failure is the caller's answer. */
static int backend_open(struct af_loop *loop, unsigned entries, unsigned flags)
{
	const char *env = getenv("AF_BACKEND");
	int r;

	if (flags & AF_LOOP_BACKEND_EPOLL)
		return backend_try(loop, &af__backend_epoll, entries, flags);
	if (flags & AF_LOOP_BACKEND_IO_URING)
		return backend_try(loop, &af__backend_uring, entries, flags);
	if (env && *env) {
		if (strcmp(env, "epoll") == 0)
			return backend_try(loop, &af__backend_epoll, entries, flags);
		if (strcmp(env, "io_uring") == 0)
			return backend_try(loop, &af__backend_uring, entries, flags);
		af__misuse("af_loop_new",
			   "AF_BACKEND=%s is neither \"epoll\" nor \"io_uring\"; "
			   "choosing automatically", env);
	}
	r = backend_try(loop, &af__backend_uring, entries, flags);
	if (r < 0 && worth_falling_back(r))
		r = backend_try(loop, &af__backend_epoll, entries, flags);
	return r;
}

_Atomic unsigned af__fork_gen;

static void forked_child(void)
{
	atomic_fetch_add_explicit(&af__fork_gen, 1, memory_order_relaxed);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_install(void)
{
	/* Fails only with ENOMEM; then inherited loops go undetected, which
	 * is what fork() gave before: not worth failing af_loop_new(). */
	(void)pthread_atfork(NULL, NULL, forked_child);
}

/* AF_POLL=0: no flag is the polled one (flag.c), every set goes through
 * the pending stack, as before the polled flag: for the tests of the
 * stack and for a comparison. */
static bool poll_allowed(void)
{
	const char *v = getenv("AF_POLL");

	return !v || strcmp(v, "0") != 0;
}

AF_API int af_loop_new(struct af_loop **out, const struct af_loop_opts *opts)
{
	struct af_loop *loop;
	unsigned entries, cache;
	int r;

	af_assert_return(out, -EINVAL);
	r = opts_check(opts);
	if (r < 0) {
		af__misuse(__func__, "an af_loop_opts field is out of range");
		return r;
	}
	pthread_once(&atfork_once, atfork_install);
	/* Aligned as its type says: the flag wake-up fields share one line. */
	loop = aligned_alloc(_Alignof(struct af_loop), sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	memset(loop, 0, sizeof(*loop));
	loop->fork_gen = atomic_load_explicit(&af__fork_gen, memory_order_relaxed);
	entries = opts && opts->ring_entries ? opts->ring_entries : AF_RING_DEFAULT;
	cache = opts && opts->stack_cache ? opts->stack_cache : AF_STACK_CACHE_DEFAULT;
	loop->stack_size = af__stack_round(opts && opts->stack_size ? opts->stack_size
								   : AF_STACK_DEFAULT);
	af__stack_pool_init(&loop->stacks, loop->stack_size, cache);
	/* Blocking: io_uring then polls it for us instead of failing the read
	 * with -EAGAIN; writers never block since the counter cannot come
	 * near its 2^64-2 limit with one write per loop sleep. */
	loop->efd = eventfd(0, EFD_CLOEXEC);
	if (loop->efd < 0) {
		r = -errno;
		goto err_free_stacks;
	}
	loop->ppoll_mode = sleep_in_ppoll_mode();
	r = backend_open(loop, entries, opts ? opts->flags : 0);
	if (r < 0)
		goto err_close_efd;
	loop->ring_entries = entries;
	atomic_init(&loop->pending, NULL);
	atomic_init(&loop->jobs_done, NULL);
	loop->blocking_threads = opts ? opts->blocking_threads : 0;
	loop->spin_ns = opts ? opts->spin_ns : 0;
	loop->may_poll = poll_allowed();
	atomic_init(&loop->sleep_state, AF_AWAKE);
	atomic_init(&loop->refs, 1);
	pthread_mutex_init(&loop->unqueue_lock, NULL);
	*out = loop;
	return 0;

err_close_efd:
	close(loop->efd);
err_free_stacks:
	af__stack_pool_free(&loop->stacks);
	free(loop);
	return r;
}

void af__loop_ref(struct af_loop *loop)
{
	/* relaxed: the caller already holds a reference (af_loop_free() has
	 * not run, by the rules), so the count cannot reach 0 meanwhile. */
	atomic_fetch_add_explicit(&loop->refs, 1, memory_order_relaxed);
}

void af__loop_unref(struct af_loop *loop)
{
	/* acq_rel: the release orders this holder's last use of the struct
	 * before the free; the acquire of the one that frees sees them all. */
	struct af__sigfd *sigfd;

	if (atomic_fetch_sub_explicit(&loop->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Only now: a flag that still watches a signal may change its mask
	 * until it is destroyed. relaxed: the acq_rel decrement above made
	 * every holder's use, af_signal_watch()'s store included, visible
	 * to us, on aarch64 as on x86. */
	sigfd = atomic_load_explicit(&loop->sigfd, memory_order_relaxed);
	if (sigfd) {
		close(sigfd->fd);
		free(sigfd);
	}
	pthread_mutex_destroy(&loop->unqueue_lock);
	free(loop);
}

/* No kick may write the eventfd once it is closed: its number may be
 * reused by then. Kickers that already won the right to write are counted
 * in sleep_state; new ones find DEAD and stop. */
static void kicks_retire(struct af_loop *loop)
{
	/* seq_cst like every other access of sleep_state: a kicker either
	 * loaded its state before this (and is counted, or sees AWAKE) or
	 * sees DEAD. */
	atomic_fetch_or_explicit(&loop->sleep_state, AF_DEAD, memory_order_seq_cst);
	/* acquire pairs with the kickers' releasing decrement: their write
	 * is done before we close. Only their counts are waited for: PARKED
	 * and SIGWAIT are never set outside a sleep, but they are not kickers. */
	while (atomic_load_explicit(&loop->sleep_state, memory_order_acquire) &
	       ~(AF_SLEEP_MASK | AF_SLEEP_HOW))
		sched_yield();
}

/* In a child of fork(): the ring is not mapped here and the blocking
 * pool's threads were not copied. Release what is this process's own and
 * leave the rest alone; the parent's loop is untouched. */
static void loop_free_inherited(struct af_loop *loop)
{
	struct af__node *n;

	while ((n = loop->tasks.head) != NULL)
		af__task_free(af__container_of(n, struct af_task, all_node));
	af__cohorts_free(loop);
	af__timer_heap_free(&loop->timers);
	af__stack_pool_free(&loop->stacks);
	loop->backend->forget(loop);
	close(loop->efd);
	loop->efd = -1;
	atomic_fetch_or_explicit(&loop->sleep_state, AF_DEAD, memory_order_seq_cst);
	af__loop_unref(loop);
}

AF_API void af_loop_free(struct af_loop *loop)
{
	struct af__node *n;
	unsigned long flags;

	if (!loop)
		return;
	if (atomic_load_explicit(&loop->running, memory_order_relaxed)) {
		af__misuse(__func__, "the loop is running; free it after af_loop_run() returns");
		return;
	}
	if (af__loop_forked(loop)) {
		loop_free_inherited(loop);
		return;
	}
	af__blocking_shutdown(loop);
	af__flag_release_all(loop);
	while ((n = loop->tasks.head) != NULL)
		af__task_free(af__container_of(n, struct af_task, all_node));
	af__cohorts_free(loop);
	af__timer_heap_free(&loop->timers);
	af__stack_pool_free(&loop->stacks);
	loop->backend->close(loop);
	kicks_retire(loop);
	close(loop->efd);
	loop->efd = -1;
	flags = atomic_load_explicit(&loop->refs, memory_order_relaxed) - 1;
	if (flags)
		af__misuse(__func__, "%lu flag(s) of this loop were not destroyed; the loop "
				     "keeps a small record of itself until they are, so that "
				     "their sets do nothing harmful", flags);
	af__loop_unref(loop);
}

AF_API struct af_loop *af_loop_current(void)
{
	return af__tls_loop;
}

AF_API unsigned af_loop_features(const struct af_loop *loop)
{
	if (!loop)
		return 0;
	return loop->features | loop->backend->feature | af__ctx_features();
}

/* ---- the run queue --------------------------------------------------------- */

void af__loop_unqueue(struct af_loop *loop, struct af_task *t)
{
	af__list_remove(&loop->runq, &t->link);
	loop->runq_len--;
	/* A task of the current round leaves early (cancelled before it
	 * ran): the round has one task fewer to run. */
	if (t->round != loop->round && loop->budget > 0)
		loop->budget--;
}

static struct af_task *runq_pop(struct af_loop *loop)
{
	struct af_task *t = af__container_of(af__list_pop_front(&loop->runq), struct af_task, link);

	loop->runq_len--;
	af__task_dequeued(loop, t);
	return t;
}


/* Timers that fell due are queued by their due time: one goes before the
 * head of the run queue if it fell due before that task was queued. With
 * the queue empty it only has to be due. */
static bool timer_first(struct af_loop *loop, const struct af__timer *tm)
{
	/* Only timers that were due when the batch began: one re-armed by a
	 * task of this batch (a zero timeout in a loop) waits for the next,
	 * so wake-ups are still collected between batches. */
	if (tm->deadline >= loop->batch_start)
		return false;
	if (loop->runq_len > 0) {
		const struct af_task *head =
			af__container_of(loop->runq.head, struct af_task, link);

		/* One spliced by a set was queued when the set ran. */
		return tm->deadline <= (head->cohort ? head->cohort->stamp : head->stamp);
	}
	return true;
}

/* The task to run now for a due timer; NULL when a set had woken it before
 * (spliced, its wake not yet given): the wake would have disarmed the
 * timer, so it is disarmed and the task keeps its place. */
static struct af_task *timer_fire(struct af_loop *loop, struct af__timer *tm)
{
	struct af_task *t = af__container_of(tm, struct af_task, timer);

	if (af__task_spliced(t)) {
		af__cohort_settle(loop, t, 0);
		return NULL;
	}
	t->wait_ops->detach(t);
	af__task_wake(t, -ETIMEDOUT);
	loop->outside_wakes++;
	/* af__task_wake queued it at the back; it runs now, in deadline order. */
	af__loop_unqueue(loop, t);
	return t;
}

/* The batch's next task: a due timer's, by time, else the next of the
 * tasks that were runnable when the batch began. NULL once the batch is
 * over, and, if @started_only, before a task that has never run (only the
 * loop's own context starts tasks). */
AF__HOT static struct af_task *batch_next(struct af_loop *loop, bool started_only)
{
	struct af__timer *tm;
	struct af_task *head;

	/* A task forked: in the child, stop before touching anything of the
	 * parent's; af_loop_run() then returns -ECHILD. */
	if (af__loop_forked(loop))
		return NULL;
	/* Past the round's tasks a timer may still fire, but only ahead of
	 * tasks queued after it fell due. */
	while ((tm = af__timer_top(&loop->timers)) != NULL && timer_first(loop, tm)) {
		struct af_task *t = timer_fire(loop, tm);

		if (t)
			return t;
	}
	if (loop->budget == 0)
		return NULL;
	head = af__container_of(loop->runq.head, struct af_task, link);
	if (started_only && !head->started)
		return NULL;
	loop->budget--;
	return runq_pop(loop);
}

/* Run every task that was runnable when the batch began, once, with due
 * timers merged in by time. Tasks queued meanwhile wait for the next batch,
 * after the loop has collected its wake-ups. Tasks that block hand over to
 * one another directly (af__loop_park), so the loop's context may find the
 * batch, or several, already run when it resumes. */
static void run_batch(struct af_loop *loop)
{
	struct af_task *t;

	af__loop_batch_begin(loop);
	while ((t = batch_next(loop, false)) != NULL)
		af__task_run(loop, t);
}

/* Whether the next batch may begin without the loop's context. A fork is
 * caught by batch_next(). */
static bool batch_can_follow(struct af_loop *loop)
{
	return loop->runq_len > 0 && af__loop_quiet(loop);
}

/* The task to switch to straight from one that blocks: what run_batch()
 * would run next, or the first of the next batch when nothing is to be
 * collected in between. NULL: only the loop's context can go on. */
static struct af_task *next_direct(struct af_loop *loop)
{
	struct af_task *t = batch_next(loop, true);

	if (t || loop->budget > 0 || !batch_can_follow(loop))
		return t;
	af__flag_take_polled(loop);
	af__loop_batch_begin(loop);
	return batch_next(loop, true);
}

/* The loop's context is about to collect (a busy loop: tasks ran while a
 * set came in): fetch the pending stack's line and the newest flag's for
 * writing now, while the loop ends its batch, rather than at
 * af__flag_collect()'s exchange and QUEUED clear, which then find them
 * here and owned. Both were last written by the setter, on another CPU.
 * relaxed: only an address to prefetch (a flag on the stack is live:
 * destroy unqueues it first), nothing is read through it here, on aarch64
 * as on x86. */
static void prefetch_collect(struct af_loop *loop)
{
	struct af__flag *f = atomic_load_explicit(&loop->pending, memory_order_relaxed);

	if (f) {
		af__prefetch_write(&loop->pending);
		af__prefetch_write(f);
	}
}

/* Whether the loop's signalfd, if it has one, needs nothing from the
 * loop's context (the backend says: on a DEFER_TASKRUN ring, a read in
 * flight with nothing to submit or reap). A read to arm or submit again,
 * a completion to reap, or the epoll backend's readiness is left to
 * collect(). acquire pairs with af_signal_watch()'s release store: the
 * block's fields are visible, on aarch64 as on x86. */
static bool sigfd_settled(const struct af_loop *loop)
{
	const struct af__sigfd *s = atomic_load_explicit(&loop->sigfd, memory_order_acquire);

	return !s || loop->backend->signalfd_settled(loop, s);
}

/* A batch ended with flags set or jobs finished meanwhile, and nothing
 * else for the loop's context to do before the next batch: no I/O in
 * flight to reap or submit, no eventfd completion to drain, no signalfd
 * read to arm, no task winding down, no fork. Then collect() would only
 * take the two stacks, so take them here, on the stack of the task that
 * parks, and the next batch can begin without two switches through the
 * loop's context: a busy loop's wake-up from another thread. */
static bool collect_here(struct af_loop *loop)
{
	if (loop->budget > 0 || loop->ninflight || loop->efd_expected ||
	    loop->main_task->state == AF_TASK_DONE || af__loop_forked(loop) ||
	    !sigfd_settled(loop))
		return false;
	if (!atomic_load_explicit(&loop->pending, memory_order_relaxed) &&
	    !atomic_load_explicit(&loop->jobs_done, memory_order_relaxed))
		return false;
	prefetch_collect(loop);
	af__flag_collect(loop);
	af__blocking_collect(loop);
	return true;
}

/* af__loop_park() when a timer is armed, the next task never ran, the
 * queue is empty, or the loop has something to collect. */
AF__HOT void af__loop_park_slow(struct af_loop *loop, struct af_task *t)
{
	struct af_task *next = next_direct(loop);

	if (!next && collect_here(loop))
		next = next_direct(loop);
	if (!next) {
		prefetch_collect(loop);
		af__ctx_switch(&t->ctx, &loop->sched_ctx);
	} else {
		next->state = AF_TASK_RUNNING;
		/* The task that blocked runs next (it yielded alone). */
		if (next == t)
			return;
		/* Fan-out: many tasks woken together resume each on a cold
		 * stack and task struct; start their loads one task ahead. */
		af__loop_prefetch(loop);
		af__ctx_switch(&t->ctx, &next->ctx);
	}
	/* Whoever switched back to us (the loop's context or a task that
	 * blocked) left current alone; named only now because until the
	 * switch left our stack a fault on it (an overflow) was ours, and
	 * the overflow report names current. */
	loop->current = t;
}

AF__HOT void af__loop_hop_prefetching(struct af_loop *loop, struct af_task *t, struct af_task *next)
{
	/* Fan-out: many tasks woken together resume each on a cold stack
	 * and task struct; start their loads one task ahead. */
	af__task_prefetch_queue(loop);
	/* The task that blocked runs next (it yielded alone). */
	if (next == t)
		return;
	af__ctx_switch(&t->ctx, &next->ctx);
	/* As in af__loop_park(): only now, for the overflow report. */
	loop->current = t;
}

/* ---- collecting wake-ups ---------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* Flag and job checks between two clock reads: a few microseconds of
 * pause instructions, so the clock costs little of the spin. */
#define SPIN_CHECKS 64

/* Whether the polled flag (flag.c) has been set: a hint, for the spin. */
static bool polled_set(const struct af_loop *loop)
{
	return loop->polled &&
	       (atomic_load_explicit(&loop->polled->state, memory_order_relaxed) & AF_FLAG_SET);
}

/* The polled flag's half of sleep_until()'s handshake, after SLEEPING is
 * published: turn SLEEPER on in its word, so that a set from now on kicks,
 * and say whether one came first. The set's CAS and this RMW are on one
 * word, so coherence alone puts one before the other: either we see SET
 * or the set sees SLEEPER, on aarch64 as on x86. release: a set whose
 * acquiring CAS reads SLEEPER then sees SLEEPING, which came before in
 * this thread, so the kick's load of sleep_state finds the sleep (or a
 * later state, when someone kicked it already).
 * Nothing turns SLEEPER off after the sleep: the woken waiter's clear
 * does, or its detach. A loop that woke for anything else leaves it, and
 * at most one set, the next, then counts itself busy for nothing and finds
 * the loop awake. Clearing it here would put one more RMW on every cold
 * wake-up's path to spare that one set its busy count. */
static bool polled_arm_sleep(struct af_loop *loop)
{
	return loop->polled && (atomic_fetch_or_explicit(&loop->polled->state, AF_FLAG_SLEEPER,
							 memory_order_release) &
				AF_FLAG_SET);
}

/* af_loop_opts.spin_ns: look for sets and finished jobs for a while before
 * sleeping. sleep_state stays AWAKE meanwhile, so a set that lands now
 * costs its setter no system call and the loop no kernel wake-up. I/O in
 * flight is peeked at between clock reads, so the spin delays no completion
 * by more than one batch of checks. Returns true when there is something
 * to run: the sleep is skipped. */
static bool spin_for_wakeups(struct af_loop *loop, uint64_t deadline)
{
	uint64_t now = af__now_ns();
	uint64_t end = deadline > now && deadline - now > loop->spin_ns ? now + loop->spin_ns
									 : deadline;

	do {
		loop->backend->peek(loop);
		if (loop->runq_len > 0)
			return true;
		for (unsigned i = 0; i < SPIN_CHECKS; i++) {
			/* relaxed: only a hint that the collect after us will
			 * find something; its acquiring exchange is what orders
			 * the flags' fields. A relaxed load still sees the push
			 * within the spin on aarch64 as on x86 (coherence), and
			 * one it misses is caught by the seq_cst handshake in
			 * sleep_until() (for the polled flag, by its OR). */
			if (atomic_load_explicit(&loop->pending, memory_order_relaxed) ||
			    atomic_load_explicit(&loop->jobs_done, memory_order_relaxed) ||
			    polled_set(loop))
				return true;
			cpu_relax();
		}
	} while (af__now_ns() < end);
	return false;
}

/* Back from a sleep that a flag's set may have ended: the flag was last
 * written by its setter, on another CPU as often as not, so its line is
 * not here. Start fetching the newest one now, while the loop ends its
 * sleep and reaps, rather than when af__flag_collect() reads it: on the
 * 2-vCPU VM, setter and loop on two CPUs, that took 20-40 ns of the
 * ~400 from the kernel's return to the woken task on a quiet machine and
 * 100-130 ns of ~1000 under load. On one CPU the line is here and this
 * costs a load of a line the loop needs next anyway. A prefetch never
 * faults, and a flag on the stack is live (destroy unqueues it first).
 * relaxed: only an address to prefetch, nothing is read through it here;
 * af__flag_collect()'s acquiring exchange orders the flag's fields, on
 * aarch64 as on x86. */
static void prefetch_pending(struct af_loop *loop)
{
	struct af__flag *f = atomic_load_explicit(&loop->pending, memory_order_relaxed);

	if (f)
		__builtin_prefetch(f);
	/* The polled flag's waiter clears the word: fetch it for writing. */
	if (loop->polled)
		af__prefetch_write(&loop->polled->state);
}

/* Sleep in FUTEX_WAIT on sleep_state, while it still reads SLEEPING, until
 * a kick's FUTEX_WAKE, a signal or @deadline (CLOCK_MONOTONIC, absolute, as
 * af__now_ns()). @s is the word as the loop published it. The backend had
 * nothing for the loop (parkable), so nothing but a kick, a signal or a
 * timer can end the sleep, and a bare futex wait is the cheapest the kernel
 * has: on the 2-vCPU VM, setter and loop on one CPU after an idle gap, an
 * io_uring wait took 300-700 ns longer to return after its wake-up than a
 * blocking read(2) of an eventfd (bench/README.md, row 1, session 13). The
 * kernel compares the word with @s under its hash bucket's lock: a kick
 * that moved it on before the wait was queued makes it fail with -EAGAIN,
 * and one after finds the wait queued. -EAGAIN also comes when an earlier
 * sleep's kicker dropped its count: then wait again for the new value.
 * relaxed: a stale SLEEPING only costs one more compare in the kernel,
 * which reads the word itself, on aarch64 as on x86. */
static void park(struct af_loop *loop, unsigned s, uint64_t deadline)
{
	struct __kernel_timespec ts, *tsp = NULL;
	long r;

	if (deadline != UINT64_MAX) {
		ts.tv_sec = (long long)(deadline / 1000000000u);
		ts.tv_nsec = (long long)(deadline % 1000000000u);
		tsp = &ts;
	}
	while ((r = af__syscall6(AF__NR_FUTEX_TS64, (long)&loop->sleep_state,
				 FUTEX_WAIT_BITSET_PRIVATE, (long)s, (long)tsp, 0,
				 (long)FUTEX_BITSET_MATCH_ANY)) == -EAGAIN) {
		s = atomic_load_explicit(&loop->sleep_state, memory_order_relaxed);
		if ((s & AF_SLEEP_MASK) != AF_SLEEPING)
			return;
	}
	/* Refused (a seccomp profile: older container profiles for 32-bit
	 * Arm refuse the *_time64 calls with EPERM): this sleep ends at once,
	 * a spare turn of the loop, and every later one is in the ring. */
	if (r < 0 && r != -EINTR && r != -ETIMEDOUT)
		loop->may_park = false;
}

/* ---- sleeping for signals ---------------------------------------------------- */

/* 1 when the kick signal's disposition is SIG_DFL or SIG_IGN, so that the
 * program does not use it: then a loop may sleep in sigtimedwait() and
 * take it as its kick. -1 when the program has a handler for it: its own
 * sends would end our sleeps, and our kicks could reach its handler. Read
 * once per process, as a disposition is process-wide; the library never
 * changes it. */
static _Atomic int kick_signal_free;
static pthread_once_t kick_signal_once = PTHREAD_ONCE_INIT;

static void kick_signal_check(void)
{
	struct sigaction old;
	int free = -1;

	if (sigaction(AF__KICK_SIGNAL, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
	    (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN))
		free = 1;
	/* release pairs with the acquire in af__loop_sigwait_wanted(); only
	 * the value is read through it, on aarch64 as on x86. */
	atomic_store_explicit(&kick_signal_free, free, memory_order_release);
}

/* A sleep in sigtimedwait() begins with the kick signal blocked in the
 * loop's thread, before SLEEPING is published, and ends with it unblocked
 * again, after the wait: a kick sent between the two stays pending until
 * the wait takes it, whatever its disposition (the kernel drops an
 * ignored signal only when it is not blocked). Unblocked, a late kick is
 * ignored (SIG_DFL ignores SIGURG): nothing is left pending, and the
 * thread's mask is the program's again while tasks run. (A program that
 * blocks SIGURG itself keeps a late kick pending: it ends the next such
 * sleep at once, a spare turn.) Two rt_sigprocmask calls per such sleep,
 * about 0.04x of row 2 on the 2-vCPU VM. Returns 1 when this call blocked
 * it, 0 when the program had, and -1 when it could not; @old is the
 * thread's mask before. */
static sigset_t kick_set(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, AF__KICK_SIGNAL);
	return set;
}

static int kick_block(sigset_t *old)
{
	sigset_t set = kick_set();

	if (pthread_sigmask(SIG_BLOCK, &set, old) != 0)
		return -1;
	return sigismember(old, AF__KICK_SIGNAL) == 0;
}

static void kick_unblock(void)
{
	sigset_t set = kick_set();

	(void)pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Signals read in a row weigh towards a sleep in sigtimedwait(), kicks
 * against it: a loop woken by its signals sleeps where a signal reaches
 * it soonest, and one woken by flags, where a FUTEX_WAKE or an eventfd
 * write does (a signal sent as the kick costs more than either). */
#define SIGNAL_SCORE_MAX 3
#define SIGNAL_SCORE_SIGWAIT 2

/* AF_SIGWAIT=0 keeps a loop that watches signals out of sigtimedwait(),
 * while parking as before: for the tests, for a comparison, and for a
 * program that sends itself SIGURG. */
static bool sigwait_allowed(void)
{
	const char *v = getenv("AF_SIGWAIT");

	return !v || strcmp(v, "0") != 0;
}

bool af__loop_sigwait_wanted(struct af_loop *loop)
{
	if (!loop->may_sigwait || loop->signal_score < SIGNAL_SCORE_SIGWAIT)
		return false;
	pthread_once(&kick_signal_once, kick_signal_check);
	if (atomic_load_explicit(&kick_signal_free, memory_order_acquire) == 1)
		return true;
	loop->may_sigwait = false;
	return false;
}

void af__loop_kick_signal_taken(void)
{
	/* After the check, so that it cannot overwrite this. release, as
	 * there; a loop asleep in sigtimedwait() now sees it at its next
	 * sleep. */
	pthread_once(&kick_signal_once, kick_signal_check);
	atomic_store_explicit(&kick_signal_free, -1, memory_order_release);
}

void af__loop_kick_if_sigwait(struct af_loop *loop)
{
	/* seq_cst: the caller's seq_cst store of the new mask comes first
	 * in the single total order; see sleep_for_signals(). A loop not
	 * in sigtimedwait() needs no kick: the signalfd's read in flight
	 * takes the new mask itself. */
	if (atomic_load_explicit(&loop->sleep_state, memory_order_seq_cst) & AF_SLEEP_SIGWAIT)
		af__loop_kick(loop);
}

void af__loop_signal_read(struct af_loop *loop)
{
	if (loop->signal_score < SIGNAL_SCORE_MAX)
		loop->signal_score++;
}

/* A kick ended the sleep: a signal handler's (signal.c counts those), or
 * a set from elsewhere. relaxed: a hint, see signal.c. */
static void note_kick(struct af_loop *loop)
{
	/* The load first: no locked RMW on a wake-up that no handler made. */
	if (atomic_load_explicit(&loop->signal_sets, memory_order_relaxed) &&
	    atomic_exchange_explicit(&loop->signal_sets, 0, memory_order_relaxed))
		af__loop_signal_read(loop);
	else if (loop->signal_score > 0)
		loop->signal_score--;
}

/* Sleep in sigtimedwait() for the signals the loop's signalfd reads and the
 * kick signal, until one is pending for this thread or the process, or
 * @deadline. @watched is the signalfd's mask, read after the sleep was
 * published: a watch that changes it after that kicks. The signalfd's read
 * stays in flight in the ring, which only sees, at its next entry, that
 * the signal is gone. Returns the signal taken, or 0. The wait takes a
 * signal as a blocking read(2) of the signalfd would, and on the 2-vCPU
 * VM, one CPU, after a 50 us gap, returned as soon after a tgkill() as that
 * read (4.28-4.29 us p50 against 4.30-4.32), where an io_uring read of the
 * signalfd took about 1.2x as long (bench/README.md, row 2). */
static int wait_for_signals(struct af_loop *loop, uint64_t watched, const sigset_t *mask,
			    uint64_t deadline)
{
	struct timespec ts, *tsp = NULL;
	sigset_t set;
	int r;

	/* Only the watched signals this thread blocks, as the signalfd's read
	 * would see them: one it does not block goes to its handler, which
	 * ends the wait (EINTR) and kicks, as it always did. */
	sigemptyset(&set);
	for (uint64_t w = watched; w; w &= w - 1)
		if (sigismember(mask, __builtin_ctzll(w) + 1) == 1)
			sigaddset(&set, __builtin_ctzll(w) + 1);
	sigaddset(&set, AF__KICK_SIGNAL);
	if (deadline != UINT64_MAX) {
		uint64_t now = af__now_ns();
		/* Clamped to 2^31 - 1 s: a 32-bit time_t holds it. */
		struct __kernel_timespec k = af__kernel_ts(deadline > now ? deadline - now : 0);

		ts.tv_sec = (time_t)k.tv_sec;
		ts.tv_nsec = (long)k.tv_nsec;
		tsp = &ts;
	}
	r = sigtimedwait(&set, NULL, tsp);
	if (r > 0)
		return r;
	/* EAGAIN is the deadline and EINTR a handler; anything else (a
	 * seccomp profile's EPERM) would come back every time: this sleep
	 * ends at once, and every later one is in the ring. */
	if (errno != EAGAIN && errno != EINTR)
		loop->may_sigwait = false;
	return 0;
}

/* A sleep in sigtimedwait() ended with the loop AWAKE again: hand a watched
 * signal it took to signal.c, as the signalfd's read would have. */
static void sigwait_done(struct af_loop *loop, int signo)
{
	struct af__sigfd *sfd;

	if (signo <= 0 || signo == AF__KICK_SIGNAL)
		return;
	/* relaxed: this thread loaded it non-NULL before the sleep, and it
	 * never changes once set. */
	sfd = atomic_load_explicit(&loop->sigfd, memory_order_relaxed);
	af__loop_signal_read(loop);
	sfd->deliver(signo);
}

/* The SIGWAIT sleep, published: the mask to wait for is read only now.
 * seq_cst pairs with signal.c's store of a new mask, which kicks after
 * it: we see the new mask, or the kick sees SIGWAIT and sends the kick
 * signal, which is in every mask. Acquire alone (RCpc LDAPR on ARMv8.3+)
 * could read the old mask past our publishing RMW. A watch of the kick
 * signal itself ends this loop's sigwaits: its kicks would look like it. */
static int sleep_for_signals(struct af_loop *loop, const sigset_t *mask, uint64_t deadline)
{
	struct af__sigfd *sfd = atomic_load_explicit(&loop->sigfd, memory_order_relaxed);
	uint64_t watched = atomic_load_explicit(&sfd->watched, memory_order_seq_cst);

	if (watched & af__signal_bit(AF__KICK_SIGNAL)) {
		loop->may_sigwait = false;
		return 0;
	}
	af__hook(AF_HOOK_SIGWAIT, loop);
	return wait_for_signals(loop, watched, mask, deadline);
}

/* Block in the kernel until a completion, a kick or @deadline. The
 * sleep_state handshake pairs with af__loop_kick(): we publish SLEEPING
 * and then look for pending flags, finished jobs and a signal watch the
 * last arm did not see; a setter (or af_signal_watch()) publishes its
 * change and then looks at sleep_state. Both sides use seq_cst, so at
 * least one sees the other's store: either we find the change and skip
 * the sleep or the setter finds SLEEPING and kicks. The polled flag's
 * set is seen through its own word instead (polled_arm_sleep()). */
static bool sleep_until(struct af_loop *loop, uint64_t deadline)
{
	unsigned prev, s, how;
	int signo = 0, blocked = 0;
	sigset_t mask;

	if (loop->spin_ns) {
		if (spin_for_wakeups(loop, deadline))
			return false;
		/* The spin's peeks may have reaped the signalfd's read: arm
		 * what the sleep needs again, as collect() did before it, and
		 * look once more if that ran a completion. */
		loop->backend->arm(loop);
		if (loop->runq_len > 0)
			return false;
	}
	how = loop->backend->parkable ? loop->backend->parkable(loop) : 0;
	if (how == AF_SLEEP_SIGWAIT) {
		if (!af__loop_sigwait_wanted(loop)) {
			how = 0;
		} else if ((blocked = kick_block(&mask)) < 0) {
			/* It would fail every time: the ring from now on. */
			loop->may_sigwait = false;
			how = 0;
		}
	}
	s = AF_SLEEPING + how;

	/* AWAKE -> SLEEPING, keeping the count of kickers still writing for
	 * an earlier sleep. Must stay seq_cst (an RMW in the single total
	 * order, before the loads of pending below): weakened to release, or
	 * the loads to acquire (which ARMv8.3+ may compile to RCpc LDAPR),
	 * the store and the loads may be reordered, and a setter that pushed
	 * in between and read AWAKE never writes: a lost wake-up. */
	s += atomic_fetch_add_explicit(&loop->sleep_state, s, memory_order_seq_cst);
	if (atomic_load_explicit(&loop->pending, memory_order_seq_cst) == NULL &&
	    atomic_load_explicit(&loop->jobs_done, memory_order_seq_cst) == NULL &&
	    !polled_arm_sleep(loop) &&
	    (loop->sigfd_known ||
	     atomic_load_explicit(&loop->sigfd, memory_order_seq_cst) == NULL)) {
		if (how == AF_SLEEP_PARKED)
			park(loop, s, deadline);
		else if (how == AF_SLEEP_SIGWAIT)
			signo = sleep_for_signals(loop, &mask, deadline);
		else
			loop->backend->wait(loop, deadline);
		prefetch_pending(loop);
	}
	/* WOKEN means a setter kicked (or is about to); when that kick is an
	 * eventfd write, its completion must be reaped before the next sleep. */
	prev = atomic_fetch_and_explicit(&loop->sleep_state, ~(AF_SLEEP_MASK | AF_SLEEP_HOW),
					 memory_order_seq_cst);
	if (blocked > 0)
		kick_unblock();
	/* A FUTEX_WAKE leaves a completion only if the wait was queued; one
	 * that comes later ends the next sleep at once, which is all it may
	 * cost: nothing is waited for. A parked sleep's kick is a FUTEX_WAKE
	 * and a sigwait's a signal, whatever the backend's is. */
	if ((prev & AF_SLEEP_MASK) == AF_WOKEN) {
		/* Only a loop with signals keeps the score: no other loop
		 * reads signal_sets' line on its wake-up path. */
		if (loop->sigfd_known)
			note_kick(loop);
		if (!loop->kick_futex && !(prev & AF_SLEEP_HOW))
			loop->efd_expected = true;
	}
	/* Only now, AWAKE: the flag's set would otherwise kick this sleep. */
	sigwait_done(loop, signo);
	return how != 0;
}

static bool nothing_can_happen(struct af_loop *loop)
{
	return loop->runq_len == 0 && loop->timers.len == 0 &&
	       loop->nkeepalive == 0 && loop->ninflight == 0 &&
	       atomic_load_explicit(&loop->pending, memory_order_acquire) == NULL &&
	       atomic_load_explicit(&loop->jobs_done, memory_order_acquire) == NULL;
}

/* Gather everything that happened outside the running tasks: flags set,
 * ring completions, and (by sleeping until it) the next timer. Returns
 * -EDEADLK when tasks are alive but nothing could ever wake them. */
static int collect(struct af_loop *loop)
{
	struct af__timer *tm;
	bool parked = false;

	af__flag_collect(loop);
	af__blocking_collect(loop);
	/* A signal watched since the last look needs its signalfd read (or
	 * epoll registration) before the loop can sleep; one watched after
	 * this load is sleep_until()'s to see. relaxed: the arm's own
	 * acquiring load of the same pointer comes after it, and the pointer
	 * only ever goes from NULL to a block. */
	loop->sigfd_known = atomic_load_explicit(&loop->sigfd, memory_order_relaxed) != NULL;
	loop->backend->arm(loop);
	tm = af__timer_top(&loop->timers);
	if (loop->runq_len > 0 || (tm && tm->deadline <= af__now_ns())) {
		/* Runnable work: peek without blocking. */
		loop->backend->peek(loop);
	} else if (nothing_can_happen(loop)) {
		return -EDEADLK;
	} else {
		af__stack_trim(&loop->stacks);
		/* Parked, the backend had nothing in flight and still has
		 * nothing to reap or arm: the kick's wake of a ring futex wait
		 * queued earlier leaves its completion in the kernel (with
		 * DEFER_TASKRUN, until the next io_uring_enter), a spare
		 * wake-up for the next sleep in the ring. On one CPU after an
		 * idle gap, the reap and arm code, the ring's lines and the
		 * backend's table were a fifth of the time from the kernel's
		 * return to the woken task. */
		parked = sleep_until(loop, tm ? tm->deadline : UINT64_MAX);
		if (!parked)
			loop->backend->reap(loop);
	}
	if (!parked)
		loop->backend->arm(loop);
	af__flag_collect(loop);
	af__blocking_collect(loop);
	return 0;
}

/* ---- running ------------------------------------------------------------- */

/* Cancel every live task created after task id @after. Reads the next
 * node first: cancelling a detached task that never ran frees it. */
static void cancel_newer(struct af_loop *loop, uint64_t after)
{
	for (struct af__node *n = loop->tasks.head; n;) {
		struct af_task *t = af__container_of(n, struct af_task, all_node);

		n = n->next;
		if (t->id > after && t->state != AF_TASK_DONE)
			af__task_cancel(t);
	}
}

static void abandon_all(struct af_loop *loop)
{
	for (struct af__node *n = loop->tasks.head; n;) {
		struct af_task *t = af__container_of(n, struct af_task, all_node);

		n = n->next;
		if (t->state != AF_TASK_DONE)
			af__task_abandon(t);
	}
}

/* Run until @main ends, then cancel what is left (and whatever those tasks
 * spawn while they unwind) and run until every task has ended.
 * A deadlock gets a round of cancellation to unwind. If the tasks block
 * again on nothing before anything from outside woke one of them, they
 * are abandoned. */
static int drive(struct af_loop *loop, struct af_task *main)
{
	uint64_t cancelled_upto = 0, wakes_at_deadlock = 0, tasks_at_deadlock = 0;
	bool winding_down = false, deadlocked = false;

	while (loop->nalive > 0) {
		run_batch(loop);
		if (af__loop_forked(loop)) {
			af__misuse("af_loop_run", "a task called fork(): in the child the "
				   "parent's loop is unusable; exec or _exit in the child");
			return -ECHILD;
		}
		/* No continue after it: wake-ups are still collected while a
		 * task that keeps spawning unwinds. */
		if (main->state == AF_TASK_DONE && loop->nalive > 0 &&
		    (!winding_down || loop->task_seq > cancelled_upto)) {
			cancel_newer(loop, winding_down ? cancelled_upto : 0);
			cancelled_upto = loop->task_seq;
			winding_down = true;
		}
		if (loop->nalive == 0)
			break;
		if (collect(loop) == -EDEADLK) {
			/* Abandon only the same tasks blocking on nothing again:
			 * not after an outside wake, nor when new tasks exist. */
			if (deadlocked && loop->outside_wakes == wakes_at_deadlock &&
			    loop->task_seq == tasks_at_deadlock) {
				abandon_all(loop);
				break;
			}
			af__misuse("af_loop_run",
				   "deadlock: %zu task(s) wait on events, locks or joins that no "
				   "runnable task, timer, flag or I/O can complete; cancelling them",
				   loop->nalive);
			deadlocked = true;
			wakes_at_deadlock = loop->outside_wakes;
			tasks_at_deadlock = loop->task_seq;
			cancel_newer(loop, 0);
		}
	}
	return deadlocked ? -EDEADLK : 0;
}

static int bind_thread(struct af_loop *loop)
{
	unsigned long self = (unsigned long)pthread_self();
	unsigned long owner = 0;
	int r;

	/* relaxed: a misuse check; the CAS below settles races, and the
	 * thread that wins is the only one that goes on to touch the kernel. */
	if (!atomic_compare_exchange_strong_explicit(&loop->owner, &owner, self,
						     memory_order_relaxed, memory_order_relaxed))
		return owner == self ? 0 : -EPERM;
	r = loop->backend->bind(loop);
	if (r < 0) {
		atomic_store_explicit(&loop->owner, 0, memory_order_relaxed);
		return r;
	}
	/* For the kick of a sleep in sigtimedwait(): the thread never
	 * changes, and a loop never runs in a child of fork(). */
	loop->pid = getpid();
	loop->tid = (int)syscall(SYS_gettid);
	loop->may_sigwait = loop->may_park && sigwait_allowed();
	return 0;
}

AF__HOT AF_API int af_loop_run(struct af_loop *loop, af_task_fn main, void *arg, int *result)
{
	struct af_task *mt;
	void *altstack;
	int r;

	af_assert_return(loop && main, -EINVAL);
	if (af__loop_forked(loop)) {
		af__misuse(__func__, "the loop was created before fork(): a child process "
				     "cannot use it; exec, _exit, or create a new loop");
		return -ECHILD;
	}
	if (af__tls_loop)
		return af__tls_loop == loop ? -EBUSY : -EPERM;
	r = bind_thread(loop);
	if (r < 0) {
		af__misuse(__func__, "a loop runs only on the thread that first ran it");
		return r;
	}
	r = af__overflow_guard_enter(&altstack);
	if (r < 0)
		return r;
	r = af__task_new(loop, &mt, main, arg, &(struct af_task_opts){ .name = "main" });
	if (r < 0)
		goto out_guard;
	mt->is_main = true;
	loop->main_task = mt;

	af__tls_loop = loop;
	atomic_store_explicit(&loop->running, true, memory_order_relaxed);
	af__ctx_init_thread(&loop->sched_ctx);
	loop->backend->arm(loop);
	r = drive(loop, mt);
	if (result)
		*result = mt->state == AF_TASK_DONE ? mt->result : r;
	loop->main_task = NULL;
	af__task_free(mt);
	af__ctx_destroy(&loop->sched_ctx);
	atomic_store_explicit(&loop->running, false, memory_order_relaxed);
	af__tls_loop = NULL;
out_guard:
	af__overflow_guard_leave(altstack);
	return r;
}

AF_API int af_run(af_task_fn main, void *arg)
{
	struct af_loop *loop;
	int r, result = 0;

	af_assert_return(main, -EINVAL);
	r = af_loop_new(&loop, NULL);
	if (r < 0)
		return r;
	r = af_loop_run(loop, main, arg, &result);
	af_loop_free(loop);
	return r < 0 && r != -EDEADLK ? r : result;
}

AF__HOT void af__loop_kick(struct af_loop *loop)
{
	uint64_t one = 1;
	/* seq_cst pairs with sleep_until(): this load follows the setter's
	 * seq_cst push in the single total order. Weakened to acquire (RCpc
	 * LDAPR on ARMv8.3+ may then read an older value past the push), it
	 * may see AWAKE while the loop, not seeing the push, sleeps: a lost
	 * wake-up. A set for the polled waiter has no push: its CAS read the
	 * loop's releasing OR of SLEEPER, which came after SLEEPING, so this
	 * load sees the sleep (or later) by happens-before alone. Only the
	 * setter that moves SLEEPING to WOKEN writes, so a storm of sets costs
	 * one write per loop sleep, none while awake. */
	unsigned s = atomic_load_explicit(&loop->sleep_state, memory_order_seq_cst);

	/* Retry while still SLEEPING: the CAS also fails when a kicker of an
	 * earlier sleep drops its count, and giving up then would leave this
	 * sleep unwoken. Winning counts us as a kicker until our write is
	 * done, so that af_loop_free() closes the eventfd only after it. */
	do {
		if ((s & AF_SLEEP_MASK) != AF_SLEEPING)
			return;
	} while (!atomic_compare_exchange_weak_explicit(
		&loop->sleep_state, &s, (s & ~AF_SLEEP_MASK) + AF_WOKEN + AF_KICKER_ONE,
		memory_order_seq_cst, memory_order_seq_cst));
	af__hook(AF_HOOK_KICK_WRITE, loop);
	/* A parked loop waits on sleep_state in its own FUTEX_WAIT, and in
	 * futex mode a ring wait queued at an earlier sleep may wait there
	 * too: wake both, or FUTEX_WAKE's one might be the ring's. That one's
	 * completion is a spare wake-up, reaped later. Otherwise: kick_futex
	 * was written before the loop first published SLEEPING, which our
	 * seq_cst load above read from (or from later in its RMW chain): it
	 * is visible, on aarch64 as on x86. The loop's ring waits on
	 * sleep_state itself, queued only while it still read SLEEPING, so
	 * this wake reaches it or the wait was never queued (-EAGAIN). */
	if (s & AF_SLEEP_PARKED)
		(void)af__syscall3(AF__NR_FUTEX_TS64, (long)&loop->sleep_state, FUTEX_WAKE_PRIVATE,
				   INT_MAX);
	/* pid and tid were written at the loop's first run, before its
	 * first SLEEPING, which our seq_cst load read from or after. Sent to
	 * the thread, so no other thread can take it; async-signal-safe. */
	else if (s & AF_SLEEP_SIGWAIT)
		(void)af__syscall3(SYS_tgkill, loop->pid, loop->tid, AF__KICK_SIGNAL);
	else if (loop->kick_futex)
		(void)af__syscall3(AF__NR_FUTEX_TS64, (long)&loop->sleep_state, FUTEX_WAKE_PRIVATE, 1);
	/* EAGAIN (counter full) cannot lose the wake: the count is non-zero. */
	else
		(void)af__syscall3(SYS_write, loop->efd, (long)&one, sizeof(one));
	/* release pairs with kicks_retire(): the write happened first. */
	atomic_fetch_sub_explicit(&loop->sleep_state, AF_KICKER_ONE, memory_order_release);
}
