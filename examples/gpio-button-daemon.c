/* SPDX-License-Identifier: MIT */
/*
 * gpio-button-daemon: a button on a GPIO line, as a daemon.
 *
 * The shape of threadsafeflag.rst, grown up:
 *
 *   on_edge()  (the pin's interrupt thread)
 *      queues the edge, af_flag_set(&irq)
 *   owner task
 *      af_flag_wait(&irq), debounces if asked, then fans out:
 *      queues the edge for the logger, af_event_set(&edges)
 *   logger task                       LED task
 *      af_event_wait(&edges),            af_event_wait(&edges),
 *      prints each edge as gpiomon       toggles the LED once per press
 *   main task
 *      af_flag_wait(&stop): SIGINT, SIGTERM (af_signal_watch()) or
 *      --count presses; then stops the tasks and releases the lines.
 *
 * Only one task may wait on a flag, so the owner is the one that waits and
 * an Event wakes everyone else ("One waiter only" in the document). A flag
 * is one bit, so it says "look", not "what": the edges themselves travel in
 * queues, first from the interrupt thread to the owner (lock-free, one
 * producer and one consumer), then, on the loop's thread only, from the
 * owner to the logger.
 *
 * Each edge is printed as libgpiod's gpiomon prints it by default,
 * <seconds>.<nanoseconds> TAB rising|falling TAB "<line name>", so
 * scripts written for gpiomon read it unchanged; everything else goes to
 * stderr. A press is a falling edge: a button from the line to ground,
 * with the pull-up on. Without --chip and --line it runs on a simulated
 * chip whose button a thread presses every half second (--sim).
 *
 * Run `gpio-button-daemon --help` for the options; docs/gpio.md has the
 * wiring, the systemd unit (gpio-button-daemon.service) and more.
 *
 * Build: cc gpio-button-daemon.c $(pkg-config --cflags --libs asyncflag) -pthread
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <asyncflag.h>

#define PROG "gpio-button-daemon"

/* Exit statuses, documented in --help; the systemd unit does not restart
 * on the ones that a restart cannot fix (RestartPreventExitStatus=). */
enum {
	EXIT_RUNTIME = 1,        /* failed while running */
	EXIT_USAGE = 2,          /* bad command line */
	EXIT_NO_LINE = 3,        /* no such chip or line */
	EXIT_ACCESS = 4,         /* no permission to open the chip */
	EXIT_BUSY = 5,           /* the line is held by another consumer */
};

struct config {
	const char *chip;        /* --chip, or NULL */
	const char *line;        /* --line */
	const char *led;         /* --led, or NULL for none */
	unsigned bias;           /* AF_PIN_PULL_UP, AF_PIN_PULL_DOWN, AF_PIN_BIAS_DISABLE or 0 */
	int64_t debounce_ns;     /* 0: off */
	bool active_low;
	bool sim;
	unsigned long count;     /* presses before exiting; 0: until a signal */
	unsigned sim_interval_ms;
	unsigned sim_bounce;
};

/* ------------------------------------------------------------------------
 * Interrupt thread -> owner task: a single-producer single-consumer ring.
 *
 * The producer is the pin's interrupt thread (one per pin, and it never
 * runs the handler concurrently with itself); the consumer is the owner
 * task. Indices run freely and wrap at UINT_MAX; RING_SIZE divides 2^32.
 */
#define RING_SIZE 256

struct edge_ring {
	struct af_gpio_event ev[RING_SIZE];
	atomic_uint head;        /* next to read; stored by the owner only */
	atomic_uint tail;        /* next to write; stored by the handler only */
	atomic_uint dropped;     /* edges that found the ring full */
};

static bool ring_push(struct edge_ring *r, const struct af_gpio_event *ev)
{
	/* Relaxed: only this thread stores tail. */
	unsigned tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	/* Acquire, pairing with the owner's release of head: the owner has
	 * finished reading a slot before we may see it as free and overwrite
	 * it. On aarch64 a relaxed load would let our slot write below be
	 * ordered before the owner's read of the old contents is done. */
	unsigned head = atomic_load_explicit(&r->head, memory_order_acquire);

	if (tail - head == RING_SIZE)
		return false;
	r->ev[tail % RING_SIZE] = *ev;
	/* Release: the slot's contents are visible to whoever sees the new
	 * tail. aarch64 reorders plain stores freely, so without it the owner
	 * could read the index first and the slot's old contents after. */
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return true;
}

