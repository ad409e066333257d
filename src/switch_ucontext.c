/* SPDX-License-Identifier: MIT */
/* The portable switch: swapcontext for every architecture without a
 * hand-written one. It also saves and restores the signal mask, which costs
 * a sigprocmask system call per switch (bench/bench-switch measures it). */
#include <string.h>
#include <ucontext.h>

#include "internal.h"
#include "sanitizer.h"

void af__ctx_init_thread(struct af__ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	af__san_ctx_thread(ctx);
}

int af__ctx_make(struct af__ctx *ctx, void *stack_lo, size_t size,
		 void (*entry)(void))
{
	memset(ctx, 0, sizeof(*ctx));
	af__san_ctx_new(ctx, stack_lo, size);
	if (getcontext(&ctx->uc) < 0) {
		af__san_ctx_destroy(ctx);
		return -EINVAL;
	}
	ctx->uc.uc_stack.ss_sp = stack_lo;
	ctx->uc.uc_stack.ss_size = size;
	ctx->uc.uc_link = NULL;
	makecontext(&ctx->uc, entry, 0);
	return 0;
}

void af__ctx_destroy(struct af__ctx *ctx)
{
	af__san_ctx_destroy(ctx);
}

void af__ctx_switch(struct af__ctx *from, struct af__ctx *to)
{
	af__san_before_switch(from, to, false);
	swapcontext(&from->uc, &to->uc);
	af__san_after_switch(from);
}

void af__ctx_switch_final(struct af__ctx *from, struct af__ctx *to)
{
	af__san_before_switch(from, to, true);
	setcontext(&to->uc);
	__builtin_unreachable();
}

void af__ctx_entered(struct af__ctx *self)
{
	af__san_after_switch(self);
}

unsigned af__ctx_features(void)
{
	return 0;
}
