/* SPDX-License-Identifier: MIT */
/*
 * ThreadSafeFlag: the wake-up path from other threads and signal handlers.
 *
 * All cross-thread state is one atomic word per flag (SET, WAITING, QUEUED)
 * and one lock-free stack per loop (loop->pending). A set:
 *   1. turns SET on; if it was already on, stops (sets coalesce);
 *   2. if no task is WAITING, stops: the next wait finds SET itself;
 *   3. turns QUEUED on and pushes the flag on loop->pending (once);
 *   4. kicks the loop, which writes the eventfd only if the loop sleeps and
 *      nobody has written since it fell asleep.
 * The loop takes the whole pending stack at once, so finding the flags that
 * were set costs O(flags set), never a scan of all flags. Pushes only ever
 * add at the head and the loop only ever takes the whole stack, so there is
 * no ABA problem and no lock: safe in a signal handler that interrupted the
 * loop thread in the middle of either.
 */
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(struct af__flag) <= sizeof(union af__private),
	       "struct af_flag is too small for its private state");

void af__signal_forget(struct af_flag *flag);

static struct af__flag *priv(struct af_flag *flag)
{
	return (struct af__flag *)(void *)&flag->_private;
}

static bool valid(const struct af_flag *flag)
{
	return flag && priv((struct af_flag *)flag)->magic == AF_FLAG_MAGIC;
}

AF_API int af_flag_init(struct af_flag *flag, struct af_loop *loop)
{
	struct af__flag *f;

	af_assert_return(flag, -EINVAL);
	if (!loop)
		loop = af__tls_loop;
	if (!loop) {
		af__misuse(__func__, "no loop given and none runs on this thread");
		return -EINVAL;
	}
	f = priv(flag);
	atomic_init(&f->state, 0);
	f->loop = loop;
	f->waiter = NULL;
	f->next = NULL;
	f->magic = AF_FLAG_MAGIC;
	return 0;
}

static void push_pending(struct af_loop *loop, struct af__flag *f)
{
	struct af__flag *head = atomic_load_explicit(&loop->pending, memory_order_relaxed);

	/* seq_cst on success: this store is one half of the Dekker handshake
	 * with sleep_until() (loop.c), and it publishes f->next to the loop's
	 * acquiring exchange in af__flag_collect(). */
	do {
		f->next = head;
	} while (!atomic_compare_exchange_weak_explicit(&loop->pending, &head, f,
							 memory_order_seq_cst,
							 memory_order_relaxed));
}

AF_API void af_flag_set(struct af_flag *flag)
{
	struct af__flag *f;
	uint32_t old;
	int saved_errno = errno;

	if (!valid(flag))
		return;
	f = priv(flag);
	/* acq_rel: release publishes whatever the setter wrote before set() to
	 * the waiter, whose clearing read-modify-write acquires it. */
	old = atomic_fetch_or_explicit(&f->state, AF_FLAG_SET, memory_order_acq_rel);
	if ((old & AF_FLAG_SET) || !(old & AF_FLAG_WAITING))
		return;
	/* A waiter is parked and we made the 0 -> 1 transition. QUEUED makes
	 * sure the flag sits on the pending stack at most once even if it is
	 * cleared and set again before the loop collects it. */
	old = atomic_fetch_or_explicit(&f->state, AF_FLAG_QUEUED, memory_order_acq_rel);
	if (old & AF_FLAG_QUEUED)
		return;
	push_pending(f->loop, f);
	af__loop_kick(f->loop);
	errno = saved_errno;
}

AF_API void af_flag_clear(struct af_flag *flag)
{
	if (!valid(flag))
		return;
	/* release: a clear on another thread is ordered before that thread's
	 * later set, which is all "clear discards an earlier set" needs. */
	atomic_fetch_and_explicit(&priv(flag)->state, ~AF_FLAG_SET, memory_order_release);
}

AF_API bool af_flag_is_set(const struct af_flag *flag)
{
	if (!valid(flag))
		return false;
	return atomic_load_explicit(&priv((struct af_flag *)flag)->state,
				    memory_order_acquire) & AF_FLAG_SET;
}

/* Left before being woken, or cancelled after: the flag keeps its SET bit
 * (a set that raced with the cancel is not lost) and is free for the next
 * waiter. */
static void flag_detach(struct af_task *t)
{
	struct af__flag *f = t->wait_obj;

	f->waiter = NULL;
	atomic_fetch_and_explicit(&f->state, ~AF_FLAG_WAITING, memory_order_acq_rel);
}

static const struct af__wait_ops flag_ops = {
	.what = "flag",
	.detach = flag_detach,
	.revoke = flag_detach,
	.keeps_alive = true,
};

/* Consume a set flag, or announce a waiter, in one atomic step: a setter
 * either made SET visible before (we take it) or will see WAITING (and
 * queue the flag for the loop). */