static unsigned ring_pop_all(struct edge_ring *r, struct af_gpio_event *out, unsigned max)
{
	unsigned head = atomic_load_explicit(&r->head, memory_order_relaxed);
	/* Acquire, pairing with ring_push()'s release of tail. */
	unsigned tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	unsigned n = 0;

	while (head != tail && n < max)
		out[n++] = r->ev[head++ % RING_SIZE];
	/* Release, pairing with ring_push()'s acquire of head: our reads of
	 * the slots are done before the handler may reuse them. */
	atomic_store_explicit(&r->head, head, memory_order_release);
	return n;
}

/* A requested line, and what its chip said about it. */
struct line {
	struct af_pin *pin;
	struct af_gpio_chip_info chip;
	struct af_gpio_line_info info;
};

/* ------------------------------------------------------------------------
 * State shared by the tasks. Everything but the ring, the flags and the
 * simulated presser's fields is touched only on the loop's thread, where
 * tasks switch only at blocking calls: no locks needed.
 */
struct daemon {
	struct config cfg;
	struct line button, led;                     /* led.pin NULL: no LED */
	char button_id[2 * AF_GPIO_NAME_MAX + 16];   /* as gpiomon prints it */

	struct edge_ring ring;
	struct af_flag irq;                          /* handler -> owner */
	struct af_flag stop;                         /* signals, --count -> main */
	struct af_event edges;                       /* owner -> logger, LED (zero: cleared) */

	struct af_gpio_event batch[RING_SIZE];       /* the owner's, off its stack */
	int error;                                   /* what stopped a task, or 0 */

	/* owner -> logger: the edges to print, loop thread only. */
	struct af_gpio_event log[RING_SIZE];
	unsigned log_head, log_tail;
	int initial_level;                           /* the button's, before the first edge */
	unsigned long presses;                       /* falling edges so far */
	bool stopped_by_count;

	/* The simulated chip and its button presser, with --sim. */
	struct af_gpio_sim *sim;
	pthread_t presser;
	bool presser_started;
	pthread_mutex_t presser_lock;
	pthread_cond_t presser_wake;
	bool presser_quit;                           /* under presser_lock */
};

