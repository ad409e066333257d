/* SPDX-License-Identifier: MIT */
/*
 * bench-switch: what one coroutine context switch costs.
 *
 * Four ping-pongs run side by side in one process, interleaved round by
 * round (the order rotates and reverses) so that whatever the machine is
 * doing hits all four alike:
 *   (a) swapcontext between two ucontexts: the baseline. glibc's
 *       swapcontext saves and restores the signal mask, one rt_sigprocmask
 *       system call per switch.
 *   (b) af__ctx_switch between two contexts made with af__ctx_make: the
 *       library's own switch, whichever one it was built with.
 *   (c) two tasks yielding to each other with af_yield(): each hop goes
 *       through the run queue and switches straight to the other task.
 *   (d) two tasks in an Event ping-pong (set the other's event, wait on
 *       one's own, clear it): issue 10's switch row. A round trip is two
 *       hops, each one switch.
 * And one that switches nothing:
 *   (e) af_event_wait() on an Event already set, three calls deep, against
 *       af_event_is_set() the same way. The wait returns without blocking;
 *       on x86_64 it still goes through its resume stub, which must return
 *       with a ret then, or every return up the chain is mispredicted (it
 *       was 4-5x slower when the stub always jumped).
 * Each round gives one ns-per-switch (per-hop) figure per path; we report
 * percentiles over rounds and per-round ratios, which cancel the slow
 * drifts of a shared machine better than a ratio of medians.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "asyncflag.h"
#include "switch.h"
#include "bench-util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#define STACK_SIZE ((size_t)64 * 1024)

enum { M_UCONTEXT, M_AFCTX, M_YIELD, M_EVENT, M_COUNT };

static const char *const method_key[M_COUNT] = { "swapcontext", "af_ctx_switch", "af_yield",
						 "af_event" };

/* ---- (a) raw swapcontext ---------------------------------------------------- */

/* The baseline is plain swapcontext. Sanitizer builds also need to be told
 * about the stack change, exactly as the library tells them in
 * src/sanitizer.h; that costs nothing in the builds we take numbers from. */
struct uc_side {
	ucontext_t uc;
#if defined(__SANITIZE_ADDRESS__)
	const void *lo;
	size_t size;
	void *fake;
	struct uc_side *prev;
#endif
#if defined(__SANITIZE_THREAD__)
	void *fiber;
#endif
};

static struct uc_side uc_main, uc_co;
static volatile int uc_stop;

static inline void uc_swap(struct uc_side *from, struct uc_side *to)
{
#if defined(__SANITIZE_ADDRESS__)
	to->prev = from;
	__sanitizer_start_switch_fiber(&from->fake, to->lo, to->size);
#endif
#if defined(__SANITIZE_THREAD__)
	__tsan_switch_to_fiber(to->fiber, 0);
#endif
	swapcontext(&from->uc, &to->uc);
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_finish_switch_fiber(from->fake, &from->prev->lo, &from->prev->size);
#endif
}

static void uc_entry(void)
{
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_finish_switch_fiber(NULL, &uc_co.prev->lo, &uc_co.prev->size);
#endif
	while (!uc_stop)
		uc_swap(&uc_co, &uc_main);
	/* Back to main through uc_link; tell the sanitizers first. */
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_start_switch_fiber(NULL, uc_main.lo, uc_main.size);
#endif
#if defined(__SANITIZE_THREAD__)
	__tsan_switch_to_fiber(uc_main.fiber, 0);
#endif
}

static int uc_setup(void *stack)
{
	memset(&uc_main, 0, sizeof(uc_main));
	memset(&uc_co, 0, sizeof(uc_co));
	if (getcontext(&uc_co.uc) < 0)
		return -errno;
	uc_co.uc.uc_stack.ss_sp = stack;
	uc_co.uc.uc_stack.ss_size = STACK_SIZE;
	/* When the co-routine returns, the final swapcontext in main returns. */
	uc_co.uc.uc_link = &uc_main.uc;
	makecontext(&uc_co.uc, uc_entry, 0);
#if defined(__SANITIZE_ADDRESS__)
	uc_co.lo = stack;
	uc_co.size = STACK_SIZE;
#endif
#if defined(__SANITIZE_THREAD__)
	uc_main.fiber = __tsan_get_current_fiber();
	uc_co.fiber = __tsan_create_fiber(0);
#endif
	return 0;
}

