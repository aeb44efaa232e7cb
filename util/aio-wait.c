/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * aio_wait_kick(): the waking half of AIO_WAIT_WHILE() (see aio-wait.h for
 * the protocol and its barriers).
 */
#include "util/osdep.h"

#include "util/aio-wait.h"

AioWait global_aio_wait;

static void aio_wait_bh(void *opaque)
{
    /* Nothing to do: running makes the waiter's aio_poll() return. */
}

void aio_wait_kick(void)
{
    /*
     * Pairs with smp_mb() in AIO_WAIT_WHILE(): our caller's write to the
     * condition is ordered before the read of num_waiters.
     */
    smp_mb();
    if (qatomic_read(&global_aio_wait.num_waiters)) {
        aio_bh_schedule_oneshot(main_context(), aio_wait_bh, NULL);
    }
}
