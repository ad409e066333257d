/* SPDX-License-Identifier: MIT */
/* Prefetches for lines another CPU wrote last and this one is about to
 * write: fetched for writing at once, the line arrives owned, instead of
 * shared first and owned at the read-modify-write that follows (two
 * transfers, on hosts whose coherence does them separately). A prefetch
 * never faults, so a stale address costs nothing but the fetch. */
#ifndef AF_PREFETCH_H
#define AF_PREFETCH_H

static inline void af__prefetch_write(const void *p)
{
#if defined(__x86_64__)
	/* gcc emits prefetchw only with -mprfchw; every x86-64 CPU runs it,
	 * those without the feature bit as a no-op. */
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	/* aarch64: PRFM PSTL1KEEP. */
	__builtin_prefetch(p, 1);
#endif
}

#endif
