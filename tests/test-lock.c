/* SPDX-License-Identifier: MIT */
/* Lock: FIFO with direct hand-off (semantics.md "Lock"), cancellation of
 * queued and handed-to waiters, timeouts and the error codes of lock.h. */
#include <stdarg.h>

#include "testutil.h"
#include "internal.h"

static struct trace tr;

#define tracef(...) trace_addf(&tr, __VA_ARGS__)

static void reset(void)
{
	memset(&tr, 0, sizeof(tr));
}

static void yield_until(const int *count, int want)
{
	while (*count < want)
		ck_assert_int_eq(af_yield(), 0);
}

static void join_ok(struct af_task *t)
{
	ck_assert_int_eq(af_task_join(t, NULL), 0);
}

/* A task that queues on the lock, traces what acquire returned, and if it
 * got the lock holds it across a yield (so the order of holders is the
 * order of the trace) before releasing it. */
struct locker {
	const char *name;
	struct af_lock *lock;
	int64_t timeout_ns;
	int *nqueued;
	int result;
};

static int locker_fn(void *arg)
{
	struct locker *l = arg;

	if (l->nqueued)
		(*l->nqueued)++;
	l->result = af_lock_acquire_timeout(l->lock, l->timeout_ns);
	tracef("%s=%s", l->name, errname(l->result));
	if (l->result < 0)
		return 0;
	ck_assert(af_lock_locked(l->lock));
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_lock_release(l->lock), 0);
	return 0;
}

#define LOCKER(n, lk, cnt) { (n), (lk), -1, (cnt), 1 }

/* ---- hand-off ------------------------------------------------------------- */

static int handoff_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct af_task *t1, *t2, *t3;
	int n = 0;
	struct locker w1 = LOCKER("w1", &lock, &n);
	struct locker w2 = LOCKER("w2", &lock, &n);
	struct locker w3 = LOCKER("w3", &lock, &n);

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t1, locker_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, locker_fn, &w2), 0);
	ck_assert_int_eq(af_task_spawn(&t3, locker_fn, &w3), 0);
	yield_until(&n, 3);
	ck_assert_int_eq(af_lock_release(&lock), 0);
	/* Handed to w1 already, though w1 has not run yet. */
	ck_assert(af_lock_locked(&lock));
	trace_add(&tr, "released");
	join_ok(t1);
	join_ok(t2);
	join_ok(t3);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

START_TEST(release_with_waiters_hands_the_lock_to_the_first_waiter)
{
	reset();
	ck_assert_int_eq(run_main(handoff_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "released w1=0 w2=0 w3=0");
}
END_TEST

static int newcomer_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct af_task *t1, *t2, *tn;
	int n = 0;
	struct locker w1 = LOCKER("w1", &lock, &n);
	struct locker w2 = LOCKER("w2", &lock, &n);
	struct locker nc = LOCKER("n", &lock, NULL);

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t1, locker_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, locker_fn, &w2), 0);
	yield_until(&n, 2);
	ck_assert_int_eq(af_lock_release(&lock), 0);
	/* Two newcomers right after the release: n, runnable before w1 can
	 * pass the lock on, and main itself. Both queue behind w2. */
	ck_assert_int_eq(af_task_spawn(&tn, locker_fn, &nc), 0);
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	trace_add(&tr, "main=0");
	ck_assert_int_eq(af_lock_release(&lock), 0);
	join_ok(t1);
	join_ok(t2);
	join_ok(tn);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

START_TEST(newcomers_acquiring_right_after_a_release_queue_behind_the_waiters)
{
	reset();
	ck_assert_int_eq(run_main(newcomer_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1=0 w2=0 main=0 n=0");
}
END_TEST

/* ---- cancellation --------------------------------------------------------- */

/* Queues once; if that is cancelled, queues again with the same wait node,
 * so a stale link left in the queue would corrupt the order. */
static int requeuer_fn(void *arg)
{
	struct locker *l = arg;
	int r;

	(*l->nqueued)++;
	r = af_lock_acquire(l->lock);
	tracef("%s=%s", l->name, errname(r));
	if (r == 0) {
		ck_assert_int_eq(af_lock_release(l->lock), 0);
		return 0;
	}
	r = af_lock_acquire(l->lock);
	tracef("%s-again=%s", l->name, errname(r));
	if (r == 0)
		ck_assert_int_eq(af_lock_release(l->lock), 0);
	return 0;
}

static int cancel_queued_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct locker w1 = LOCKER("w1", &lock, &n);
	struct locker w2 = LOCKER("w2", &lock, &n);

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t1, requeuer_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, locker_fn, &w2), 0);
	yield_until(&n, 2);
	ck_assert_int_eq(af_task_cancel(t1), 0);
	ck_assert_int_eq(af_yield(), 0); /* w1 unwinds and queues again */
	trace_add(&tr, "release");
	ck_assert_int_eq(af_lock_release(&lock), 0);
	join_ok(t1);
	join_ok(t2);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

