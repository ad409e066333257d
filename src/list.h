/* SPDX-License-Identifier: MIT */
/* Intrusive doubly linked lists. All-zero is an empty list and an unlinked
 * node, so zero-initialised user objects (static Events, Locks) work. */
#ifndef AF_LIST_H
#define AF_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct af__node {
	struct af__node *prev, *next;
};

struct af__list {
	struct af__node *head, *tail;
};

#define af__container_of(ptr, type, member)                                    \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline bool af__list_empty(const struct af__list *l)
{
	return l->head == NULL;
}

static inline void af__list_push_back(struct af__list *l, struct af__node *n)
{
	n->next = NULL;
	n->prev = l->tail;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

static inline void af__list_remove(struct af__list *l, struct af__node *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	n->prev = n->next = NULL;
}

static inline struct af__node *af__list_pop_front(struct af__list *l)
{
	struct af__node *n = l->head, *next;

	if (!n)
		return NULL;
	/* The head's prev is NULL already: half of af__list_remove(), which
	 * is on every hop of a ping-pong (the run queue and the wait list). */
	next = n->next;
	l->head = next;
	if (next)
		next->prev = NULL;
	else
		l->tail = NULL;
	n->next = NULL;
	return n;
}

/* Move the whole of @src to the back of @dst, keeping its order: O(1), and
 * it touches only the two ends, not the nodes in between. @src ends empty. */
static inline void af__list_splice_back(struct af__list *dst, struct af__list *src)
{
	struct af__node *first = src->head;

	if (!first)
		return;
	first->prev = dst->tail;
	if (dst->tail)
		dst->tail->next = first;
	else
		dst->head = first;
	dst->tail = src->tail;
	src->head = src->tail = NULL;
}

#endif