static void uc_teardown(void)
{
	uc_stop = 1;
	uc_swap(&uc_main, &uc_co);
#if defined(__SANITIZE_THREAD__)
	__tsan_destroy_fiber(uc_co.fiber);
#endif
}

static double run_ucontext(uint64_t iters)
{
	uint64_t t0 = bench_now_ns();

	for (uint64_t i = 0; i < iters; i++)
		uc_swap(&uc_main, &uc_co);
	/* Each iteration is two switches: there and back. */
	return (double)(bench_now_ns() - t0) / (2.0 * (double)iters);
}

/* ---- (b) af__ctx_switch -------------------------------------------------- */

static struct af__ctx af_main, af_co;
static volatile int af_stop;

static void af_entry(void)
{
	af__ctx_entered(&af_co);
	while (!af_stop)
		af__ctx_switch(&af_co, &af_main);
	af__ctx_switch_final(&af_co, &af_main);
}

static int afctx_setup(void *stack)
{
	af__ctx_init_thread(&af_main);
	return af__ctx_make(&af_co, stack, STACK_SIZE, af_entry);
}

static void afctx_teardown(void)
{
	af_stop = 1;
	af__ctx_switch(&af_main, &af_co);
	af__ctx_destroy(&af_co);
	af__ctx_destroy(&af_main);
}

static double run_afctx(uint64_t iters)
{
	uint64_t t0 = bench_now_ns();

	for (uint64_t i = 0; i < iters; i++)
		af__ctx_switch(&af_main, &af_co);
	return (double)(bench_now_ns() - t0) / (2.0 * (double)iters);
}

/* ---- (c) af_yield between two tasks ------------------------------------------ */

struct yield_run {
	uint64_t iters;
	uint64_t t0, t1;
	struct bench_sysc *sysc;
	uint64_t sys0, sys1;
};

/* A stamps before its first yield and after its last: in between, A and B
 * each yielded iters times, strictly alternating, so 2 * iters hops. */
static int yield_a(void *arg)
{
	struct yield_run *y = arg;

	y->sys0 = bench_sysc_read(y->sysc);
	y->t0 = bench_now_ns();
	for (uint64_t i = 0; i < y->iters; i++)
		if (af_yield() < 0)
			return -1;
	y->t1 = bench_now_ns();
	y->sys1 = bench_sysc_read(y->sysc);
	return 0;
}

static int yield_b(void *arg)
{
	struct yield_run *y = arg;

	for (uint64_t i = 0; i < y->iters; i++)
		if (af_yield() < 0)
			return -1;
	return 0;
}

static int yield_main(void *arg)
{
	struct af_task *a, *b;
	int ra = -1, rb = -1, r;

	r = af_task_spawn(&a, yield_a, arg);
	if (r < 0)
		return r;
	r = af_task_spawn(&b, yield_b, arg);
	if (r < 0)
		return r;
	/* main blocks in join, so only A and B are runnable while timed. */
	if (af_task_join(a, &ra) < 0 || af_task_join(b, &rb) < 0)
		return -1;
	return ra == 0 && rb == 0 ? 0 : -1;
}

/* ---- (d) an Event ping-pong between two tasks ---------------------------------- */

struct event_run {
	uint64_t iters;
	uint64_t t0, t1;
	struct af_event ping, pong;
	struct bench_sysc *sysc;
	uint64_t sys0, sys1;
};

/* A stamps around iters round trips: each is A's set and wait, B's wake,
 * set and wait, and A's wake: two hops. */
static int event_a(void *arg)
{
	struct event_run *e = arg;

	e->sys0 = bench_sysc_read(e->sysc);
	e->t0 = bench_now_ns();
	for (uint64_t i = 0; i < e->iters; i++) {
		af_event_set(&e->ping);
		if (af_event_wait(&e->pong) < 0)
			return -1;
		af_event_clear(&e->pong);
	}
	e->t1 = bench_now_ns();
	e->sys1 = bench_sysc_read(e->sysc);
	return 0;
}

static int event_b(void *arg)
{
	struct event_run *e = arg;

	for (uint64_t i = 0; i < e->iters; i++) {
		if (af_event_wait(&e->ping) < 0)
			return -1;
		af_event_clear(&e->ping);
		af_event_set(&e->pong);
	}
	return 0;
}

