/* SPDX-License-Identifier: MIT */
/* Task stacks: overflow reporting, the per-loop pool, sizes, lazy commit
 * and the guard below each stack. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- overflow ------------------------------------------------------------------------ */

/* Never reached; it only stops the compiler from calling the recursion
 * infinite and turning it into something else. */
static volatile int never = -1;

__attribute__((noinline)) static int dive(int depth)
{
	volatile char frame[512];

	frame[0] = (char)depth;
	frame[sizeof(frame) - 1] = (char)depth;
	if (depth == never)
		return 0;
	/* Used after the call, so it is not a tail call. */
	return dive(depth + 1) + frame[0] + frame[sizeof(frame) - 1];
}

static int diver(void *arg)
{
	(void)arg;
	return dive(0);
}

static int overflow_main(void *arg)
{
	struct af_task *t;
	struct af_task_opts opts = { .name = arg, .stack_size = 64 * KiB };

	if (af_task_spawn_opts(&t, diver, NULL, &opts) < 0)
		return 100;
	af_task_join(t, NULL);
	return 101;
}

START_TEST(a_task_that_overflows_its_stack_dies_by_sigsegv_naming_the_task)
{
	static const char name[] = "deep-diver";
	static const char want[] = "stack overflow in task \"deep-diver\"";
	char out[4096];
	size_t len = 0;
	int fds[2], status = 0;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		_exit(af_run(overflow_main, (void *)name));
	}
	close(fds[1]);
	while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "child did not die by SIGSEGV (status 0x%x); stderr: %s", status, out);
	ck_assert_msg(strstr(out, want) != NULL, "stderr lacks '%s': %s", want, out);
}
END_TEST

/* The same, with the loop on a thread of its own: the overflow handler
 * needs an alternate signal stack on that thread too. */
static void *overflow_thread(void *arg)
{
	af_run(overflow_main, arg);
	return NULL;
}

START_TEST(an_overflow_in_a_loop_on_another_thread_is_reported_too)
{
	static const char want[] = "stack overflow in task \"thread-diver\"";
	char out[4096];
	size_t len = 0;
	int fds[2], status = 0;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pthread_t th;

		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		if (pthread_create(&th, NULL, overflow_thread, (void *)"thread-diver") != 0)
			_exit(100);
		pthread_join(th, NULL);
		_exit(101);
	}
	close(fds[1]);
	while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "child did not die by SIGSEGV (status 0x%x); stderr: %s", status, out);
	ck_assert_msg(strstr(out, want) != NULL, "stderr lacks '%s': %s", want, out);
}
END_TEST

/* A fault that is not an overflow goes to the handler that was installed
 * before the library's, and is not reported as an overflow. */
static void users_segv_handler(int signo)
{
	static const char msg[] = "users-handler\n";

	(void)signo;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(43);
	_exit(42);
}

static int wild_write(void *arg)
{
	*(volatile int *)arg = 1;
	return 0;
}

static int wild_main(void *arg)
{
	struct af_task *t;

	if (af_task_spawn(&t, wild_write, arg) < 0)
		return 100;
	af_task_join(t, NULL);
	return 101;
}

START_TEST(a_fault_that_is_not_an_overflow_reaches_the_previous_sigsegv_handler)
{
	char out[4096];
	size_t len = 0;
	int fds[2], status = 0;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sigaction sa;

		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = users_segv_handler;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
		/* Far from any task stack: the first page is never mapped. */
		_exit(af_run(wild_main, (void *)(uintptr_t)64));
	}
	close(fds[1]);
	while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
		      "the previous handler did not run (status 0x%x); stderr: %s", status, out);
	ck_assert_ptr_nonnull(strstr(out, "users-handler"));
	ck_assert_ptr_null(strstr(out, "stack overflow"));
}
END_TEST

/* ---- the pool -------------------------------------------------------------------------- */

struct seen {
	void *lo;
	size_t size;
	void *map;
};

static int record_stack(void *arg)
{
	struct seen *s = arg;
	struct af_task *t = af_task_current();

	s->lo = t->stack.lo;
	s->size = t->stack.size;
	s->map = t->stack.map;
	return 0;
}

