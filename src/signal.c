/* SPDX-License-Identifier: MIT */
/* Signals delivered as flag sets. The handler does nothing but
 * af_flag_set(), which is async-signal-safe, so all the work happens in the
 * task that waits on the flag. */
#include <sched.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

void af__signal_forget(struct af_flag *flag);

/* Which flag each signal sets, and the disposition it replaced. Global
 * because signal dispositions are process-wide; the handler reads only
 * `watched`, atomically, and watch/unwatch serialise on watch_lock. */
static _Atomic(struct af_flag *) watched[NSIG];
/* Handlers of each signal between their first and last touch of
 * watched[] and the flag: af_signal_unwatch() waits for them to leave. */
static atomic_uint inside[NSIG];
static struct sigaction previous[NSIG];
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;

_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
	       "the handler needs lock-free atomics: a lock-based one could "
	       "deadlock against the code it interrupted");

static void on_signal(int signo)
{
	struct af_flag *f;

	/* seq_cst, with the load below: the other half of the handshake with
	 * drain() is unwatch's seq_cst store of NULL then load of inside[].
	 * Either we load NULL or unwatch sees us counted and waits. Weaker
	 * orders (release here, acquire there, which ARMv8.3+ may compile
	 * to RCpc LDAPR) let both miss each other. The load also acquires
	 * the flag published by af_signal_watch()'s release. */
	atomic_fetch_add_explicit(&inside[signo], 1, memory_order_seq_cst);
	f = atomic_load_explicit(&watched[signo], memory_order_seq_cst);
	af__hook(AF_HOOK_SIGNAL, f);
	if (f)
		af_flag_set(f);
	/* release: our set is done before drain() sees the count drop. */
	atomic_fetch_sub_explicit(&inside[signo], 1, memory_order_release);
}

/* Wait until no handler of @signo that may have seen the old watched[]
 * entry is still running. Handlers never block, so this is short; one that
 * interrupted this very thread has finished before we resume. */
static void drain(int signo)
{
	/* acquire pairs with the handlers' releasing decrement. */
	while (atomic_load_explicit(&inside[signo], memory_order_acquire))
		sched_yield();
}

static bool catchable(int signo)
{
	if (signo <= 0 || signo >= NSIG)
		return false;
	switch (signo) {
	case SIGKILL:
	case SIGSTOP:
	/* Synchronous faults: returning from a handler re-runs the faulting
	 * instruction, and SIGSEGV reports task stack overflows. */
	case SIGSEGV:
	case SIGBUS:
	case SIGILL:
	case SIGFPE:
		return false;
	default:
		return true;
	}
}

AF_API int af_signal_watch(struct af_flag *flag, int signo)
{
	struct sigaction sa;
	struct af_flag *cur;
	int r = 0;

	af_assert_return(flag, -EINVAL);
	if (!catchable(signo)) {
		af__misuse(__func__, "signal %d cannot be watched", signo);
		return -EINVAL;
	}
	if (!af__flag_live(flag))
		return -EINVAL;
	pthread_mutex_lock(&watch_lock);
	cur = atomic_load_explicit(&watched[signo], memory_order_relaxed);
	if (cur) {
		r = cur == flag ? 0 : -EBUSY;
		goto out_unlock;
	}
	atomic_store_explicit(&watched[signo], flag, memory_order_release);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(signo, &sa, &previous[signo]) < 0) {
		r = -errno;
		atomic_store_explicit(&watched[signo], NULL, memory_order_relaxed);
	}
out_unlock:
	pthread_mutex_unlock(&watch_lock);
	return r;
}

static int unwatch_locked(int signo)
{
	if (!atomic_load_explicit(&watched[signo], memory_order_relaxed))
		return -ENOENT;
	sigaction(signo, &previous[signo], NULL);
	/* seq_cst: see on_signal(). */
	atomic_store_explicit(&watched[signo], NULL, memory_order_seq_cst);
	drain(signo);
	return 0;
}

AF_API int af_signal_unwatch(int signo)
{
	int r;

	if (signo <= 0 || signo >= NSIG)
		return -EINVAL;
	pthread_mutex_lock(&watch_lock);
	r = unwatch_locked(signo);
	pthread_mutex_unlock(&watch_lock);
	return r;
}

void af__signal_forget(struct af_flag *flag)
{
	pthread_mutex_lock(&watch_lock);
	for (int s = 1; s < NSIG; s++)
		if (atomic_load_explicit(&watched[s], memory_order_relaxed) == flag)
			unwatch_locked(s);
	pthread_mutex_unlock(&watch_lock);
}
