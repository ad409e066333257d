/* SPDX-License-Identifier: MIT */
/*
 * The epoll backend, for where io_uring is switched off (container seccomp
 * profiles, kernel.io_uring_disabled, gVisor).
 *
 * The loop sleeps in epoll_wait on one epoll set holding the eventfd
 * (level-triggered: a kick that lands while the loop is awake keeps the
 * next sleep from starting) and every descriptor a task waits on.
 *
 * An I/O call tries its system call without blocking first; only if that
 * would block does the task park until epoll reports the descriptor ready,
 * and then it tries again. Each try either moves data or moves none, so a
 * cancel or a timeout, which can only come while the task is parked, never
 * loses data.
 *
 * A descriptor joins the set edge-triggered at its first wait and stays,
 * for the union of the events ever waited for: a wait then costs no system
 * call (EPOLLONESHOT cost one epoll_ctl per wait, a quarter of an echo
 * round trip's calls). Edges report changes, so the table keeps what each
 * descriptor may be ready for: an edge sets it, EAGAIN clears it, and so
 * does a short read or write on TCP (its queue was empty, or full, at that
 * moment; what comes later raises an edge). A try is skipped
 * while the descriptor is known not ready: the task parks at once, as it
 * would on io_uring. af_close() takes the descriptor out.
 *
 * The kernel drops a registration by itself when the file is closed with
 * close(2), and the number may come back naming another file, which the
 * table would believe registered. No event says so, and asking costs a
 * system call. So a wait on a registered descriptor costs none, and is
 * checked once it has lasted CHECK_NS (one epoll_ctl that registers the
 * descriptor again if the kernel forgot it, and reports it at once if it
 * is ready; a timerfd wakes a sleeping loop for it). A number reused
 * behind the loop's back may thus wait up to CHECK_NS longer, never
 * forever; one closed with af_close() never does. Most waits end before
 * their check is due: no system call at all.
 * (A first version checked at once a wait on a descriptor epoll had not
 * reported for 1 ms, and every wait before the loop slept, with
 * CHECK_NS 1 ms: an epoll_ctl per round trip and side at one echo
 * connection, and on most waits at 100, where the loop's batches alone
 * last a millisecond.)
 *
 * Regular files and block devices cannot be waited on (epoll refuses them,
 * poll calls them always ready and then the read blocks on the disk): the
 * I/O layer runs those on the blocking pool, as libuv does.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "loop/backend.h"

#define READY_MAX 64
#define EFD_TAG UINT64_MAX
#define TFD_TAG (UINT64_MAX - 1)
#define SIGFD_TAG (UINT64_MAX - 2)

/* A task parked until its descriptor is ready; lives on the task's stack. */
struct fd_waiter {
	struct af__node node;
	struct af__node check_node; /* in unchecked, until checked or woken */
	struct af_task *task;
	uint64_t parked_at;
	int fd;
	uint32_t events;
	bool unchecked;          /* parked without a system call */
	bool closed;             /* af_close() closed the descriptor meanwhile */
};

struct fd_watch {
	struct af__list waiters;
	uint32_t interest;       /* events registered in the kernel */
	uint32_t ready;          /* events it may be ready for */
	bool added;              /* in the epoll set, as far as we know */
	bool tcp;                /* a TCP socket: a short read drained it */
};

struct af__epoll {
	int epfd;
	int tfd;                 /* wakes the loop for the check, or -1 */
	uint64_t check_at;       /* when tfd fires next, UINT64_MAX: not armed */
	bool pwait2;             /* epoll_pwait2 works: waits to the nanosecond */
	bool sigfd_added;        /* loop->sigfd is in the set (or failed to join) */
	struct fd_watch *fds;    /* indexed by descriptor */
	size_t nfds;
	struct af__list unchecked; /* fd_waiter.check_node, oldest first */
	int nready;
	struct epoll_event ready[READY_MAX];
};

/* How long a wait that cost no system call trusts the table (see above):
 * longer than a busy connection's waits usually last (3-6 ms per round
 * trip with 100 echo connections on two CPUs), so that those never pay
 * for the check; short enough that a misused number is soon found. */
#define CHECK_NS ((uint64_t)10 * 1000 * 1000)
/* What a fresh or reused descriptor may be ready for: anything, so the
 * first call tries. */
#define READY_ALL (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDNORM | EPOLLWRNORM)

/* ---- set-up ------------------------------------------------------------------- */

