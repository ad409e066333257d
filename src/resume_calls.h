/* SPDX-License-Identifier: MIT */
/* The exported blocking calls that get a resume stub on x86_64 with the asm
 * switch (resume_x86_64.S), one AF_RESUME_CALL() each. The includer defines
 * AF_RESUME_CALL: internal.h declares the C bodies from it, the stub file
 * makes the stubs, so the two cannot drift apart. Only macro calls here:
 * the assembler includes this file too. */
AF_RESUME_CALL(af_event_wait)
AF_RESUME_CALL(af_event_wait_timeout)
AF_RESUME_CALL(af_flag_wait)
AF_RESUME_CALL(af_flag_wait_timeout)
AF_RESUME_CALL(af_lock_acquire)
AF_RESUME_CALL(af_lock_acquire_timeout)
AF_RESUME_CALL(af_queue_get)
AF_RESUME_CALL(af_queue_get_timeout)
AF_RESUME_CALL(af_queue_put)
AF_RESUME_CALL(af_queue_put_timeout)
AF_RESUME_CALL(af_yield)
AF_RESUME_CALL(af_sleep_ns)
AF_RESUME_CALL(af_sleep_ms)
AF_RESUME_CALL(af_task_join)
AF_RESUME_CALL(af_task_join_timeout)
AF_RESUME_CALL(af_group_join)
AF_RESUME_CALL(af_group_join_timeout)