/* A cancel that arrives while the task runs ends its next acquire of a
 * held lock at once, leaving the lock's queue as it was. */
static struct af_lock self_lk;

static int self_cancel_acquirer(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	return af_lock_acquire(&self_lk);
}

static int self_cancel_lock_main(void *arg)
{
	struct af_task *t;
	int r = -1;

	(void)arg;
	af_lock_init(&self_lk);
	ck_assert_int_eq(af_lock_acquire(&self_lk), 0);
	ck_assert_int_eq(af_task_spawn(&t, self_cancel_acquirer, NULL), 0);
	ck_assert_int_eq(af_task_join(t, &r), 0);
	ck_assert_int_eq(r, -ECANCELED);
	ck_assert_int_eq(af_lock_release(&self_lk), 0);
	ck_assert_int_eq(af_lock_acquire(&self_lk), 0); /* free, nobody queued */
	ck_assert_int_eq(af_lock_release(&self_lk), 0);
	return 0;
}

START_TEST(a_task_that_cancelled_itself_gets_ecanceled_from_its_next_acquire_of_a_held_lock)
{
	ck_assert_int_eq(run_main(self_cancel_lock_main, NULL), 0);
}
END_TEST

START_TEST(a_waiter_cancelled_while_queued_leaves_the_queue)
{
	reset();
	ck_assert_int_eq(run_main(cancel_queued_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1=ECANCELED release w2=0 w1-again=0");
}
END_TEST

static int cancel_handed_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct locker w1 = LOCKER("w1", &lock, &n);
	struct locker w2 = LOCKER("w2", &lock, &n);

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t1, locker_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, locker_fn, &w2), 0);
	yield_until(&n, 2);
	ck_assert_int_eq(af_lock_release(&lock), 0); /* handed to w1 */
	ck_assert_int_eq(af_task_cancel(t1), 0);
	/* Passed on to w2, so still held. */
	ck_assert(af_lock_locked(&lock));
	/* main is a newcomer: it must queue behind w2, not take it. */
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	trace_add(&tr, "main=0");
	ck_assert_int_eq(af_lock_release(&lock), 0);
	ck_assert(!af_lock_locked(&lock));
	join_ok(t1);
	join_ok(t2);
	ck_assert_int_eq(w1.result, -ECANCELED);
	return 0;
}

START_TEST(a_waiter_cancelled_after_being_handed_the_lock_passes_it_to_the_next_waiter)
{
	reset();
	ck_assert_int_eq(run_main(cancel_handed_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1=ECANCELED w2=0 main=0");
}
END_TEST

static int cancel_handed_last_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct af_task *t1;
	int n = 0;
	struct locker w1 = LOCKER("w1", &lock, &n);

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t1, locker_fn, &w1), 0);
	yield_until(&n, 1);
	ck_assert_int_eq(af_lock_release(&lock), 0);
	ck_assert(af_lock_locked(&lock));
	ck_assert_int_eq(af_task_cancel(t1), 0);
	/* Nobody to pass it to: it is free at once. */
	ck_assert(!af_lock_locked(&lock));
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, 0), 0);
	trace_add(&tr, "main=0");
	join_ok(t1);
	ck_assert(af_lock_locked(&lock));
	ck_assert_int_eq(af_lock_release(&lock), 0);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

