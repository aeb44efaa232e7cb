/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * aio_wait_kick(): the waking half of AIO_WAIT_WHILE() (see aio-wait.h for
 * the protocol and its barriers).
 */
#include "util/osdep.h"

#include "util/aio-wait.h"

AioWait global_aio_wait;

/*
 * One persistent bottom half on the main context: scheduling it while it is
 * pending does nothing, so a burst of kicks (one per request completion
 * under I/O) costs no allocation.  Created and deleted by the main loop.
 */
static AioBH *kick_bh;

static void aio_wait_bh(void *opaque)
{
    /* Nothing to do: running makes the waiter's aio_poll() return. */
}

void aio_wait_init(AioContext *main_ctx)
{
    kick_bh = aio_bh_new(main_ctx, aio_wait_bh, NULL);
}

void aio_wait_cleanup(void)
{
    aio_bh_delete(kick_bh);
    kick_bh = NULL;
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
