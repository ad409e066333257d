/* SPDX-License-Identifier: MIT */
/*
 * af_run_blocking(): blocking functions on a small pool of worker threads.
 *
 * A finished job travels back the way a flag set does: pushed on a
 * lock-free stack owned by the loop (loop->jobs_done), then a kick that
 * writes the eventfd only if the loop sleeps. Only the loop thread frees a
 * job, after the worker has pushed it, so a task cancelled while its job
 * runs simply leaves: the loop discards the result when the job comes back.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct af__job {
	struct af__job *next;     /* pool queue, then loop->jobs_done */
	af_task_fn fn;
	void *arg;
	int result;
	bool finished;            /* loop thread: the worker is done with it */
	struct af_task *task;     /* loop thread: the waiter, NULL if it left */
	struct af_loop *loop;
};

struct af__pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct af__job *head, *tail;
	pthread_t *threads;
	unsigned nthreads, max, idle;
	unsigned queued;          /* jobs no worker has taken yet */
	bool stopping;
};

#define AF_BLOCKING_DEFAULT 4u

static void push_done(struct af_loop *loop, struct af__job *job)
{
	struct af__job *head = atomic_load_explicit(&loop->jobs_done, memory_order_relaxed);

	/* seq_cst: half of the sleep handshake (see sleep_until in loop.c);
	 * release publishes job->result to the loop's acquiring exchange. */
	do {
		job->next = head;
	} while (!atomic_compare_exchange_weak_explicit(&loop->jobs_done, &head, job,
							 memory_order_seq_cst,
							 memory_order_relaxed));
	af__loop_kick(loop);
}

/* Signals the kernel sends to the thread that caused them. Blocked, the
 * kernel forces the default action on them and no handler runs (not the
 * application's crash reporter, not a sanitizer's report, not the
 * overflow report): a worker never blocks them. SIGABRT is not one:
 * abort() unblocks it itself, and a kill -ABRT should not land here. */
static const int fault_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };

static void fault_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(fault_signals) / sizeof(fault_signals[0]); i++)
		sigaddset(set, fault_signals[i]);
}

