/* SPDX-License-Identifier: MIT */
/* Fiber hooks that let AddressSanitizer and ThreadSanitizer follow a
 * coroutine switch. Without them ASan takes the new stack for an overflow of
 * the old one and TSan mixes up the happens-before state of two tasks. */
#ifndef AF_SANITIZER_H
#define AF_SANITIZER_H

#include <stdbool.h>
#include "switch.h"

#if AF_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if AF_TSAN
#include <sanitizer/tsan_interface.h>
#endif

static inline void af__san_ctx_new(struct af__ctx *ctx, void *lo, size_t size)
{
	ctx->stack_lo = lo;
	ctx->stack_size = size;
	ctx->asan_fake_stack = NULL;
#if AF_TSAN
	ctx->tsan_fiber = __tsan_create_fiber(0);
	ctx->owns_tsan_fiber = 1;
#endif
}

static inline void af__san_ctx_thread(struct af__ctx *ctx)
{
	ctx->stack_lo = NULL;
	ctx->stack_size = 0;
	ctx->asan_fake_stack = NULL;
#if AF_TSAN
	ctx->tsan_fiber = __tsan_get_current_fiber();
	ctx->owns_tsan_fiber = 0;
#endif
}

static inline void af__san_ctx_destroy(struct af__ctx *ctx)
{
#if AF_TSAN
	if (ctx->owns_tsan_fiber && ctx->tsan_fiber)
		__tsan_destroy_fiber(ctx->tsan_fiber);
	ctx->tsan_fiber = NULL;
#endif
	(void)ctx;
}

/* Called right before the raw switch. A final switch passes no fake-stack
 * slot so ASan frees the dying context's fake frames. */
static inline void af__san_before_switch(struct af__ctx *from,
					 struct af__ctx *to, bool final)
{
#if AF_ASAN
	/* Only ASan reads it, in af__san_after_switch(); elsewhere the store
	 * would dirty the next context's line on every switch. */
	to->from = from;
	__sanitizer_start_switch_fiber(final ? NULL : &from->asan_fake_stack,
				       to->stack_lo, to->stack_size);
#else
	(void)final;
#endif
#if AF_TSAN
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
}

/* Called first thing once running in @self again (or for the first time):
 * ASan reports the bounds of the stack we came from, which is how the
 * thread's own context learns its bounds. */
static inline void af__san_after_switch(struct af__ctx *self)
{
#if AF_ASAN
	struct af__ctx *from = self->from;

	__sanitizer_finish_switch_fiber(self->asan_fake_stack,
					&from->stack_lo, &from->stack_size);
#else
	(void)self;
#endif
}

#endif
