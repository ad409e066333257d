/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_IO_H
#define ASYNCFLAG_IO_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <asyncflag/common.h>
#include <asyncflag/loop.h>

AF_BEGIN_DECLS

/**
 * @file io.h
 * @brief File-descriptor I/O as coroutine calls on io_uring (or epoll).
 *
 * Each call submits one io_uring operation and parks the calling task until
 * it completes; the loop keeps running other tasks meanwhile. On the epoll
 * backend a call tries its system call without blocking and parks until the
 * descriptor is ready, with the same results, timeouts and cancellation;
 * regular files and block devices then go to the blocking pool. Results are
 * what the system call would return: a byte count, a new descriptor or
 * 0, or a negative errno value (never errno). Short reads and writes are
 * reported as they are; af_write_all() and af_read_full() loop.
 *
 * Cancellation is safe: when the task is cancelled, or a _timeout variant
 * expires, while an operation is in flight, the loop asks the kernel to
 * cancel it and the call returns only after the kernel has finished with
 * the caller's buffer. If the operation completed anyway, its result is
 * returned (no data is lost) and a cancellation stays pending for the
 * task's next blocking call.
 *
 * _timeout variants take @p timeout_ns (negative: no timeout; any value up
 * to INT64_MAX), implemented with a linked io_uring timeout, and return
 * -ETIMEDOUT when it expires before the operation completes. A zero
 * timeout returns what is ready at once, except where the kernel cannot
 * read or write the file without blocking (a pipe on Linux 6.1): there it
 * may expire first, and then nothing was read or written.
 *
 * Every call returns -EPERM outside a task, -ECHILD in a child of fork()
 * (the loop is the parent's: see af_loop_run()), -EBADF for a negative
 * descriptor (without a system call), -EINVAL for a NULL buffer with a
 * non-zero length or an oversized count, and -ECANCELED when the task is
 * cancelled (before the call, or while the operation was in flight and the
 * kernel stopped it); the _timeout variants also -ETIMEDOUT. The other
 * errors are the system call's own.
 * A single call moves at most INT_MAX bytes (the kernel caps it lower).
 */

/** Offset meaning "the file's current position" for af_read/af_write/v.
 *  On pipes and sockets, which have no position, io_uring ignores any
 *  offset (where pread(2) would fail with ESPIPE). */
#define AF_OFFSET_CURRENT ((int64_t)-1)

/** @brief read(2) / pread(2): @p offset, or AF_OFFSET_CURRENT. @return bytes read (0 at end of file) or -errno. */
int af_read(int fd, void *buf, size_t len, int64_t offset);
int af_read_timeout(int fd, void *buf, size_t len, int64_t offset, int64_t timeout_ns);

/** @brief write(2) / pwrite(2). @return bytes written (maybe fewer than @p len) or -errno.
 *  As with write(2), writing to a pipe or socket whose reader is gone raises
 *  SIGPIPE, which ends the process unless it is ignored (then the call
 *  returns -EPIPE); for sockets prefer af_send(), which never raises it. */
int af_write(int fd, const void *buf, size_t len, int64_t offset);
int af_write_timeout(int fd, const void *buf, size_t len, int64_t offset, int64_t timeout_ns);

/** @brief readv(2) / preadv(2). @return bytes read or -errno; -EINVAL
 *  also for a NULL @p iov or @p iovcnt not in 1..IOV_MAX. */
int af_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset);
int af_readv_timeout(int fd, const struct iovec *iov, int iovcnt, int64_t offset,
		     int64_t timeout_ns);

/** @brief writev(2) / pwritev(2). @return bytes written or -errno; -EINVAL
 *  also for a NULL @p iov or @p iovcnt not in 1..IOV_MAX. */
int af_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset);
int af_writev_timeout(int fd, const struct iovec *iov, int iovcnt, int64_t offset,
		      int64_t timeout_ns);

/** @brief recv(2). @return bytes received (0: the peer closed) or -errno. */
int af_recv(int fd, void *buf, size_t len, int flags);
int af_recv_timeout(int fd, void *buf, size_t len, int flags, int64_t timeout_ns);

