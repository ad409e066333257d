/* SPDX-License-Identifier: MIT */
/* The hand-written switch: a new context starts as a frame on its stack that
 * af__switch_asm can "return" into. On x86_64 makecontext lays the stack out
 * the way the C library expects and we turn its entry registers into that
 * frame; on aarch64 the frame is simple enough to build directly. */
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "internal.h"
#include "sanitizer.h"

void af__ctx_init_thread(struct af__ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	af__san_ctx_thread(ctx);
}

#if defined(__x86_64__)
/* Words af__switch_asm pops: control words, r15, r14, r13, r12, rbx, rbp, rip. */
enum { FRAME_WORDS = 8 };

static void *frame_make(void *stack_lo, size_t size, void (*entry)(void))
{
	ucontext_t uc;
	uint64_t *sp;
	uint32_t mxcsr;
	uint16_t fcw;

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
	return sp;
}
#elif defined(__aarch64__)
/* Words af__switch_asm pops: x19-x28, x29, x30, d8-d15, fpcr, padding. */
enum { FRAME_WORDS = 22, FRAME_X30 = 11, FRAME_FPCR = 20 };

static void *frame_make(void *stack_lo, size_t size, void (*entry)(void))
{
	uint64_t *sp, fpcr;

	/* AAPCS64 wants sp 16-byte aligned at every public interface, and
	 * unlike x86_64 a call pushes nothing: entry starts with sp at the top
	 * of the stack. The switch "returns" to x30, so x30 is entry; entry
	 * never returns, so no trampoline is needed. */
	sp = (uint64_t *)(((uintptr_t)stack_lo + size) & ~(uintptr_t)15);
	sp -= FRAME_WORDS;
	memset(sp, 0, FRAME_WORDS * sizeof(*sp)); /* x29 0 ends frame walks */
	__asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
	sp[FRAME_X30] = (uint64_t)(uintptr_t)entry;
	sp[FRAME_FPCR] = fpcr;
	return sp;
}
#else
#error "switch=asm: no af__switch_asm for this architecture"
#endif

int af__ctx_make(struct af__ctx *ctx, void *stack_lo, size_t size,
		 void (*entry)(void))
{
	memset(ctx, 0, sizeof(*ctx));
	af__san_ctx_new(ctx, stack_lo, size);
	ctx->sp = frame_make(stack_lo, size, entry);
	return 0;
}

void af__ctx_destroy(struct af__ctx *ctx)
{
	af__san_ctx_destroy(ctx);
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