static void on_edge(struct af_pin *pin, const struct af_gpio_event *ev, void *arg)
{
	struct daemon *d = arg;

	(void)pin;
	if (!ring_push(&d->ring, ev))
		atomic_fetch_add_explicit(&d->ring.dropped, 1, memory_order_relaxed);
	/* After the push: the wait's acquire makes the slot visible. */
	af_flag_set(&d->irq);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A task that cannot go on stops the daemon, rather than leave it running
 * without, say, its LED. */
static int stop_on_error(struct daemon *d, const char *what, int err)
{
	fprintf(stderr, PROG ": %s: %s\n", what, af_strerror(err));
	if (!d->error)
		d->error = err;
	af_flag_set(&d->stop);
	return err;
}

/* ------------------------------------------------------------------------
 * The owner task: wait, debounce, fan out.
 */

/* Hand one edge to the logger and the LED. */
static void publish(struct daemon *d, const struct af_gpio_event *ev)
{
	if (d->cfg.count && d->presses >= d->cfg.count)
		return;          /* stopping: --count reached */
	if (d->log_tail - d->log_head == RING_SIZE) {
		/* The logger is RING_SIZE edges behind; it cannot be, since
		 * the owner yields to it after every batch, but say so. */
		fprintf(stderr, PROG ": an edge was not logged (log queue full)\n");
		return;
	}
	d->log[d->log_tail++ % RING_SIZE] = *ev;
	if (ev->edge == AF_PIN_IRQ_FALLING)
		d->presses++;
}

/* Software debounce on the events' own timestamps: edges closer together
 * than the period form one burst, and a burst that ends at a level other
 * than the last reported one is reported as one edge, stamped with the
 * time of its first edge. Bursts are closed by the next edge or by the
 * owner's timeout, so the report comes one period after the last bounce. */
struct debounce {
	int stable;              /* the level last reported */
	bool in_burst;
	int level;               /* the level after the burst's last edge */
	struct af_gpio_event first;
	uint64_t last_ns;
};

static void burst_close(struct daemon *d, struct debounce *db)
{
	db->in_burst = false;
	if (db->level == db->stable)
		return;          /* bounced back: nothing happened */
	db->stable = db->level;
	db->first.edge = db->level ? AF_PIN_IRQ_RISING : AF_PIN_IRQ_FALLING;
	publish(d, &db->first);
}

static void debounce_edge(struct daemon *d, struct debounce *db, const struct af_gpio_event *ev)
{
	if (db->in_burst && ev->timestamp_ns - db->last_ns >= (uint64_t)d->cfg.debounce_ns)
		burst_close(d, db);
	if (!db->in_burst) {
		db->in_burst = true;
		db->first = *ev;
	}
	db->last_ns = ev->timestamp_ns;
	db->level = ev->edge == AF_PIN_IRQ_RISING;
}

/* How long the owner may sleep: until the burst is over, or forever. */
static int64_t debounce_timeout(struct daemon *d, struct debounce *db)
{
	int64_t left;

	if (!db->in_burst)
		return -1;
	left = (int64_t)db->last_ns + d->cfg.debounce_ns - now_ns();
	return left > 0 ? left : 0;
}

static void report_losses(struct daemon *d, const struct af_gpio_event *ev)
{
	unsigned dropped;

	if (ev && ev->missed)
		fprintf(stderr, PROG ": the kernel dropped %" PRIu32 " edge(s) before seqno %" PRIu32
			" (its buffer was full)\n", ev->missed, ev->seqno);
	dropped = atomic_exchange_explicit(&d->ring.dropped, 0, memory_order_relaxed);
	if (dropped)
		fprintf(stderr, PROG ": %u edge(s) lost: the owner task fell behind\n", dropped);
}

static int owner(void *arg)
{
	struct daemon *d = arg;
	struct af_gpio_event *batch = d->batch;
	struct debounce db = { .stable = d->initial_level };
	int r;

	for (;;) {
		unsigned n;

		r = af_flag_wait_timeout(&d->irq, debounce_timeout(d, &db));
		if (r == -ECANCELED)
			return 0;
		if (r < 0 && r != -ETIMEDOUT)
			return stop_on_error(d, "owner", r);
		n = ring_pop_all(&d->ring, batch, RING_SIZE);
		for (unsigned i = 0; i < n; i++) {
			report_losses(d, &batch[i]);
			if (d->cfg.debounce_ns)
				debounce_edge(d, &db, &batch[i]);
			else
				publish(d, &batch[i]);
		}
		report_losses(d, NULL);
		if (db.in_burst && debounce_timeout(d, &db) == 0)
			burst_close(d, &db);
		if (d->log_tail == d->log_head)
			continue;
		/* Fan out. set() wakes every task waiting now; clearing at once
		 * makes their next wait block until the next edge (they still
		 * return 0). The yield lets them run before we take the next
		 * batch, so that the log queue cannot fill up. */
		af_event_set(&d->edges);
		af_event_clear(&d->edges);
		af_yield();
		if (d->cfg.count && d->presses >= d->cfg.count) {
			d->stopped_by_count = true;
			af_flag_set(&d->stop);
			return 0;
		}
	}
}

/* ------------------------------------------------------------------------
 * The logger and LED tasks.
 */

/* gpiomon's default line: raw CLOCK_MONOTONIC seconds, nanoseconds padded
 * to nine digits, the edge, the line. */
static void print_edge(const struct daemon *d, const struct af_gpio_event *ev)
{
	printf("%" PRIu64 ".%09" PRIu64 "\t%s\t%s\n",
	       ev->timestamp_ns / 1000000000, ev->timestamp_ns % 1000000000,
	       ev->edge == AF_PIN_IRQ_RISING ? "rising" : "falling", d->button_id);
}

static void log_drain(struct daemon *d)
{
	while (d->log_head != d->log_tail)
		print_edge(d, &d->log[d->log_head++ % RING_SIZE]);
}

/* The logger and the LED task look for work before they wait, not only
 * after: the event wakes the tasks waiting when it is set, and a task that
 * has not reached its wait yet (just spawned, say) would otherwise sleep
 * through the edge. Between the look and the wait nothing blocks, so no
 * set can fall in between. */
static int logger(void *arg)
{
	struct daemon *d = arg;
	int r;

	do {
		log_drain(d);
		r = af_event_wait(&d->edges);
	} while (r == 0);
	/* Cancelled: print what the owner queued last. */
	log_drain(d);
	return r == -ECANCELED ? 0 : r;
}

static int led_task(void *arg)
{
	struct daemon *d = arg;
	unsigned long shown = 0;
	int on = 0, r;

	for (;;) {
		/* Toggle once per press since we last looked. */
		while (shown < d->presses) {
			shown++;
			on = !on;
			r = af_pin_set_value(d->led.pin, on);
			if (r < 0)
				return stop_on_error(d, "LED", r);
		}
		r = af_event_wait(&d->edges);
		if (r < 0)
			return r == -ECANCELED ? 0 : r;
	}
}

/* ------------------------------------------------------------------------
 * The simulated button (--sim): a thread that presses and releases it.
 */

/* Sleep @p ms on the presser thread, or less if the daemon is stopping.
 * Returns false when it is. */
static bool presser_sleep(struct daemon *d, unsigned ms)
{
	struct timespec until;
	bool quit;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&d->presser_lock);
	while (!d->presser_quit &&
	       pthread_cond_timedwait(&d->presser_wake, &d->presser_lock, &until) != ETIMEDOUT)
		;
	quit = d->presser_quit;
	pthread_mutex_unlock(&d->presser_lock);
	return !quit;
}

