/* SPDX-License-Identifier: MIT */
/*
 * bench-wake: how fast another thread wakes a task with af_flag_set(),
 * against waking a thread with the raw kernel primitives, side by side.
 *
 * Two threads: the setter (this program's main thread) and the worker,
 * which runs the loop. In the ping-pong modes one task on the worker, the
 * waiter, blocks once per ping; the setter stamps CLOCK_MONOTONIC and
 * wakes it; the waiter stamps when it runs again; latency is the
 * difference. The mechanism changes from ping to ping, in a rotating
 * order, so the baselines share the same thread, the same CPUs, the same
 * moment and the same noise as the measured path:
 *
 *   sleep mode: the loop is asleep in the kernel when the set comes.
 *     af_flag  the waiter is in af_flag_wait(); the loop sleeps in
 *              io_uring_enter and the set writes its eventfd.
 *     eventfd  the waiter task calls read(2) on a blocking eventfd (the
 *              worker thread blocks in the kernel), the setter write(2)s.
 *     condvar  the waiter task blocks the worker in pthread_cond_wait, the
 *              setter sets a predicate under the mutex and signals.
 *     io_uring the waiter task reads a blocking eventfd through a private
 *              ring set up like the loop's (io_uring_submit_and_wait), the
 *              setter write(2)s: the kernel path af_flag rides on, without
 *              the library around it.
 *   busy mode: a second task spins on af_yield(), so the loop never
 *              sleeps: the set costs no system call.
 *     af_flag  as above, but the loop notices the flag between two turns
 *              of its run queue.
 *     spin     the waiter spins on an atomic the setter stores: the cost
 *              of moving one cache line between CPUs, the floor.
 *
 * Keeping it honest: the setter never fires while the previous ping is in
 * flight. The waiter publishes "ready for ping i" just before it blocks;
 * the setter waits for that and, in sleep mode, then polls
 * /proc/self/task/<worker>/stat until the worker is in state S (blocked in
 * the kernel) before it stamps. In busy mode it waits a random 1-3 us
 * instead, so the set lands at a random point of the loop's turn; an
 * af_flag ping whose wait returned without blocking (the spinner never ran
 * in between) is left out and counted.
 *
 *   storm mode: N threads call af_flag_set() as fast as they can while a
 *     task loops on af_flag_wait(); slices alternate with the same threads
 *     writing a raw eventfd that the worker reads. We report sets/s and
 *     wake-ups/s, and from one extra counting slice, measured from outside
 *     the library, the setters' write(2) calls (the eventfd kicks) against
 *     the loop's waiting io_uring_enter calls: the flag promises at most
 *     one write per loop sleep.
 *
 * System calls are counted per thread with perf tracepoints when the
 * kernel lets us (see bench-util.h), in separate, untimed passes.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <liburing.h>

#include "asyncflag.h"
#include "bench-util.h"

#define TIMEOUT_NS (10ull * 1000000000u)

enum method { M_AF, M_EVENTFD, M_CONDVAR, M_URING, M_SPIN, M_COUNT };

static const char *const method_name[M_COUNT] = {
	"af_flag", "eventfd", "condvar", "io_uring", "spin",
};

/* ---- the worker thread ----------------------------------------------------- */

/* Runs jobs the setter hands it, one at a time; the loop is bound to it.
 * The thread is bench-util's; this adds what the jobs share. */
struct worker {
	struct bench_worker bw;
	void (*job)(struct worker *w, void *arg);
	void *job_arg;
	struct bench_sysc sys;     /* every system call the worker makes */
	struct bench_sysc enter;   /* its io_uring_enter calls */
	struct bench_sysc waits;   /* those that wait for a completion */
	struct io_uring ring;      /* the io_uring baseline's own ring */
	int ring_err;              /* 1: not made yet; 0: ready; < 0: failed */
};

static void job_trampoline(void *arg)
{
	struct worker *w = arg;

	w->job(w, w->job_arg);
}

/* The worker's counters count the worker, so it opens them itself. They
 * are open only around counting passes: while any syscall tracepoint is
 * open, every system call on the machine takes the kernel's slower
 * tracing path, which would bias the timed pings. */
static void counters_job(struct worker *w, void *open)
{
	if (open) {
		bench_sysc_open(&w->sys, "raw_syscalls/sys_enter");
		bench_sysc_open(&w->enter, "syscalls/sys_enter_io_uring_enter");
		bench_sysc_open_filter(&w->waits, "syscalls/sys_enter_io_uring_enter",
				       "min_complete != 0");
	} else {
		bench_sysc_close(&w->waits);
		bench_sysc_close(&w->enter);
		bench_sysc_close(&w->sys);
	}
}

static void worker_counters(struct worker *w, bool open);

static void worker_post(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
	w->job = fn;
	w->job_arg = arg;
	bench_worker_run(&w->bw, job_trampoline, w);
}

static void worker_wait(struct worker *w)
{
	bench_worker_wait(&w->bw);
}

static void worker_counters(struct worker *w, bool open)
{
	worker_post(w, counters_job, open ? w : NULL);
	worker_wait(w);
}

static void pin_to(pthread_t th, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(th, sizeof(set), &set);
}

/* ---- ping-pong ----------------------------------------------------------- */

struct ping {
	struct af_loop *loop;
	struct af_flag flag;
	int efd;
	int uefd;                    /* the io_uring baseline's eventfd */
	unsigned ring_flags;         /* its ring set-up: the loop's */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool cv_go;                  /* under mu */
	_Atomic uint64_t spin_go;
	_Atomic uint64_t t0;         /* the setter's stamp for the ping in flight */
	_Atomic uint64_t ready;      /* i + 1: the waiter is about to block for ping i */
	_Atomic int failed;

	const uint8_t *sched;        /* method of each ping */
	size_t n;
	bool busy;                   /* a spinner task keeps the loop awake */
	bool spinning;               /* the loop spins before it sleeps (spin mode) */
	uint64_t gap_ns;             /* sleep mode: the setter's own sleep before a set */
	bool count;                  /* count system calls instead of timing */
	double *lat;                 /* ns per ping; -1 when left out */
	uint64_t *wsys;              /* count pass: waiter's system calls per ping */
	uint64_t *ssys;              /* count pass: setter's system calls per ping */

	uint64_t cpu_ns, wall_ns;    /* the loop thread's CPU and wall time in the pass */

	struct worker *w;            /* set before each pass is posted */
	/* Worker thread only. */
	struct bench_spin spin;
};

