/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: the GPIO lines of the gpio scenarios. By default the
 * library's simulated chip, with one input line per mode, so coroutine mode
 * (af_pin_wait_edge) and interrupt mode (af_pin_irq, whose handler sets a
 * flag) interleave ping by ping. With --chip, a real chip: the tool drives
 * --out-line and waits on --in-line, which a jumper joins to it; the one
 * input is in one mode at a time, so the modes take turns, and a third
 * turn reads a raw uAPI line request with blocking read(2): the kernel's
 * floor for being woken by an edge.
 * Every edge of both directions is detected, so each toggle is one edge.
 * Built without the GPIO API (AFB_HAVE_GPIO 0) the scenarios say so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#if AFB_HAVE_GPIO
#include <linux/gpio.h>
#endif

#include "afb.h"
#include "asyncflag.h"

#if AFB_HAVE_GPIO

#define EDGES (AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING)

struct afb_gpio {
	struct af_gpio_sim *sim;     /* NULL on a real chip */
	struct af_pin *out;          /* real chip: the driven line */
	struct af_pin *in[2];        /* per mode; on a real chip one is NULL */
	int level[2];                /* what the next trigger drives, per line */
	char in_name[80];
	char chip_path[64];          /* real chip: for the raw request */
	unsigned in_offset;
	int rawfd;                   /* AFB_GPIO_RAW's line request, or -1 */
	enum afb_gpio_mode mode;     /* real chip: the input's mode now */
	struct af_flag flag;         /* interrupt mode: the handler sets it */
	/* Written by the pin's handler thread, read by the task after the
	 * flag's wait returns: af_flag_set() is a release and the wait's
	 * return an acquire, on every architecture. */
	_Atomic uint64_t irq_ts;
	uint32_t last_seq[3];
	_Atomic uint64_t gaps;
	char where[160];
};

static void count_gap(struct afb_gpio *g, int mode, const struct af_gpio_event *ev)
{
	/* seqno counts every event of the request; a jump is edges the
	 * kernel dropped from a full buffer. relaxed: a counter read once,
	 * after every thread that adds to it has stopped. */
	if (g->last_seq[mode] && ev->seqno != g->last_seq[mode] + 1)
		atomic_fetch_add_explicit(&g->gaps, ev->seqno - g->last_seq[mode] - 1,
					  memory_order_relaxed);
	g->last_seq[mode] = ev->seqno;
}

static void on_edge(struct af_pin *pin, const struct af_gpio_event *ev, void *arg)
{
	struct afb_gpio *g = arg;

	(void)pin;
	count_gap(g, AFB_GPIO_INT, ev);
	atomic_store_explicit(&g->irq_ts, ev->timestamp_ns, memory_order_relaxed);
	af_flag_set(&g->flag);
}

static int open_input(struct afb_gpio *g, enum afb_gpio_mode mode, const char *line)
{
	int r = af_pin_open(&g->in[mode], line, AF_PIN_IN | (mode == AFB_GPIO_CO ? EDGES : 0));

	if (r == 0 && mode == AFB_GPIO_INT) {
		r = af_pin_irq(g->in[mode], on_edge, g, EDGES);
		if (r < 0) {
			af_pin_close(g->in[mode]);
			g->in[mode] = NULL;
		}
	}
	return r;
}

static int open_sim(struct afb_gpio *g, char *why, size_t len)
{
	char line[64];
	int r = af_gpio_sim_new(&g->sim, "asyncflag-bench", 2, NULL);

	if (r < 0) {
		snprintf(why, len, "af_gpio_sim_new: %s", af_strerror(r));
		return r;
	}
	for (int m = 0; m < 2 && r == 0; m++) {
		snprintf(line, sizeof(line), "%s:%d", af_gpio_sim_chip(g->sim), m);
		r = open_input(g, (enum afb_gpio_mode)m, line);
	}
	if (r < 0)
		snprintf(why, len, "opening the simulated chip's lines: %s", af_strerror(r));
	snprintf(g->where, sizeof(g->where), "the simulated chip %s", af_gpio_sim_chip(g->sim));
	return r;
}

static int open_chip(struct afb_gpio *g, const struct afb_opts *o, char *why, size_t len)
{
	struct af_gpio_chip_info info;
	char out[80];
	int r;

	r = af_gpio_chip_info(o->chip, &info);
	if (r < 0) {
		snprintf(why, len, "%s: %s", o->chip, af_strerror(r));
		return r;
	}
	snprintf(g->chip_path, sizeof(g->chip_path), "%s", info.path);
	g->in_offset = o->in_line;
	snprintf(out, sizeof(out), "%s:%u", o->chip, o->out_line);
	snprintf(g->in_name, sizeof(g->in_name), "%s:%u", o->chip, o->in_line);
	r = af_pin_open(&g->out, out, AF_PIN_OUT);
	if (r < 0) {
		snprintf(why, len, "%s: %s", out, af_strerror(r));
		return r;
	}
	g->mode = AFB_GPIO_CO;
	r = open_input(g, AFB_GPIO_CO, g->in_name);
	if (r < 0)
		snprintf(why, len, "%s: %s", g->in_name, af_strerror(r));
	snprintf(g->where, sizeof(g->where), "%s, line %u driven, line %u read", o->chip,
		 o->out_line, o->in_line);
	return r;
}

int afb_gpio_open(struct afb_gpio **gp, struct af_loop *loop, const struct afb_opts *o,
		  char *why, size_t len)
{
	struct afb_gpio *g = calloc(1, sizeof(*g));
	int r;

	if (!g) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	g->rawfd = -1;
	r = af_flag_init(&g->flag, loop);
	if (r < 0) {
		snprintf(why, len, "af_flag_init: %s", af_strerror(r));
		free(g);
		return r;
	}
	r = o->chip ? open_chip(g, o, why, len) : open_sim(g, why, len);
	if (r < 0) {
		afb_gpio_close(g);
		return r;
	}
	*gp = g;
	return 0;
}

