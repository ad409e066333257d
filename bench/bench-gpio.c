/* SPDX-License-Identifier: MIT */
/*
 * How a task should read GPIO edge events: the round trip of one 48-byte
 * event record from another thread to a task and an acknowledgement back,
 * three ways in the same process, rounds interleaved:
 *
 *   poll+read  the pins' way: non-blocking read(2), and when it finds
 *              nothing a one-shot io_uring poll (af_poll), then read(2);
 *   ring-read  an IORING_OP_READ on a blocking pipe (af_read);
 *   pin        the whole pin path: af_gpio_sim_pull() on the simulated
 *              chip from the thread, af_pin_wait_edge() in the task.
 *
 * Reported as ns per round trip (median over rounds) and as ratios to
 * poll+read. Usage: bench-gpio [--rounds N] [--iters N]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <asyncflag.h>

#include "bench-util.h"

enum { POLL_READ, RING_READ, PIN, NPATHS };
static const char *const names[NPATHS] = { "poll+read", "ring-read", "pin" };

struct ctx {
	int path;
	uint64_t iters;
	int data[2], ack[2];
	struct af_gpio_sim *sim;
	struct af_pin *pin;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-gpio: %s: %s\n", what, af_strerror(err));
	exit(1);
}

static void *pinger(void *arg)
{
	struct ctx *c = arg;
	char rec[48] = { 0 }, k;

	for (uint64_t i = 0; i < c->iters; i++) {
		if (c->path == PIN)
			af_gpio_sim_pull(c->sim, 0, !(i & 1));
		else if (write(c->data[1], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
			die("write", -errno);
		if (read(c->ack[0], &k, 1) != 1)
			die("read ack", -errno);
	}
	return NULL;
}

static int consumer(void *arg)
{
	struct ctx *c = arg;
	char buf[48 * 64];
	struct af_gpio_event ev;

	for (uint64_t i = 0; i < c->iters; i++) {
		int r = 0;

		if (c->path == PIN) {
			r = af_pin_wait_edge(c->pin, &ev);
		} else if (c->path == RING_READ) {
			r = af_read(c->data[0], buf, sizeof(buf), AF_OFFSET_CURRENT);
			r = r > 0 ? 0 : (r ? r : -EIO);
		} else {
			while (read(c->data[0], buf, sizeof(buf)) <= 0)
				if ((r = af_poll(c->data[0], POLLIN)) < 0)
					break;
			r = r < 0 ? r : 0;
		}
		if (r < 0)
			die(names[c->path], r);
		if (write(c->ack[1], "k", 1) != 1)
			die("write ack", -errno);
	}
	return 0;
}

static double one_round(struct ctx *c)
{
	struct af_loop *loop;
	pthread_t th;
	uint64_t t0, t1;
	int r, res;

	r = af_loop_new(&loop, NULL);
	if (r)
		die("af_loop_new", r);
	if (pthread_create(&th, NULL, pinger, c))
		die("pthread_create", -EAGAIN);
	t0 = bench_now_ns();
	r = af_loop_run(loop, consumer, c, &res);
	t1 = bench_now_ns();
	pthread_join(th, NULL);
	af_loop_free(loop);
	if (r)
		die("af_loop_run", r);
	return (double)(t1 - t0) / (double)c->iters;
}

static void setup(struct ctx *c)
{
	static const char *const line_names[] = { "bench0" };
	int r;

	if (pipe2(c->data, O_CLOEXEC) || pipe2(c->ack, O_CLOEXEC))
		die("pipe2", -errno);
	r = af_gpio_sim_new(&c->sim, "bench", 1, line_names);
	if (r)
		die("af_gpio_sim_new", r);
	r = af_pin_open(&c->pin, "bench0", AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING);
	if (r)
		die("af_pin_open", r);
}

int main(int argc, char **argv)
{
	uint64_t rounds = 5, iters = 20000;
	double *v[NPATHS], med[NPATHS];
	struct ctx c = { 0 };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			if (!bench_parse_u64("--rounds", argv[++i], 1, 1000, &rounds))
				return 2;
		} else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
			if (!bench_parse_u64("--iters", argv[++i], 2, 10000000, &iters))
				return 2;
		} else {
			fprintf(stderr, "usage: bench-gpio [--rounds N] [--iters N]\n");
			return 2;
		}
	}
	c.iters = iters + (iters & 1);   /* even: every round ends with the line low */
	setup(&c);
	for (int p = 0; p < NPATHS; p++)
		v[p] = calloc(rounds, sizeof(double));
	/* Interleaved so a noisy neighbour hits every path alike. The
	 * record/edge stream stays in step: each round consumes all it made
	 * (an even count of pulls leaves the line low again). */
	for (uint64_t r = 0; r < rounds; r++) {
		for (int p = 0; p < NPATHS; p++) {
			c.path = p;
			v[p][r] = one_round(&c);
		}
	}
	printf("%-10s %12s %12s %12s %8s\n", "path", "min ns", "median ns", "max ns", "ratio");
	for (int p = 0; p < NPATHS; p++) {
		struct bench_pct s = bench_pct_of(v[p], rounds);

		med[p] = s.p50;
		printf("%-10s %12.0f %12.0f %12.0f %8.2f\n", names[p], s.min, s.p50, s.max,
		       s.p50 / med[POLL_READ]);
	}
	printf("(%llu rounds x %llu round trips; ratio = median / poll+read median)\n",
	       (unsigned long long)rounds, (unsigned long long)iters);
	for (int p = 0; p < NPATHS; p++)
		free(v[p]);
	af_pin_close(c.pin);
	af_gpio_sim_free(c.sim);
	return 0;
}