static int block_once(struct ping *p, size_t i, uint64_t *t1)
{
	uint64_t v;
	int r = 0;

	switch (p->sched[i]) {
	case M_AF:
		r = af_flag_wait(&p->flag);
		*t1 = bench_now_ns();
		break;
	case M_EVENTFD:
		if (read(p->efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
			r = -errno;
		*t1 = bench_now_ns();
		break;
	case M_CONDVAR:
		pthread_mutex_lock(&p->mu);
		while (!p->cv_go)
			pthread_cond_wait(&p->cv, &p->mu);
		*t1 = bench_now_ns();
		p->cv_go = false;
		pthread_mutex_unlock(&p->mu);
		break;
	case M_URING: {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&p->w->ring);
		struct io_uring_cqe *cqe;

		io_uring_prep_read(sqe, p->uefd, &v, sizeof(v), 0);
		r = io_uring_submit_and_wait(&p->w->ring, 1);
		if (r >= 0)
			r = io_uring_peek_cqe(&p->w->ring, &cqe);
		*t1 = bench_now_ns();
		if (r == 0) {
			r = cqe->res < 0 ? cqe->res : 0;
			io_uring_cqe_seen(&p->w->ring, cqe);
		}
		break;
	}
	default:
		/* acquire: pairs with the setter's release store, which it
		 * makes after writing t0. */
		while (atomic_load_explicit(&p->spin_go, memory_order_acquire) != i + 1)
			bench_cpu_relax();
		*t1 = bench_now_ns();
		break;
	}
	return r;
}

static int waiter(void *arg)
{
	struct ping *p = arg;

	for (size_t i = 0; i < p->n; i++) {
		uint64_t t1 = 0, s0 = 0, turns = p->spin.turns;
		int r;

		/* release: the previous ping's sample is written before the
		 * setter may start the next one. */
		atomic_store_explicit(&p->ready, i + 1, memory_order_release);
		if (p->count)
			s0 = bench_sysc_read(&p->w->sys);
		r = block_once(p, i, &t1);
		if (p->count)
			p->wsys[i] = bench_sysc_delta(&p->w->sys, s0, bench_sysc_read(&p->w->sys));
		if (r < 0) {
			atomic_store(&p->failed, r);
			return r;
		}
		p->lat[i] = (double)(int64_t)(t1 - atomic_load_explicit(&p->t0,
									 memory_order_relaxed));
		/* A busy-loop wait that returned before the spinner took a turn
		 * never blocked: it measured nothing but the flag's fast path. */
		if (p->busy && p->sched[i] == M_AF && p->spin.turns == turns)
			p->lat[i] = -1;
	}
	atomic_store_explicit(&p->ready, p->n + 1, memory_order_release);
	return 0;
}

static int ping_main(void *arg)
{
	struct ping *p = arg;

	return bench_wait_beside(waiter, p, p->busy ? &p->spin : NULL);
}

static uint64_t bench_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ping_job(struct worker *w, void *arg)
{
	struct ping *p = arg;
	uint64_t cpu0, wall0;
	int res = 0, r;

	/* The baseline ring is made on the worker: with SINGLE_ISSUER the
	 * thread that creates it is the only one that may submit. */
	if (w->ring_err == 1) {
		struct io_uring_params prm;

		memset(&prm, 0, sizeof(prm));
		prm.flags = p->ring_flags;
		w->ring_err = io_uring_queue_init_params(8, &w->ring, &prm);
	}
	if (w->ring_err < 0) {
		fprintf(stderr, "bench-wake: io_uring_queue_init: %s\n", strerror(-w->ring_err));
		atomic_store(&p->failed, w->ring_err);
		return;
	}
	cpu0 = bench_thread_cpu_ns();
	wall0 = bench_now_ns();
	r = af_loop_run(p->loop, ping_main, p, &res);
	p->cpu_ns = bench_thread_cpu_ns() - cpu0;
	p->wall_ns = bench_now_ns() - wall0;
	if (r < 0 || res < 0) {
		fprintf(stderr, "bench-wake: loop: %s\n", af_strerror(r < 0 ? r : res));
		atomic_store(&p->failed, r < 0 ? r : res);
	}
}

/* Wait for ready == @want. Spin first (the answer is usually microseconds
 * away), then yield the CPU so a shared machine can still run the worker. */
static int wait_ready(struct ping *p, uint64_t want, size_t ping)
{
	int r = bench_wait_ready(&p->ready, want, &p->failed, TIMEOUT_NS);

	if (r == -ETIMEDOUT)
		fprintf(stderr,
			"bench-wake: ping %zu (%s) was not answered within 10 s: "
			"lost wake-up\n",
			ping, method_name[p->sched[ping]]);
	return r < 0 ? -1 : 0;
}

static int wait_asleep(struct ping *p, size_t ping)
{
	uint64_t start = bench_now_ns();

	while (bench_thread_state(p->w->bw.statfd) != 'S') {
		if (atomic_load(&p->failed))
			return -1;
		if (bench_now_ns() - start > TIMEOUT_NS) {
			fprintf(stderr, "bench-wake: ping %zu (%s): the worker never went to sleep\n",
				ping, method_name[p->sched[ping]]);
			return -1;
		}
		for (int k = 0; k < 64; k++)
			bench_cpu_relax();
	}
	return 0;
}

static void trigger(struct ping *p, size_t i)
{
	uint64_t one = 1;

	switch (p->sched[i]) {
	case M_AF:
		af_flag_set(&p->flag);
		break;
	case M_EVENTFD:
		if (write(p->efd, &one, sizeof(one)) < 0)
			atomic_store(&p->failed, -errno);
		break;
	case M_URING:
		if (write(p->uefd, &one, sizeof(one)) < 0)
			atomic_store(&p->failed, -errno);
		break;
	case M_CONDVAR:
		/* Signal after unlocking so the woken waiter does not run into
		 * a mutex we still hold: the faster of the two usual idioms. */
		pthread_mutex_lock(&p->mu);
		p->cv_go = true;
		pthread_mutex_unlock(&p->mu);
		pthread_cond_signal(&p->cv);
		break;
	default:
		atomic_store_explicit(&p->spin_go, i + 1, memory_order_release);
		break;
	}
}

/* xorshift64: cheap and good enough to scatter the busy-mode delay. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Run one ping-pong pass over p->sched on the worker. */
static int run_pings(struct ping *p, struct worker *w, struct bench_sysc *ssys)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	int r = 0;

	atomic_store(&p->ready, 0);
	atomic_store(&p->spin_go, 0);
	atomic_store(&p->failed, 0);
	p->spin.turns = 0;
	p->w = w;
	worker_post(w, ping_job, p);
	for (size_t i = 0; i < p->n; i++) {
		uint64_t s0 = 0;

		if (wait_ready(p, i + 1, i ? i - 1 : 0) < 0) {
			r = -1;
			break;
		}
		if (!p->busy && !p->spinning) {
			if (wait_asleep(p, i) < 0) {
				r = -1;
				break;
			}
			/* The setter sleeps too, like a thread that is itself
			 * woken by a timer or a device and then sets the flag:
			 * the usual producer. */
			if (p->gap_ns) {
				struct timespec gap = {
					.tv_sec = (time_t)(p->gap_ns / 1000000000u),
					.tv_nsec = (long)(p->gap_ns % 1000000000u),
				};

				nanosleep(&gap, NULL);
				if (wait_asleep(p, i) < 0) {
					r = -1;
					break;
				}
			}
		} else {
			uint64_t until = bench_now_ns() + 1000 + rnd(&seed) % 2000;

			while (bench_now_ns() < until)
				bench_cpu_relax();
		}
		if (p->count)
			s0 = bench_sysc_read(ssys);
		/* relaxed: each mechanism orders it before the wake-up (the
		 * flag's release, the syscalls, the mutex, spin_go's release). */
		atomic_store_explicit(&p->t0, bench_now_ns(), memory_order_relaxed);
		trigger(p, i);
		if (p->count)
			p->ssys[i] = bench_sysc_delta(ssys, s0, bench_sysc_read(ssys));
	}
	if (r == 0 && wait_ready(p, p->n + 1, p->n - 1) < 0)
		r = -1;
	if (r < 0) {
		/* The worker may be stuck in a wait we cannot end: leave. */
		fprintf(stderr, "bench-wake: giving up\n");
		exit(1);
	}
	worker_wait(w);
	return atomic_load(&p->failed) ? -1 : 0;
}

