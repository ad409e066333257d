/* SPDX-License-Identifier: MIT */
/* The event loop: a FIFO run queue merged with a timer heap, and one
 * io_uring wait per iteration when nothing is runnable. Wake-ups from other
 * threads and signal handlers arrive through flag.c's pending stack and, if
 * the loop sleeps, a read kept armed on an eventfd. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

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

static void efd_complete(struct af_loop *loop, struct af__op *op, int res, unsigned flags);

/* ---- ring set-up ------------------------------------------------------------ */

/* Best first. DEFER_TASKRUN (6.1) needs SINGLE_ISSUER (6.0); COOP_TASKRUN
 * is 5.19. R_DISABLED lets the ring bind its single issuer to the thread
 * that first runs the loop rather than the one that created it. */
static const struct {
	unsigned setup;
	unsigned features;
} ring_modes[] = {
	{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
	  AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER | AF_FEATURE_DEFER_TASKRUN },
	{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED,
	  AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER },
	{ IORING_SETUP_COOP_TASKRUN, AF_FEATURE_COOP_TASKRUN },
	{ 0, 0 },
};

static int ring_open(struct af_loop *loop, unsigned entries, bool basic)
{
	size_t first = basic ? sizeof(ring_modes) / sizeof(ring_modes[0]) - 1 : 0;
	int r = -EINVAL;

	for (size_t i = first; i < sizeof(ring_modes) / sizeof(ring_modes[0]); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = ring_modes[i].setup | IORING_SETUP_CLAMP;
		r = io_uring_queue_init_params(entries, &loop->ring, &p);
		if (r == 0) {
			loop->features = ring_modes[i].features;
			return 0;
		}
		/* Only "this kernel does not know that flag" is worth a retry;
		 * -EPERM, -ENOSYS and -ENOMEM will not change. */
		if (r != -EINVAL)
			return r;
	}
	return r;
}

static int opts_check(const struct af_loop_opts *o)
{
	if (!o)
		return 0;
	if (o->flags & ~AF_LOOP_BASIC_RING)
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
	for (size_t i = 0; i < sizeof(o->_reserved) / sizeof(o->_reserved[0]); i++)
		if (o->_reserved[i])
			return -EINVAL;
	return 0;
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
	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	entries = opts && opts->ring_entries ? opts->ring_entries : AF_RING_DEFAULT;
	cache = opts && opts->stack_cache ? opts->stack_cache : AF_STACK_CACHE_DEFAULT;
	loop->stack_size = af__stack_round(opts && opts->stack_size ? opts->stack_size
								   : AF_STACK_DEFAULT);
	loop->stacks.size = loop->stack_size;
	loop->stacks.cap = cache;
	loop->stacks.items = calloc(cache, sizeof(*loop->stacks.items));
	if (!loop->stacks.items) {
		r = -ENOMEM;
		goto err_free_loop;
	}
	/* Blocking: io_uring then polls it for us instead of failing the read
	 * with -EAGAIN; writers never block since the counter cannot come
	 * near its 2^64-2 limit with one write per loop sleep. */
	loop->efd = eventfd(0, EFD_CLOEXEC);
	if (loop->efd < 0) {
		r = -errno;
		goto err_free_stacks;
	}
	loop->ppoll_mode = sleep_in_ppoll_mode();
	r = ring_open(loop, entries,
		      loop->ppoll_mode || (opts && (opts->flags & AF_LOOP_BASIC_RING)));
	if (r < 0)
		goto err_close_efd;
	loop->ring_entries = entries;
	loop->efd_op.complete = efd_complete;
	atomic_init(&loop->pending, NULL);
	atomic_init(&loop->jobs_done, NULL);
	loop->blocking_threads = opts ? opts->blocking_threads : 0;
	atomic_init(&loop->sleep_state, AF_AWAKE);
	*out = loop;
	return 0;

err_close_efd:
	close(loop->efd);
err_free_stacks:
	free(loop->stacks.items);
err_free_loop:
	free(loop);
	return r;
}

AF_API void af_loop_free(struct af_loop *loop)
{
	struct af__node *n;

	if (!loop)
		return;
	if (loop->running) {
		af__misuse(__func__, "the loop is running; free it after af_loop_run() returns");
		return;
	}
	af__blocking_shutdown(loop);
	af__flag_release_all(loop);
	while ((n = loop->tasks.head) != NULL)
		af__task_free(af__container_of(n, struct af_task, all_node));
	af__timer_heap_free(&loop->timers);
	af__stack_pool_free(&loop->stacks);
	io_uring_queue_exit(&loop->ring);
	close(loop->efd);
	free(loop);
}

AF_API struct af_loop *af_loop_current(void)
{
	return af__tls_loop;
}

AF_API unsigned af_loop_features(const struct af_loop *loop)
{
	if (!loop)
		return 0;
	return loop->features | af__ctx_features();
}

/* ---- the run queue --------------------------------------------------------- */

