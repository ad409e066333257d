/* SPDX-License-Identifier: MIT */
/*
 * void af__switch_asm(void **save_sp, void *load_sp)
 *
 * Saves what the SysV x86_64 ABI says a callee must preserve (rbx, rbp,
 * r12-r15, the MXCSR control bits and the x87 control word) on the current
 * stack, stores the stack pointer in *save_sp, loads load_sp and pops the
 * same frame from there. No signal mask, no system call: that is the whole
 * difference from swapcontext. The frame layout must match af__ctx_make()
 * in switch_asm.c.
 */
	.text
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
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	af__switch_asm, .-af__switch_asm

	.section .note.GNU-stack,"",@progbits
