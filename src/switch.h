/* SPDX-License-Identifier: MIT */
/* Coroutine context switching. Two implementations share this interface:
 * switch_asm.c + switch_x86_64.S (callee-saved registers and the stack
 * pointer only) and switch_ucontext.c (swapcontext, which also saves the
 * signal mask with a sigprocmask system call on every switch). The first
 * builds a new stack's first frame by hand, the second with makecontext.
 * The sanitizer fiber hooks live here too, so ASan and TSan follow every
 * switch whichever implementation is built. */
#ifndef AF_SWITCH_H
#define AF_SWITCH_H

#include <stddef.h>
#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#define AF_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define AF_TSAN 1
#endif

struct af__ctx {
#if AF_SWITCH_ASM
	void *sp;
#else
	ucontext_t uc;
#endif
	/* Bounds of the stack this context runs on, for ASan. For the thread's
	 * own context they are learnt on the first switch away from it. */
	const void *stack_lo;
	size_t stack_size;
	void *asan_fake_stack;
	struct af__ctx *from;
	void *tsan_fiber;
	int owns_tsan_fiber;
};

/* Adopt the calling thread's own stack as a context to switch back to. */
void af__ctx_init_thread(struct af__ctx *ctx);

/* Prepare @ctx to call @entry on [stack_lo, stack_lo + size). @entry
 * takes no arguments (it finds its task through the current loop) and must
 * never return. */
int af__ctx_make(struct af__ctx *ctx, void *stack_lo, size_t size,
		 void (*entry)(void));

/* Release what af__ctx_make() or af__ctx_init_thread() acquired. */
void af__ctx_destroy(struct af__ctx *ctx);

/* Save the running context in @from and resume @to. Returns when something
 * switches back to @from. Inline with the assembly switch: every call
 * level around a switch is a return the CPU mispredicts after it (its
 * return stack holds the other context's calls). */
#if AF_SWITCH_ASM
static inline void af__ctx_switch(struct af__ctx *from, struct af__ctx *to);
#else
void af__ctx_switch(struct af__ctx *from, struct af__ctx *to);
#endif

/* Leave @from for good: its stack may be reused once this returns in @to. */
void af__ctx_switch_final(struct af__ctx *from, struct af__ctx *to)
	__attribute__((noreturn));

/* Where a suspended @ctx's stack will be read first when it resumes (for
 * a prefetch; NULL if unknown). */
static inline const void *af__ctx_resume_point(const struct af__ctx *ctx)
{
#if AF_SWITCH_ASM
	return ctx->sp;
#else
	(void)ctx; /* the saved stack pointer's place differs by CPU */
	return NULL;
#endif
}

/* First thing a new context must call, before touching its stack much. */
void af__ctx_entered(struct af__ctx *self);

#include "sanitizer.h"

#if AF_SWITCH_ASM
/* switch_x86_64.S, switch_aarch64.S */
void af__switch_asm(void **save_sp, void *load_sp);

#if AF_RESUME_STUBS
/* Set by every switch, cleared by the blocking calls' stubs before they
 * call their body (resume_x86_64.S): a stub returns with an indirect jump
 * only when its task was switched away and back. A body that returns
 * without switching leaves the return stack in step with the calls, and a
 * plain ret keeps it so. One thread runs one loop, so per thread is per
 * loop. */
extern __thread unsigned char af__tls_switched __attribute__((tls_model("initial-exec")));
#endif

/* What every switch does first: tell the stubs it happened. */
static inline void af__ctx_switching(void)
{
#if AF_RESUME_STUBS
	af__tls_switched = 1;
#endif
}

static inline void af__ctx_switch(struct af__ctx *from, struct af__ctx *to)
{
	af__ctx_switching();
	af__san_before_switch(from, to, false);
	af__switch_asm(&from->sp, to->sp);
	af__san_after_switch(from);
}
#endif

#endif
