/* SPDX-License-Identifier: MIT */
/*
 * bench-queue: items per second from producer threads to one consumer,
 * through af_queue against two hand-made baselines, in the same run:
 *
 *   af_queue  producers af_queue_push(); a task on the loop af_queue_get()s.
 *   condvar   a mutex-protected ring; the consumer thread waits on a
 *             condition variable, producers signal it after each push.
 *   eventfd   the same ring, counted by an eventfd: producers write(2) 1
 *             after each push, the consumer read(2)s the count (blocking)
 *             and takes that many items.
 *
 * All three have the same capacity, and producers that find the ring full
 * yield and retry, so only the hand-over differs. Rounds rotate the three
 * methods so they share the machine's noise; the report gives the median
 * rate of each and its ratio to af_queue. Every item is checked (count and
 * checksum): a wrong hand-over exits 1.
 *
 * usage: bench-queue [--items N] [--producers P] [--rounds R] [--capacity C]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <asyncflag.h>

enum method { M_AF, M_CONDVAR, M_EVENTFD, M_COUNT };
static const char *const method_name[M_COUNT] = { "af_queue", "condvar", "eventfd" };

static uint64_t items = 200000, nproducers = 2, rounds = 5, capacity = 1024;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the baselines' ring ------------------------------------------------------ */

struct locked_ring {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int efd;
	uintptr_t *buf;
	uint64_t head, tail;
};

static bool ring_push(struct locked_ring *r, uintptr_t v, enum method m)
{
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&r->mu);
	ok = r->tail - r->head < capacity;
	if (ok)
		r->buf[r->tail++ % capacity] = v;
	pthread_mutex_unlock(&r->mu);
	if (!ok)
		return false;
	if (m == M_CONDVAR)
		pthread_cond_signal(&r->cv);
	else if (write(r->efd, &one, sizeof(one)) < 0)
		abort();
	return true;
}

/* ---- one run ------------------------------------------------------------------ */

struct run {
	enum method m;
	struct af_queue q;
	struct locked_ring ring;
	uint64_t per_producer;
	uint64_t sum;        /* what the consumer saw */
	uint64_t received;
};

struct producer {
	struct run *run;
	uint64_t id;
	pthread_t th;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	struct run *run = p->run;

	for (uint64_t i = 0; i < run->per_producer; i++) {
		uintptr_t v = (uintptr_t)(p->id * run->per_producer + i + 1);

		if (run->m == M_AF) {
			while (af_queue_push(&run->q, (void *)v) == -EAGAIN)
				sched_yield();
		} else {
			while (!ring_push(&run->ring, v, run->m))
				sched_yield();
		}
	}
	return NULL;
}

static void consume_locked(struct run *run, uint64_t total)
{
	struct locked_ring *r = &run->ring;

	while (run->received < total) {
		uint64_t n;

		if (run->m == M_EVENTFD && read(r->efd, &n, sizeof(n)) != sizeof(n))
			abort();
		pthread_mutex_lock(&r->mu);
		if (run->m == M_CONDVAR)
			while (r->head == r->tail)
				pthread_cond_wait(&r->cv, &r->mu);
		while (r->head != r->tail) {
			run->sum += r->buf[r->head++ % capacity];
			run->received++;
		}
		pthread_mutex_unlock(&r->mu);
	}
}

static int consume_af(void *arg)
{
	struct run *run = arg;
	uint64_t total = run->per_producer * nproducers;
	void *item;

	while (run->received < total) {
		int r = af_queue_get(&run->q, &item);

		if (r < 0)
			return r;
		run->sum += (uintptr_t)item;
		run->received++;
	}
	return 0;
}

struct af_run_ctx {
	struct run *run;
	struct producer *p;
	double *rate;
};

static void start_producers(struct run *run, struct producer *p)
{
	for (uint64_t i = 0; i < nproducers; i++) {
		p[i] = (struct producer){ run, i, 0 };
		if (pthread_create(&p[i].th, NULL, producer_main, &p[i]) != 0)
			abort();
	}
}

static void join_producers(struct producer *p)
{
	for (uint64_t i = 0; i < nproducers; i++)
		pthread_join(p[i].th, NULL);
}

