/* SPDX-License-Identifier: MIT */
/*
 * gpio-button: the basic shape of threadsafeflag.rst, in C.
 *
 *     flag = asyncio.ThreadSafeFlag()
 *
 *     def on_press(pin):
 *         flag.set()
 *
 *     async def watcher():
 *         button = Pin("P1", Pin.IN, Pin.PULL_UP)
 *         button.irq(handler=on_press, trigger=Pin.IRQ_FALLING)
 *         while True:
 *             await flag.wait()
 *             print("button pressed")
 *
 *     asyncio.run(watcher())
 *
 * on_press() runs outside the loop, on the pin's interrupt thread, and does
 * nothing but af_flag_set(); the watcher task does the work. A button wired
 * from the line to ground, with the pull-up on, makes a falling edge when
 * pressed.
 *
 * With no argument the line "P1" is on a simulated chip and a thread
 * presses the button three times, so the program runs (and is tested) on a
 * machine without GPIO; with a line name or CHIP:OFFSET argument
 * ("GPIO17" on a Raspberry Pi) it watches that line until Ctrl-C.
 *
 * Build: cc gpio-button.c $(pkg-config --cflags --libs asyncflag) -pthread
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include <asyncflag.h>

static struct af_flag flag;

static void on_press(struct af_pin *pin, const struct af_gpio_event *ev, void *arg)
{
	(void)pin, (void)ev, (void)arg;
	af_flag_set(&flag);
}

/* The simulated button, defined below main_task(). */
static int sim_start(void);
static void sim_pressed(void);
static int sim_stop(void);
static int sim_presses = -1;     /* -1: real hardware, press until Ctrl-C */

static int watcher(const char *line)
{
	struct af_pin *button;
	int r;

	r = af_pin_open(&button, line, AF_PIN_IN | AF_PIN_PULL_UP);
	if (r < 0) {
		fprintf(stderr, "gpio-button: %s: %s\n", line, af_strerror(r));
		return r;
	}
	r = af_pin_irq(button, on_press, NULL, AF_PIN_IRQ_FALLING);
	if (r < 0)
		goto out_close;
	r = sim_start();
	for (int n = 0; r == 0 && n != sim_presses; n++) {
		r = af_flag_wait(&flag);
		if (r == 0) {
			printf("button pressed\n");
			sim_pressed();
		}
	}
out_close:
	if (r < 0)
		fprintf(stderr, "gpio-button: %s\n", af_strerror(r));
	/* Stops the interrupt thread: on_press() runs no more after this. */
	af_pin_close(button);
	return r;
}

/* ------------------------------------------------------------------------
 * The rest is scaffolding: the simulated button and main().
 */

#define PRESSES 3

static struct af_gpio_sim *sim;
static pthread_t presser_thread;
static sem_t handled;            /* watcher -> presser: "next one" */

/* A finger on the simulated button: press (pull the line to ground), wait
 * until the watcher has printed, release. Flag sets coalesce, so a second
 * press before the watcher woke would be one "button pressed". */
static void *presser(void *arg)
{
	(void)arg;
	for (int i = 0; i < PRESSES; i++) {
		if (af_gpio_sim_pull(sim, 0, 0) < 0)
			return NULL;
		while (sem_wait(&handled) != 0 && errno == EINTR)
			;
		if (af_gpio_sim_pull(sim, 0, 1) < 0)
			return NULL;
	}
	return NULL;
}

/* Called once the interrupt is armed, so that no press comes too early. */
static int sim_start(void)
{
	int err;

	if (!sim)
		return 0;
	if (sem_init(&handled, 0, 0) != 0)
		return -errno;
	err = pthread_create(&presser_thread, NULL, presser, NULL);
	if (err != 0) {
		sem_destroy(&handled);
		return -err;
	}
	sim_presses = PRESSES;
	return 0;
}

static void sim_pressed(void)
{
	if (sim)
		sem_post(&handled);
}

static int sim_stop(void)
{
	int err = 0;

	if (sim_presses < 0)
		return 0;
	/* An early end leaves the presser waiting: release it. */
	for (int i = 0; i < PRESSES; i++)
		sem_post(&handled);
	err = pthread_join(presser_thread, NULL);
	sem_destroy(&handled);
	return -err;
}

static int main_task(void *arg)
{
	static const char *const names[] = { "P1" };
	const char *line = arg;
	int r, err;

	r = af_flag_init(&flag, NULL);
	if (r < 0)
		return r;
	if (!line) {
		r = af_gpio_sim_new(&sim, "gpio-button", 1, names);
		if (r < 0) {
			fprintf(stderr, "gpio-button: af_gpio_sim_new: %s\n", af_strerror(r));
			goto out_destroy_flag;
		}
		line = "P1";    /* found by name, as on a real chip */
	}
	r = watcher(line);
	err = sim_stop();
	if (err < 0 && r == 0)
		r = err;
	af_gpio_sim_free(sim);
out_destroy_flag:
	af_flag_destroy(&flag);
	return r;
}

static int loop_new_failed(int err)
{
	fprintf(stderr, "gpio-button: cannot create the event loop: %s\n", af_strerror(err));
	return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
	struct af_loop *loop;
	int r, result;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: gpio-button [LINE]\n"
			"  LINE: a line name (GPIO17) or CHIP:OFFSET (gpiochip0:17);\n"
			"  without it, a simulated button is pressed three times\n");
		return 2;
	}
	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("gpio-button: setvbuf");
		return EXIT_FAILURE;
	}
	r = af_loop_new(&loop, NULL);
	if (r < 0)
		return loop_new_failed(r);
	r = af_loop_run(loop, main_task, argc == 2 ? argv[1] : NULL, &result);
	af_loop_free(loop);
	if (r < 0) {
		fprintf(stderr, "gpio-button: af_loop_run: %s\n", af_strerror(r));
		return EXIT_FAILURE;
	}
	return result == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
