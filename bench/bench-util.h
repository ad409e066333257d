/* SPDX-License-Identifier: MIT */
/* Shared by the benchmarks: clock, percentiles, option parsing, a JSON
 * writer and in-process system call counters. Not part of the library. */
#ifndef AF_BENCH_UTIL_H
#define AF_BENCH_UTIL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* CLOCK_MONOTONIC through the vDSO: no system call, and on one machine the
 * same clock on every CPU, so stamps taken on two threads can be
 * subtracted. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* ---- statistics -------------------------------------------------------- */

struct bench_pct {
	double min, p10, p50, p90, p99, p999, max, mean;
	size_t n;
};

/* Sorts @v in place; nearest-rank percentiles. */
struct bench_pct bench_pct_of(double *v, size_t n);

/* ---- interleaving -------------------------------------------------------- */

/*
 * A schedule of @rounds groups of one item of each of @methods[0..@nm),
 * @rounds * @nm entries in all (free() it). The order rotates from group to
 * group and every other cycle runs backwards, so no method always follows
 * the same one or always goes first, and whatever else the machine does
 * lands on every method alike. NULL when out of memory.
 */
uint8_t *bench_sched_make(const uint8_t *methods, size_t nm, size_t rounds);

/* ---- the worker thread of the cross-thread ping-pongs --------------------- */

/*
 * A thread that runs the jobs it is handed, one at a time, so that a loop,
 * a ring or a uv loop can be made, run and freed on the one thread it is
 * bound to, while the caller's thread sets from outside.
 */
struct bench_worker {
	pthread_t th;
	sem_t go, done;
	void (*fn)(void *arg);
	void *arg;
	bool quit;
	pid_t tid;
	int statfd;                /* /proc/self/task/<tid>/stat */
};

/* Starts the thread, pinned to @cpu unless it is negative. 0 or -errno. */
int bench_worker_start(struct bench_worker *w, int cpu);
/* Hands it @fn(@arg); bench_worker_wait() returns when that is done. */
void bench_worker_run(struct bench_worker *w, void (*fn)(void *), void *arg);
void bench_worker_wait(struct bench_worker *w);
void bench_worker_stop(struct bench_worker *w);
/* The kernel's view of the thread: 'S' while it sleeps in a system call,
 * which is how a setter knows the waiter is really asleep. */
char bench_thread_state(int statfd);

/* ---- a waiter task beside a busy one -------------------------------------- */

/* A task that does nothing but yield, so a wait shares its loop with a
 * runnable task, as in a busy application, and the loop cannot just sleep.
 * @turns lets a caller see whether it ran at all during a wait. */
struct bench_spin {
	bool stop;
	uint64_t turns;              /* spinner's completed yields */
};

/* On a loop: runs @waiter(@arg) as a task, beside a spinner on @spin unless
 * @spin is NULL, and stops the spinner once @waiter is done. The waiter's
 * result, or -errno. */
int bench_wait_beside(int (*waiter)(void *), void *arg, struct bench_spin *spin);

/* Spins until *@ready reaches @want: 0; -ECANCELED once *@failed is set
 * (the other side has already said why); -ETIMEDOUT after @timeout_ns, which
 * is a lost wake-up for the caller to report. */
int bench_wait_ready(_Atomic uint64_t *ready, uint64_t want, _Atomic int *failed,
		     uint64_t timeout_ns);

/* ---- io_uring baselines ------------------------------------------------- */

/* The io_uring_setup flags matching a loop's af_loop_features(): a bare-ring
 * baseline gets the set-up the loop got, so the two differ only in what the
 * library does around the ring. */
unsigned bench_ring_flags(unsigned af_features);

/* ---- options --------------------------------------------------------- */

/* Parses a decimal count in [min, max]; prints an error naming @opt and
 * returns false otherwise. */
bool bench_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max,
		     uint64_t *out);

/* ---- system call counting ------------------------------------------------ */

/*
 * Counts the calling thread's entries into one syscall tracepoint with
 * perf_event_open, so a benchmark can say "0 system calls per switch"
 * instead of guessing. Needs tracefs (mounted at /sys/kernel/tracing, as
 * `perf stat` does) and permission (root, CAP_PERFMON or
 * kernel.perf_event_paranoid <= -1); without them every count reads as
 * unavailable and the benchmark says so.
 *
 * Open counters only around untimed counting passes: while any syscall
 * tracepoint is registered, every system call of every process takes the
 * kernel's tracing slow path (it made swapcontext's rt_sigprocmask 60%
 * slower here), which would bias the timed baselines.
 */
struct bench_sysc {
	int fd;          /* -1 when unavailable */
	int err;         /* why, as a negative errno */
	uint64_t self;   /* entries a read of the counter itself adds */
};

/* @event is "category/name", e.g. "raw_syscalls/sys_enter" (every call) or
 * "syscalls/sys_enter_write". Counts the calling thread only. */
void bench_sysc_open(struct bench_sysc *c, const char *event);
/* The same, counting only entries that match a tracepoint @filter, e.g.
 * "min_complete != 0" for io_uring_enter calls that wait. */
void bench_sysc_open_filter(struct bench_sysc *c, const char *event, const char *filter);
void bench_sysc_close(struct bench_sysc *c);
static inline bool bench_sysc_ok(const struct bench_sysc *c)
{
	return c->fd >= 0;
}
/* The running total, or 0 when unavailable. */
uint64_t bench_sysc_read(const struct bench_sysc *c);
/* Entries between two reads, not counting the second read itself. */
static inline uint64_t bench_sysc_delta(const struct bench_sysc *c, uint64_t before,
					uint64_t after)
{
	uint64_t d = after - before;

	return d >= c->self ? d - c->self : 0;
}
const char *bench_sysc_why(const struct bench_sysc *c);

/* ---- JSON ---------------------------------------------------------------- */

/* A minimal streaming writer: enough for nested objects and arrays of
 * numbers and strings, with commas placed for us. */
struct bench_json {
	FILE *f;
	int depth;
	bool first[16];
};

void bench_json_begin(struct bench_json *j, FILE *f);
void bench_json_end(struct bench_json *j);
void bench_json_obj(struct bench_json *j, const char *key);   /* key NULL in arrays */
void bench_json_obj_end(struct bench_json *j);
void bench_json_arr(struct bench_json *j, const char *key);
void bench_json_arr_end(struct bench_json *j);
void bench_json_num(struct bench_json *j, const char *key, double v);
void bench_json_int(struct bench_json *j, const char *key, long long v);
void bench_json_str(struct bench_json *j, const char *key, const char *v);
void bench_json_bool(struct bench_json *j, const char *key, bool v);
void bench_json_null(struct bench_json *j, const char *key);
void bench_json_pct(struct bench_json *j, const char *key, const struct bench_pct *p);
/* @json is a complete JSON value written by another program: copied as is. */
void bench_json_raw(struct bench_json *j, const char *key, const char *json);

#endif