/* ---- results ------------------------------------------------------------- */

struct mstats {
	struct bench_pct pct;
	size_t excluded;
	double ssys, wsys;           /* mean system calls per ping; < 0: not counted */
};

static void collect_lat(const struct ping *p, int m, struct mstats *st)
{
	double *v = malloc(p->n * sizeof(*v));
	size_t k = 0;

	st->excluded = 0;
	if (!v) {
		memset(&st->pct, 0, sizeof(st->pct));
		return;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (p->sched[i] != m)
			continue;
		if (p->lat[i] < 0)
			st->excluded++;
		else
			v[k++] = p->lat[i];
	}
	st->pct = bench_pct_of(v, k);
	free(v);
}

static void collect_sys(const struct ping *p, int m, struct mstats *st)
{
	uint64_t s = 0, w = 0, k = 0;

	for (size_t i = 0; i < p->n; i++) {
		if (p->sched[i] != m)
			continue;
		s += p->ssys[i];
		w += p->wsys[i];
		k++;
	}
	st->ssys = k ? (double)s / (double)k : -1;
	st->wsys = k ? (double)w / (double)k : -1;
}

/* ---- options --------------------------------------------------------------- */

enum { MODE_SLEEP = 1, MODE_BUSY = 2, MODE_STORM = 4, MODE_SPIN = 8, MODE_ALL = 15 };

struct opts {
	uint64_t rounds;
	unsigned modes;
	uint64_t threads;
	uint64_t storm_ms, slice_ms;
	uint64_t gap_us;
	uint64_t spin_us;
	bool json, pin, basic_ring;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-wake [--mode sleep|busy|spin|storm|all] [--rounds N] [--threads N]\n"
		"                  [--storm-ms MS] [--slice-ms MS] [--gap-us US] [--spin-us US]\n"
		"                  [--pin] [--basic-ring] [--json]\n"
		"  --mode       what to run; repeatable or comma-separated (default all)\n"
		"  --rounds N   pings per mechanism in sleep, busy and spin modes (default 2000)\n"
		"  --threads N  setter threads in storm mode (default: CPUs - 1, at least 1)\n"
		"  --storm-ms   storm time per mechanism, in milliseconds (default 1000)\n"
		"  --slice-ms   storm slice; slices alternate mechanisms (default 100)\n"
		"  --gap-us US  sleep mode: once the worker is asleep, the setter sleeps US\n"
		"               microseconds itself before it sets (default 50); 0 sets at\n"
		"               once from a setter that never slept (a hot producer)\n"
		"  --spin-us US spin mode: the loop's af_loop_opts.spin_ns, in microseconds\n"
		"               (default 100)\n"
		"  --pin        pin the setter to CPU 0 and the loop's thread to CPU 1\n"
		"  --basic-ring create the loop with AF_LOOP_BASIC_RING (no COOP_TASKRUN,\n"
		"               SINGLE_ISSUER or DEFER_TASKRUN) to compare ring set-ups\n"
		"  --json       machine-readable output on stdout\n");
}

static int parse_modes(const char *s, unsigned *modes)
{
	char buf[64], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "sleep"))
			*modes |= MODE_SLEEP;
		else if (!strcmp(t, "busy"))
			*modes |= MODE_BUSY;
		else if (!strcmp(t, "storm"))
			*modes |= MODE_STORM;
		else if (!strcmp(t, "spin"))
			*modes |= MODE_SPIN;
		else if (!strcmp(t, "all"))
			*modes |= MODE_ALL;
		else {
			fprintf(stderr, "--mode: unknown mode \"%s\"\n", t);
			return -1;
		}
	}
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "rounds", required_argument, NULL, 'r' },
		{ "mode", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "storm-ms", required_argument, NULL, 's' },
		{ "slice-ms", required_argument, NULL, 'l' },
		{ "gap-us", required_argument, NULL, 'g' },
		{ "spin-us", required_argument, NULL, 'u' },
		{ "pin", no_argument, NULL, 'p' },
		{ "basic-ring", no_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->rounds = 2000;
	{
		/* One setter per CPU the loop's thread does not need. */
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		o->threads = ncpu > 2 ? (uint64_t)ncpu - 1 : 1;
	}
	o->storm_ms = 1000;
	o->slice_ms = 100;
	o->gap_us = 50;
	o->spin_us = 100;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!bench_parse_u64("--rounds", optarg, 1, 10000000, &o->rounds))
				return -1;
			break;
		case 'm':
			if (parse_modes(optarg, &o->modes) < 0)
				return -1;
			break;
		case 't':
			if (!bench_parse_u64("--threads", optarg, 1, 256, &o->threads))
				return -1;
			break;
		case 's':
			if (!bench_parse_u64("--storm-ms", optarg, 1, 3600000, &o->storm_ms))
				return -1;
			break;
		case 'l':
			if (!bench_parse_u64("--slice-ms", optarg, 1, 3600000, &o->slice_ms))
				return -1;
			break;
		case 'g':
			if (!bench_parse_u64("--gap-us", optarg, 0, 1000000, &o->gap_us))
				return -1;
			break;
		case 'u':
			if (!bench_parse_u64("--spin-us", optarg, 1, AF_LOOP_SPIN_MAX_NS / 1000,
					     &o->spin_us))
				return -1;
			break;
		case 'p':
			o->pin = true;
			break;
		case 'b':
			o->basic_ring = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	if (!o->modes)
		o->modes = MODE_ALL;
	if (o->slice_ms > o->storm_ms)
		o->slice_ms = o->storm_ms;
	return 0;
}

