/* SPDX-License-Identifier: MIT */
/*
 * The exported blocking calls on x86_64: each stub calls its C body
 * (af__body_<name>, internal.h) and goes back to its caller with an
 * indirect jump instead of a ret.
 *
 * Why: a task resumes inside the blocking call it made, and from there
 * returns to its caller. The CPU predicts a ret with its return stack,
 * which a switch does not switch: it holds the calls of the task that ran
 * before. So whenever the two tasks of a hop blocked at different call
 * sites (an Event ping-pong, a producer and a consumer) the ret was
 * mispredicted, on every hop. An indirect jump is predicted from the
 * branch history, which does see the alternation. The body's own ret, back
 * into the stub, is predicted: it returns to the same stub in every task
 * that blocks in that call. The return stack keeps one entry per call that
 * is never popped; it is a ring, so stale entries are overwritten, and at
 * worst a later ret mispredicts once.
 *
 * The stub leaves the arguments alone (it only moves rsp, by 8 to keep
 * the body's stack aligned as the ABI wants), returns the body's rax and
 * clobbers rcx, which the ABI lets any call clobber.
 *
 * An indirect jump to a return address is not a valid target under
 * Intel CET's indirect branch tracking, and a ret that was never made
 * would fail its shadow stack. This file carries no CET property note, so
 * the loader enables neither for a process that maps the library (as with
 * the asm switch, which moves rsp between stacks anyway).
 */
	.text

.macro	AF_RESUME_STUB name
	.globl	\name
	.type	\name, @function
	.p2align 4
\name:
	.cfi_startproc
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	call	af__body_\name
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	popq	%rcx
	.cfi_adjust_cfa_offset -8
	.cfi_register %rip, %rcx
	jmp	*%rcx
	.cfi_endproc
	.size	\name, .-\name
.endm

	AF_RESUME_STUB af_event_wait
	AF_RESUME_STUB af_event_wait_timeout
	AF_RESUME_STUB af_flag_wait
	AF_RESUME_STUB af_flag_wait_timeout
	AF_RESUME_STUB af_lock_acquire
	AF_RESUME_STUB af_lock_acquire_timeout
	AF_RESUME_STUB af_queue_get
	AF_RESUME_STUB af_queue_get_timeout
	AF_RESUME_STUB af_queue_put
	AF_RESUME_STUB af_queue_put_timeout
	AF_RESUME_STUB af_yield
	AF_RESUME_STUB af_sleep_ns
	AF_RESUME_STUB af_sleep_ms
	AF_RESUME_STUB af_task_join
	AF_RESUME_STUB af_task_join_timeout
	AF_RESUME_STUB af_group_join
	AF_RESUME_STUB af_group_join_timeout

	.section .note.GNU-stack,"",@progbits