/* Move the simulated wire to @p level, bouncing first as a real contact
 * does: level, !level, level, ... */
static void presser_move(struct daemon *d, int level)
{
	for (unsigned i = 0; i < d->cfg.sim_bounce; i++) {
		af_gpio_sim_pull(d->sim, 0, level);
		af_gpio_sim_pull(d->sim, 0, !level);
	}
	af_gpio_sim_pull(d->sim, 0, level);
}

/* Wait until the LED's level differs from @p before (the LED task has seen
 * the press), polling: this is a test fixture on its own thread, not the
 * loop. Gives up after ten seconds. */
static int presser_wait_led(struct daemon *d, int before)
{
	bool quit = false;
	int level;

	for (int i = 0; i < 10000 && !quit; i++) {
		/* Slept first: the daemon toggles the LED before it stops, so
		 * one look after a stop still sees the last press. */
		quit = !presser_sleep(d, 1);
		level = af_gpio_sim_level(d->sim, 1);
		if (level != before)
			return level;
	}
	return quit ? -ECANCELED : -ETIMEDOUT;
}

static void *presser(void *arg)
{
	struct daemon *d = arg;
	/* The wire's level when pressed: low, or high for an active-low line
	 * (whose logical falling edge is a rising wire). */
	int down = d->cfg.active_low ? 1 : 0;

	for (unsigned long n = 1;; n++) {
		int led = d->led.pin ? af_gpio_sim_level(d->sim, 1) : 0;

		presser_move(d, down);
		if (d->led.pin) {
			led = presser_wait_led(d, led);
			if (led == -ECANCELED)
				break;
			if (led < 0)
				fprintf(stderr, "sim: press %lu: the LED did not change\n", n);
			else
				fprintf(stderr, "sim: press %lu: LED \"%s\" is %s\n", n,
					d->led.info.name, led ? "on" : "off");
		}
		if (!presser_sleep(d, d->cfg.sim_interval_ms))
			break;
		presser_move(d, !down);
		if (!presser_sleep(d, d->cfg.sim_interval_ms))
			break;
	}
	return NULL;
}

static int presser_start(struct daemon *d)
{
	pthread_condattr_t attr;
	int err;

	err = pthread_condattr_init(&attr);
	if (err == 0)
		err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (err == 0)
		err = pthread_cond_init(&d->presser_wake, &attr);
	pthread_condattr_destroy(&attr);
	if (err != 0)
		return -err;
	err = pthread_mutex_init(&d->presser_lock, NULL);
	if (err != 0)
		goto err_destroy_cond;
	err = pthread_create(&d->presser, NULL, presser, d);
	if (err != 0)
		goto err_destroy_lock;
	d->presser_started = true;
	return 0;

err_destroy_lock:
	pthread_mutex_destroy(&d->presser_lock);
err_destroy_cond:
	pthread_cond_destroy(&d->presser_wake);
	return -err;
}

static void presser_stop(struct daemon *d)
{
	if (!d->presser_started)
		return;
	pthread_mutex_lock(&d->presser_lock);
	d->presser_quit = true;
	pthread_cond_signal(&d->presser_wake);
	pthread_mutex_unlock(&d->presser_lock);
	pthread_join(d->presser, NULL);
	pthread_mutex_destroy(&d->presser_lock);
	pthread_cond_destroy(&d->presser_wake);
	d->presser_started = false;
}

/* ------------------------------------------------------------------------
 * Lines: finding them, saying what went wrong, releasing them.
 */

