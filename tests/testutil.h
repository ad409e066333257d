/* SPDX-License-Identifier: MIT */
/* Shared helpers for the Check suites. Each suite is its own program
 * (tests/test-<module>.c) run by meson with the TAP protocol. */
#ifndef AF_TESTUTIL_H
#define AF_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <asyncflag.h>

/* Run @fn as the main task of a fresh loop; fail the test if the loop could
 * not run, and return main's result. */
static inline int run_main(af_task_fn fn, void *arg)
{
	struct af_loop *loop;
	int r, result = -1;

	r = af_loop_new(&loop, NULL);
	ck_assert_msg(r == 0, "af_loop_new: %s", af_strerror(r));
	r = af_loop_run(loop, fn, arg, &result);
	ck_assert_msg(r == 0, "af_loop_run: %s", af_strerror(r));
	af_loop_free(loop);
	return result;
}

/* An ordered log of what tasks did, to assert interleavings exactly. */
struct trace {
	char buf[1024];
	size_t len;
};

static inline void trace_add(struct trace *t, const char *what)
{
	int n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s%s",
			 t->len ? " " : "", what);

	if (n > 0 && (size_t)n < sizeof(t->buf) - t->len)
		t->len += (size_t)n;
}

/* printf-style trace_add(). */
static inline void trace_addf(struct trace *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void trace_addf(struct trace *t, const char *fmt, ...)
{
	char buf[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	trace_add(t, buf);
}

/* Short names for results in traces. */
static inline const char *errname(int r)
{
	switch (r) {
	case 0: return "0";
	case -ECANCELED: return "ECANCELED";
	case -ETIMEDOUT: return "ETIMEDOUT";
	case -EINVAL: return "EINVAL";
	case -EPERM: return "EPERM";
	case -EBUSY: return "EBUSY";
	case -EDEADLK: return "EDEADLK";
	case -EALREADY: return "EALREADY";
	default: return "other";
	}
}

#define US ((int64_t)1000)
#define MS ((int64_t)1000 * 1000)
/* Generous: only a lost wake-up or completion ever waits this long. */
#define LONG_NS ((int64_t)10 * 1000 * MS)

static inline uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* Sleep the calling thread (not a task) for @ms, through signals. */
static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Run @fn in a forked child with its stderr captured into @out (@cap
 * bytes, NUL-terminated); returns the child's wait status. The fork keeps
 * deaths by signal, and handlers the test installs, away from Check. */
static inline int in_child(void (*fn)(void *), void *arg, char *out, size_t cap)
{
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
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	while (len < cap - 1 && (n = read(fds[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/* Run @fn(@arg, @out) in a forked child and copy the @size bytes it leaves
 * in @out (zeroed first) back to the caller's @out: for tests that change
 * their process for good, as a seccomp filter does. */
static inline void in_child_report(void (*fn)(void *arg, void *out), void *arg, void *out,
				   size_t size)
{
	int fds[2], status = 0;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		memset(out, 0, size);
		fn(arg, out);
		if (write(fds[1], out, size) != (ssize_t)size)
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], out, size);
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	/* A child that died before its report says how. */
	ck_assert_msg(n == (ssize_t)size && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the child reported %zd of %zu bytes and %s %d", n, size,
		      WIFSIGNALED(status) ? "was killed by signal" : "exited with",
		      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

#ifdef AF_TESTUTIL_SUBMIT_HOOK
#include <dlfcn.h>
#include <pthread.h>

/* Stands in for liburing's io_uring_submit (the executable's definition
 * wins over the shared library's) so a test can make the next submit_busy
 * submits on its thread fail with -EBUSY, as the kernel's do when its
 * completion queue overflowed or it is short of memory. Loops on several
 * threads call it at once: resolve once, inject per thread. Opt-in, as
 * only one file of a program may define it. */
struct io_uring;
static _Thread_local int submit_busy;
static int (*real_submit)(struct io_uring *);
static pthread_once_t real_submit_once = PTHREAD_ONCE_INIT;

static inline void find_real_submit(void)
{
	real_submit = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
}

int io_uring_submit(struct io_uring *ring);
int io_uring_submit(struct io_uring *ring)
{
	pthread_once(&real_submit_once, find_real_submit);
	if (submit_busy > 0) {
		submit_busy--;
		return -EBUSY;
	}
	return real_submit(ring);
}
#endif

/* ---- seccomp --------------------------------------------------------------------------- */

/* The filters test what container profiles do, and match on this arch. */
#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__arm__) && defined(__ARMEL__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_ARM
#endif

#ifdef THIS_AUDIT_ARCH
/* How every filter here starts: a call made through another architecture's
 * ABI passes untouched, and what follows matches on the call's number. */
#define SECCOMP_BY_NR                                                          \
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)), \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),             \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),                           \
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))

/* System call @nr fails with errno @err (two statements). */
#define SECCOMP_REFUSE(nr, err)                                                \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                        \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)(err) & SECCOMP_RET_DATA))
#endif

/* Install @prog for the calling thread and all it later starts; it can
 * never be removed, so only ever call this in a child. */
static inline int seccomp_install(const struct sock_fprog *prog)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0)
		return -errno;
	return 0;
}

