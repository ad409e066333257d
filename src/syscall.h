/* SPDX-License-Identifier: MIT */
/* System calls made without libc, for the kick a setter makes on its way
 * out of af_flag_set(): from a thread that woke cold (its CPU was idle, a
 * signal handler), libc's wrapper is a PLT slot, a GOT entry, the wrapper's
 * code and errno's thread-local line, each a cache miss before the kernel
 * is even entered. Made here, the call touches none of them, leaves errno
 * alone (so an async-signal-safe caller needs no save and restore) and is
 * no cancellation point (write(2) is one: a cancel there would leave the
 * loop's kicker count raised for good). Other architectures use
 * syscall(2), which is no cancellation point either, and restore errno. */
#ifndef AF_SYSCALL_H
#define AF_SYSCALL_H

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Returns the kernel's answer: the result, or a negative errno value. */
static inline long af__syscall3(long nr, long a, long b, long c)
{
#if defined(__x86_64__)
	long ret;

	/* The kernel clobbers rcx (return address) and r11 (flags). */
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;

	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
#else
	int saved = errno;
	long ret = syscall(nr, a, b, c);

	if (ret < 0)
		ret = -errno;
	errno = saved;
	return ret;
#endif
}

/* The same with six arguments: io_uring_enter(2) with its extended argument. */
static inline long af__syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;

	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
#else
	int saved = errno;
	long ret = syscall(nr, a, b, c, d, e, f);

	if (ret < 0)
		ret = -errno;
	errno = saved;
	return ret;
#endif
}

#endif
