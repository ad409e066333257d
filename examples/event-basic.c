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

/* The loop could not be created. Explain the common cause, which plain
 * strerror() does not: io_uring switched off for this process. */
static int loop_new_failed(int err)
{
	fprintf(stderr, "event-basic: cannot create the event loop: %s\n", af_strerror(err));
	if (err == -EPERM || err == -ENOSYS) {
		fprintf(stderr,
			"event-basic: io_uring is not available to this process. Either\n"
			"  - the kernel.io_uring_disabled sysctl forbids it (0 allows io_uring,\n"
			"    1 allows it only to the kernel.io_uring_group group, 2 disables it),\n"
			"  - a container's seccomp profile blocks it (allow io_uring_setup,\n"
			"    io_uring_enter and io_uring_register), or\n"
			"  - the kernel was built without it (CONFIG_IO_URING).\n");
		/* 77 is what test harnesses (meson, automake) read as "skipped":
		 * the program is fine, the environment cannot run it. */
		return 77;
	}
	return EXIT_FAILURE;
}

int main(void)
{
	struct af_loop *loop;
	int r, result;

	/* Line buffering even when stdout is a pipe, so each line appears
	 * when it happens, not all at exit: "got signal" really is printed a
	 * second after "waiting". */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("event-basic: setvbuf");
		return EXIT_FAILURE;
	}

	r = af_loop_new(&loop, NULL);
	if (r < 0)
		return loop_new_failed(r);
	r = af_loop_run(loop, main_task, NULL, &result);
	af_loop_free(loop);
	if (r < 0) {
		fail("af_loop_run", r);
		return EXIT_FAILURE;
	}
	return result == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
