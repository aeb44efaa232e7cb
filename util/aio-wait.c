/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * aio_wait_kick(), the waking half of AIO_WAIT_WHILE(); and deferred
 * main-loop work with its safe points (see aio-wait.h for both).
 *
 * Safe points are counted, not inferred from the loop's nesting depth:
 * unsafe_waits is the number of main-loop AIO_WAIT_WHILE()s in progress
 * that hold deferred work back.  Deferred work runs from one persistent
 * bottom half on the main context, in the order it was queued, for as
 * long as unsafe_waits is 0; the end of the last such wait schedules the
 * bottom half again if work is left.  A deferred item may itself wait:
 * while it waits with AIO_WAIT_WHILE() the others stay queued; while it
 * waits with AIO_WAIT_WHILE_RUNNING_DEFERRED() they run inside its wait.
 */
#include "util/osdep.h"

#include "util/aio-wait.h"
#include "util/log.h"

AioWait global_aio_wait;

typedef struct DeferredWork {
    AioBHFunc *cb;
    void *opaque;
    const char *name;
} DeferredWork;

/*
 * One persistent bottom half on the main context: scheduling it while it is
 * pending does nothing, so a burst of kicks (one per request completion
 * under I/O) costs no allocation.  Created and deleted by the main loop.
 */
static AioBH *kick_bh;

/* Runs the deferred queue at safe points.  BQL */
static AioBH *deferred_bh;
static GQueue deferred_queue TSA_GUARDED_BY(bql) = G_QUEUE_INIT;
/* Main-loop waits in progress that hold deferred work back.  BQL */
static unsigned unsafe_waits TSA_GUARDED_BY(bql);

static void aio_wait_bh(void *opaque)
{
    /* Nothing to do: running makes the waiter's aio_poll() return. */
}

static void deferred_run_bh(void *opaque)
{
    bql_assert_held();
    while (unsafe_waits == 0 && !g_queue_is_empty(&deferred_queue)) {
        DeferredWork *w = g_queue_pop_head(&deferred_queue);
        AioBHFunc *cb = w->cb;
        void *cb_opaque = w->opaque;

        g_free(w);
        cb(cb_opaque);
    }
}

void aio_wait_init(AioContext *main_ctx)
{
    kick_bh = aio_bh_new(main_ctx, aio_wait_bh, NULL);
    deferred_bh = aio_bh_new(main_ctx, deferred_run_bh, NULL);
}

void aio_wait_cleanup(void)
{
    bql_assert_held();
    if (!g_queue_is_empty(&deferred_queue)) {
        DeferredWork *w = g_queue_peek_head(&deferred_queue);

        error_report("main loop torn down with deferred work pending: %s "
                     "(%u in all)", w->name,
                     g_queue_get_length(&deferred_queue));
        abort();
    }
    aio_bh_delete(kick_bh);
    kick_bh = NULL;
    aio_bh_delete(deferred_bh);
    deferred_bh = NULL;
}

void aio_wait_kick(void)
{
    /*
     * Pairs with smp_mb() in AIO_WAIT_WHILE(): our caller's write to the
     * condition is ordered before the read of num_waiters.
     */
    smp_mb();
    if (qatomic_read(&global_aio_wait.num_waiters)) {
        aio_bh_schedule(kick_bh);
    }
}

/* --- Deferred work and safe points --------------------------------------- */

bool aio_wait_at_safe_point(void)
{
    bql_assert_held();
    return unsafe_waits == 0;
}

static void deferred_kick(void) TSA_REQUIRES(bql)
{
    if (unsafe_waits == 0 && !g_queue_is_empty(&deferred_queue)) {
        aio_bh_schedule(deferred_bh);
    }
}

static void deferred_enqueue(DeferredWork *w) TSA_REQUIRES(bql)
{
    g_queue_push_tail(&deferred_queue, w);
    deferred_kick();
}

/* Queues work deferred from another thread, in the main loop. */
static void deferred_enqueue_bh(void *opaque)
{
    bql_assert_held();
    deferred_enqueue(opaque);
}

void aio_wait_defer_full(AioBHFunc *cb, void *opaque, const char *name)
{
    DeferredWork *w = g_new(DeferredWork, 1);

    w->cb = cb;
    w->opaque = opaque;
    w->name = name;
    if (!in_main_thread()) {
        /*
         * Bottom halves of one context run in the order they were
         * scheduled, so work deferred from one thread keeps its order.
         */
        aio_bh_schedule_oneshot_full(main_context(), deferred_enqueue_bh, w,
                                     name);
        return;
    }
    bql_assert_held();
    deferred_enqueue(w);
}

void aio_wait_main_begin(bool runs_deferred)
{
    bql_assert_held();
    if (!runs_deferred) {
        unsafe_waits++;
        return;
    }
    if (unsafe_waits != 0) {
        /*
         * The work this wait needs is held back by a wait further out,
         * which would then wait for ever; and letting it run would free
         * what that outer wait holds.
         */
        error_report("AIO_WAIT_WHILE_RUNNING_DEFERRED() inside %u wait(s) "
                     "that hold deferred work back", unsafe_waits);
        abort();
    }
    deferred_kick();
}

void aio_wait_main_end(bool runs_deferred)
{
    bql_assert_held();
    if (!runs_deferred) {
        assert(unsafe_waits > 0);
        unsafe_waits--;
        deferred_kick();
    }
}
