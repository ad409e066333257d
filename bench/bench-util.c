/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "asyncflag.h"
#include "bench-util.h"

/* ---- statistics -------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least p% of the samples at or
 * below it. With few samples p99 is simply the maximum, which is the honest
 * answer. */
static double rank(const double *v, size_t n, size_t permille)
{
	size_t k = (permille * n + 999) / 1000;

	return v[k > 0 ? k - 1 : 0];
}

struct bench_pct bench_pct_of(double *v, size_t n)
{
	struct bench_pct r;
	double sum = 0;

	memset(&r, 0, sizeof(r));
	r.n = n;
	if (n == 0)
		return r;
	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	r.min = v[0];
	r.p10 = rank(v, n, 100);
	r.p50 = rank(v, n, 500);
	r.p90 = rank(v, n, 900);
	r.p99 = rank(v, n, 990);
	r.p999 = rank(v, n, 999);
	r.max = v[n - 1];
	r.mean = sum / (double)n;
	return r;
}

/* ---- interleaving -------------------------------------------------------- */

uint8_t *bench_sched_make(const uint8_t *methods, size_t nm, size_t rounds)
{
	uint8_t *s = nm && rounds <= SIZE_MAX / nm ? malloc(rounds * nm) : NULL;

	if (!s)
		return NULL;
	for (size_t k = 0; k < rounds; k++)
		for (size_t j = 0; j < nm; j++) {
			size_t pos = (k + j) % nm;
			size_t idx = (k / nm) % 2 ? nm - 1 - pos : pos;

			s[k * nm + j] = methods[idx];
		}
	return s;
}

/* ---- the worker thread ---------------------------------------------------- */

static void *worker_main(void *arg)
{
	struct bench_worker *w = arg;

	w->tid = gettid();
	sem_post(&w->done);
	for (;;) {
		while (sem_wait(&w->go) < 0 && errno == EINTR)
			;
		if (w->quit)
			break;
		w->fn(w->arg);
		sem_post(&w->done);
	}
	return NULL;
}

int bench_worker_start(struct bench_worker *w, int cpu)
{
	char path[64];

	memset(w, 0, sizeof(*w));
	w->statfd = -1;
	sem_init(&w->go, 0, 0);
	sem_init(&w->done, 0, 0);
	if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
		sem_destroy(&w->go);
		sem_destroy(&w->done);
		return -EAGAIN;
	}
	bench_worker_wait(w);
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		pthread_setaffinity_np(w->th, sizeof(set), &set);
	}
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)w->tid);
	w->statfd = open(path, O_RDONLY | O_CLOEXEC);
	if (w->statfd < 0) {
		int err = -errno;

		bench_worker_stop(w);
		return err;
	}
	return 0;
}

void bench_worker_run(struct bench_worker *w, void (*fn)(void *), void *arg)
{
	w->fn = fn;
	w->arg = arg;
	sem_post(&w->go);
}

void bench_worker_wait(struct bench_worker *w)
{
	while (sem_wait(&w->done) < 0 && errno == EINTR)
		;
}

void bench_worker_stop(struct bench_worker *w)
{
	w->quit = true;
	sem_post(&w->go);
	pthread_join(w->th, NULL);
	if (w->statfd >= 0)
		close(w->statfd);
	w->statfd = -1;
	sem_destroy(&w->go);
	sem_destroy(&w->done);
}

char bench_thread_state(int statfd)
{
	char buf[512], *p;
	ssize_t n = pread(statfd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return '?';
	buf[n] = '\0';
	/* "tid (comm) S ...": comm may hold spaces and parentheses. */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/* ---- options --------------------------------------------------------- */

bool bench_parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max,
		     uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-') {
		fprintf(stderr, "%s: expected a number\n", opt);
		return false;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max) {
		fprintf(stderr, "%s: expected a number in [%llu, %llu], got \"%s\"\n", opt,
			(unsigned long long)min, (unsigned long long)max, s);
		return false;
	}
	*out = v;
	return true;
}