/* ---- sleep and busy modes ----------------------------------------------------- */

struct pingmode {
	const char *name;
	int methods[4];
	int nm;
	struct mstats st[M_COUNT];
	bool counted;
	double cpu_share;            /* the loop thread's CPU time / wall time, timed pass */
	double cpu_per_ping;         /* the loop thread's CPU time per ping, ns */
};

static uint8_t *make_sched(const struct pingmode *pm, size_t rounds, size_t *n)
{
	uint8_t m[4];

	for (int j = 0; j < pm->nm; j++)
		m[j] = (uint8_t)pm->methods[j];
	*n = rounds * (size_t)pm->nm;
	return bench_sched_make(m, (size_t)pm->nm, rounds);
}

/* Run a pass of @rounds pings per method. The samples stay in @p until
 * pass_free(). */
static int pass(struct ping *p, struct worker *w, struct bench_sysc *ssys,
		const struct pingmode *pm, size_t rounds, bool count)
{
	uint8_t *sched = make_sched(pm, rounds, &p->n);

	p->sched = sched;
	p->lat = calloc(p->n, sizeof(*p->lat));
	p->wsys = calloc(p->n, sizeof(*p->wsys));
	p->ssys = calloc(p->n, sizeof(*p->ssys));
	if (!sched || !p->lat || !p->wsys || !p->ssys) {
		fprintf(stderr, "bench-wake: out of memory\n");
		return -1;
	}
	p->count = count;
	return run_pings(p, w, ssys);
}

static void pass_free(struct ping *p)
{
	free((void *)p->sched);
	free(p->lat);
	free(p->wsys);
	free(p->ssys);
	p->sched = NULL;
	p->lat = NULL;
	p->wsys = p->ssys = NULL;
}

static int run_pingmode(struct ping *p, struct worker *w, struct pingmode *pm,
			const struct opts *o)
{
	struct bench_sysc off = { .fd = -1, .err = -ENOENT }, ssys;
	size_t warm = o->rounds < 20 ? o->rounds : 20;
	size_t counted = o->rounds < 200 ? o->rounds : 200;
	int r;

	p->busy = !strcmp(pm->name, "busy");
	p->spinning = !strcmp(pm->name, "spin");
	/* Warm-up: first-touch page faults, lazy binding, the loop's first
	 * sleep. Thrown away. */
	r = pass(p, w, &off, pm, warm, false);
	pass_free(p);
	if (r < 0)
		return -1;
	r = pass(p, w, &off, pm, o->rounds, false);
	pm->cpu_share = p->wall_ns ? (double)p->cpu_ns / (double)p->wall_ns : 0;
	pm->cpu_per_ping = p->n ? (double)p->cpu_ns / (double)p->n : 0;
	if (r == 0)
		for (int j = 0; j < pm->nm; j++)
			collect_lat(p, pm->methods[j], &pm->st[pm->methods[j]]);
	pass_free(p);
	if (r < 0)
		return -1;

	/* System calls, counted in their own pass: reading the counters
	 * costs system calls of its own that must not sit in a timed ping. */
	bench_sysc_open(&ssys, "raw_syscalls/sys_enter");
	worker_counters(w, true);
	pm->counted = bench_sysc_ok(&ssys) && bench_sysc_ok(&w->sys);
	r = 0;
	if (pm->counted) {
		r = pass(p, w, &ssys, pm, counted, true);
		if (r == 0)
			for (int j = 0; j < pm->nm; j++)
				collect_sys(p, pm->methods[j], &pm->st[pm->methods[j]]);
		pass_free(p);
	}
	worker_counters(w, false);
	bench_sysc_close(&ssys);
	return r < 0 ? -1 : 0;
}

/* ---- storm mode ------------------------------------------------------------ */

struct storm;

struct setter {
	pthread_t th;
	struct storm *st;
	uint64_t sets, writes;
	bool writes_counted;
};

struct storm {
	struct af_loop *loop;
	struct af_flag flag;
	int efd;
	int method;                 /* M_AF or M_EVENTFD */
	bool count;                 /* a counting slice, not a timed one */
	_Atomic unsigned nready;
	_Atomic bool go, stop;
	_Atomic bool rx_ready;
	/* Filled by the worker. */
	uint64_t wakeups, values, sleeps, enters, waits;
	bool enters_counted, waits_counted;
	int err;
};

static void *setter_main(void *arg)
{
	struct setter *s = arg;
	struct storm *st = s->st;
	struct bench_sysc wr;
	uint64_t n = 0, c0, c1, one = 1;

	wr.fd = -1;
	wr.err = -ENOENT;
	if (st->count)
		bench_sysc_open(&wr, "syscalls/sys_enter_write");
	atomic_fetch_add(&st->nready, 1);
	while (!atomic_load(&st->go))
		sched_yield();
	c0 = bench_sysc_read(&wr);
	if (st->method == M_AF) {
		while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
			af_flag_set(&st->flag);
			n++;
		}
	} else {
		while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
			if (write(st->efd, &one, sizeof(one)) < 0)
				break;
			n++;
		}
	}
	c1 = bench_sysc_read(&wr);
	s->sets = n;
	s->writes_counted = bench_sysc_ok(&wr);
	s->writes = bench_sysc_delta(&wr, c0, c1);
	bench_sysc_close(&wr);
	return NULL;
}

