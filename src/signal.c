/* SPDX-License-Identifier: MIT */
/* Signals delivered as flag sets, two ways at once:
 *  - a handler that does nothing but af_flag_set(), which is
 *    async-signal-safe, for the threads that do not block the signal;
 *  - the flag's loop's signalfd, which the loop keeps read (on its ring,
 *    or in its epoll set), for a signal its thread blocks: one sent to
 *    the loop's thread, or to the process when every thread blocks it.
 *    That skips the handler's delivery (a signal frame and sigreturn),
 *    which costs more than the rest of the wake-up.
 * The kernel hands each signal to one of the two, so a set is never lost
 * and never doubled, whatever the masks. All the work happens in the task
 * that waits on the flag. */
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "internal.h"
#include "loop/backend.h"

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

_Static_assert(NSIG <= 65, "the signalfd's mask is published as 64 bits, one per signal "
			  "(struct af__sigfd): a wider one needs more words");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
	       "the handler needs lock-free atomics: a lock-based one could "
	       "deadlock against the code it interrupted");

static struct af_loop *loop_of(struct af_flag *flag);

/* Set the flag that watches @signo, if one does; returns it. */
static struct af_flag *signal_set(int signo, bool in_handler)
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
	/* The count tells the flag's loop that the kick which may wake it
	 * is a signal's, which a sleep in sigtimedwait() would have taken
	 * itself (loop.c, note_kick()). relaxed: only a hint for how the
	 * loop sleeps next; one seen late costs a guess, on aarch64 as on
	 * x86. Counted inside[]: the flag, and so its loop, outlive us. */
	if (f && in_handler)
		atomic_fetch_add_explicit(&loop_of(f)->signal_sets, 1, memory_order_relaxed);
	if (f)
		af_flag_set(f);
	/* release: our set is done before drain() sees the count drop. */
	atomic_fetch_sub_explicit(&inside[signo], 1, memory_order_release);
	return f;
}

static void on_signal(int signo)
{
	(void)signal_set(signo, true);
}

/* ---- the loop's signalfd ---------------------------------------------------- */

/* Signals read per completion; more pending ones come with the next read. */
#define SIGFD_BATCH 4

struct sigfd {
	struct af__sigfd pub;    /* first: the loop frees the block with free() */
	sigset_t mask;           /* under watch_lock: the signals its flags watch */
	struct signalfd_siginfo buf[SIGFD_BATCH];
};

static struct sigfd *sigfd_of(struct af__op *op)
{
	return af__container_of(op, struct sigfd, pub.op);
}

/* The loop read signals (on its own thread, in reap()): each sets its flag
 * as the handler would, through the same drain handshake, so unwatch waits
 * for this too. The loop arms the next read once reaping is over. */
static void sigfd_complete(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	struct sigfd *s = sigfd_of(op);

	(void)flags;
	for (int i = 0; res > 0 && i < res / (int)sizeof(s->buf[0]); i++)
		if (s->buf[i].ssi_signo > 0 && s->buf[i].ssi_signo < NSIG)
			(void)signal_set((int)s->buf[i].ssi_signo, false);
	if (res > 0)
		af__loop_signal_read(loop);
	/* -EINTR and -EAGAIN are worth another read; -ECANCELED comes only
	 * when the ring goes. Anything else would come back at every read:
	 * stop reading (armed stays on), and the handler is all that is
	 * left. */
	if (res < 0 && res != -EINTR && res != -EAGAIN && res != -ECANCELED) {
		af__misuse("af_signal_watch", "reading the loop's signalfd failed (%s); signals "
					      "blocked in its thread now wait until unblocked",
			   strerror(-res));
		return;
	}
	s->pub.armed = false;
}

/* A signal the loop took with sigtimedwait() instead of its read (loop.c):
 * on its thread, the loop AWAKE, and blocked there (the loop waits only
 * for those). One that nobody watches any more was taken with the mask of
 * a moment ago: it goes back to this thread's pending set, for whoever
 * reads it next, as it would have stayed. */