/* ---- system call counting ------------------------------------------------ */

static long tracepoint_id(const char *event)
{
	static const char *const roots[] = {
		"/sys/kernel/tracing/events",
		"/sys/kernel/debug/tracing/events",
	};
	char path[256], buf[32];

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "%s/%s/id", roots[i], event);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		return strtol(buf, NULL, 10);
	}
	return -ENOENT;
}

void bench_sysc_open(struct bench_sysc *c, const char *event)
{
	bench_sysc_open_filter(c, event, NULL);
}

void bench_sysc_open_filter(struct bench_sysc *c, const char *event, const char *filter)
{
	struct perf_event_attr attr;
	long id = tracepoint_id(event);
	uint64_t a, b;

	c->fd = -1;
	c->self = 0;
	if (id < 0) {
		c->err = (int)id;
		return;
	}
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_TRACEPOINT;
	attr.config = (uint64_t)id;
	/* pid 0, cpu -1: this thread wherever it runs, and only this thread
	 * (no inherit), so a reading is exactly what this thread did. */
	c->fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (c->fd < 0) {
		c->err = -errno;
		return;
	}
	if (filter && ioctl(c->fd, PERF_EVENT_IOC_SET_FILTER, filter) < 0) {
		c->err = -errno;
		close(c->fd);
		c->fd = -1;
		return;
	}
	c->err = 0;
	/* Two reads back to back: what one read of the counter adds. */
	a = bench_sysc_read(c);
	b = bench_sysc_read(c);
	c->self = b - a;
}

