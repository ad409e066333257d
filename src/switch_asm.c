/* SPDX-License-Identifier: MIT */
/* The hand-written switch: a new context starts as a frame on its stack that
 * af__switch_asm can "return" into, built directly for each CPU. */
#include <stdint.h>
#include <string.h>

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
	uint64_t *sp;
	uint32_t mxcsr;
	uint16_t fcw;

	/* Built by hand: makecontext wanted a 936-byte ucontext_t cleared
	 * and filled first, ~600 instructions per task for 9 words. The SysV
	 * ABI wants rsp % 16 == 8 at a function's first instruction, as if a
	 * call had just pushed its return address: entry finds a 0 there (it
	 * never returns, and a 0 return address ends debuggers' walks), and
	 * above it the top of the stack, 16-byte aligned. af__switch_asm's
	 * ret pops rip and leaves rsp at exactly that slot. */
	sp = (uint64_t *)(((uintptr_t)stack_lo + size) & ~(uintptr_t)15);
	*--sp = 0;
	sp -= FRAME_WORDS;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(fcw));
	sp[0] = (uint64_t)mxcsr | ((uint64_t)fcw << 32);
	for (int i = 1; i < 7; i++)
		sp[i] = 0; /* r15..rbp; rbp 0 ends debuggers' frame walks */
	sp[7] = (uint64_t)(uintptr_t)entry;
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

#if AF_RESUME_STUBS
__thread unsigned char af__tls_switched __attribute__((tls_model("initial-exec")));
#endif

void af__ctx_switch_final(struct af__ctx *from, struct af__ctx *to)
{
	af__ctx_switching();
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
