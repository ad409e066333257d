/* SPDX-License-Identifier: MIT */
/* Task groups: join, first failure, keep-going, timeout, cancellation of the
 * joiner, nesting, results through handles, and the refused calls. */
#include "testutil.h"

/*
 * Orders are asserted only where the scheduling rules fix them, never by
 * one sleep outlasting another: a sleep starts when its member first runs,
 * and on a loaded machine (under TSan) a stall between two members' starts
 * can swap their ends. So members that must end in an order wait for one
 * another's events, and a test that needs members blocked before a timer
 * expires yields until they are (nblocked), rather than sleeping a little.
 */
static struct trace tr;
static int nblocked; /* members inside a wait that only a cancel ends */

#define tracef(...) trace_addf(&tr, __VA_ARGS__)

static void reset(void)
{
	memset(&tr, 0, sizeof(tr));
	nblocked = 0;
}

static void yield_until_blocked(int n)
{
	while (nblocked < n)
		ck_assert_int_eq(af_yield(), 0);
}

/* A member that waits for @after (if set), sleeps @ms (if above 0), sets
 * @done (if set) and returns @result; it traces how it ended. */
struct job {
	const char *name;
	int ms;
	int result;
	struct af_event *after, *done;
};

static int job_fn(void *arg)
{
	struct job *j = arg;
	int r = j->after ? af_event_wait(j->after) : 0;

	if (r == 0 && j->ms > 0)
		r = af_sleep_ms((uint64_t)j->ms);
	if (r < 0) {
		tracef("%s=%s", j->name, errname(r));
		return r;
	}
	tracef("%s=%d", j->name, j->result);
	if (j->done)
		af_event_set(j->done);
	return j->result;
}

static int wait_forever_fn(void *arg)
{
	struct af_event never = AF_EVENT_INIT;
	int r;

	nblocked++;
	r = af_event_wait(&never);

	tracef("%s=%s", (const char *)arg, errname(r));
	return r;
}

/* ---- join ------------------------------------------------------------------- */

static int empty_main(void *arg)
{
	struct af_group g;

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_join(&g), 0);
	return 0;
}

START_TEST(join_of_an_empty_group_returns_zero_at_once)
{
	ck_assert_int_eq(run_main(empty_main, NULL), 0);
}
END_TEST

static int all_ok_main(void *arg)
{
	struct af_group g = AF_GROUP_INIT;
	struct af_event c_done = AF_EVENT_INIT, b_done = AF_EVENT_INIT;
	/* The last spawned ends first, after a sleep; each other member waits
	 * for the one spawned after it, so the join outlasts all three. */
	struct job a = { "a", 0, 1, &b_done, NULL }, b = { "b", 0, 2, &c_done, &b_done },
		   c = { "c", 5, 0, NULL, &c_done };

	(void)arg;
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &a), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &b), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &c), 0);
	ck_assert_int_eq(af_group_join(&g), 0);
	tracef("joined");
	return 0;
}

START_TEST(join_waits_for_every_member_and_returns_zero_when_none_failed)
{
	reset();
	ck_assert_int_eq(run_main(all_ok_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "c=0 b=2 a=1 joined");
}
END_TEST

static int results_main(void *arg)
{
	struct af_group g;
	struct job a = { "a", 5, 7, NULL, NULL }, b = { "b", 0, -EIO, NULL, NULL },
		   c = { "c", 0, 3, NULL, NULL };
	struct af_task *ta, *tb, *tc;
	int ra = 0, rb = 0, rc = 0;

	(void)arg;
	af_group_init(&g, AF_GROUP_KEEP_GOING);
	ck_assert_int_eq(af_group_spawn(&g, &ta, job_fn, &a), 0);
	ck_assert_int_eq(af_group_spawn(&g, &tb, job_fn, &b), 0);
	ck_assert_int_eq(af_group_spawn(&g, &tc, job_fn, &c), 0);
	ck_assert_int_eq(af_group_join(&g), -EIO);
	ck_assert(af_task_done(ta) && af_task_done(tb) && af_task_done(tc));
	ck_assert_int_eq(af_task_join(ta, &ra), 0);
	ck_assert_int_eq(af_task_join(tb, &rb), 0);
	ck_assert_int_eq(af_task_join(tc, &rc), 0);
	ck_assert_int_eq(ra, 7);
	ck_assert_int_eq(rb, -EIO);
	ck_assert_int_eq(rc, 3);
	return 0;
}

START_TEST(every_member_result_is_readable_through_its_handle_after_the_join)
{
	reset();
	ck_assert_int_eq(run_main(results_main, NULL), 0);
}
END_TEST

static int reuse_main(void *arg)
{
	struct af_group g;
	struct job bad = { "bad", 0, -EIO, NULL, NULL }, good = { "good", 0, 0, NULL, NULL };

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &bad), 0);
	ck_assert_int_eq(af_group_join(&g), -EIO);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &good), 0);
	ck_assert_int_eq(af_group_join(&g), 0);
	return 0;
}

