/* SPDX-License-Identifier: MIT */
/*
 * void af__switch_asm(void **save_sp, void *load_sp)
 *
 * Saves what the SysV x86_64 ABI says a callee must preserve (rbx, rbp,
 * r12-r15, the MXCSR control bits and the x87 control word) on the current
 * stack, stores the stack pointer in *save_sp, loads load_sp and pops the
 * same frame from there. No signal mask, no system call: that is the whole
 * difference from swapcontext. The frame layout must match af__ctx_make()
 * in switch_asm.c: the control words share one word, MXCSR in its low
 * half and the x87 control word above it.
 *
 * ldmxcsr and fldcw cost several cycles each and almost every switch
 * would load the very values already in the registers (tasks rarely change
 * rounding modes), so they run only when the saved word differs from the
 * one just stored: the registers end up the same either way.
 */
	.section .text.hot.af_switch,"ax",@progbits
	.globl	af__switch_asm
	.hidden	af__switch_asm
	.type	af__switch_asm, @function
	.p2align 4
af__switch_asm:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	/* Read back at the width each was stored with, so the loads are
	 * forwarded from the stores; eax and ecx are the caller's to lose. */
	movl	(%rsp), %eax
	movzwl	4(%rsp), %ecx
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	cmpl	(%rsp), %eax
	jne	2f
	cmpw	4(%rsp), %cx
	jne	2f
1:	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
2:	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	jmp	1b
	.cfi_endproc
	.size	af__switch_asm, .-af__switch_asm

	.section .note.GNU-stack,"",@progbits
