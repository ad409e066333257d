/* SPDX-License-Identifier: MIT */
/*
 * The exported blocking calls on x86_64: each stub calls its C body
 * (af__body_<name>, internal.h) and, when the body switched to another
 * context and was switched back, returns to its caller with an indirect
 * jump instead of a ret.
 *
 * Why: a task resumes inside the blocking call it made, and from there
 * returns to its caller. The CPU predicts a ret with its return stack,
 * which a switch does not switch: it holds the calls of the task that ran
 * before. So whenever the two tasks of a hop blocked at different call
 * sites (an Event ping-pong, a producer and a consumer) the ret was
 * mispredicted, on every hop. An indirect jump is predicted from the
 * branch history, which does see the alternation. The body's own ret,
 * back into the stub, is predicted: it returns to the same stub in every
 * task that blocks in that call.
 *
 * Only after a switch: the jump leaves the caller's entry on the return
 * stack, so from then on every ret up the caller's chain would pop the
 * entry below its own and be mispredicted. After a switch the return
 * stack is out of step anyway; a call that did not block (an Event
 * already set, a free lock) must leave it in step, so it returns with
 * ret. af__tls_switched tells the two apart: every switch sets it
 * (switch.h), the stub clears it before the call. Bodies never call
 * stubs (internal calls go to the bodies), so nothing in between clears
 * it.
 *
 * The stub leaves the argument registers alone and returns the body's
 * eax; it uses rax before the call (no stubbed call is variadic, so al
 * carries nothing) and rcx after it, both free for any call to clobber,
 * and moves rsp by 8 around the call so that the body starts with the
 * stack aligned as the ABI wants.
 *
 * An indirect jump to a return address is not a valid target under
 * Intel CET's indirect branch tracking, and a ret that was never made
 * fails a shadow stack. This file carries no CET property note, so the
 * library is not marked for either, and glibc enables neither unless
 * forced; forced on, they break the switch (which moves rsp between
 * stacks) as well as the stubs.
 */
	.section .text.hot.af_resume,"ax",@progbits

.macro	AF_RESUME_STUB name
	.globl	\name
	.type	\name, @function
	.p2align 4
\name:
	.cfi_startproc
	movq	af__tls_switched@GOTTPOFF(%rip), %rax
	movb	$0, %fs:(%rax)
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	call	af__body_\name
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	movq	af__tls_switched@GOTTPOFF(%rip), %rcx
	cmpb	$0, %fs:(%rcx)
	jne	1f
	ret
1:	popq	%rcx
	.cfi_adjust_cfa_offset -8
	.cfi_register %rip, %rcx
	jmp	*%rcx
	.cfi_endproc
	.size	\name, .-\name
.endm

#define AF_RESUME_CALL(fn) AF_RESUME_STUB fn
#include "resume_calls.h"

	.section .note.GNU-stack,"",@progbits
