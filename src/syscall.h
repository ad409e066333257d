/* SPDX-License-Identifier: MIT */
/* System calls made without libc, for the kick a setter makes on its way
 * out of af_flag_set(): from a thread that woke cold (its CPU was idle, a
 * signal handler), libc's wrapper is a PLT slot, a GOT entry, the wrapper's
 * code and errno's thread-local line, each a cache miss before the kernel
 * is even entered. Made here, the call touches none of them, leaves errno
 * alone (so an async-signal-safe caller needs no save and restore) and is
 * no cancellation point (write(2) is one: a cancel there would leave the
 * loop's kicker count raised for good). Other architectures use
 * syscall(2), which is no cancellation point either, and restore errno; so
 * do x32 and aarch64 ILP32, where long is 32 bits and nothing promises the
 * registers' upper halves. The "memory" clobbers keep the compiler from
 * moving stores the kernel reads (the eventfd's value, the ring's SQEs and
 * extended argument) past the call. */
#ifndef AF_SYSCALL_H
#define AF_SYSCALL_H

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The futex call that takes a 64-bit timespec: futex_time64 on 32-bit
 * ABIs, futex where time is 64-bit anyway (64-bit ABIs, x32). The loop's
 * parked sleep (loop.c) and its wake both use it: a 32-bit kernel built without the old
 * 32-bit time calls (COMPAT_32BIT_TIME=n), or a seccomp profile that
 * allows only the *_time64 ones, would refuse a wake through the old. */
#ifdef __NR_futex_time64
#define AF__NR_FUTEX_TS64 __NR_futex_time64
#elif __SIZEOF_POINTER__ == 8 || defined(__x86_64__)
#define AF__NR_FUTEX_TS64 __NR_futex
#else
#error "32-bit build without __NR_futex_time64: kernel headers before Linux 5.1"
#endif

/* Returns the kernel's answer: the result, or a negative errno value. */
static inline long af__syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__) && !defined(__ILP32__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__) && !defined(__ILP32__)
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

/* Three arguments: the kick's FUTEX_WAKE or eventfd write. futex(2) takes
 * six and ignores the last three for FUTEX_WAKE; they go in as zero. */
static inline long af__syscall3(long nr, long a, long b, long c)
{
	return af__syscall6(nr, a, b, c, 0, 0, 0);
}

#endif