/* The check's timer (see check_before_sleep). Edge-triggered and never
 * read: each expiry raises an edge, and arming it again resets it. Where
 * timerfd is refused (a seccomp profile, an old sandbox), sleeps take a
 * timeout instead. */
static int check_timer_open(struct af__epoll *ep)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = TFD_TAG };

	ep->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (ep->tfd < 0)
		return errno == ENOSYS || errno == EPERM || errno == EINVAL ? 0 : -errno;
	if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->tfd, &ev) < 0) {
		int r = -errno;

		close(ep->tfd);
		ep->tfd = -1;
		return r;
	}
	return 0;
}

static int ep_open(struct af_loop *loop, unsigned entries, unsigned flags)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EFD_TAG };
	struct af__epoll *ep;
	int fl, r;

	(void)entries;
	(void)flags;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ep->check_at = UINT64_MAX;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->epfd < 0) {
		r = -errno;
		goto err_free;
	}
	r = check_timer_open(ep);
	if (r < 0)
		goto err_close_epfd;
	/* The loop reads the eventfd only once epoll found it readable, but a
	 * read must never be what blocks the loop. */
	fl = fcntl(loop->efd, F_GETFL);
	if (fl < 0 || fcntl(loop->efd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    epoll_ctl(ep->epfd, EPOLL_CTL_ADD, loop->efd, &ev) < 0) {
		r = -errno;
		goto err_close_epfd;
	}
	/* ThreadSanitizer delivers signals only inside calls it intercepts,
	 * and knows epoll_wait but not epoll_pwait2; valgrind likewise. */
	ep->pwait2 = !loop->ppoll_mode;
	loop->epoll = ep;
	loop->features = 0;
	return 0;

err_close_epfd:
	if (ep->tfd >= 0)
		close(ep->tfd);
	close(ep->epfd);
err_free:
	free(ep);
	return r;
}

static void ep_close(struct af_loop *loop)
{
	struct af__epoll *ep = loop->epoll;

	if (ep->tfd >= 0)
		close(ep->tfd);
	close(ep->epfd);
	free(ep->fds);
	free(ep);
	loop->epoll = NULL;
}

/* In a fork() child the epoll set is the parent's own (a descriptor
 * shares its open file): closing the copy is all the child may do. */
static void ep_forget(struct af_loop *loop)
{
	ep_close(loop);
}

static int ep_bind(struct af_loop *loop)
{
	(void)loop; /* an epoll set may be used from any thread */
	return 0;
}

/* The eventfd stays in the set; the loop's signalfd (signal.c) joins it
 * once it exists. Level-triggered: signals left after a batch is read keep
 * it ready. epoll asks a signalfd for readiness on the waiting thread,
 * which is the loop's, the one that reads it: the signals it sees are the
 * ones the read takes. */
static void ep_arm(struct af_loop *loop)
{
	struct af__epoll *ep = loop->epoll;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = SIGFD_TAG };
	struct af__sigfd *s;

	if (ep->sigfd_added)
		return;
	/* acquire pairs with af_signal_watch()'s release store: the block's
	 * fields are visible, on aarch64 as on x86. */
	s = atomic_load_explicit(&loop->sigfd, memory_order_acquire);
	if (!s)
		return;
	ep->sigfd_added = true;
	if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
		s->op.complete(loop, &s->op, -errno, 0);
}

/* The loop's signalfd is readable: read a batch, as the ring's read would.
 * Another thread's handler may have taken the signal since: nothing to do.
 * An error that would come back at every read leaves the set, as the ring
 * stops reading (signal.c says so). */
