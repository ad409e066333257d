/* SPDX-License-Identifier: MIT */
/*
 * flag-fanout: one flag owner fanning an interrupt out to many tasks.
 *
 * Only one task may wait on an af_flag at a time. When an interrupt has to
 * wake several tasks, one *owner* task waits on the flag and sets an Event,
 * which any number of tasks can wait on (threadsafeflag.rst, "One waiter
 * only"). Here a pthread stands in for the interrupt handler: it calls
 * af_flag_set(), the only call that is safe from there. The owner task wakes
 * and sets the event, and three listener tasks resume, in the order they
 * started waiting.
 *
 * Build: cc flag-fanout.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <asyncflag.h>

#define NLISTENERS 3

/* Static storage: both outlive every task and the thread, on every path. */
static struct af_flag irq;                         /* interrupt -> owner */
static struct af_event pressed = AF_EVENT_INIT;    /* owner -> listeners */

static int fail(const char *what, int err)
{
	fprintf(stderr, "flag-fanout: %s: %s\n", what, af_strerror(err));
	return err;
}

/* The "interrupt handler": it runs outside the loop, so af_flag_set() is
 * the only libasyncflag call it makes. */
static void *interrupt(void *arg)
{
	/* The button is pressed a little later; meanwhile the loop sleeps
	 * in the kernel, not polling the flag. */
	const struct timespec later = { .tv_nsec = 50 * 1000 * 1000 };

	(void)arg;
	(void)nanosleep(&later, NULL); /* EINTR only shortens it */
	af_flag_set(&irq);
	return NULL;
}

static int owner(void *arg)
{
	int r;

	(void)arg;
	printf("owner: waiting for interrupts\n");
	for (;;) {
		r = af_flag_wait(&irq);
		if (r == -ECANCELED)
			break;
		if (r < 0)
			return fail("af_flag_wait", r);
		printf("owner: interrupt received, waking the listeners\n");
		/* set() wakes every task waiting now; clearing straight away
		 * makes the next wait block until the next interrupt. The
		 * woken listeners still return 0: a wake is not undone by a
		 * clear that comes before they resume. */
		af_event_set(&pressed);
		af_event_clear(&pressed);
	}
	printf("owner: stopped\n");
	return 0;
}

static int listener(void *arg)
{
	const char *name = arg;
	int r;

	printf("listener %s: waiting\n", name);
	r = af_event_wait(&pressed);
	if (r < 0)
		return fail("af_event_wait", r);
	printf("listener %s: button pressed\n", name);
	return 0;
}

static int main_task(void *arg)
{
	static char names[NLISTENERS][2] = { "A", "B", "C" };
	struct af_task *listeners[NLISTENERS], *owner_task;
	pthread_t thread;
	int r, err, result;

	(void)arg;
	r = af_flag_init(&irq, NULL);
	if (r < 0)
		return fail("af_flag_init", r);

	/* On a spawn error we simply return: the loop then cancels the tasks
	 * already spawned and runs them to their end. */
	for (int i = 0; i < NLISTENERS; i++) {
		r = af_task_spawn(&listeners[i], listener, names[i]);
		if (r < 0)
			return fail("af_task_spawn", r);
	}
	r = af_task_spawn(&owner_task, owner, NULL);
	if (r < 0)
		return fail("af_task_spawn", r);

	err = pthread_create(&thread, NULL, interrupt, NULL);
	if (err != 0)
		return fail("pthread_create", -err);

	/* The tasks start when this one blocks, here, in spawn order: the
	 * listeners wait on the event first, so they wake in order A, B, C. */
	for (int i = 0; i < NLISTENERS && r == 0; i++) {
		r = af_task_join(listeners[i], &result);
		if (r == 0)
			r = result;
	}

	/* Join the thread on every path: the loop is freed after this task
	 * returns, and the thread must not set a flag of a freed loop. Its
	 * set has woken the listeners, so it is at most returning now. */
	err = pthread_join(thread, NULL);
	if (err != 0)
		return fail("pthread_join", -err);
	if (r < 0)
		return fail("listener", r);

	/* The owner is back in af_flag_wait(): stop it before the flag goes. */
	r = af_task_cancel(owner_task);
	if (r < 0)
		return fail("af_task_cancel", r);
	r = af_task_join(owner_task, &result);
	if (r < 0)
		return fail("af_task_join", r);
	af_flag_destroy(&irq);
	return result;
}

int main(void)
{
	int r;

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("flag-fanout: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, NULL);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
