/* SPDX-License-Identifier: MIT */
/* Task stacks: committed lazily by the kernel as they are touched, with a
 * guard below each, pooled per loop. A task that runs off its stack hits
 * the guard; the SIGSEGV handler here names the task on stderr and lets
 * the process die, instead of letting it corrupt a neighbouring stack.
 *
 * Default-size stacks are slots carved from arenas, big mappings that are
 * never unmapped before the loop is freed; freed slots keep their pages
 * while the loop is busy, and all but af_loop_opts.stack_cache of them
 * give them back when it next sleeps. On Linux 6.13+ each guard is a
 * MADV_GUARD_INSTALL marker, which does not split the arena's mapping: a
 * million stacks cost a few hundred mappings. Older kernels only have
 * mprotect(PROT_NONE), which splits it: two mappings per stack, so
 * vm.max_map_count (65530 by default) caps a process near 32,000 stacks,
 * and the stack past the cap fails af_task_spawn() with -ENOMEM. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"

#if AF_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

/* Linux 6.13's uapi values; bookworm's headers predate them. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* Faults this far below the guard still count as an overflow of this
 * stack: a large frame can step over the guard in one go. */
#define AF_GUARD_SIZE ((size_t)64 * 1024)
#define AF_GUARD_SLACK ((size_t)64 * 1024)
#define AF_ALTSTACK_SIZE ((size_t)64 * 1024)
/* Each arena holds as many slots as all before it (so their number grows
 * with the logarithm of the peak), 16 at first, at most this many bytes:
 * address space only, but RLIMIT_AS counts it. */
#define AF_ARENA_FIRST 16u
#define AF_ARENA_MAX_BYTES ((size_t)256 * 1024 * 1024)
#define AF_TRIM_RUNS 256u
/* Spare task structs freed per sleep, at most: ~100 ns each. */
#define AF_TRIM_TASKS 1024u

size_t af__page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (size_t)p : 4096;
}

size_t af__stack_round(size_t size)
{
	size_t page = af__page_size();

	if (size < AF_STACK_MIN)
		size = AF_STACK_MIN;
	return (size + page - 1) & ~(page - 1);
}

/* ---- guards ----------------------------------------------------------------- */

enum { GUARDS_UNKNOWN, GUARDS_MARKERS, GUARDS_MPROTECT };

/* What the kernel offers: process-wide by nature. relaxed everywhere: it
 * orders no other memory, and two threads that both probe store the same
 * answer, on aarch64 as on x86. */
static atomic_int guard_kind = GUARDS_UNKNOWN;

bool af__stack_guards_are_markers(void)
{
	return atomic_load_explicit(&guard_kind, memory_order_relaxed) == GUARDS_MARKERS;
}

/* Make [@p, @p + AF_GUARD_SIZE) fault on any access. A kernel without
 * guard markers rejects the advice with EINVAL before looking at the
 * range: from then on, mprotect. */
static int guard_install(char *p)
{
	int kind = atomic_load_explicit(&guard_kind, memory_order_relaxed);

	if (kind != GUARDS_MPROTECT) {
		if (madvise(p, AF_GUARD_SIZE, MADV_GUARD_INSTALL) == 0) {
			atomic_store_explicit(&guard_kind, GUARDS_MARKERS, memory_order_relaxed);
			return 0;
		}
		if (errno != EINVAL || kind == GUARDS_MARKERS)
			return -errno;
		atomic_store_explicit(&guard_kind, GUARDS_MPROTECT, memory_order_relaxed);
	}
	return mprotect(p, AF_GUARD_SIZE, PROT_NONE) < 0 ? -errno : 0;
}

/* Say which limit a failed stack hit and how to raise it: the caller only
 * sees -ENOMEM. */
