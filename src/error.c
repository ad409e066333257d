/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

AF_API const char *af_version(void)
{
	return AF_VERSION_STRING;
}

/* Text the C library has for @e, or NULL. strerrordesc_np() rather than
 * strerror(): its strings are immutable and shared, where strerror()
 * may format into a buffer the next call overwrites. */
static const char *libc_text(unsigned e)
{
	return e <= INT_MAX ? strerrordesc_np((int)e) : NULL;
}

AF_API const char *af_strerror(int err)
{
	/* Unsigned: INT_MIN has no int negation (undefined behaviour). */
	unsigned e = err < 0 ? 0u - (unsigned)err : (unsigned)err;
	/* Per thread, so that one thread's unknown value never rewrites the
	 * string another thread is printing. */
	static __thread char unknown[40];
	const char *text;

	switch (e) {
	case 0:
		return "success";
	case EPERM:
		return "operation not permitted: a blocking call outside a task, "
		       "a call from a thread that does not run the object's loop, "
		       "or (from af_loop_new) io_uring disabled by the "
		       "kernel.io_uring_disabled sysctl or a seccomp filter";
	case ENOSYS:
		return "io_uring is not available: the kernel lacks it or a "
		       "seccomp filter (a container runtime's default profile) "
		       "blocks io_uring_setup; allow the io_uring_* system calls";
	case EBUSY:
		return "busy: another task already waits on this flag, or the loop "
		       "is already running";
	case ECANCELED:
		return "the task was cancelled";
	case ETIMEDOUT:
		return "timed out";
	case EDEADLK:
		return "deadlock: every task waits on something nothing can complete";
	default:
		text = libc_text(e);
		if (text)
			return text;
		snprintf(unknown, sizeof(unknown), "unknown error %d", err);
		return unknown;
	}
}

void af__misuse(const char *func, const char *fmt, ...)
{
#if AF_DEBUG
	char buf[512];
	int n;
	va_list ap;

	/* A blocking call's body (AF_BODY(), internal.h) reports under the
	 * public name its stub exports. */
	if (strncmp(func, "af__body_", 9) == 0)
		func += 9;
	/* One write(2), so messages from several threads do not interleave. */
	n = snprintf(buf, sizeof(buf), "libasyncflag: %s: ", func);
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(buf))
		n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf) - 1)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
#else
	(void)func;
	(void)fmt;
#endif
}