bool afb_gpio_modes_at_once(const struct afb_gpio *g)
{
	return g->sim != NULL;
}

/* The raw uAPI request the library's own path is compared with: both
 * edges, the monotonic clock, nothing else. */
static int open_raw(struct afb_gpio *g)
{
	struct gpio_v2_line_request req;
	int chip = open(g->chip_path, O_RDONLY | O_CLOEXEC), r = 0;

	if (chip < 0)
		return -errno;
	memset(&req, 0, sizeof(req));
	req.offsets[0] = g->in_offset;
	req.num_lines = 1;
	req.config.flags = GPIO_V2_LINE_FLAG_INPUT | GPIO_V2_LINE_FLAG_EDGE_RISING |
			   GPIO_V2_LINE_FLAG_EDGE_FALLING;
	snprintf(req.consumer, sizeof(req.consumer), "asyncflag-bench");
	if (ioctl(chip, GPIO_V2_GET_LINE_IOCTL, &req) < 0)
		r = -errno;
	else
		g->rawfd = req.fd;
	close(chip);
	return r;
}

static void close_input(struct afb_gpio *g)
{
	if (g->mode == AFB_GPIO_RAW) {
		close(g->rawfd);
		g->rawfd = -1;
	} else {
		/* Interrupt mode cannot be left but by closing the request. */
		af_pin_close(g->in[g->mode]);
		g->in[g->mode] = NULL;
	}
}

int afb_gpio_set_mode(struct afb_gpio *g, enum afb_gpio_mode mode)
{
	if (g->sim || g->mode == mode)
		return g->sim && mode == AFB_GPIO_RAW ? -EINVAL : 0;
	close_input(g);
	g->mode = mode;
	g->last_seq[mode] = 0;
	return mode == AFB_GPIO_RAW ? open_raw(g) : open_input(g, mode, g->in_name);
}

int afb_gpio_trigger(struct afb_gpio *g, enum afb_gpio_mode mode)
{
	int line = g->sim ? (int)mode : 0;

	g->level[line] ^= 1;
	if (g->sim)
		return af_gpio_sim_pull(g->sim, (unsigned)line, g->level[line]);
	return af_pin_set_value(g->out, g->level[line]);
}

int afb_gpio_wait(struct afb_gpio *g, enum afb_gpio_mode mode, uint64_t *ts)
{
	struct af_gpio_event ev;
	int r;

	if (mode == AFB_GPIO_INT) {
		r = af_flag_wait(&g->flag);
		*ts = atomic_load_explicit(&g->irq_ts, memory_order_relaxed);
		return r;
	}
	if (mode == AFB_GPIO_RAW) {
		struct gpio_v2_line_event raw;

		/* The task blocks the loop's thread, as the other baselines do. */
		ssize_t n = read(g->rawfd, &raw, sizeof(raw));

		if (n != (ssize_t)sizeof(raw))
			return n < 0 ? -errno : -EIO;
		ev.seqno = raw.seqno;
		count_gap(g, AFB_GPIO_RAW, &ev);
		*ts = raw.timestamp_ns;
		return 0;
	}
	r = af_pin_wait_edge(g->in[AFB_GPIO_CO], &ev);
	if (r == 0) {
		count_gap(g, AFB_GPIO_CO, &ev);
		*ts = ev.timestamp_ns;
	}
	return r;
}

uint64_t afb_gpio_gaps(const struct afb_gpio *g)
{
	return atomic_load_explicit(&g->gaps, memory_order_relaxed);
}

const char *afb_gpio_where(const struct afb_gpio *g)
{
	return g->where;
}

void afb_gpio_close(struct afb_gpio *g)
{
	if (!g)
		return;
	/* The pins first: after af_pin_close() no handler runs. */
	af_pin_close(g->in[0]);
	af_pin_close(g->in[1]);
	if (g->rawfd >= 0)
		close(g->rawfd);
	af_pin_close(g->out);
	af_gpio_sim_free(g->sim);
	af_flag_destroy(&g->flag);
	free(g);
}

#else /* !AFB_HAVE_GPIO */

int afb_gpio_open(struct afb_gpio **g, struct af_loop *loop, const struct afb_opts *o,
		  char *why, size_t len)
{
	(void)g;
	(void)loop;
	(void)o;
	snprintf(why, len, "not available: this libasyncflag has no GPIO API (issue 6)");
	return -ENOSYS;
}

bool afb_gpio_modes_at_once(const struct afb_gpio *g)
{
	(void)g;
	return true;
}

int afb_gpio_set_mode(struct afb_gpio *g, enum afb_gpio_mode mode)
{
	(void)g;
	(void)mode;
	return -ENOSYS;
}

int afb_gpio_trigger(struct afb_gpio *g, enum afb_gpio_mode mode)
{
	(void)g;
	(void)mode;
	return -ENOSYS;
}

int afb_gpio_wait(struct afb_gpio *g, enum afb_gpio_mode mode, uint64_t *ts)
{
	(void)g;
	(void)mode;
	*ts = 0;
	return -ENOSYS;
}

uint64_t afb_gpio_gaps(const struct afb_gpio *g)
{
	(void)g;
	return 0;
}

const char *afb_gpio_where(const struct afb_gpio *g)
{
	(void)g;
	return "";
}

void afb_gpio_close(struct afb_gpio *g)
{
	(void)g;
}

#endif