static void explain_no_stack(const char *what, size_t bytes, int err)
{
#if AF_DEBUG
	struct rlimit as;
	long max_maps = -1;
	char as_text[32] = "unlimited";
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");

	if (f) {
		if (fscanf(f, "%ld", &max_maps) != 1)
			max_maps = -1;
		fclose(f);
	}
	if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY)
		snprintf(as_text, sizeof(as_text), "%llu bytes", (unsigned long long)as.rlim_cur);
	af__misuse("af_task_spawn",
		   "no stack for the task: %s of %zu bytes failed (%s). Limits: "
		   "vm.max_map_count = %ld mappings (%s; raise with sysctl "
		   "vm.max_map_count=N), address space (RLIMIT_AS, ulimit -v) %s; "
		   "or give tasks smaller stacks (af_loop_opts.stack_size)",
		   what, bytes, af_strerror(err), max_maps,
		   af__stack_guards_are_markers() ? "a few per thousand stacks here"
						  : "two per stack before Linux 6.13",
		   as_text);
#else
	(void)what;
	(void)bytes;
	(void)err;
#endif
}

/* ---- one-off stacks: sizes other than the loop's ----------------------------- */

static void *map_noreserve(size_t len)
{
	/* MAP_NORESERVE: only touched pages are committed, so a 256 KiB
	 * stack for a task that uses 8 KiB costs 8 KiB. */
	return mmap(NULL, len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
}

static void stack_fill(struct af__stack *st, char *slot, size_t size)
{
	st->map = slot;
	st->map_size = AF_GUARD_SIZE + size;
	st->lo = slot + AF_GUARD_SIZE;
	st->size = size;
	st->backed = false;
#if AF_HAVE_VALGRIND
	st->vg_id = VALGRIND_STACK_REGISTER(st->lo, slot + st->map_size);
#else
	st->vg_id = 0;
#endif
}

static void stack_forget(struct af__stack *st)
{
#if AF_HAVE_VALGRIND
	VALGRIND_STACK_DEREGISTER(st->vg_id);
#endif
	st->map = NULL;
}

static int stack_map(size_t size, struct af__stack *st)
{
	size_t total = size + AF_GUARD_SIZE;
	char *map = map_noreserve(total);
	int r;

	if (map == MAP_FAILED) {
		r = -errno;
		explain_no_stack("mmap", total, r);
		return -ENOMEM;
	}
	r = guard_install(map);
	if (r < 0) {
		explain_no_stack("the guard", AF_GUARD_SIZE, r);
		munmap(map, total);
		return -ENOMEM;
	}
	stack_fill(st, map, size);
	return 0;
}

static void stack_unmap(struct af__stack *st)
{
	munmap(st->map, st->map_size);
	stack_forget(st);
}

/* ---- the pool: arenas of slots ------------------------------------------------ */

void af__stack_pool_init(struct af__stack_pool *pool, size_t size, unsigned cap)
{
	memset(pool, 0, sizeof(*pool));
	pool->size = size;
	pool->cap = cap;
}

static size_t slot_size(const struct af__stack_pool *pool)
{
	return AF_GUARD_SIZE + pool->size;
}

/* Map the next arena, and make room for all its slots in the free list
 * now, so that giving a stack back never allocates. */
static int arena_new(struct af__stack_pool *pool)
{
	size_t slot = slot_size(pool), n = pool->carved ? pool->carved : AF_ARENA_FIRST;
	struct af__stack_arena *arenas = pool->arenas;
	void **items;
	char *base;

	if (n > AF_ARENA_MAX_BYTES / slot)
		n = AF_ARENA_MAX_BYTES / slot ? AF_ARENA_MAX_BYTES / slot : 1;
	if (pool->narenas == pool->arenas_room) {
		size_t room = pool->arenas_room ? 2 * pool->arenas_room : 8;

		arenas = realloc(pool->arenas, room * sizeof(*arenas));
		if (!arenas)
			return -ENOMEM;
		pool->arenas = arenas;
		pool->arenas_room = room;
	}
	items = realloc(pool->items, (pool->room + n) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	pool->items = items;
	pool->room += n;
	base = map_noreserve(n * slot);
	if (base == MAP_FAILED) {
		int r = -errno;

		explain_no_stack("mmap", n * slot, r);
		return -ENOMEM;
	}
	arenas[pool->narenas].base = base;
	arenas[pool->narenas++].len = n * slot;
	pool->next = base;
	pool->end = base + n * slot;
	return 0;
}

/* A slot never used: its guard goes in now, once for the arena's life. */
static int slot_carve(struct af__stack_pool *pool, struct af__stack *out)
{
	int r;

	if (pool->next == pool->end) {
		r = arena_new(pool);
		if (r < 0)
			return r;
	}
	r = guard_install(pool->next);
	if (r < 0) {
		explain_no_stack("the guard", AF_GUARD_SIZE, r);
		return -ENOMEM;
	}
	stack_fill(out, pool->next, pool->size);
	pool->next += slot_size(pool);
	pool->carved++;
	return 0;
}

static void slot_reuse(struct af__stack_pool *pool, struct af__stack *out)
{
	char *slot = pool->items[--pool->len];
	bool warm = pool->len >= pool->ncold;

	if (pool->ncold > pool->len)
		pool->ncold = pool->len;
	stack_fill(out, slot, pool->size);
	/* Under valgrind the frames the slot's last task returned from are
	 * unaddressable to memcheck, which would report the read ahead. */
	out->backed = warm && !RUNNING_ON_VALGRIND;
#if defined(__SANITIZE_ADDRESS__)
	/* The redzones of the last user's frames are still poisoned. A
	 * fresh slot needs nothing: unpoisoning it would commit its whole
	 * shadow and defeat lazy commit. */
	ASAN_UNPOISON_MEMORY_REGION(out->lo, out->size);
#endif
}

int af__stack_get(struct af__stack_pool *pool, size_t size, struct af__stack *out)
{
	if (size != pool->size)
		return stack_map(size, out);
	if (pool->len > 0) {
		slot_reuse(pool, out);
		return 0;
	}
	return slot_carve(pool, out);
}

void af__stack_put(struct af__stack_pool *pool, struct af__stack *st)
{
	if (!st->map)
		return;
	if (st->size != pool->size) {
		stack_unmap(st);
		return;
	}
	pool->items[pool->len++] = st->map;
	stack_forget(st);
}

/* ---- spare task structs -------------------------------------------------- */

/* ASan builds always use malloc, so that a freed task's handle used again
 * is still reported as a use after free. */
void *af__stack_pool_task_alloc(struct af__stack_pool *pool, size_t size)
{
	void *t = pool->spare_tasks;

#if !defined(__SANITIZE_ADDRESS__)
	if (t) {
		pool->spare_tasks = *(void **)t;
		pool->nspare_tasks--;
		return memset(t, 0, size);
	}
#endif
	(void)t;
	return calloc(1, size);
}

void af__stack_pool_task_free(struct af__stack_pool *pool, void *task)
{
#if defined(__SANITIZE_ADDRESS__)
	(void)pool;
	free(task);
#else
	*(void **)task = pool->spare_tasks;
	pool->spare_tasks = task;
	pool->nspare_tasks++;
#endif
}

/* Spares past the cap, newest first (the oldest are the coldest, but
 * reaching them would walk the whole list). */
static void spare_tasks_trim(struct af__stack_pool *pool, size_t keep, unsigned budget)
{
	while (pool->nspare_tasks > keep && budget-- > 0) {
		void *t = pool->spare_tasks;

		pool->spare_tasks = *(void **)t;
		pool->nspare_tasks--;
		free(t);
	}
}

/* ---- trimming and teardown ---------------------------------------------- */

/* Warm slots past the cap turn cold, oldest first: their pages go back to
 * the kernel, and the guard markers stay (MADV_DONTNEED keeps them). Slots
 * freed in a row are usually neighbours, so one call covers a whole run of
 * them, guards included. At most AF_TRIM_RUNS calls per sleep, so that a
 * burst of a million exits costs no long stall before the next wake-up:
 * the rest wait for the next sleep. */
void af__stack_trim(struct af__stack_pool *pool)
{
	size_t slot = slot_size(pool);

	for (unsigned runs = 0; pool->len - pool->ncold > pool->cap && runs < AF_TRIM_RUNS; runs++) {
		char *lo = pool->items[pool->ncold++], *hi = lo + slot;

		while (pool->len - pool->ncold > pool->cap) {
			char *next = pool->items[pool->ncold];

			if (next == hi)
				hi += slot;
			else if (next + slot == lo)
				lo = next;
			else
				break;
			pool->ncold++;
		}
		madvise(lo + AF_GUARD_SIZE, (size_t)(hi - lo) - AF_GUARD_SIZE, MADV_DONTNEED);
	}
	spare_tasks_trim(pool, pool->cap, AF_TRIM_TASKS);
}

void af__stack_pool_free(struct af__stack_pool *pool)
{
	spare_tasks_trim(pool, 0, UINT_MAX);
	for (size_t i = 0; i < pool->narenas; i++)
		munmap(pool->arenas[i].base, pool->arenas[i].len);
	free(pool->arenas);
	free(pool->items);
	af__stack_pool_init(pool, pool->size, pool->cap);
}

/* ---- overflow reporting ---------------------------------------------------- */

/* The disposition we replaced, to pass faults that are not ours on to.
 * Written once under pthread_once before the handler can run, read-only
 * afterwards: process-wide because signal dispositions are. */
static struct sigaction prev_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;
static int segv_install_err;
/* The previous handler had SA_RESETHAND and has run: the kernel would
 * have reset it to SIG_DFL. A signal handler on any thread may take it. */
static atomic_bool prev_segv_spent;

_Static_assert(ATOMIC_BOOL_LOCK_FREE == 2, "a signal handler uses atomic_bool");

static size_t put_str(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at < cap)
		buf[at++] = *s++;
	return at;
}

static size_t put_uint(char *buf, size_t at, size_t cap, uintptr_t v, unsigned base)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v && n < sizeof(tmp));
	while (n > 0 && at < cap)
		buf[at++] = tmp[--n];
	return at;
}