static int event_main(void *arg)
{
	struct event_run *e = arg;
	struct af_task *a, *b;
	int ra = -1, rb = -1, r;

	af_event_init(&e->ping);
	af_event_init(&e->pong);
	r = af_task_spawn(&b, event_b, arg);
	if (r < 0)
		return r;
	r = af_task_spawn(&a, event_a, arg);
	if (r < 0)
		return r;
	/* main blocks in join, so only A and B are runnable while timed. */
	if (af_task_join(a, &ra) < 0 || af_task_join(b, &rb) < 0)
		return -1;
	return ra == 0 && rb == 0 ? 0 : -1;
}

/* ---- (e) a wait that does not block, three calls deep -------------------------- */

static struct af_event open_ev;

__attribute__((noinline)) static int wait1(void) { return af_event_wait(&open_ev); }
__attribute__((noinline)) static int wait2(void) { return wait1() + 1; }
__attribute__((noinline)) static int wait3(void) { return wait2() + 1; }
__attribute__((noinline)) static int isset1(void) { return af_event_is_set(&open_ev) ? 0 : -1; }
__attribute__((noinline)) static int isset2(void) { return isset1() + 1; }
__attribute__((noinline)) static int isset3(void) { return isset2() + 1; }

struct open_run {
	uint64_t iters, rounds;
	double *wait_ns, *isset_ns;
};

/* Both loops in one task, alternating which goes first, round by round. */
static int open_main(void *arg)
{
	struct open_run *o = arg;
	int bad = 0;

	af_event_init(&open_ev);
	af_event_set(&open_ev);
	for (uint64_t i = 0; i < o->rounds; i++) {
		for (int k = 0; k < 2; k++) {
			bool wait = (k ^ (int)(i & 1)) == 0;
			uint64_t t0 = bench_now_ns();

			for (uint64_t j = 0; j < o->iters; j++)
				bad |= (wait ? wait3() : isset3()) != 2;
			(wait ? o->wait_ns : o->isset_ns)[i] =
				(double)(bench_now_ns() - t0) / (double)o->iters;
		}
	}
	return bad ? -1 : 0;
}

/* ---- driver ---------------------------------------------------------------- */

struct opts {
	uint64_t rounds, iters;
	bool json;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-switch [--rounds N] [--iters N] [--json]\n"
		"  --rounds N  timed rounds per path, interleaved (default 100)\n"
		"  --iters N   round trips per round (default 20000)\n"
		"  --json      machine-readable output on stdout\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "rounds", required_argument, NULL, 'r' },
		{ "iters", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->rounds = 100;
	o->iters = 20000;
	o->json = false;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!bench_parse_u64("--rounds", optarg, 1, 1000000, &o->rounds))
				return -1;
			break;
		case 'i':
			if (!bench_parse_u64("--iters", optarg, 1, 1000000000, &o->iters))
				return -1;
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
	return 0;
}

/* The k-th path of round i: the order rotates every round and reverses
 * every other group of M_COUNT rounds, so none of them always goes first
 * (cold caches) or last, nor always right after the same one. */
static int order_at(uint64_t i, int k)
{
	int m = (int)((i + (uint64_t)k) % M_COUNT);

	return (i / M_COUNT) & 1 ? M_COUNT - 1 - m : m;
}

struct result {
	double *ns;        /* per round: ns per switch (per hop for the tasks) */
	uint64_t sys;      /* system calls in the counting round */
	uint64_t switches; /* switches in the counting round */
};

static int run_one(int m, struct af_loop *loop, const struct opts *o,
		   struct bench_sysc *sysc, double *ns, uint64_t *sys)
{
	uint64_t s0, s1;

