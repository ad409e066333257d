/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_COMMON_H
#define ASYNCFLAG_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define AF_BEGIN_DECLS extern "C" {
#define AF_END_DECLS }
#else
#define AF_BEGIN_DECLS
#define AF_END_DECLS
#endif

AF_BEGIN_DECLS

struct af_loop;
struct af_task;

/**
 * Storage for the caller-allocated primitives (af_event, af_flag, af_lock).
 * The fields are private: the library checks at build time that its real
 * layout fits, so these objects can live in static storage, inside user
 * structs, or on a task's stack without any allocation.
 */
union af__private {
	void *_p[4];
	uint64_t _u[4];
};

/** @brief Version of the library actually loaded, as "major.minor.patch". */
const char *af_version(void);

/**
 * @brief Describe a negative errno value returned by this library.
 *
 * Adds libasyncflag-specific advice where the plain strerror() text would
 * mislead: for example -EPERM or -ENOSYS from af_loop_new() mean io_uring is
 * disabled by the kernel.io_uring_disabled sysctl or a seccomp filter.
 *
 * @param err a negative (or positive) errno value; any int is accepted.
 * @return never NULL. For every errno value the C library knows, a static
 *         string. For any other value ("unknown error N"), a buffer local
 *         to the calling thread: valid until that thread's next
 *         af_strerror() of an unknown value, never touched by other threads.
 */
const char *af_strerror(int err);

AF_END_DECLS

#endif