static void spawn_join(af_task_fn fn, void *arg, const struct af_task_opts *opts)
{
	struct af_task *t;
	int res = 1;

	ck_assert_int_eq(af_task_spawn_opts(&t, fn, arg, opts), 0);
	ck_assert_int_eq(af_task_join(t, &res), 0);
	ck_assert_int_eq(res, 0);
}

static int reuse_main(void *arg)
{
	struct seen a, b, c;
	struct af_loop *loop = af_loop_current();
	unsigned pooled;

	(void)arg;
	spawn_join(record_stack, &a, NULL);
	pooled = loop->stacks.len;
	ck_assert_uint_ge(pooled, 1);
	spawn_join(record_stack, &b, NULL);
	ck_assert_ptr_eq(b.lo, a.lo);
	ck_assert_uint_eq(loop->stacks.len, pooled);

	/* Other sizes are not pooled: they neither take nor leave one. */
	spawn_join(record_stack, &c, &(struct af_task_opts){ .stack_size = 128 * KiB });
	ck_assert_ptr_ne(c.lo, a.lo);
	ck_assert_uint_eq(loop->stacks.len, pooled);
	return 0;
}

START_TEST(a_finished_tasks_stack_is_reused_by_the_next_task)
{
	ck_assert_int_eq(run_main(reuse_main, NULL), 0);
}
END_TEST

static int parked(void *arg)
{
	(void)arg;
	return af_yield();
}

static int cache_main(void *arg)
{
	struct af_task *t[4];
	struct af_loop *loop = af_loop_current();

	(void)arg;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(af_task_spawn(&t[i], parked, NULL), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	/* Four stacks came back; the loop keeps only stack_cache of them. */
	ck_assert_uint_eq(loop->stacks.len, 2);
	return 0;
}

START_TEST(the_pool_keeps_at_most_stack_cache_stacks)
{
	struct af_loop *loop;
	struct af_loop_opts opts = { .stack_cache = 2 };
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, &opts), 0);
	ck_assert_int_eq(af_loop_run(loop, cache_main, NULL, &result), 0);
	ck_assert_int_eq(result, 0);
	af_loop_free(loop);
}
END_TEST

/* ---- sizes ---------------------------------------------------------------------------- */

struct sized {
	int used;
	struct seen seen;
};

static int use_64k(void *arg)
{
	struct sized *sz = arg;
	volatile char big[64 * 1024];

	big[0] = 1;
	big[sizeof(big) - 1] = 2;
	sz->used = big[0] + big[sizeof(big) - 1];
	return record_stack(&sz->seen);
}

static int sizes_main(void *arg)
{
	struct sized custom = { 0 }, dflt = { 0 };
	struct af_task *t;
	size_t want = (100000 + page() - 1) / page() * page();

	(void)arg;
	spawn_join(use_64k, &custom, &(struct af_task_opts){ .stack_size = 100000 });
	ck_assert_int_eq(custom.used, 3);
	ck_assert_uint_eq(custom.seen.size, want);
	spawn_join(record_stack, &dflt.seen, NULL);
	ck_assert_uint_eq(dflt.seen.size, AF_STACK_DEFAULT);

	/* The smallest size allowed, and one byte less. */
	spawn_join(record_stack, &dflt.seen, &(struct af_task_opts){ .stack_size = 16 * KiB });
	ck_assert_uint_eq(dflt.seen.size, 16 * KiB);
	ck_assert_int_eq(af_task_spawn_opts(&t, record_stack, &dflt.seen,
					    &(struct af_task_opts){ .stack_size = 16 * KiB - 1 }),
			 -EINVAL);
	return 0;
}

START_TEST(a_task_with_a_custom_stack_size_gets_that_size_rounded_to_pages)
{
	ck_assert_int_eq(run_main(sizes_main, NULL), 0);
}
END_TEST

static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, resident = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
	fclose(f);
	return resident * (long)page();
}

struct lazy {
	long before, inside;
	size_t size;
};

static int lazy_task(void *arg)
{
	struct lazy *l = arg;
	struct af_task *t = af_task_current();

	l->size = t->stack.size;
	/* The far end of the stack is usable, and touching it commits a page,
	 * not the 64 MiB in between. */
	((volatile char *)t->stack.lo)[0] = 1;
	l->inside = rss_bytes();
	return 0;
}

