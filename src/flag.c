/* SPDX-License-Identifier: MIT */
/*
 * ThreadSafeFlag: the wake-up path from other threads and signal handlers.
 *
 * All cross-thread state is one atomic word per flag (SET, WAITING, QUEUED,
 * POLLED, SLEEPER, the LIVE tag and a count of busy setters) and one
 * lock-free stack per loop (loop->pending). A set, in one compare-and-swap:
 *   1. does nothing to a flag that is not LIVE (destroyed);
 *   2. turns SET on; if it was already on, or no task is WAITING, that is
 *      all (sets coalesce; the next wait finds SET itself);
 *   3. otherwise counts itself busy and, unless the waiter is the loop's
 *      polled one (POLLED), turns QUEUED on (once); for the polled waiter
 *      only when SLEEPER says the loop may be asleep, else it is done;
 * then, only in case 3, pushes the flag on loop->pending if it turned
 * QUEUED on (the loop reads a polled flag's word itself, at every batch
 * boundary and before it sleeps: loop->polled), kicks the loop
 * (which writes the eventfd only if the loop sleeps and nobody has written
 * since it fell asleep) and, as its very last touch of the flag, drops its
 * busy count. af_flag_destroy() retires the LIVE tag and waits for the busy
 * count to drain, so once a wait has returned 0 the flag may be destroyed
 * and its memory reused while the setter is still on its way out.
 * The loop takes the whole pending stack at once, so finding the flags that
 * were set costs O(flags set), never a scan of all flags. Pushes only ever
 * add at the head and the loop only ever takes the whole stack, so there is
 * no ABA problem and no lock: safe in a signal handler that interrupted the
 * loop thread in the middle of either.
 */
#include <sched.h>
#include <unistd.h>

#include "internal.h"
#include "prefetch.h"

_Static_assert(sizeof(struct af__flag) <= sizeof(union af__private),
	       "struct af_flag is too small for its private state");

void af__signal_forget(struct af_flag *flag);

void (*_Atomic af__test_hook)(enum af__hook_point where, void *obj);

static struct af__flag *priv(struct af_flag *flag)
{
	return (struct af__flag *)(void *)&flag->_private;
}

static bool live(uint32_t state)
{
	return (state & AF_FLAG_TAG_MASK) == AF_FLAG_LIVE;
}

/* relaxed: callers either own the flag (init, destroy, wait on the loop
 * thread) or only need "was live at some point during the call". */
static bool valid(const struct af_flag *flag)
{
	return flag && live(atomic_load_explicit(&priv((struct af_flag *)flag)->state,
						 memory_order_relaxed));
}

bool af__flag_live(const struct af_flag *flag)
{
	return valid(flag);
}

/* A flag initialised and not destroyed, as opposed to stack garbage that
 * happens to carry the tag: the plain magic is only ever written by init
 * and destroy, which the caller may not run at the same time as this. */
