/* SPDX-License-Identifier: MIT */
/* asyncio Event: a boolean with a FIFO of waiting tasks. Loop-thread only,
 * which is what lets set() wake waiters with plain list operations. */
#include "internal.h"

struct af__event {
	struct af__list waiters;
	/* The loop of the current waiters. Atomic because the misuse check
	 * reads it on whatever thread the wrong call comes from. */
	_Atomic(struct af_loop *) loop;
	uint64_t is_set;
};

_Static_assert(sizeof(struct af__event) <= sizeof(union af__private),
	       "struct af_event is too small for its private state");

static struct af__event *priv(struct af_event *ev)
{
	return (struct af__event *)(void *)&ev->_private;
}

/* An event may only be touched by the thread running its loop. Between
 * uses (no waiters) it may move to another loop. */
static bool on_loop_thread(struct af__event *e, const char *func)
{
	struct af_loop *here = af__tls_loop;
	struct af_loop *last;

	/* relaxed: the right thread reads its own store back; a wrong
	 * thread only has to see some other loop, not a torn or raced
	 * value. The waiters list is looked at only when the event seems to
	 * move between loops, which is legal only while nobody uses it. */
	last = atomic_load_explicit(&e->loop, memory_order_relaxed);
	if (__builtin_expect(here && last == here, 1))
		return true;
	if (here && af__list_empty(&e->waiters)) {
		atomic_store_explicit(&e->loop, here, memory_order_relaxed);
		return true;
	}
	af__misuse(func, "called from a thread that does not run the event's loop. "
			 "Events are loop-thread only; to wake a loop from another "
			 "thread or a signal handler, use af_flag_set()");
	return false;
}

AF_API void af_event_init(struct af_event *ev)
{
	if (ev)
		*ev = (struct af_event)AF_EVENT_INIT;
}

AF_API void af_event_set(struct af_event *ev)
{
	struct af_loop *loop;
	struct af__event *e;
	struct af__node *n;

	if (!ev) {
		af__misuse(__func__, "invalid argument: ev is NULL");
		return;
	}
	e = priv(ev);
	if (!on_loop_thread(e, __func__))
		return;
	loop = af__tls_loop;
	e->is_set = 1;
	/* Every waiter goes to the back of the run queue in the order it
	 * started waiting; the caller keeps running. */
	while ((n = af__list_pop_front(&e->waiters)) != NULL) {
		/* Many waiters: each is a cold task struct reached through
		 * the one before; fetch the next one's while waking this. */
		if (e->waiters.head) {
			const struct af_task *t2 = af__container_of(e->waiters.head,
								    struct af_task, wait_node);

			__builtin_prefetch(&t2->run_node, 1);
			__builtin_prefetch(&t2->state, 1);
		}
		af__task_ready(loop, af__container_of(n, struct af_task, wait_node), 0);
	}
}

AF_API void af_event_clear(struct af_event *ev)
{
	struct af__event *e;

	if (!ev) {
		af__misuse(__func__, "invalid argument: ev is NULL");
		return;
	}
	e = priv(ev);
	if (on_loop_thread(e, __func__))
		e->is_set = 0;
}

AF_API bool af_event_is_set(const struct af_event *ev)
{
	return ev && priv((struct af_event *)ev)->is_set;
}

static void event_detach(struct af_task *t)
{
	struct af__event *e = t->wait_obj;

	af__list_remove(&e->waiters, &t->wait_node);
}

static const struct af__wait_ops event_ops = { .what = "event", .detach = event_detach };

static int wait_parked(struct af__event *e, struct af_task *t, int64_t timeout_ns)
{
	if (e->is_set)
		return 0;
	af__list_push_back(&e->waiters, &t->wait_node);
	return af__task_block_fast(t, &event_ops, e, timeout_ns);
}

/* Any wait that is not a task of the event's own loop: the full checks,
 * each with its own answer. */
static int wait_checked(struct af__event *e, int64_t timeout_ns)
{
	int err = 0;
	struct af_task *t = af__task_self(&err);

	if (!t)
		return err;
	if (!on_loop_thread(e, "af_event_wait_timeout"))
		return -EPERM;
	return wait_parked(e, t, timeout_ns);
}

AF_API int af_event_wait_timeout(struct af_event *ev, int64_t timeout_ns)
{
	struct af_loop *loop = af__tls_loop;
	struct af__event *e;

	af_assert_return(ev, -EINVAL);
	e = priv(ev);
	/* relaxed: as in on_loop_thread(); equal only on the right thread. */
	if (__builtin_expect(!loop || !loop->current || af__loop_forked(loop) ||
			     atomic_load_explicit(&e->loop, memory_order_relaxed) != loop, 0))
		return wait_checked(e, timeout_ns);
	return wait_parked(e, loop->current, timeout_ns);
}

AF_API int af_event_wait(struct af_event *ev)
{
	return af_event_wait_timeout(ev, -1);
}