static void sigfd_read(struct af_loop *loop)
{
	/* relaxed: ep_arm() loaded it with acquire on this thread. */
	struct af__sigfd *s = atomic_load_explicit(&loop->sigfd, memory_order_relaxed);
	ssize_t n = read(s->fd, s->buf, s->len);
	int r = n < 0 ? -errno : (int)n;

	if (r == -EAGAIN || r == -EINTR)
		return;
	if (r < 0)
		epoll_ctl(loop->epoll->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	s->op.complete(loop, &s->op, r, 0);
}

/* ---- the descriptor table ------------------------------------------------------- */

static struct fd_watch *watch_find(struct af__epoll *ep, int fd)
{
	return (size_t)fd < ep->nfds ? &ep->fds[fd] : NULL;
}

static void watch_reset(struct fd_watch *w)
{
	w->added = false;
	w->interest = 0;
	w->ready = READY_ALL;
	w->tcp = false;
}

/* Grow the table to hold @fd. Waiters point at each other, never into the
 * table, so it may move. */
static int watch_get(struct af__epoll *ep, int fd, struct fd_watch **out)
{
	if ((size_t)fd >= ep->nfds) {
		size_t n = ep->nfds ? ep->nfds : 64;
		struct fd_watch *fds;

		while (n <= (size_t)fd)
			n *= 2;
		fds = realloc(ep->fds, n * sizeof(*fds));
		if (!fds)
			return -ENOMEM;
		memset(fds + ep->nfds, 0, (n - ep->nfds) * sizeof(*fds));
		for (size_t i = ep->nfds; i < n; i++)
			watch_reset(&fds[i]);
		ep->fds = fds;
		ep->nfds = n;
	}
	*out = &ep->fds[fd];
	return 0;
}

/* A number the table may know from an earlier file names a new one. */
static void watch_forget(struct af__epoll *ep, int fd)
{
	struct fd_watch *w;

	if (fd >= 0 && watch_get(ep, fd, &w) == 0 && af__list_empty(&w->waiters))
		watch_reset(w);
}

static bool is_tcp_socket(int fd)
{
	int proto = 0;
	socklen_t len = sizeof(proto);

	return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP;
}

/* Register @fd, edge-triggered, for @events. The table can be stale: a
 * descriptor closed with close(2) behind our back left the set by itself,
 * and its number may now name another file. The kernel's ENOENT and EEXIST
 * say so; ask again the other way. Registering polls the file: if it is
 * ready already, the next epoll_wait reports it. */
static int watch_register(struct af__epoll *ep, int fd, struct fd_watch *w, uint32_t events)
{
	/* EPOLLRDHUP: an end of stream stays readable but raises no second
	 * edge, so it must be remembered as ready for good. */
	struct epoll_event ev = { .events = events | EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)fd };
	int op = w->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	int r = epoll_ctl(ep->epfd, op, fd, &ev);

	if (r < 0 && (errno == ENOENT || errno == EEXIST)) {
		op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
		r = epoll_ctl(ep->epfd, op, fd, &ev);
	}
	if (r < 0) {
		r = -errno;
		watch_reset(w);
		return r;
	}
	if (op == EPOLL_CTL_ADD)
		w->tcp = is_tcp_socket(fd);
	w->added = true;
	w->interest = events;
	return 0;
}

static void waiter_unlink(struct af_loop *loop, struct fd_waiter *wt)
{
	struct af__epoll *ep = loop->epoll;
	struct fd_watch *w = watch_find(ep, wt->fd);

	af__list_remove(&w->waiters, &wt->node);
	if (wt->unchecked) {
		af__list_remove(&ep->unchecked, &wt->check_node);
		wt->unchecked = false;
	}
	loop->ninflight--;
}

static void waiter_wake(struct af_loop *loop, struct fd_waiter *wt)
{
	waiter_unlink(loop, wt);
	af__task_wake(wt->task, 0);
	loop->outside_wakes++;
}

/* Left on a cancel or timeout. The registration stays for the next wait. */
static void fd_detach(struct af_task *t)
{
	waiter_unlink(t->loop, t->wait_obj);
}

static const struct af__wait_ops fd_ops = {
	.what = "descriptor readiness",
	.detach = fd_detach,
	.keeps_alive = true,
};

/* Park @t until @fd is ready for @events, @deadline passes or a cancel.
 * Returns 0, -ETIMEDOUT, -ECANCELED, -ENOMEM, -EPERM (epoll cannot wait on
 * this descriptor) or epoll_ctl's -errno. */
static int wait_ready(struct af_task *t, int fd, uint32_t events, uint64_t deadline)
{
	struct af_loop *loop = t->loop;
	struct af__epoll *ep = loop->epoll;
	struct fd_waiter wt = { .task = t, .fd = fd, .events = events };
	struct fd_watch *w;
	int64_t timeout = -1;
	int r = watch_get(ep, fd, &w);

	if (r < 0)
		return r;
	wt.parked_at = af__now_ns();
	/* The table is trusted, and the wait checked later (see above). */
	if (!w->added || (w->interest & events) != events) {
		r = watch_register(ep, fd, w, w->interest | events);
		if (r < 0)
			return r;
	} else {
		wt.unchecked = true;
		af__list_push_back(&ep->unchecked, &wt.check_node);
	}
	af__list_push_back(&w->waiters, &wt.node);
	loop->ninflight++;
	/* From before the registration: a timeout may end late, never early. */
	if (deadline != UINT64_MAX)
		timeout = deadline > wt.parked_at ? (int64_t)(deadline - wt.parked_at) : 0;
	r = af__task_block(&fd_ops, &wt, timeout);
	return r == 0 && wt.closed ? -EBADF : r;
}

