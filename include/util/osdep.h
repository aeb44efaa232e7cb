/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Common definitions every blockd source file includes first: the build's
 * configuration, the system headers nearly everything needs, GLib, and a
 * handful of small macros.  Nothing here has state.
 */
#ifndef UTIL_OSDEP_H
#define UTIL_OSDEP_H

#include "config-host.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

#include <glib.h>

#include "util/tsa.h"

#ifndef container_of
#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ROUND_UP(n, d)      (((n) + (d) - 1) & -(__typeof__(n))(d))
#define ROUND_DOWN(n, d)    ((n) & -(__typeof__(n))(d))
#define IS_ALIGNED(n, d)    (((n) & ((d) - 1)) == 0)
#define DIV_ROUND_UP(n, d)  (((n) + (d) - 1) / (d))

#define NORETURN __attribute__((noreturn))
#define NOINLINE __attribute__((noinline))
#define PRINTF_FMT(a, b) __attribute__((format(printf, a, b)))
#define WARN_UNUSED __attribute__((warn_unused_result))

/* Marks functions that may only be called from coroutine context. */
#define coroutine_fn
/* Marks functions that may be called from coroutine or plain context. */
#define coroutine_mixed_fn

/* Monotonic clock in nanoseconds; the clock of every timer and deadline. */
static inline int64_t get_clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif /* UTIL_OSDEP_H */
