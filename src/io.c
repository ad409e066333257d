/* SPDX-License-Identifier: MIT */
/*
 * File-descriptor I/O as coroutine calls: one io_uring operation per call,
 * the task parked until its completion arrives.
 *
 * The request lives on the calling task's stack and the task never leaves
 * the call while the kernel may still touch it or the caller's buffer: a
 * cancel or a timeout only asks the kernel to cancel, and the call then
 * waits for every completion of the request before it returns. That is
 * what keeps a cancelled read from landing in memory the caller reused.
 */
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop/backend.h"

#if AF_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#endif

typedef void (*prep_fn)(struct io_uring_sqe *sqe, const void *args);

struct io_req {
	struct af__op op;       /* the operation's completion */
	struct af__op tmo;      /* the linked timeout's completion */
	struct af__op cxl;      /* our cancel request's completion */
	struct af_task *task;
	int res;
	int pending;            /* completions still to come: op, timeout, cancel */
	bool op_live;           /* the operation's own completion is still to come */
	bool timed_out;
	bool want_cancel;       /* the timer fired but could not stop the operation */
	bool cancel_live;       /* a cancel request is in the kernel */
	bool retry;             /* that cancel found nothing to stop: ask again */
	struct __kernel_timespec ts;
	prep_fn prep;
	const struct af__io *args;
};

/* How long a task waits before asking again to cancel an operation that a
 * cancel did not find: one in flight between the kernel's queues, or on an
 * io-wq worker that was interrupted and is on its way out (or cannot be
 * interrupted: a regular file's write). Short at first, because the caller
 * is waiting; doubling up to a cap, so a long uninterruptible operation
 * costs a few submissions, not a busy loop. */
#define AF_RECANCEL_NS ((int64_t)1000 * 1000)
#define AF_RECANCEL_MAX_NS ((int64_t)128 * 1000 * 1000)

static void mark_defined(const struct io_req *req);
static prep_fn prep_of(enum af__io_kind kind);

static struct io_req *req_of(struct af__op *op, size_t off)
{
	return (struct io_req *)(void *)((char *)op - off);
}

static void req_settle(struct af_loop *loop, struct io_req *req)
{
	bool done = --req->pending == 0;

	if (done)
		loop->ninflight--;
	else if (!req->want_cancel && !req->retry)
		return;
	/* A task woken by a cancel meanwhile is runnable already; it finds
	 * the state when it resumes. */
	if (req->task->state == AF_TASK_BLOCKED && req->task->wait_obj == req) {
		af__task_wake(req->task, 0);
		loop->outside_wakes++;
	}
}

static void op_done(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	struct io_req *req = req_of(op, offsetof(struct io_req, op));

	(void)flags;
	req->res = res;
	req->op_live = false;
	req->want_cancel = false;
	req->retry = false;
	mark_defined(req);
	req_settle(loop, req);
}

static void tmo_done(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	struct io_req *req = req_of(op, offsetof(struct io_req, tmo));

	(void)flags;
	/* -ECANCELED: the operation finished first and took the timer down.
	 * Anything else means the timer expired: -ETIME when it cancelled the
	 * operation; -ENOENT or -EALREADY when it did not find it where it
	 * cancels from: on an io-wq worker (a blocking connect to a full
	 * Unix listener), which it interrupts (the operation ends with
	 * -EINTR), or (a zero timeout) on its way there, which it misses.
	 * The task then sends a cancel of its own. */
	if (res != -ECANCELED)
		req->timed_out = true;
	if (res != -ECANCELED && res != -ETIME && req->op_live)
		req->want_cancel = true;
	req_settle(loop, req);
}

static void cxl_done(struct af_loop *loop, struct af__op *op, int res, unsigned flags)
{
	struct io_req *req = req_of(op, offsetof(struct io_req, cxl));

	(void)flags;
	req->cancel_live = false;
	if (res != 0 && req->op_live)
		req->retry = true;
	req_settle(loop, req);
}

/* Cancel and timeout wake the task through af__task_wake; the request
 * itself stays linked until the kernel is done with it. */
static void io_detach(struct af_task *t)
{
	(void)t;
}

static const struct af__wait_ops io_ops = {
	.what = "io",
	.detach = io_detach,
	.keeps_alive = true,
};

static void submit_cancel(struct af_loop *loop, struct io_req *req)
{
	struct io_uring_sqe *sqe = af__loop_sqe(loop);

	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&req->op, 0);
	/* Its completion points into this stack frame too: wait for it. */
	io_uring_sqe_set_data(sqe, &req->cxl);
	req->pending++;
	req->cancel_live = true;
}

