/* SPDX-License-Identifier: MIT */
/*
 * void af__switch_asm(void **save_sp, void *load_sp)
 *
 * The aarch64 twin of switch_x86_64.S. Saves what AAPCS64 says a callee
 * must preserve: x19-x28, the frame pointer x29, the link register x30
 * (where we return to), the low halves d8-d15 of v8-v15, and FPCR (rounding
 * mode and flush-to-zero are per thread of execution, as MXCSR is on
 * x86_64). The frame goes on the current stack, sp into *save_sp; then
 * load_sp's frame is popped and we return to its x30. No signal mask, no
 * system call. The layout must match af__ctx_make() in switch_asm.c:
 *
 *   sp+0   x19 x20   sp+16  x21 x22   sp+32  x23 x24   sp+48  x25 x26
 *   sp+64  x27 x28   sp+80  x29 x30   sp+96  d8  d9    sp+112 d10 d11
 *   sp+128 d12 d13   sp+144 d14 d15   sp+160 fpcr, pad (sp stays 16-aligned)
 */
	.section .text.hot.af_switch,"ax",%progbits
	.globl	af__switch_asm
	.hidden	af__switch_asm
	.type	af__switch_asm, %function
	.p2align 4
af__switch_asm:
	.cfi_startproc
	sub	sp, sp, #176
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	mrs	x9, fpcr
	str	x9, [sp, #160]
	mov	x9, sp
	str	x9, [x0]
	mov	sp, x1
	ldr	x9, [sp, #160]
	msr	fpcr, x9
	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	add	sp, sp, #176
	ret
	.cfi_endproc
	.size	af__switch_asm, .-af__switch_asm

	.section .note.GNU-stack,"",%progbits