static long thread_nvcsw(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0)
		return 0;
	return ru.ru_nvcsw;
}

static int storm_waiter(void *arg)
{
	struct storm *st = arg;

	atomic_store(&st->rx_ready, true);
	while (!atomic_load(&st->stop)) {
		int r = af_flag_wait(&st->flag);

		if (r < 0)
			return r;
		if (atomic_load(&st->stop))
			break;
		st->wakeups++;
	}
	return 0;
}

static void storm_job(struct worker *w, void *arg)
{
	struct storm *st = arg;
	long cs0 = thread_nvcsw();
	uint64_t e0 = bench_sysc_read(&w->enter), q0 = bench_sysc_read(&w->waits);
	int res = 0, r;

	st->wakeups = st->values = 0;
	if (st->method == M_AF) {
		r = af_loop_run(st->loop, storm_waiter, st, &res);
		if (r < 0 || res < 0)
			st->err = r < 0 ? r : res;
	} else {
		atomic_store(&st->rx_ready, true);
		while (!atomic_load(&st->stop)) {
			uint64_t v;

			if (read(st->efd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
				st->err = -errno;
				break;
			}
			if (atomic_load(&st->stop))
				break;
			st->wakeups++;
			st->values += v;
		}
	}
	st->sleeps = (uint64_t)(thread_nvcsw() - cs0);
	st->enters = bench_sysc_delta(&w->enter, e0, bench_sysc_read(&w->enter));
	st->enters_counted = bench_sysc_ok(&w->enter);
	st->waits = bench_sysc_delta(&w->waits, q0, bench_sysc_read(&w->waits));
	st->waits_counted = bench_sysc_ok(&w->waits);
}

struct stormres {
	/* Timed slices, no counters open. */
	double *sets_s, *wakes_s;    /* per slice */
	size_t nslices;
	uint64_t sets, wakeups, sleeps, values;
	double seconds;
	struct bench_pct sets_pct, wakes_pct;
	/* The counting slice: tracepoints on, so slower, but it shows where
	 * the system calls go. */
	bool counted;
	uint64_t c_sets, c_wakeups, c_writes, c_enters, c_waits, c_sleeps;
};

static int storm_slice(struct storm *st, struct worker *w, const struct opts *o,
		       struct stormres *res)
{
	struct setter *s = calloc(o->threads, sizeof(*s));
	struct timespec ts = {
		.tv_sec = (time_t)(o->slice_ms / 1000),
		.tv_nsec = (long)(o->slice_ms % 1000) * 1000000L,
	};
	uint64_t t0, t1, sets = 0, writes = 0, one = 1;
	bool counted = true;
	size_t started = 0;
	int r = 0;

	if (!s)
		return -1;
	atomic_store(&st->nready, 0);
	atomic_store(&st->go, false);
	atomic_store(&st->stop, false);
	atomic_store(&st->rx_ready, false);
	st->err = 0;
	af_flag_clear(&st->flag);
	worker_post(w, storm_job, st);
	for (; started < o->threads; started++) {
		s[started].st = st;
		if (pthread_create(&s[started].th, NULL, setter_main, &s[started]) != 0) {
			fprintf(stderr, "bench-wake: pthread_create failed\n");
			r = -1;
			break;
		}
	}
	while (r == 0 && (atomic_load(&st->nready) < o->threads || !atomic_load(&st->rx_ready)))
		sched_yield();
	t0 = bench_now_ns();
	atomic_store(&st->go, true);
	if (r == 0)
		nanosleep(&ts, NULL);
	atomic_store(&st->stop, true);
	t1 = bench_now_ns();
	for (size_t i = 0; i < started; i++) {
		pthread_join(s[i].th, NULL);
		sets += s[i].sets;
		writes += s[i].writes;
		counted = counted && s[i].writes_counted;
	}
	/* The receiver saw stop or is blocked: one more wake-up ends it. */
	if (st->method == M_AF)
		af_flag_set(&st->flag);
	else if (write(st->efd, &one, sizeof(one)) < 0)
		r = -1;
	worker_wait(w);
	free(s);
	if (st->err < 0) {
		fprintf(stderr, "bench-wake: storm receiver: %s\n", af_strerror(st->err));
		return -1;
	}
	if (r < 0)
		return -1;
	if (st->count) {
		res->counted = counted && st->enters_counted && st->waits_counted;
		res->c_sets = sets;
		res->c_wakeups = st->wakeups;
		res->c_writes = st->method == M_AF ? writes : sets;
		res->c_enters = st->enters;
		res->c_waits = st->waits;
		res->c_sleeps = st->sleeps;
		return 0;
	}
	res->sets_s[res->nslices] = (double)sets * 1e9 / (double)(t1 - t0);
	res->wakes_s[res->nslices] = (double)st->wakeups * 1e9 / (double)(t1 - t0);
	res->nslices++;
	res->sets += sets;
	res->wakeups += st->wakeups;
	res->values += st->values;
	res->sleeps += st->sleeps;
	res->seconds += (double)(t1 - t0) / 1e9;
	return 0;
}

static int run_storm(struct af_loop *loop, struct worker *w, const struct opts *o,
		     struct stormres res[2])
{
	struct storm st;
	size_t slices = (size_t)((o->storm_ms + o->slice_ms - 1) / o->slice_ms);
	int r = -1;

	memset(&st, 0, sizeof(st));
	memset(res, 0, 2 * sizeof(*res));
	st.loop = loop;
	st.efd = eventfd(0, EFD_CLOEXEC);
	if (st.efd < 0) {
		perror("bench-wake: eventfd");
		return -1;
	}
	if (af_flag_init(&st.flag, loop) < 0)
		goto out;
	for (int m = 0; m < 2; m++) {
		res[m].sets_s = calloc(slices, sizeof(double));
		res[m].wakes_s = calloc(slices, sizeof(double));
		if (!res[m].sets_s || !res[m].wakes_s)
			goto out_flag;
	}
	/* Alternate af / eventfd slices, swapping which goes first in every
	 * pair, so drifts of the machine's load hit both. */
	for (size_t k = 0; k < slices; k++) {
		for (int j = 0; j < 2; j++) {
			int m = (int)((k + (size_t)j) % 2);

			st.method = m == 0 ? M_AF : M_EVENTFD;
			if (storm_slice(&st, w, o, &res[m]) < 0)
				goto out_flag;
		}
	}
	for (int m = 0; m < 2; m++) {
		res[m].sets_pct = bench_pct_of(res[m].sets_s, res[m].nslices);
		res[m].wakes_pct = bench_pct_of(res[m].wakes_s, res[m].nslices);
	}
	/* One more slice of each with the counters open. */
	worker_counters(w, true);
	st.count = true;
	for (int m = 0; m < 2; m++) {
		st.method = m == 0 ? M_AF : M_EVENTFD;
		if (storm_slice(&st, w, o, &res[m]) < 0) {
			worker_counters(w, false);
			goto out_flag;
		}
	}
	worker_counters(w, false);
	r = 0;
out_flag:
	af_flag_destroy(&st.flag);
	if (r < 0)
		for (int m = 0; m < 2; m++) {
			free(res[m].sets_s);
			free(res[m].wakes_s);
		}
out:
	close(st.efd);
	return r;
}

/* ---- output ---------------------------------------------------------------- */

static void features_str(unsigned f, char *buf, size_t len)
{
	unsigned ring = AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER | AF_FEATURE_DEFER_TASKRUN;

	bool epoll = f & AF_FEATURE_BACKEND_EPOLL;

	snprintf(buf, len, "%s%s%s%s%s%s", epoll ? "epoll backend, " : "io_uring backend, ",
		 epoll || (f & ring) ? "" : "plain ring, ",
		 (f & AF_FEATURE_COOP_TASKRUN) ? "COOP_TASKRUN " : "",
		 (f & AF_FEATURE_SINGLE_ISSUER) ? "SINGLE_ISSUER " : "",
		 (f & AF_FEATURE_DEFER_TASKRUN) ? "DEFER_TASKRUN " : "",
		 (f & AF_FEATURE_ASM_SWITCH) ? "ASM_SWITCH" : "UCONTEXT_SWITCH");
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : -1;
}

static void text_pingmode(const struct pingmode *pm, const struct opts *o)
{
	const struct mstats *af = &pm->st[M_AF];

	printf("\n%s mode: %llu pings per mechanism, interleaved; wake-up latency in ns\n",
	       pm->name, (unsigned long long)o->rounds);
	if (!strcmp(pm->name, "sleep"))
		printf("  (the setter sleeps %llu us, then sets)\n", (unsigned long long)o->gap_us);
	if (!strcmp(pm->name, "spin"))
		printf("  (af_loop_opts.spin_ns = %llu us; the setter sets 1-3 us after the "
		       "waiter is ready)\n", (unsigned long long)o->spin_us);
	printf("  %-9s %8s %8s %8s %8s %8s   %s\n", "", "min", "p50", "p90", "p99", "max",
	       "syscalls/ping setter+waiter");
	for (int j = 0; j < pm->nm; j++) {
		const struct mstats *s = &pm->st[pm->methods[j]];

		printf("  %-9s %8.0f %8.0f %8.0f %8.0f %8.0f   ", method_name[pm->methods[j]],
		       s->pct.min, s->pct.p50, s->pct.p90, s->pct.p99, s->pct.max);
		if (pm->counted)
			printf("%.2f + %.2f\n", s->ssys, s->wsys);
		else
			printf("n/a\n");
	}
	for (int j = 0; j < pm->nm; j++) {
		const struct mstats *s = &pm->st[pm->methods[j]];

		if (pm->methods[j] == M_AF)
			continue;
		printf("  ratio af_flag/%-8s p50 %.2fx  p90 %.2fx  p99 %.2fx\n",
		       method_name[pm->methods[j]], ratio(af->pct.p50, s->pct.p50),
		       ratio(af->pct.p90, s->pct.p90), ratio(af->pct.p99, s->pct.p99));
	}
	if (af->excluded)
		printf("  (%zu af_flag pings left out: the wait returned before the loop took a turn)\n",
		       af->excluded);
	/* Per ping, because a shared machine takes the loop's CPU away: the
	 * share of wall time says as much about the neighbours. */
	printf("  loop thread CPU: %.0f ns per ping (%.0f%% of the pass's wall time)\n",
	       pm->cpu_per_ping, 100 * pm->cpu_share);
}

static void json_pingmode(struct bench_json *j, const struct pingmode *pm, const struct opts *o)
{
	const struct mstats *af = &pm->st[M_AF];

	bench_json_obj(j, pm->name);
	bench_json_int(j, "rounds", (long long)o->rounds);
	bench_json_num(j, "loop_cpu_share", pm->cpu_share);
	bench_json_num(j, "loop_cpu_ns_per_ping", pm->cpu_per_ping);
	if (!strcmp(pm->name, "spin"))
		bench_json_int(j, "spin_us", (long long)o->spin_us);
	if (!strcmp(pm->name, "sleep"))
		bench_json_int(j, "gap_us", (long long)o->gap_us);
	bench_json_obj(j, "results");
	for (int k = 0; k < pm->nm; k++) {
		const struct mstats *s = &pm->st[pm->methods[k]];

		bench_json_obj(j, method_name[pm->methods[k]]);
		bench_json_pct(j, "latency_ns", &s->pct);
		bench_json_int(j, "excluded", (long long)s->excluded);
		if (pm->counted) {
			bench_json_num(j, "syscalls_setter_per_ping", s->ssys);
			bench_json_num(j, "syscalls_waiter_per_ping", s->wsys);
		} else {
			bench_json_null(j, "syscalls_setter_per_ping");
			bench_json_null(j, "syscalls_waiter_per_ping");
		}
		bench_json_obj_end(j);
	}
	bench_json_obj_end(j);
	bench_json_obj(j, "ratios");
	for (int k = 0; k < pm->nm; k++) {
		const struct mstats *s = &pm->st[pm->methods[k]];
		char key[32];

		if (pm->methods[k] == M_AF)
			continue;
		snprintf(key, sizeof(key), "af_flag_over_%s", method_name[pm->methods[k]]);
		bench_json_obj(j, key);
		bench_json_num(j, "p50", ratio(af->pct.p50, s->pct.p50));
		bench_json_num(j, "p90", ratio(af->pct.p90, s->pct.p90));
		bench_json_num(j, "p99", ratio(af->pct.p99, s->pct.p99));
		bench_json_obj_end(j);
	}
	bench_json_obj_end(j);
	bench_json_obj_end(j);
}

static void text_storm(const struct stormres res[2], const struct opts *o)
{
	const struct stormres *a = &res[0], *e = &res[1];

	printf("\nstorm mode: %llu setter threads, %zu slices of %llu ms per mechanism, alternating\n",
	       (unsigned long long)o->threads, a->nslices, (unsigned long long)o->slice_ms);
	printf("  af_flag: sets/s    p50 %9.3g (p10 %9.3g, p90 %9.3g)\n", a->sets_pct.p50,
	       a->sets_pct.p10, a->sets_pct.p90);
	printf("           wakes/s   p50 %9.3g (p10 %9.3g, p90 %9.3g)\n", a->wakes_pct.p50,
	       a->wakes_pct.p10, a->wakes_pct.p90);
	printf("           %.0f sets per wake-up; the loop blocked %.3g times/s\n",
	       ratio((double)a->sets, (double)a->wakeups), (double)a->sleeps / a->seconds);
	printf("  eventfd: writes/s  p50 %9.3g (p10 %9.3g, p90 %9.3g)\n", e->sets_pct.p50,
	       e->sets_pct.p10, e->sets_pct.p90);
	printf("           reads/s   p50 %9.3g (p10 %9.3g, p90 %9.3g)\n", e->wakes_pct.p50,
	       e->wakes_pct.p10, e->wakes_pct.p90);
	printf("           %.1f writes per read; the reader blocked %.3g times/s\n",
	       ratio((double)e->values, (double)e->wakeups), (double)e->sleeps / e->seconds);
	printf("  ratio af_flag sets/s / eventfd writes/s: p50 %.2fx; wake-ups/s / reads/s: p50 %.2fx\n",
	       ratio(a->sets_pct.p50, e->sets_pct.p50), ratio(a->wakes_pct.p50, e->wakes_pct.p50));
	if (!a->counted) {
		printf("  (system calls not counted)\n");
		return;
	}
	printf("  counting slice (tracepoints on): %llu sets, %llu wake-ups, %llu eventfd writes\n",
	       (unsigned long long)a->c_sets, (unsigned long long)a->c_wakeups,
	       (unsigned long long)a->c_writes);
	printf("           loop: %llu io_uring_enter, %llu of them waits, %llu blocked\n",
	       (unsigned long long)a->c_enters, (unsigned long long)a->c_waits,
	       (unsigned long long)a->c_sleeps);
	printf("           eventfd writes per loop wait %.3f, per wake-up %.3f, per set %.5f\n",
	       ratio((double)a->c_writes, (double)a->c_waits),
	       ratio((double)a->c_writes, (double)a->c_wakeups),
	       ratio((double)a->c_writes, (double)a->c_sets));
}

static void json_storm(struct bench_json *j, const struct stormres res[2], const struct opts *o)
{
	const struct stormres *a = &res[0], *e = &res[1];

	bench_json_obj(j, "storm");
	bench_json_int(j, "threads", (long long)o->threads);
	bench_json_int(j, "slice_ms", (long long)o->slice_ms);
	bench_json_int(j, "slices", (long long)a->nslices);
	bench_json_obj(j, "af_flag");
	bench_json_num(j, "seconds", a->seconds);
	bench_json_pct(j, "sets_per_s", &a->sets_pct);
	bench_json_pct(j, "wakeups_per_s", &a->wakes_pct);
	bench_json_int(j, "sets", (long long)a->sets);
	bench_json_int(j, "wakeups", (long long)a->wakeups);
	bench_json_int(j, "loop_blocked", (long long)a->sleeps);
	bench_json_obj(j, "counting_slice");
	if (a->counted) {
		bench_json_int(j, "sets", (long long)a->c_sets);
		bench_json_int(j, "wakeups", (long long)a->c_wakeups);
		bench_json_int(j, "eventfd_writes", (long long)a->c_writes);
		bench_json_int(j, "io_uring_enter", (long long)a->c_enters);
		bench_json_int(j, "loop_waits", (long long)a->c_waits);
		bench_json_int(j, "loop_blocked", (long long)a->c_sleeps);
		bench_json_num(j, "eventfd_writes_per_loop_wait",
			       ratio((double)a->c_writes, (double)a->c_waits));
	}
	bench_json_obj_end(j);
	bench_json_obj_end(j);
	bench_json_obj(j, "eventfd");
	bench_json_num(j, "seconds", e->seconds);
	bench_json_pct(j, "writes_per_s", &e->sets_pct);
	bench_json_pct(j, "reads_per_s", &e->wakes_pct);
	bench_json_int(j, "writes", (long long)e->sets);
	bench_json_int(j, "reads", (long long)e->wakeups);
	bench_json_int(j, "reader_blocked", (long long)e->sleeps);
	bench_json_obj_end(j);
	bench_json_obj(j, "ratios");
	bench_json_num(j, "af_sets_over_eventfd_writes_p50", ratio(a->sets_pct.p50, e->sets_pct.p50));
	bench_json_num(j, "af_wakeups_over_eventfd_reads_p50",
		       ratio(a->wakes_pct.p50, e->wakes_pct.p50));
	bench_json_obj_end(j);
	bench_json_obj_end(j);
}

static bool pingmode_sane(const struct pingmode *pm)
{
	bool ok = true;

	for (int j = 0; j < pm->nm; j++) {
		const struct mstats *s = &pm->st[pm->methods[j]];

		/* A negative latency would mean the clock or the protocol is
		 * broken; an empty sample set that every ping was left out. */
		if (s->pct.n == 0 || s->pct.min < 0 || s->pct.max > 1e10) {
			fprintf(stderr, "bench-wake: %s/%s: implausible samples (n %zu, min %g, max %g)\n",
				pm->name, method_name[pm->methods[j]], s->pct.n, s->pct.min,
				s->pct.max);
			ok = false;
		}
	}
	return ok;
}

/* ---- main ---------------------------------------------------------------- */

static void free_spin_loop_job(struct worker *w, void *arg)
{
	(void)w;
	af_loop_free(arg);
}

/* Spin mode: the same pings on a second loop made with spin_ns, which the
 * worker runs in place of the first; p->flag moves to it and back. */
static int run_spinmode(struct ping *p, struct worker *w, struct pingmode *pm,
			const struct opts *o)
{
	struct af_loop *main_loop = p->loop, *spin_loop;
	int r = af_loop_new(&spin_loop, &(struct af_loop_opts){
		.flags = o->basic_ring ? AF_LOOP_BASIC_RING : 0,
		.spin_ns = o->spin_us * 1000u });

	if (r < 0) {
		fprintf(stderr, "bench-wake: af_loop_new (spin): %s\n", af_strerror(r));
		return -1;
	}
	af_flag_destroy(&p->flag);
	r = af_flag_init(&p->flag, spin_loop);
	if (r == 0) {
		p->loop = spin_loop;
		r = run_pingmode(p, w, pm, o);
		af_flag_destroy(&p->flag);
	}
	p->loop = main_loop;
	if (af_flag_init(&p->flag, main_loop) < 0)
		r = -1;
	worker_post(w, free_spin_loop_job, spin_loop);
	worker_wait(w);
	return r < 0 ? -1 : 0;
}

static void free_loop_job(struct worker *w, void *arg)
{
	if (w->ring_err == 0)
		io_uring_queue_exit(&w->ring);
	af_loop_free(arg);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct af_loop *loop;
	struct worker w;
	struct ping p;
	struct bench_sysc probe;
	char why[160];
	struct pingmode pm[3] = {
		{ .name = "sleep", .methods = { M_AF, M_EVENTFD, M_CONDVAR, M_URING }, .nm = 4 },
		{ .name = "busy", .methods = { M_AF, M_SPIN }, .nm = 2 },
		{ .name = "spin", .methods = { M_AF, M_SPIN }, .nm = 2 },
	};
	struct stormres storm[2];
	char feat[96];
	bool have_storm = false;
	int r, status = 1;

	if (parse(argc, argv, &o) < 0)
		return 2;
	r = af_loop_new(&loop, &(struct af_loop_opts){
		.flags = o.basic_ring ? AF_LOOP_BASIC_RING : 0 });
	if (r < 0) {
		fprintf(stderr, "bench-wake: af_loop_new: %s\n", af_strerror(r));
		return r == -EPERM || r == -ENOSYS ? 77 : 1;
	}
	features_str(af_loop_features(loop), feat, sizeof(feat));

	memset(&w, 0, sizeof(w));
	w.ring_err = 1;
	w.sys.fd = w.enter.fd = w.waits.fd = -1;
	r = bench_worker_start(&w.bw, o.pin ? 1 : -1);
	if (r < 0) {
		fprintf(stderr, "bench-wake: the worker thread: %s\n", strerror(-r));
		af_loop_free(loop);
		return 1;
	}
	if (o.pin)
		pin_to(pthread_self(), 0);
	/* Only to say whether system calls can be counted; the counting
	 * passes open their own counters. */
	bench_sysc_open(&probe, "raw_syscalls/sys_enter");
	snprintf(why, sizeof(why), "%s", bench_sysc_why(&probe));
	bench_sysc_close(&probe);

	memset(&p, 0, sizeof(p));
	p.loop = loop;
	p.gap_ns = o.gap_us * 1000u;
	p.efd = eventfd(0, EFD_CLOEXEC);
	p.uefd = eventfd(0, EFD_CLOEXEC);
	p.ring_flags = bench_ring_flags(af_loop_features(loop));
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	if (p.efd < 0 || p.uefd < 0 || af_flag_init(&p.flag, loop) < 0) {
		fprintf(stderr, "bench-wake: eventfd or af_flag_init failed\n");
		goto out_ping;
	}

	if ((o.modes & MODE_SLEEP) && run_pingmode(&p, &w, &pm[0], &o) < 0)
		goto out_flag;
	if ((o.modes & MODE_BUSY) && run_pingmode(&p, &w, &pm[1], &o) < 0)
		goto out_flag;
	if ((o.modes & MODE_SPIN) && run_spinmode(&p, &w, &pm[2], &o) < 0)
		goto out_flag;
	if (o.modes & MODE_STORM) {
		if (run_storm(loop, &w, &o, storm) < 0)
			goto out_flag;
		have_storm = true;
	}

	if (o.json) {
		struct bench_json j;

		bench_json_begin(&j, stdout);
		bench_json_str(&j, "bench", "wake");
		bench_json_str(&j, "version", af_version());
		bench_json_str(&j, "features", feat);
	bench_json_str(&j, "backend", strncmp(feat, "epoll", 5) == 0 ? "epoll" : "io_uring");
		bench_json_bool(&j, "pinned", o.pin);
		bench_json_str(&j, "syscall_counting", why);
		if (o.modes & MODE_SLEEP)
			json_pingmode(&j, &pm[0], &o);
		if (o.modes & MODE_BUSY)
			json_pingmode(&j, &pm[1], &o);
		if (o.modes & MODE_SPIN)
			json_pingmode(&j, &pm[2], &o);
		if (have_storm)
			json_storm(&j, storm, &o);
		bench_json_end(&j);
	} else {
		printf("bench-wake: libasyncflag %s, loop features: %s%s\n", af_version(), feat,
		       o.pin ? ", setter pinned to CPU 0, loop to CPU 1" : "");
		if (strcmp(why, "ok"))
			printf("system calls not counted: %s\n", why);
		if (o.modes & MODE_SLEEP)
			text_pingmode(&pm[0], &o);
		if (o.modes & MODE_BUSY)
			text_pingmode(&pm[1], &o);
		if (o.modes & MODE_SPIN)
			text_pingmode(&pm[2], &o);
		if (have_storm)
			text_storm(storm, &o);
	}

	status = 0;
	if ((o.modes & MODE_SLEEP) && !pingmode_sane(&pm[0]))
		status = 1;
	if ((o.modes & MODE_BUSY) && !pingmode_sane(&pm[1]))
		status = 1;
	if ((o.modes & MODE_SPIN) && !pingmode_sane(&pm[2]))
		status = 1;
	if (have_storm && (storm[0].sets == 0 || storm[1].sets == 0 || storm[1].wakeups == 0)) {
		fprintf(stderr, "bench-wake: storm: no sets or no wake-ups recorded\n");
		status = 1;
	}

out_flag:
	af_flag_destroy(&p.flag);
out_ping:
	if (have_storm)
		for (int m = 0; m < 2; m++) {
			free(storm[m].sets_s);
			free(storm[m].wakes_s);
		}
	if (p.efd >= 0)
		close(p.efd);
	if (p.uefd >= 0)
		close(p.uefd);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	/* The loop is bound to the worker thread: free it there. */
	worker_post(&w, free_loop_job, loop);
	worker_wait(&w);
	bench_worker_stop(&w.bw);
	return status;
}