START_TEST(a_handed_waiter_cancelled_with_nobody_behind_it_leaves_the_lock_free)
{
	reset();
	ck_assert_int_eq(run_main(cancel_handed_last_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "main=0 w1=ECANCELED");
}
END_TEST

/* ---- timeouts ------------------------------------------------------------- */

static int timeout_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct af_task *t1, *t2;
	int n = 0;
	struct locker w1 = { "w1", &lock, 20 * 1000 * 1000, &n, 1 };
	struct locker w2 = LOCKER("w2", &lock, &n);

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t1, locker_fn, &w1), 0);
	ck_assert_int_eq(af_task_spawn(&t2, locker_fn, &w2), 0);
	join_ok(t1); /* returns once w1's acquire timed out */
	ck_assert(af_lock_locked(&lock));
	trace_add(&tr, "release");
	ck_assert_int_eq(af_lock_release(&lock), 0);
	join_ok(t2);
	ck_assert(!af_lock_locked(&lock));
	ck_assert_int_eq(w1.result, -ETIMEDOUT);
	return 0;
}

START_TEST(acquire_timeout_expiry_returns_etimedout_and_leaves_the_queue)
{
	reset();
	ck_assert_int_eq(run_main(timeout_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "w1=ETIMEDOUT release w2=0");
}
END_TEST

struct holder {
	struct af_lock *lock;
	struct af_event go;
	bool holding;
};

static int holder_fn(void *arg)
{
	struct holder *h = arg;

	ck_assert_int_eq(af_lock_acquire(h->lock), 0);
	h->holding = true;
	ck_assert_int_eq(af_event_wait(&h->go), 0);
	ck_assert_int_eq(af_lock_release(h->lock), 0);
	return 0;
}

static int timeout_zero_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;
	struct holder h = { &lock, AF_EVENT_INIT, false };
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, 0), 0);
	ck_assert_int_eq(af_lock_release(&lock), 0);
	ck_assert_int_eq(af_task_spawn(&t, holder_fn, &h), 0);
	while (!h.holding)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, 0), -ETIMEDOUT);
	/* The expired attempt left no trace: the holder's release frees it. */
	ck_assert(af_lock_locked(&lock));
	af_event_set(&h.go);
	join_ok(t);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

START_TEST(acquire_timeout_of_zero_takes_a_free_lock_and_expires_on_a_held_one)
{
	ck_assert_int_eq(run_main(timeout_zero_main, NULL), 0);
}
END_TEST

/* ---- errors --------------------------------------------------------------- */

static int unheld_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;

	(void)arg;
	ck_assert_int_eq(af_lock_release(&lock), -EPERM);
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_lock_release(&lock), 0);
	ck_assert_int_eq(af_lock_release(&lock), -EPERM);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

START_TEST(releasing_a_lock_that_is_not_held_is_refused_with_eperm)
{
	ck_assert_int_eq(run_main(unheld_main, NULL), 0);
}
END_TEST

static int twice_main(void *arg)
{
	struct af_lock lock = AF_LOCK_INIT;

	(void)arg;
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_lock_acquire(&lock), -EDEADLK);
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, 0), -EDEADLK);
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, 1000), -EDEADLK);
	/* Still held once: one release frees it. */
	ck_assert(af_lock_locked(&lock));
	ck_assert_int_eq(af_lock_release(&lock), 0);
	ck_assert(!af_lock_locked(&lock));
	return 0;
}

START_TEST(acquiring_a_lock_the_caller_holds_is_refused_with_edeadlk)
{
	ck_assert_int_eq(run_main(twice_main, NULL), 0);
}
END_TEST

static int null_main(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_lock_acquire(NULL), -EINVAL);
	ck_assert_int_eq(af_lock_acquire_timeout(NULL, 0), -EINVAL);
	ck_assert_int_eq(af_lock_release(NULL), -EINVAL);
	ck_assert(!af_lock_locked(NULL));
	af_lock_init(NULL);
	return 0;
}

START_TEST(null_lock_is_refused_with_einval)
{
	ck_assert_int_eq(run_main(null_main, NULL), 0);
}
END_TEST

START_TEST(lock_calls_outside_a_task_are_refused_with_eperm)
{
	struct af_lock lock = AF_LOCK_INIT;

	ck_assert_int_eq(af_lock_acquire(&lock), -EPERM);
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, 0), -EPERM);
	ck_assert_int_eq(af_lock_acquire_timeout(&lock, -1), -EPERM);
	ck_assert_int_eq(af_lock_release(&lock), -EPERM);
	ck_assert(!af_lock_locked(&lock));
}
END_TEST

