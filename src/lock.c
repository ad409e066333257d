/* SPDX-License-Identifier: MIT */
/* asyncio Lock with FIFO hand-off: a release gives the lock straight to the
 * first waiter, so a task that acquires in a loop cannot barge ahead of
 * tasks already queued. */
#include "internal.h"

struct af__lock {
	struct af__list waiters;
	/* The holder's task id, 0 when unlocked. Not a pointer: a task may
	 * end holding the lock, and a new task at the same address must not
	 * look like the holder. */
	uint64_t owner;
	/* Atomic because the misuse check reads it on whatever thread the
	 * wrong call comes from. */
	_Atomic(struct af_loop *) loop;
};

_Static_assert(sizeof(struct af__lock) <= sizeof(union af__private),
	       "struct af_lock is too small for its private state");

static struct af__lock *priv(struct af_lock *lock)
{
	return (struct af__lock *)(void *)&lock->_private;
}

static bool on_loop_thread(struct af__lock *l, const char *func)
{
	struct af_loop *here = af__tls_loop;

	/* relaxed: as in event.c, a wrong thread only has to see another
	 * loop; owner and waiters are looked at only when the lock seems to
	 * move between loops, legal only while nobody uses it. */
	if (here && (atomic_load_explicit(&l->loop, memory_order_relaxed) == here ||
		     (!l->owner && af__list_empty(&l->waiters)))) {
		atomic_store_explicit(&l->loop, here, memory_order_relaxed);
		return true;
	}
	af__misuse(func, "called from a thread that does not run the lock's loop; "
			 "af_lock is for tasks of one loop");
	return false;
}

AF_API void af_lock_init(struct af_lock *lock)
{
	if (lock)
		*lock = (struct af_lock)AF_LOCK_INIT;
}

/* Give the lock to the first waiter, or free it. */
static void hand_off(struct af__lock *l)
{
	struct af__node *n = af__list_pop_front(&l->waiters);
	struct af_task *next;

	if (!n) {
		l->owner = 0;
		return;
	}
	next = af__container_of(n, struct af_task, link);
	l->owner = next->id;
	af__task_wake(next, 0);
}

static void lock_detach(struct af_task *t)
{
	struct af__lock *l = t->wait_obj;

	af__list_remove(&l->waiters, &t->link);
}

/* Handed the lock, then cancelled before it could resume: pass it on. */
static void lock_revoke(struct af_task *t)
{
	struct af__lock *l = t->wait_obj;

	if (l->owner == t->id)
		hand_off(l);
}

static const struct af__wait_ops lock_ops = {
	.what = "lock",
	.detach = lock_detach,
	.revoke = lock_revoke,
};

AF_BLOCKING_API int AF_BODY(af_lock_acquire_timeout)(struct af_lock *lock, int64_t timeout_ns)
{
	int err = 0;
	struct af_task *t = af__task_self(&err);
	struct af__lock *l;

	af_assert_return(lock, -EINVAL);
	if (!t)
		return err;
	l = priv(lock);
	if (!on_loop_thread(l, __func__))
		return -EPERM;
	if (!l->owner) {
		l->owner = t->id;
		return 0;
	}
	if (l->owner == t->id)
		return -EDEADLK;
	af__list_push_back(&l->waiters, &t->link);
	return af__task_block(&lock_ops, l, timeout_ns);
}

AF_BLOCKING_API int AF_BODY(af_lock_acquire)(struct af_lock *lock)
{
	return AF_BODY(af_lock_acquire_timeout)(lock, -1);
}

AF_API int af_lock_release(struct af_lock *lock)
{
	struct af__lock *l;

	af_assert_return(lock, -EINVAL);
	l = priv(lock);
	if (!on_loop_thread(l, __func__))
		return -EPERM;
	if (!l->owner) {
		af__misuse(__func__, "the lock is not held");
		return -EPERM;
	}
	hand_off(l);
	return 0;
}

AF_API bool af_lock_locked(const struct af_lock *lock)
{
	return lock && priv((struct af_lock *)lock)->owner != 0;
}
