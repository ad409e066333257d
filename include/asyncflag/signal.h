/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_SIGNAL_H
#define ASYNCFLAG_SIGNAL_H

#include <asyncflag/common.h>
#include <asyncflag/flag.h>

AF_BEGIN_DECLS

/**
 * @brief Install a handler for @p signo that sets @p flag.
 *
 * The handler only calls af_flag_set(), so a task awaits the signal with
 * af_flag_wait(). Signals that arrive while the flag is already set coalesce,
 * as with any flag. The handler is process-wide (signal dispositions are) and
 * runs with SA_RESTART; the previous disposition is restored by
 * af_signal_unwatch() or af_flag_destroy().
 *
 * The flag's loop also reads @p signo from a signalfd (on either backend),
 * so a signal blocked in the loop's thread (or in every thread: the fast
 * path, with no handler run) still sets the flag. A loop that such signals
 * woke lately sleeps in sigtimedwait() for them, with SIGURG blocked in its
 * thread for the length of that sleep (its kick; AF_SIGWAIT=0 in the
 * environment turns this off); see docs/signals.md.
 *
 * @return 0; -EINVAL for a NULL or uninitialised flag, or a signal number
 *         that is out of range or cannot be caught (SIGKILL, SIGSTOP) or
 *         that is a synchronous fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE:
 *         returning from a handler re-runs the faulting instruction, and
 *         SIGSEGV reports task stack overflows); -EBUSY if @p signo is
 *         already watched by another flag (watching with the same flag again
 *         returns 0); -EMFILE, -ENFILE or -ENOMEM if the loop's signalfd
 *         cannot be made; another -errno from sigaction() or signalfd().
 */
int af_signal_watch(struct af_flag *flag, int signo);

/**
 * @brief Stop watching @p signo and restore its previous disposition.
 * Returns only when no handler of @p signo (on any thread) is inside the
 * library any more: afterwards the flag is no longer touched for this signal
 * and may be destroyed and freed. Not async-signal-safe.
 * @return 0; -EINVAL for an out-of-range signal; -ENOENT if it is not watched.
 */
int af_signal_unwatch(int signo);

AF_END_DECLS

#endif