START_TEST(a_joined_group_is_empty_and_can_be_used_again)
{
	reset();
	ck_assert_int_eq(run_main(reuse_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "bad=-5 good=0");
}
END_TEST

struct spawner {
	struct af_group *g;
	struct job *child;
};

static int spawner_fn(void *arg)
{
	struct spawner *s = arg;

	af_sleep_ms(1);
	tracef("spawn");
	return af_group_spawn(s->g, NULL, job_fn, s->child);
}

static int spawn_while_joined_main(void *arg)
{
	struct af_group g;
	struct job child = { "child", 5, 0, NULL, NULL };
	struct spawner s = { &g, &child };

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, spawner_fn, &s), 0);
	ck_assert_int_eq(af_group_join(&g), 0);
	tracef("joined");
	return 0;
}

START_TEST(a_member_may_spawn_into_its_group_while_it_is_joined)
{
	reset();
	ck_assert_int_eq(run_main(spawn_while_joined_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "spawn child=0 joined");
}
END_TEST

/* ---- failures --------------------------------------------------------------- */

static int first_failure_main(void *arg)
{
	struct af_group g;
	/* bad1 is spawned first and would fail too, but later: it is still
	 * asleep when bad2 fails (10 s against 5 ms, whatever the stalls). */
	struct job slow = { "slow", 10000, 0, NULL, NULL },
		   bad1 = { "bad1", 10000, -EIO, NULL, NULL },
		   bad2 = { "bad2", 5, -ENOENT, NULL, NULL };

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &slow), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &bad1), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &bad2), 0);
	ck_assert_int_eq(af_group_join(&g), -ENOENT);
	tracef("joined");
	return 0;
}

START_TEST(the_first_failure_in_time_cancels_the_others_and_join_returns_it)
{
	reset();
	ck_assert_int_eq(run_main(first_failure_main, NULL), 0);
	/* bad2 fails first, so slow and bad1 are cancelled in spawn order. */
	ck_assert_str_eq(tr.buf, "bad2=-2 slow=ECANCELED bad1=ECANCELED joined");
}
END_TEST

static int keep_going_main(void *arg)
{
	struct af_group g;
	struct job slow = { "slow", 20, 4, NULL, NULL }, bad = { "bad", 0, -EIO, NULL, NULL };

	(void)arg;
	af_group_init(&g, AF_GROUP_KEEP_GOING);
	/* slow is asleep when bad fails: it ran first, and its timer can
	 * fire only in a later batch than bad's first run. */
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &slow), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &bad), 0);
	ck_assert_int_eq(af_group_join(&g), -EIO);
	tracef("joined");
	return 0;
}

START_TEST(keep_going_lets_the_others_finish_and_join_still_returns_the_first_failure)
{
	reset();
	ck_assert_int_eq(run_main(keep_going_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "bad=-5 slow=4 joined");
}
END_TEST

static int never_ran_main(void *arg)
{
	struct af_group g;
	struct job a = { "a", 10000, 0, NULL, NULL }, b = { "b", 0, 0, NULL, NULL };
	struct af_task *ta, *tb;

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, &ta, job_fn, &a), 0);
	ck_assert_int_eq(af_yield(), 0);           /* a sleeps */
	ck_assert_int_eq(af_group_spawn(&g, &tb, job_fn, &b), 0);
	ck_assert_int_eq(af_task_cancel(tb), 0);   /* before it ever ran */
	ck_assert_int_eq(af_group_join(&g), -ECANCELED);
	ck_assert_int_eq(af_task_join(ta, NULL), 0);
	ck_assert_int_eq(af_task_join(tb, NULL), 0);
	return 0;
}

START_TEST(a_member_cancelled_before_it_ran_fails_with_ecanceled_and_cancels_the_others)
{
	reset();
	ck_assert_int_eq(run_main(never_ran_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a=ECANCELED");
}
END_TEST

static int cancel_main(void *arg)
{
	struct af_group g;
	struct job a = { "a", 10000, 0, NULL, NULL }, b = { "b", 0, 0, NULL, NULL };

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &a), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, wait_forever_fn, "w"), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_group_cancel(&g), 2);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &b), -ECANCELED);
	ck_assert_int_eq(af_group_join(&g), -ECANCELED);
	tracef("joined");
	return 0;
}