static int af_main(void *arg)
{
	struct af_run_ctx *c = arg;
	uint64_t t0;
	int r;

	r = af_queue_init(&c->run->q, NULL, capacity);
	if (r < 0)
		return r;
	t0 = now_ns();
	start_producers(c->run, c->p);
	r = consume_af(c->run);
	*c->rate = (double)c->run->received * 1e9 / (double)(now_ns() - t0);
	join_producers(c->p);
	af_queue_destroy(&c->run->q);
	return r;
}

/* Runs one method once; returns items/s, or a negative value on failure. */
static double run_once(struct af_loop *loop, enum method m)
{
	struct run run = { .m = m, .per_producer = items / nproducers };
	struct producer *p = calloc(nproducers, sizeof(*p));
	uint64_t total = run.per_producer * nproducers;
	double rate = -1;
	uint64_t t0;

	if (!p)
		return -1;
	if (m == M_AF) {
		struct af_run_ctx c = { &run, p, &rate };
		int result = -1;

		if (af_loop_run(loop, af_main, &c, &result) < 0 || result < 0)
			rate = -1;
	} else {
		run.ring.buf = calloc(capacity, sizeof(uintptr_t));
		pthread_mutex_init(&run.ring.mu, NULL);
		pthread_cond_init(&run.ring.cv, NULL);
		run.ring.efd = eventfd(0, EFD_CLOEXEC);
		if (!run.ring.buf || run.ring.efd < 0)
			abort();
		t0 = now_ns();
		start_producers(&run, p);
		consume_locked(&run, total);
		rate = (double)run.received * 1e9 / (double)(now_ns() - t0);
		join_producers(p);
		close(run.ring.efd);
		pthread_cond_destroy(&run.ring.cv);
		pthread_mutex_destroy(&run.ring.mu);
		free(run.ring.buf);
	}
	free(p);
	/* Values 1..total, each once: count and sum catch a lost or doubled item. */
	if (rate >= 0 && (run.received != total || run.sum != total * (total + 1) / 2)) {
		fprintf(stderr, "bench-queue: %s delivered %llu items (sum %llu), expected %llu\n",
			method_name[m], (unsigned long long)run.received,
			(unsigned long long)run.sum, (unsigned long long)total);
		return -2;
	}
	return rate;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static bool parse(const char *s, uint64_t min, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "items", required_argument, NULL, 'n' },
		{ "producers", required_argument, NULL, 'p' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "capacity", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	struct af_loop *loop;
	double *rate[M_COUNT], median[M_COUNT];
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool ok = c == 'n' ? parse(optarg, 1, &items) :
			  c == 'p' ? parse(optarg, 1, &nproducers) :
			  c == 'r' ? parse(optarg, 1, &rounds) :
			  c == 'c' ? parse(optarg, 1, &capacity) : false;

		if (!ok) {
			fprintf(stderr, "usage: bench-queue [--items N] [--producers P] "
					"[--rounds R] [--capacity C]\n");
			return 2;
		}
	}
	if (items < nproducers)
		items = nproducers;
	r = af_loop_new(&loop, NULL);
	if (r < 0) {
		fprintf(stderr, "bench-queue: cannot create the event loop: %s\n", af_strerror(r));
		return r == -EPERM || r == -ENOSYS ? 77 : 1;
	}
	for (int m = 0; m < M_COUNT; m++) {
		rate[m] = calloc(rounds, sizeof(double));
		if (!rate[m])
			return 1;
	}
	for (uint64_t i = 0; i < rounds; i++) {
		for (int k = 0; k < M_COUNT; k++) {
			int m = (int)((i + (uint64_t)k) % M_COUNT);   /* rotate the order */

			rate[m][i] = run_once(loop, (enum method)m);
			if (rate[m][i] < 0) {
				fprintf(stderr, "bench-queue: %s failed\n", method_name[m]);
				return 1;
			}
		}
	}
	af_loop_free(loop);
	printf("bench-queue: %llu items, %llu producers, capacity %llu, %llu rounds (median)\n",
	       (unsigned long long)items, (unsigned long long)nproducers,
	       (unsigned long long)capacity, (unsigned long long)rounds);
	for (int m = 0; m < M_COUNT; m++) {
		qsort(rate[m], rounds, sizeof(double), cmp_double);
		median[m] = rate[m][rounds / 2];
	}
	for (int m = 0; m < M_COUNT; m++) {
		printf("  %-9s %12.0f items/s  %5.2fx af_queue\n", method_name[m], median[m],
		       median[m] / median[M_AF]);
		free(rate[m]);
	}
	return 0;
}
