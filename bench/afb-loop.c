/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: what happens inside one loop (scenarios event, switch and
 * fanout). No system call is on these paths, so they are compared with
 * glibc's swapcontext, timed on the same thread from inside the same task,
 * sample by sample in a rotating order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "afb.h"
#include "asyncflag.h"

#define UC_STACK (64 * 1024)
#define RT_BATCH 64           /* round trips per switch sample: far above the clock's cost */

enum { P_AF, P_UC };

struct inloop {
	const struct afb_opts *o;
	struct afb_result *r;
	struct af_event ev, ack;
	ucontext_t ua, ub;
	uint64_t t1;
	bool rt;                  /* switch scenario: round trips, not one hop */
	bool stop;
};

/* The swapcontext partner: answers each switch by switching back.
 * makecontext() passes ints only, so the state comes in two halves. */
static void uc_partner(unsigned hi, unsigned lo)
{
	struct inloop *s = (struct inloop *)(uintptr_t)(((uint64_t)hi << 32) | lo);

	for (;;) {
		if (!s->rt)
			s->t1 = bench_now_ns();
		swapcontext(&s->ub, &s->ua);
	}
}

/* The Event partner: wakes on ev, stamps, hands back through ack. */
static int af_partner(void *arg)
{
	struct inloop *s = arg;

	for (;;) {
		int r = af_event_wait(&s->ev);

		if (r < 0)
			return r;
		/* A round trip is timed by its sender alone: a clock read
		 * here would be a third of it. */
		if (!s->rt)
			s->t1 = bench_now_ns();
		af_event_clear(&s->ev);
		if (s->stop)
			return 0;
		af_event_set(&s->ack);
	}
}

static double sample_af(struct inloop *s)
{
	uint64_t t0 = bench_now_ns();
	int k, n = s->rt ? RT_BATCH : 1;

	for (k = 0; k < n; k++) {
		af_event_set(&s->ev);
		if (af_event_wait(&s->ack) < 0)
			return -1;
		af_event_clear(&s->ack);
	}
	if (!s->rt)
		return (double)(int64_t)(s->t1 - t0);
	return (double)(bench_now_ns() - t0) / n;
}

static double sample_uc(struct inloop *s)
{
	uint64_t t0 = bench_now_ns();
	int k, n = s->rt ? RT_BATCH : 1;

	for (k = 0; k < n; k++)
		swapcontext(&s->ua, &s->ub);
	if (!s->rt)
		return (double)(int64_t)(s->t1 - t0);
	return (double)(bench_now_ns() - t0) / n;
}

static int inloop_main(void *arg)
{
	struct inloop *s = arg;
	const uint8_t paths[] = { P_AF, P_UC };
	size_t rounds = afb_rounds(s->o, s->rt ? 20000 : 200000), i;
	uint8_t *sched = bench_sched_make(paths, 2, rounds + 100);
	struct afb_dist *d = s->r->d;
	uint64_t start;
	struct af_task *t;
	void *stack = malloc(UC_STACK);
	int r;

	for (int k = 0; k < 2; k++)
		d[k].ns = malloc(rounds * sizeof(double));
	if (!sched || !stack || !d[0].ns || !d[1].ns)
		return -ENOMEM;
	af_event_init(&s->ev);
	af_event_init(&s->ack);
	r = af_task_spawn(&t, af_partner, s);
	if (r < 0)
		return r;
	getcontext(&s->ub);
	s->ub.uc_stack.ss_sp = stack;
	s->ub.uc_stack.ss_size = UC_STACK;
	s->ub.uc_link = NULL;
	makecontext(&s->ub, (void (*)(void))uc_partner, 2, (unsigned)((uint64_t)(uintptr_t)s >> 32),
		    (unsigned)(uintptr_t)s);
	/* 100 untimed samples first: the partner's first run faults its
	 * stack in. */
	for (i = 0; i < 100; i++)
		sched[i] == P_AF ? sample_af(s) : sample_uc(s);
	start = bench_now_ns();
	for (i = 0; i < 2 * rounds; i++) {
		int p = sched[100 + i];
		double v = p == P_AF ? sample_af(s) : sample_uc(s);

		if (v < 0)
			break;
		d[p].ns[d[p].n++] = v;
		if ((i & 1023) == 0)
			afb_progress(afb_scenario_name[s->r->id], s->o->iterations
				     ? (double)i / (2.0 * (double)rounds)
				     : (double)(bench_now_ns() - start) / (s->o->duration_s * 1e9));
		if (!s->o->iterations && (i & 1) && afb_time_up(s->o, start))
			break;
	}
	s->stop = true;
	af_event_set(&s->ev);
	r = af_task_join(t, NULL);
	free(stack);
	free(sched);
	return r;
}

