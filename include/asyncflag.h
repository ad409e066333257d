/* SPDX-License-Identifier: MIT */
/**
 * @file asyncflag.h
 * @brief libasyncflag: an io_uring event loop running C coroutines, with
 *        asyncio-style Event, ThreadSafeFlag (af_flag), Lock and signal helpers.
 *
 * Include this one header. Conventions shared by every call:
 * - Functions that can fail return 0 (or a count) on success and a negative
 *   errno value on failure; errno is never set.
 * - -EINVAL: a NULL or invalid argument. -EPERM: a blocking call made outside
 *   a task, or a call from a thread that does not run the object's loop.
 *   -ECANCELED: the calling task was cancelled. -ETIMEDOUT: a _timeout call
 *   expired. -ENOMEM: out of memory.
 * - Timeouts are int64_t nanoseconds; a negative timeout waits forever.
 */
#ifndef ASYNCFLAG_H
#define ASYNCFLAG_H

#include <asyncflag/version.h>
#include <asyncflag/common.h>
#include <asyncflag/loop.h>
#include <asyncflag/task.h>
#include <asyncflag/event.h>
#include <asyncflag/flag.h>
#include <asyncflag/lock.h>
#include <asyncflag/signal.h>
#include <asyncflag/io.h>
#include <asyncflag/gpio.h>
#include <asyncflag/group.h>
#include <asyncflag/queue.h>
#include <asyncflag/stream.h>

#endif