static bool is_offset(const char *s)
{
	return s[0] != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* Turn --chip/--line into what af_pin_open() takes: a name searched on
 * every chip, or CHIP:OFFSET. A name with --chip is looked up on that chip
 * only, as gpiomon does. */
static int line_spec(const struct config *cfg, const char *line, char *spec, size_t size)
{
	struct af_gpio_chip_info chip;
	struct af_gpio_line_info info;
	int r;

	if (!cfg->chip || is_offset(line)) {
		snprintf(spec, size, "%s%s%s", cfg->chip ? cfg->chip : "", cfg->chip ? ":" : "", line);
		return 0;
	}
	r = af_gpio_chip_info(cfg->chip, &chip);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < chip.num_lines; i++) {
		if (af_gpio_line_info(cfg->chip, i, &info) == 0 && strcmp(info.name, line) == 0) {
			snprintf(spec, size, "%s:%u", cfg->chip, i);
			return 0;
		}
	}
	return -ENOENT;
}

/* Why a line could not be had, in words, and the exit status for it.
 * @p line is what the user gave, @p spec what af_pin_open() was given. */
static int line_error(const struct config *cfg, const char *what, const char *line,
		      const char *spec, int err)
{
	struct af_gpio_line_info info;
	const char *chip = cfg->chip ? cfg->chip : "any chip";

	switch (err) {
	case -ENOENT:
		if (cfg->chip && af_gpio_chip_info(cfg->chip, &(struct af_gpio_chip_info){ 0 }) == -ENOENT)
			fprintf(stderr, PROG ": no GPIO chip \"%s\"\n", cfg->chip);
		else
			fprintf(stderr, PROG ": %s: no GPIO line \"%s\" on %s (gpioinfo lists them)\n",
				what, line, chip);
		return EXIT_NO_LINE;
	case -EINVAL:
		fprintf(stderr, PROG ": %s: no line %s on %s (offset out of range?)\n", what, line,
			chip);
		return EXIT_NO_LINE;
	case -EACCES:
		fprintf(stderr, PROG ": %s: permission denied: add the user to the gpio group "
			"(sudo usermod -aG gpio $USER, then log in again)\n", what);
		return EXIT_ACCESS;
	case -EBUSY:
		if (af_gpio_find_line(spec, NULL, &info) == 0 && info.consumer[0])
			fprintf(stderr, PROG ": %s: line \"%s\" is in use by \"%s\"\n", what, line,
				info.consumer);
		else
			fprintf(stderr, PROG ": %s: line \"%s\" is in use\n", what, line);
		return EXIT_BUSY;
	default:
		fprintf(stderr, PROG ": %s: line \"%s\": %s\n", what, line, af_strerror(err));
		return EXIT_RUNTIME;
	}
}

/* Request one line; on failure say why and return the exit status. The
 * simulated chip's lines are asked for by offset (@p sim_offset), so that a
 * real line of the same name cannot be taken instead. */
static int open_line(struct daemon *d, const char *what, const char *line, unsigned sim_offset,
		     unsigned flags, struct line *l)
{
	char spec[128] = "";
	int r = 0;

	if (d->sim)
		snprintf(spec, sizeof(spec), "%s:%u", af_gpio_sim_chip(d->sim), sim_offset);
	else
		r = line_spec(&d->cfg, line, spec, sizeof(spec));
	if (r == 0)
		r = af_pin_open(&l->pin, spec, flags);
	if (r == 0)
		r = af_gpio_find_line(spec, &l->chip, &l->info);
	if (r < 0) {
		af_pin_close(l->pin);
		l->pin = NULL;
		return line_error(&d->cfg, what, line, spec, r);
	}
	return 0;
}

/* gpiomon names the line by its quoted name; with --chip, or when it has
 * no name, by its chip and offset first. */
static void set_button_id(struct daemon *d)
{
	const struct af_gpio_line_info *l = &d->button.info;
	const char *chip = d->button.chip.name;

	if (!l->name[0])
		snprintf(d->button_id, sizeof(d->button_id), "%s %u", chip, l->offset);
	else if (d->cfg.chip)
		snprintf(d->button_id, sizeof(d->button_id), "%s %u \"%s\"", chip, l->offset,
			 l->name);
	else
		snprintf(d->button_id, sizeof(d->button_id), "\"%s\"", l->name);
}