	switch (m) {
	case M_UCONTEXT:
		s0 = bench_sysc_read(sysc);
		*ns = run_ucontext(o->iters);
		s1 = bench_sysc_read(sysc);
		*sys = bench_sysc_delta(sysc, s0, s1);
		return 0;
	case M_AFCTX:
		s0 = bench_sysc_read(sysc);
		*ns = run_afctx(o->iters);
		s1 = bench_sysc_read(sysc);
		*sys = bench_sysc_delta(sysc, s0, s1);
		return 0;
	case M_EVENT: {
		struct event_run e = { .iters = o->iters, .sysc = sysc };
		int res = -1, r = af_loop_run(loop, event_main, &e, &res);

		if (r < 0 || res != 0) {
			fprintf(stderr, "bench-switch: af_loop_run: %s (task result %d)\n",
				af_strerror(r), res);
			return -1;
		}
		*ns = (double)(e.t1 - e.t0) / (2.0 * (double)o->iters);
		*sys = bench_sysc_delta(sysc, e.sys0, e.sys1);
		return 0;
	}
	default: {
		struct yield_run y = { .iters = o->iters, .sysc = sysc };
		int res = -1, r = af_loop_run(loop, yield_main, &y, &res);

		if (r < 0 || res != 0) {
			fprintf(stderr, "bench-switch: af_loop_run: %s (task result %d)\n",
				af_strerror(r), res);
			return -1;
		}
		*ns = (double)(y.t1 - y.t0) / (2.0 * (double)o->iters);
		*sys = bench_sysc_delta(sysc, y.sys0, y.sys1);
		return 0;
	}
	}
}

static bool sane(const struct bench_pct *p)
{
	return p->n > 0 && p->min > 0 && p->max < 1e9;
}

/* Per-round ratios, each over the same round's figures. */
enum { R_UC_CTX, R_YIELD_CTX, R_EVENT_CTX, R_UC_EVENT, R_COUNT };

static const char *const ratio_key[R_COUNT] = {
	"swapcontext_over_af_ctx_switch",
	"af_yield_hop_over_af_ctx_switch",
	"af_event_hop_over_af_ctx_switch",
	"swapcontext_over_af_event_hop",
};

/* (e)'s figures: ns per call of each chain, and their per-round ratio. */
struct open_pct {
	struct bench_pct wait, isset, ratio;
};

static void print_text(const struct opts *o, const char *sw, bool counted, const char *why,
		       struct bench_pct pct[M_COUNT], const struct result res[M_COUNT],
		       const struct bench_pct ratio[R_COUNT], const struct open_pct *op)
{
	static const char *const label[M_COUNT] = {
		"(a) swapcontext (glibc)",
		"(b) af__ctx_switch",
		"(c) af_yield hop",
		"(d) af_event hop",
	};
	static const char *const rlabel[R_COUNT] = {
		"swapcontext / af__ctx_switch",
		"af_yield hop / af__ctx_switch",
		"af_event hop / af__ctx_switch",
		"swapcontext / af_event hop",
	};

	printf("bench-switch: libasyncflag %s, context switch built: %s\n", af_version(), sw);
	printf("%llu rounds x %llu round trips per path, interleaved; ns per switch (per hop "
	       "between tasks) over rounds\n",
	       (unsigned long long)o->rounds, (unsigned long long)o->iters);
	printf("  %-30s %8s %8s %8s %8s  %s\n", "", "min", "p50", "p90", "p99", "syscalls/switch");
	for (int m = 0; m < M_COUNT; m++) {
		printf("  %-30s %8.1f %8.1f %8.1f %8.1f  ", label[m], pct[m].min, pct[m].p50,
		       pct[m].p90, pct[m].p99);
		if (counted)
			printf("%.3f\n", (double)res[m].sys / (double)res[m].switches);
		else
			printf("n/a\n");
	}
	printf("  af_event round trip (two hops): p50 %.1f ns, p90 %.1f ns, p99 %.1f ns\n",
	       2 * pct[M_EVENT].p50, 2 * pct[M_EVENT].p90, 2 * pct[M_EVENT].p99);
	for (int k = 0; k < R_COUNT; k++)
		printf("ratio %s, per round: p50 %.2fx (p10 %.2fx, p90 %.2fx)\n", rlabel[k],
		       ratio[k].p50, ratio[k].p10, ratio[k].p90);
	printf("  (e) af_event_wait() that does not block, 3 calls deep: p50 %.1f ns; "
	       "af_event_is_set() the same way: p50 %.1f ns\n", op->wait.p50, op->isset.p50);
	printf("ratio (e) af_event_wait / af_event_is_set, per round: p50 %.2fx (p10 %.2fx, "
	       "p90 %.2fx)\n", op->ratio.p50, op->ratio.p10, op->ratio.p90);
	if (!counted)
		printf("system calls not counted: %s\n", why);
}

