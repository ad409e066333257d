/* SPDX-License-Identifier: MIT */
/*
 * What the loop needs from the kernel, behind one interface: io_uring
 * (uring.c) where the kernel allows it, epoll (epoll.c) where it does not.
 * The scheduler (loop.c), tasks and primitives only ever call through
 * loop->backend; only the I/O calls know that each backend runs an
 * operation its own way (a ring submission, or a readiness wait and a
 * non-blocking retry).
 *
 * A backend owns the loop's eventfd wake-up: af__loop_kick() writes it,
 * and the backend makes sure a sleep ends when it does. The sleep_state
 * handshake itself stays in loop.c, so both backends keep the flag's
 * promises (no lost wake-up, at most one kick per sleep, no system call
 * while the loop is awake) by construction.
 */
#ifndef AF_LOOP_BACKEND_H
#define AF_LOOP_BACKEND_H

#include <limits.h>

#include "internal.h"

struct af__backend {
	const char *name;
	unsigned feature;        /* its AF_FEATURE_BACKEND_* bit */
	/* It keeps loop->sigfd read (signal.c): signals blocked in the loop's
	 * thread reach their flags without a handler. */
	bool reads_signalfd;
	/* Set the backend up on a loop whose eventfd exists (loop->efd).
	 * @flags are af_loop_opts.flags. Returns 0 or -errno; on failure
	 * nothing is left to close. */
	int (*open)(struct af_loop *loop, unsigned entries, unsigned flags);
	void (*close)(struct af_loop *loop);
	/* In a child of fork(): release this process's own copies only (the
	 * parent's loop shares the kernel objects and must stay untouched). */
	void (*forget)(struct af_loop *loop);
	/* The loop runs for the first time, on the calling thread. */
	int (*bind)(struct af_loop *loop);
	/* Before every look at the kernel, with the loop AWAKE: keep what the
	 * loop always has in the kernel there (the signalfd's read or
	 * registration) and, when the next sleep will be the backend's wait,
	 * what makes a kick end it (io_uring: the eventfd's request). */
	void (*arm)(struct af_loop *loop);
	/* Tasks are runnable: take in what is ready without blocking, and
	 * only enter the kernel when it can have something for us. */
	void (*peek)(struct af_loop *loop);
	/* Block until something is ready, an eventfd write or @deadline
	 * (UINT64_MAX: none). Called with sleep_state SLEEPING; must not run
	 * completions (reap does, once the loop is AWAKE again). */
	void (*wait)(struct af_loop *loop, uint64_t deadline);
	/* Whether the kernel holds nothing for this loop that only the
	 * backend's wait would see: no operation in flight or queued, no
	 * completion unreaped, no eventfd completion owed. Then, with no
	 * signalfd, the loop may sleep in a bare FUTEX_WAIT on sleep_state
	 * (loop.c, park()), which a kick, a signal or the deadline ends:
	 * AF_SLEEP_PARKED. With a signalfd whose read is not armed, or is in
	 * flight where only the loop's next entry can complete it, it may
	 * sleep in sigtimedwait() for the same signals (loop.c,
	 * wait_for_signals()): AF_SLEEP_SIGWAIT, if the loop's own rules
	 * allow. 0: the backend's wait. NULL: always 0. */
	unsigned (*parkable)(const struct af_loop *loop);
	/* Run what the wait took in. */
	void (*reap)(struct af_loop *loop);
	/* Whether the loop's signalfd read needs nothing from the loop's
	 * context: it is in flight, nothing waits to be submitted or reaped,
	 * and its completion can only come when the loop enters the kernel,
	 * which a busy loop with no I/O in flight does not do (loop.c,
	 * collect_here()). */
	bool (*signalfd_settled)(const struct af_loop *loop, const struct af__sigfd *s);
	/* Run one I/O operation for task @t (see io.c). May return
	 * AF__IO_BLOCKING: the descriptor cannot be waited on, so the caller
	 * runs the operation on the blocking pool instead. */
	int (*io)(struct af_task *t, const struct af__io *op, int64_t timeout_ns,
		  bool cancellable);
};

/* No system call returns it: results are counts up to INT_MAX or -errno
 * above -4096. */
#define AF__IO_BLOCKING INT_MIN

extern const struct af__backend af__backend_uring;
extern const struct af__backend af__backend_epoll;

/* io.c: the io_uring backend's I/O, one ring operation per call. */
int af__uring_io(struct af_task *t, const struct af__io *op, int64_t timeout_ns,
		 bool cancellable);
/* epoll.c: readiness-based I/O. */
int af__epoll_io(struct af_task *t, const struct af__io *op, int64_t timeout_ns,
		 bool cancellable);

#endif
