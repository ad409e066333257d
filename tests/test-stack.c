/* SPDX-License-Identifier: MIT */
/* Task stacks: overflow reporting, the per-loop pool, sizes, lazy commit
 * and the guard below each stack. */
#include <linux/filter.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

static void overflow_child(void *arg)
{
	_exit(af_run(overflow_main, arg));
}

START_TEST(a_task_that_overflows_its_stack_dies_by_sigsegv_naming_the_task)
{
	static const char name[] = "deep-diver";
	static const char want[] = "stack overflow in task \"deep-diver\"";
	char out[4096];
	int status = in_child(overflow_child, (void *)name, out, sizeof(out));

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

static void overflow_thread_child(void *arg)
{
	pthread_t th;

	if (pthread_create(&th, NULL, overflow_thread, arg) != 0)
		_exit(100);
	pthread_join(th, NULL);
	_exit(101);
}

START_TEST(an_overflow_in_a_loop_on_another_thread_is_reported_too)
{
	static const char want[] = "stack overflow in task \"thread-diver\"";
	char out[4096];
	int status = in_child(overflow_thread_child, (void *)"thread-diver", out, sizeof(out));

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

struct faulter {
	af_task_fn fn;
	void *arg;
};

/* 100 if the faulting task could not spawn, 101 if its fault was survived. */
static int faulter_main(void *arg)
{
	const struct faulter *f = arg;
	struct af_task *t;

	if (af_task_spawn(&t, f->fn, f->arg) < 0)
		return 100;
	af_task_join(t, NULL);
	return 101;
}

/* In a child: with the user's own SIGSEGV handler installed, runs
 * @fn(@arg) in a task and exits with what af_run() returned. */
static void fault_with_users_handler(af_task_fn fn, void *arg)
{
	struct faulter f = { fn, arg };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = users_segv_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	_exit(af_run(faulter_main, &f));
}

static void wild_child(void *arg)
{
	(void)arg;
	/* Far from any task stack: the first page is never mapped. */
	fault_with_users_handler(wild_write, (void *)(uintptr_t)64);
}

START_TEST(a_fault_that_is_not_an_overflow_reaches_the_previous_sigsegv_handler)
{
	char out[4096];
	int status = in_child(wild_child, NULL, out, sizeof(out));

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
		      "the previous handler did not run (status 0x%x); stderr: %s", status, out);
	ck_assert_ptr_nonnull(strstr(out, "users-handler"));
	ck_assert_ptr_null(strstr(out, "stack overflow"));
}
END_TEST

/* ---- signals that are not overflows ---------------------------------------------------- */

static void counting_handler(int sig, siginfo_t *si, void *uc);

enum sender { BY_RAISE, BY_KILL, BY_PTHREAD_KILL, BY_SIGQUEUE, BY_TGKILL };

static void send_segv(enum sender how)
{
	union sigval v = { .sival_int = 7 };

	switch (how) {
	case BY_RAISE:
		raise(SIGSEGV);
		break;
	case BY_KILL:
		kill(getpid(), SIGSEGV);
		break;
	case BY_PTHREAD_KILL:
		pthread_kill(pthread_self(), SIGSEGV);
		break;
	case BY_SIGQUEUE:
		sigqueue(getpid(), SIGSEGV, v);
		break;
	case BY_TGKILL:
		syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGSEGV);
		break;
	}
}

static int sending_task(void *arg)
{
	send_segv((enum sender)(intptr_t)arg);
	return 0;
}

static int send_main(void *arg)
{
	struct af_task *t;

	if (af_task_spawn(&t, sending_task, arg) < 0)
		return 100;
	af_task_join(t, NULL);
	return 0;
}

static int nothing_main(void *arg)
{
	(void)arg;
	return 0;
}

