/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: short tasks (scenario spawn). Each sample is a batch of
 * tasks that are spawned, run, block once on an Event, are woken, exit and
 * are joined; it gives the cost per task. Batches of 100 stay inside the
 * loop's stack cache, batches of 10^4 go far past it. The same tasks with
 * a stack of their own mapping (a size other than the loop's, so mmap,
 * guard and munmap per task: every task's path before stacks came from
 * arenas) and a pthread_create + join per task run beside them, sample by
 * sample in a rotating order.
 *
 * Timed in process CPU time, not wall time: a batch of 10^4 takes tens of
 * milliseconds, so on a shared machine wall time would mostly measure the
 * other processes' time slices. The process has no other thread here but
 * the pthread path's, whose CPU time it rightly includes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "afb.h"
#include "asyncflag.h"

#define SMALL_BATCH 100
#define BIG_BATCH 10000

enum { P_SMALL, P_BIG, P_OWN, P_THREAD, NPATHS };

struct spawn {
	const struct afb_opts *o;
	struct afb_result *r;
	struct af_event ev;
	struct af_task **t;
	size_t own_stack;         /* not the loop's size: mapped per task */
	long ran;
};

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int short_task(void *arg)
{
	struct spawn *s = arg;

	s->ran++;
	return af_event_wait(&s->ev);
}

/* Spawn @n, let them all block, wake them, join them: ns per task. */
static double sample_batch(struct spawn *s, size_t n, const struct af_task_opts *opts)
{
	uint64_t t0 = cpu_ns();
	int r, res;

	af_event_clear(&s->ev);
	for (size_t i = 0; i < n; i++) {
		r = af_task_spawn_opts(&s->t[i], short_task, s, opts);
		if (r < 0)
			return r;
	}
	r = af_yield();
	if (r < 0)
		return r;
	af_event_set(&s->ev);
	for (size_t i = 0; i < n; i++) {
		r = af_task_join(s->t[i], &res);
		if (r < 0 || res < 0)
			return r < 0 ? r : res;
	}
	return (double)(cpu_ns() - t0) / (double)n;
}

static void *thread_body(void *arg)
{
	return arg;
}

static double sample_thread(void)
{
	uint64_t t0 = cpu_ns();
	pthread_t th;
	void *ret;

	for (int i = 0; i < SMALL_BATCH; i++) {
		if (pthread_create(&th, NULL, thread_body, NULL) != 0)
			return -EAGAIN;
		pthread_join(th, &ret);
	}
	return (double)(cpu_ns() - t0) / SMALL_BATCH;
}

static double sample(struct spawn *s, int p)
{
	struct af_task_opts own = { .stack_size = s->own_stack };

	switch (p) {
	case P_SMALL:
		return sample_batch(s, SMALL_BATCH, NULL);
	case P_BIG:
		return sample_batch(s, BIG_BATCH, NULL);
	case P_OWN:
		return sample_batch(s, BIG_BATCH, &own);
	default:
		return sample_thread();
	}
}

static int spawn_main(void *arg)
{
	struct spawn *s = arg;
	const uint8_t paths[] = { P_SMALL, P_BIG, P_OWN, P_THREAD };
	size_t rounds = afb_rounds(s->o, 400), i, warm = 2 * NPATHS;
	uint8_t *sched = bench_sched_make(paths, NPATHS, rounds + warm);
	struct afb_dist *d = s->r->d;
	uint64_t start;
	int err = 0;

	s->t = malloc(BIG_BATCH * sizeof(*s->t));
	for (int k = 0; k < NPATHS; k++)
		d[k].ns = malloc(rounds * sizeof(double));
	if (!sched || !s->t || !d[0].ns || !d[1].ns || !d[2].ns || !d[3].ns)
		return -ENOMEM;
	af_event_init(&s->ev);
	/* Untimed first: the arenas are carved and their slots faulted in,
	 * as in any loop that has run for a while. */
	for (i = 0; i < warm; i++)
		if (sample(s, sched[i]) < 0)
			return -EIO;
	start = bench_now_ns();
	for (i = 0; i < NPATHS * rounds; i++) {
		int p = sched[warm + i];
		double v = sample(s, p);

		if (v < 0) {
			err = (int)v;
			break;
		}
		d[p].ns[d[p].n++] = v;
		afb_progress(afb_scenario_name[s->r->id], s->o->iterations
			     ? (double)i / (double)(NPATHS * rounds)
			     : (double)(bench_now_ns() - start) / (s->o->duration_s * 1e9));
		if (!s->o->iterations && (i % NPATHS) == NPATHS - 1 && afb_time_up(s->o, start))
			break;
	}
	free(sched);
	free(s->t);
	return err;
}

int afb_run_spawn(struct afb_result *r, const struct afb_opts *o)
{
	struct spawn s;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.r = r;
	/* The loop's default stack plus a page: the same stack, mapped alone. */
	s.own_stack = 256 * 1024 + (size_t)sysconf(_SC_PAGESIZE);
	r->baseline = 2;
	afb_dist_add(r, "af_task x100", "spawn, run, block once, wake, exit, join; 100 at a time");
	afb_dist_add(r, "af_task x10^4", "the same, 10^4 at a time: far past the stack cache");
	afb_dist_add(r, "own mapping", "the same 10^4, each stack mmap'd, guarded, munmap'd");
	afb_dist_add(r, "pthread", "pthread_create + pthread_join of a thread that returns");
	snprintf(r->note, sizeof(r->note),
		 "process CPU ns per task, each sample the mean over its batch; the "
		 "own-mapping path is what every task past the 64-stack cache paid before "
		 "stack arenas");
	return afb_run_scenario(r, spawn_main, &s);
}
