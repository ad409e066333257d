/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_GROUP_H
#define ASYNCFLAG_GROUP_H

#include <asyncflag/common.h>
#include <asyncflag/task.h>

AF_BEGIN_DECLS

/**
 * A task group (asyncio's TaskGroup, MicroPython's gather): tasks spawned
 * into it are joined together, and the first failure (a negative result)
 * cancels the others.
 *
 * Caller-allocated; initialise it with af_group_init() (or AF_GROUP_INIT),
 * spawn members with af_group_spawn(), and always end with af_group_join()
 * or af_group_join_timeout(), which wait for every member and release what
 * the group holds. Loop-thread only: every call comes from tasks of the
 * loop of the first member. A member handle returned by af_group_spawn()
 * belongs to the group until the join returns: cancel it, read its name,
 * but do not join or detach it before then; after the join it has ended,
 * and af_task_join() on it returns its result at once (and frees it).
 */
struct af_group {
	union af__private _private;
};

/** Flag for af_group_init(): a failure cancels nobody (asyncio's
 *  gather(return_exceptions=True)); the join still returns the first one. */
#define AF_GROUP_KEEP_GOING (1u << 0)

/** Static initialiser for an empty group with no flags. */
#define AF_GROUP_INIT { { { 0 } } }

/**
 * @brief Initialise @p g as an empty group.
 * @param flags 0 or AF_GROUP_KEEP_GOING; unknown bits are ignored (and
 *        reported in debug builds). NULL @p g is ignored.
 */
void af_group_init(struct af_group *g, unsigned flags);

/**
 * @brief Spawn a task running @p fn(@p arg) as a member of @p g.
 *
 * The task starts like one from af_task_spawn(). Its body's return value
 * is its result; a negative result is a failure, and the first failure
 * cancels every other member unless the group has AF_GROUP_KEEP_GOING.
 * Members may spawn more members, including while the group is joined.
 *
 * @param task receives the member's handle (see struct af_group for how
 *        long it is valid), or NULL: the group frees the task at the join.
 * @return 0; -EINVAL if @p g or @p fn is NULL; -EPERM if no loop runs on
 *         this thread, or the group's members belong to another loop;
 *         -ECANCELED if the group has been cancelled (by a failure,
 *         af_group_cancel() or an expired or cancelled join) and not yet
 *         joined; -ENOMEM.
 */
int af_group_spawn(struct af_group *g, struct af_task **task, af_task_fn fn, void *arg);

/**
 * @brief Wait until every member has ended; return the first failure.
 *
 * If the joining task is cancelled, the group is cancelled and the call
 * still waits for every member to end before it returns -ECANCELED, so
 * that nothing of the group outlives it. Afterwards the group is empty
 * and may be used again.
 *
 * @return 0 if no member failed; otherwise the first negative member
 *         result (a member cancelled before it ran counts with
 *         -ECANCELED); -EINVAL for NULL; -EPERM outside a task, or from a
 *         task of another loop; -ECHILD in a child of fork() (the loop is
 *         the parent's); -EDEADLK if the caller is a member of
 *         @p g (nothing is waited for); -EBUSY if another task is joining
 *         @p g; -ECANCELED if the caller was cancelled.
 */
int af_group_join(struct af_group *g);

/**
 * @brief af_group_join() that cancels the whole group after @p timeout_ns.
 *
 * On expiry every member is cancelled and waited for (as
 * af_task_join_timeout() does for one task): -ETIMEDOUT is returned only
 * once every member has ended. A negative timeout waits forever.
 * @return as af_group_join(), plus -ETIMEDOUT.
 */
int af_group_join_timeout(struct af_group *g, int64_t timeout_ns);

/**
 * @brief Cancel every member that has not ended. Later af_group_spawn()
 * calls fail with -ECANCELED until the group has been joined.
 * @return the number of members cancelled; -EINVAL for NULL; -EPERM from a
 *         thread that does not run the members' loop.
 */
int af_group_cancel(struct af_group *g);

AF_END_DECLS

#endif
