/* SPDX-License-Identifier: MIT */
/* The io_uring backend: every I/O call is one ring operation (io.c), the
 * loop sleeps in io_uring_enter, and a multishot poll kept armed on the
 * eventfd ends that sleep when another thread or a signal handler kicks the
 * loop. */
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop/backend.h"
#include "syscall.h"

static void efd_complete(struct af_loop *loop, struct af__op *op, int res, unsigned flags);

/* liburing 2.3 and Debian 12's headers predate IORING_OP_FUTEX_WAIT (Linux
 * 6.7): its opcode and flags come from the kernel's uapi
 * (include/uapi/linux/io_uring.h, futex.h), and the SQE is filled by hand
 * as io_futex_prep() in io_uring/futex.c reads it. */
#define AF__IORING_OP_FUTEX_WAIT (IORING_OP_SENDMSG_ZC + 3)
#define AF__FUTEX2_SIZE_U32 0x02u
#define AF__FUTEX2_PRIVATE 128u
_Static_assert(IORING_OP_SENDMSG_ZC == 48, "IORING_OP_FUTEX_WAIT is opcode 51");

/* ---- ring set-up ------------------------------------------------------------ */

/* Best first. DEFER_TASKRUN (6.1) needs SINGLE_ISSUER (6.0); COOP_TASKRUN
 * is 5.19. R_DISABLED lets the ring bind its single issuer to the thread
 * that first runs the loop rather than the one that created it. */
static const struct {
	unsigned setup;
	unsigned features;
} ring_modes[] = {
	{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
	  AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER | AF_FEATURE_DEFER_TASKRUN },
	{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED,
	  AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER },
	{ IORING_SETUP_COOP_TASKRUN, AF_FEATURE_COOP_TASKRUN },
	{ 0, 0 },
};

/* The sleep passes its timeout in io_uring_enter's extended argument
 * (5.11): without it liburing would queue an internal timeout request whose
 * completions the loop would have to tell from its own. And a child of
 * fork() must not get the ring's mappings: it would move the parent's
 * queue heads. */
static int ring_check(struct af_loop *loop, const struct io_uring_params *p)
{
	int r;

	if (!(p->features & IORING_FEAT_EXT_ARG)) {
		af__misuse("af_loop_new", "the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11); "
					  "libasyncflag needs Linux 5.11 or later for io_uring");
		io_uring_queue_exit(&loop->ring);
		return -EOPNOTSUPP;
	}
	r = io_uring_ring_dontfork(&loop->ring);
	if (r < 0) {
		io_uring_queue_exit(&loop->ring);
		return r;
	}
	return 0;
}

static int ring_open(struct af_loop *loop, unsigned entries, bool basic)
{
	size_t first = basic ? sizeof(ring_modes) / sizeof(ring_modes[0]) - 1 : 0;
	int r = -EINVAL;

	for (size_t i = first; i < sizeof(ring_modes) / sizeof(ring_modes[0]); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = ring_modes[i].setup | IORING_SETUP_CLAMP;
		r = io_uring_queue_init_params(entries, &loop->ring, &p);
		if (r == 0) {
			loop->features = ring_modes[i].features;
			return ring_check(loop, &p);
		}
		/* Only "this kernel does not know that flag" is worth a retry;
		 * -EPERM, -ENOSYS and -ENOMEM will not change. */
		if (r != -EINVAL)
			return r;
	}
	return r;
}

/* A filter may let io_uring_setup through and refuse the calls that use
 * the ring (a partial seccomp profile, an LSM hook). Ask both once, with
 * arguments that do nothing: EPERM or ENOSYS means the ring is unusable;
 * any other answer (EBADFD from a ring not yet enabled) came from io_uring. */
static int ring_usable(struct af_loop *loop)
{
	if (syscall(__NR_io_uring_enter, loop->ring.ring_fd, 0, 0, 0, NULL, 0) < 0 &&
	    (errno == EPERM || errno == ENOSYS))
		return -errno;
	if (syscall(__NR_io_uring_register, loop->ring.ring_fd, IORING_UNREGISTER_EVENTFD,
		    NULL, 0) < 0 &&
	    (errno == EPERM || errno == ENOSYS))
		return -errno;
	return 0;
}