/* Park until every completion of @req has arrived, whatever cancels come
 * in meanwhile. If @may_cancel, a cancel of the task (@cancelled: one
 * already came) also asks the kernel to cancel the operation; so does a
 * timeout that expired without stopping it. Returns true if the task was
 * cancelled on the way. */
static bool drain(struct af_loop *loop, struct io_req *req, bool cancelled, bool may_cancel)
{
	bool cancel_sent = false, waited = false;
	int64_t backoff = AF_RECANCEL_NS;

	while (req->pending > 0) {
		bool want = (cancelled && may_cancel) || req->want_cancel;

		if (want && req->op_live && !req->cancel_live && (!cancel_sent || req->retry)) {
			if (req->retry && !waited) {
				/* Give the operation time to land where a cancel
				 * finds it, or to finish. */
				waited = true;
				if (af__task_block(&io_ops, req, backoff) == -ECANCELED)
					cancelled = true;
				if (backoff < AF_RECANCEL_MAX_NS)
					backoff *= 2;
				continue;
			}
			req->retry = false;
			waited = false;
			submit_cancel(loop, req);
			cancel_sent = true;
			/* Taking a slot can flush, and a pushed-back flush reaps:
			 * the last completion may have come meanwhile, and then
			 * nobody would ever wake us. */
			continue;
		}
		if (af__task_block(&io_ops, req, -1) == -ECANCELED)
			cancelled = true;
	}
	return cancelled;
}

/* The io_uring backend: submit one operation (plus a linked timeout) and
 * wait for its result. An operation that is not @cancellable (close) runs
 * even with a cancel pending and is never cancelled in the kernel; the
 * cancel waits for the task's next blocking call. */
int af__uring_io(struct af_task *t, const struct af__io *args, int64_t timeout_ns,
		 bool cancellable)
{
	struct af_loop *loop = t->loop;
	prep_fn prep = prep_of(args->kind);
	struct io_uring_sqe *sqe;
	struct io_req req;
	bool cancelled;

	memset(&req, 0, sizeof(req));
	req.op.complete = op_done;
	req.tmo.complete = tmo_done;
	req.cxl.complete = cxl_done;
	req.task = t;
	req.pending = 1;
	req.op_live = true;
	req.prep = prep;
	req.args = args;
	/* A link only holds within one submission: make room for both
	 * entries before taking the first. A flush the kernel pushes back
	 * makes no room, so flush until there is. */
	while (timeout_ns >= 0 && io_uring_sq_space_left(&loop->ring) < 2)
		af__loop_flush(loop);
	sqe = af__loop_sqe(loop);
	prep(sqe, args);
	io_uring_sqe_set_data(sqe, &req.op);
	if (timeout_ns >= 0) {
		/* Clamped, so no kernel has to saturate now + timeout. */
		req.ts = af__kernel_ts((uint64_t)timeout_ns);
		sqe->flags |= IOSQE_IO_LINK;
		sqe = af__loop_sqe(loop);
		io_uring_prep_link_timeout(sqe, &req.ts, 0);
		io_uring_sqe_set_data(sqe, &req.tmo);
		req.pending = 2;
	}
	loop->ninflight++;

	if (!cancellable) {
		/* Hold a pending cancel back (af__task_block would take it) and
		 * hand it, or one arriving meanwhile, to the next call. */
		cancelled = t->cancel_pending;
		t->cancel_pending = false;
		if (drain(loop, &req, false, false) || cancelled)
			t->cancel_pending = true;
		return req.res;
	}
	cancelled = drain(loop, &req, false, true);

	if (cancelled) {
		/* The kernel cancelled it: report the cancel. It completed
		 * anyway: report what it did, and let the cancel reach the
		 * next blocking call instead. */
		if (req.res == -ECANCELED || req.res == -EINTR)
			return -ECANCELED;
		t->cancel_pending = true;
		return req.res;
	}
	if (req.timed_out && (req.res == -ECANCELED || req.res == -EINTR))
		return -ETIMEDOUT;
	return req.res;
}

static int io_on_pool(struct af_task *t, const struct af__io *op);

