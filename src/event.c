/* SPDX-License-Identifier: MIT */
/* asyncio Event: a boolean with a FIFO of waiting tasks. Loop-thread only,
 * which is what lets set() wake waiters with plain list operations. Two or
 * more waiters are a cohort (internal.h) that a set splices onto the run
 * queue whole; a lone waiter, the ping-pong case, is woken directly, which
 * costs less than taking a cohort and giving it back. */
#include <assert.h>
#include <stdlib.h>

#include "internal.h"

struct af__event {
	struct af__cohort *cohort;   /* two or more waiters */
	struct af_task *one;         /* or a lone waiter, in no list */
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
	 * value. The waiters are looked at only when the event seems to
	 * move between loops, which is legal only while nobody uses it. */
	last = atomic_load_explicit(&e->loop, memory_order_relaxed);
	if (__builtin_expect(here && last == here, 1))
		return true;
	if (here && !e->cohort && !e->one) {
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

/* ---- cohorts --------------------------------------------------------------- */

int af__cohort_reserve(struct af_loop *loop)
{
	struct af__cohort *c;

	if (loop->ncohorts > loop->ntasks)
		return 0;
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->next = loop->spare_cohorts;
	loop->spare_cohorts = c;
	loop->ncohorts++;
	return 0;
}

/* Every cohort in use has a task of its own, none shared with another
 * cohort: so with more cohorts than tasks one is spare. */
void af__cohort_trim(struct af_loop *loop)
{
	struct af__cohort *c = loop->spare_cohorts;

	if (loop->ncohorts <= loop->ntasks)
		return;
	assert(c);
	loop->spare_cohorts = c->next;
	loop->ncohorts--;
	free(c);
}

void af__cohorts_free(struct af_loop *loop)
{
	/* Freeing the tasks released every cohort (abandon, detach). */
	while (loop->ntasks < loop->ncohorts)
		af__cohort_trim(loop);
}

static void cohort_add(struct af__cohort *c, struct af_task *t)
{
	af__list_push_back(&c->waiters, &t->link);
	c->n++;
	t->cohort = c;
}

/* A second waiter: the two become a cohort, a spare one (the spawn of
 * every task reserved one, so there always is). */
static struct af__cohort *cohort_new(struct af_loop *loop, struct af__event *e)
{
	struct af__cohort *c = loop->spare_cohorts;

	loop->spare_cohorts = c->next;
	c->waiters = (struct af__list){ NULL, NULL };
	c->n = 0;
	c->woken = false;
	cohort_add(c, e->one);
	e->one = NULL;
	e->cohort = c;
	return c;
}

/* ---- the API ---------------------------------------------------------------- */

/* af_event_set() but for its common case: from another thread (refused),
 * with the event new to this loop, with two or more waiters to splice, or
 * with a timer armed, which makes the push read the clock. */
static __attribute__((noinline)) void set_slow(struct af__event *e)
{
	struct af_loop *loop;
	struct af__cohort *c;

	if (!on_loop_thread(e, "af_event_set"))
		return;
	loop = af__tls_loop;
	e->is_set = 1;
	if (e->one) {
		af__task_ready(loop, e->one, 0);
		e->one = NULL;
		return;
	}
	c = e->cohort;
	if (!c)
		return;
	/* Every waiter goes to the back of the run queue in the order it
	 * started waiting, as if each were pushed now; the caller keeps
	 * running. No task struct is touched here: each gets its wake when
	 * it leaves the queue (af__task_dequeued), from what the cohort
	 * keeps of this moment. */
	e->cohort = NULL;
	c->woken = true;
	c->round = loop->round;
	c->stamp = loop->timers.len ? af__loop_clock(loop) : 0;
	af__list_splice_back(&loop->runq, &c->waiters);
	loop->runq_len += c->n;
}

/* The ping-pong's set: out of line everything that would make this
 * function save registers or read the clock. */
AF_API void af_event_set(struct af_event *ev)
{
	struct af_loop *loop = af__tls_loop;
	struct af__event *e;
	struct af_task *t;

	if (!ev) {
		af__misuse(__func__, "invalid argument: ev is NULL");
		return;
	}
	e = priv(ev);
	/* relaxed: as in on_loop_thread(); equal only on the right thread. */
	if (__builtin_expect(!loop ||
			     atomic_load_explicit(&e->loop, memory_order_relaxed) != loop ||
			     e->cohort || loop->timers.len, 0)) {
		set_slow(e);
		return;
	}
	e->is_set = 1;
	t = e->one;
	if (t) {
		e->one = NULL;
		af__task_ready_untimed(loop, t, 0);
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

/* A waiter leaves before the set (cancel, timeout): the event is still
 * there, since it has a waiter. The last one out gives the cohort back. */
static void event_detach(struct af_task *t)
{
	struct af__event *e = t->wait_obj;
	struct af__cohort *c = t->cohort;

	if (!c) {
		assert(e->one == t);
		e->one = NULL;
		return;
	}
	af__list_remove(&c->waiters, &t->link);
	if (c->n == 1 && e->cohort == c)
		e->cohort = NULL;
	af__cohort_leave(t->loop, t);
}

static const struct af__wait_ops event_ops = { .what = "event", .detach = event_detach };

/* A wait that blocks the caller, or returns at once if the event is set:
 * the general case, out of line (af_event_wait_timeout() has the common
 * one). */
static __attribute__((noinline)) int wait_parked(struct af__event *e, struct af_task *t,
						 int64_t timeout_ns)
{
	if (e->is_set)
		return 0;
	if (e->cohort)
		cohort_add(e->cohort, t);
	else if (e->one)
		cohort_add(cohort_new(t->loop, e), t);
	else
		e->one = t;
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

/* Both waits, each with its own copy: af_event_wait()'s knows there is no
 * timeout. */
static inline __attribute__((always_inline)) int event_wait(struct af_event *ev,
							    int64_t timeout_ns)
{
	struct af_loop *loop = af__tls_loop;
	struct af__event *e;
	struct af_task *t;

	af_assert_return(ev, -EINVAL);
	e = priv(ev);
	if (__builtin_expect(!loop, 0))
		return wait_checked(e, timeout_ns);
	/* Read before the atomic load below, which the compiler would not
	 * read it again across. */
	t = loop->current;
	/* relaxed: as in on_loop_thread(); equal only on the right thread. */
	if (__builtin_expect(!t || af__loop_forked(loop) ||
			     atomic_load_explicit(&e->loop, memory_order_relaxed) != loop, 0))
		return wait_checked(e, timeout_ns);
	if (e->is_set)
		return 0;
	if (__builtin_expect(e->one || e->cohort || timeout_ns >= 0 || t->cancel_pending, 0))
		return wait_parked(e, t, timeout_ns);
	/* The ping-pong's wait: the lone waiter, no timeout, no cancel to
	 * take; af__task_block_fast() with what it tests known, and the fork
	 * tested above. */
	e->one = t;
	t->wait_ops = &event_ops;
	t->wait_obj = e;
	t->state = AF_TASK_BLOCKED;
	af__loop_park_unforked(loop, t);
	t->wait_ops = NULL;
	t->wait_obj = NULL;
	return t->wake_result;
}

AF_BLOCKING_API int AF_BODY(af_event_wait_timeout)(struct af_event *ev, int64_t timeout_ns)
{
	return event_wait(ev, timeout_ns);
}

AF_BLOCKING_API int AF_BODY(af_event_wait)(struct af_event *ev)
{
	return event_wait(ev, -1);
}