/* The handler is installed by the first loop run and stays. */
static void install_library_handler(void)
{
	/* "Without the library" means the default action here, even under
	 * a sanitizer that installed a handler of its own. */
	struct sigaction now;

	if (sigaction(SIGSEGV, NULL, &now) == 0 && now.sa_handler != SIG_IGN &&
	    now.sa_sigaction != counting_handler)
		signal(SIGSEGV, SIG_DFL);
	if (af_run(nothing_main, NULL) != 0)
		_exit(100);
}

#define OUTSIDE_A_TASK 0x100

/* One signal only: the process must die of it, not of a second one. */
static void child_sends(void *arg)
{
	intptr_t how = (intptr_t)arg;

	install_library_handler();
	if (how & OUTSIDE_A_TASK)
		send_segv((enum sender)(how & ~OUTSIDE_A_TASK));
	else
		af_run(send_main, arg);
	_exit(0);
}

START_TEST(a_sent_sigsegv_ends_the_process_by_sigsegv_as_without_the_library)
{
	char out[4096];

	for (intptr_t where = 0; where <= OUTSIDE_A_TASK; where += OUTSIDE_A_TASK) {
		for (intptr_t how = BY_RAISE; how <= BY_TGKILL; how++) {
			int status = in_child(child_sends, (void *)(how | where), out, sizeof(out));

			ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
				      "sender %d%s: status 0x%x; stderr: %s", (int)how,
				      where ? " outside a task" : "", status, out);
			ck_assert_ptr_null(strstr(out, "stack overflow"));
		}
	}
}
END_TEST

static void child_ignores_then_overflows(void *arg)
{
	struct sigaction now;

	(void)arg;
	signal(SIGSEGV, SIG_IGN);
	install_library_handler();
	/* Ignored as without the library, every time. */
	for (intptr_t how = BY_RAISE; how <= BY_TGKILL; how++)
		send_segv((enum sender)how);
	send_segv(BY_RAISE);
	if (sigaction(SIGSEGV, NULL, &now) < 0 || now.sa_handler == SIG_DFL)
		_exit(30);
	/* And an overflow after them is still reported (a real fault with
	 * SIGSEGV ignored ends the process). */
	_exit(af_run(overflow_main, (void *)"late-diver"));
}

START_TEST(a_previous_sig_ign_stays_ignored_for_sent_signals_and_overflows_are_still_reported)
{
	char out[4096];
	int status = in_child(child_ignores_then_overflows, NULL, out, sizeof(out));

	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "status 0x%x; stderr: %s", status, out);
	ck_assert_ptr_nonnull(strstr(out, "stack overflow in task \"late-diver\""));
}
END_TEST

/* A user handler that counts, checks the mask it runs with, and returns. */
static volatile sig_atomic_t user_calls, user_bad_mask, user_last_code;
static bool user_wants_nodefer;

static void counting_handler(int sig, siginfo_t *si, void *uc)
{
	sigset_t now;

	(void)uc;
	user_calls++;
	user_last_code = si->si_code;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	/* Its sa_mask (SIGUSR2) applies; SIGSEGV itself unless SA_NODEFER. */
	if (sigismember(&now, SIGUSR2) != 1 ||
	    sigismember(&now, sig) != (user_wants_nodefer ? 0 : 1))
		user_bad_mask++;
}

static void install_counting(int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = counting_handler;
	sa.sa_flags = SA_SIGINFO | flags;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	user_wants_nodefer = flags & SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
}

static void child_user_handler(void *arg)
{
	install_counting((int)(intptr_t)arg);
	install_library_handler();
	for (intptr_t how = BY_RAISE; how <= BY_TGKILL; how++) {
		af_run(send_main, (void *)how);
		send_segv((enum sender)how);
	}
	if (user_calls != 2 * (BY_TGKILL + 1))
		_exit(20 + (int)user_calls);
	if (user_bad_mask)
		_exit(60);
	if (user_last_code != SI_TKILL)
		_exit(61);
	_exit(0);
}

