/* SPDX-License-Identifier: MIT */
/*
 * event-worker: reusing one Event to hand work to a worker task.
 *
 * The seed program from the asyncio docs is
 *
 *     async def worker(go):
 *         while True:
 *             await go.wait()
 *             do_one_unit_of_work()
 *             go.clear()
 *
 * with a note that if the producer may set the event again before the worker
 * is done, the worker should handle that (`while go.is_set(): ...`) before
 * clearing. This program shows both hazards and the fix:
 *
 * - An event is a boolean, not a counter: two sets before the worker wakes
 *   are one wake-up. So the work itself lives in a queue, and one wake-up
 *   takes everything queued.
 * - The work yields (as real I/O would), so the producer can post and set
 *   again while the worker is busy. Clearing *after* the work would throw
 *   that set away and strand the job; the worker clears *before* taking the
 *   queue and goes round again while the event is set.
 *
 * Finally the main task stops the worker by cancelling it.
 *
 * Build: cc event-worker.c $(pkg-config --cflags --libs asyncflag)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <asyncflag.h>

#define QUEUE_MAX 8

/* Shared by the producer (main task) and the worker. Both are tasks of the
 * same loop, and tasks only switch at blocking calls, so no lock is needed
 * around the queue. */
struct work {
	struct af_event go;     /* set: the queue has jobs for the worker */
	int queue[QUEUE_MAX];   /* job numbers posted, not yet taken */
	int queued;
	int done;
};

/* Static storage outlives every task, so nothing can be left waiting on an
 * event that went out of scope, whatever path the main task returns by. */
static struct work work = { .go = AF_EVENT_INIT };

static int fail(const char *what, int err)
{
	fprintf(stderr, "event-worker: %s: %s\n", what, af_strerror(err));
	return err;
}

static int do_one_unit_of_work(int job)
{
	/* Stands in for work that waits on something (I/O, a lock): other
	 * tasks, the producer among them, run meanwhile. */
	int r = af_yield();

	if (r < 0)
		return r;
	printf("worker: job %d done\n", job);
	return 0;
}

static int worker(void *arg)
{
	struct work *w = arg;
	int r;

	for (;;) {
		r = af_event_wait(&w->go);
		if (r == -ECANCELED)
			break;
		if (r < 0)
			return fail("af_event_wait", r);
		printf("worker: woken\n");

		/* Clear first, then take the queue: a job posted while we
		 * work below sets the event again, and this loop sees it. */
		while (af_event_is_set(&w->go)) {
			int batch[QUEUE_MAX], n = w->queued;

			af_event_clear(&w->go);
			for (int i = 0; i < n; i++)
				batch[i] = w->queue[i];
			w->queued = 0;

			for (int i = 0; i < n; i++) {
				r = do_one_unit_of_work(batch[i]);
				if (r == -ECANCELED)
					goto cancelled;
				if (r < 0)
					return fail("af_yield", r);
				w->done++;
			}
			if (af_event_is_set(&w->go))
				printf("worker: set again while I worked, going round\n");
		}
	}
cancelled:
	/* Cancellation is a request: the task decides how to unwind, here
	 * by reporting and ending normally. */
	printf("worker: cancelled after %d jobs\n", w->done);
	return 0;
}

static int post(struct work *w, int job)
{
	if (w->queued == QUEUE_MAX)
		return -ENOBUFS;
	w->queue[w->queued++] = job;
	printf("main: posted job %d\n", job);
	/* Does not switch to the worker: it only becomes runnable. */
	af_event_set(&w->go);
	return 0;
}

static int main_task(void *arg)
{
	struct af_task *task;
	int r, result;

	(void)arg;
	r = af_task_spawn(&task, worker, &work);
	if (r < 0)
		return fail("af_task_spawn", r);

	/* On an error below we simply return: when the main task ends, the
	 * loop cancels the tasks still alive and runs them to their end. */

	/* 1: one job, and time for the worker to pick it up. */
	r = post(&work, 1);
	if (r < 0)
		return fail("post", r);
	r = af_sleep_ms(100);
	if (r < 0)
		return fail("af_sleep_ms", r);

	/* 2: two jobs, two sets, one wake-up. */
	r = post(&work, 2);
	if (r < 0)
		return fail("post", r);
	r = post(&work, 3);
	if (r < 0)
		return fail("post", r);
	r = af_sleep_ms(100);
	if (r < 0)
		return fail("af_sleep_ms", r);

	/* 3: set, then yield: the woken worker runs first and starts job 4,
	 * and job 5 arrives while it is busy with it. */
	r = post(&work, 4);
	if (r < 0)
		return fail("post", r);
	r = af_yield();
	if (r < 0)
		return fail("af_yield", r);
	r = post(&work, 5);
	if (r < 0)
		return fail("post", r);
	r = af_sleep_ms(100);
	if (r < 0)
		return fail("af_sleep_ms", r);

	/* The worker is back in af_event_wait(); cancelling makes that call
	 * return -ECANCELED, and the join waits until it has unwound. */
	printf("main: stopping the worker\n");
	r = af_task_cancel(task);
	if (r < 0)
		return fail("af_task_cancel", r);
	r = af_task_join(task, &result);
	if (r < 0)
		return fail("af_task_join", r);
	printf("main: worker stopped\n");
	return result;
}

int main(void)
{
	int r;

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("event-worker: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, NULL);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