static bool looks_initialised(struct af_flag *flag)
{
	return valid(flag) && priv(flag)->magic == AF_FLAG_MAGIC;
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
	if (looks_initialised(flag)) {
		/* Re-initialising a live flag: it may still sit on its loop's
		 * pending stack (a waiter cancelled after a set), so take it
		 * off properly rather than cut the stack below it. */
		if (f->waiter) {
			af__misuse(__func__, "task \"%s\" is waiting on the flag; cancel it first",
				   f->waiter->name);
			return -EBUSY;
		}
		af_flag_destroy(flag);
	}
	af__loop_ref(loop);
	/* Atomic (relaxed): a setter reads it before its CAS, only to
	 * prefetch (prefetch_push()), possibly while we write it. */
	__atomic_store_n(&f->loop, loop, __ATOMIC_RELAXED);
	f->waiter = NULL;
	f->next = NULL;
	f->magic = AF_FLAG_MAGIC;
	/* release: a setter's acquiring CAS that sees LIVE also sees the
	 * fields above. Late setters of a destroyed flag never write the
	 * word (they stop at the LIVE check), so this store loses nothing. */
	atomic_store_explicit(&f->state, AF_FLAG_LIVE, memory_order_release);
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

/* The new state word for a set on @s: SET on and, when that wakes a
 * parked waiter, one more busy setter (it kicks the loop) and, unless the
 * waiter is the loop's polled one or the flag is queued already, QUEUED
 * on. QUEUED makes sure the flag sits on the pending stack at most once
 * even if it is cleared and set again before the loop collects it. The
 * polled waiter's set is busy only when the loop may be asleep (SLEEPER):
 * an awake loop reads the word itself, so the CAS is all such a set does. */
static uint32_t set_state(uint32_t s)
{
	if ((s & (AF_FLAG_SET | AF_FLAG_WAITING)) != AF_FLAG_WAITING)
		return s | AF_FLAG_SET;
	if (s & AF_FLAG_POLLED)
		return s & AF_FLAG_SLEEPER ? (s | AF_FLAG_SET) + AF_FLAG_BUSY_ONE
					   : s | AF_FLAG_SET;
	if (s & AF_FLAG_QUEUED)
		return s | AF_FLAG_SET;
	return (s | AF_FLAG_SET | AF_FLAG_QUEUED) + AF_FLAG_BUSY_ONE;
}

/* A set that will kick the loop: start the transfer of the loop's pending
 * line now, so that it overlaps the flag word's instead of following it
 * (both were last written by the loop's thread). A set that queues the flag
 * writes that line (the push); one for the polled waiter of a loop that may
 * be asleep only reads it (the kick's load of sleep_state, beside pending),
 * so a shared copy is all it needs. The loop read here may be stale or gone
 * (a destroy racing with us); the CAS that follows decides, and a prefetch
 * of a stale address only costs the fetch.
 * relaxed: nothing is read through it. */
static void prefetch_push(struct af__flag *f, uint32_t s)
{
	uint32_t want = set_state(s);
	struct af_loop *loop;

	if ((want & AF_FLAG_BUSY_MASK) == (s & AF_FLAG_BUSY_MASK))
		return;
	loop = __atomic_load_n(&f->loop, __ATOMIC_RELAXED);
	if (!loop)
		return;
	if ((want ^ s) & AF_FLAG_QUEUED)
		af__prefetch_write(&loop->pending);
	else
		__builtin_prefetch(&loop->sleep_state);
}

AF__HOT AF_API void af_flag_set(struct af_flag *flag)
{
	struct af__flag *f;
	struct af_loop *loop;
	uint32_t s, want;

	if (!flag)
		return;
	f = priv(flag);
	/* Every set ends in an RMW of the state word, most often on a line
	 * the waiter's clear left on the loop's CPU: ask for it owned, so
	 * that the load below does not fetch it shared first. */
	af__prefetch_write(&f->state);
	s = atomic_load_explicit(&f->state, memory_order_relaxed);
	prefetch_push(f, s);
	/* One CAS makes SET visible, claims the queueing step and counts us
	 * busy: there is no moment where a waiter can see the set while we
	 * still have to touch the flag uncounted. Its release publishes what
	 * the setter wrote before set() to the waiter, whose clearing
	 * read-modify-write acquires it; its acquire pairs with init's
	 * release, so f->loop below is the loop the LIVE tag belongs to, and
	 * with the releasing RMW that turned SLEEPER on (sleep_until() in
	 * loop.c), so that a set which sees SLEEPER sees the loop's SLEEPING
	 * too. Against the polled waiter's sleeping loop no more is needed:
	 * the loop's RMW and this CAS are on one word, so one comes first and
	 * the other sees it, on aarch64 as on x86 (coherence, not a fence).
	 * A coalesced set is still a successful RMW, so it publishes its
	 * writes too. */
	do {
		if (!live(s))
			return;
		want = set_state(s);
	} while (!atomic_compare_exchange_weak_explicit(&f->state, &s, want,
							 memory_order_acq_rel,
							 memory_order_relaxed));
	/* A coalesced set, or one for the polled waiter of an awake loop: the
	 * flag is not ours any more (its wait may return and free it now) and
	 * the loop needs no kick. One RMW of the word in all, so the setter
	 * never takes the line back from a loop that has just read it. */
	if ((want & AF_FLAG_BUSY_MASK) == (s & AF_FLAG_BUSY_MASK)) {
		if ((s & (AF_FLAG_SET | AF_FLAG_WAITING | AF_FLAG_POLLED)) ==
		    (AF_FLAG_WAITING | AF_FLAG_POLLED))
			af__hook(AF_HOOK_SET_PUBLISHED, flag);
		return;
	}
	af__hook(AF_HOOK_SET_PUBLISHED, flag);
	loop = f->loop;
	if ((want ^ s) & AF_FLAG_QUEUED)
		push_pending(loop, f);
	af__hook(AF_HOOK_SET_PUSHED, flag);
	/* The loop outlives this: destroy waits for our busy count, and a
	 * loop freed with live flags keeps its struct until they are gone.
	 * The kick's system call (syscall.h) leaves errno as it found it,
	 * which a signal handler's caller relies on. */
	af__loop_kick(loop);
	/* release: our last touch of the flag. Pairs with the acquiring
	 * load in wait_for_setters(), so destroy returns only after the push
	 * and the kick above, on every architecture. */
	atomic_fetch_sub_explicit(&f->state, AF_FLAG_BUSY_ONE, memory_order_release);
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
	if (t->loop->polled == f)
		t->loop->polled = NULL;
	atomic_fetch_and_explicit(&f->state,
				  ~(AF_FLAG_WAITING | AF_FLAG_POLLED | AF_FLAG_SLEEPER),
				  memory_order_acq_rel);
}

static const struct af__wait_ops flag_ops = {
	.what = "flag",
	.detach = flag_detach,
	.revoke = flag_detach,
	.keeps_alive = true,
};

/* Consume a set flag, or announce a waiter (with @polled, the loop's
 * polled one), in one atomic step: a setter either made SET visible before
 * (we take it) or will see WAITING (and queue the flag for the loop, or,
 * POLLED, only kick it). */
static bool take_or_announce(struct af__flag *f, uint32_t polled)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);

	for (;;) {
		uint32_t want = (s & AF_FLAG_SET) ? (s & ~AF_FLAG_SET)
						  : (s | AF_FLAG_WAITING | polled);

		if (atomic_compare_exchange_weak_explicit(&f->state, &s, want,
							  memory_order_acq_rel,
							  memory_order_acquire))
			return s & AF_FLAG_SET;
	}
}