/* (e): an untimed round, then o->rounds timed ones of 10 x iters calls. */
static int run_open(struct af_loop *loop, const struct opts *o, struct open_pct *op)
{
	struct open_run w = { .iters = 10 * o->iters, .rounds = o->rounds };
	double *ratio = calloc(o->rounds, sizeof(double));
	int res = -1, r = -ENOMEM;

	w.wait_ns = calloc(o->rounds, sizeof(double));
	w.isset_ns = calloc(o->rounds, sizeof(double));
	if (ratio && w.wait_ns && w.isset_ns) {
		struct open_run warm = w;

		warm.rounds = 1;
		r = af_loop_run(loop, open_main, &warm, &res);
		if (r == 0 && res == 0)
			r = af_loop_run(loop, open_main, &w, &res);
	}
	if (r < 0 || res != 0) {
		fprintf(stderr, "bench-switch: (e): af_loop_run: %s (task result %d)\n",
			af_strerror(r), res);
		r = -1;
	} else {
		for (uint64_t i = 0; i < o->rounds; i++)
			ratio[i] = w.wait_ns[i] / w.isset_ns[i];
		op->wait = bench_pct_of(w.wait_ns, o->rounds);
		op->isset = bench_pct_of(w.isset_ns, o->rounds);
		op->ratio = bench_pct_of(ratio, o->rounds);
	}
	free(ratio);
	free(w.wait_ns);
	free(w.isset_ns);
	return r;
}

static bool per_hop(int m)
{
	return m == M_YIELD || m == M_EVENT;
}

