/* SPDX-License-Identifier: MIT */
/*
 * signal-flag: awaiting a Unix signal in a task.
 *
 * af_signal_watch() installs a SIGUSR1 handler whose only work is
 * af_flag_set(), which is async-signal-safe; a task then awaits the signal
 * with af_flag_wait() and does the real work outside the handler, where any
 * call is allowed. A thread sends the process SIGUSR1 three times.
 *
 * Signals, like flag sets, coalesce: two SIGUSR1 that arrive before the task
 * waits again are one wake-up. So that the task sees exactly three, the
 * sender waits on a semaphore until the task has handled each one.
 *
 * Build: cc signal-flag.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <asyncflag.h>

#define NSIGNALS 3
/* A signal that never comes should end the program, not hang it. */
#define SIGNAL_TIMEOUT_NS (10 * INT64_C(1000000000))

/* Static storage: the handler may set the flag until it is unwatched, and
 * the thread uses the semaphore until it is joined, on every path. */
static struct af_flag usr1;
static sem_t handled;            /* task -> sender: "ready for the next one" */
static atomic_bool stop;         /* task -> sender: "give up" */
static int sender_error;         /* errno of a failed kill() or sem_wait() */

static int fail(const char *what, int err)
{
	fprintf(stderr, "signal-flag: %s: %s\n", what, af_strerror(err));
	return err;
}

static void *sender(void *arg)
{
	(void)arg;
	for (int i = 0; i < NSIGNALS; i++) {
		/* Process-directed: the kernel may run the handler on any
		 * thread, this one included. That is fine, since all the
		 * handler does is af_flag_set(). */
		if (kill(getpid(), SIGUSR1) != 0) {
			sender_error = errno;
			return NULL;
		}
		/* The handler may interrupt sem_wait() on this thread. */
		while (sem_wait(&handled) != 0) {
			if (errno != EINTR) {
				sender_error = errno;
				return NULL;
			}
		}
		if (atomic_load(&stop))
			return NULL;
	}
	return NULL;
}

static int receive(void)
{
	for (int i = 0; i < NSIGNALS; i++) {
		int r = af_flag_wait_timeout(&usr1, SIGNAL_TIMEOUT_NS);

		if (r < 0)
			return fail("af_flag_wait_timeout", r);
		/* We are in a task, not in the handler: printf is fine here. */
		printf("got SIGUSR1\n");
		if (sem_post(&handled) != 0)
			return fail("sem_post", -errno);
	}
	return 0;
}

static int main_task(void *arg)
{
	pthread_t thread;
	int r, err;

	(void)arg;
	r = af_flag_init(&usr1, NULL);
	if (r < 0)
		return fail("af_flag_init", r);
	r = af_signal_watch(&usr1, SIGUSR1);
	if (r < 0) {
		fail("af_signal_watch", r);
		goto out_destroy_flag;
	}
	printf("watching SIGUSR1\n");
	if (sem_init(&handled, 0, 0) != 0) {
		r = fail("sem_init", -errno);
		goto out_unwatch;
	}
	err = pthread_create(&thread, NULL, sender, NULL);
	if (err != 0) {
		r = fail("pthread_create", -err);
		goto out_destroy_sem;
	}

	r = receive();
	if (r < 0) {
		/* Release the sender if it waits for us. */
		atomic_store(&stop, true);
		if (sem_post(&handled) != 0)
			fail("sem_post", -errno);
	}
	/* Keep the signal watched until the sender is gone: a SIGUSR1 that
	 * arrives after af_signal_unwatch() gets the default action, which
	 * terminates the process. */
	err = pthread_join(thread, NULL);
	if (err != 0) {
		/* The thread may still send signals: keep everything as is. */
		return fail("pthread_join", -err);
	}
	if (sender_error != 0 && r == 0)
		r = fail("sender thread", -sender_error);

out_destroy_sem:
	if (sem_destroy(&handled) != 0 && r == 0)
		r = fail("sem_destroy", -errno);
out_unwatch:
	/* Restores the disposition SIGUSR1 had before the watch. */
	err = af_signal_unwatch(SIGUSR1);
	if (err < 0 && r == 0)
		r = fail("af_signal_unwatch", err);
	if (r == 0)
		printf("stopped watching SIGUSR1\n");
out_destroy_flag:
	af_flag_destroy(&usr1);
	return r;
}

int main(void)
{
	int r;

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("signal-flag: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, NULL);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