/* Async-signal-safe: formats by hand and writes once. */
static void report_overflow(const struct af_task *t, const void *addr)
{
	char buf[320];
	size_t n = 0, cap = sizeof(buf);

	n = put_str(buf, n, cap, "libasyncflag: stack overflow in task \"");
	n = put_str(buf, n, cap, t->name);
	n = put_str(buf, n, cap, "\": its ");
	n = put_uint(buf, n, cap, t->stack.size, 10);
	n = put_str(buf, n, cap, "-byte stack is exhausted (fault at 0x");
	n = put_uint(buf, n, cap, (uintptr_t)addr, 16);
	n = put_str(buf, n, cap, "). Give it a larger stack with "
				 "af_task_opts.stack_size or af_loop_opts.stack_size.\n");
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}

/* An address is only a fault's when the kernel raised the signal for an
 * access: kill(), raise(), pthread_kill() and sigqueue() (si_code <= 0)
 * and SI_KERNEL fill si_addr with something else (or nothing). */
static bool is_fault(const siginfo_t *si)
{
	return si->si_code > 0 && si->si_code != SI_KERNEL;
}

/* Whether a fault at @a is this stack's overflow: in its guard, or so
 * little below it that a large frame stepped over the guard, but only
 * into a hole: a fault in a neighbouring mapping is that mapping's. */
