/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AioContext timers: a list of armed timers per context, sorted by
 * deadline (CLOCK_MONOTONIC ns).  The loop waits no longer than the first
 * deadline and runs the expired timers after each wait.  Timers are
 * few (timeouts, sleeps), so a sorted list beats a heap here.  Everything
 * runs in the context's home thread.
 */
#include "util/osdep.h"

#include "util/aio-internal.h"
#include "util/thread.h"

struct AioTimer {
    AioContext *ctx;                /* immutable */
    AioTimerFunc *cb;               /* immutable */
    void *opaque;                   /* immutable */
    const char *name;               /* immutable */
    int64_t expire_ns;              /* -1 when not armed; home */
    AioTimer *next;                 /* ctx->timers, sorted; home */
};

const char *aio_timer_name(AioTimer *timer)
{
    return timer->name;
}

AioTimer *aio_timer_new_full(AioContext *ctx, AioTimerFunc *cb, void *opaque,
                             const char *name)
{
    AioTimer *t = g_new0(AioTimer, 1);

    t->ctx = ctx;
    t->cb = cb;
    t->opaque = opaque;
    t->name = name;
    t->expire_ns = -1;
    ctx->timer_count++;
    return t;
}

void aio_timer_del(AioTimer *timer)
{
    AioTimer **p;

    if (timer->expire_ns < 0) {
        return;
    }
    for (p = &timer->ctx->timers; *p != timer; p = &(*p)->next) {
        assert(*p);
    }
    *p = timer->next;
    timer->next = NULL;
    timer->expire_ns = -1;
}

void aio_timer_mod_ns(AioTimer *timer, int64_t expire_ns)
{
    AioContext *ctx = timer->ctx;
    AioTimer **p;

    assert(in_aio_context_home_thread(ctx));
    aio_timer_del(timer);
    timer->expire_ns = MAX(expire_ns, 0);
    for (p = &ctx->timers; *p && (*p)->expire_ns <= timer->expire_ns;
         p = &(*p)->next) {
        /* keep FIFO order among equal deadlines */
    }
    timer->next = *p;
    *p = timer;
}

bool aio_timer_pending(AioTimer *timer)
{
    return timer->expire_ns >= 0;
}

void aio_timer_free(AioTimer *timer)
{
    if (!timer) {
        return;
    }
    aio_timer_del(timer);
    timer->ctx->timer_count--;
    g_free(timer);
}

int64_t aio_timers_deadline_ns(AioContext *ctx, int64_t now)
{
    if (!ctx->timers) {
        return -1;
    }
    return MAX(ctx->timers->expire_ns - now, 0);
}

bool aio_run_timers(AioContext *ctx)
{
    bool progress = false;
    int64_t now;

    if (!ctx->timers) {
        return false;
    }
    now = get_clock_ns();
    while (ctx->timers && ctx->timers->expire_ns <= now) {
        AioTimer *t = ctx->timers;

        const char *name = t->name;

        ctx->timers = t->next;
        t->next = NULL;
        t->expire_ns = -1;
        /* The callback may free its own timer: do not touch @t after. */
        t->cb(t->opaque);
        bd_mutex_assert_none_held(name);
        progress = true;
    }
    return progress;
}
