/* SPDX-License-Identifier: MIT */
/* Tasks: coroutines with their own stacks, and the one blocking primitive
 * (af__task_block / af__task_wake) that Event, flag, Lock, join and sleep
 * are built on, so that cancellation and timeouts work the same for all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- creation and teardown -------------------------------------------------- */

/* "task-<id>", by hand: snprintf was a third of a short task's instructions
 * (2,300 of ~6,400 per task under callgrind). */
static void default_name(char name[32], uint64_t id)
{
	char digits[20];
	size_t n = 0;

	do {
		digits[n++] = (char)('0' + id % 10);
		id /= 10;
	} while (id);
	memcpy(name, "task-", 5);
	for (size_t i = 0; i < n; i++)
		name[5 + i] = digits[n - 1 - i];
	name[5 + n] = '\0';
}

int af__task_new(struct af_loop *loop, struct af_task **out, af_task_fn fn,
		 void *arg, const struct af_task_opts *opts)
{
	struct af_task *t;
	int r;

	if (opts && opts->stack_size &&
	    (opts->stack_size < AF_STACK_MIN || opts->stack_size > AF_STACK_MAX))
		return -EINVAL;
	if (opts && (opts->_reserved[0] || opts->_reserved[1]))
		return -EINVAL;
	/* One timer slot per task, reserved now, so that no blocking call can
	 * fail for want of memory later. */
	r = af__timer_reserve(&loop->timers, loop->ntasks + 1);
	if (r < 0)
		return r;
	r = af__cohort_reserve(loop);
	if (r < 0)
		return r;
	t = af__stack_pool_task_alloc(&loop->stacks, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->stack_size = opts && opts->stack_size ? af__stack_round(opts->stack_size)
						 : loop->stack_size;
	/* Now, not at the first run: a limit on stacks (mappings, address
	 * space) must fail the spawn that hits it, where the caller sees it. */
	r = af__stack_get(&loop->stacks, t->stack_size, &t->stack);
	if (r < 0) {
		af__stack_pool_task_free(&loop->stacks, t);
		return r;
	}
	t->loop = loop;
	t->fn = fn;
	t->arg = arg;
	t->state = AF_TASK_NEW;
	t->id = ++loop->task_seq;
	if (opts && opts->name)
		snprintf(t->name, sizeof(t->name), "%s", opts->name);
	else
		default_name(t->name, t->id);
	af__list_push_back(&loop->tasks, &t->all_node);
	loop->ntasks++;
	loop->nalive++;
	af__loop_push(loop, t);
	*out = t;
	return 0;
}

static void release_stack(struct af_task *t)
{
	if (!t->stack.map)
		return;
	if (t->started)
		af__ctx_destroy(&t->ctx);
	af__stack_put(&t->loop->stacks, &t->stack);
}

void af__task_free(struct af_task *t)
{
	struct af_loop *loop = t->loop;

	if (t->state != AF_TASK_DONE)
		af__task_abandon(t);
	release_stack(t);
	af__list_remove(&loop->tasks, &t->all_node);
	loop->ntasks--;
	af__cohort_trim(loop);
	af__stack_pool_task_free(&loop->stacks, t);
}

/* ---- running --------------------------------------------------------------- */

static void finish(struct af_task *t, int result)
{
	struct af_loop *loop = t->loop;

	t->result = result;
	t->state = AF_TASK_DONE;
	t->wait_ops = NULL;
	loop->nalive--;
}

/* After the task's last switch: its stack is free to go back to the pool. */
static void reap(struct af_task *t)
{
	release_stack(t);
	if (t->joiner)
		af__task_wake(t->joiner, 0);
	else if (t->detached)
		af__task_free(t);
}

static void entry(void)
{
	struct af_loop *loop = af__tls_loop;
	struct af_task *t = loop->current;
	int result;

	af__ctx_entered(&t->ctx);
	result = t->fn(t->arg);
	finish(t, result);
	af__ctx_switch_final(&t->ctx, &loop->sched_ctx);
}

static int start(struct af_loop *loop, struct af_task *t)
{
	int r = af__ctx_make(&t->ctx, t->stack.lo, t->stack.size, entry);

	if (r < 0) {
		af__stack_put(&loop->stacks, &t->stack);
		return r;
	}
	t->started = true;
	return 0;
}

/* A short task touches its stack only near the top: at its first block
 * the frames from the switch's up to entry() span ~240 bytes, 4 or 5
 * cache lines. */
#define AF_HOT_STACK_LINES 5

/* Read one byte of a line that will be needed soon. A real load, not a
 * prefetch: on the AMD VM we measure on, a prefetch to a page missing from
 * the TLB did nothing (a 10^4-task resume cost 1.15 us per task with it or
 * without), while loads issued one task ahead cut it to 0.24 us. The
 * sanitizers would take a load from another task's frames for a bug (ASan
 * poisons their redzones), so they get the hint. */
#if AF_ASAN || AF_TSAN
#define touch(p) __builtin_prefetch(p)
#else
static inline void touch(const char *p)
{
	(void)*(const volatile char *)p;
}
#endif

/* Start the loads that running @t will stall on, while another task runs:
 * past a few hundred tasks every stack line is cold and every stack on a
 * page of its own, and a task that resumes returns through its frames one
 * after another, each ret waiting for a line from memory. Loads issued
 * together, ahead, overlap. Only what is backed is read: the frames of a
 * task that ran, [sp, top), and the top of a slot an earlier task used,
 * where a task never run gets its first frame. A fresh slot's top may not
 * be backed yet: a load there would fault in the zero page and the first
 * write a second time, so it only gets the (write) hint. */
void af__task_prefetch(const struct af_task *t)
{
	const char *top = (const char *)t->stack.lo + t->stack.size;
	const char *sp = t->started ? af__ctx_resume_point(&t->ctx) : NULL;

	if (!sp) {
		for (int i = 1; i <= AF_HOT_STACK_LINES; i++) {
			if (t->stack.backed)
				touch(top - 64 * i);
			else
				__builtin_prefetch(top - 64 * i, 1);
		}
		return;
	}
	for (int i = 0; i < AF_HOT_STACK_LINES && sp + 64 * i < top; i++)
		touch(sp + 64 * i);
}

/* Further ahead, hints only. A load that misses holds up the hop until it
 * is back, a hint does not, and on Intel hosts a hint walks the page
 * tables of a page missing from the TLB (on the AMD VM of session 7 it did
 * not, hence the loads above). What each place ahead gets:
 *   2     the task's frames (its struct lines, which give their addresses,
 *         were hinted a hop before);
 *   3, 4  the first line it will resume on, which starts the page walk of
 *         its stack;
 *   2..4  its struct lines, reached through links hinted before.
 * Deeper look-ahead measured no better: each place is one more link to
 * follow on every hop. */
#define AF_AHEAD_FRAMES 2
#define AF_AHEAD_RESUME 4
#define AF_AHEAD_STRUCTS 4

/* always_inline: a function that only reads and prefetches looks pure to
 * GCC, and a call to it whose result nobody uses is deleted, hints and
 * all. Inlined, the hints stay. */
static inline __attribute__((always_inline)) void hint_frames(const struct af_task *t,
							      int lines)
{
	const char *sp = t->started ? af__ctx_resume_point(&t->ctx) : NULL;
	const char *top = (const char *)t->stack.lo + t->stack.size;

	for (int i = 0; sp && i < lines && sp + 64 * i < top; i++)
		__builtin_prefetch(sp + 64 * i);
}

static inline __attribute__((always_inline)) void hint_ahead(const struct af__node *n)
{
	for (int i = 2; i <= AF_AHEAD_STRUCTS && (n = n->next) != NULL; i++) {
		const struct af_task *t = af__container_of(n, struct af_task, link);

		hint_frames(t, i <= AF_AHEAD_FRAMES ? AF_HOT_STACK_LINES
			     : i <= AF_AHEAD_RESUME ? 1 : 0);
		__builtin_prefetch(&t->link);
		__builtin_prefetch(&t->stack);
	}
}

/* The next task in the run queue gets its frames read (above); the one
 * after it its fields that will give their addresses, so that next time
 * they do not stall on the struct first, and those further on their hints.
 * Struct lines are heap memory: reading them is always safe. */
AF__HOT void af__task_prefetch_queue(const struct af_loop *loop)
{
	const struct af__node *n = loop->runq.head;
	const struct af_task *t2;

	if (!n)
		return;
	af__task_prefetch(af__container_of(n, struct af_task, link));
	if (!n->next)
		return;
	t2 = af__container_of(n->next, struct af_task, link);
	touch((const char *)&t2->started);
	touch((const char *)&t2->stack);
	touch((const char *)&t2->ctx);
	hint_ahead(n->next);
}

AF__HOT void af__task_run(struct af_loop *loop, struct af_task *t)
{
	af__task_prefetch_queue(loop);
	if (!t->started) {
		int r = start(loop, t);

		if (r < 0) {
			/* No context (only makecontext can fail): the task
			 * ends without running, as if it had returned the
			 * error itself. */
			finish(t, r);
			reap(t);
			return;
		}
	}
	t->state = AF_TASK_RUNNING;
	loop->current = t;
	af__ctx_switch(&loop->sched_ctx, &t->ctx);
	/* Tasks may have handed over to one another since: the one that
	 * came back is the current one. */
	t = loop->current;
	loop->current = NULL;
	if (t->state == AF_TASK_DONE)
		reap(t);
}

/* ---- blocking ------------------------------------------------------------- */

AF__HOT int af__task_block(const struct af__wait_ops *ops, void *obj, int64_t timeout_ns)
{
	struct af_loop *loop = af__tls_loop;
	struct af_task *t = loop->current;

	if (t->cancel_pending) {
		t->cancel_pending = false;
		/* The caller has queued the task already; detach finds its
		 * wait object where a cancel of a blocked task finds it. */
		t->wait_obj = obj;
		ops->detach(t);
		t->wait_obj = NULL;
		return -ECANCELED;
	}
	t->wait_ops = ops;
	t->wait_obj = obj;
	t->state = AF_TASK_BLOCKED;
	if (timeout_ns >= 0)
		af__timer_add(&loop->timers, &t->timer, af__deadline(timeout_ns));
	if (ops->keeps_alive)
		loop->nkeepalive++;
	af__loop_park(loop, t);
	t->wait_ops = NULL;
	t->wait_obj = NULL;
	return t->wake_result;
}

/* A yield parks the task runnable; a cancel meanwhile turns it into
 * -ECANCELED like any other blocking call. */
static void no_detach(struct af_task *t)
{
	(void)t;
}

static const struct af__wait_ops yield_ops = { .what = "yield", .detach = no_detach };
static const struct af__wait_ops sleep_ops = { .what = "sleep", .detach = no_detach };

static int yield_now(struct af_loop *loop, struct af_task *t)
{
	if (t->cancel_pending) {
		t->cancel_pending = false;
		return -ECANCELED;
	}
	t->wait_ops = &yield_ops;
	t->wake_result = 0;
	t->state = AF_TASK_RUNNABLE;
	af__loop_push(loop, t);
	af__loop_park(loop, t);
	t->wait_ops = NULL;
	return t->wake_result;
}

AF_BLOCKING_API int AF_BODY(af_yield)(void)
{
	int err = 0;
	struct af_task *t = af__task_self(&err);

	if (!t)
		return err;
	return yield_now(t->loop, t);
}

AF_BLOCKING_API int AF_BODY(af_sleep_ns)(uint64_t ns)
{
	int err = 0, r;
	struct af_task *t = af__task_self(&err);

	if (!t)
		return err;
	r = af__task_block(&sleep_ops, NULL, ns > INT64_MAX ? INT64_MAX : (int64_t)ns);
	return r == -ETIMEDOUT ? 0 : r;
}

AF_BLOCKING_API int AF_BODY(af_sleep_ms)(uint64_t ms)
{
	return AF_BODY(af_sleep_ns)(ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u);
}

/* ---- cancellation ------------------------------------------------------------ */

int af__task_cancel(struct af_task *t)
{
	struct af_loop *loop = t->loop;

	switch (t->state) {
	case AF_TASK_DONE:
		return -EALREADY;
	case AF_TASK_NEW:
		/* Never ran: it runs no code at all. */
		af__loop_unqueue(loop, t);
		finish(t, -ECANCELED);
		reap(t);
		return 0;
	case AF_TASK_BLOCKED:
		/* Woken by a set, its wake not given yet: as RUNNABLE below,
		 * the cancel wins and the task keeps its place. */
		if (af__task_spliced(t)) {
			af__cohort_settle(loop, t, -ECANCELED);
			return 0;
		}
		t->wait_ops->detach(t);
		af__task_wake(t, -ECANCELED);
		return 0;
	case AF_TASK_RUNNABLE:
		if (t->wait_ops) {
			/* Woken but not resumed: the cancel wins, and whatever the
			 * wake handed over is given back. */
			if (t->wait_ops->revoke && t->wake_result == 0)
				t->wait_ops->revoke(t);
			t->wake_result = -ECANCELED;
			return 0;
		}
		t->cancel_pending = true;
		return 0;
	default: /* RUNNING: its next blocking call sees it */
		t->cancel_pending = true;
		return 0;
	}
}

/* End a task that can never run again without switching to it: it is
 * unlinked from what it waits on and its stack is dropped unwound. */
void af__task_abandon(struct af_task *t)
{
	struct af_loop *loop = t->loop;

	/* Spliced onto the run queue by a set: leaves it as a woken task. */
	if (t->state == AF_TASK_BLOCKED && af__task_spliced(t))
		af__cohort_settle(loop, t, 0);
	switch (t->state) {
	case AF_TASK_BLOCKED:
		t->wait_ops->detach(t);
		if (af__timer_armed(&t->timer))
			af__timer_remove(&loop->timers, &t->timer);
		if (t->wait_ops->keeps_alive)
			loop->nkeepalive--;
		break;
	case AF_TASK_NEW:
	case AF_TASK_RUNNABLE:
		af__loop_unqueue(loop, t);
		break;
	default:
		return;
	}
	finish(t, -EDEADLK);
	if (t->joiner)
		af__task_wake(t->joiner, 0);
}

/* ---- the public task API ---------------------------------------------------- */

static int check_loop_thread(const struct af_task *t)
{
	return af__tls_loop == t->loop ? 0 : -EPERM;
}

AF_API int af_task_spawn_opts(struct af_task **task, af_task_fn fn, void *arg,
			      const struct af_task_opts *opts)
{
	struct af_loop *loop = af__tls_loop;
	struct af_task *t;
	int r;

	af_assert_return(fn, -EINVAL);
	if (!loop) {
		af__misuse(__func__, "no loop runs on this thread; spawn from a task or use af_loop_run()");
		return -EPERM;
	}
	r = af__task_new(loop, &t, fn, arg, opts);
	if (r < 0)
		return r;
	if (task)
		*task = t;
	else
		t->detached = true;
	return 0;
}

AF_API int af_task_spawn(struct af_task **task, af_task_fn fn, void *arg)
{
	return af_task_spawn_opts(task, fn, arg, NULL);
}

static void join_detach(struct af_task *joiner)
{
	struct af_task *target = joiner->wait_obj;

	target->joiner = NULL;
}

/* join_detach also serves as revoke: a joiner woken by the target's end
 * but cancelled before it resumed must leave the handle joinable. */
static const struct af__wait_ops join_ops = {
	.what = "join",
	.detach = join_detach,
	.revoke = join_detach,
};

static int wait_done(struct af_task *self, struct af_task *task, int64_t timeout_ns)
{
	if (task->state == AF_TASK_DONE)
		return 0;
	task->joiner = self;
	return af__task_block(&join_ops, task, timeout_ns);
}

AF_BLOCKING_API int AF_BODY(af_task_join_timeout)(struct af_task *task, int64_t timeout_ns, int *result)
{
	int err = 0, r;
	struct af_task *self = af__task_self(&err);

	af_assert_return(task, -EINVAL);
	if (!self)
		return err;
	if (self->loop != task->loop) {
		af__misuse(__func__, "task \"%s\" belongs to another loop", task->name);
		return -EPERM;
	}
	if (task == self)
		return -EDEADLK;
	if (task->is_main) {
		af__misuse(__func__, "the main task belongs to af_loop_run() and cannot be joined");
		return -EINVAL;
	}
	if (task->detached) {
		af__misuse(__func__, "task \"%s\" is detached and cannot be joined", task->name);
		return -EINVAL;
	}
	if (task->joiner)
		return -EBUSY;
	r = wait_done(self, task, timeout_ns);
	if (r == -ETIMEDOUT) {
		/* asyncio's wait_for: cancel, and return only once it has
		 * ended, so nothing of it outlives the call. */
		af__task_cancel(task);
		err = wait_done(self, task, -1);
		if (err < 0)
			return err;
	} else if (r < 0) {
		return r;
	}
	if (result)
		*result = task->result;
	task->joiner = NULL;
	af__task_free(task);
	return r;
}

AF_BLOCKING_API int AF_BODY(af_task_join)(struct af_task *task, int *result)
{
	return AF_BODY(af_task_join_timeout)(task, -1, result);
}

AF_API int af_task_cancel(struct af_task *task)
{
	af_assert_return(task, -EINVAL);
	if (check_loop_thread(task) < 0) {
		af__misuse(__func__, "task \"%s\" belongs to a loop this thread does not run",
			   task->name);
		return -EPERM;
	}
	return af__task_cancel(task);
}

AF_API int af_task_detach(struct af_task *task)
{
	af_assert_return(task && !task->is_main, -EINVAL);
	/* relaxed: a misuse check reading another thread's loop; it only
	 * has to be a real atomic read, not a data race. */
	if (check_loop_thread(task) < 0 &&
	    atomic_load_explicit(&task->loop->running, memory_order_relaxed))
		return -EPERM;
	if (task->joiner)
		return -EBUSY;
	if (task->state == AF_TASK_DONE)
		af__task_free(task);
	else
		task->detached = true;
	return 0;
}

AF_API bool af_task_done(const struct af_task *task)
{
	return task && task->state == AF_TASK_DONE;
}

AF_API struct af_task *af_task_current(void)
{
	struct af_loop *loop = af__tls_loop;

	return loop ? loop->current : NULL;
}

AF_API const char *af_task_name(const struct af_task *task)
{
	return task ? task->name : "";
}