static bool overflowed(const struct af__stack *st, uintptr_t a)
{
	uintptr_t lo = (uintptr_t)st->map, hi = (uintptr_t)st->lo;
	size_t page = af__page_size();
	unsigned char vec;

	if (!st->map || a >= hi || a + AF_GUARD_SLACK < lo)
		return false;
	if (a >= lo)
		return true;
	/* mincore() fails with ENOMEM exactly for unmapped pages (a plain
	 * system call: safe in a handler). */
	return mincore((void *)(a & ~(uintptr_t)(page - 1)), page, &vec) < 0 && errno == ENOMEM;
}

/* End the process by @sig as its default action would: the signal is
 * blocked while we run, so it stays pending until the unblock, and a
 * sent signal (which no return repeats) is not lost. */
static void die_by(int sig)
{
	struct sigaction dfl;
	sigset_t set;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
	sigemptyset(&set);
	sigaddset(&set, sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	_exit(128 + sig); /* not reached: the default action is to die */
}

/* Run the previous handler as the kernel would have: with the mask of the
 * interrupted code plus its sa_mask, plus @sig unless SA_NODEFER. */
static void call_prev(int sig, siginfo_t *si, void *uc)
{
	const ucontext_t *ctx = uc;
	sigset_t mask, old;

	mask = ctx->uc_sigmask;
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&prev_segv.sa_mask, s) == 1)
			sigaddset(&mask, s);
	if (prev_segv.sa_flags & SA_NODEFER)
		sigdelset(&mask, sig);
	else
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_SETMASK, &mask, &old);
	if (prev_segv.sa_flags & SA_SIGINFO)
		prev_segv.sa_sigaction(sig, si, uc);
	else
		prev_segv.sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Give a signal that is not (only) ours to whatever was there before,
 * with the outcome it would have had without the library. */
