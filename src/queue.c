/* SPDX-License-Identifier: MIT */
/*
 * Thread-safe queue: a bounded ring with a sequence number per slot
 * (Dmitry Vyukov's bounded queue), many producers, one consuming thread.
 *
 * A producer claims a position with a CAS on the tail, writes the item in
 * the slot and then publishes it by storing the slot's sequence; the
 * consumer (always the loop thread) reads a slot only once its sequence
 * says it is published, and frees it for the next lap by storing another
 * sequence. There is no lock: a producer interrupted between its claim and
 * its publish (by the scheduler, or by a signal handler that pushes too)
 * delays the items behind it but never makes another push wait or fail
 * for anything but a full ring. Each push then sets an internal af_flag,
 * which is what wakes a consumer: no system call while the loop is awake,
 * at most one eventfd write per loop sleep.
 */
#include <stdlib.h>

#include "internal.h"

#define AF_QUEUE_MAGIC 0x61665155u /* "afQU" */

/* At most 2^32 slots; on a 32-bit machine every size_t is below that. */
static bool capacity_ok(size_t capacity)
{
#if SIZE_MAX > UINT32_MAX
	return capacity > 0 && capacity <= (size_t)1 << 32;
#else
	return capacity > 0;
#endif
}

/* A slot's seq is 2p while it is free for the push at position p, and
 * 2p + 1 once that push has published its item. Doubling keeps "free for
 * p + capacity" and "published for p" apart even for a capacity of 1. */
struct slot {
	_Atomic uint64_t seq;
	void *item;
};

struct ring {
	/* The only word every producer writes: on its own cache line, away
	 * from the consumer's position and the slots' first line. */
	_Alignas(64) _Atomic uint64_t tail;
	_Alignas(64) uint64_t capacity;
	struct slot slots[];
};

struct af__queue {
	struct af_flag nonempty;   /* set after every push */
	struct af_lock getters;    /* consumer tasks take turns, in FIFO order */
	struct af_event room;      /* set after every get, for waiting putters */
	struct ring *ring;
	struct af_loop *loop;
	uint64_t head;             /* the next position to read; loop thread only */
	uint32_t magic;
	uint32_t nputters;         /* tasks waiting in put */
};

_Static_assert(sizeof(struct af__queue) <= sizeof(((struct af_queue *)0)->_private),
	       "struct af_queue is too small for its private state");

static struct af__queue *priv(struct af_queue *q)
{
	return (struct af__queue *)(void *)&q->_private;
}

static bool valid(struct af_queue *q)
{
	return q && priv(q)->magic == AF_QUEUE_MAGIC;
}

AF_API int af_queue_init(struct af_queue *q, struct af_loop *loop, size_t capacity)
{
	struct af__queue *p;
	struct ring *ring;
	int r;

	af_assert_return(q && capacity_ok(capacity), -EINVAL);
	if (!loop)
		loop = af__tls_loop;
	if (!loop) {
		af__misuse(__func__, "no loop given and none runs on this thread");
		return -EINVAL;
	}
	if (posix_memalign((void **)&ring, 64,
			   sizeof(*ring) + capacity * sizeof(struct slot)) != 0)
		return -ENOMEM;
	atomic_init(&ring->tail, 0);
	ring->capacity = capacity;
	for (size_t i = 0; i < capacity; i++) {
		atomic_init(&ring->slots[i].seq, 2 * i);
		ring->slots[i].item = NULL;
	}
	p = priv(q);
	r = af_flag_init(&p->nonempty, loop);
	if (r < 0)
		goto err_free_ring;
	af_lock_init(&p->getters);
	af_event_init(&p->room);
	p->ring = ring;
	p->loop = loop;
	p->head = 0;
	p->nputters = 0;
	p->magic = AF_QUEUE_MAGIC;
	return 0;

err_free_ring:
	free(ring);
	return r;
}

AF_API void af_queue_destroy(struct af_queue *q)
{
	struct af__queue *p;

	if (!valid(q))
		return;
	p = priv(q);
	if (af_lock_locked(&p->getters) || p->nputters) {
		af__misuse(__func__, "a task is still waiting in af_queue_get() or "
				     "af_queue_put(); cancel it first");
		return;
	}
	af_flag_destroy(&p->nonempty);
	free(p->ring);
	p->ring = NULL;
	p->magic = 0;
}

/* ---- producers: any thread, any signal handler ----------------------------- */

