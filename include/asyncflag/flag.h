/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_FLAG_H
#define ASYNCFLAG_FLAG_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/**
 * A ThreadSafeFlag: one bit that another thread or a signal handler sets to
 * wake one task on a loop.
 *
 * af_flag_set() is lock-free and async-signal-safe: it uses only atomics and,
 * when the loop sleeps, one system call to wake it (a FUTEX_WAKE, a
 * write(2) to the loop's eventfd, or a tgkill() of SIGURG when the loop
 * sleeps in sigtimedwait() for its signals). Sets coalesce (the
 * flag is not a counter). One task may wait at a time; its wait clears the
 * flag when it returns. Caller-allocated and bound to one loop by
 * af_flag_init().
 */
struct af_flag {
	union af__private _private;
};

/**
 * @brief Initialise @p flag, cleared, bound to @p loop.
 * A flag that is still initialised is destroyed first (af_flag_destroy(),
 * with its thread rules), so re-initialising one that is still queued on its
 * loop is safe.
 * @param loop the loop whose tasks will wait on it; NULL means the loop
 *        running on this thread.
 * @return 0; -EINVAL if @p flag is NULL, or @p loop is NULL and no loop
 *         runs on this thread; -EBUSY if @p flag is initialised and a task
 *         waits on it (reported in debug builds; the flag is unchanged).
 */
int af_flag_init(struct af_flag *flag, struct af_loop *loop);

/**
 * @brief Release a flag. Stops any af_signal_watch() that targets it.
 *
 * Lifetime rule: once af_flag_wait() has returned 0, the waiter may destroy
 * the flag and then free or reuse its memory at once, even while the thread
 * or handler that set it is still returning from af_flag_set(): destroy
 * waits for sets in progress (they never block). A set that starts after
 * destroy is ignored, as long as the memory is still a destroyed flag; once
 * the memory is freed or reused, nothing may set it.
 *
 * Call it from the loop's thread, or while the loop is not running (before
 * or after af_loop_free() alike; concurrent destroys are fine). No task may
 * be waiting on it (a waiting task is reported in debug builds and the call
 * is refused). Not async-signal-safe. NULL is ignored.
 */
void af_flag_destroy(struct af_flag *flag);

/**
 * @brief Set the flag and, if a task waits on it, wake it.
 *
 * Safe from any thread and from signal handlers; preserves errno; not a
 * cancellation point. A set on a set flag does nothing. The waiter runs
 * when the loop next collects its wake-ups, behind tasks already runnable,
 * so a task that sets a flag and yields resumes before the waiter. Costs no
 * system call while the loop is awake; at most one per loop sleep attempt
 * however many flags are set (a FUTEX_WAKE when the loop is parked, with no
 * I/O in flight and no signal watched, or on Linux 6.7+; SIGURG sent to the
 * loop's thread when, woken by its signals lately, it sleeps in
 * sigtimedwait(); an eventfd write otherwise). After a wait that it ended has returned, the set touches
 * neither the flag nor its loop beyond what af_flag_destroy() waits for.
 * A NULL, uninitialised or destroyed flag is ignored.
 */
void af_flag_set(struct af_flag *flag);

/**
 * @brief Clear the flag, discarding a set that no wait has consumed (a stale
 * interrupt before a fresh operation). One atomic operation: safe from any
 * thread and from signal handlers.
 */
void af_flag_clear(struct af_flag *flag);

/** @brief Whether the flag is set (a snapshot; another thread may change it).
 *  One atomic load: safe from any thread and from signal handlers. */
bool af_flag_is_set(const struct af_flag *flag);

/**
 * @brief Wait until the flag is set, then clear it and return.
 *
 * Returns at once if it is set. A task waiting on a flag keeps its loop
 * alive; the loop sleeps in the kernel until a set arrives (no polling).
 * @return 0; -EINVAL for a NULL or uninitialised flag; -EPERM outside a task,
 *         or from a task of another loop; -EBUSY if another task is already
 *         waiting (that task keeps waiting); -ECANCELED (the flag's state is
 *         left as it was); -ECHILD in a child of fork() (the loop is the
 *         parent's).
 */
int af_flag_wait(struct af_flag *flag);

/** @brief af_flag_wait() giving up after @p timeout_ns (negative: forever).
 *  @return as af_flag_wait(), plus -ETIMEDOUT (the flag's state is untouched). */
int af_flag_wait_timeout(struct af_flag *flag, int64_t timeout_ns);

AF_END_DECLS

#endif