static int run_one(struct afb_result *r, const struct afb_opts *o, bool rt)
{
	struct inloop s;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.r = r;
	s.rt = rt;
	r->baseline = 1;
	if (rt) {
		afb_dist_add(r, "af_event", "a round trip between two tasks through two Events");
		afb_dist_add(r, "swapcontext", "a round trip between two ucontexts with glibc swapcontext");
		snprintf(r->note, sizeof(r->note),
			 "ns per round trip, each sample the mean of %d; an af round trip is "
			 "two hops, each a switch straight to the other task", RT_BATCH);
	} else {
		afb_dist_add(r, "af_event", "af_event_set() -> the waiting task runs, same loop");
		afb_dist_add(r, "swapcontext", "one glibc swapcontext hop to another context");
		snprintf(r->note, sizeof(r->note),
			 "the setter's own af_event_wait() and a turn of the loop are on the path");
	}
	return afb_run_scenario(r, inloop_main, &s);
}

/* ---- event: the libuv baseline ------------------------------------------------ */

#if HAVE_LIBUV
#include <uv.h>

/* libuv has no Event; the nearest thing to "wake another coroutine in this
 * loop" is one callback making another runnable: an idle callback that
 * starts a second idle handle, which runs on the next turn of uv_run(). A
 * loop with no I/O watchers makes no system call on that path either (its
 * poll phase returns at once), so both sides are pure user-space hops. */
struct uv_hop {
	uv_idle_t a, b;
	uint64_t t0, t1;
};

static void uv_hop_b(uv_idle_t *h)
{
	struct uv_hop *u = h->data;

	u->t1 = bench_now_ns();
	uv_idle_stop(h);
}

static void uv_hop_a(uv_idle_t *h)
{
	struct uv_hop *u = h->data;

	u->t0 = bench_now_ns();
	uv_idle_stop(h);
	uv_idle_start(&u->b, uv_hop_b);
}

/* Sampled after the af and swapcontext samples, in a run of its own on the
 * same thread (uv_run() returns between hops, from inside no task). */
