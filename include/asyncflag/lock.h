/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_LOCK_H
#define ASYNCFLAG_LOCK_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/**
 * An asyncio Lock for tasks of one loop: FIFO with direct hand-off, so a
 * release with waiters gives the lock to the first waiter and newcomers queue
 * behind (no barging). Caller-allocated; all-zero storage is unlocked.
 * Not for threads: only tasks of the loop that uses it may touch it.
 */
struct af_lock {
	union af__private _private;
};

/** Static initialiser for an unlocked lock. */
#define AF_LOCK_INIT { { { 0 } } }

/** @brief Initialise @p lock as unlocked. NULL is ignored. */
void af_lock_init(struct af_lock *lock);

/**
 * @brief Acquire the lock, waiting in FIFO order if it is held.
 * @return 0; -EINVAL for NULL; -EPERM outside a task or from a task of
 *         another loop; -ECHILD in a child of fork() (the loop is the
 *         parent's); -EDEADLK if the caller already holds it;
 *         -ECANCELED (the caller does not hold the lock; if it had just been
 *         handed the lock, the lock passes on to the next waiter).
 */
int af_lock_acquire(struct af_lock *lock);

/**
 * @brief af_lock_acquire() giving up after @p timeout_ns (negative: forever).
 * @return as af_lock_acquire(), plus -ETIMEDOUT.
 */
int af_lock_acquire_timeout(struct af_lock *lock, int64_t timeout_ns);

/**
 * @brief Release the lock, handing it to the first waiter if there is one.
 * Does not yield. As in asyncio, any task of the loop may release a held
 * lock, not only the one that acquired it.
 * @return 0; -EINVAL for NULL; -EPERM if the lock is not held, or from a
 *         thread that does not run its loop.
 */
int af_lock_release(struct af_lock *lock);

/** @brief Whether the lock is held (or handed to a waiter that has not yet resumed). */
bool af_lock_locked(const struct af_lock *lock);

AF_END_DECLS

#endif
