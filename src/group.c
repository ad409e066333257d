/* SPDX-License-Identifier: MIT */
/*
 * Task groups: asyncio's TaskGroup on top of the task API.
 *
 * Each member runs a small wrapper around the user's function so that a
 * failure is seen (and cancels the siblings) the moment the member's body
 * returns, not when the join gets round to it. The join waits for the
 * members in spawn order without freeing them, so a handle the user kept
 * still reads the member's result afterwards. A member that never ran (it
 * was cancelled first, or got no stack) has no wrapper to report it: the
 * join counts its failure when it reaches it.
 */
#include <stdlib.h>

#include "internal.h"

struct af__group {
	struct af__list members;  /* struct member, in spawn order */
	int32_t first_err;        /* the first negative member result, or 0 */
	uint16_t flags;
	bool cancelled;           /* spawns are refused until the join ends */
	bool joining;
};

_Static_assert(sizeof(struct af__group) <= sizeof(union af__private),
	       "struct af_group is too small for its private state");

struct member {
	struct af__node node;
	struct af__group *group;
	struct af_task *task;
	af_task_fn fn;
	void *arg;
	bool user_handle;         /* the caller kept the handle: do not free */
};

static struct af__group *priv(struct af_group *g)
{
	return (struct af__group *)(void *)&g->_private;
}

static struct member *first_member(struct af__group *g)
{
	return g->members.head ? af__container_of(g->members.head, struct member, node)
			       : NULL;
}

static struct member *next_member(struct member *m)
{
	return m->node.next ? af__container_of(m->node.next, struct member, node) : NULL;
}

/* Every member of a group lives on one loop, which is the only thread that
 * may touch the group while it has members. */
static bool on_group_loop(struct af__group *g, const char *func)
{
	struct member *m = first_member(g);
	struct af_loop *here = af__tls_loop;

	if (here && (!m || m->task->loop == here))
		return true;
	af__misuse(func, "called from a thread that does not run the loop of the "
			 "group's members; a group belongs to the loop it spawns on");
	return false;
}

static int cancel_members(struct af__group *g)
{
	struct af_task *self = af__tls_loop->current;
	int n = 0;

	g->cancelled = true;
	for (struct member *m = first_member(g); m; m = next_member(m)) {
		/* A failing member is still running its wrapper: it is ending
		 * anyway, and a pending cancel would only confuse its caller. */
		if (m->task == self || m->task->state == AF_TASK_DONE)
			continue;
		if (af__task_cancel(m->task) == 0)
			n++;
	}
	return n;
}

static void member_failed(struct af__group *g, int result)
{
	if (g->first_err)
		return;
	g->first_err = result;
	/* Once cancelled, the members' -ECANCELED results are the cancel
	 * arriving, not news: cancelling again would interrupt their
	 * unwinding. */
	if (!(g->flags & AF_GROUP_KEEP_GOING) && !g->cancelled)
		cancel_members(g);
}

static int member_main(void *arg)
{
	struct member *m = arg;
	int r = m->fn(m->arg);

	/* The group outlives its members: its join waits for this return. */
	if (r < 0)
		member_failed(m->group, r);
	return r;
}

AF_API void af_group_init(struct af_group *g, unsigned flags)
{
	if (!g)
		return;
	if (flags & ~AF_GROUP_KEEP_GOING)
		af__misuse(__func__, "unknown flags 0x%x ignored", flags & ~AF_GROUP_KEEP_GOING);
	*g = (struct af_group)AF_GROUP_INIT;
	priv(g)->flags = (uint16_t)(flags & AF_GROUP_KEEP_GOING);
}

AF_API int af_group_spawn(struct af_group *g, struct af_task **task, af_task_fn fn,
			  void *arg)
{
	struct af__group *gp;
	struct member *m;
	int r;

	af_assert_return(g && fn, -EINVAL);
	gp = priv(g);
	if (!on_group_loop(gp, __func__))
		return -EPERM;
	if (gp->cancelled)
		return -ECANCELED;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->group = gp;
	m->fn = fn;
	m->arg = arg;
	m->user_handle = task != NULL;
	r = af_task_spawn(&m->task, member_main, m);
	if (r < 0)
		goto err_free_member;
	af__list_push_back(&gp->members, &m->node);
	if (task)
		*task = m->task;
	return 0;

err_free_member:
	free(m);
	return r;
}

