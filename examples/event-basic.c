/* SPDX-License-Identifier: MIT */
/*
 * event-basic: the basic shape of an Event.
 *
 * A waiter task prints "waiting" and blocks on a cleared event. One second
 * later the main task sets the event and yields, and the waiter prints
 * "got signal". This is the C version of the asyncio seed program:
 *
 *     async def waiter(evt):
 *         print("waiting")
 *         await evt.wait()
 *         print("got signal")
 *
 *     async def main():
 *         evt = asyncio.Event()
 *         asyncio.create_task(waiter(evt))
 *         await asyncio.sleep(1)
 *         evt.set()
 *         await asyncio.sleep(0)
 *
 * Build: cc event-basic.c $(pkg-config --cflags --libs asyncflag)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <asyncflag.h>

/* Print what failed and pass the error on, so every check stays one line. */
static int fail(const char *what, int err)
{
	fprintf(stderr, "event-basic: %s: %s\n", what, af_strerror(err));
	return err;
}

/* An event needs no allocation and no init call: AF_EVENT_INIT (all zeroes)
 * is a cleared event. Static storage outlives every task, so no task can be
 * left waiting on an event that went out of scope. */
static struct af_event evt = AF_EVENT_INIT;

static int waiter(void *arg)
{
	struct af_event *ev = arg;
	int r;

	printf("waiting\n");
	/* The event starts cleared, so this parks the task and hands the
	 * thread back to the loop until someone sets it. */
	r = af_event_wait(ev);
	if (r < 0)
		return fail("af_event_wait", r);
	printf("got signal\n");
	return 0;
}

static int main_task(void *arg)
{
	struct af_task *task;
	int r, result;

	(void)arg;
	/* Like asyncio.create_task(): the waiter does not run yet, only when
	 * this task blocks or yields (here: in the sleep below). */
	r = af_task_spawn(&task, waiter, &evt);
	if (r < 0)
		return fail("af_task_spawn", r);

	/* On an error below we simply return: when the main task ends, the
	 * loop cancels the tasks still alive (the waiter's wait then returns
	 * -ECANCELED) and runs them to their end. */
	r = af_sleep_ms(1000);
	if (r < 0)
		return fail("af_sleep_ms", r);

	/* set() makes the waiter runnable but does not switch to it; the
	 * yield lets every runnable task run once, so "got signal" is printed
	 * before we continue (asyncio's sleep(0)). */
	af_event_set(&evt);
	r = af_yield();
	if (r < 0)
		return fail("af_yield", r);

	/* asyncio would forget the task; in C we join it to read its result
	 * and free its handle. It has already finished, so this does not wait. */
	r = af_task_join(task, &result);
	if (r < 0)
		return fail("af_task_join", r);
	return result;
}

int main(void)
{
	int r;

	/* Line buffering even when stdout is a pipe, so each line appears
	 * when it happens, not all at exit: "got signal" really is printed a
	 * second after "waiting". */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("event-basic: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, NULL);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