/* A read or write of no bytes: read(2) and write(2) answer it at once.
 * Through the ring it waits on a file the kernel cannot read or write
 * without blocking (a pipe on Linux 6.1): the kernel parks it on poll
 * until the pipe is readable (writable), for ever on an empty (full) one.
 * Sockets stay on the ring: the kernel never blocks them there, and a
 * zero-length write(2) to one can send (an empty datagram) or wait for a
 * connection. Returns 1 if @op is not such a call. */
static int io_empty(const struct af__io *op)
{
	struct stat st;
	ssize_t n;

	if ((op->kind != AF__IO_READ && op->kind != AF__IO_WRITE) || op->len != 0)
		return 1;
	if (fstat(op->fd, &st) < 0)
		return -errno;
	if (S_ISSOCK(st.st_mode))
		return 1;
	/* No offset: it changes nothing for zero bytes, and a pipe would
	 * refuse one with -ESPIPE where the ring ignores it. */
	n = op->kind == AF__IO_READ ? read(op->fd, op->buf, 0) : write(op->fd, op->buf, 0);
	return n < 0 ? -errno : 0;
}

/* Run @op on the loop's backend. A descriptor the backend cannot wait on
 * (a regular file on epoll) is read or written on the blocking pool. */
static int io_run_opt(const struct af__io *op, int64_t timeout_ns, bool cancellable)
{
	int err = 0;
	struct af_task *t = af__task_self(&err);
	int r;

	if (!t)
		return err;
	if (t->cancel_pending && cancellable) {
		t->cancel_pending = false;
		return -ECANCELED;
	}
	r = io_empty(op);
	if (r <= 0)
		return r;
	r = t->loop->backend->io(t, op, timeout_ns, cancellable);
	if (r == AF__IO_BLOCKING)
		r = io_on_pool(t, op);
	return r;
}

static int io_run(const struct af__io *op, int64_t timeout_ns)
{
	return io_run_opt(op, timeout_ns, true);
}

/* ---- the operations --------------------------------------------------------- */


static uint64_t off_arg(int64_t offset)
{
	/* -1 is io_uring's "use the file position". */
	return offset < 0 ? (uint64_t)-1 : (uint64_t)offset;
}

static int check_buf(int fd, const void *buf, size_t len)
{
	if (fd < 0)
		return -EBADF;
	if ((!buf && len) || len > INT_MAX)
		return -EINVAL;
	return 0;
}

static void prep_read(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_read(sqe, r->fd, r->buf, r->len, r->offset);
}

static void prep_write(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_write(sqe, r->fd, r->buf, r->len, r->offset);
}

static void prep_readv(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_readv(sqe, r->fd, r->iov, r->len, r->offset);
}

static void prep_writev(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_writev(sqe, r->fd, r->iov, r->len, r->offset);
}

static void prep_recv(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_recv(sqe, r->fd, r->buf, r->len, r->flags);
}

static void prep_send(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_send(sqe, r->fd, r->buf, r->len, r->flags | MSG_NOSIGNAL);
}

static void prep_accept(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_accept(sqe, r->fd, r->addr, r->addrlen, r->flags);
}

static void prep_connect(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_connect(sqe, r->fd, r->caddr, r->caddrlen);
}

static void prep_poll(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_poll_add(sqe, r->fd, (unsigned)r->flags);
}

static void prep_close(struct io_uring_sqe *sqe, const void *a)
{
	const struct af__io *r = a;

	io_uring_prep_close(sqe, r->fd);
}

static prep_fn prep_of(enum af__io_kind kind)
{
	static const prep_fn preps[] = {
		[AF__IO_READ] = prep_read,
		[AF__IO_WRITE] = prep_write,
		[AF__IO_READV] = prep_readv,
		[AF__IO_WRITEV] = prep_writev,
		[AF__IO_RECV] = prep_recv,
		[AF__IO_SEND] = prep_send,
		[AF__IO_ACCEPT] = prep_accept,
		[AF__IO_CONNECT] = prep_connect,
		[AF__IO_POLL] = prep_poll,
		[AF__IO_CLOSE] = prep_close,
	};

	return preps[kind];
}

/* ---- files and block devices on the blocking pool ------------------------------ */

/* A worker's plain blocking call: epoll cannot wait on regular files and
 * block devices (they are always "ready" and then block on the disk), so
 * they are read and written off the loop thread, as libuv does. */