static bool take_or_announce(struct af__flag *f)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);

	for (;;) {
		uint32_t want = (s & AF_FLAG_SET) ? (s & ~AF_FLAG_SET) : (s | AF_FLAG_WAITING);

		if (atomic_compare_exchange_weak_explicit(&f->state, &s, want,
							  memory_order_acq_rel,
							  memory_order_acquire))
			return s & AF_FLAG_SET;
	}
}

AF_API int af_flag_wait_timeout(struct af_flag *flag, int64_t timeout_ns)
{
	int err = 0, r;
	struct af_task *t = af__task_self(&err);
	struct af__flag *f;

	af_assert_return(valid(flag), -EINVAL);
	if (!t)
		return err;
	f = priv(flag);
	if (f->loop != t->loop) {
		af__misuse(__func__, "the flag belongs to another loop; wait on it from "
				     "a task of the loop given to af_flag_init()");
		return -EPERM;
	}
	if (f->waiter)
		return -EBUSY;
	if (take_or_announce(f))
		return 0;
	f->waiter = t;
	r = af__task_block(&flag_ops, f, timeout_ns);
	if (r == 0) {
		/* Woken by a set. Clearing SET here, not when the loop woke us,
		 * absorbs sets that landed in between: they were for this wake.
		 * acq_rel: acquire pairs with the setter's release. */
		f->waiter = NULL;
		atomic_fetch_and_explicit(&f->state, ~(AF_FLAG_SET | AF_FLAG_WAITING),
					  memory_order_acq_rel);
	}
	return r;
}

AF_API int af_flag_wait(struct af_flag *flag)
{
	return af_flag_wait_timeout(flag, -1);
}

static struct af__flag *reverse(struct af__flag *f)
{
	struct af__flag *prev = NULL;

	while (f) {
		struct af__flag *next = f->next;

		f->next = prev;
		prev = f;
		f = next;
	}
	return prev;
}

void af__flag_collect(struct af_loop *loop)
{
	struct af__flag *f;

	/* Cheap check first: this runs once per loop iteration. */
	if (!atomic_load_explicit(&loop->pending, memory_order_relaxed))
		return;
	/* acquire pairs with the pushes' seq_cst CAS: f->next is visible. */
	f = atomic_exchange_explicit(&loop->pending, NULL, memory_order_acquire);
	/* The stack is newest first; wake in the order the sets happened. */
	for (f = reverse(f); f;) {
		struct af__flag *next = f->next;
		uint32_t s;

		/* Read next before dropping QUEUED: from then on a setter may
		 * push the flag again and overwrite it. */
		s = atomic_fetch_and_explicit(&f->state, ~AF_FLAG_QUEUED, memory_order_acq_rel);
		if ((s & AF_FLAG_SET) && f->waiter && f->waiter->state == AF_TASK_BLOCKED) {
			af__task_wake(f->waiter, 0);
			loop->outside_wakes++;
		}
		f = next;
	}
}

void af__flag_unqueue(struct af__flag *f)
{
	struct af_loop *loop = f->loop;
	struct af__flag *list, *keep = NULL, *tail = NULL, *head;

	if (!(atomic_load_explicit(&f->state, memory_order_acquire) & AF_FLAG_QUEUED))
		return;
	list = atomic_exchange_explicit(&loop->pending, NULL, memory_order_acquire);
	while (list) {
		struct af__flag *next = list->next;

		if (list == f) {
			atomic_fetch_and_explicit(&f->state, ~AF_FLAG_QUEUED,
						  memory_order_acq_rel);
		} else {
			list->next = NULL;
			if (tail)
				tail->next = list;
			else
				keep = list;
			tail = list;
		}
		list = next;
	}
	if (!keep)
		return;
	/* Put the others back in front of anything pushed meanwhile. */
	head = atomic_load_explicit(&loop->pending, memory_order_relaxed);
	do {
		tail->next = head;
	} while (!atomic_compare_exchange_weak_explicit(&loop->pending, &head, keep,
							 memory_order_seq_cst,
							 memory_order_relaxed));
	/* The loop may have looked at the stack while we held it, found it
	 * empty and gone to sleep: kick it like any setter would. */
	af__loop_kick(loop);
}

void af__flag_release_all(struct af_loop *loop)
{
	struct af__flag *f = atomic_exchange_explicit(&loop->pending, NULL,
						      memory_order_acquire);

	/* Flags still queued when their loop is freed forget it, so that a
	 * later af_flag_destroy() does not reach into freed memory. */
	while (f) {
		struct af__flag *next = f->next;

		atomic_fetch_and_explicit(&f->state, ~AF_FLAG_QUEUED, memory_order_acq_rel);
		f->next = NULL;
		f = next;
	}
}

AF_API void af_flag_destroy(struct af_flag *flag)
{
	struct af__flag *f;

	if (!valid(flag))
		return;
	f = priv(flag);
	if (f->waiter) {
		af__misuse(__func__, "task \"%s\" is still waiting on the flag; cancel it first",
			   f->waiter->name);
		return;
	}
	af__signal_forget(flag);
	af__flag_unqueue(f);
	f->magic = 0;
}