/* Close a pin and check with the chip that the line is free again. */
static void release(struct line *l)
{
	struct af_gpio_line_info now;

	if (!l->pin)
		return;
	af_pin_close(l->pin);
	l->pin = NULL;
	if (af_gpio_line_info(l->chip.path, l->info.offset, &now) == 0 && now.used)
		fprintf(stderr, PROG ": line %s %u still in use by \"%s\"\n", l->chip.name,
			l->info.offset, now.consumer);
	else
		fprintf(stderr, PROG ": released line %s %u \"%s\"\n", l->chip.name,
			l->info.offset, l->info.name);
}

/* ------------------------------------------------------------------------
 * main_task: set up, wait for the end, tear down.
 */

static int create_sim(struct daemon *d)
{
	const char *names[] = { d->cfg.line, d->cfg.led ? d->cfg.led : "" };
	int r = af_gpio_sim_new(&d->sim, PROG, 2, names);

	if (r < 0)
		fprintf(stderr, PROG ": cannot create the simulated chip: %s\n", af_strerror(r));
	return r;
}

static int open_lines(struct daemon *d)
{
	unsigned flags = AF_PIN_IN | d->cfg.bias | (d->cfg.active_low ? AF_PIN_ACTIVE_LOW : 0);
	int status;

	status = open_line(d, "button", d->cfg.line, 0, flags, &d->button);
	if (status == 0 && d->cfg.led)
		status = open_line(d, "LED", d->cfg.led, 1, AF_PIN_OUT, &d->led);
	if (status == 0)
		set_button_id(d);
	return status;
}

static void describe(const struct daemon *d)
{
	static const char *const bias[] = { "as-is", "pull-up", "pull-down", "bias disabled" };
	unsigned b = d->cfg.bias == AF_PIN_PULL_UP ? 1 : d->cfg.bias == AF_PIN_PULL_DOWN ? 2 :
		     d->cfg.bias == AF_PIN_BIAS_DISABLE ? 3 : 0;

	fprintf(stderr, PROG ": button %s on %s (%s%s", d->button_id, d->button.chip.path, bias[b],
		d->cfg.active_low ? ", active-low" : "");
	if (d->cfg.debounce_ns)
		fprintf(stderr, ", debounce %" PRId64 " ms", d->cfg.debounce_ns / 1000000);
	fprintf(stderr, ")");
	if (d->led.pin)
		fprintf(stderr, ", LED \"%s\"", d->led.info.name);
	if (d->sim)
		fprintf(stderr, "; simulated, pressed every %u ms", 2 * d->cfg.sim_interval_ms);
	fprintf(stderr, "\n");
}

/* Arm the interrupt, spawn the tasks, wait for the end. Returns 0, or the
 * error that ended it. */
static int run(struct daemon *d)
{
	struct af_task *tasks[3] = { NULL };
	int (*fns[3])(void *) = { owner, logger, led_task };
	int r;

	/* The simulated button starts released, whatever the bias made of
	 * the wire. Then the level the first edge starts from: edges that
	 * come from now on wait in the ring until the owner runs. */
	if (d->sim)
		af_gpio_sim_pull(d->sim, 0, d->cfg.active_low ? 0 : 1);
	r = af_pin_value(d->button.pin);
	if (r < 0)
		return r;
	d->initial_level = r;
	r = af_pin_irq(d->button.pin, on_edge, d, AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING);
	if (r < 0)
		return r;
	for (int i = 0; i < (d->led.pin ? 3 : 2); i++) {
		r = af_task_spawn(&tasks[i], fns[i], d);
		if (r < 0)
			goto out_stop;
	}
	if (d->sim) {
		r = presser_start(d);
		if (r < 0)
			goto out_stop;
	}
	describe(d);
	r = af_flag_wait(&d->stop);
	if (r == 0)
		r = d->error;
	fprintf(stderr, PROG ": stopping %s\n", d->error ? "on an error" :
		d->stopped_by_count ? "after --count presses" : "on a signal");
out_stop:
	presser_stop(d);
	/* Their errors, if any, were d->error and have been said. */
	for (int i = 0; i < 3; i++) {
		if (!tasks[i])
			continue;
		af_task_cancel(tasks[i]);
		af_task_join(tasks[i], NULL);
	}
	return r;
}