/* ---- the backend the suite runs on (AF_BACKEND) ------------------------------ */

/* Whether loops made with default options run on epoll: AF_BACKEND=epoll,
 * or io_uring refused on this machine. */
static inline bool on_epoll(void)
{
	static int cached = -1;

	if (cached < 0) {
		struct af_loop *loop;

		cached = af_loop_new(&loop, NULL) == 0 &&
			 (af_loop_features(loop) & AF_FEATURE_BACKEND_EPOLL);
		af_loop_free(loop);
	}
	return cached;
}

/* Tests that Check never runs, reported to meson as TAP skips. */
#define SKIPS_MAX 32
static struct {
	const char *name, *reason;
} skips[SKIPS_MAX];
static int nskips;

/* Register @t, unless @skip: then it is reported skipped with @reason. */
static inline void tcase_add_test_unless(TCase *tc, const TTest *t, bool skip, const char *reason)
{
	if (!skip) {
		tcase_add_test(tc, t);
		return;
	}
	if (nskips == SKIPS_MAX) {
		fprintf(stderr, "testutil.h: raise SKIPS_MAX\n");
		exit(EXIT_FAILURE);
	}
	skips[nskips].name = t->name;
	skips[nskips].reason = reason;
	nskips++;
}

/* Register @t, unless the suite runs on epoll: then it is reported
 * skipped with @reason (for tests of what only io_uring does). */
static inline void tcase_add_uring_test(TCase *tc, const TTest *t, const char *reason)
{
	tcase_add_test_unless(tc, t, on_epoll(), reason);
}

/* Copy Check's TAP from @path to @out, then the skips, then the plan. */
static inline void tap_with_skips(const char *path, FILE *out)
{
	FILE *in = fopen(path, "r");
	char line[4096];
	int n = 0;

	if (!in) {
		perror(path);
		exit(EXIT_FAILURE);
	}
	while (fgets(line, sizeof(line), in))
		if (sscanf(line, "1..%d", &n) != 1)
			fputs(line, out);
	fclose(in);
	for (int i = 0; i < nskips; i++)
		fprintf(out, "ok %d - %s # SKIP %s\n", n + i + 1, skips[i].name, skips[i].reason);
	fprintf(out, "1..%d\n", n + nskips);
	fflush(out);
}

/* Build and run a suite with TAP output for meson; the exit code says
 * whether every test passed. Check writes the plan itself, so with skips
 * its TAP goes through a file that gets the skips added. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	const char *tap = getenv("CK_TAP_LOG_FILE_NAME");
	char path[] = "/tmp/af-tap-XXXXXX";
	int failed, fd = -1;

	if (nskips && tap && strcmp(tap, "/dev/stdout") == 0) {
		fd = mkstemp(path);
		if (fd < 0) {
			perror("mkstemp");
			return EXIT_FAILURE;
		}
		setenv("CK_TAP_LOG_FILE_NAME", path, 1);
	}
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (fd >= 0) {
		tap_with_skips(path, stdout);
		unlink(path);
		close(fd);
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- stress rounds under emulation (AF_TEST_SCALE) ------------------------ */

/* @rounds scaled by AF_TEST_SCALE (a factor, 0.1 for a tenth), at least
 * one. The qemu guests set it: under software emulation every round costs
 * 10 to 50 times what it does on the host, and what the guests are for (a
 * real kernel, the arm64 switch) does not need the host's round counts.
 * Unset, or anything but a number in (0, 1], gives @rounds. */
static inline long test_rounds(long rounds)
{
	/* In millionths; 0 until read. Stress threads call this in their loop
	 * conditions, concurrently: every thread computes the same value from
	 * the same environment, so a relaxed load and store are enough on
	 * any architecture (no other memory is published through it). */
	static atomic_long ppm;
	long f = atomic_load_explicit(&ppm, memory_order_relaxed);

	if (f == 0) {
		const char *env = getenv("AF_TEST_SCALE");
		char *end;
		double d = env ? strtod(env, &end) : 1;

		f = env && end != env && *end == '\0' && d > 0 && d <= 1 ? (long)(d * 1e6) : 1000000;
		f = f > 0 ? f : 1;
		atomic_store_explicit(&ppm, f, memory_order_relaxed);
	}
	/* 64-bit: armhf's long would overflow at 2148 rounds. */
	int64_t n = (int64_t)rounds * f / 1000000;

	return n >= 1 ? (long)n : 1;
}

#endif