/* epoll reported @fd: note what it is ready for and wake the waiters that
 * wanted it. The others stay parked: the registration is permanent. */
static void dispatch(struct af_loop *loop, int fd, uint32_t revents)
{
	struct fd_watch *w = watch_find(loop->epoll, fd);

	if (!w)
		return;
	w->ready |= revents;
	for (struct af__node *n = w->waiters.head; n;) {
		struct fd_waiter *wt = af__container_of(n, struct fd_waiter, node);

		n = n->next;
		if (revents & (wt->events | EPOLLERR | EPOLLHUP))
			waiter_wake(loop, wt);
	}
}

/* When the next check is due, or UINT64_MAX. */
static uint64_t check_deadline(const struct af__epoll *ep)
{
	const struct fd_waiter *wt;

	if (af__list_empty(&ep->unchecked))
		return UINT64_MAX;
	wt = af__container_of(ep->unchecked.head, struct fd_waiter, check_node);
	return wt->parked_at + CHECK_NS;
}

/* Check one wait that trusted the table: registering again is a no-op for
 * a descriptor the kernel still holds, and brings back one it forgot.
 * False if that fails (the number now names a file epoll refuses, or
 * none): the wait then stays unchecked. */
static bool check_one(struct af__epoll *ep, struct fd_waiter *wt)
{
	struct fd_watch *w = watch_find(ep, wt->fd);

	if (watch_register(ep, wt->fd, w, w->interest | wt->events) < 0)
		return false;
	af__list_remove(&ep->unchecked, &wt->check_node);
	wt->unchecked = false;
	return true;
}

/* Check the waits that trusted the table for CHECK_NS. Where that fails,
 * wake the descriptor's waiters: their retry reports the error. */
static void check_unchecked(struct af_loop *loop)
{
	struct af__epoll *ep = loop->epoll;
	uint64_t now;

	if (af__list_empty(&ep->unchecked))
		return;
	now = af__now_ns();
	while (ep->unchecked.head) {
		struct fd_waiter *wt =
			af__container_of(ep->unchecked.head, struct fd_waiter, check_node);
		struct fd_watch *w = watch_find(ep, wt->fd);

		if (now - wt->parked_at < CHECK_NS)
			break;
		if (!check_one(ep, wt)) {
			while (w->waiters.head)
				waiter_wake(loop, af__container_of(w->waiters.head,
								   struct fd_waiter, node));
		}
	}
}

/* Before a sleep: make sure it ends when the oldest unchecked wait is due.
 * Checking each wait before every sleep costs an epoll_ctl per wait per
 * sleep (a quarter of a one-connection echo round trip's calls), and a
 * timeout on every sleep costs about as much (an hrtimer armed and
 * cancelled each time, which in a VM exits to the host). The timerfd is
 * armed only when it is not already due sooner: while waits come and go
 * faster than CHECK_NS, that is once per CHECK_NS, not once per sleep,
 * and a wait that ends before it is due is never checked. Returns the
 * sleep's own deadline for the check: UINT64_MAX when the timer covers
 * it. */