static int io_sync(void *arg)
{
	const struct af__io *op = arg;
	bool at_pos = op->offset == (uint64_t)-1;
	off_t off = (off_t)op->offset;
	ssize_t n;

	switch (op->kind) {
	case AF__IO_READ:
		n = at_pos ? read(op->fd, op->buf, op->len) : pread(op->fd, op->buf, op->len, off);
		break;
	case AF__IO_WRITE:
		n = at_pos ? write(op->fd, op->buf, op->len)
			   : pwrite(op->fd, op->buf, op->len, off);
		break;
	case AF__IO_READV:
		n = at_pos ? readv(op->fd, op->iov, (int)op->len)
			   : preadv(op->fd, op->iov, (int)op->len, off);
		break;
	case AF__IO_WRITEV:
		n = at_pos ? writev(op->fd, op->iov, (int)op->len)
			   : pwritev(op->fd, op->iov, (int)op->len, off);
		break;
	default:
		return -EINVAL;
	}
	return n < 0 ? -errno : (int)n;
}

/* The worker writes into the caller's buffer, so the call waits for it
 * even when cancelled (like a ring operation the kernel could not cancel
 * any more): its result is returned and the cancel stays pending. */
static int io_on_pool(struct af_task *t, const struct af__io *op)
{
	int result = 0;
	int r = af__blocking_run_through(t, io_sync, (void *)op, &result);

	return r < 0 ? r : result;
}

/* Valgrind cannot see the kernel write into the caller's buffer through
 * the ring; tell it, or every byte read would count as uninitialised. */
static void mark_defined(const struct io_req *req)
{
#if AF_HAVE_VALGRIND
	const struct af__io *a = req->args;

	if (!RUNNING_ON_VALGRIND || req->res < 0)
		return;
	if (req->prep == prep_read || req->prep == prep_recv) {
		VALGRIND_MAKE_MEM_DEFINED(a->buf, (size_t)req->res);
	} else if (req->prep == prep_readv) {
		size_t left = (size_t)req->res;

		for (unsigned i = 0; i < a->len && left; i++) {
			size_t n = a->iov[i].iov_len < left ? a->iov[i].iov_len : left;

			VALGRIND_MAKE_MEM_DEFINED(a->iov[i].iov_base, n);
			left -= n;
		}
	} else if (req->prep == prep_accept && a->addr && a->addrlen) {
		VALGRIND_MAKE_MEM_DEFINED(a->addrlen, sizeof(*a->addrlen));
		VALGRIND_MAKE_MEM_DEFINED(a->addr, *a->addrlen);
	}
#else
	(void)req;
#endif
}

AF_API int af_read_timeout(int fd, void *buf, size_t len, int64_t offset, int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_READ,
			    .fd = fd, .buf = buf, .len = (unsigned)len, .offset = off_arg(offset) };
	int r = check_buf(fd, buf, len);

	return r < 0 ? r : io_run(&a, timeout_ns);
}

AF_API int af_read(int fd, void *buf, size_t len, int64_t offset)
{
	return af_read_timeout(fd, buf, len, offset, -1);
}

AF_API int af_write_timeout(int fd, const void *buf, size_t len, int64_t offset,
			    int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_WRITE, .fd = fd, .buf = (void *)buf,
			    .len = (unsigned)len, .offset = off_arg(offset) };
	int r = check_buf(fd, buf, len);

	return r < 0 ? r : io_run(&a, timeout_ns);
}

AF_API int af_write(int fd, const void *buf, size_t len, int64_t offset)
{
	return af_write_timeout(fd, buf, len, offset, -1);
}

static int check_iov(int fd, const struct iovec *iov, int iovcnt)
{
	if (fd < 0)
		return -EBADF;
	if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	return 0;
}

AF_API int af_readv_timeout(int fd, const struct iovec *iov, int iovcnt, int64_t offset,
			    int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_READV, .fd = fd, .iov = iov, .len = (unsigned)iovcnt,
			     .offset = off_arg(offset) };
	int r = check_iov(fd, iov, iovcnt);

	return r < 0 ? r : io_run(&a, timeout_ns);
}

AF_API int af_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return af_readv_timeout(fd, iov, iovcnt, offset, -1);
}

AF_API int af_writev_timeout(int fd, const struct iovec *iov, int iovcnt, int64_t offset,
			     int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_WRITEV, .fd = fd, .iov = iov, .len = (unsigned)iovcnt,
			     .offset = off_arg(offset) };
	int r = check_iov(fd, iov, iovcnt);

	return r < 0 ? r : io_run(&a, timeout_ns);
}

AF_API int af_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return af_writev_timeout(fd, iov, iovcnt, offset, -1);
}