AF_API int af_queue_push(struct af_queue *q, void *item)
{
	struct ring *ring;
	struct slot *s;
	uint64_t pos;

	/* No af__misuse() here: it prints, and this runs in signal handlers. */
	if (!valid(q))
		return -EINVAL;
	ring = priv(q)->ring;
	/* relaxed: the tail only hands out positions; what a slot holds is
	 * ordered by its seq alone. */
	pos = atomic_load_explicit(&ring->tail, memory_order_relaxed);
	for (;;) {
		int64_t diff;

		s = &ring->slots[pos % ring->capacity];
		/* acquire pairs with the consumer's release store of seq when it
		 * freed the slot: its read of the old item happens before our
		 * write of the new one (aarch64 could otherwise let the
		 * consumer read our item in place of the one it was taking). */
		diff = (int64_t)(atomic_load_explicit(&s->seq, memory_order_acquire) - 2 * pos);
		if (diff == 0) {
			/* relaxed on both paths: winning the CAS gives us the
			 * slot; no data is published through the tail. */
			if (atomic_compare_exchange_weak_explicit(&ring->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
		} else if (diff < 0) {
			/* The slot still holds the item of the previous lap
			 * (published or only claimed): the ring is full. */
			return -EAGAIN;
		} else {
			/* Another producer took this position: look again. */
			pos = atomic_load_explicit(&ring->tail, memory_order_relaxed);
		}
	}
	s->item = item;
	/* release publishes the item to the consumer's acquire load of seq;
	 * on aarch64 this is an stlr, ordered after the plain store above. */
	atomic_store_explicit(&s->seq, 2 * pos + 1, memory_order_release);
	/* The flag's own acq_rel set and eventfd write wake the consumer; it
	 * preserves errno, as a signal handler needs. */
	af_flag_set(&priv(q)->nonempty);
	return 0;
}

/* ---- consumers: the loop thread -------------------------------------------- */

static bool pop(struct af__queue *p, void **item)
{
	struct ring *ring = p->ring;
	struct slot *s = &ring->slots[p->head % ring->capacity];

	/* acquire pairs with the producer's release store: its item is
	 * visible. A slot claimed but not yet published reads as empty; its
	 * producer's flag set will wake us once it is. */
	if (atomic_load_explicit(&s->seq, memory_order_acquire) != 2 * p->head + 1)
		return false;
	*item = s->item;
	/* release: our read of the item is done before a producer of the
	 * next lap, acquiring this seq, overwrites it. */
	atomic_store_explicit(&s->seq, 2 * (p->head + ring->capacity),
			      memory_order_release);
	p->head++;
	/* A putter waiting for room can try again. */
	if (p->nputters)
		af_event_set(&p->room);
	return true;
}

static int64_t remaining(uint64_t deadline)
{
	uint64_t now;

	if (deadline == UINT64_MAX)
		return -1;
	now = af__now_ns();
	return deadline > now ? (int64_t)(deadline - now) : 0;
}

static int check_task(struct af__queue *p, const char *func)
{
	int err = 0;
	struct af_task *t = af__task_self(&err);

	if (!t)
		return err;
	if (t->loop != p->loop) {
		af__misuse(func, "the queue belongs to another loop; use it from a task "
				 "of the loop given to af_queue_init()");
		return -EPERM;
	}
	return 0;
}

AF_BLOCKING_API int AF_BODY(af_queue_get_timeout)(struct af_queue *q, void **item, int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	struct af__queue *p;
	int r;

	af_assert_return(valid(q) && item, -EINVAL);
	p = priv(q);
	r = check_task(p, __func__);
	if (r < 0)
		return r;
	/* Taking an item while others wait for one would barge past them. */
	if (!af_lock_locked(&p->getters) && pop(p, item))
		return 0;
	r = AF_BODY(af_lock_acquire_timeout)(&p->getters, remaining(deadline));
	if (r < 0)
		return r;
	/* A set left over from an item already taken makes one extra pass:
	 * harmless, and it cannot lose a wake-up, because every push sets the
	 * flag after it has published its item. */
	while (!pop(p, item)) {
		r = AF_BODY(af_flag_wait_timeout)(&p->nonempty, remaining(deadline));
		if (r < 0)
			break;
	}
	af_lock_release(&p->getters);
	return r;
}

AF_BLOCKING_API int AF_BODY(af_queue_get)(struct af_queue *q, void **item)
{
	return AF_BODY(af_queue_get_timeout)(q, item, -1);
}

AF_API int af_queue_try_get(struct af_queue *q, void **item)
{
	struct af__queue *p;

	af_assert_return(valid(q) && item, -EINVAL);
	p = priv(q);
	if (af__tls_loop != p->loop && p->loop->running) {
		af__misuse(__func__, "called from a thread that does not run the queue's loop");
		return -EPERM;
	}
	if (af_lock_locked(&p->getters) || !pop(p, item))
		return -EAGAIN;
	return 0;
}

AF_BLOCKING_API int AF_BODY(af_queue_put_timeout)(struct af_queue *q, void *item, int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	struct af__queue *p;
	int r;

	af_assert_return(valid(q), -EINVAL);
	p = priv(q);
	r = check_task(p, __func__);
	if (r < 0)
		return r;
	for (;;) {
		r = af_queue_push(q, item);
		if (r != -EAGAIN)
			return r;
		/* Only gets on this loop make room, and they run on this
		 * thread: clearing before the retry cannot miss one. */
		af_event_clear(&p->room);
		p->nputters++;
		r = AF_BODY(af_event_wait_timeout)(&p->room, remaining(deadline));
		p->nputters--;
		if (r < 0)
			return r;
	}
}

AF_BLOCKING_API int AF_BODY(af_queue_put)(struct af_queue *q, void *item)
{
	return AF_BODY(af_queue_put_timeout)(q, item, -1);
}