START_TEST(a_sent_sigsegv_reaches_the_previous_handler_with_its_mask_every_time)
{
	char out[4096];
	int status;

	status = in_child(child_user_handler, (void *)(intptr_t)0, out, sizeof(out));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "status 0x%x; stderr: %s", status, out);
	status = in_child(child_user_handler, (void *)(intptr_t)SA_NODEFER, out, sizeof(out));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "SA_NODEFER: status 0x%x; stderr: %s", status, out);
}
END_TEST

static void child_resethand(void *arg)
{
	(void)arg;
	install_counting(SA_RESETHAND);
	install_library_handler();
	raise(SIGSEGV);
	if (user_calls != 1)
		_exit(21);
	/* One-shot: the second goes to the default action. */
	raise(SIGSEGV);
	_exit(22);
}

START_TEST(a_previous_sa_resethand_handler_runs_once_and_the_next_sigsegv_is_fatal)
{
	char out[4096];
	int status = in_child(child_resethand, NULL, out, sizeof(out));

	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "status 0x%x; stderr: %s", status, out);
}
END_TEST

/* A fault just below a task's guard, in a mapping of its own, is that
 * mapping's fault: no overflow report, the user's handler runs. */
static int neighbour_task(void *arg)
{
	struct af_task *self = af_loop_current()->current;
	size_t pg = page();
	char *below = (char *)self->stack.map - pg;
	void *m;

	(void)arg;
	m = mmap(below, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (m != below)
		_exit(77); /* something is mapped there already */
	*(volatile char *)below = 1;
	return 0;
}

static void child_neighbour(void *arg)
{
	(void)arg;
	fault_with_users_handler(neighbour_task, NULL);
}

START_TEST(a_fault_in_a_mapping_just_below_a_stack_guard_is_not_called_an_overflow)
{
	char out[4096];
	int status = in_child(child_neighbour, NULL, out, sizeof(out));

	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		return; /* no free page below this stack: nothing to check */
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
		      "status 0x%x; stderr: %s", status, out);
	ck_assert_ptr_null(strstr(out, "stack overflow"));
}
END_TEST

/* The protection of the page holding @addr, from /proc/self/maps. */
static bool page_is_prot_none(const void *addr)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool none = false;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 &&
		    (uintptr_t)addr >= lo && (uintptr_t)addr < hi)
			none = strncmp(perms, "---", 3) == 0;
	}
	fclose(f);
	return none;
}

struct alt_seen {
	stack_t ss;
	bool guarded;
};

static int alt_task(void *arg)
{
	struct alt_seen *a = arg;

	ck_assert_int_eq(sigaltstack(NULL, &a->ss), 0);
	a->guarded = page_is_prot_none((char *)a->ss.ss_sp - 1);
	return 0;
}

