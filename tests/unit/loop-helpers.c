/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Event-loop helpers shared by the unit tests: see loop-helpers.h.
 */
#include "util/osdep.h"

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/main-loop.h"

int stress_iterations(void)
{
    const char *s = getenv("STRESS_ITERATIONS");

    return s ? MAX(atoi(s), 1) : 1;
}

void settle(void)
{
    while (aio_poll(main_context(), false)) {
        /* nothing */
    }
}

typedef struct CtxSync {
    AioContext *ctx;
    bool done;              /* atomic: store-release once the BH has run */
} CtxSync;

static void ctx_sync_bh(void *opaque)
{
    CtxSync *s = opaque;

    g_assert_true(in_aio_context_home_thread(s->ctx));
    /* Pairs with the load-acquire in ctx_sync(). */
    qatomic_store_release(&s->done, true);
    aio_wait_kick();
}

void ctx_sync(AioContext *ctx)
{
    CtxSync s = { .ctx = ctx };

    aio_bh_schedule_oneshot(ctx, ctx_sync_bh, &s);
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&s.done));
}