AF_API int af_group_cancel(struct af_group *g)
{
	struct af__group *gp;

	af_assert_return(g, -EINVAL);
	gp = priv(g);
	if (!on_group_loop(gp, __func__))
		return -EPERM;
	return cancel_members(gp);
}

/* ---- joining ----------------------------------------------------------------- */

/* Waiting for one member to end, as af_task_join() does, but leaving the
 * task in place so that its handle still reads the result afterwards. */
static void end_wait_detach(struct af_task *joiner)
{
	struct af_task *target = joiner->wait_obj;

	target->joiner = NULL;
}

static const struct af__wait_ops end_wait_ops = {
	.what = "group join",
	.detach = end_wait_detach,
	.revoke = end_wait_detach,
};

static int wait_end(struct af_task *self, struct af_task *t, uint64_t deadline)
{
	int64_t timeout = -1;
	int r;

	if (t->state == AF_TASK_DONE)
		return 0;
	if (deadline != UINT64_MAX) {
		uint64_t now = af__now_ns();

		timeout = deadline > now ? (int64_t)(deadline - now) : 0;
	}
	t->joiner = self;
	r = af__task_block(&end_wait_ops, t, timeout);
	t->joiner = NULL;
	return r;
}

/* A member has ended: count a failure its wrapper could not report, and
 * free what the caller did not keep. */
static void retire(struct af__group *g, struct member *m)
{
	af__list_remove(&g->members, &m->node);
	if (m->task->result < 0)
		member_failed(g, m->task->result);
	if (!m->user_handle)
		AF_BODY(af_task_join)(m->task, NULL);
	free(m);
}

/* Members that ended without running their wrapper are only found here, so
 * every pass retires whatever has ended before waiting for the next one.
 * Returns the first member still running. */
static struct member *retire_ended(struct af__group *g)
{
	struct member *m = first_member(g), *live = NULL;

	while (m) {
		struct member *next = next_member(m);

		if (m->task->state == AF_TASK_DONE)
			retire(g, m);
		else if (!live)
			live = m;
		m = next;
	}
	return live;
}

static bool is_member(struct af__group *g, const struct af_task *t)
{
	for (struct member *m = first_member(g); m; m = next_member(m))
		if (m->task == t)
			return true;
	return false;
}

AF_BLOCKING_API int AF_BODY(af_group_join_timeout)(struct af_group *g, int64_t timeout_ns)
{
	int err = 0, ret = 0;
	struct af_task *self = af__task_self(&err);
	uint64_t deadline = af__deadline(timeout_ns);
	struct af__group *gp;
	struct member *m;

	af_assert_return(g, -EINVAL);
	if (!self)
		return err;
	gp = priv(g);
	if (!on_group_loop(gp, __func__))
		return -EPERM;
	if (is_member(gp, self)) {
		af__misuse(__func__, "task \"%s\" is a member of the group it joins", self->name);
		return -EDEADLK;
	}
	if (gp->joining)
		return -EBUSY;
	gp->joining = true;
	while ((m = retire_ended(gp)) != NULL) {
		int r = wait_end(self, m->task, ret ? UINT64_MAX : deadline);

		if (r < 0 && !ret) {
			/* Expired or cancelled: the whole group goes, and the
			 * join still waits for every member (asyncio's
			 * wait_for), ignoring further cancels meanwhile. */
			ret = r;
			cancel_members(gp);
		}
	}
	if (!ret)
		ret = gp->first_err;
	af_group_init(g, gp->flags);
	return ret;
}

AF_BLOCKING_API int AF_BODY(af_group_join)(struct af_group *g)
{
	return AF_BODY(af_group_join_timeout)(g, -1);
}
