/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * co_sleep_ns(): suspend the calling coroutine on a one-shot timer of its
 * current AioContext.
 *
 * The timer lives only for the duration of the sleep: created, armed,
 * and freed by the sleeping coroutine once it resumes.  Only the timer's
 * callback wakes the coroutine, so it sleeps at least as long as asked
 * (the loop runs a timer only once its deadline has passed); nothing else
 * may wake a sleeping coroutine.
 */
#include "util/osdep.h"

#include "util/aio.h"
#include "util/co-lock.h"

/*
 * Resume the sleeper from a bottom half, not from inside this callback:
 * the sleeper frees the timer as soon as it runs, and the loop should not
 * have to cope with a timer freed under its own callback.
 */
static void co_sleep_cb(void *opaque)
{
    Coroutine *co = opaque;

    aio_co_schedule(co_get_ctx(co), co);
}

void coroutine_fn co_sleep_ns(int64_t ns)
{
    AioContext *ctx = aio_get_current_context();
    Coroutine *self = co_self();
    AioTimer *timer;

    assert(self && ctx);
    timer = aio_timer_new(ctx, co_sleep_cb, self);
    aio_timer_mod_ns(timer, get_clock_ns() + MAX(ns, 0));
    co_yield();
    aio_timer_free(timer);
}
