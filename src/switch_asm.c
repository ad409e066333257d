/* SPDX-License-Identifier: MIT */
/* The hand-written switch: makecontext lays out the new stack the way the
 * C library expects, then we turn its entry registers into a frame that
 * af__switch_asm can "return" into. */
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "internal.h"
#include "sanitizer.h"

void af__switch_asm(void **save_sp, void *load_sp);

/* Words af__switch_asm pops: control words, r15, r14, r13, r12, rbx, rbp, rip. */
enum { FRAME_WORDS = 8 };

void af__ctx_init_thread(struct af__ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	af__san_ctx_thread(ctx);
}

int af__ctx_make(struct af__ctx *ctx, void *stack_lo, size_t size,
		 void (*entry)(void))
{
	ucontext_t uc;
	uint64_t *sp;
	uint32_t mxcsr;
	uint16_t fcw;

	memset(ctx, 0, sizeof(*ctx));
	af__san_ctx_new(ctx, stack_lo, size);
	/* makecontext only reads uc_stack and uc_link; getcontext is not
	 * needed (and would cost a sigprocmask per task). */
	memset(&uc, 0, sizeof(uc));
	uc.uc_stack.ss_sp = stack_lo;
	uc.uc_stack.ss_size = size;
	uc.uc_link = NULL;
	makecontext(&uc, entry, 0);

	/* At entry makecontext's rsp holds the return address into the C
	 * library's context trampoline, leaving the ABI's rsp % 16 == 8. We push
	 * rip as a return address for af__switch_asm's ret, so rsp is back at
	 * exactly that value when entry starts. */
	sp = (uint64_t *)(uintptr_t)uc.uc_mcontext.gregs[REG_RSP];
	sp -= FRAME_WORDS;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(fcw));
	sp[0] = (uint64_t)mxcsr | ((uint64_t)fcw << 32);
	for (int i = 1; i < 7; i++)
		sp[i] = 0; /* r15..rbp; rbp 0 ends debuggers' frame walks */
	sp[7] = (uint64_t)uc.uc_mcontext.gregs[REG_RIP];
	ctx->sp = sp;
	return 0;
}

void af__ctx_destroy(struct af__ctx *ctx)
{
	af__san_ctx_destroy(ctx);
}

void af__ctx_switch(struct af__ctx *from, struct af__ctx *to)
{
	af__san_before_switch(from, to, false);
	af__switch_asm(&from->sp, to->sp);
	af__san_after_switch(from);
}

void af__ctx_switch_final(struct af__ctx *from, struct af__ctx *to)
{
	af__san_before_switch(from, to, true);
	af__switch_asm(&from->sp, to->sp);
	__builtin_unreachable();
}

void af__ctx_entered(struct af__ctx *self)
{
	af__san_after_switch(self);
}

unsigned af__ctx_features(void)
{
	return AF_FEATURE_ASM_SWITCH;
}
