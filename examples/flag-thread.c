/* SPDX-License-Identifier: MIT */
/*
 * flag-thread: a ThreadSafeFlag (af_flag) set from another thread.
 *
 * A pthread computes a few results and, after each one, publishes it and
 * calls af_flag_set(). A task waits on the flag and prints every result.
 *
 * Flag sets coalesce: the flag is one bit, not a counter, so the thread may
 * publish three results before the task wakes once. The count of published
 * results therefore travels in an atomic counter next to the flag, and each
 * wake-up processes everything published since the last one. How many
 * wake-ups that takes varies from run to run; the output does not.
 *
 * Build: cc flag-thread.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <asyncflag.h>

#define NRESULTS 5

struct shared {
	struct af_flag ready;        /* set after each result is published */
	atomic_int published;        /* how many of results[] are filled in */
	int results[NRESULTS];       /* written by the thread, read by the task */
};

static int fail(const char *what, int err)
{
	fprintf(stderr, "flag-thread: %s: %s\n", what, af_strerror(err));
	return err;
}

/* A plain thread: it knows nothing about the loop except the flag. */
static void *producer(void *arg)
{
	struct shared *s = arg;
	const struct timespec pause = { .tv_nsec = 20 * 1000 * 1000 };

	for (int i = 0; i < NRESULTS; i++) {
		/* Some work, and a pause so that the task's wake-ups and the
		 * thread's sets interleave in different ways on each run. */
		s->results[i] = (i + 1) * (i + 1);
		if (i % 2 == 0)
			(void)nanosleep(&pause, NULL); /* EINTR only shortens it */
		/* release: the task's acquire load of the counter then sees
		 * results[i] filled in. */
		atomic_store_explicit(&s->published, i + 1, memory_order_release);
		/* Safe from any thread; wakes the loop if it sleeps. */
		af_flag_set(&s->ready);
	}
	return NULL;
}

static int consume(struct shared *s)
{
	int seen = 0, r;

	while (seen < NRESULTS) {
		/* Returns at once if a set arrived since the last wait, and
		 * clears the flag on the way out either way. */
		r = af_flag_wait(&s->ready);
		if (r < 0)
			return fail("af_flag_wait", r);
		/* One wake-up may stand for several sets: take everything
		 * published so far, not just one result. */
		int upto = atomic_load_explicit(&s->published, memory_order_acquire);

		for (; seen < upto; seen++)
			printf("task: result %d is %d\n", seen + 1, s->results[seen]);
	}
	return 0;
}

static int main_task(void *arg)
{
	/* Static: the thread may set the flag until it is joined, and static
	 * storage cannot go out of scope before that on any path. */
	static struct shared s;
	pthread_t thread;
	int r, err;

	(void)arg;
	/* NULL: bind the flag to the loop running this task. Initialise it
	 * before the thread exists, so every set finds a valid flag. */
	r = af_flag_init(&s.ready, NULL);
	if (r < 0)
		return fail("af_flag_init", r);
	atomic_init(&s.published, 0);

	printf("task: waiting for %d results from a thread\n", NRESULTS);
	err = pthread_create(&thread, NULL, producer, &s);
	if (err != 0) {
		af_flag_destroy(&s.ready);
		return fail("pthread_create", -err);
	}

	r = consume(&s);

	/* The thread's last af_flag_set() may still be returning; join it
	 * before destroying the flag. It has published everything by now, so
	 * this blocks the loop thread for a moment at most. */
	err = pthread_join(thread, NULL);
	if (err != 0)
		return fail("pthread_join", -err);
	af_flag_destroy(&s.ready);
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