static uint64_t check_before_sleep(struct af__epoll *ep)
{
	uint64_t due = check_deadline(ep);
	struct itimerspec its = {
		.it_value = { .tv_sec = (time_t)(due / 1000000000u),
			      .tv_nsec = (long)(due % 1000000000u) },
	};

	if (due >= ep->check_at)
		return UINT64_MAX;
	if (ep->tfd < 0 || timerfd_settime(ep->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return due;
	ep->check_at = due;
	return UINT64_MAX;
}

/* ---- waiting -------------------------------------------------------------------- */

static void collect_ready(struct af_loop *loop, uint64_t deadline, bool block)
{
	struct af__epoll *ep = loop->epoll;
	uint64_t now = !block || deadline == UINT64_MAX ? 0 : af__now_ns();
	uint64_t left = !block ? 0 : deadline > now ? deadline - now : 0;
	int n = -1;

	if (ep->pwait2) {
		/* Clamped like the ring's timeouts (timer.c). */
		struct __kernel_timespec kts = af__kernel_ts(left);
		struct timespec ts = { .tv_sec = (time_t)kts.tv_sec, .tv_nsec = (long)kts.tv_nsec };

		n = epoll_pwait2(ep->epfd, ep->ready, READY_MAX,
				 block && deadline == UINT64_MAX ? NULL : &ts, NULL);
		/* Older kernels (before 5.11) and seccomp profiles that
		 * predate it: millisecond waits, rounded up so that a timer
		 * is never woken early. */
		if (n < 0 && (errno == ENOSYS || errno == EPERM))
			ep->pwait2 = false;
	}
	if (!ep->pwait2) {
		int ms = !block ? 0 : deadline == UINT64_MAX ? -1
			 : left / 1000000u >= INT32_MAX ? INT32_MAX
			 : (int)((left + 999999u) / 1000000u);

		n = epoll_wait(ep->epfd, ep->ready, READY_MAX, ms);
	}
	ep->nready = n > 0 ? n : 0;
}

static void ep_reap(struct af_loop *loop)
{
	struct af__epoll *ep = loop->epoll;
	int n = ep->nready;

	ep->nready = 0;
	for (int i = 0; i < n; i++) {
		const struct epoll_event *ev = &ep->ready[i];

		if (ev->data.u64 == EFD_TAG) {
			uint64_t count;

			/* Reset the counter so that the next sleep sleeps. */
			if (read(loop->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
				continue;
			loop->efd_expected = false;
			continue;
		}
		if (ev->data.u64 == TFD_TAG) {
			ep->check_at = UINT64_MAX; /* reap goes on to check */
			continue;
		}
		if (ev->data.u64 == SIGFD_TAG) {
			sigfd_read(loop);
			continue;
		}
		dispatch(loop, (int)ev->data.u64, ev->events);
	}
}

static void ep_peek(struct af_loop *loop)
{
	/* Nothing can be ready that nobody waits for: while only tasks run,
	 * the loop makes no system call at all. */
	if (!loop->ninflight && !loop->efd_expected)
		return;
	check_unchecked(loop);
	collect_ready(loop, 0, false);
	ep_reap(loop);
}

/* Wakes for the next check too; reap runs it (a wait must wake no task). */
static void ep_wait(struct af_loop *loop, uint64_t deadline)
{
	uint64_t check = check_before_sleep(loop->epoll);

	collect_ready(loop, check < deadline ? check : deadline, true);
}

/* The signalfd's readiness is only seen by a peek. */
static bool ep_signalfd_settled(const struct af_loop *loop, const struct af__sigfd *s)
{
	(void)loop;
	(void)s;
	return false;
}

static void ep_reap_and_check(struct af_loop *loop)
{
	ep_reap(loop);
	check_unchecked(loop);
}

/* ---- I/O -------------------------------------------------------------------------- */

/* How one call tries its operation without blocking. */
enum try_how {
	TRY_SOCKET,     /* recv/send family with MSG_DONTWAIT */
	TRY_NOWAIT,     /* preadv2/pwritev2 with RWF_NOWAIT (pipes) */
	TRY_PLAIN,      /* the descriptor is O_NONBLOCK itself */
	TRY_READY,      /* a blocking descriptor without RWF_NOWAIT: poll(0), then the call */
	TRY_BLOCKING,   /* epoll cannot wait on it: just make the call */
};

struct plan {
	enum try_how how;
	uint32_t events;
	int64_t offset;         /* -1: the file position */
	bool give_up;           /* the caller asked for -EAGAIN (MSG_DONTWAIT) */
};

static bool is_read(enum af__io_kind k)
{
	return k == AF__IO_READ || k == AF__IO_READV || k == AF__IO_RECV || k == AF__IO_ACCEPT;
}

static int how_for_blocking_fd(int fd, enum try_how *how)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	*how = (fl & O_NONBLOCK) ? TRY_PLAIN : TRY_READY;
	return 0;
}

/* A blocking socket is only ever accepted from once poll found it ready;
 * what accept(2) would refuse at once (not a socket, not listening) must
 * be refused at once here too, not waited on. */
static int plan_accept(int fd, enum try_how *how)
{
	int listening = 0;
	socklen_t len = sizeof(listening);
	int r = how_for_blocking_fd(fd, how);

	if (r < 0 || *how == TRY_PLAIN)
		return r;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
		return -errno;
	return listening ? 0 : -EINVAL;
}

/* Whether epoll can wait on @fd: regular files and block devices have no
 * poll method and epoll_ctl refuses them with EPERM. The mode alone does
 * not tell (an anonymous inode, a GPIO line request, may look like a
 * regular file), so ask epoll: the descriptor joins the set disarmed
 * (EPOLLONESHOT alone reports nothing, not even errors) and stays there
 * for the readiness waits to come. */
static int pollable(struct af__epoll *ep, int fd)
{
	struct epoll_event ev = { .events = EPOLLONESHOT, .data.u64 = (uint64_t)fd };
	struct fd_watch *w;
	int r = watch_get(ep, fd, &w);

	if (r < 0)
		return r;
	if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 || errno == EEXIST) {
		w->added = true;
		w->interest = 0;
		return 1;
	}
	return errno == EPERM ? 0 : -errno;
}

static int plan_of(struct af__epoll *ep, const struct af__io *op, struct plan *p)
{
	struct stat st;

	memset(p, 0, sizeof(*p));
	p->events = is_read(op->kind) ? EPOLLIN : EPOLLOUT;
	p->offset = op->offset == (uint64_t)-1 ? -1 : (int64_t)op->offset;
	switch (op->kind) {
	case AF__IO_RECV:
	case AF__IO_SEND:
		p->how = TRY_SOCKET;
		p->give_up = op->flags & MSG_DONTWAIT;
		return 0;
	case AF__IO_ACCEPT:
		return plan_accept(op->fd, &p->how);
	case AF__IO_POLL:
		p->how = TRY_PLAIN;
		p->events = (uint32_t)op->flags;
		return 0;
	default:
		break;
	}
	if (fstat(op->fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		int r = pollable(ep, op->fd);

		if (r <= 0)
			return r < 0 ? r : AF__IO_BLOCKING;
	}
	p->how = S_ISSOCK(st.st_mode) ? TRY_SOCKET : TRY_NOWAIT;
	return 0;
}

static ssize_t try_rw(const struct af__io *op, const struct plan *p, int rwf)
{
	struct iovec one = { .iov_base = op->buf, .iov_len = op->len };
	const struct iovec *iov = op->kind == AF__IO_READ || op->kind == AF__IO_WRITE ? &one
										  : op->iov;
	int cnt = op->kind == AF__IO_READ || op->kind == AF__IO_WRITE ? 1 : (int)op->len;

	if (is_read(op->kind))
		return preadv2(op->fd, iov, cnt, p->offset, rwf);
	return pwritev2(op->fd, iov, cnt, p->offset, rwf);
}

static ssize_t try_socket(const struct af__io *op)
{
	struct iovec one = { .iov_base = op->buf, .iov_len = op->len };
	struct msghdr msg = { .msg_iov = &one, .msg_iovlen = 1 };

	switch (op->kind) {
	case AF__IO_RECV:
		return recv(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT);
	case AF__IO_SEND:
		return send(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
	case AF__IO_READ:
		return recv(op->fd, op->buf, op->len, MSG_DONTWAIT);
	case AF__IO_READV:
		msg.msg_iov = (struct iovec *)op->iov;
		msg.msg_iovlen = op->len;
		return recvmsg(op->fd, &msg, MSG_DONTWAIT);
	case AF__IO_WRITEV:
		msg.msg_iov = (struct iovec *)op->iov;
		msg.msg_iovlen = op->len;
		/* fallthrough */
	default:
		/* write(2) on a socket raises SIGPIPE; so does this. */
		return sendmsg(op->fd, &msg, MSG_DONTWAIT);
	}
}

/* poll(2) the descriptor without waiting: the ready events, or 0. */
static int poll_now(int fd, uint32_t events)
{
	struct pollfd pfd = { .fd = fd, .events = (short)events };
	int n = poll(&pfd, 1, 0);

	if (n < 0)
		return -errno;
	if (n > 0 && (pfd.revents & POLLNVAL))
		return -EBADF;
	return n > 0 ? pfd.revents : 0;
}

static ssize_t try_plain(const struct af__io *op, const struct plan *p)
{
	if (op->kind == AF__IO_ACCEPT)
		return accept4(op->fd, op->addr, op->addrlen, op->flags);
	return try_rw(op, p, 0);
}

/* One try. Returns the result, or -EAGAIN if it would block. */
static int attempt(const struct af__io *op, struct plan *p)
{
	ssize_t n;
	int r;

	switch (p->how) {
	case TRY_SOCKET:
		n = try_socket(op);
		break;
	case TRY_NOWAIT:
		n = try_rw(op, p, RWF_NOWAIT);
		if (n < 0 && errno == EOPNOTSUPP) {
			/* No per-call non-blocking mode (ttys, GPIO, most
			 * character devices): decide by the descriptor's. */
			r = how_for_blocking_fd(op->fd, &p->how);
			return r < 0 ? r : attempt(op, p);
		}
		break;
	case TRY_READY:
		r = poll_now(op->fd, p->events);
		if (r <= 0)
			return r < 0 ? r : -EAGAIN;
		n = try_plain(op, p);
		break;
	default:
		n = try_plain(op, p);
		break;
	}
	if (n < 0 && errno == ESPIPE && p->offset != -1) {
		/* Pipes and sockets have no position: io_uring ignores the
		 * offset there, and so do we. */
		p->offset = -1;
		return attempt(op, p);
	}
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (int)n;
}

static void nap_detach(struct af_task *t)
{
	(void)t;
}

static const struct af__wait_ops nap_ops = { .what = "connect retry", .detach = nap_detach };

/* A Unix listener with a full backlog: a blocking connect(2) would wait for
 * room, but a non-blocking one fails with EAGAIN and nothing reports the
 * room: the connecting socket is not connected yet, so it polls writable
 * (and hung up) at once, and the kernel wakes only blocked connect(2)
 * callers (the listener's peer_wait queue, which no poll method reaches).
 * libuv and mio hand EAGAIN to the caller; af_connect() keeps the promise
 * of a blocking connect and tries again, backing off: a server that
 * accepts makes room within microseconds, one that is stuck should not
 * cost a wake-up per millisecond per waiting client. */
#define CONNECT_RETRY_FIRST_NS ((int64_t)100 * 1000)
#define CONNECT_RETRY_MAX_NS ((int64_t)16 * 1000 * 1000)

/* Sleep @nap, but not past @deadline. Returns 0 to try again,
 * -ETIMEDOUT or -ECANCELED. */
static int connect_nap(int64_t nap, uint64_t deadline)
{
	int r;

	if (deadline != UINT64_MAX) {
		uint64_t now = af__now_ns();

		if (now >= deadline)
			return -ETIMEDOUT;
		if (deadline - now < (uint64_t)nap)
			nap = (int64_t)(deadline - now);
	}
	r = af__task_block(&nap_ops, NULL, nap);
	return r == -ETIMEDOUT ? 0 : r;
}

static int connect_once(const struct af__io *op)
{
	int fl = fcntl(op->fd, F_GETFL), r;

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(op->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	r = connect(op->fd, op->caddr, op->caddrlen) < 0 ? -errno : 0;
	if (!(fl & O_NONBLOCK))
		fcntl(op->fd, F_SETFL, fl);
	return r;
}

/* connect(2) never blocks the loop: a blocking socket is made non-blocking
 * for the call, and the handshake is waited for like any readiness. */
static int do_connect(struct af_task *t, const struct af__io *op, uint64_t deadline)
{
	int64_t nap = CONNECT_RETRY_FIRST_NS;
	int r, err = 0;
	socklen_t len = sizeof(err);

	watch_forget(t->loop->epoll, op->fd);
	while ((r = connect_once(op)) == -EAGAIN) {
		r = connect_nap(nap, deadline);
		if (r < 0)
			return r;
		nap = nap < CONNECT_RETRY_MAX_NS / 2 ? nap * 2 : CONNECT_RETRY_MAX_NS;
	}
	if (r != -EINPROGRESS)
		return r;
	r = wait_ready(t, op->fd, EPOLLOUT, deadline);
	if (r < 0)
		return r;
	if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

static int do_close(struct af_loop *loop, int fd)
{
	struct fd_watch *w = watch_find(loop->epoll, fd);

	/* Take it out of the set first: a duplicate of the descriptor would
	 * keep the registration alive, and report events under a number that
	 * may soon name another file. */
	if (w && w->added)
		epoll_ctl(loop->epoll->epfd, EPOLL_CTL_DEL, fd, NULL);
	/* io_uring's operations hold the file and finish on it; a readiness
	 * wait holds nothing, and would never end. Its task gets -EBADF, never
	 * a retry: the number may name another file by the time it runs. */
	while (w && w->waiters.head) {
		struct fd_waiter *wt = af__container_of(w->waiters.head, struct fd_waiter, node);

		waiter_unlink(loop, wt);
		wt->closed = true;
		af__task_wake(wt->task, 0);
		loop->outside_wakes++;
	}
	if (w)
		watch_reset(w);
	return close(fd) < 0 ? -errno : 0;
}

/* Whether a try can succeed: not if the descriptor is known not ready.
 * An error, a hang-up and (for reads) an end of stream stay. */
static bool may_be_ready(struct af__epoll *ep, int fd, uint32_t events)
{
	const struct fd_watch *w = watch_find(ep, fd);
	uint32_t lasting = EPOLLERR | EPOLLHUP | (events & EPOLLIN ? EPOLLRDHUP : 0);

	return !w || (w->ready & (events | lasting));
}

static size_t op_len(const struct af__io *op)
{
	size_t n = 0;

	if (op->kind != AF__IO_READV && op->kind != AF__IO_WRITEV)
		return op->len;
	for (size_t i = 0; i < op->len; i++)
		n += op->iov[i].iov_len;
	return n;
}

/* What a try that moved @r bytes says about readiness: EAGAIN, or a short
 * transfer on TCP (the receive queue was empty, the send buffer full; a
 * later segment or ACK raises an edge), means not ready until an edge.
 * MSG_PEEK and MSG_OOB leave the queue as it was. */
static void note_try(struct af__epoll *ep, const struct af__io *op, const struct plan *p, int r)
{
	struct fd_watch *w;
	bool drained = r == -EAGAIN;

	/* Out of memory: the table stays as it was, and the next call tries. */
	if (watch_get(ep, op->fd, &w) < 0)
		return;
	if (r > 0 && w->tcp && op->kind != AF__IO_ACCEPT && op->kind != AF__IO_POLL &&
	    !(op->kind == AF__IO_RECV && (op->flags & (MSG_PEEK | MSG_OOB))))
		drained = (size_t)r < op_len(op);
	if (drained)
		w->ready &= ~p->events;
}

static int try_op(struct af__epoll *ep, const struct af__io *op, struct plan *p)
{
	int r = op->kind == AF__IO_POLL ? poll_now(op->fd, p->events) : attempt(op, p);

	if (op->kind == AF__IO_POLL && r == 0)
		r = -EAGAIN;
	if (op->kind == AF__IO_ACCEPT && r >= 0)
		watch_forget(ep, r);
	note_try(ep, op, p, r);
	return r;
}

int af__epoll_io(struct af_task *t, const struct af__io *op, int64_t timeout_ns,
		 bool cancellable)
{
	uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : af__deadline(timeout_ns);
	struct af__epoll *ep = t->loop->epoll;
	struct plan p;
	int r;

	(void)cancellable; /* a close never parks, so no cancel can reach it */
	if (op->kind == AF__IO_CLOSE)
		return do_close(t->loop, op->fd);
	if (op->kind == AF__IO_CONNECT)
		return do_connect(t, op, deadline);
	r = plan_of(ep, op, &p);
	if (r != 0)
		return r;
	for (;;) {
		bool must_try = p.give_up || p.how == TRY_BLOCKING || op->kind == AF__IO_POLL;

		if (must_try || may_be_ready(ep, op->fd, p.events)) {
			r = try_op(ep, op, &p);
			if (r != -EAGAIN || p.give_up || p.how == TRY_BLOCKING)
				return r;
		}
		r = wait_ready(t, op->fd, p.events, deadline);
		if (r == -EPERM) {
			/* epoll refuses it (/dev/null and other descriptors
			 * without poll support): they never block. */
			p.how = TRY_BLOCKING;
		} else if (r < 0) {
			return r;
		}
	}
}

const struct af__backend af__backend_epoll = {
	.name = "epoll",
	.feature = AF_FEATURE_BACKEND_EPOLL,
	.reads_signalfd = true,
	.open = ep_open,
	.close = ep_close,
	.forget = ep_forget,
	.bind = ep_bind,
	.arm = ep_arm,
	.peek = ep_peek,
	.wait = ep_wait,
	.reap = ep_reap_and_check,
	.signalfd_settled = ep_signalfd_settled,
	.io = af__epoll_io,
};
