/* SPDX-License-Identifier: MIT */
/*
 * flag-thread: handing results from a plain thread to a task.
 *
 * A pthread computes a few results and pushes each one on an af_queue; a
 * task gets them and prints every result. The queue's push is lock-free
 * and safe from any thread (even a signal handler); a full queue fails
 * with -EAGAIN instead of blocking. Underneath, each push sets a
 * ThreadSafeFlag (af_flag) that wakes the waiting task: sets coalesce, so
 * the thread may push three results before the task wakes once, and the
 * queue hands over all three. How many wake-ups that takes varies from
 * run to run; the output does not.
 *
 * Build: cc flag-thread.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <asyncflag.h>

#define NRESULTS 5

static int fail(const char *what, int err)
{
	fprintf(stderr, "flag-thread: %s: %s\n", what, af_strerror(err));
	return err;
}

/* A plain thread: it knows nothing about the loop except the queue. */
static void *producer(void *arg)
{
	struct af_queue *results = arg;
	const struct timespec pause = { .tv_nsec = 20 * 1000 * 1000 };

	for (int i = 0; i < NRESULTS; i++) {
		/* Some work, and a pause so that the task's wake-ups and the
		 * thread's pushes interleave in different ways on each run. */
		intptr_t result = (i + 1) * (i + 1);

		if (i % 2 == 0)
			(void)nanosleep(&pause, NULL); /* EINTR only shortens it */
		/* Items are pointer-sized: small values travel in the pointer
		 * itself. -EAGAIN only if the task fell NRESULTS behind. */
		while (af_queue_push(results, (void *)result) == -EAGAIN)
			sched_yield();
	}
	return NULL;
}

static int consume(struct af_queue *results)
{
	for (int seen = 0; seen < NRESULTS; seen++) {
		void *item;
		int r = af_queue_get(results, &item);

		if (r < 0)
			return fail("af_queue_get", r);
		printf("task: result %d is %d\n", seen + 1, (int)(intptr_t)item);
	}
	return 0;
}

static int main_task(void *arg)
{
	/* Static: the thread may push until it is joined, and static storage
	 * cannot go out of scope before that on any path. */
	static struct af_queue results;
	pthread_t thread;
	int r, err;

	(void)arg;
	/* NULL: bind the queue to the loop running this task. Initialise it
	 * before the thread exists, so every push finds a valid queue. */
	r = af_queue_init(&results, NULL, NRESULTS);
	if (r < 0)
		return fail("af_queue_init", r);

	printf("task: waiting for %d results from a thread\n", NRESULTS);
	err = pthread_create(&thread, NULL, producer, &results);
	if (err != 0) {
		af_queue_destroy(&results);
		return fail("pthread_create", -err);
	}

	r = consume(&results);

	/* The thread's last push may still be returning; join it before
	 * destroying the queue. It has pushed everything by now, so this
	 * blocks the loop thread for a moment at most. */
	err = pthread_join(thread, NULL);
	if (err != 0)
		return fail("pthread_join", -err);
	af_queue_destroy(&results);
	if (r == 0)
		printf("task: all %d results received\n", NRESULTS);
	return r;
}

int main(void)
{
	int r;

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("flag-thread: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, NULL);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