AF_BLOCKING_API int AF_BODY(af_flag_wait_timeout)(struct af_flag *flag, int64_t timeout_ns)
{
	int err = 0, r;
	struct af_task *t = af__task_self(&err);
	struct af__flag *f;
	uint32_t polled;

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
	polled = !t->loop->polled && t->loop->may_poll ? AF_FLAG_POLLED : 0;
	if (take_or_announce(f, polled))
		return 0;
	if (polled)
		t->loop->polled = f;
	f->waiter = t;
	r = af__task_block(&flag_ops, f, timeout_ns);
	if (r == 0) {
		/* Woken by a set. Clearing SET here, not when the loop woke us,
		 * absorbs sets that landed in between: they were for this wake.
		 * acq_rel: acquire pairs with the setter's release (and, through
		 * the release sequence of RMWs on the word, with every set the
		 * clear absorbs). A polled waiter usually finds the line here:
		 * the loop read it a moment ago. */
		f->waiter = NULL;
		atomic_fetch_and_explicit(&f->state,
					  ~(AF_FLAG_SET | AF_FLAG_WAITING | AF_FLAG_POLLED |
					    AF_FLAG_SLEEPER),
					  memory_order_acq_rel);
	}
	return r;
}

AF__HOT AF_BLOCKING_API int AF_BODY(af_flag_wait)(struct af_flag *flag)
{
	return AF_BODY(af_flag_wait_timeout)(flag, -1);
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

AF__HOT void af__flag_collect(struct af_loop *loop)
{
	struct af__flag *f;

	af__flag_take_polled(loop);
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
			/* Queued before its waiter became the polled one. */
			if (loop->polled == f)
				loop->polled = NULL;
			af__task_wake(f->waiter, 0);
			loop->outside_wakes++;
		}
		f = next;
	}
}

/* Caller holds loop->unqueue_lock: two destroys (of flags of one stopped
 * loop) must not both hold part of the stack, or one puts back a flag the
 * other has already destroyed. Setters push meanwhile; they never take. */
static void unqueue_locked(struct af__flag *f)
{
	struct af_loop *loop = f->loop;
	struct af__flag *list, *keep = NULL, *tail = NULL, *head;

	if (!(atomic_load_explicit(&f->state, memory_order_acquire) & AF_FLAG_QUEUED))
		return;
	list = atomic_exchange_explicit(&loop->pending, NULL, memory_order_acquire);
	af__hook(AF_HOOK_UNQUEUE, f);
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

void af__flag_unqueue(struct af__flag *f)
{
	pthread_mutex_lock(&f->loop->unqueue_lock);
	unqueue_locked(f);
	pthread_mutex_unlock(&f->loop->unqueue_lock);
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

/* Setters that claimed the queueing step before the LIVE tag went are
 * between their CAS and their last touch: a push, a kick, maybe a write(2).
 * None of them blocks on anything, so yielding until they leave is short. */
static void wait_for_setters(struct af__flag *f)
{
	/* acquire pairs with the setters' releasing decrement: their push
	 * is visible before we unqueue. */
	while (atomic_load_explicit(&f->state, memory_order_acquire) & AF_FLAG_BUSY_MASK)
		sched_yield();
}

AF_API void af_flag_destroy(struct af_flag *flag)
{
	struct af__flag *f;
	struct af_loop *loop;

	if (!valid(flag))
		return;
	f = priv(flag);
	if (f->waiter) {
		af__misuse(__func__, "task \"%s\" is still waiting on the flag; cancel it first",
			   f->waiter->name);
		return;
	}
	/* Returns once no handler for the flag's signals is inside set(). */
	af__signal_forget(flag);
	/* From here every new set stops at the LIVE check without writing.
	 * relaxed: the ordering that matters is wait_for_setters()'s. */
	atomic_fetch_and_explicit(&f->state, ~(AF_FLAG_TAG_MASK | AF_FLAG_SET),
				  memory_order_relaxed);
	wait_for_setters(f);
	af__flag_unqueue(f);
	f->magic = 0;
	loop = f->loop;
	__atomic_store_n(&f->loop, NULL, __ATOMIC_RELAXED);
	af__loop_unref(loop);
}