static int main_task(void *arg)
{
	struct daemon *d = arg;
	int status = 0, r;

	r = af_flag_init(&d->irq, NULL);
	if (r < 0)
		return EXIT_RUNTIME;
	r = af_flag_init(&d->stop, NULL);
	if (r < 0)
		goto out_destroy_irq;
	/* Before any line is requested: a SIGTERM from now on is a clean
	 * stop that releases them. */
	if ((r = af_signal_watch(&d->stop, SIGINT)) < 0 ||
	    (r = af_signal_watch(&d->stop, SIGTERM)) < 0) {
		fprintf(stderr, PROG ": af_signal_watch: %s\n", af_strerror(r));
		goto out_destroy_stop;
	}
	if (d->cfg.sim && create_sim(d) < 0) {
		r = -1;
		goto out_destroy_stop;
	}
	status = open_lines(d);
	if (status == 0) {
		r = run(d);
		if (r < 0 && !d->error)   /* a task's error has been said */
			fprintf(stderr, PROG ": %s\n", af_strerror(r));
	}
	/* Closing the button stops its interrupt thread: no set of d->irq
	 * after this. */
	release(&d->button);
	release(&d->led);
	af_gpio_sim_free(d->sim);
out_destroy_stop:
	/* Also restores SIGINT and SIGTERM. */
	af_flag_destroy(&d->stop);
out_destroy_irq:
	af_flag_destroy(&d->irq);
	if (status)
		return status;
	return r < 0 ? EXIT_RUNTIME : 0;
}

/* ------------------------------------------------------------------------
 * The command line.
 */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTION]...\n"
		"Watch a button on a GPIO line, toggle an LED on every press, and print every\n"
		"edge as gpiomon does: <seconds>.<nanoseconds> TAB rising|falling TAB \"<line>\".\n"
		"A press is a falling edge: wire the button from the line to ground.\n"
		"Without --chip, --line and --led it runs on a simulated chip (--sim).\n"
		"\n"
		"Options:\n"
		"      --chip CHIP          the chip of --line and --led: a path (/dev/gpiochip0),\n"
		"                           a name (gpiochip0) or a number (0); without it, line\n"
		"                           names are searched on every chip\n"
		"      --line NAME|OFFSET   the button's line (default GPIO17); an OFFSET needs --chip\n"
		"      --led NAME|OFFSET    an output line to toggle on every press (default: none;\n"
		"                           GPIO27 with --sim)\n"
		"      --bias BIAS          pull-up (default), pull-down, disabled or as-is\n"
		"      --debounce MS        report a change only once the line has been steady for\n"
		"                           MS milliseconds, as one edge (default 0: off)\n"
		"      --active-low         the line is active low: rising and falling swap, so a\n"
		"                           button to 3.3 V (with --bias pull-down) presses falling\n"
		"      --count N            exit after N presses (default: run until SIGINT/SIGTERM)\n"
		"      --sim                a simulated chip with lines named after --line and\n"
		"                           --led, and a thread that presses the button\n"
		"      --sim-interval MS    how long a simulated press is held, and the pause\n"
		"                           after it (default 250)\n"
		"      --sim-bounce N       each simulated press and release bounces N times\n"
		"                           (default 0; try it with --debounce)\n"
		"  -h, --help               show this help and exit\n"
		"\n"
		"Edges go to stdout, everything else to stderr. SIGINT and SIGTERM stop it\n"
		"cleanly, releasing the lines.\n"
		"\n"
		"Exit status: 0 stopped by SIGINT or SIGTERM, or after --count presses;\n"
		"1 failed while running; 2 bad usage; 3 no such chip or line; 4 permission\n"
		"denied (the gpio group); 5 line in use.\n");
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " --help'.\n");
	return EXIT_USAGE;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (!is_offset(s))
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && *out <= max;
}

enum { OPT_CHIP = 256, OPT_LINE, OPT_LED, OPT_BIAS, OPT_DEBOUNCE, OPT_ACTIVE_LOW, OPT_COUNT,
       OPT_SIM, OPT_SIM_INTERVAL, OPT_SIM_BOUNCE };

