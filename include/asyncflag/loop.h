/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_LOOP_H
#define ASYNCFLAG_LOOP_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/** A task body. Its return value becomes the task's result (see af_task_join). */
typedef int (*af_task_fn)(void *arg);

/** af_loop_opts.flags: create a plain ring without COOP_TASKRUN,
 *  SINGLE_ISSUER or DEFER_TASKRUN (for kernels or sandboxes that reject them;
 *  the loop also falls back by itself when the kernel refuses a flag). */
#define AF_LOOP_BASIC_RING (1u << 0)
/** af_loop_opts.flags: use io_uring only; af_loop_new() fails (-EPERM,
 *  -ENOSYS ...) where it cannot be set up, instead of falling back to epoll. */
#define AF_LOOP_BACKEND_IO_URING (1u << 1)
/** af_loop_opts.flags: use epoll (with an eventfd for wake-ups and the wait
 *  timeout for timers) even where io_uring is available. */
#define AF_LOOP_BACKEND_EPOLL (1u << 2)

/**
 * Options for af_loop_new(). Zero-initialise and set what you need: every
 * zero field means "the default".
 */
struct af_loop_opts {
	/** io_uring submission queue entries; 0 means 256, else 2 to 32768 (an
	 *  operation and its linked timeout must fit one submission). Rounded up
	 *  to a power of two by the kernel. Checked but unused on epoll. */
	unsigned ring_entries;
	/** AF_LOOP_* flags. */
	unsigned flags;
	/** Default task stack size in bytes; 0 means 256 KiB. Stacks are
	 *  reserved with mmap and committed lazily, so a large size costs address
	 *  space, not memory. Rounded up to whole pages; 16 KiB to 1 GiB. */
	size_t stack_size;
	/** How many freed default-size stacks keep their pages, and how many
	 *  freed task structs are kept for the next spawns, once the loop
	 *  sleeps (all are while it is busy); 0 means 64, at most 4096. */
	unsigned stack_cache;
	/** Worker threads for af_run_blocking(), started on first use; 0 means 4, at most 256. */
	unsigned blocking_threads;
	/** Before it sleeps in the kernel, spin up to this many nanoseconds
	 *  watching for af_flag_set() and finished af_run_blocking() jobs: a set
	 *  that lands meanwhile wakes its task with no system call on either side,
	 *  several times sooner than a sleeping loop. The spin ends early at the
	 *  next timer, and looks at I/O in flight as it goes. It burns the loop's
	 *  CPU: up to spin_ns per sleep, all of it while sets come closer together
	 *  than that. 0 means never spin; at most AF_LOOP_SPIN_MAX_NS (1 s). */
	uint64_t spin_ns;
	/** Reserved for future options; keep zero. */
	uint64_t _reserved[3];
};

/** The largest af_loop_opts.spin_ns: one second. */
#define AF_LOOP_SPIN_MAX_NS 1000000000u

/**
 * @brief Create an event loop on io_uring, or on epoll where io_uring is
 * not available.
 *
 * The loop belongs to the thread that first runs it (af_loop_run); any number
 * of loops may exist, each run by its own thread. Uses COOP_TASKRUN,
 * SINGLE_ISSUER and DEFER_TASKRUN when the kernel offers them and falls back
 * cleanly when it does not (Linux 6.1 and later are supported).
 *
 * The backend: AF_LOOP_BACKEND_IO_URING or AF_LOOP_BACKEND_EPOLL in
 * @p opts flags if one is set; else the AF_BACKEND environment variable
 * ("io_uring" or "epoll"); else io_uring, and epoll when io_uring cannot be
 * set up or used (-EPERM, -ENOSYS, -EACCES: kernel.io_uring_disabled, a
 * container's seccomp profile, a kernel without it). Both behave the same;
 * af_loop_features() says which one the loop got.
 *
 * @param loop receives the new loop.
 * @param opts options, or NULL for the defaults.
 * On io_uring the ring's mappings are not inherited by fork() children
 * (MADV_DONTFORK), so a child can never disturb the parent's loop; in the
 * child every call on the inherited loop fails with -ECHILD (see
 * af_loop_run).
 *
 * @return 0; -EINVAL if @p loop is NULL or an option is out of range (both
 *         backend flags set); -EOPNOTSUPP if io_uring was asked for and the
 *         kernel lacks IORING_FEAT_EXT_ARG (before 5.11; reported in debug
 *         builds); -ENOMEM; or the kernel's error from io_uring_setup(),
 *         epoll_create1() or eventfd(): -EMFILE, -ENFILE, and -EPERM /
 *         -ENOSYS when io_uring was asked for (by flag or AF_BACKEND=io_uring)
 *         and is disabled. af_strerror() explains these.
 */