void bench_sysc_close(struct bench_sysc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

uint64_t bench_sysc_read(const struct bench_sysc *c)
{
	uint64_t v = 0;

	if (c->fd < 0)
		return 0;
	if (read(c->fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v;
}

const char *bench_sysc_why(const struct bench_sysc *c)
{
	if (c->fd >= 0)
		return "ok";
	if (c->err == -ENOENT)
		return "tracefs not mounted (run `perf stat -e raw_syscalls:sys_enter true` "
		       "once, or mount -t tracefs nodev /sys/kernel/tracing)";
	if (c->err == -EACCES || c->err == -EPERM)
		return "no permission for perf tracepoints (needs root, CAP_PERFMON or "
		       "kernel.perf_event_paranoid=-1)";
	return strerror(-c->err);
}

/* ---- JSON ---------------------------------------------------------------- */

static void sep(struct bench_json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
	fputc('\n', j->f);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->f);
	if (key)
		fprintf(j->f, "\"%s\": ", key);
}

static void open_(struct bench_json *j, const char *key, char c)
{
	sep(j, key);
	fputc(c, j->f);
	if (j->depth + 1 < (int)(sizeof(j->first) / sizeof(j->first[0])))
		j->depth++;
	j->first[j->depth] = true;
}

static void close_(struct bench_json *j, char c)
{
	bool empty = j->first[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (!empty) {
		fputc('\n', j->f);
		for (int i = 0; i < j->depth; i++)
			fputs("  ", j->f);
	}
	fputc(c, j->f);
}

void bench_json_begin(struct bench_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	fputc('{', f);
	j->first[0] = true;
}

void bench_json_end(struct bench_json *j)
{
	bool empty = j->first[0];

	if (!empty)
		fputc('\n', j->f);
	fputs("}\n", j->f);
	fflush(j->f);
}

void bench_json_obj(struct bench_json *j, const char *key)
{
	open_(j, key, '{');
}

void bench_json_obj_end(struct bench_json *j)
{
	close_(j, '}');
}

void bench_json_arr(struct bench_json *j, const char *key)
{
	open_(j, key, '[');
}

void bench_json_arr_end(struct bench_json *j)
{
	close_(j, ']');
}

void bench_json_num(struct bench_json *j, const char *key, double v)
{
	sep(j, key);
	/* JSON has no NaN or infinity. */
	if (isfinite(v))
		fprintf(j->f, "%.6g", v);
	else
		fputs("null", j->f);
}

void bench_json_int(struct bench_json *j, const char *key, long long v)
{
	sep(j, key);
	fprintf(j->f, "%lld", v);
}

void bench_json_str(struct bench_json *j, const char *key, const char *v)
{
	sep(j, key);
	fputc('"', j->f);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(j->f, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			fprintf(j->f, "\\u%04x", (unsigned char)*p);
		else
			fputc(*p, j->f);
	}
	fputc('"', j->f);
}

void bench_json_bool(struct bench_json *j, const char *key, bool v)
{
	sep(j, key);
	fputs(v ? "true" : "false", j->f);
}

void bench_json_null(struct bench_json *j, const char *key)
{
	sep(j, key);
	fputs("null", j->f);
}

void bench_json_pct(struct bench_json *j, const char *key, const struct bench_pct *p)
{
	bench_json_obj(j, key);
	bench_json_int(j, "n", (long long)p->n);
	bench_json_num(j, "min", p->min);
	bench_json_num(j, "p10", p->p10);
	bench_json_num(j, "p50", p->p50);
	bench_json_num(j, "p90", p->p90);
	bench_json_num(j, "p99", p->p99);
	bench_json_num(j, "p99_9", p->p999);
	bench_json_num(j, "max", p->max);
	bench_json_num(j, "mean", p->mean);
	bench_json_obj_end(j);
}

void bench_json_raw(struct bench_json *j, const char *key, const char *json)
{
	size_t n = strlen(json);

	while (n > 0 && (json[n - 1] == '\n' || json[n - 1] == ' '))
		n--;
	sep(j, key);
	fwrite(json, 1, n, j->f);
}

/* ---- a waiter task beside a busy one -------------------------------------- */

static int spinner(void *arg)
{
	struct bench_spin *spin = arg;

	while (!spin->stop) {
		if (af_yield() < 0)
			break;
		spin->turns++;
	}
	return 0;
}

int bench_wait_beside(int (*waiter)(void *), void *arg, struct bench_spin *spin)
{
	struct af_task *w, *s = NULL;
	int rw = 0, r;

	r = af_task_spawn(&w, waiter, arg);
	if (r < 0)
		return r;
	if (spin) {
		spin->stop = false;
		r = af_task_spawn(&s, spinner, spin);
		if (r < 0) {
			af_task_cancel(w);
			af_task_join(w, NULL);
			return r;
		}
	}
	r = af_task_join(w, &rw);
	if (spin)
		spin->stop = true;
	if (s)
		af_task_join(s, NULL);
	return r < 0 ? r : rw;
}

int bench_wait_ready(_Atomic uint64_t *ready, uint64_t want, _Atomic int *failed,
		     uint64_t timeout_ns)
{
	uint64_t start = bench_now_ns();

	for (unsigned spins = 0;; spins++) {
		if (atomic_load_explicit(ready, memory_order_acquire) >= want)
			return 0;
		if (atomic_load(failed))
			return -ECANCELED;
		if ((spins & 1023) == 1023) {
			if (bench_now_ns() - start > timeout_ns)
				return -ETIMEDOUT;
			/* A shared machine (or SCHED_FIFO on one CPU) must still
			 * get to run the worker. */
			if (spins > 64 * 1024)
				sched_yield();
		}
		bench_cpu_relax();
	}
}

/* ---- io_uring baselines ------------------------------------------------- */

unsigned bench_ring_flags(unsigned af_features)
{
	unsigned f = 0;

	if (af_features & AF_FEATURE_COOP_TASKRUN)
		f |= IORING_SETUP_COOP_TASKRUN;
	if (af_features & AF_FEATURE_SINGLE_ISSUER)
		f |= IORING_SETUP_SINGLE_ISSUER;
	if (af_features & AF_FEATURE_DEFER_TASKRUN)
		f |= IORING_SETUP_DEFER_TASKRUN;
	return f;
}