static int parse_option(struct config *cfg, int opt, const char *arg)
{
	unsigned long v;

	switch (opt) {
	case OPT_CHIP: cfg->chip = arg; return 0;
	case OPT_LINE: cfg->line = arg; return 0;
	case OPT_LED: cfg->led = arg; return 0;
	case OPT_ACTIVE_LOW: cfg->active_low = true; return 0;
	case OPT_SIM: cfg->sim = true; return 0;
	case OPT_BIAS:
		if (strcmp(arg, "pull-up") == 0)
			cfg->bias = AF_PIN_PULL_UP;
		else if (strcmp(arg, "pull-down") == 0)
			cfg->bias = AF_PIN_PULL_DOWN;
		else if (strcmp(arg, "disabled") == 0)
			cfg->bias = AF_PIN_BIAS_DISABLE;
		else if (strcmp(arg, "as-is") == 0)
			cfg->bias = 0;
		else
			return usage_error("--bias %s: want pull-up, pull-down, disabled or as-is", arg);
		return 0;
	case OPT_DEBOUNCE:
		if (!parse_uint(arg, 60000, &v))
			return usage_error("--debounce %s: want milliseconds, 0 to 60000", arg);
		cfg->debounce_ns = (int64_t)v * 1000000;
		return 0;
	case OPT_COUNT:
		if (!parse_uint(arg, ULONG_MAX, &v) || v == 0)
			return usage_error("--count %s: want a number of presses, 1 or more", arg);
		cfg->count = v;
		return 0;
	case OPT_SIM_INTERVAL:
		if (!parse_uint(arg, 60000, &v) || v == 0)
			return usage_error("--sim-interval %s: want milliseconds, 1 to 60000", arg);
		cfg->sim_interval_ms = (unsigned)v;
		return 0;
	case OPT_SIM_BOUNCE:
		if (!parse_uint(arg, 100, &v))
			return usage_error("--sim-bounce %s: want 0 to 100", arg);
		cfg->sim_bounce = (unsigned)v;
		return 0;
	}
	return usage_error("unknown option");
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	static const struct option longopts[] = {
		{ "chip", required_argument, NULL, OPT_CHIP },
		{ "line", required_argument, NULL, OPT_LINE },
		{ "led", required_argument, NULL, OPT_LED },
		{ "bias", required_argument, NULL, OPT_BIAS },
		{ "debounce", required_argument, NULL, OPT_DEBOUNCE },
		{ "active-low", no_argument, NULL, OPT_ACTIVE_LOW },
		{ "count", required_argument, NULL, OPT_COUNT },
		{ "sim", no_argument, NULL, OPT_SIM },
		{ "sim-interval", required_argument, NULL, OPT_SIM_INTERVAL },
		{ "sim-bounce", required_argument, NULL, OPT_SIM_BOUNCE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, r;

	*cfg = (struct config){ .bias = AF_PIN_PULL_UP, .sim_interval_ms = 250 };
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 0;
		}
		if (opt == '?') {
			/* getopt_long() has said what was wrong. */
			fprintf(stderr, "Try '" PROG " --help'.\n");
			return EXIT_USAGE;
		}
		r = parse_option(cfg, opt, optarg);
		if (r)
			return r;
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (!cfg->chip && !cfg->line && !cfg->led)
		cfg->sim = true;
	if (cfg->sim && cfg->chip)
		return usage_error("--sim makes its own chip: drop --chip %s", cfg->chip);
	if (!cfg->line)
		cfg->line = "GPIO17";
	if (cfg->sim && !cfg->led)
		cfg->led = "GPIO27";
	if (cfg->sim && (is_offset(cfg->line) || is_offset(cfg->led)))
		return usage_error("--sim names its lines: give names, not offsets (%s)",
				   is_offset(cfg->line) ? cfg->line : cfg->led);
	if (!cfg->chip && (is_offset(cfg->line) || (cfg->led && is_offset(cfg->led))))
		return usage_error("line %s is an offset: give --chip too, or the line's name",
				   is_offset(cfg->line) ? cfg->line : cfg->led);
	if (cfg->led && strcmp(cfg->led, cfg->line) == 0)
		return usage_error("--led %s is the button's line", cfg->led);
	return -1;
}

static int loop_new_failed(int err)
{
	fprintf(stderr, PROG ": cannot create the event loop: %s\n", af_strerror(err));
	return EXIT_RUNTIME;
}

int main(int argc, char **argv)
{
	/* Static: the ring is big, and the handler thread and the signal
	 * handler reach into it until they are stopped. */
	static struct daemon d;
	struct af_loop *loop;
	int r, status;

	status = parse_args(argc, argv, &d.cfg);
	if (status >= 0)
		return status;
	/* One line per edge as it happens, even into a pipe. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror(PROG ": setvbuf");
		return EXIT_RUNTIME;
	}
	r = af_loop_new(&loop, NULL);
	if (r < 0)
		return loop_new_failed(r);
	r = af_loop_run(loop, main_task, &d, &status);
	af_loop_free(loop);
	if (r < 0) {
		fprintf(stderr, PROG ": af_loop_run: %s\n", af_strerror(r));
		return EXIT_RUNTIME;
	}
	return status;
}