/* The never-drained poll, unless bind() finds the futex wait. ppoll mode
 * needs the read: ppoll on an eventfd that is never drained would return
 * at once, forever. AF_WAKE=read forces the read, so that tests can run the
 * path a kernel without multishot poll (before 5.13) takes, and
 * AF_WAKE=poll the poll a kernel before 6.7 takes. */
static uint8_t wake_mode(const struct af_loop *loop)
{
	const char *env = getenv("AF_WAKE");

	if (loop->ppoll_mode || (env && strcmp(env, "read") == 0))
		return AF__WAKE_READ;
	return AF__WAKE_POLL;
}

static int uring_open(struct af_loop *loop, unsigned entries, unsigned flags)
{
	int r = ring_open(loop, entries, loop->ppoll_mode || (flags & AF_LOOP_BASIC_RING));

	if (r < 0)
		return r;
	r = ring_usable(loop);
	if (r < 0) {
		io_uring_queue_exit(&loop->ring);
		loop->features = 0;
		return r;
	}
	loop->efd_op.complete = efd_complete;
	loop->efd_wake = wake_mode(loop);
	return 0;
}

static void uring_close(struct af_loop *loop)
{
	io_uring_queue_exit(&loop->ring);
}

/* The ring is not mapped in a fork() child (MADV_DONTFORK): unmapping it
 * could hit whatever the child mapped there since. */
static void uring_forget(struct af_loop *loop)
{
	close(loop->ring.ring_fd);
}

static void prep_futex_wait(struct io_uring_sqe *sqe, _Atomic unsigned *word, unsigned val)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = AF__IORING_OP_FUTEX_WAIT;
	sqe->fd = (int)(AF__FUTEX2_SIZE_U32 | AF__FUTEX2_PRIVATE);
	sqe->addr = (uint64_t)(uintptr_t)word;
	sqe->off = val;                   /* sleep while the word holds this */
	sqe->addr3 = FUTEX_BITSET_MATCH_ANY;
}

/* Whether the kernel runs IORING_OP_FUTEX_WAIT as we fill it: a wait for a
 * value the word does not hold must end at once with -EAGAIN. Anything
 * else (-EINVAL before 6.7, a filter, a layout this kernel reads another
 * way) keeps the eventfd. On the loop's thread, before its first sleep. */
static bool futex_wait_works(struct af_loop *loop)
{
	_Atomic unsigned word = 1;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
	struct io_uring_cqe *cqe;
	int res;

	if (!sqe)
		return false;
	prep_futex_wait(sqe, &word, 0);
	io_uring_sqe_set_data(sqe, NULL);
	if (io_uring_submit_and_wait(&loop->ring, 1) < 1 || io_uring_peek_cqe(&loop->ring, &cqe))
		return false;
	res = cqe->res;
	io_uring_cqe_seen(&loop->ring, cqe);
	return res == -EAGAIN;
}

/* AF_PARK=0 keeps every sleep in the ring: for tests of the ring's own
 * wake-ups, and to compare the two. So does AF_WAKE=poll or =read, unless
 * AF_PARK=1 says otherwise: a test that asks for the eventfd kick gets it
 * at every sleep, and one that asks for both gets the parked sleeps of a
 * kernel before 6.7. */
static bool park_allowed(const char *wake)
{
	const char *park = getenv("AF_PARK");

	if (park)
		return strcmp(park, "0") != 0;
	return !(wake && (strcmp(wake, "poll") == 0 || strcmp(wake, "read") == 0));
}