static void event_uv_baseline(struct afb_result *r, const struct afb_opts *o)
{
	struct afb_dist *d = afb_dist_add(r, "uv_idle", "libuv: an idle callback starts another "
					  "idle handle, which runs on uv_run()'s next turn");
	size_t rounds = afb_rounds(o, 200000);
	struct uv_hop u;
	uv_loop_t loop;
	uint64_t start;

	d->ns = malloc(rounds * sizeof(double));
	if (!d->ns || uv_loop_init(&loop) != 0) {
		afb_dist_unavailable(d, "%s", d->ns ? "uv_loop_init failed" : "out of memory");
		return;
	}
	uv_idle_init(&loop, &u.a);
	uv_idle_init(&loop, &u.b);
	u.a.data = u.b.data = &u;
	start = bench_now_ns();
	for (size_t i = 0; i < rounds + 100; i++) {
		uv_idle_start(&u.a, uv_hop_a);
		uv_run(&loop, UV_RUN_DEFAULT);
		if (i >= 100)   /* the first hops warm the caches up, as for af */
			d->ns[d->n++] = (double)(int64_t)(u.t1 - u.t0);
		if (!o->iterations && (i & 1) && afb_time_up(o, start))
			break;
	}
	uv_close((uv_handle_t *)&u.a, NULL);
	uv_close((uv_handle_t *)&u.b, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
}
#else
static void event_uv_baseline(struct afb_result *r, const struct afb_opts *o)
{
	(void)o;
	afb_dist_unavailable(afb_dist_add(r, "uv_idle", "libuv idle-handle hop"),
			     "built without libuv (Debian: libuv1-dev)");
}
#endif

int afb_run_loop(struct afb_result *r, const struct afb_opts *o)
{
	if ((o->scenarios & (1u << AFB_EVENT)) && run_one(&r[AFB_EVENT], o, false) < 0)
		return -1;
	if ((o->scenarios & (1u << AFB_EVENT)) && r[AFB_EVENT].ran)
		event_uv_baseline(&r[AFB_EVENT], o);
	if ((o->scenarios & (1u << AFB_SWITCH)) && run_one(&r[AFB_SWITCH], o, true) < 0)
		return -1;
	return 0;
}

/* ---- fan-out ------------------------------------------------------------------ */

#define FAN_ROUNDS 5 /* fan-outs per N; the median is reported */

struct fanout {
	struct af_event ev[2];
	uint64_t parked, woken, first;
	bool finish;
	struct afb_fanout *f;
};

/* Wakes on ev[0], ev[1], ev[0]... and parks again at once: the time per
 * waiter is the wake-up, not the task's exit (which unmaps its stack).
 * Only the first waiter of a fan-out reads the clock: the vDSO's read is
 * ordered by an lfence, which waits for every load in flight, and one per
 * waiter both added its ~25 ns and stopped the loop's look-ahead loads of
 * the next waiters' frames from overlapping (it doubled the figure). */
static int fan_waiter(void *arg)
{
	struct fanout *s = arg;

	s->parked++;
	for (unsigned k = 0;; k++) {
		int r = af_event_wait(&s->ev[k & 1]);

		if (r < 0 || s->finish)
			return r;
		if (!s->first)
			s->first = bench_now_ns();
		s->woken++;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* FAN_ROUNDS fan-outs over the same parked waiters; the median round's
 * figures. Every round wakes cold tasks: they are many, and each round
 * touches them all. */
static void fan_rounds(struct fanout *s, struct afb_fanout *f)
{
	double per[FAN_ROUNDS], first[FAN_ROUNDS], sorted[FAN_ROUNDS], med;

	for (unsigned k = 0; k < FAN_ROUNDS; k++) {
		uint64_t t0, t1;

		af_event_clear(&s->ev[(k + 1) & 1]);
		s->woken = 0;
		s->first = 0;
		t0 = bench_now_ns();
		af_event_set(&s->ev[k & 1]);
		/* Behind every woken waiter in the FIFO run queue: the first
		 * return from af_yield() comes once each has run and parked
		 * again, one hop after the last. */
		while (s->woken < s->parked)
			af_yield();
		t1 = bench_now_ns();
		per[k] = (double)(t1 - t0) / (double)s->parked;
		first[k] = (double)(s->first - t0);
	}
	memcpy(sorted, per, sizeof(sorted));
	qsort(sorted, FAN_ROUNDS, sizeof(double), cmp_double);
	med = sorted[FAN_ROUNDS / 2];
	for (unsigned k = 0; k < FAN_ROUNDS; k++) {
		if (per[k] == med) {
			f->ns_per_waiter = per[k];
			f->first_ns = first[k];
			break;
		}
	}
}

static long rss_bytes(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

static int fan_main(void *arg)
{
	struct fanout *s = arg;
	struct afb_fanout *f = s->f;
	struct af_task_opts to = { .stack_size = 16 * 1024 };
	struct af_task **t = malloc(f->n * sizeof(*t));
	uint64_t spawned = 0, t0;
	long rss0 = rss_bytes(), rss1;

	if (!t)
		return -ENOMEM;
	af_event_init(&s->ev[0]);
	af_event_init(&s->ev[1]);
	t0 = bench_now_ns();
	for (; spawned < f->n; spawned++) {
		int r = af_task_spawn_opts(&t[spawned], fan_waiter, s, &to);

		if (r < 0) {
			f->err = r;
			break;
		}
	}
	f->spawn_ns = spawned ? (double)(bench_now_ns() - t0) / (double)spawned : 0;
	/* The run queue is FIFO: after one yield every new task has run to
	 * its wait, or ended at its first run if it could not start. */
	af_yield();
	af_yield();
	rss1 = rss_bytes();
	f->parked = s->parked;
	f->rss_per_task = s->parked && rss0 >= 0 ? (double)(rss1 - rss0) / (double)s->parked : 0;
	if (s->parked)
		fan_rounds(s, f);
	s->finish = true;
	af_event_set(&s->ev[0]);
	af_event_set(&s->ev[1]);
	for (uint64_t i = 0; i < spawned; i++) {
		int res = 0;

		af_task_join(t[i], &res);
		if (res < 0 && !f->err)
			f->err = res;
	}
	free(t);
	return 0;
}

/* MemAvailable from /proc/meminfo, in bytes; -1 when unknown. */
static double mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	double kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* The next size would need more than half the memory that is free: say so
 * rather than push the machine into swap or the OOM killer. */
static bool too_big(struct afb_result *r, uint64_t n)
{
	double per = r->nfo ? r->fo[r->nfo - 1].rss_per_task : 0, avail = mem_available();
	size_t at;

	if (per <= 0 || avail <= 0 || (double)n * per <= avail / 2)
		return false;
	at = strlen(r->note);
	snprintf(r->note + at, sizeof(r->note) - at,
		 "; stopped before N = %llu: it needs about %.0f MB resident, more than half of "
		 "the %.0f MB available", (unsigned long long)n, (double)n * per / 1e6, avail / 1e6);
	return true;
}

int afb_run_fanout(struct afb_result *r, const struct afb_opts *o)
{
	r->baseline = -1;
	snprintf(r->note, sizeof(r->note),
		 "one Event, N waiters with 16 KiB stacks: set -> every waiter has run and parked "
		 "again, per waiter; "
		 "the median of %d fan-outs", FAN_ROUNDS);
	for (uint64_t n = 100; n <= o->fanout_max && r->nfo < AFB_MAX_FANOUT; n *= 10) {
		struct afb_fanout *f;
		struct fanout s;
		int err;

		if (too_big(r, n))
			break;
		f = &r->fo[r->nfo++];
		afb_progress("fanout", (double)(r->nfo - 1) / 5.0);
		memset(&s, 0, sizeof(s));
		memset(f, 0, sizeof(*f));
		f->n = n;
		s.f = f;
		if (afb_run_main(r, fan_main, &s, &err))
			return 0;
		if (err < 0)
			f->err = err;
		if (f->err || f->parked < n)
			break;
		r->fanout_largest_ok = n;
	}
	r->ran = true;
	return 0;
}
