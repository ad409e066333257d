/* SPDX-License-Identifier: MIT */
/* Deadlines of parked tasks in a binary min-heap. The loop never arms a
 * kernel timer per task: it only passes the earliest deadline as the
 * timeout of its one io_uring wait. */
#include <stdlib.h>
#include <time.h>

#include "internal.h"

uint64_t af__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The loop's clock orders what happens on its thread: deadlines, the
 * stamps of queued tasks, batch starts. Its readings strictly increase,
 * even where the clock reads the same for a while (a coarse clock source,
 * a guest's clock under emulation): a zero timeout armed after a task was
 * queued must come after it, and one armed in a batch must be due in the
 * next, or a task that yields could hold a sleeper back for as long as the
 * clock stands still. Ahead of the clock by at most a nanosecond a reading
 * within one of its ticks, which nothing that reads the clock can see. */
uint64_t af__loop_clock(struct af_loop *loop)
{
	uint64_t now = af__now_ns();

	if (now <= loop->clock_last)
		now = loop->clock_last + 1;
	loop->clock_last = now;
	return now;
}

uint64_t af__deadline(int64_t timeout_ns)
{
	uint64_t now;

	if (timeout_ns < 0)
		return UINT64_MAX;
	/* On a loop's thread, by the loop's clock (see above). */
	now = af__tls_loop ? af__loop_clock(af__tls_loop) : af__now_ns();
	if (UINT64_MAX - now <= (uint64_t)timeout_ns)
		return UINT64_MAX - 1;
	return now + (uint64_t)timeout_ns;
}

/* The longest relative timeout handed to the kernel: 68 years. Longer
 * waits wake up early and go back to sleep, which nobody can notice. It
 * fits a 32-bit time_t (armhf's struct timespec) without wrapping, and the
 * kernel's now + timeout stays far from KTIME_MAX: io_uring_enter's wait
 * adds them without saturating, so a longer one (a deadline from a timeout
 * of INT64_MAX) lands in the past and the loop spins. */
#define AF_TIMEOUT_MAX_S ((uint64_t)INT32_MAX)

struct __kernel_timespec af__kernel_ts(uint64_t ns)
{
	struct __kernel_timespec ts;
	uint64_t sec = ns / 1000000000u;

	if (sec >= AF_TIMEOUT_MAX_S) {
		ts.tv_sec = (long long)AF_TIMEOUT_MAX_S;
		ts.tv_nsec = 0;
	} else {
		ts.tv_sec = (long long)sec;
		ts.tv_nsec = (long long)(ns % 1000000000u);
	}
	return ts;
}

static bool before(const struct af__timer *a, const struct af__timer *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->seq < b->seq;
}

static void place(struct af__timer_heap *h, size_t i, struct af__timer *t)
{
	h->items[i] = t;
	t->index = i + 1;
}

static void sift_up(struct af__timer_heap *h, size_t i)
{
	struct af__timer *t = h->items[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!before(t, h->items[parent]))
			break;
		place(h, i, h->items[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct af__timer_heap *h, size_t i)
{
	struct af__timer *t = h->items[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->len)
			break;
		if (c + 1 < h->len && before(h->items[c + 1], h->items[c]))
			c++;
		if (!before(h->items[c], t))
			break;
		place(h, i, h->items[c]);
		i = c;
	}
	place(h, i, t);
}

/* Grow ahead of need, so that arming a timer in a blocking call can never
 * fail: the loop reserves one slot per task when it spawns it. */
int af__timer_reserve(struct af__timer_heap *h, size_t n)
{
	struct af__timer **items;
	size_t cap;

	if (n <= h->cap)
		return 0;
	cap = h->cap ? h->cap : 16;
	while (cap < n)
		cap *= 2;
	items = realloc(h->items, cap * sizeof(*items));
	if (!items)
		return -ENOMEM;
	h->items = items;
	h->cap = cap;
	return 0;
}

void af__timer_add(struct af__timer_heap *h, struct af__timer *t, uint64_t deadline)
{
	t->deadline = deadline;
	t->seq = h->seq++;
	place(h, h->len++, t);
	sift_up(h, h->len - 1);
}

void af__timer_remove(struct af__timer_heap *h, struct af__timer *t)
{
	size_t i = t->index - 1;
	struct af__timer *last;

	t->index = 0;
	last = h->items[--h->len];
	if (i == h->len)
		return;
	place(h, i, last);
	if (i > 0 && before(last, h->items[(i - 1) / 2]))
		sift_up(h, i);
	else
		sift_down(h, i);
}

void af__timer_heap_free(struct af__timer_heap *h)
{
	free(h->items);
	h->items = NULL;
	h->len = h->cap = 0;
}