void af__loop_push(struct af_loop *loop, struct af_task *t)
{
	t->round = loop->round;
	/* Stamps order queued tasks against due timers. With no timer armed
	 * any later timer is due after this push, so 0 orders correctly and
	 * spares the clock read on the hot wake path. */
	t->stamp = loop->timers.len ? af__now_ns() : 0;
	af__list_push_back(&loop->runq, &t->run_node);
	loop->runq_len++;
}

void af__loop_unqueue(struct af_loop *loop, struct af_task *t)
{
	af__list_remove(&loop->runq, &t->run_node);
	loop->runq_len--;
	/* A task of the current round leaves early (cancelled before it
	 * ran): the round has one task fewer to run. */
	if (t->round != loop->round && loop->budget > 0)
		loop->budget--;
}

static struct af_task *runq_pop(struct af_loop *loop)
{
	struct af__node *n = af__list_pop_front(&loop->runq);

	loop->runq_len--;
	return af__container_of(n, struct af_task, run_node);
}

void af__loop_park(struct af_loop *loop, struct af_task *t)
{
	af__ctx_switch(&t->ctx, &loop->sched_ctx);
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
			af__container_of(loop->runq.head, struct af_task, run_node);

		return tm->deadline <= head->stamp;
	}
	return true;
}

static struct af_task *timer_fire(struct af_loop *loop, struct af__timer *tm)
{
	struct af_task *t = af__container_of(tm, struct af_task, timer);

	t->wait_ops->detach(t);
	af__task_wake(t, -ETIMEDOUT);
	loop->outside_wakes++;
	/* af__task_wake queued it at the back; it runs now, in deadline order. */
	af__loop_unqueue(loop, t);
	return t;
}

/* Run every task that was runnable when the batch began, once, with due
 * timers merged in by time. Tasks queued meanwhile wait for the next batch,
 * after the loop has collected its wake-ups. */
static void run_batch(struct af_loop *loop)
{
	/* Tasks queued from now on carry the new round number and wait for
	 * the next batch. */
	loop->round++;
	loop->budget = loop->runq_len;
	loop->batch_start = loop->timers.len ? af__now_ns() : 0;
	for (;;) {
		struct af__timer *tm = af__timer_top(&loop->timers);
		struct af_task *t;

		/* Past the round's tasks a timer may still fire, but only
		 * ahead of tasks queued after it fell due. */
		if (tm && timer_first(loop, tm)) {
			t = timer_fire(loop, tm);
		} else if (loop->budget > 0) {
			t = runq_pop(loop);
			loop->budget--;
		} else {
			break;
		}
		af__task_run(loop, t);
	}
}

/* ---- collecting wake-ups ---------------------------------------------------- */

static void efd_arm(struct af_loop *loop);

static void efd_complete(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	(void)op;
	(void)res;
	(void)flags;
	/* Re-armed by collect() once reaping is over: submitting from inside
	 * reap() could flush, and a flush may reap re-entrantly. */
	loop->efd_armed = false;
	loop->efd_expected = false;
}

static void reap(struct af_loop *loop);

void af__loop_flush(struct af_loop *loop)
{
	int r = io_uring_submit(&loop->ring);

	/* -EBUSY/-EAGAIN: the completion queue is backed up (or the kernel is
	 * short of memory). Consuming completions is what frees it; never
	 * from inside reap() itself, which would see its CQEs twice. */
	if ((r == -EBUSY || r == -EAGAIN) && !loop->reaping) {
		io_uring_get_events(&loop->ring);
		reap(loop);
		io_uring_submit(&loop->ring);
	}
}

struct io_uring_sqe *af__loop_sqe(struct af_loop *loop)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

	/* A full submission queue is flushed, not reported: the kernel copies
	 * the entries at submit time, so there is room again afterwards. */
	while (!sqe) {
		af__loop_flush(loop);
		sqe = io_uring_get_sqe(&loop->ring);
	}
	return sqe;
}

/* Keep a read armed on the eventfd: a setter's write completes it and ends
 * the loop's io_uring wait. */
static void efd_arm(struct af_loop *loop)
{
	struct io_uring_sqe *sqe;

	if (loop->efd_armed)
		return;
	sqe = af__loop_sqe(loop);
	io_uring_prep_read(sqe, loop->efd, &loop->efd_value, sizeof(loop->efd_value), 0);
	io_uring_sqe_set_data(sqe, &loop->efd_op);
	loop->efd_armed = true;
}

static void reap(struct af_loop *loop)
{
	loop->reaping = true;
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		io_uring_for_each_cqe(&loop->ring, head, cqe) {
			struct af__op *op = io_uring_cqe_get_data(cqe);

			seen++;
			if (op)
				op->complete(loop, op, cqe->res, cqe->flags);
		}
		io_uring_cq_advance(&loop->ring, seen);
		/* With IORING_FEAT_NODROP the kernel parks completions that did
		 * not fit; now that there is room, have it flush them. */
		if (!io_uring_cq_has_overflow(&loop->ring))
			break;
		io_uring_get_events(&loop->ring);
	}
	loop->reaping = false;
}

static struct __kernel_timespec ns_to_ts(uint64_t ns)
{
	/* Clamped: see AF_TIMEOUT_MAX_S in timer.c. */
	return af__kernel_ts(ns);
}

