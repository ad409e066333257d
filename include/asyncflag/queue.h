/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_QUEUE_H
#define ASYNCFLAG_QUEUE_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/**
 * A bounded thread-safe queue of pointer-sized items, from any number of
 * threads and signal handlers to the tasks of one loop.
 *
 * af_queue_push() is lock-free, allocation-free and async-signal-safe: a
 * few atomics and, when the loop sleeps, the same single wake-up call as
 * af_flag_set(). It never blocks; a full queue fails with -EAGAIN. Items
 * pushed by one thread (or handler) come out in the order it pushed them.
 * Consumers are tasks of the queue's loop (af_queue_get(),
 * af_queue_get_timeout(), FIFO among themselves); af_queue_put() is the
 * waiting push for those tasks. The ring is allocated by af_queue_init()
 * and freed by af_queue_destroy(). Caller-allocated.
 */
struct af_queue {
	union {
		void *_p[16];
		uint64_t _u[16];
	} _private;
};

/**
 * @brief Initialise @p q, empty, with room for @p capacity items, bound
 * to @p loop.
 * @param loop the loop whose tasks will get from the queue; NULL means the
 *        loop running on this thread.
 * @return 0; -EINVAL if @p q is NULL, @p capacity is 0 or above 2^32, or
 *         @p loop is NULL and no loop runs on this thread; -EBUSY if @p q
 *         is initialised and a task waits in af_queue_get() (as
 *         af_flag_init()); -ENOMEM.
 */
int af_queue_init(struct af_queue *q, struct af_loop *loop, size_t capacity);

/**
 * @brief Release the queue's ring; items still in it are dropped.
 *
 * Same rules as af_flag_destroy(): call it from the loop's thread, or while
 * the loop is not running; no task may be waiting in af_queue_get() or
 * af_queue_put() (the call is then refused, and reported in debug builds);
 * no thread or handler may push any more. NULL is ignored.
 */
void af_queue_destroy(struct af_queue *q);

/**
 * @brief Add @p item at the tail, without waiting.
 *
 * Safe from any thread and from signal handlers, including one that
 * interrupted another push; preserves errno. Costs no system call while
 * the loop is awake.
 * @return 0; -EAGAIN if the queue is full; -EINVAL for a NULL or
 *         uninitialised queue.
 */
int af_queue_push(struct af_queue *q, void *item);

/**
 * @brief Add @p item at the tail, waiting for room while the queue is full.
 * @return 0; -EINVAL for a NULL or uninitialised queue; -EPERM outside a
 *         task, or from a task of another loop; -ECHILD in a child of
 *         fork(); -ECANCELED (nothing was added).
 */
int af_queue_put(struct af_queue *q, void *item);

/** @brief af_queue_put() giving up after @p timeout_ns (negative: forever).
 *  @return as af_queue_put(), plus -ETIMEDOUT (nothing was added). */
int af_queue_put_timeout(struct af_queue *q, void *item, int64_t timeout_ns);

/**
 * @brief Take the item at the head, waiting while the queue is empty.
 *
 * Returns at once if an item is there and no other task is already
 * waiting to get one; otherwise tasks get items in the order they asked.
 * @param item receives the item.
 * @return 0; -EINVAL for a NULL queue or @p item; -EPERM outside a task,
 *         or from a task of another loop; -ECHILD in a child of fork();
 *         -ECANCELED (nothing was taken).
 */
int af_queue_get(struct af_queue *q, void **item);

/** @brief af_queue_get() giving up after @p timeout_ns (negative: forever).
 *  @return as af_queue_get(), plus -ETIMEDOUT (nothing was taken). */
int af_queue_get_timeout(struct af_queue *q, void **item, int64_t timeout_ns);

/**
 * @brief Take the item at the head if there is one, without waiting; for
 * draining a queue before af_queue_destroy(), or polling from the loop's
 * thread outside tasks.
 * @return 0; -EAGAIN if the queue is empty (or another task is waiting to
 *         get); -EINVAL for a NULL queue or @p item; -EPERM from a thread
 *         that does not run the queue's loop while it runs.
 */
int af_queue_try_get(struct af_queue *q, void **item);

AF_END_DECLS

#endif