static void pass_on(int sig, siginfo_t *si, void *uc)
{
	void (*h)(int) = prev_segv.sa_handler;

	/* relaxed: the flag orders nothing else; only one handler may win. */
	if ((prev_segv.sa_flags & SA_RESETHAND) && h != SIG_DFL && h != SIG_IGN &&
	    atomic_exchange_explicit(&prev_segv_spent, true, memory_order_relaxed))
		h = SIG_DFL;
	if (h == SIG_IGN && !is_fault(si))
		return; /* an ignored sent signal is discarded */
	/* Default, or ignored: the kernel forces the default action on an
	 * ignored fault. */
	if (h == SIG_DFL || h == SIG_IGN)
		die_by(sig);
	call_prev(sig, si, uc);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	struct af_loop *loop = af__tls_loop;
	struct af_task *t = loop ? loop->current : NULL;
	uintptr_t a = (uintptr_t)si->si_addr;

	if (t && is_fault(si) && overflowed(&t->stack, a)) {
		/* The task's stack is gone: nothing can resume it, and a
		 * handler chained now would run on top of the wreck. */
		report_overflow(t, si->si_addr);
		die_by(sig);
	}
	pass_on(sig, si, uc);
	errno = saved_errno;
}

static void install_segv(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &prev_segv) < 0)
		segv_install_err = -errno;
}

/* The alternate stack, with a PROT_NONE page under it: a handler that
 * overruns it faults instead of writing into whatever lies below. */
static size_t altstack_map_size(void)
{
	return AF_ALTSTACK_SIZE + af__page_size();
}

int af__overflow_guard_enter(void **altstack)
{
	size_t page = af__page_size();
	stack_t ss, old;
	char *mem;
	int r;

	*altstack = NULL;
	pthread_once(&segv_once, install_segv);
	if (segv_install_err)
		return segv_install_err;
	/* The handler must run on a stack that is not the overflowing one. A
	 * thread that already has an alternate stack keeps its own. */
	if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
		return 0;
	mem = mmap(NULL, altstack_map_size(), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return -ENOMEM;
	if (mprotect(mem, page, PROT_NONE) < 0)
		goto err_unmap;
	ss.ss_sp = mem + page;
	ss.ss_size = AF_ALTSTACK_SIZE;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL) < 0)
		goto err_unmap;
	*altstack = mem;
	return 0;

err_unmap:
	r = -errno;
	munmap(mem, altstack_map_size());
	return r;
}

void af__overflow_guard_leave(void *altstack)
{
	stack_t ss, cur;

	if (!altstack)
		return;
	/* Only take down our own: one the application installed while the
	 * loop ran is its business (ours is then unused, and can go). */
	if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE) &&
	    cur.ss_sp == (char *)altstack + af__page_size()) {
		memset(&ss, 0, sizeof(ss));
		ss.ss_flags = SS_DISABLE;
		sigaltstack(&ss, NULL);
	}
	munmap(altstack, altstack_map_size());
}