/* See sleep_in_ppoll_mode(): wait for the ring or the eventfd in ppoll,
 * then let io_uring post what is ready without blocking. */
static void sleep_in_ppoll(struct af_loop *loop, struct __kernel_timespec *kts)
{
	struct pollfd pfd[2] = {
		{ .fd = loop->ring.ring_fd, .events = POLLIN },
		{ .fd = loop->efd, .events = POLLIN },
	};
	struct timespec ts;

	io_uring_submit(&loop->ring);
	if (io_uring_cq_ready(&loop->ring))
		return;
	if (kts) {
		ts.tv_sec = kts->tv_sec;
		ts.tv_nsec = kts->tv_nsec;
	}
	ppoll(pfd, 2, kts ? &ts : NULL, NULL);
	io_uring_submit_and_get_events(&loop->ring);
}

/* Block in the kernel until a completion, a flag's eventfd write or
 * @deadline. The sleep_state handshake pairs with af__loop_kick(): we
 * publish SLEEPING and then look for pending flags, a setter publishes its
 * flag and then looks at sleep_state. Both sides use seq_cst, so at least
 * one sees the other's store: either we find the flag and skip the sleep or
 * the setter finds SLEEPING and writes the eventfd. */
static void sleep_until(struct af_loop *loop, uint64_t deadline)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	unsigned prev;

	atomic_store_explicit(&loop->sleep_state, AF_SLEEPING, memory_order_seq_cst);
	if (atomic_load_explicit(&loop->pending, memory_order_seq_cst) == NULL &&
	    atomic_load_explicit(&loop->jobs_done, memory_order_seq_cst) == NULL) {
		uint64_t now = deadline == UINT64_MAX ? 0 : af__now_ns();

		ts = ns_to_ts(deadline > now ? deadline - now : 0);
		if (loop->ppoll_mode)
			sleep_in_ppoll(loop, deadline == UINT64_MAX ? NULL : &ts);
		else
			io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1,
							 deadline == UINT64_MAX ? NULL : &ts,
							 NULL);
	}
	/* WOKEN means a setter wrote (or is about to write) the eventfd; its
	 * read completion must be reaped before the next sleep. */
	prev = atomic_exchange_explicit(&loop->sleep_state, AF_AWAKE, memory_order_seq_cst);
	if (prev == AF_WOKEN)
		loop->efd_expected = true;
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

	af__flag_collect(loop);
	af__blocking_collect(loop);
	/* A flush from a task may have reaped the eventfd read: it must be
	 * armed again before the loop can sleep, or a set would wake nothing. */
	efd_arm(loop);
	tm = af__timer_top(&loop->timers);
	if (loop->runq_len > 0 || (tm && tm->deadline <= af__now_ns())) {
		/* Runnable work: peek without blocking, and only enter the
		 * kernel when it can have something for us. */
		if (io_uring_sq_ready(&loop->ring) || loop->ninflight || loop->efd_expected)
			io_uring_submit_and_get_events(&loop->ring);
	} else if (nothing_can_happen(loop)) {
		return -EDEADLK;
	} else {
		sleep_until(loop, tm ? tm->deadline : UINT64_MAX);
	}
	reap(loop);
	efd_arm(loop);
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
	if (loop->owned)
		return pthread_equal(loop->owner, pthread_self()) ? 0 : -EPERM;
	if (loop->features & AF_FEATURE_SINGLE_ISSUER) {
		/* liburing 2.3 declares io_uring_enable_rings() but does not
		 * export it, so register directly. */
		if (syscall(__NR_io_uring_register, loop->ring.ring_fd,
			    IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
			return -errno;
	}
	loop->owner = pthread_self();
	loop->owned = true;
	return 0;
}

AF_API int af_loop_run(struct af_loop *loop, af_task_fn main, void *arg, int *result)
{
	struct af_task *mt;
	void *altstack;
	int r;

	af_assert_return(loop && main, -EINVAL);
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

	af__tls_loop = loop;
	loop->running = true;
	af__ctx_init_thread(&loop->sched_ctx);
	efd_arm(loop);
	r = drive(loop, mt);
	if (result)
		*result = mt->state == AF_TASK_DONE ? mt->result : r;
	af__task_free(mt);
	af__ctx_destroy(&loop->sched_ctx);
	loop->running = false;
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

void af__loop_kick(struct af_loop *loop)
{
	uint64_t one = 1;
	unsigned expect = AF_SLEEPING;

	/* seq_cst pairs with sleep_until(): see there. Only the setter that
	 * moves SLEEPING to WOKEN writes, so a storm of sets costs one write
	 * per loop sleep, and none while the loop is awake. */
	if (atomic_load_explicit(&loop->sleep_state, memory_order_seq_cst) != AF_SLEEPING)
		return;
	if (!atomic_compare_exchange_strong_explicit(&loop->sleep_state, &expect, AF_WOKEN,
						     memory_order_seq_cst,
						     memory_order_seq_cst))
		return;
	/* EAGAIN (counter full) cannot lose the wake: the count is non-zero. */
	if (write(loop->efd, &one, sizeof(one)) < 0)
		return;
}
