/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AIO_WAIT_WHILE: wait for a condition by running the event loop; and the
 * deferred main-loop work that must not run inside such a wait.
 *
 * AIO_WAIT_WHILE(ctx, cond) runs nested aio_poll() iterations until @cond
 * is false.  Called from the main loop, it polls the main context: work in
 * an iothread that changes @cond must call aio_wait_kick() afterwards to
 * wake the main loop.  Called from @ctx's own home thread, it polls @ctx
 * and is woken by @ctx's own events.  An iothread never waits for another
 * iothread.
 *
 * The barrier pairing, which is the whole point:
 *   waiter:  num_waiters++;  smp_mb();  read cond ... block in aio_poll()
 *   kicker:  write cond;     smp_mb();  read num_waiters, wake if non-zero
 * Either the waiter sees the new value of cond, or the kicker sees the
 * waiter and wakes it.  Without the kicker's barrier the load of
 * num_waiters can be ordered before the store to cond and the wake-up is
 * lost (the waiter then sleeps forever).
 *
 * Variables read in @cond that other threads write must be read with
 * qatomic_read() (or under a lock).
 *
 * What runs inside a wait.  A main-loop wait runs every bottom half, fd
 * handler, timer and main-context coroutine that comes due, except one
 * kind: *deferred work*.  Work that changes the block graph or frees what
 * other main-loop code may hold across its own wait -- a job's completion
 * (job_exit()), an export's deletion -- is queued with aio_wait_defer() and
 * runs only at a *safe point*: when no main-loop AIO_WAIT_WHILE() is in
 * progress (the outermost iteration of the main loop, or code called
 * outside any loop), or inside AIO_WAIT_WHILE_RUNNING_DEFERRED(), the wait
 * that exists to let it run (waiting for a job to finish, for exports to
 * go away).  So:
 *   - code that waits with AIO_WAIT_WHILE() finds every node, export and
 *     job it looked up still there afterwards (see docs/locking.md,
 *     "Waiting");
 *   - a graph write section (bdrv_graph_wrlock()) cannot begin inside
 *     another writer's wait, because the only main-loop callbacks that
 *     take the write lock are deferred;
 *   - AIO_WAIT_WHILE_RUNNING_DEFERRED() may be entered only at a safe
 *     point (it asserts), and its caller holds references to whatever it
 *     uses after it and looks names up again.
 */
#ifndef UTIL_AIO_WAIT_H
#define UTIL_AIO_WAIT_H

#include "util/aio.h"
#include "util/atomic.h"
#include "util/main-loop.h"

typedef struct AioWait {
    /* Number of AIO_WAIT_WHILE()s waiting in the main loop.  atomic */
    unsigned num_waiters;
} AioWait;

extern AioWait global_aio_wait;

/*
 * Bracket a wait that polls the main context (called by the macros below):
 * @runs_deferred says whether deferred work may run inside it.  BQL.
 */
void aio_wait_main_begin(bool runs_deferred);
void aio_wait_main_end(bool runs_deferred);

#define AIO_WAIT_WHILE_INTERNAL(ctx, cond, runs_deferred) ({               \
    bool waited_ = false;                                                   \
    AioContext *wait_ctx_ = (ctx);                                          \
    AioWait *wait_ = &global_aio_wait;                                      \
    if (!wait_ctx_ || !in_aio_context_home_thread(wait_ctx_)) {             \
        assert(in_main_thread());                                           \
        wait_ctx_ = main_context();                                         \
    }                                                                       \
    bool wait_main_ = wait_ctx_ == main_context();                          \
    if (wait_main_) {                                                       \
        aio_wait_main_begin(runs_deferred);                                 \
    }                                                                       \
    /* Pairs with smp_mb() in aio_wait_kick(). */                           \
    qatomic_inc(&wait_->num_waiters);                                       \
    smp_mb();                                                               \
    while ((cond)) {                                                        \
        aio_poll(wait_ctx_, true);                                          \
        waited_ = true;                                                     \
    }                                                                       \
    qatomic_dec(&wait_->num_waiters);                                       \
    if (wait_main_) {                                                       \
        aio_wait_main_end(runs_deferred);                                   \
    }                                                                       \
    waited_;                                                                \
})

/*
 * Wait while @cond; deferred work does not run meanwhile (see above).
 * Returns whether it polled at all.
 */
#define AIO_WAIT_WHILE(ctx, cond) AIO_WAIT_WHILE_INTERNAL(ctx, cond, false)

/*
 * Wait in the main loop while @cond, letting deferred work run: for
 * conditions that deferred work itself ends (a job's completion, an
 * export's deletion).  Only at a safe point (it asserts); nodes, exports
 * and jobs may go away meanwhile: hold references, look names up again.
 */
#define AIO_WAIT_WHILE_RUNNING_DEFERRED(cond)                               \
    AIO_WAIT_WHILE_INTERNAL(NULL, cond, true)

/* Set up / tear down the wake-up bottom half; main_loop_init/cleanup. */
void aio_wait_init(AioContext *main_ctx);
void aio_wait_cleanup(void);

/*
 * Wake the main loop if an AIO_WAIT_WHILE() is waiting there.  Call after
 * every change to a condition someone may wait for.  Any thread.
 */
void aio_wait_kick(void);

/*
 * Run @cb(@opaque) in the main loop at the next safe point, after the
 * deferred work queued before it.  Any thread (from another thread it is
 * queued by a main-loop bottom half first).  @name names it in leak
 * reports.
 */
void aio_wait_defer_full(AioBHFunc *cb, void *opaque, const char *name);
#define aio_wait_defer(cb, opaque) aio_wait_defer_full(cb, opaque, #cb)

/*
 * True at a safe point: no main-loop wait that holds back deferred work is
 * in progress.  BQL.
 */
bool aio_wait_at_safe_point(void);

#endif /* UTIL_AIO_WAIT_H */