int af_loop_new(struct af_loop **loop, const struct af_loop_opts *opts);

/**
 * @brief Free a loop that is not running, with every task that was never
 * joined and every cached stack. NULL is ignored. Destroy the loop's flags
 * first: a flag still live is reported in debug builds, and the loop then
 * keeps a small record of itself until that flag is destroyed, so its sets
 * do nothing and never write a descriptor the loop has closed. Waits for a
 * set that is writing the loop's eventfd. In a fork() child, releases only
 * the child's own copies (the parent's loop is untouched).
 */
void af_loop_free(struct af_loop *loop);

/**
 * @brief Run @p main as a task on @p loop until it returns.
 *
 * When @p main returns, every task still alive is cancelled (and so is any
 * task they spawn while they unwind) and the loop runs until they have all
 * ended, so af_loop_run() never leaves coroutines behind.
 * If every task is blocked on something that nothing can complete (no timer,
 * no flag waiter, no I/O, no af_run_blocking job), the loop cancels all tasks
 * so they can unwind and reports -EDEADLK. Tasks that block on nothing again
 * before anything from outside (a timer, flag, job or I/O) woke one of them,
 * and before any new task was spawned, are abandoned: unlinked from what they
 * wait on, ended with result -EDEADLK, their stacks dropped without
 * unwinding.
 *
 * @param loop the loop; it must not be running already.
 * @param main the main task's body.
 * @param arg  passed to @p main.
 * @param result receives @p main's return value (may be NULL).
 * @return 0; -EINVAL for a NULL @p loop or @p main; -EBUSY if the loop is
 *         already running (a nested call from one of its tasks); -EPERM if
 *         called from a thread other than the one that ran it first, or from
 *         a thread already running another loop; -ENOMEM;
 *         -EDEADLK as described above (@p result is still filled in);
 *         -ECHILD in a child of fork() on a loop created before the fork,
 *         and when a task of the loop called fork(), in the child, as soon
 *         as that task returns or blocks (its calls into the library
 *         meanwhile fail with -ECHILD). Exec or _exit in the child.
 */
int af_loop_run(struct af_loop *loop, af_task_fn main, void *arg, int *result);

/**
 * @brief Create a loop with default options, run @p main on it, free it.
 * @return @p main's return value, or the negative errno of af_loop_new() /
 *         af_loop_run() if the loop could not run (main then never ran).
 *         After a deadlock (see af_loop_run) it is main's result, which is
 *         -ECANCELED or whatever main returned after its wait was cancelled;
 *         use af_loop_run() to tell a deadlock apart.
 */
int af_run(af_task_fn main, void *arg);

/** @brief The loop running on the calling thread, or NULL. Async-signal-safe. */
struct af_loop *af_loop_current(void);

/** Feature bits reported by af_loop_features(). */
#define AF_FEATURE_COOP_TASKRUN  (1u << 0) /**< ring uses IORING_SETUP_COOP_TASKRUN */
#define AF_FEATURE_SINGLE_ISSUER (1u << 1) /**< ring uses IORING_SETUP_SINGLE_ISSUER */
#define AF_FEATURE_DEFER_TASKRUN (1u << 2) /**< ring uses IORING_SETUP_DEFER_TASKRUN */
#define AF_FEATURE_ASM_SWITCH    (1u << 3) /**< tasks switch with the hand-written assembly switch */
#define AF_FEATURE_BACKEND_IO_URING (1u << 4) /**< the loop runs on io_uring */
#define AF_FEATURE_BACKEND_EPOLL    (1u << 5) /**< the loop runs on epoll */

/**
 * @brief Which backend this loop runs on (exactly one of
 * AF_FEATURE_BACKEND_IO_URING and AF_FEATURE_BACKEND_EPOLL), which optional
 * io_uring setup flags it got from the kernel (none on epoll), and which
 * context switch the library was built with (AF_FEATURE_* bits).
 * @return the bits, or 0 for a NULL loop.
 */
unsigned af_loop_features(const struct af_loop *loop);

AF_END_DECLS

#endif