AF_API int af_recv_timeout(int fd, void *buf, size_t len, int flags, int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_RECV,
			    .fd = fd, .buf = buf, .len = (unsigned)len, .flags = flags };
	int r = check_buf(fd, buf, len);

	return r < 0 ? r : io_run(&a, timeout_ns);
}

AF_API int af_recv(int fd, void *buf, size_t len, int flags)
{
	return af_recv_timeout(fd, buf, len, flags, -1);
}

AF_API int af_send_timeout(int fd, const void *buf, size_t len, int flags, int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_SEND,
			    .fd = fd, .buf = (void *)buf, .len = (unsigned)len, .flags = flags };
	int r = check_buf(fd, buf, len);

	return r < 0 ? r : io_run(&a, timeout_ns);
}

AF_API int af_send(int fd, const void *buf, size_t len, int flags)
{
	return af_send_timeout(fd, buf, len, flags, -1);
}

AF_API int af_accept_timeout(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			     int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_ACCEPT,
			    .fd = fd, .addr = addr, .addrlen = addrlen, .flags = flags };

	if (fd < 0)
		return -EBADF;
	if ((addr && !addrlen) || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
		return -EINVAL;
	return io_run(&a, timeout_ns);
}

AF_API int af_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	return af_accept_timeout(fd, addr, addrlen, flags, -1);
}

AF_API int af_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen,
			      int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_CONNECT, .fd = fd, .caddr = addr, .caddrlen = addrlen };

	if (fd < 0)
		return -EBADF;
	if (!addr || addrlen == 0)
		return -EINVAL;
	return io_run(&a, timeout_ns);
}

AF_API int af_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	return af_connect_timeout(fd, addr, addrlen, -1);
}

AF_API int af_poll_timeout(int fd, unsigned events, int64_t timeout_ns)
{
	struct af__io a = { .kind = AF__IO_POLL, .fd = fd, .flags = (int)events };

	if (fd < 0)
		return -EBADF;
	if (!events)
		return -EINVAL;
	return io_run(&a, timeout_ns);
}

AF_API int af_poll(int fd, unsigned events)
{
	return af_poll_timeout(fd, events, -1);
}

AF_API int af_wait_readable_timeout(int fd, int64_t timeout_ns)
{
	int r = af_poll_timeout(fd, POLLIN, timeout_ns);

	return r < 0 ? r : 0;
}

AF_API int af_wait_readable(int fd)
{
	return af_wait_readable_timeout(fd, -1);
}

AF_API int af_close(int fd)
{
	struct af__io a = { .kind = AF__IO_CLOSE, .fd = fd };

	if (fd < 0)
		return -EBADF;
	/* A close must happen even in a cancelled task, or the descriptor
	 * leaks; the cancel reaches the next blocking call instead. */
	return io_run_opt(&a, -1, false);
}

/* 0 in a task, -EPERM elsewhere. */
static int in_task(void)
{
	int err = 0;

	return af__task_self(&err) ? 0 : err;
}

AF_API int af_write_all(int fd, const void *buf, size_t len, int64_t offset, size_t *written)
{
	const char *p = buf;
	size_t done = 0;
	int r = check_buf(fd, buf, 0);

	if (r == 0 && !buf && len)
		r = -EINVAL;
	if (r == 0)
		r = in_task(); /* with nothing to write, no af_write() would say so */
	while (r == 0 && done < len) {
		size_t chunk = len - done > INT_MAX ? INT_MAX : len - done;

		r = af_write(fd, p + done, chunk, offset < 0 ? offset : offset + (int64_t)done);
		if (r > 0) {
			done += (size_t)r;
			r = 0;
		} else if (r == 0) {
			r = -EIO; /* a write that moves nothing would loop forever */
		}
	}
	if (written)
		*written = done;
	return r;
}

AF_API int af_read_full(int fd, void *buf, size_t len, int64_t offset, size_t *got)
{
	char *p = buf;
	size_t done = 0;
	int r = check_buf(fd, buf, len > INT_MAX ? INT_MAX : len);

	if (r == 0 && len > INT_MAX)
		r = -EINVAL;
	if (r == 0)
		r = in_task();
	while (r == 0 && done < len) {
		r = af_read(fd, p + done, len - done, offset < 0 ? offset : offset + (int64_t)done);
		if (r > 0) {
			done += (size_t)r;
			r = 0;
		} else if (r == 0) {
			break; /* end of file */
		}
	}
	if (got)
		*got = done;
	return r < 0 ? r : (int)done;
}