static int alt_main(void *arg)
{
	struct af_task *t;

	ck_assert_int_eq(af_task_spawn(&t, alt_task, arg), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return 0;
}

START_TEST(the_librarys_alternate_signal_stack_has_a_guard_page_below_it)
{
	struct alt_seen a = { 0 };
	stack_t off = { .ss_flags = SS_DISABLE };

	/* A sanitizer may have given this thread one already. */
	ck_assert_int_eq(sigaltstack(&off, NULL), 0);

	ck_assert_int_eq(af_run(alt_main, &a), 0);
	ck_assert(!(a.ss.ss_flags & SS_DISABLE));
	ck_assert(a.guarded);
}
END_TEST

static int install_alt_main(void *arg)
{
	stack_t *mine = arg;

	ck_assert_int_eq(sigaltstack(mine, NULL), 0);
	return 0;
}

START_TEST(an_alternate_stack_the_application_installs_is_left_alone)
{
	size_t size = 64 * KiB;
	char *mem = malloc(size);
	stack_t mine = { .ss_sp = mem, .ss_size = size }, now, off = { .ss_flags = SS_DISABLE };
	struct alt_seen a = { 0 };

	ck_assert_ptr_nonnull(mem);
	/* Installed before the loop runs: the library uses it, and keeps it. */
	ck_assert_int_eq(sigaltstack(&mine, NULL), 0);
	ck_assert_int_eq(af_run(alt_main, &a), 0);
	ck_assert_ptr_eq(a.ss.ss_sp, mem);
	ck_assert_int_eq(sigaltstack(NULL, &now), 0);
	ck_assert_ptr_eq(now.ss_sp, mem);
	ck_assert(!(now.ss_flags & SS_DISABLE));
	/* Installed by a task while the library's own is in place. */
	ck_assert_int_eq(sigaltstack(&off, NULL), 0);
	ck_assert_int_eq(af_run(install_alt_main, &mine), 0);
	ck_assert_int_eq(sigaltstack(NULL, &now), 0);
	ck_assert_ptr_eq(now.ss_sp, mem);
	ck_assert(!(now.ss_flags & SS_DISABLE));
	ck_assert_int_eq(sigaltstack(&off, NULL), 0);
	free(mem);
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

/* Run @main_fn as the main task of a new loop keeping @cache warm stacks. */
static void run_with_stack_cache(unsigned cache, int (*main_fn)(void *))
{
	struct af_loop *loop;
	struct af_loop_opts opts = { .stack_cache = cache };
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, &opts), 0);
	ck_assert_int_eq(af_loop_run(loop, main_fn, NULL, &result), 0);
	ck_assert_int_eq(result, 0);
	af_loop_free(loop);
}

/* Sleep until the loop has slept and trimmed its pool to stack_cache. A
 * 1 ms sleep on a loaded machine (or a guest) may find its deadline passed
 * before the loop looks, and the loop then peeks instead of sleeping: no
 * trim. Another sleep does it; a pool never trimmed fails the caller's
 * asserts after the last try. */
static void sleep_until_trimmed(struct af_loop *loop)
{
	const struct af__stack_pool *p = &loop->stacks;

	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(af_sleep_ms(1), 0);
		if (p->len - p->ncold <= p->cap && p->nspare_tasks <= p->cap)
			return;
	}
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
	/* Four stacks came back, all still holding their pages while the
	 * loop is busy... */
	ck_assert_uint_eq(loop->stacks.len, 4);
	ck_assert_uint_eq(loop->stacks.ncold, 0);
	/* ...and when it sleeps, all but stack_cache give them back. */
	sleep_until_trimmed(loop);
	ck_assert_uint_eq(loop->stacks.len, 4);
	ck_assert_uint_eq(loop->stacks.ncold, 2);
	return 0;
}

START_TEST(past_stack_cache_freed_stacks_give_their_pages_back_when_the_loop_sleeps)
{
	run_with_stack_cache(2, cache_main);
}
END_TEST

static int record_backed(void *arg)
{
	*(bool *)arg = af_task_current()->stack.backed;
	return 0;
}