static void sigfd_deliver(int signo)
{
	if (!signal_set(signo, false))
		(void)raise(signo);
}

/* Caller holds watch_lock: publish the signalfd's mask for a loop that
 * sleeps in sigtimedwait(). seq_cst, with the kick's seq_cst load of
 * sleep_state after it: a sleep published before this store is kicked,
 * and one published after reads the new mask (loop.c,
 * sleep_for_signals()); on aarch64 the STLR and the LDAR are not
 * reordered either. */
static void sigfd_publish(struct af_loop *loop, struct sigfd *s)
{
	uint64_t bits = 0;

	for (int signo = 1; signo < NSIG; signo++)
		if (sigismember(&s->mask, signo) == 1)
			bits |= af__signal_bit(signo);
	atomic_store_explicit(&s->pub.watched, bits, memory_order_seq_cst);
	af__loop_kick_if_sigwait(loop);
}

static int sigfd_new(struct af_loop *loop, int signo)
{
	struct sigfd *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	sigemptyset(&s->mask);
	sigaddset(&s->mask, signo);
	s->pub.fd = signalfd(-1, &s->mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->pub.fd < 0) {
		int r = -errno;

		free(s);
		return r;
	}
	s->pub.op.complete = sigfd_complete;
	s->pub.buf = s->buf;
	s->pub.len = sizeof(s->buf);
	s->pub.deliver = sigfd_deliver;
	atomic_init(&s->pub.watched, af__signal_bit(signo));
	/* seq_cst, not just release (which the loop's acquiring load in its
	 * arm step needs for the fields above): with the kick's seq_cst load
	 * of sleep_state after it, this is one side of sleep_until()'s
	 * handshake. A loop that publishes SLEEPING after its arm missed
	 * this store sees it in its seq_cst look and does not sleep, or the
	 * kick sees SLEEPING and ends the sleep; on aarch64 the STLR and the
	 * kick's LDAR are not reordered either. */
	atomic_store_explicit(&loop->sigfd, &s->pub, memory_order_seq_cst);
	/* A loop asleep would not arm the read before it next wakes. */
	af__loop_kick(loop);
	return 0;
}

/* Caller holds watch_lock. @on: @signo joins the signalfd's mask, or
 * leaves it. A signalfd's mask may be changed from any thread; the read in
 * flight takes the new one from its next attempt. */
static int sigfd_update(struct af_loop *loop, int signo, bool on)
{
	struct af__sigfd *pub;
	struct sigfd *s;

	if (!loop->backend->reads_signalfd)
		return 0;
	/* relaxed: only holders of watch_lock store it, and the mutex orders
	 * their stores before our load, on aarch64 as on x86. */
	pub = atomic_load_explicit(&loop->sigfd, memory_order_relaxed);
	if (!pub)
		return on ? sigfd_new(loop, signo) : 0;
	s = af__container_of(pub, struct sigfd, pub);
	if (on)
		sigaddset(&s->mask, signo);
	else
		sigdelset(&s->mask, signo);
	if (signalfd(s->pub.fd, &s->mask, 0) < 0) {
		if (on)
			sigdelset(&s->mask, signo);
		return -errno;
	}
	sigfd_publish(loop, s);
	return 0;
}

static struct af_loop *loop_of(struct af_flag *flag)
{
	return ((struct af__flag *)(void *)&flag->_private)->loop;
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

static int unwatch_locked(int signo);

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
		goto out_unlock;
	}
	r = sigfd_update(loop_of(flag), signo, true);
	if (r < 0)
		unwatch_locked(signo);
	else if (signo == AF__KICK_SIGNAL)
		af__loop_kick_signal_taken();
out_unlock:
	pthread_mutex_unlock(&watch_lock);
	return r;
}

static int unwatch_locked(int signo)
{
	struct af_flag *flag = atomic_load_explicit(&watched[signo], memory_order_relaxed);

	if (!flag)
		return -ENOENT;
	/* First, so that the loop stops taking the signal from the pending
	 * set: once unwatched it stays pending, for whoever reads it next. */
	sigfd_update(loop_of(flag), signo, false);
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