/** @brief send(2). MSG_NOSIGNAL is always added: a closed peer gives -EPIPE, never SIGPIPE.
 *  @return bytes sent or -errno. */
int af_send(int fd, const void *buf, size_t len, int flags);
int af_send_timeout(int fd, const void *buf, size_t len, int flags, int64_t timeout_ns);

/**
 * @brief accept4(2).
 * @param addr, addrlen may be NULL; *addrlen must stay valid until the call returns (it does: the task is parked).
 * @param flags SOCK_NONBLOCK / SOCK_CLOEXEC.
 * @return the new descriptor or -errno; -EINVAL also for @p addr without
 *         @p addrlen, or other @p flags.
 */
int af_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
int af_accept_timeout(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
		      int64_t timeout_ns);

/** @brief connect(2). @return 0 or -errno (-ECONNREFUSED, -ETIMEDOUT ...);
 *  -EINVAL also for a NULL @p addr or @p addrlen 0. */
int af_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
int af_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen,
		       int64_t timeout_ns);

/** @brief Wait until @p fd is ready for @p events (POLLIN, POLLOUT, ...).
 *  @return the ready events (a POLL* mask, > 0) or -errno; -EINVAL for
 *  @p events 0. */
int af_poll(int fd, unsigned events);
int af_poll_timeout(int fd, unsigned events, int64_t timeout_ns);

/** @brief Sleep until @p fd is readable: af_poll(fd, POLLIN) that returns 0 when it is. */
int af_wait_readable(int fd);
int af_wait_readable_timeout(int fd, int64_t timeout_ns);

/** @brief close(2) through the ring. Always closes, even in a cancelled
 *  task: a pending or arriving cancel is left for the next blocking call.
 *  It does not cancel other operations in flight on @p fd (io_uring
 *  semantics, unlike uv_close()): they keep the file open and finish when
 *  it answers. Cancel their tasks, or shutdown(2) a socket, first. On
 *  the epoll backend such a call ends with -EBADF instead.
 *  @return 0 or -errno (-EBADF). */
int af_close(int fd);

/**
 * @brief Write all of @p len bytes, looping over short writes.
 * @param offset AF_OFFSET_CURRENT, or the file offset of the first byte
 *        (advanced as bytes are written).
 * @param written receives the bytes written before an error (may be NULL).
 * @return 0 when everything was written, or -errno (-ECANCELED ...); -EIO
 *         if a write moved no byte (it would loop for ever).
 */
int af_write_all(int fd, const void *buf, size_t len, int64_t offset, size_t *written);

/**
 * @brief Read until @p len bytes or end of file, looping over short reads.
 * @return bytes read (fewer than @p len only at end of file) or -errno
 *         (-EINVAL also for @p len above INT_MAX, which the count could
 *         not carry); on an error after some bytes, *got (if not NULL)
 *         says how many.
 */
int af_read_full(int fd, void *buf, size_t len, int64_t offset, size_t *got);

/**
 * @brief Run a blocking function on the loop's worker threads.
 *
 * The calling task is parked while @p fn(@p arg) runs on a worker, and is
 * woken through the same flag path another thread's af_flag_set() takes,
 * so the loop keeps serving other tasks meanwhile. Workers start on first
 * use; af_loop_opts.blocking_threads sets how many (default 4). They block
 * every signal except the synchronous faults (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL, SIGTRAP, SIGSYS), so a fault inside @p fn reaches the process's
 * handlers.
 *
 * If the calling task is already cancelled when it calls, @p fn never runs
 * and the call returns -ECANCELED. If it is cancelled while the job is
 * queued or running, the call returns -ECANCELED at once; the job still
 * runs to completion on its worker and its result is discarded (so @p arg must stay valid until @p fn returns: do not pass a
 * pointer into the cancelled task's stack unless it waits for the job).
 *
 * @param result receives @p fn's return value (may be NULL).
 * @return 0; -EINVAL for a NULL @p fn; -EPERM outside a task; -ECHILD in
 *         a child of fork(); -ENOMEM or -EAGAIN if no worker thread could
 *         be started; -ECANCELED.
 */
int af_run_blocking(af_task_fn fn, void *arg, int *result);

AF_END_DECLS

#endif