/* Whether the next default-size task finds its stack backed. */
static bool next_backed(void)
{
	struct af_task *t;
	bool backed = false;

	ck_assert_int_eq(af_task_spawn(&t, record_backed, &backed), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	return backed;
}

/* Spawn two default-size tasks at once: whether each found its stack backed. */
static void two_backed(bool backed[2])
{
	struct af_task *t[2];

	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(af_task_spawn(&t[i], record_backed, &backed[i]), 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
}

static int backed_main(void *arg)
{
	bool b[2];

	(void)arg;
	/* The main task holds the first slot: the next one is fresh... */
	ck_assert(!next_backed());
	/* ...and the slot it left is still warm for the next task. */
	ck_assert(next_backed());
	/* Two slots back in the pool, then a sleep trims all but one
	 * (stack_cache 1): the warm one goes out first, the cold one after. */
	two_backed(b);
	sleep_until_trimmed(af_loop_current());
	two_backed(b);
	ck_assert(b[0]);
	ck_assert(!b[1]);
	return 0;
}

START_TEST(only_a_slot_whose_pages_are_still_there_is_marked_backed)
{
	run_with_stack_cache(1, backed_main);
}
END_TEST

static int spares_main(void *arg)
{
	struct af_task *t[4], *again;
	struct af_loop *loop = af_loop_current();
	/* ASan builds give every struct back to malloc, to catch a handle
	 * used after its task was freed. */
#if defined(__SANITIZE_ADDRESS__)
	const size_t kept = 0, trimmed = 0;
#else
	const size_t kept = 4, trimmed = 2;
#endif

	(void)arg;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(af_task_spawn(&t[i], parked, NULL), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
	ck_assert_uint_eq(loop->stacks.nspare_tasks, kept);
	/* The most recently freed comes back first: the likeliest cached. */
	ck_assert_int_eq(af_task_spawn(&again, parked, NULL), 0);
	if (kept)
		ck_assert_ptr_eq(again, t[3]);
	ck_assert_int_eq(af_task_join(again, NULL), 0);
	sleep_until_trimmed(loop);
	ck_assert_uint_eq(loop->stacks.nspare_tasks, trimmed);
	return 0;
}

START_TEST(freed_task_structs_are_reused_and_trimmed_to_stack_cache_when_the_loop_sleeps)
{
	run_with_stack_cache(2, spares_main);
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

static void guard_check(const struct guard *g, bool markers)
{
	ck_assert_uint_ge(g->lo - g->map, page());
	ck_assert(g->g_found);
	ck_assert(g->s_found);
	ck_assert_str_eq(g->s_perms, "rw-p");
	if (markers) {
		/* A marker lives inside the stack's mapping: no split. */
		ck_assert_str_eq(g->g_perms, "rw-p");
		ck_assert_uint_eq(g->g_lo, g->s_lo);
	} else {
		ck_assert_str_eq(g->g_perms, "---p");
		ck_assert_uint_le(g->g_lo, g->map);
		ck_assert_uint_eq(g->g_hi, g->lo);
	}
	ck_assert_int_eq(g->guard_write, -1);
	ck_assert_int_eq(g->guard_errno, EFAULT);
	ck_assert_int_eq(g->stack_write, 1);
}

START_TEST(the_region_below_each_stack_faults_on_any_access)
{
	struct guard g = { 0 };

	ck_assert_int_eq(run_main(guard_task, &g), 0);
	guard_check(&g, af__stack_guards_are_markers());
}
END_TEST

static int custom_guard_main(void *arg)
{
	spawn_join(guard_task, arg, &(struct af_task_opts){ .stack_size = 100 * KiB });
	return 0;
}

START_TEST(a_stack_of_another_size_has_the_same_guard)
{
	struct guard g = { 0 };

	ck_assert_int_eq(run_main(custom_guard_main, &g), 0);
	guard_check(&g, af__stack_guards_are_markers());
}
END_TEST

/* ---- kernels before 6.13: no guard markers ------------------------------------------- */

#ifdef THIS_AUDIT_ARCH
/* Answer MADV_GUARD_INSTALL as Linux 6.1 does: EINVAL, unknown advice. */
static void refuse_guard_markers(void)
{
	struct sock_filter f[] = {
		SECCOMP_BY_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 102 /* MADV_GUARD_INSTALL */, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	ck_assert_int_eq(seccomp_install(&prog), 0);
}

struct old_guard {
	struct guard g;
	bool markers;
};

static void old_guard_child(void *arg, void *out)
{
	struct old_guard *o = out;

	(void)arg;
	refuse_guard_markers();
	o->g.guard_write = 0;
	if (run_main(guard_task, &o->g) != 0)
		_exit(3);
	o->markers = af__stack_guards_are_markers();
}

START_TEST(without_guard_markers_each_guard_is_a_prot_none_mapping_of_its_own)
{
	struct old_guard o;

	in_child_report(old_guard_child, NULL, &o, sizeof(o));
	ck_assert(!o.markers);
	guard_check(&o.g, false);
}
END_TEST

static void old_overflow_child(void *arg)
{
	refuse_guard_markers();
	overflow_child(arg);
}

START_TEST(without_guard_markers_an_overflow_is_still_reported)
{
	char out[4096];
	int status = in_child(old_overflow_child, "deep-old", out, sizeof(out));

	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "status 0x%x; stderr: %s", status, out);
	ck_assert_ptr_nonnull(strstr(out, "stack overflow in task \"deep-old\""));
}
END_TEST

static int noop(void *arg)
{
	(void)arg;
	return 0;
}

/* Spawn until the kernel's mapping limit stops us: the spawn that hits it
 * fails, and the tasks spawned before it all run. */
static int map_limit_main(void *arg)
{
	int *spawned = arg, r, res = 1;
	struct af_task **t = NULL;
	size_t room = 0;

	for (;;) {
		if ((size_t)*spawned == room) {
			room = room ? 2 * room : 4096;
			t = realloc(t, room * sizeof(*t));
			ck_assert_ptr_nonnull(t);
		}
		r = af_task_spawn(&t[*spawned], noop, NULL);
		if (r < 0)
			break;
		++*spawned;
	}
	ck_assert_int_eq(r, -ENOMEM);
	for (int i = 0; i < *spawned; i++) {
		ck_assert_int_eq(af_task_join(t[i], &res), 0);
		ck_assert_int_eq(res, 0);
	}
	free(t);
	return 0;
}

static void map_limit_child(void *arg)
{
	struct af_loop *loop;
	struct af_loop_opts opts = { .stack_size = 16 * KiB };
	int result = 1, *spawned = arg;

	refuse_guard_markers();
	if (af_loop_new(&loop, &opts) < 0 || af_loop_run(loop, map_limit_main, spawned, &result) < 0)
		_exit(3);
	af_loop_free(loop);
	fprintf(stderr, "spawned %d\n", *spawned);
	_exit(result);
}

START_TEST(without_guard_markers_the_spawn_past_vm_max_map_count_fails_with_enomem)
{
	char out[4096];
	int spawned = 0, status = in_child(map_limit_child, &spawned, out, sizeof(out));
	const char *line = strstr(out, "spawned ");

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x; stderr: %s",
		      status, out);
	ck_assert_ptr_nonnull(line);
	/* Two mappings a stack: about half of vm.max_map_count. */
	ck_assert_int_ge(atoi(line + 8), 1000);
#if AF_DEBUG
	ck_assert_ptr_nonnull(strstr(out, "af_task_spawn: no stack for the task"));
	ck_assert_ptr_nonnull(strstr(out, "vm.max_map_count = "));
#endif
}
END_TEST
#endif

/* ---- scale ---------------------------------------------------------------------------- */

#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer counts each task's fiber as a thread and dies past
 * 8128 of them. */
#define SCALE_N 4000L
#define SCALE_SANITIZED 1
#elif defined(__SANITIZE_ADDRESS__)
/* ASan's shadow would make 10^6 tasks take minutes and many gigabytes:
 * it runs the same paths with 10^4. */
#define SCALE_N 10000L
#define SCALE_SANITIZED 1
#else
#define SCALE_N 1000000L
#define SCALE_SANITIZED 0
#endif
/* Without guard markers each stack costs two mappings: stay well under
 * the default vm.max_map_count (the spawn past it is tested above). */
#define SCALE_N_OLD_KERNEL (SCALE_N < 10000L ? SCALE_N : 10000L)

static long mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;

	ck_assert_ptr_nonnull(f);
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* The mappings that cover a part of one of @arenas. */
static long arena_mappings(const struct af__stack_arena *arenas, size_t narenas)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	long n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		for (size_t i = 0; i < narenas; i++) {
			uintptr_t a = (uintptr_t)arenas[i].base;

			if (lo < a + arenas[i].len && hi > a) {
				n++;
				break;
			}
		}
	}
	fclose(f);
	return n;
}

struct scale {
	struct af_event ev;
	long n, parked, resumed;
	long maps_before, maps_parked, arena_maps;
	struct af__stack_arena *arenas;   /* a copy, to check after the loop is gone */
	size_t narenas;
	long rss_before, rss_parked;
};

static int scale_waiter(void *arg)
{
	struct scale *sc = arg;
	int r;

	sc->parked++;
	r = af_event_wait(&sc->ev);
	sc->resumed++;
	return r;
}

static int scale_main(void *arg)
{
	struct scale *sc = arg;
	const struct af__stack_pool *pool;
	struct af_task **t;
	int res = 1;
	long bad = 0;

	sc->n = af__stack_guards_are_markers() ? SCALE_N : SCALE_N_OLD_KERNEL;
	t = malloc((size_t)sc->n * sizeof(*t));
	ck_assert_ptr_nonnull(t);
	af_event_init(&sc->ev);
	sc->maps_before = mappings();
	sc->rss_before = rss_bytes();
	/* Check asserts are not free (each one writes a record): one per
	 * phase, not per task. */
	for (long i = 0; i < sc->n; i++)
		bad += af_task_spawn(&t[i], scale_waiter, sc) != 0;
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(sc->parked, sc->n);
	sc->maps_parked = mappings();
	pool = &af_loop_current()->stacks;
	sc->narenas = pool->narenas;
	sc->arenas = malloc(sc->narenas * sizeof(*sc->arenas));
	ck_assert_ptr_nonnull(sc->arenas);
	memcpy(sc->arenas, pool->arenas, sc->narenas * sizeof(*sc->arenas));
	sc->arena_maps = arena_mappings(sc->arenas, sc->narenas);
	sc->rss_parked = rss_bytes();
	af_event_set(&sc->ev);
	for (long i = 0; i < sc->n; i++)
		bad += af_task_join(t[i], &res) != 0 || res != 0;
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(sc->resumed, sc->n);
	free(t);
	return 0;
}

START_TEST(a_million_tasks_park_on_one_event_and_everything_is_given_back)
{
	struct af_loop_opts opts = { .stack_size = 16 * KiB };
	struct scale sc = { 0 };
	struct af_loop *loop;
	long maps_before = mappings(), rss_before = rss_bytes();
	int result = 1;

	ck_assert_int_eq(af_loop_new(&loop, &opts), 0);
	ck_assert_int_eq(af_loop_run(loop, scale_main, &sc, &result), 0);
	ck_assert_int_eq(result, 0);
	af_loop_free(loop);
	/* Arenas of up to 256 MiB: one per ~3,000 stacks. */
	ck_assert_uint_le(sc.narenas, (size_t)sc.n / 1000 + 16);
	if (af__stack_guards_are_markers()) {
		/* Guard markers split nothing. */
		ck_assert_int_le(sc.arena_maps, (long)sc.narenas);
		/* The sanitizers map state of their own for every fiber. */
		if (!SCALE_SANITIZED)
			ck_assert_int_le(sc.maps_parked - sc.maps_before, (long)sc.narenas + 16);
	} else {
		ck_assert_int_ge(sc.arena_maps, 2 * sc.n);
	}
	/* One touched stack page, the task and its timer slot (the
	 * sanitizers add shadow and per-fiber state). */
	if (!SCALE_SANITIZED)
		ck_assert_int_le((sc.rss_parked - sc.rss_before) / sc.n, (long)(8 * KiB));
	malloc_trim(0);
	/* Every arena is unmapped, and what the heap keeps is not per task
	 * (the sanitizers keep per-fiber state of their own). */
	ck_assert_int_eq(arena_mappings(sc.arenas, sc.narenas), 0);
	free(sc.arenas);
	if (!SCALE_SANITIZED)
		ck_assert_int_le(mappings(), maps_before + 2);
	/* (The sanitizers' shadow and quarantine keep what they touched.) */
	if (!SCALE_SANITIZED)
		ck_assert_int_le(rss_bytes() - rss_before, (long)(16 * MiB));
}
END_TEST

/* Register @t, or report it skipped with @reason. */
static void add_test_unless(TCase *tc, const TTest *t, bool skip, const char *reason)
{
	if (!skip) {
		tcase_add_test(tc, t);
		return;
	}
	if (nskips == SKIPS_MAX)
		abort();
	skips[nskips].name = t->name;
	skips[nskips].reason = reason;
	nskips++;
}

Suite *make_suite(void)
{
	Suite *s = suite_create("stack");
	TCase *tc;

	tc = tcase_create("overflow");
	tcase_add_test(tc, a_task_that_overflows_its_stack_dies_by_sigsegv_naming_the_task);
	tcase_add_test(tc, an_overflow_in_a_loop_on_another_thread_is_reported_too);
	tcase_add_test(tc, a_fault_that_is_not_an_overflow_reaches_the_previous_sigsegv_handler);
	suite_add_tcase(s, tc);

	tc = tcase_create("signals that are not overflows");
	tcase_add_test(tc, a_sent_sigsegv_ends_the_process_by_sigsegv_as_without_the_library);
	tcase_add_test(tc, a_previous_sig_ign_stays_ignored_for_sent_signals_and_overflows_are_still_reported);
	tcase_add_test(tc, a_sent_sigsegv_reaches_the_previous_handler_with_its_mask_every_time);
	tcase_add_test(tc, a_previous_sa_resethand_handler_runs_once_and_the_next_sigsegv_is_fatal);
	tcase_add_test(tc, a_fault_in_a_mapping_just_below_a_stack_guard_is_not_called_an_overflow);
	tcase_add_test(tc, the_librarys_alternate_signal_stack_has_a_guard_page_below_it);
	tcase_add_test(tc, an_alternate_stack_the_application_installs_is_left_alone);
	suite_add_tcase(s, tc);

	tc = tcase_create("pool");
	tcase_add_test(tc, a_finished_tasks_stack_is_reused_by_the_next_task);
	tcase_add_test(tc, past_stack_cache_freed_stacks_give_their_pages_back_when_the_loop_sleeps);
	tcase_add_test(tc, only_a_slot_whose_pages_are_still_there_is_marked_backed);
	tcase_add_test(tc, freed_task_structs_are_reused_and_trimmed_to_stack_cache_when_the_loop_sleeps);
	suite_add_tcase(s, tc);

	tc = tcase_create("sizes");
	tcase_add_test(tc, a_task_with_a_custom_stack_size_gets_that_size_rounded_to_pages);
	tcase_add_test(tc, a_large_stack_is_committed_lazily);
	suite_add_tcase(s, tc);

	tc = tcase_create("guard");
	tcase_add_test(tc, the_region_below_each_stack_faults_on_any_access);
	tcase_add_test(tc, a_stack_of_another_size_has_the_same_guard);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	/* A million tasks take a while on a loaded machine; no timing here. */
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, a_million_tasks_park_on_one_event_and_everything_is_given_back);
	suite_add_tcase(s, tc);

#ifdef THIS_AUDIT_ARCH
	tc = tcase_create("kernels without guard markers");
	tcase_add_test(tc, without_guard_markers_each_guard_is_a_prot_none_mapping_of_its_own);
	tcase_add_test(tc, without_guard_markers_an_overflow_is_still_reported);
	add_test_unless(tc, without_guard_markers_the_spawn_past_vm_max_map_count_fails_with_enomem,
			SCALE_SANITIZED, "the sanitizers' allocators abort when the process "
			"is out of mappings; the plain and ucontext builds run it");
	suite_add_tcase(s, tc);
#endif
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}
