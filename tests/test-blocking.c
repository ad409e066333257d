/* SPDX-License-Identifier: MIT */
/* af_run_blocking(): blocking functions on the loop's worker threads, the
 * pool size, cancellation of the waiting task, and the flag path back. */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"


/* ---- helpers ------------------------------------------------------------------ */

/* Wait on a worker thread until @v reaches @want or @ms pass. */
static bool thread_wait_for(_Atomic int *v, int want, unsigned ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * (uint64_t)MS;

	while (atomic_load(v) < want) {
		if (now_ns() > end)
			return false;
		sleep_ms(1);
	}
	return true;
}

/* The same from a task, letting the loop run meanwhile. */
static bool task_wait_for_ms(_Atomic int *v, int want, unsigned ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * (uint64_t)MS;

	while (atomic_load(v) < want && now_ns() < end)
		ck_assert_int_eq(af_sleep_ms(1), 0);
	return atomic_load(v) >= want;
}

static bool task_wait_for(_Atomic int *v, int want)
{
	return task_wait_for_ms(v, want, 10000);
}

static int run_opts(af_task_fn fn, void *arg, const struct af_loop_opts *opts)
{
	struct af_loop *loop;
	int r, result = -1;

	r = af_loop_new(&loop, opts);
	ck_assert_msg(r == 0, "af_loop_new: %s", af_strerror(r));
	r = af_loop_run(loop, fn, arg, &result);
	ck_assert_msg(r == 0, "af_loop_run: %s", af_strerror(r));
	af_loop_free(loop);
	return result;
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Whether thread @tid of this process still exists. pthread_join returns
 * when the thread has released its stack, a moment before the kernel
 * removes it; give that moment generously. */
static bool thread_gone(pid_t tid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
	for (int i = 0; i < 1000; i++) {
		if (access(path, F_OK) != 0)
			return true;
		sleep_ms(1);
	}
	return false;
}

/* ---- results and threads ------------------------------------------------------- */

struct basic {
	pthread_t loop_thread, job_thread;
	int seen_arg;
	int r, result;
};

static int basic_job(void *arg)
{
	struct basic *b = arg;

	/* Plain writes: the loop must hand them over with the result. */
	b->job_thread = pthread_self();
	b->seen_arg = 1;
	sleep_ms(20);
	return 42;
}

static int negative_job(void *arg)
{
	(void)arg;
	return -EIO;
}

static int basic_main(void *arg)
{
	struct basic *b = arg;
	int res = 0;

	b->loop_thread = pthread_self();
	/* The only task waits on a job: the loop sleeps rather than report a
	 * deadlock, and the call returns the job's result. */
	b->r = af_run_blocking(basic_job, b, &b->result);
	ck_assert_int_eq(b->seen_arg, 1);
	/* A negative result is the job's, not an error of the call. */
	ck_assert_int_eq(af_run_blocking(negative_job, NULL, &res), 0);
	ck_assert_int_eq(res, -EIO);
	ck_assert_int_eq(af_run_blocking(basic_job, b, NULL), 0);
	return 0;
}

START_TEST(run_blocking_returns_the_functions_result_and_runs_it_off_the_loop_thread)
{
	struct basic b = { .result = -1 };

	ck_assert_int_eq(run_main(basic_main, &b), 0);
	ck_assert_int_eq(b.r, 0);
	ck_assert_int_eq(b.result, 42);
	ck_assert(!pthread_equal(b.job_thread, b.loop_thread));
	ck_assert(!pthread_equal(b.job_thread, pthread_self()));
}
END_TEST

struct ticking {
	_Atomic int ticks;
	_Atomic int stop;
	int advance;
	uint64_t took;
};

static int ticker(void *arg)
{
	struct ticking *tk = arg;

	while (!atomic_load(&tk->stop)) {
		atomic_fetch_add(&tk->ticks, 1);
		ck_assert_int_eq(af_sleep_ms(1), 0);
	}
	return 0;
}

/* Sleeps, then insists on seeing the ticker move: if the loop were stuck
 * in this call the ticks would never come. */
static int sleeping_job(void *arg)
{
	struct ticking *tk = arg;
	int start = atomic_load(&tk->ticks);

	sleep_ms(100);
	thread_wait_for(&tk->ticks, start + 5, 5000);
	return atomic_load(&tk->ticks) - start;
}

static int ticking_main(void *arg)
{
	struct ticking *tk = arg;
	struct af_task *t;
	uint64_t t0;

	ck_assert_int_eq(af_task_spawn(&t, ticker, tk), 0);
	ck_assert_int_eq(af_yield(), 0);
	t0 = now_ns();
	ck_assert_int_eq(af_run_blocking(sleeping_job, tk, &tk->advance), 0);
	tk->took = now_ns() - t0;
	atomic_store(&tk->stop, 1);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(the_loop_keeps_serving_other_tasks_while_a_job_blocks)
{
	struct ticking tk = { 0 };

	ck_assert_int_eq(run_main(ticking_main, &tk), 0);
	ck_assert_int_ge(tk.advance, 5);
	ck_assert_uint_ge(tk.took, (uint64_t)100 * MS);
}
END_TEST

/* ---- the pool ------------------------------------------------------------------- */

#define NJOBS 20

struct pool_probe {
	_Atomic int running, max_running, done, release;
	pthread_mutex_t lock;
	pid_t tids[NJOBS];
	int ntids;
	unsigned hold_ms;   /* how long each job holds its worker */
	bool wait_release;  /* or until released */
	int results[NJOBS];
	int rs[NJOBS];
};

struct pool_arg {
	struct pool_probe *p;
	int i;
};

static int probe_job(void *arg)
{
	struct pool_arg *a = arg;
	struct pool_probe *p = a->p;
	int n = atomic_fetch_add(&p->running, 1) + 1, m = atomic_load(&p->max_running);
	pid_t me = gettid_();
	bool known = false;

	while (n > m && !atomic_compare_exchange_weak(&p->max_running, &m, n))
		;
	pthread_mutex_lock(&p->lock);
	for (int k = 0; k < p->ntids; k++)
		known |= p->tids[k] == me;
	if (!known && p->ntids < NJOBS)
		p->tids[p->ntids++] = me;
	pthread_mutex_unlock(&p->lock);
	if (p->wait_release)
		thread_wait_for(&p->release, 1, 10000);
	else
		sleep_ms(p->hold_ms);
	atomic_fetch_sub(&p->running, 1);
	atomic_fetch_add(&p->done, 1);
	return 1000 + a->i;
}

static int probe_caller(void *arg)
{
	struct pool_arg *a = arg;

	a->p->rs[a->i] = af_run_blocking(probe_job, a, &a->p->results[a->i]);
	return 0;
}

static int pool_main(void *arg)
{
	struct pool_probe *p = arg;
	struct pool_arg args[NJOBS];
	struct af_task *t[NJOBS];

	for (int i = 0; i < NJOBS; i++) {
		args[i] = (struct pool_arg){ p, i };
		ck_assert_int_eq(af_task_spawn(&t[i], probe_caller, &args[i]), 0);
	}
	for (int i = 0; i < NJOBS; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	return 0;
}

START_TEST(more_jobs_than_workers_all_complete_never_more_than_the_pool_size_at_once)
{
	struct pool_probe p = { .hold_ms = 20 };
	struct af_loop_opts o = { .blocking_threads = 2 };
	uint64_t t0 = now_ns();

	pthread_mutex_init(&p.lock, NULL);
	ck_assert_int_eq(run_opts(pool_main, &p, &o), 0);
	for (int i = 0; i < NJOBS; i++) {
		ck_assert_int_eq(p.rs[i], 0);
		ck_assert_int_eq(p.results[i], 1000 + i);
	}
	ck_assert_int_eq(atomic_load(&p.done), NJOBS);
	ck_assert_int_ge(atomic_load(&p.max_running), 1);
	ck_assert_int_le(atomic_load(&p.max_running), 2);
	ck_assert_int_ge(p.ntids, 1);
	ck_assert_int_le(p.ntids, 2);
	/* Twenty 20 ms jobs, two at a time: not less than 200 ms. */
	ck_assert_uint_ge(now_ns() - t0, (uint64_t)200 * MS);
	for (int k = 0; k < p.ntids; k++)
		ck_assert_msg(thread_gone(p.tids[k]), "worker %d outlived af_loop_free",
			      (int)p.tids[k]);
	pthread_mutex_destroy(&p.lock);
}
END_TEST

static int default_pool_main(void *arg)
{
	struct pool_probe *p = arg;
	struct pool_arg args[8];
	struct af_task *t[8];
	bool ok;

	for (int i = 0; i < 8; i++) {
		args[i] = (struct pool_arg){ p, i };
		ck_assert_int_eq(af_task_spawn(&t[i], probe_caller, &args[i]), 0);
	}
	/* Four jobs that each hold a worker: a pool of four runs them all
	 * together, however fast they were submitted. */
	ok = task_wait_for_ms(&p->running, 4, 2000);
	if (!ok)
		atomic_store(&p->release, 1);
	ck_assert_msg(ok, "only %d of 8 jobs running on a pool of 4 after 2 s",
		      atomic_load(&p->running));
	/* Were the pool larger, the other four would have started by now. */
	ck_assert_int_eq(af_sleep_ms(50), 0);
	ck_assert_int_eq(atomic_load(&p->running), 4);
	atomic_store(&p->release, 1);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	ck_assert_int_eq(atomic_load(&p->done), 8);
	return 0;
}

START_TEST(the_default_pool_runs_four_jobs_at_once)
{
	struct pool_probe p = { .wait_release = true };

	pthread_mutex_init(&p.lock, NULL);
	ck_assert_int_eq(run_main(default_pool_main, &p), 0);
	ck_assert_int_eq(atomic_load(&p.max_running), 4);
	ck_assert_int_eq(p.ntids, 4);
	pthread_mutex_destroy(&p.lock);
}
END_TEST

struct pair {
	_Atomic int b_done;
	int ra, rb, resa, resb;
};

static int job_a_waits_for_b(void *arg)
{
	struct pair *p = arg;

	return thread_wait_for(&p->b_done, 1, 3000) ? 1 : 0;
}

static int job_b(void *arg)
{
	struct pair *p = arg;

	atomic_store(&p->b_done, 1);
	return 2;
}

static int caller_b(void *arg)
{
	struct pair *p = arg;

	p->rb = af_run_blocking(job_b, p, &p->resb);
	return 0;
}

static int pair_main(void *arg)
{
	struct pair *p = arg;
	struct af_task *t;

	/* Both jobs are queued in the same round, before any worker woke. */
	ck_assert_int_eq(af_task_spawn(&t, caller_b, p), 0);
	p->ra = af_run_blocking(job_a_waits_for_b, p, &p->resa);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(a_job_waiting_on_another_job_is_not_stuck_behind_it_while_the_pool_has_room)
{
	struct pair p = { .resa = -1, .resb = -1 };
	struct af_loop_opts o = { .blocking_threads = 2 };

	ck_assert_int_eq(run_opts(pair_main, &p, &o), 0);
	ck_assert_int_eq(p.ra, 0);
	ck_assert_int_eq(p.rb, 0);
	ck_assert_int_eq(p.resb, 2);
	ck_assert_msg(p.resa == 1, "job A waited 3 s for job B, queued behind it");
}
END_TEST

START_TEST(more_than_256_blocking_threads_is_refused_with_einval)
{
	struct af_loop *loop = NULL;
	struct af_loop_opts o = { .blocking_threads = 257 };

	ck_assert_int_eq(af_loop_new(&loop, &o), -EINVAL);
	ck_assert_ptr_null(loop);
	o.blocking_threads = 256;
	ck_assert_int_eq(af_loop_new(&loop, &o), 0);
	af_loop_free(loop);
}
END_TEST

/* ---- cancellation ------------------------------------------------------------------ */

struct held {
	_Atomic int started, release, finished;
	pid_t worker;
	int r, result, r_next;
	struct af_task *t;
};

static int held_job(void *arg)
{
	struct held *h = arg;

	h->worker = gettid_();
	atomic_store(&h->started, 1);
	thread_wait_for(&h->release, 1, 10000);
	sleep_ms(5);
	atomic_store(&h->finished, 1);
	return 7;
}

static int held_caller(void *arg)
{
	struct held *h = arg;

	h->r = af_run_blocking(held_job, h, &h->result);
	h->r_next = af_yield();
	return 0;
}

/* How a scenario ends once the waiting task has been cancelled. */
enum { END_COLLECT, END_LOOP_FREE };

struct cancel_case {
	struct held h;
	int end;
};

static int cancel_main(void *arg)
{
	struct cancel_case *c = arg;
	struct held *h = &c->h;

	ck_assert_int_eq(af_task_spawn(&h->t, held_caller, h), 0);
	ck_assert(task_wait_for(&h->started, 1));
	ck_assert_int_eq(af_task_cancel(h->t), 0);
	/* The job cannot have finished: it waits for a release still to come. */
	ck_assert_int_eq(af_task_join(h->t, NULL), 0);
	ck_assert_int_eq(atomic_load(&h->finished), 0);
	atomic_store(&h->release, 1);
	if (c->end == END_COLLECT) {
		/* The loop takes the abandoned job back while it runs. */
		ck_assert(task_wait_for(&h->finished, 1));
		for (int i = 0; i < 5000 && af_loop_current()->njobs > 0; i++)
			ck_assert_int_eq(af_sleep_ms(1), 0);
		ck_assert_uint_eq(af_loop_current()->njobs, 0);
	}
	return 0;
}

START_TEST(a_cancelled_waiter_returns_ecanceled_at_once_and_the_loop_collects_the_finished_job)
{
	struct cancel_case c = { .h.result = -1, .end = END_COLLECT };

	ck_assert_int_eq(run_main(cancel_main, &c), 0);
	ck_assert_int_eq(c.h.r, -ECANCELED);
	ck_assert_int_eq(c.h.result, -1);
	ck_assert_int_eq(c.h.r_next, 0);
	ck_assert_int_eq(atomic_load(&c.h.finished), 1);
}
END_TEST

START_TEST(a_job_abandoned_by_a_cancel_still_finishes_and_loop_free_waits_for_it)
{
	struct cancel_case c = { .h.result = -1, .end = END_LOOP_FREE };
	struct af_loop *loop;
	int result = -1;

	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_loop_run(loop, cancel_main, &c, &result), 0);
	ck_assert_int_eq(result, 0);
	/* The loop ended with the job still running on its worker. */
	af_loop_free(loop);
	ck_assert_int_eq(atomic_load(&c.h.finished), 1);
	ck_assert(thread_gone(c.h.worker));
	ck_assert_int_eq(c.h.r, -ECANCELED);
	ck_assert_int_eq(c.h.result, -1);
}
END_TEST

struct queued_case {
	struct held busy, queued;
};

static int queued_main(void *arg)
{
	struct queued_case *q = arg;

	/* One worker, busy: the second job waits in the queue when its task
	 * is cancelled. It still runs once the worker is free. */
	ck_assert_int_eq(af_task_spawn(&q->busy.t, held_caller, &q->busy), 0);
	ck_assert(task_wait_for(&q->busy.started, 1));
	ck_assert_int_eq(af_task_spawn(&q->queued.t, held_caller, &q->queued), 0);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(atomic_load(&q->queued.started), 0);
	ck_assert_int_eq(af_task_cancel(q->queued.t), 0);
	ck_assert_int_eq(af_task_join(q->queued.t, NULL), 0);
	ck_assert_int_eq(q->queued.r, -ECANCELED);
	atomic_store(&q->busy.release, 1);
	atomic_store(&q->queued.release, 1);
	ck_assert_int_eq(af_task_join(q->busy.t, NULL), 0);
	ck_assert_int_eq(q->busy.r, 0);
	ck_assert_int_eq(q->busy.result, 7);
	ck_assert(task_wait_for(&q->queued.finished, 1));
	return 0;
}

START_TEST(a_job_still_queued_when_its_waiter_is_cancelled_runs_later_all_the_same)
{
	struct queued_case q = { .busy.result = -1, .queued.result = -1 };
	struct af_loop_opts o = { .blocking_threads = 1 };

	ck_assert_int_eq(run_opts(queued_main, &q, &o), 0);
	ck_assert_int_eq(q.queued.result, -1);
	ck_assert_int_eq(atomic_load(&q.queued.finished), 1);
}
END_TEST

static int back_before_resume_main(void *arg)
{
	struct held *h = arg;
	struct af_loop *loop = af_loop_current();

	ck_assert_int_eq(af_task_spawn(&h->t, held_caller, h), 0);
	ck_assert(task_wait_for(&h->started, 1));
	ck_assert_int_eq(af_task_cancel(h->t), 0);
	ck_assert_int_eq(h->t->state, AF_TASK_RUNNABLE);
	/* Before the cancelled task resumes, its job comes back: release it
	 * and hold the loop thread until the worker has handed it over. */
	atomic_store(&h->release, 1);
	for (int i = 0; i < 10000 && !atomic_load(&loop->jobs_done); i++)
		sleep_ms(1);
	ck_assert_ptr_nonnull(atomic_load(&loop->jobs_done));
	ck_assert_int_eq(af_task_join(h->t, NULL), 0);
	ck_assert_uint_eq(loop->njobs, 0);
	return 0;
}

START_TEST(a_job_that_comes_back_after_the_cancel_but_before_the_waiter_resumed_is_discarded)
{
	struct held h = { .result = -1 };

	ck_assert_int_eq(run_main(back_before_resume_main, &h), 0);
	ck_assert_int_eq(h.r, -ECANCELED);
	ck_assert_int_eq(h.result, -1);
	ck_assert_int_eq(h.r_next, 0);
}
END_TEST

static int woken_then_cancelled_main(void *arg)
{
	struct held *h = arg;

	ck_assert_int_eq(af_task_spawn(&h->t, held_caller, h), 0);
	ck_assert(task_wait_for(&h->started, 1));
	atomic_store(&h->release, 1);
	/* Yield until the job is back and has woken its task, which then sits
	 * runnable behind us. */
	for (uint64_t end = now_ns() + (uint64_t)LONG_NS;
	     h->t->state == AF_TASK_BLOCKED && now_ns() < end;)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(h->t->state, AF_TASK_RUNNABLE);
	ck_assert_int_eq(af_task_cancel(h->t), 0);
	ck_assert_int_eq(af_task_join(h->t, NULL), 0);
	return 0;
}

START_TEST(a_waiter_cancelled_after_its_job_woke_it_returns_ecanceled_once)
{
	struct held h = { .result = -1 };

	ck_assert_int_eq(run_main(woken_then_cancelled_main, &h), 0);
	/* As documented: a cancelled call returns -ECANCELED, the result is
	 * discarded and the cancel is used up. */
	ck_assert_int_eq(h.r, -ECANCELED);
	ck_assert_int_eq(h.result, -1);
	ck_assert_int_eq(h.r_next, 0);
	ck_assert_int_eq(atomic_load(&h.finished), 1);
}
END_TEST

static _Atomic int never_ran;

static int must_not_run(void *arg)
{
	(void)arg;
	atomic_store(&never_ran, 1);
	return 0;
}

static int self_cancel_main(void *arg)
{
	int res = -1;

	(void)arg;
	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	ck_assert_int_eq(af_run_blocking(must_not_run, NULL, &res), -ECANCELED);
	ck_assert_int_eq(res, -1);
	/* The cancel was used up. */
	ck_assert_int_eq(af_yield(), 0);
	return 0;
}

START_TEST(a_cancel_pending_before_the_call_returns_ecanceled_without_running_fn)
{
	atomic_store(&never_ran, 0);
	ck_assert_int_eq(run_main(self_cancel_main, NULL), 0);
	/* af_loop_free has joined any worker: a job would have run by now. */
	ck_assert_int_eq(atomic_load(&never_ran), 0);
}
END_TEST

/* Tasks calling many short jobs while the main task cancels them at random:
 * every job runs at most once, every successful call gets its own job's
 * result, and the loop collects every abandoned job. */
#define STORM_TASKS 16
#define STORM_CALLS 100

struct storm {
	_Atomic int ran[STORM_TASKS * STORM_CALLS];
	int rs[STORM_TASKS * STORM_CALLS];
	int results[STORM_TASKS * STORM_CALLS];
	int ok, cancelled;
	struct af_task *t[STORM_TASKS];
};

struct storm_arg {
	struct storm *s;
	int task;
};

struct storm_job {
	struct storm *s;
	int id;
};

static int storm_job_fn(void *arg)
{
	struct storm_job *j = arg;
	int id = j->id;
	struct storm *s = j->s;

	free(j);
	atomic_fetch_add(&s->ran[id], 1);
	for (volatile int k = 0; k < (id % 7) * 500; k++)
		;
	return id * 3 + 1;
}

static int storm_caller(void *arg)
{
	struct storm_arg *a = arg;
	struct storm *s = a->s;

	for (int k = 0; k < STORM_CALLS; k++) {
		int id = a->task * STORM_CALLS + k;
		/* On the heap: a cancelled call leaves, the job still reads it. */
		struct storm_job *j = malloc(sizeof(*j));

		ck_assert_ptr_nonnull(j);
		j->s = s;
		j->id = id;
		s->results[id] = -1;
		s->rs[id] = af_run_blocking(storm_job_fn, j, &s->results[id]);
		if (s->rs[id] == 0)
			s->ok++;
		else if (s->rs[id] == -ECANCELED)
			s->cancelled++;
	}
	return 0;
}

static int storm_main(void *arg)
{
	struct storm *s = arg;
	struct storm_arg args[STORM_TASKS];
	unsigned seed = 99;

	for (int i = 0; i < STORM_TASKS; i++) {
		args[i] = (struct storm_arg){ s, i };
		ck_assert_int_eq(af_task_spawn(&s->t[i], storm_caller, &args[i]), 0);
	}
	/* Let every task make its first call: one cancelled before it ever
	 * ran would run no code at all. */
	ck_assert_int_eq(af_yield(), 0);
	for (int round = 0; round < 400; round++) {
		int victim;

		seed = seed * 1103515245u + 12345u;
		victim = (int)((seed >> 16) % STORM_TASKS);
		if (!af_task_done(s->t[victim]))
			ck_assert_int_eq(af_task_cancel(s->t[victim]), 0);
		if (round % 2)
			ck_assert_int_eq(af_yield(), 0);
		else
			ck_assert_int_eq(af_sleep_ns((seed >> 8) % 50000), 0);
	}
	for (int i = 0; i < STORM_TASKS; i++)
		ck_assert_int_eq(af_task_join(s->t[i], NULL), 0);
	for (int i = 0; i < 5000 && af_loop_current()->njobs > 0; i++)
		ck_assert_int_eq(af_sleep_ms(1), 0);
	ck_assert_uint_eq(af_loop_current()->njobs, 0);
	return 0;
}

START_TEST(jobs_racing_random_cancels_run_at_most_once_and_hand_back_their_own_result)
{
	struct storm *s = calloc(1, sizeof(*s));
	struct af_loop_opts o = { .blocking_threads = 3 };

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(run_opts(storm_main, s, &o), 0);
	ck_assert_int_eq(s->ok + s->cancelled, STORM_TASKS * STORM_CALLS);
	ck_assert_int_gt(s->ok, 0);
	ck_assert_int_gt(s->cancelled, 0);
	for (int id = 0; id < STORM_TASKS * STORM_CALLS; id++) {
		int ran = atomic_load(&s->ran[id]);

		ck_assert_msg(ran <= 1, "job %d ran %d times", id, ran);
		if (s->rs[id] == 0) {
			ck_assert_msg(ran == 1, "job %d returned without running", id);
			ck_assert_int_eq(s->results[id], id * 3 + 1);
		} else {
			ck_assert_int_eq(s->results[id], -1);
		}
	}
	free(s);
}
END_TEST

/* ---- errors --------------------------------------------------------------------- */

static int null_fn_main(void *arg)
{
	int res = -1;

	(void)arg;
	ck_assert_int_eq(af_run_blocking(NULL, NULL, &res), -EINVAL);
	ck_assert_int_eq(res, -1);
	return 0;
}

START_TEST(a_null_function_is_refused_with_einval)
{
	ck_assert_int_eq(run_main(null_fn_main, NULL), 0);
}
END_TEST

struct outside {
	int r, res;
};

static void *outside_thread(void *arg)
{
	struct outside *o = arg;

	o->r = af_run_blocking(must_not_run, NULL, &o->res);
	return NULL;
}

START_TEST(run_blocking_outside_a_task_fails_with_eperm_without_running_fn)
{
	struct outside o = { .res = -1 };
	struct af_loop *loop;
	pthread_t th;
	int res = -1;

	atomic_store(&never_ran, 0);
	ck_assert_int_eq(af_run_blocking(must_not_run, NULL, &res), -EPERM);
	ck_assert_int_eq(res, -1);
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	ck_assert_int_eq(af_run_blocking(must_not_run, NULL, &res), -EPERM);
	ck_assert_int_eq(pthread_create(&th, NULL, outside_thread, &o), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(o.r, -EPERM);
	ck_assert_int_eq(o.res, -1);
	af_loop_free(loop);
	ck_assert_int_eq(atomic_load(&never_ran), 0);
}
END_TEST

/* ---- the flag path ------------------------------------------------------------------ */

struct flagged {
	struct af_flag f;
	int r_wait, r_call, result;
};

static int flag_setting_job(void *arg)
{
	struct flagged *fl = arg;

	sleep_ms(10);
	af_flag_set(&fl->f);
	return 3;
}

static int flag_waiter(void *arg)
{
	struct flagged *fl = arg;

	fl->r_wait = af_flag_wait_timeout(&fl->f, LONG_NS);
	return 0;
}

static int flag_main(void *arg)
{
	struct flagged *fl = arg;
	struct af_task *t;

	ck_assert_int_eq(af_flag_init(&fl->f, NULL), 0);
	ck_assert_int_eq(af_task_spawn(&t, flag_waiter, fl), 0);
	ck_assert_int_eq(af_yield(), 0);
	fl->r_call = af_run_blocking(flag_setting_job, fl, &fl->result);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	af_flag_destroy(&fl->f);
	return 0;
}

START_TEST(a_job_that_sets_a_flag_of_the_loop_wakes_the_task_waiting_on_it)
{
	struct flagged fl = { .r_wait = 1, .r_call = 1 };

	ck_assert_int_eq(run_main(flag_main, &fl), 0);
	ck_assert_int_eq(fl.r_wait, 0);
	ck_assert_int_eq(fl.r_call, 0);
	ck_assert_int_eq(fl.result, 3);
}
END_TEST

/* ---- signals on the workers ------------------------------------------------------ */

static const int fault_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };

/* Bit 0: a fault signal is blocked on the worker; bit 1: an application
 * signal (SIGINT, SIGUSR1, SIGTERM) is not. */
static int worker_mask_job(void *arg)
{
	sigset_t now;
	int bad = 0;

	(void)arg;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	for (size_t i = 0; i < sizeof(fault_signals) / sizeof(fault_signals[0]); i++)
		if (sigismember(&now, fault_signals[i]))
			bad |= 1;
	if (!sigismember(&now, SIGINT) || !sigismember(&now, SIGUSR1) || !sigismember(&now, SIGTERM))
		bad |= 2;
	return bad;
}

static int worker_mask_main(void *arg)
{
	int res[3] = { -1, -1, -1 };

	(void)arg;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(af_run_blocking(worker_mask_job, NULL, &res[i]), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(res[i], 0);
	return 0;
}

START_TEST(workers_block_application_signals_but_never_the_fault_signals)
{
	sigset_t segv, old;

	/* Even when the loop thread blocks a fault signal itself. */
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &segv, &old), 0);
	ck_assert_int_eq(run_main(worker_mask_main, NULL), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}
END_TEST

static void crash_reporter(int sig, siginfo_t *si, void *uc)
{
	static const char msg[] = "crash-reporter\n";

	(void)uc;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 || sig != SIGSEGV ||
	    si->si_addr != (void *)(uintptr_t)64)
		_exit(43);
	_exit(42);
}

static int faulting_job(void *arg)
{
	*(volatile int *)arg = 1;
	return 0;
}

static int faulting_main(void *arg)
{
	int r = -1;

	return af_run_blocking(faulting_job, arg, &r) == 0 ? 100 : 101;
}

static void faulting_child(void *arg)
{
	struct sigaction sa;

	(void)arg;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_reporter;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	/* The first page is never mapped. */
	_exit(af_run(faulting_main, (void *)(uintptr_t)64));
}

START_TEST(a_fault_inside_a_job_reaches_the_applications_sigsegv_handler)
{
	char out[512];
	int status = in_child(faulting_child, NULL, out, sizeof(out));

	/* Blocked on the worker, the kernel would force SIG_DFL: SIGSEGV. */
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
		      "the handler did not run (status 0x%x); stderr: %s", status, out);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("blocking");
	TCase *tc;

	tc = tcase_create("results and threads");
	tcase_add_test(tc, run_blocking_returns_the_functions_result_and_runs_it_off_the_loop_thread);
	tcase_add_test(tc, the_loop_keeps_serving_other_tasks_while_a_job_blocks);
	suite_add_tcase(s, tc);

	tc = tcase_create("pool");
	tcase_add_test(tc, more_jobs_than_workers_all_complete_never_more_than_the_pool_size_at_once);
	tcase_add_test(tc, the_default_pool_runs_four_jobs_at_once);
	tcase_add_test(tc, a_job_waiting_on_another_job_is_not_stuck_behind_it_while_the_pool_has_room);
	tcase_add_test(tc, more_than_256_blocking_threads_is_refused_with_einval);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancellation");
	tcase_add_test(tc, a_cancelled_waiter_returns_ecanceled_at_once_and_the_loop_collects_the_finished_job);
	tcase_add_test(tc, a_job_abandoned_by_a_cancel_still_finishes_and_loop_free_waits_for_it);
	tcase_add_test(tc, a_job_still_queued_when_its_waiter_is_cancelled_runs_later_all_the_same);
	tcase_add_test(tc, a_job_that_comes_back_after_the_cancel_but_before_the_waiter_resumed_is_discarded);
	tcase_add_test(tc, a_waiter_cancelled_after_its_job_woke_it_returns_ecanceled_once);
	tcase_add_test(tc, a_cancel_pending_before_the_call_returns_ecanceled_without_running_fn);
	tcase_add_test(tc, jobs_racing_random_cancels_run_at_most_once_and_hand_back_their_own_result);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, a_null_function_is_refused_with_einval);
	tcase_add_test(tc, run_blocking_outside_a_task_fails_with_eperm_without_running_fn);
	suite_add_tcase(s, tc);

	tc = tcase_create("signals");
	tcase_add_test(tc, workers_block_application_signals_but_never_the_fault_signals);
	tcase_add_test(tc, a_fault_inside_a_job_reaches_the_applications_sigsegv_handler);
	suite_add_tcase(s, tc);

	tc = tcase_create("flag path");
	tcase_add_test(tc, a_job_that_sets_a_flag_of_the_loop_wakes_the_task_waiting_on_it);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