static void *worker(void *arg)
{
	struct af__pool *pool = arg;
	sigset_t faults;

	/* Everything else came blocked from pool_submit(); the loop thread
	 * may have blocked fault signals of its own, which we undo. */
	fault_set(&faults);
	pthread_sigmask(SIG_UNBLOCK, &faults, NULL);
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct af__job *job;

		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		job = pool->head;
		if (!job)
			break; /* stopping, and the queue is drained */
		pool->head = job->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->queued--;
		pool->idle--;
		pthread_mutex_unlock(&pool->lock);

		job->result = job->fn(job->arg);
		push_done(job->loop, job);

		pthread_mutex_lock(&pool->lock);
		pool->idle++;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static int pool_get(struct af_loop *loop, struct af__pool **out)
{
	struct af__pool *pool = loop->pool;

	if (!pool) {
		pool = calloc(1, sizeof(*pool));
		if (!pool)
			return -ENOMEM;
		pool->max = loop->blocking_threads ? loop->blocking_threads : AF_BLOCKING_DEFAULT;
		pool->threads = calloc(pool->max, sizeof(*pool->threads));
		if (!pool->threads) {
			free(pool);
			return -ENOMEM;
		}
		pthread_mutex_init(&pool->lock, NULL);
		pthread_cond_init(&pool->cond, NULL);
		loop->pool = pool;
	}
	*out = pool;
	return 0;
}

/* Queue @job, starting a worker unless an idle one is left over for it: a
 * worker counts as idle until it has taken a job, so a burst of jobs
 * submitted before any worker woke must still grow the pool (or a job
 * waiting on another queued job could wait forever). */
/* A new thread starts with its creator's signal mask: create workers with
 * every signal but the faults blocked, so that not one instruction of a
 * worker runs where a process-directed signal (SIGINT, SIGCHLD, SIGUSR1)
 * could pick it and run the application's handler there. */
static int worker_start(struct af__pool *pool, pthread_t *th)
{
	sigset_t block, old;
	int r;

	sigfillset(&block);
	for (size_t i = 0; i < sizeof(fault_signals) / sizeof(fault_signals[0]); i++)
		sigdelset(&block, fault_signals[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	r = -pthread_create(th, NULL, worker, pool);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

static int pool_submit(struct af__pool *pool, struct af__job *job)
{
	int r = 0;

	pthread_mutex_lock(&pool->lock);
	if (pool->idle <= pool->queued && pool->nthreads < pool->max) {
		r = worker_start(pool, &pool->threads[pool->nthreads]);
		if (r == 0) {
			pool->nthreads++;
			pool->idle++;
		} else if (pool->nthreads > 0) {
			r = 0; /* the existing workers will get to it */
		}
	}
	if (r == 0) {
		job->next = NULL;
		if (pool->tail)
			pool->tail->next = job;
		else
			pool->head = job;
		pool->tail = job;
		pool->queued++;
		pthread_cond_signal(&pool->cond);
	}
	pthread_mutex_unlock(&pool->lock);
	return r;
}

static void job_detach(struct af_task *t)
{
	(void)t; /* the job stays queued or running; see af_run_blocking */
}

static const struct af__wait_ops job_ops = {
	.what = "blocking job",
	.detach = job_detach,
	.keeps_alive = true,
};

/* Queue fn(arg) on @t's loop's pool. */
static int job_start(struct af_task *t, af_task_fn fn, void *arg, struct af__job **out)
{
	struct af__pool *pool;
	struct af__job *job;
	int r = pool_get(t->loop, &pool);

	if (r < 0)
		return r;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	job->fn = fn;
	job->arg = arg;
	job->task = t;
	job->loop = t->loop;
	r = pool_submit(pool, job);
	if (r < 0) {
		free(job);
		return r;
	}
	t->loop->njobs++;
	*out = job;
	return 0;
}

AF_API int af_run_blocking(af_task_fn fn, void *arg, int *result)
{
	int err = 0, r;
	struct af_task *t = af__task_self(&err);
	struct af__job *job;

	af_assert_return(fn, -EINVAL);
	if (!t)
		return err;
	if (t->cancel_pending) {
		t->cancel_pending = false;
		return -ECANCELED;
	}
	r = job_start(t, fn, arg, &job);
	if (r < 0)
		return r;
	r = af__task_block(&job_ops, job, -1);
	if (!job->finished) {
		/* Cancelled while the job runs: leave it to the loop, which
		 * frees it when the worker hands it back. */
		job->task = NULL;
		return r;
	}
	if (r == 0 && result)
		*result = job->result;
	free(job);
	return r;
}

int af__blocking_run_through(struct af_task *t, af_task_fn fn, void *arg, int *result)
{
	struct af__job *job;
	bool cancelled;
	int r = job_start(t, fn, arg, &job);

	if (r < 0)
		return r;
	/* af__task_block would take a pending cancel and return at once. */
	cancelled = t->cancel_pending;
	t->cancel_pending = false;
	while (!job->finished)
		if (af__task_block(&job_ops, job, -1) == -ECANCELED)
			cancelled = true;
	*result = job->result;
	free(job);
	if (cancelled)
		t->cancel_pending = true;
	return 0;
}

AF__HOT void af__blocking_collect(struct af_loop *loop)
{
	struct af__job *job;

	if (!atomic_load_explicit(&loop->jobs_done, memory_order_relaxed))
		return;
	/* acquire pairs with push_done's CAS: job->result is visible. */
	job = atomic_exchange_explicit(&loop->jobs_done, NULL, memory_order_acquire);
	while (job) {
		struct af__job *next = job->next;

		job->finished = true;
		loop->njobs--;
		if (!job->task)
			free(job);
		else if (job->task->state == AF_TASK_BLOCKED && job->task->wait_obj == job) {
			af__task_wake(job->task, 0);
			loop->outside_wakes++;
		}
		/* else: woken by a cancel, not yet resumed; it frees the job */
		job = next;
	}
}

void af__blocking_shutdown(struct af_loop *loop)
{
	struct af__pool *pool = loop->pool;

	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	/* Workers finish the queue first: a job's arg must stay valid until
	 * its fn returns, and abandoned jobs were promised that. */
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	af__blocking_collect(loop);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
	loop->pool = NULL;
}
