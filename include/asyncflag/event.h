/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_EVENT_H
#define ASYNCFLAG_EVENT_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/**
 * An asyncio Event: a boolean that any number of tasks can wait for.
 *
 * Caller-allocated; all-zero storage (static, or af_event_init()) is a
 * cleared event. Loop-thread only: call it from a running loop's tasks,
 * never from a signal handler or another thread (use af_flag). While tasks
 * wait on it, the event belongs to their loop; with no waiters it may move
 * to another loop. A call from a thread that runs no loop, or from another
 * loop's thread while waiters exist, is refused in every build and reported
 * with a message on stderr in debug builds.
 */
struct af_event {
	union af__private _private;
};

/** Static initialiser for a cleared event. */
#define AF_EVENT_INIT { { { 0 } } }

/** @brief Initialise @p ev as cleared, with no waiters. NULL is ignored. */
void af_event_init(struct af_event *ev);

/**
 * @brief Set the event and make every waiter runnable, in the order they
 * started waiting, behind the tasks already runnable. Does not yield.
 * NULL, or a call from the wrong thread, is ignored (and reported in debug
 * builds).
 */
void af_event_set(struct af_event *ev);

/** @brief Clear the event; later waits block until the next set. */
void af_event_clear(struct af_event *ev);

/** @brief The event's state; false for NULL. */
bool af_event_is_set(const struct af_event *ev);

/**
 * @brief Wait until the event is set. Returns at once, without yielding, if
 * it is set. A waiter woken by af_event_set() returns 0 even if the event was
 * cleared again before it resumed.
 * @return 0; -EINVAL for NULL; -EPERM outside a task or from a task of
 *         another loop; -ECANCELED; -ECHILD in a child of fork() (the loop is
 *         the parent's).
 */
int af_event_wait(struct af_event *ev);

/**
 * @brief af_event_wait() giving up after @p timeout_ns (negative: forever).
 * A timed-out waiter leaves the event unchanged.
 * @return as af_event_wait(), plus -ETIMEDOUT.
 */
int af_event_wait_timeout(struct af_event *ev, int64_t timeout_ns);

AF_END_DECLS

#endif