START_TEST(af_group_cancel_cancels_every_member_and_refuses_spawns_until_the_join)
{
	reset();
	ck_assert_int_eq(run_main(cancel_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a=ECANCELED w=ECANCELED joined");
}
END_TEST

/* ---- timeout and cancellation of the joiner ---------------------------------- */

/* Ignores the first cancel and takes a while to wind down, so the join must
 * really wait for it after the expiry. */
static int stubborn_fn(void *arg)
{
	int r;

	nblocked++;
	r = af_sleep_ms(10000);

	tracef("%s=%s", (const char *)arg, errname(r));
	ck_assert_int_eq(af_sleep_ms(5), 0);
	tracef("%s-done", (const char *)arg);
	return r;
}

static int timeout_main(void *arg)
{
	struct af_group g;
	struct job quick = { "quick", 0, 0, NULL, NULL };

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &quick), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, stubborn_fn, "s"), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, wait_forever_fn, "w"), 0);
	/* The members were queued before the join's timer was armed, so they
	 * all run (quick to its end) before it can fire, however late. */
	ck_assert_int_eq(af_group_join_timeout(&g, 20 * MS), -ETIMEDOUT);
	tracef("joined");
	return 0;
}

START_TEST(join_timeout_cancels_the_whole_group_on_expiry_and_waits_for_it_to_end)
{
	reset();
	ck_assert_int_eq(run_main(timeout_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "quick=0 s=ECANCELED w=ECANCELED s-done joined");
}
END_TEST

static int timeout_not_reached_main(void *arg)
{
	struct af_group g;
	struct job a = { "a", 1, 0, NULL, NULL };

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &a), 0);
	ck_assert_int_eq(af_group_join_timeout(&g, LONG_NS), 0);
	return 0;
}

START_TEST(join_timeout_that_does_not_expire_returns_like_join)
{
	reset();
	ck_assert_int_eq(run_main(timeout_not_reached_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "a=0");
}
END_TEST

static int joiner_fn(void *arg)
{
	struct af_group g;
	int r;

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, stubborn_fn, "s"), 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, wait_forever_fn, "w"), 0);
	r = af_group_join(&g);
	tracef("join=%s", errname(r));
	return r;
}

static int cancel_joiner_main(void *arg)
{
	struct af_task *j;
	int result = 0;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&j, joiner_fn, NULL), 0);
	yield_until_blocked(2); /* j is joining s and w */
	ck_assert_int_eq(af_task_cancel(j), 0);
	ck_assert_int_eq(af_task_join(j, &result), 0);
	ck_assert_int_eq(result, -ECANCELED);
	return 0;
}

START_TEST(cancelling_the_task_that_joins_a_group_cancels_the_group_and_waits_for_it)
{
	reset();
	ck_assert_int_eq(run_main(cancel_joiner_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "s=ECANCELED w=ECANCELED s-done join=ECANCELED");
}
END_TEST

/* ---- nesting ---------------------------------------------------------------- */

struct inner {
	const char *name;
	struct job *bad;     /* NULL: the inner members wait forever */
};

static int inner_group_fn(void *arg)
{
	struct inner *in = arg;
	struct af_group g;
	int r;

	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, wait_forever_fn, (void *)in->name), 0);
	if (in->bad)
		ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, in->bad), 0);
	r = af_group_join(&g);
	tracef("inner=%s", r == -EIO ? "EIO" : errname(r));
	return r;
}

static int nest_fail_main(void *arg)
{
	struct af_group outer;
	struct job bad = { "bad", 5, -EIO, NULL, NULL };
	struct inner in = { "iw", &bad };

	(void)arg;
	af_group_init(&outer, 0);
	ck_assert_int_eq(af_group_spawn(&outer, NULL, wait_forever_fn, "ow"), 0);
	ck_assert_int_eq(af_group_spawn(&outer, NULL, inner_group_fn, &in), 0);
	ck_assert_int_eq(af_group_join(&outer), -EIO);
	tracef("joined");
	return 0;
}

START_TEST(groups_nest_and_an_inner_failure_reaches_the_outer_join)
{
	reset();
	ck_assert_int_eq(run_main(nest_fail_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "bad=-5 iw=ECANCELED inner=EIO ow=ECANCELED joined");
}
END_TEST

static int nest_cancel_main(void *arg)
{
	struct af_group outer;
	struct inner in = { "iw", NULL };

	(void)arg;
	af_group_init(&outer, 0);
	ck_assert_int_eq(af_group_spawn(&outer, NULL, inner_group_fn, &in), 0);
	/* iw is spawned by a member, maybe after the join's timer fell due. */
	yield_until_blocked(1);
	ck_assert_int_eq(af_group_join_timeout(&outer, 5 * MS), -ETIMEDOUT);
	tracef("joined");
	return 0;
}

START_TEST(cancelling_an_outer_group_cancels_the_members_of_an_inner_one)
{
	reset();
	ck_assert_int_eq(run_main(nest_cancel_main, NULL), 0);
	ck_assert_str_eq(tr.buf, "iw=ECANCELED inner=ECANCELED joined");
}
END_TEST

/* ---- refused calls ------------------------------------------------------------ */

static int self_join_fn(void *arg)
{
	return af_group_join(arg);
}

static int deadlock_main(void *arg)
{
	struct af_group g;
	struct af_task *t;
	int result = 0;

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, &t, self_join_fn, &g), 0);
	ck_assert_int_eq(af_group_join(&g), -EDEADLK);
	ck_assert_int_eq(af_task_join(t, &result), 0);
	ck_assert_int_eq(result, -EDEADLK);
	return 0;
}