/* ---- initialisation ------------------------------------------------------- */

static struct af_lock static_lock;

static int static_main(void *arg)
{
	struct af_lock lock;
	struct af_task *t;
	int n = 0;
	struct locker w = LOCKER("w", &static_lock, &n);

	(void)arg;
	ck_assert(!af_lock_locked(&static_lock));
	ck_assert_int_eq(af_lock_acquire(&static_lock), 0);
	ck_assert_int_eq(af_task_spawn(&t, locker_fn, &w), 0);
	yield_until(&n, 1);
	ck_assert_int_eq(af_lock_release(&static_lock), 0);
	join_ok(t);
	ck_assert_int_eq(w.result, 0);
	ck_assert(!af_lock_locked(&static_lock));

	memset(&lock, 0xa5, sizeof(lock));
	af_lock_init(&lock);
	ck_assert(!af_lock_locked(&lock));
	ck_assert_int_eq(af_lock_acquire(&lock), 0);
	ck_assert_int_eq(af_lock_release(&lock), 0);
	return 0;
}

START_TEST(zero_initialised_and_af_lock_init_locks_are_unlocked_and_work)
{
	ck_assert_int_eq(run_main(static_main, NULL), 0);
}
END_TEST


static struct af_lock orphan_lock;

static int take_and_end(void *arg)
{
	(void)arg;
	return af_lock_acquire(&orphan_lock);
}

static int try_take(void *arg)
{
	(void)arg;
	return af_lock_acquire_timeout(&orphan_lock, 10 * 1000 * 1000);
}

static int orphan_main(void *arg)
{
	struct af_task *a, *b;
	int r = -1;

	(void)arg;
	af_lock_init(&orphan_lock);
	ck_assert_int_eq(af_task_spawn(&a, take_and_end, NULL), 0);
	ck_assert_int_eq(af_task_join(a, &r), 0);
	ck_assert_int_eq(r, 0);
	ck_assert(af_lock_locked(&orphan_lock));
	/* b may well be allocated where a was: it must still be a stranger
	 * to the lock, not its holder. */
	ck_assert_int_eq(af_task_spawn(&b, try_take, NULL), 0);
	ck_assert_int_eq(af_task_join(b, &r), 0);
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_int_eq(af_lock_release(&orphan_lock), 0);
	return 0;
}

START_TEST(a_lock_left_held_by_an_ended_task_does_not_treat_a_new_task_as_its_holder)
{
	ck_assert_int_eq(run_main(orphan_main, NULL), 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("lock");
	TCase *tc;

	tc = tcase_create("hand-off");
	tcase_add_test(tc, release_with_waiters_hands_the_lock_to_the_first_waiter);
	tcase_add_test(tc, newcomers_acquiring_right_after_a_release_queue_behind_the_waiters);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancel");
	tcase_add_test(tc, a_waiter_cancelled_while_queued_leaves_the_queue);
	tcase_add_test(tc, a_task_that_cancelled_itself_gets_ecanceled_from_its_next_acquire_of_a_held_lock);
	tcase_add_test(tc, a_waiter_cancelled_after_being_handed_the_lock_passes_it_to_the_next_waiter);
	tcase_add_test(tc, a_handed_waiter_cancelled_with_nobody_behind_it_leaves_the_lock_free);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeout");
	tcase_add_test(tc, acquire_timeout_expiry_returns_etimedout_and_leaves_the_queue);
	tcase_add_test(tc, acquire_timeout_of_zero_takes_a_free_lock_and_expires_on_a_held_one);
	suite_add_tcase(s, tc);

	tc = tcase_create("ownership");
	tcase_add_test(tc, a_lock_left_held_by_an_ended_task_does_not_treat_a_new_task_as_its_holder);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, releasing_a_lock_that_is_not_held_is_refused_with_eperm);
	tcase_add_test(tc, acquiring_a_lock_the_caller_holds_is_refused_with_edeadlk);
	tcase_add_test(tc, null_lock_is_refused_with_einval);
	tcase_add_test(tc, lock_calls_outside_a_task_are_refused_with_eperm);
	suite_add_tcase(s, tc);

	tc = tcase_create("init");
	tcase_add_test(tc, zero_initialised_and_af_lock_init_locks_are_unlocked_and_work);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