static int lazy_main(void *arg)
{
	struct lazy *l = arg;

	l->before = rss_bytes();
	spawn_join(lazy_task, l, &(struct af_task_opts){ .stack_size = 64 * MiB });
	return 0;
}

START_TEST(a_large_stack_is_committed_lazily)
{
	struct lazy l = { 0 };

	ck_assert_int_eq(run_main(lazy_main, &l), 0);
	ck_assert_uint_eq(l.size, 64 * MiB);
	ck_assert_msg(l.inside - l.before < (long)(8 * MiB),
		      "RSS grew by %ld bytes for a 64 MiB stack", l.inside - l.before);
}
END_TEST

/* ---- the guard ------------------------------------------------------------------------ */

/* The protection of the mapping that holds @addr, from /proc/self/maps. */
static bool mapping_of(const void *addr, uintptr_t *lo, uintptr_t *hi, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	ck_assert_ptr_nonnull(f);
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx %4s", &a, &b, perms) == 3 &&
		    (uintptr_t)addr >= a && (uintptr_t)addr < b) {
			*lo = a;
			*hi = b;
			found = true;
		}
	}
	fclose(f);
	return found;
}

struct guard {
	uintptr_t map, lo;
	uintptr_t g_lo, g_hi, s_lo;
	char g_perms[5], s_perms[5];
	bool g_found, s_found;
	ssize_t guard_write, stack_write;
	int guard_errno;
};

static int guard_task(void *arg)
{
	struct guard *g = arg;
	struct af_task *t = af_task_current();
	uintptr_t s_hi;
	int fds[2];

	g->map = (uintptr_t)t->stack.map;
	g->lo = (uintptr_t)t->stack.lo;
	g->g_found = mapping_of((char *)t->stack.lo - 1, &g->g_lo, &g->g_hi, g->g_perms);
	g->s_found = mapping_of(t->stack.lo, &g->s_lo, &s_hi, g->s_perms);
	/* write(2) reads its buffer in the kernel: EFAULT from the guard
	 * proves it unreadable without taking a signal. */
	ck_assert_int_eq(pipe(fds), 0);
	errno = 0;
	g->guard_write = write(fds[1], (char *)t->stack.lo - 1, 1);
	g->guard_errno = errno;
	g->stack_write = write(fds[1], t->stack.lo, 1);
	close(fds[0]);
	close(fds[1]);
	return 0;
}

START_TEST(the_page_below_each_stack_is_a_prot_none_guard)
{
	struct guard g = { 0 };

	ck_assert_int_eq(run_main(guard_task, &g), 0);
	ck_assert_uint_ge(g.lo - g.map, page());
	ck_assert(g.g_found);
	ck_assert_str_eq(g.g_perms, "---p");
	ck_assert_uint_le(g.g_lo, g.map);
	ck_assert_uint_eq(g.g_hi, g.lo);
	ck_assert(g.s_found);
	ck_assert_str_eq(g.s_perms, "rw-p");
	ck_assert_int_eq(g.guard_write, -1);
	ck_assert_int_eq(g.guard_errno, EFAULT);
	ck_assert_int_eq(g.stack_write, 1);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("stack");
	TCase *tc;

	tc = tcase_create("overflow");
	tcase_add_test(tc, a_task_that_overflows_its_stack_dies_by_sigsegv_naming_the_task);
	tcase_add_test(tc, an_overflow_in_a_loop_on_another_thread_is_reported_too);
	tcase_add_test(tc, a_fault_that_is_not_an_overflow_reaches_the_previous_sigsegv_handler);
	suite_add_tcase(s, tc);

	tc = tcase_create("pool");
	tcase_add_test(tc, a_finished_tasks_stack_is_reused_by_the_next_task);
	tcase_add_test(tc, the_pool_keeps_at_most_stack_cache_stacks);
	suite_add_tcase(s, tc);

	tc = tcase_create("sizes");
	tcase_add_test(tc, a_task_with_a_custom_stack_size_gets_that_size_rounded_to_pages);
	tcase_add_test(tc, a_large_stack_is_committed_lazily);
	suite_add_tcase(s, tc);

	tc = tcase_create("guard");
	tcase_add_test(tc, the_page_below_each_stack_is_a_prot_none_guard);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