START_TEST(join_from_a_member_of_the_group_is_refused_with_edeadlk)
{
	ck_assert_int_eq(run_main(deadlock_main, NULL), 0);
}
END_TEST

static int second_joiner_fn(void *arg)
{
	return af_group_join(arg);
}

static int busy_main(void *arg)
{
	struct af_group g;
	struct job a = { "a", 5, 0, NULL, NULL };
	struct af_task *j2;
	int result = 0;

	(void)arg;
	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, &a), 0);
	ck_assert_int_eq(af_task_spawn(&j2, second_joiner_fn, &g), 0);
	ck_assert_int_eq(af_yield(), 0);     /* j2 is now joining */
	ck_assert_int_eq(af_group_join(&g), -EBUSY);
	ck_assert_int_eq(af_task_join(j2, &result), 0);
	ck_assert_int_eq(result, 0);
	return 0;
}

START_TEST(a_second_joiner_is_refused_with_ebusy)
{
	reset();
	ck_assert_int_eq(run_main(busy_main, NULL), 0);
}
END_TEST

static int null_main(void *arg)
{
	(void)arg;
	ck_assert_int_eq(af_group_spawn(NULL, NULL, job_fn, NULL), -EINVAL);
	ck_assert_int_eq(af_group_join(NULL), -EINVAL);
	ck_assert_int_eq(af_group_join_timeout(NULL, 0), -EINVAL);
	ck_assert_int_eq(af_group_cancel(NULL), -EINVAL);
	af_group_init(NULL, 0);
	return 0;
}

START_TEST(null_arguments_are_refused_with_einval)
{
	struct af_group g;

	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(run_main(null_main, NULL), 0);
}
END_TEST

START_TEST(calls_outside_a_loop_are_refused_with_eperm)
{
	struct af_group g;

	af_group_init(&g, 0);
	ck_assert_int_eq(af_group_spawn(&g, NULL, job_fn, NULL), -EPERM);
	ck_assert_int_eq(af_group_join(&g), -EPERM);
	ck_assert_int_eq(af_group_cancel(&g), -EPERM);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("group");
	TCase *tc;

	tc = tcase_create("join");
	tcase_add_test(tc, join_of_an_empty_group_returns_zero_at_once);
	tcase_add_test(tc, join_waits_for_every_member_and_returns_zero_when_none_failed);
	tcase_add_test(tc, every_member_result_is_readable_through_its_handle_after_the_join);
	tcase_add_test(tc, a_joined_group_is_empty_and_can_be_used_again);
	tcase_add_test(tc, a_member_may_spawn_into_its_group_while_it_is_joined);
	suite_add_tcase(s, tc);

	tc = tcase_create("failure");
	tcase_add_test(tc, the_first_failure_in_time_cancels_the_others_and_join_returns_it);
	tcase_add_test(tc, keep_going_lets_the_others_finish_and_join_still_returns_the_first_failure);
	tcase_add_test(tc, a_member_cancelled_before_it_ran_fails_with_ecanceled_and_cancels_the_others);
	tcase_add_test(tc, af_group_cancel_cancels_every_member_and_refuses_spawns_until_the_join);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeout");
	tcase_add_test(tc, join_timeout_cancels_the_whole_group_on_expiry_and_waits_for_it_to_end);
	tcase_add_test(tc, join_timeout_that_does_not_expire_returns_like_join);
	tcase_add_test(tc, cancelling_the_task_that_joins_a_group_cancels_the_group_and_waits_for_it);
	suite_add_tcase(s, tc);

	tc = tcase_create("nesting");
	tcase_add_test(tc, groups_nest_and_an_inner_failure_reaches_the_outer_join);
	tcase_add_test(tc, cancelling_an_outer_group_cancels_the_members_of_an_inner_one);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, join_from_a_member_of_the_group_is_refused_with_edeadlk);
	tcase_add_test(tc, a_second_joiner_is_refused_with_ebusy);
	tcase_add_test(tc, null_arguments_are_refused_with_einval);
	tcase_add_test(tc, calls_outside_a_loop_are_refused_with_eperm);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