static void print_json(const struct opts *o, const char *sw, bool counted, const char *why,
		       struct bench_pct pct[M_COUNT], const struct result res[M_COUNT],
		       const struct bench_pct ratio[R_COUNT], const struct open_pct *op)
{
	struct bench_json j;

	bench_json_begin(&j, stdout);
	bench_json_str(&j, "bench", "switch");
	bench_json_str(&j, "version", af_version());
	bench_json_str(&j, "switch", sw);
	bench_json_int(&j, "rounds", (long long)o->rounds);
	bench_json_int(&j, "iters", (long long)o->iters);
	bench_json_str(&j, "syscall_counting", why);
	bench_json_obj(&j, "results");
	for (int m = 0; m < M_COUNT; m++) {
		bench_json_obj(&j, method_key[m]);
		bench_json_pct(&j, per_hop(m) ? "ns_per_hop" : "ns_per_switch", &pct[m]);
		if (counted)
			bench_json_num(&j, per_hop(m) ? "syscalls_per_hop" : "syscalls_per_switch",
				       (double)res[m].sys / (double)res[m].switches);
		else
			bench_json_null(&j, per_hop(m) ? "syscalls_per_hop" : "syscalls_per_switch");
		bench_json_obj_end(&j);
	}
	bench_json_obj_end(&j);
	bench_json_obj(&j, "ratios");
	for (int k = 0; k < R_COUNT; k++)
		bench_json_pct(&j, ratio_key[k], &ratio[k]);
	bench_json_obj_end(&j);
	bench_json_obj(&j, "nonblocking_wait");
	bench_json_pct(&j, "af_event_wait_ns", &op->wait);
	bench_json_pct(&j, "af_event_is_set_ns", &op->isset);
	bench_json_pct(&j, "wait_over_is_set", &op->ratio);
	bench_json_obj_end(&j);
	bench_json_end(&j);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct af_loop *loop;
	/* Timed rounds count nothing: while a syscall tracepoint is open,
	 * every system call on the machine takes the kernel's tracing path,
	 * which would slow the swapcontext baseline. */
	struct bench_sysc off = { .fd = -1, .err = -ENOENT }, sysc;
	struct result res[M_COUNT];
	char why[160];
	bool counted;
	struct bench_pct pct[M_COUNT], ratio[R_COUNT];
	struct open_pct op;
	double *rr[R_COUNT] = { NULL };
	void *stacks;
	const char *sw;
	int r, status = 1;

	if (parse(argc, argv, &o) < 0)
		return 2;
	r = af_loop_new(&loop, NULL);
	if (r < 0) {
		fprintf(stderr, "bench-switch: af_loop_new: %s\n", af_strerror(r));
		/* 77: the "skipped" exit status meson and automake understand. */
		return r == -EPERM || r == -ENOSYS ? 77 : 1;
	}
	sw = (af_loop_features(loop) & AF_FEATURE_ASM_SWITCH) ? "asm" : "ucontext";
	stacks = mmap(NULL, 2 * STACK_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stacks == MAP_FAILED) {
		perror("bench-switch: mmap");
		goto out_loop;
	}
	r = uc_setup(stacks);
	if (r < 0) {
		fprintf(stderr, "bench-switch: getcontext: %s\n", strerror(-r));
		goto out_stacks;
	}
	r = afctx_setup((char *)stacks + STACK_SIZE);
	if (r < 0) {
		fprintf(stderr, "bench-switch: af__ctx_make: %s\n", strerror(-r));
		goto out_uc;
	}
	memset(res, 0, sizeof(res));
	status = 0;
	for (int k = 0; k < R_COUNT; k++)
		if (!(rr[k] = calloc(o.rounds, sizeof(double))))
			status = 1;
	for (int m = 0; m < M_COUNT; m++)
		if (!(res[m].ns = calloc(o.rounds, sizeof(double))))
			status = 1;
	if (status) {
		fprintf(stderr, "bench-switch: out of memory\n");
		goto out_free;
	}
	status = 1;

	/* One untimed round: fault in the stacks, warm caches and branch
	 * predictors for all four. */
	for (int m = 0; m < M_COUNT; m++) {
		double ns;
		uint64_t sys;

		if (run_one(m, loop, &o, &off, &ns, &sys) < 0)
			goto out_free;
	}
	for (uint64_t i = 0; i < o.rounds; i++) {
		for (int k = 0; k < M_COUNT; k++) {
			int m = order_at(i, k);
			uint64_t sys;

			if (run_one(m, loop, &o, &off, &res[m].ns[i], &sys) < 0)
				goto out_free;
		}
		rr[R_UC_CTX][i] = res[M_UCONTEXT].ns[i] / res[M_AFCTX].ns[i];
		rr[R_YIELD_CTX][i] = res[M_YIELD].ns[i] / res[M_AFCTX].ns[i];
		rr[R_EVENT_CTX][i] = res[M_EVENT].ns[i] / res[M_AFCTX].ns[i];
		rr[R_UC_EVENT][i] = res[M_UCONTEXT].ns[i] / res[M_EVENT].ns[i];
	}
	for (int m = 0; m < M_COUNT; m++)
		pct[m] = bench_pct_of(res[m].ns, o.rounds);
	for (int k = 0; k < R_COUNT; k++)
		ratio[k] = bench_pct_of(rr[k], o.rounds);

	/* System calls: one more, untimed round of each path with the
	 * counter open. */
	bench_sysc_open(&sysc, "raw_syscalls/sys_enter");
	counted = bench_sysc_ok(&sysc);
	snprintf(why, sizeof(why), "%s", bench_sysc_why(&sysc));
	for (int m = 0; counted && m < M_COUNT; m++) {
		double ns;

		if (run_one(m, loop, &o, &sysc, &ns, &res[m].sys) < 0) {
			bench_sysc_close(&sysc);
			goto out_free;
		}
		/* Two switches or two hops per round trip. */
		res[m].switches = 2 * o.iters;
	}
	bench_sysc_close(&sysc);

	if (run_open(loop, &o, &op) < 0)
		goto out_free;
	if (o.json)
		print_json(&o, sw, counted, why, pct, res, ratio, &op);
	else
		print_text(&o, sw, counted, why, pct, res, ratio, &op);

	status = 0;
	for (int m = 0; m < M_COUNT; m++) {
		if (!sane(&pct[m])) {
			fprintf(stderr, "bench-switch: %s: implausible timings (min %g ns, max %g ns)\n",
				method_key[m], pct[m].min, pct[m].max);
			status = 1;
		}
	}

out_free:
	for (int m = 0; m < M_COUNT; m++)
		free(res[m].ns);
	for (int k = 0; k < R_COUNT; k++)
		free(rr[k]);
	afctx_teardown();
out_uc:
	uc_teardown();
out_stacks:
	munmap(stacks, 2 * STACK_SIZE);
out_loop:
	af_loop_free(loop);
	return status;
}
