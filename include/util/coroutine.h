/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutines: cooperative threads of control with their own stacks.
 *
 * A coroutine runs in whatever thread enters it and runs there until it
 * yields or returns.  It may yield in one thread and be resumed in another
 * (aio_co_schedule(), aio_co_reschedule_self()), so code that may run in a
 * coroutine must never cache a thread-local across a yield: blockd's own
 * thread-locals are read through non-inlined accessors (CO_TLS below).
 *
 * Stacks are mmap()ed with a guard page below them; switching is a few
 * instructions of assembly that save and restore callee-saved registers and
 * the stack pointer, with no system call.  Finished coroutines go back to a
 * per-thread pool (spilling to a global one) so that creating one is cheap.
 *
 * Entering and waking:
 *  - co_enter(co) runs @co in the calling thread now, until it yields.
 *  - aio_co_enter(ctx, co), aio_co_wake(co), aio_co_schedule(ctx, co) and
 *    aio_co_reschedule_self(ctx) (in util/aio.h) move coroutines between
 *    event loops.  A coroutine can be scheduled once at a time: scheduling
 *    it again before it has run aborts, naming the first scheduler.
 *
 * Thread-safety: co_create/co_enter/co_yield/co_self/in_coroutine act on the
 * calling thread.  A coroutine must not be entered by two threads at once;
 * entering a running coroutine aborts.
 */
#ifndef UTIL_COROUTINE_H
#define UTIL_COROUTINE_H

#include "util/osdep.h"

typedef struct Coroutine Coroutine;
typedef struct AioContext AioContext;

typedef void coroutine_fn CoroutineEntry(void *opaque);

/* Create a coroutine that will run entry(opaque) when first entered. */
Coroutine *co_create(CoroutineEntry *entry, void *opaque);

/*
 * Run @co in the calling thread until it yields or terminates.  When it
 * terminates, it goes back to the pool; the pointer is then stale.
 * Coroutines that @co woke while it ran (aio_co_enter() from inside a
 * coroutine) are entered after it yields, in the order they were woken.
 */
void co_enter(Coroutine *co);

/* Suspend the calling coroutine and return to whoever entered it. */
void coroutine_fn co_yield(void);

/* The coroutine running in this thread, or NULL outside coroutines. */
Coroutine *co_self(void);
bool in_coroutine(void);

/* True if @co is running or suspended inside a co_enter() chain. */
bool co_entered(Coroutine *co);

/* The AioContext @co last ran in (NULL before it first ran). */
AioContext *co_get_ctx(Coroutine *co);

/* Counters for tests and the micro-benchmark. */
typedef struct CoroutineStats {
    uint64_t created;       /* co_create() calls */
    uint64_t allocated;     /* of those, fresh stacks (pool misses) */
} CoroutineStats;
void co_get_stats(CoroutineStats *stats);

/* Size of every coroutine stack, excluding the guard page. */
#define COROUTINE_STACK_SIZE (1024 * 1024)

/*
 * Thread-locals that coroutine code reads must go through these accessors:
 * the compiler may otherwise compute the address of a __thread variable
 * once and reuse it after a yield that resumed in another thread.
 *
 *   CO_TLS(AioContext *, current_ctx)
 * defines get_current_ctx(), get_ptr_current_ctx() and set_current_ctx(v),
 * none of them ever inlined.
 */
#define CO_TLS(type, var)                                               \
    static __thread type co_tls_##var;                                  \
    static NOINLINE G_GNUC_UNUSED type get_##var(void)                                \
    {                                                                   \
        type v_;                                                        \
        __asm__ __volatile__("" : : : "memory");                        \
        v_ = co_tls_##var;                                              \
        return v_;                                                      \
    }                                                                   \
    static NOINLINE G_GNUC_UNUSED type *get_ptr_##var(void)                           \
    {                                                                   \
        type *p_;                                                       \
        __asm__ __volatile__("" : : : "memory");                        \
        p_ = &co_tls_##var;                                             \
        return p_;                                                      \
    }                                                                   \
    static NOINLINE G_GNUC_UNUSED void set_##var(type v)                              \
    {                                                                   \
        __asm__ __volatile__("" : : : "memory");                        \
        co_tls_##var = v;                                               \
    }

#endif /* UTIL_COROUTINE_H */