static int uring_bind(struct af_loop *loop)
{
	const char *env = getenv("AF_WAKE");

	if (loop->features & AF_FEATURE_SINGLE_ISSUER) {
		/* liburing 2.3 declares io_uring_enable_rings() but does not
		 * export it, so register directly. */
		if (syscall(__NR_io_uring_register, loop->ring.ring_fd,
			    IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
			return -errno;
	}
	loop->may_park = park_allowed(env);
	/* Nothing has kicked yet: no kicker acts before the loop first
	 * publishes SLEEPING, and that seq_cst RMW orders kick_futex. */
	if (loop->efd_wake == AF__WAKE_POLL && !(env && strcmp(env, "poll") == 0) &&
	    futex_wait_works(loop)) {
		loop->efd_wake = AF__WAKE_FUTEX;
		loop->kick_futex = true;
	}
	return 0;
}

/* ---- submitting and reaping -------------------------------------------------- */

/* A kick's write was seen. The poll stays armed while the kernel says
 * IORING_CQE_F_MORE; when it ends (CQ overflow, or -EINVAL from a kernel
 * before 5.13 that has no multishot poll: then for good, with the read) and
 * after every read, the next arm before a sleep in the ring arms it again,
 * once reaping is over: submitting from inside reap() could flush, and a
 * flush may reap re-entrantly. */
AF__HOT static void efd_complete(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	(void)op;
	if (loop->efd_wake == AF__WAKE_POLL && res == -EINVAL)
		loop->efd_wake = AF__WAKE_READ;
	if (!(flags & IORING_CQE_F_MORE))
		loop->efd_armed = false;
	loop->efd_expected = false;
}

static void reap(struct af_loop *loop);

void af__loop_flush(struct af_loop *loop)
{
	int r;

	if (af__loop_forked(loop))
		return;
	r = io_uring_submit(&loop->ring);

	/* -EBUSY/-EAGAIN: the completion queue is backed up (or the kernel is
	 * short of memory). Consuming completions is what frees it; never
	 * from inside reap() itself, which would see its CQEs twice. */
	if ((r == -EBUSY || r == -EAGAIN) && !loop->reaping) {
		io_uring_get_events(&loop->ring);
		reap(loop);
		io_uring_submit(&loop->ring);
	}
}

struct io_uring_sqe *af__loop_sqe(struct af_loop *loop)
{
	struct io_uring_sqe *sqe;

	/* An inherited loop has no ring here: hand out a slot that is never
	 * submitted (the calls that get here fail with -ECHILD first). */
	if (af__loop_forked(loop))
		return memset(&loop->forked_sqe, 0, sizeof(loop->forked_sqe));
	sqe = io_uring_get_sqe(&loop->ring);

	/* A full submission queue is flushed, not reported: the kernel copies
	 * the entries at submit time, so there is room again afterwards. */
	while (!sqe) {
		af__loop_flush(loop);
		sqe = io_uring_get_sqe(&loop->ring);
	}
	return sqe;
}

/* Keep the eventfd watched: a setter's write completes the watch and ends
 * the loop's io_uring wait.
 *
 * The poll is armed once and the eventfd is never read. Each write wakes
 * the eventfd's wait queue, and the poll posts one completion per wake-up
 * (writes that land before the loop reaps share one); that it stays
 * readable does not matter, since a multishot poll reports wake-ups, not
 * the level. Arming it again (after it ended) on an eventfd already written
 * completes at once: a spare wake-up, never a lost one. The kick protocol
 * never relies on the counter (sleep_state decides who writes), and at one
 * write per sleep the counter cannot come near its 2^64-2 limit. That
 * takes the read(2) drain and a new SQE per sleep off the wake path. */
static void efd_arm(struct af_loop *loop)
{
	struct io_uring_sqe *sqe;

	/* The futex wait is armed by the sleep itself, with the word's value. */
	if (loop->efd_armed || loop->efd_wake == AF__WAKE_FUTEX)
		return;
	sqe = af__loop_sqe(loop);
	if (loop->efd_wake == AF__WAKE_POLL)
		io_uring_prep_poll_multishot(sqe, loop->efd, POLLIN);
	else
		io_uring_prep_read(sqe, loop->efd, &loop->efd_value,
				   sizeof(loop->efd_value), 0);
	io_uring_sqe_set_data(sqe, &loop->efd_op);
	loop->efd_armed = true;
}

/* Keep one read of the loop's signalfd in flight (signal.c makes it): a
 * signal that the loop's thread blocks, or every thread does, is read here
 * instead of running a handler. The signalfd is non-blocking, so the kernel
 * tries the read at once and otherwise polls and retries it as task work,
 * on this thread: a signalfd reads the pending signals of the thread that
 * reads it, and of the process. Not counted in ninflight: like the
 * eventfd's, this request never keeps the loop alive. */
static void sigfd_arm(struct af_loop *loop)
{
	/* acquire pairs with af_signal_watch()'s release store: the block's
	 * fields are visible, on aarch64 as on x86. */
	struct af__sigfd *s = atomic_load_explicit(&loop->sigfd, memory_order_acquire);
	struct io_uring_sqe *sqe;

	if (!s || s->armed)
		return;
	sqe = af__loop_sqe(loop);
	io_uring_prep_read(sqe, s->fd, s->buf, s->len, 0);
	io_uring_sqe_set_data(sqe, &s->op);
	s->armed = true;
	/* A sleep in sigtimedwait() needs the ring's queue empty: submit
	 * the read now, once, rather than sleep in the ring to submit it and
	 * be woken there by the next signal, every time. */
	if ((loop->ring.flags & IORING_SETUP_DEFER_TASKRUN) && af__loop_sigwait_wanted(loop))
		af__loop_flush(loop);
}

/* Armed is not yet in flight: the read may still sit in the submission
 * queue. And a ring without DEFER_TASKRUN (a basic ring, ppoll mode,
 * kernels before 6.1) posts the completion by itself, for reap() to take.
 * Only a DEFER_TASKRUN ring with nothing queued either way holds it until
 * the loop enters the kernel. */
static bool uring_signalfd_settled(const struct af_loop *loop, const struct af__sigfd *s)
{
	return s->armed && (loop->ring.flags & IORING_SETUP_DEFER_TASKRUN) &&
	       !io_uring_sq_ready(&loop->ring) && !io_uring_cq_ready(&loop->ring);
}

/* Nothing in flight, queued or owed. Never in ppoll mode (TSan, valgrind):
 * TSan runs a signal's handler only at a libc call it intercepts, which a
 * bare futex wait is not. The eventfd's multishot poll may stay armed (no
 * write comes while parked: the kick is a FUTEX_WAKE or a signal), and so
 * may a futex wait queued at an earlier sleep (the kick wakes it too).
 * With no signalfd the sleep may be a bare futex wait. With one, it may be
 * a sigtimedwait() if the read is not in flight, or is on a DEFER_TASKRUN
 * ring: a signal that arrives while the loop waits elsewhere then only
 * queues task work for the ring's next entry, where the read finds the
 * signal taken and polls again; on any other ring that task work would end
 * the wait with a spare wake-up, every time. relaxed sigfd: a watch that
 * another thread adds after this load is seen by the seq_cst look after
 * the sleep is published (loop.c, sleep_until()), or its kick finds
 * SLEEPING and wakes the sleep, on aarch64 as on x86; and its armed field
 * is the loop's own, written by this thread after an acquiring load of
 * the same pointer (sigfd_arm()), or never (then false, from calloc). */
AF__HOT static unsigned uring_parkable(const struct af_loop *loop)
{
	const struct af__sigfd *s;

	if (!loop->may_park || loop->ppoll_mode || loop->ninflight || loop->efd_expected ||
	    io_uring_sq_ready(&loop->ring) || io_uring_cq_ready(&loop->ring) ||
	    io_uring_cq_has_overflow(&loop->ring))
		return 0;
	s = atomic_load_explicit(&loop->sigfd, memory_order_relaxed);
	if (!s)
		return AF_SLEEP_PARKED;
	return !s->armed || (loop->ring.flags & IORING_SETUP_DEFER_TASKRUN) ? AF_SLEEP_SIGWAIT : 0;
}

/* Before every look at the kernel, with the loop AWAKE, so that a flush
 * that must reap to make room runs its completions before collect() looks
 * at the run queue. A sleep that will park needs no eventfd request (in
 * read mode, one armed after every kick would keep it from parking); one in
 * the ring needs it, and a free slot for the futex wait that uring_wait()
 * queues with the loop SLEEPING, when it may not flush. Nothing between
 * here and the sleep queues a request, so parkable() says the same then. */
AF__HOT static void uring_arm(struct af_loop *loop)
{
	unsigned how;

	sigfd_arm(loop);
	how = uring_parkable(loop);
	if (how == AF_SLEEP_PARKED || (how == AF_SLEEP_SIGWAIT && af__loop_sigwait_wanted(loop)))
		return;
	efd_arm(loop);
	if (io_uring_sq_space_left(&loop->ring) == 0)
		af__loop_flush(loop);
}

AF__HOT static void reap(struct af_loop *loop)
{
	loop->reaping = true;
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		io_uring_for_each_cqe(&loop->ring, head, cqe) {
			struct af__op *op = io_uring_cqe_get_data(cqe);

			seen++;
			/* Every request the loop submits carries an af__op;
			 * liburing's own timeout marker (never used with
			 * EXT_ARG, which af_loop_new() requires) is skipped. */
			if (op && cqe->user_data != LIBURING_UDATA_TIMEOUT)
				op->complete(loop, op, cqe->res, cqe->flags);
		}
		io_uring_cq_advance(&loop->ring, seen);
		/* With IORING_FEAT_NODROP the kernel parks completions that did
		 * not fit; now that there is room, have it flush them. */
		if (!io_uring_cq_has_overflow(&loop->ring))
			break;
		io_uring_get_events(&loop->ring);
	}
	loop->reaping = false;
}

AF__HOT static void uring_peek(struct af_loop *loop)
{
	if (io_uring_sq_ready(&loop->ring) || loop->ninflight || loop->efd_expected)
		io_uring_submit_and_get_events(&loop->ring);
	reap(loop);
}

/* ---- sleeping ------------------------------------------------------------------ */

static struct __kernel_timespec ns_to_ts(uint64_t ns)
{
	/* Clamped: see AF_TIMEOUT_MAX_S in timer.c. */
	return af__kernel_ts(ns);
}

/* Under valgrind and ThreadSanitizer (see sleep_in_ppoll_mode() in
 * loop.c) wait for the ring or the eventfd in ppoll, then let io_uring
 * post what is ready without blocking. */
static void sleep_in_ppoll(struct af_loop *loop, struct __kernel_timespec *kts)
{
	struct pollfd pfd[2] = {
		{ .fd = loop->ring.ring_fd, .events = POLLIN },
		{ .fd = loop->efd, .events = POLLIN },
	};
	struct timespec ts;

	io_uring_submit(&loop->ring);
	if (io_uring_cq_ready(&loop->ring))
		return;
	if (kts) {
		ts.tv_sec = kts->tv_sec;
		ts.tv_nsec = kts->tv_nsec;
	}
	ppoll(pfd, 2, kts ? &ts : NULL, NULL);
	io_uring_submit_and_get_events(&loop->ring);
}

/* Wait on sleep_state for as long as it reads SLEEPING (with whatever
 * count of kickers it has now). A wait queued at an earlier sleep is still
 * queued (only a FUTEX_WAKE or -EAGAIN ends it): it serves this sleep too.
 * Returns false when a kicker already moved the word on: a wait for its
 * new value would sleep through a FUTEX_WAKE that is already done, so the
 * loop must not sleep at all. */
static bool futex_arm(struct af_loop *loop)
{
	struct io_uring_sqe *sqe;
	unsigned s;

	if (loop->efd_armed)
		return true;
	/* relaxed: it reads our own SLEEPING store or a kicker's later one
	 * (coherence). A kick that lands after this load is seen by the
	 * kernel's own compare (-EAGAIN) or finds the wait queued: futex
	 * ordering, the same on aarch64 as on x86. */
	s = atomic_load_explicit(&loop->sleep_state, memory_order_relaxed);
	if ((s & AF_SLEEP_MASK) != AF_SLEEPING)
		return false;
	/* Not af__loop_sqe(): its flush may reap, and the loop is SLEEPING,
	 * when no completion may run. uring_arm() left a slot free; without
	 * one (the flush could not make room), the loop looks again instead
	 * of sleeping. */
	sqe = io_uring_get_sqe(&loop->ring);
	if (!sqe)
		return false;
	prep_futex_wait(sqe, &loop->sleep_state, s);
	io_uring_sqe_set_data(sqe, &loop->efd_op);
	loop->efd_armed = true;
	return true;
}

/* Submit what is queued and wait for one completion or @kts, in one
 * io_uring_enter(2) made inline (syscall.h) rather than through
 * io_uring_submit_and_wait_timeout(): after a wake-up on an idle CPU each
 * line of code between the kernel's return and the woken task is a cache
 * miss, and liburing's path is four functions in another library, its PLT
 * slot and libc's syscall(2). The tail is published as liburing's
 * __io_uring_flush_sq() does for a ring without SQPOLL: the kernel reads
 * it only inside io_uring_enter(), which this thread makes, so a plain
 * store is enough on aarch64 as on x86 (a CPU sees its own stores, and a
 * migration between CPUs is a full barrier); the system call's "memory"
 * clobber keeps the compiler from moving the SQE stores past it. Errors
 * need no answer: -EINTR, -ETIME and -EBUSY all end the sleep, and the
 * loop then reaps and looks again, as it did when liburing returned them. */
static void ring_enter_wait(struct af_loop *loop, struct __kernel_timespec *kts)
{
	struct io_uring_sq *sq = &loop->ring.sq;
	struct io_uring_getevents_arg arg = {
		.sigmask = 0,
		.sigmask_sz = _NSIG / 8,
		.ts = (uint64_t)(uintptr_t)kts,
	};

	if (sq->sqe_head != sq->sqe_tail) {
		sq->sqe_head = sq->sqe_tail;
		*(volatile unsigned *)sq->ktail = sq->sqe_tail;
	}
	(void)af__syscall6(__NR_io_uring_enter, loop->ring.ring_fd,
			   (long)(sq->sqe_tail - *sq->khead), 1,
			   IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (long)&arg,
			   (long)sizeof(arg));
}

AF__HOT static void uring_wait(struct af_loop *loop, uint64_t deadline)
{
	struct __kernel_timespec ts;
	uint64_t now = deadline == UINT64_MAX ? 0 : af__now_ns();

	ts = ns_to_ts(deadline > now ? deadline - now : 0);
	/* uring_arm() armed the eventfd's request, unless it expected this
	 * sleep to park or to be a sigtimedwait(): then a kick would end no
	 * sleep in the ring, so look again instead (a watch added from
	 * another thread meanwhile makes that happen, but sleep_until() sees
	 * it first; so does a sigwait that could not block its kick). */
	if (loop->efd_wake != AF__WAKE_FUTEX && !loop->efd_armed)
		return;
	if (loop->efd_wake == AF__WAKE_FUTEX && !futex_arm(loop))
		return;
	if (loop->ppoll_mode)
		sleep_in_ppoll(loop, deadline == UINT64_MAX ? NULL : &ts);
	else
		ring_enter_wait(loop, deadline == UINT64_MAX ? NULL : &ts);
}

const struct af__backend af__backend_uring = {
	.name = "io_uring",
	.feature = AF_FEATURE_BACKEND_IO_URING,
	.reads_signalfd = true,
	.open = uring_open,
	.close = uring_close,
	.forget = uring_forget,
	.bind = uring_bind,
	.arm = uring_arm,
	.peek = uring_peek,
	.wait = uring_wait,
	.parkable = uring_parkable,
	.reap = reap,
	.signalfd_settled = uring_signalfd_settled,
	.io = af__uring_io,
};
