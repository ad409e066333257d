/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_TASK_H
#define ASYNCFLAG_TASK_H

#include <asyncflag/common.h>
#include <asyncflag/loop.h>

AF_BEGIN_DECLS

/** Options for af_task_spawn_opts(). Zero fields mean the defaults. */
struct af_task_opts {
	/** Name shown in diagnostics (stack overflow reports, debug messages);
	 *  copied, truncated to 31 bytes. NULL: "task-N". */
	const char *name;
	/** Stack size in bytes; 0 means the loop's default (af_loop_opts.stack_size). */
	size_t stack_size;
	/** Reserved; keep zero. */
	uint64_t _reserved[2];
};

/**
 * @brief Create a task that runs @p fn(@p arg) on the current loop.
 *
 * The new task does not run until the caller blocks or yields. Its stack is
 * taken from the loop's pool now, so a limit on stacks fails this call.
 *
 * @param task receives a handle to join, cancel or detach; pass NULL to
 *        create a detached task, freed as soon as it ends. A handle stays
 *        valid until af_task_join() returns 0 or -ETIMEDOUT,
 *        af_task_detach() is called, or the loop is freed.
 *        A task abandoned after a deadlock (see af_loop_run) has the
 *        result -EDEADLK.
 * @return 0; -EINVAL if @p fn is NULL; -EPERM if no loop runs on this thread;
 *         -ENOMEM for no memory or no stack: the address space (RLIMIT_AS)
 *         or, before Linux 6.13 (two mappings a stack), vm.max_map_count
 *         is exhausted; debug builds say which on stderr.
 */
int af_task_spawn(struct af_task **task, af_task_fn fn, void *arg);

/** @brief af_task_spawn() with options (@p opts may be NULL).
 *  @return as af_task_spawn(); -EINVAL for a stack size below 16 KiB or above 1 GiB. */
int af_task_spawn_opts(struct af_task **task, af_task_fn fn, void *arg,
		       const struct af_task_opts *opts);

/**
 * @brief Wait until @p task has ended, store its result and free it.
 *
 * Only one task may join a given task.
 * @return 0 (the handle is then gone); -EINVAL for NULL; -EPERM outside a
 *         task of the same loop; -EDEADLK if @p task is the caller;
 *         -EINVAL if @p task was detached or is the main task of
 *         af_loop_run(); -EBUSY if another task is
 *         already joining it; -ECANCELED if the caller was cancelled (the
 *         handle stays valid); -ECHILD in a child of fork() (the loop is the
 *         parent's).
 */
int af_task_join(struct af_task *task, int *result);

/**
 * @brief af_task_join() that gives up after @p timeout_ns.
 *
 * On timeout the task is cancelled and waited for (asyncio's wait_for): the
 * call returns -ETIMEDOUT only after the task has ended, with its result in
 * @p result, and the handle is freed as with a successful join.
 * @return as af_task_join(), plus -ETIMEDOUT.
 */
int af_task_join_timeout(struct af_task *task, int64_t timeout_ns, int *result);

/**
 * @brief Cancel a task: its current blocking call (or, if it is running, its
 * next one) returns -ECANCELED, once. The task decides how to unwind; its
 * body's return value is still its result. A task cancelled before it first
 * ran runs no code and its result is -ECANCELED.
 *
 * A task woken by an Event, flag or lock but not yet resumed is still
 * cancelled: the cancel wins and a lock it was handed passes on.
 *
 * @return 0; -EINVAL for NULL; -EPERM from a thread that does not run the
 *         task's loop; -EALREADY if the task has already ended.
 */
int af_task_cancel(struct af_task *task);

/**
 * @brief Give up the handle of a task: it is freed when it ends (at once if
 * it has ended). The task keeps running.
 * @return 0; -EINVAL for NULL or the main task of af_loop_run(); -EBUSY if
 *         a task is joining it; -EPERM
 *         from a thread other than the loop's while the loop runs.
 */
int af_task_detach(struct af_task *task);

/** @brief True once @p task's body has returned (or it was cancelled before it ran). */
bool af_task_done(const struct af_task *task);

/** @brief The task running on this thread, or NULL outside tasks. */
struct af_task *af_task_current(void);

/** @brief The task's name (never NULL for a valid task; "" for NULL). */
const char *af_task_name(const struct af_task *task);

/**
 * @brief Let every task that is already runnable run once, then continue
 * (asyncio's sleep(0)). Due timers run before tasks that yield after they
 * fell due.
 * @return 0; -EPERM outside a task; -ECANCELED if the task was cancelled;
 *         -ECHILD in a child of fork().
 */
int af_yield(void);

/**
 * @brief Sleep for at least @p ns nanoseconds. The loop sleeps in the kernel
 * (io_uring wait timeout) when no task is runnable.
 * @return 0; -EPERM outside a task; -ECANCELED; -ECHILD in a child of fork().
 */
int af_sleep_ns(uint64_t ns);

/** @brief af_sleep_ns() in milliseconds. */
int af_sleep_ms(uint64_t ms);

AF_END_DECLS

#endif
