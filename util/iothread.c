/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iothreads: each runs one AioContext, created in the thread itself, until
 * a bottom half tells it to stop.  Stopping goes through a bottom half
 * rather than a flag and aio_notify(): a flag set just before the thread
 * blocks would not be seen, while a scheduled bottom half always is.
 *
 * The destroyer is still inside aio_notify() on the context when the
 * thread may already run the stop bottom half; aio_context_destroy() waits
 * for such notifiers (see bh_enqueue()).
 */
#include "util/osdep.h"

#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

struct IOThread {
    char *id;                   /* immutable */
    pthread_t thread;           /* immutable after iothread_create() */
    AioContext *ctx;            /* immutable once started */
    int thread_id;              /* immutable once started */
    /* QEMU's properties: the main loop writes, a BH applies.  atomic */
    int64_t poll_max_ns;
    int64_t poll_grow;
    int64_t poll_shrink;
    int64_t aio_max_batch;
    bool stopping;              /* iothread only */

    /*
     * Start-up handshake between iothread_create() and the thread, under
     * @lock.  (clang cannot check guarded_by on a sibling field in C, so
     * struct fields name their lock in comments.)
     */
    BdMutex lock;
    BdCond cond;
    bool started;               /* lock */
    Error *start_err;           /* lock */
};

/* Home thread: put the properties into effect. */
static void iothread_apply_params(IOThread *t, AioContext *ctx)
{
    aio_context_set_poll_params(ctx, qatomic_read(&t->poll_max_ns),
                                qatomic_read(&t->poll_grow),
                                qatomic_read(&t->poll_shrink));
    aio_context_set_aio_params(ctx, qatomic_read(&t->aio_max_batch));
}

static void *iothread_run(void *opaque)
{
    IOThread *t = opaque;
    Error *err = NULL;
    AioContext *ctx = aio_context_new(t->id, &err);

    if (ctx) {
        aio_context_set_current(ctx);
        iothread_apply_params(t, ctx);
    }
    bd_mutex_lock(&t->lock);
    t->ctx = ctx;
    t->thread_id = (int)gettid();
    t->start_err = err;
    t->started = true;
    bd_cond_signal(&t->cond);
    bd_mutex_unlock(&t->lock);
    if (!ctx) {
        return NULL;
    }

    while (!t->stopping) {
        aio_poll(ctx, true);
    }

    /*
     * Run what was queued before the stop request (completions, bottom
     * halves, scheduled coroutines and whatever they schedule in turn).
     */
    aio_poll_until_idle(ctx);
    aio_context_destroy(ctx);
    aio_context_set_current(NULL);
    return NULL;
}

static void iothread_free(IOThread *t)
{
    bd_cond_destroy(&t->cond);
    bd_mutex_destroy(&t->lock);
    g_free(t->id);
    g_free(t);
}

IOThread *iothread_create(const char *id, int64_t poll_max_ns, Error **errp)
{
    IOThread *t = g_new0(IOThread, 1);
    g_autofree char *name = g_strdup_printf("iothread-%s", id);
    Error *err = NULL;

    t->id = g_strdup(id);
    t->poll_max_ns = poll_max_ns;
    bd_mutex_init(&t->lock);
    bd_cond_init(&t->cond);
    if (!bd_thread_create(&t->thread, name, iothread_run, t, &err)) {
        error_propagate_prepend(errp, err, "iothread '%s': ", id);
        iothread_free(t);
        return NULL;
    }

    bd_mutex_lock(&t->lock);
    while (!t->started) {
        bd_cond_wait(&t->cond, &t->lock);
    }
    err = t->start_err;
    bd_mutex_unlock(&t->lock);

    if (err) {
        bd_thread_join(t->thread);
        error_propagate_prepend(errp, err, "iothread '%s': ", id);
        iothread_free(t);
        return NULL;
    }
    return t;
}

static void iothread_stop_bh(void *opaque)
{
    IOThread *t = opaque;

    t->stopping = true;
}

void iothread_destroy(IOThread *t)
{
    if (!t) {
        return;
    }
    aio_bh_schedule_oneshot(t->ctx, iothread_stop_bh, t);
    bd_thread_join(t->thread);
    iothread_free(t);
}

AioContext *iothread_get_aio_context(IOThread *t)
{
    return t->ctx;
}

const char *iothread_get_id(IOThread *t)
{
    return t->id;
}

int iothread_get_thread_id(IOThread *t)
{
    return t->thread_id;
}

int64_t iothread_get_poll_max_ns(IOThread *t)
{
    return qatomic_read(&t->poll_max_ns);
}

static void iothread_apply_params_bh(void *opaque)
{
    IOThread *t = opaque;

    iothread_apply_params(t, t->ctx);
}

void iothread_set_poll_max_ns(IOThread *t, int64_t poll_max_ns)
{
    qatomic_set(&t->poll_max_ns, poll_max_ns);
    aio_bh_schedule_oneshot(t->ctx, iothread_apply_params_bh, t);
}

void iothread_get_params(IOThread *t, IOThreadParams *params)
{
    params->poll_max_ns = qatomic_read(&t->poll_max_ns);
    params->poll_grow = qatomic_read(&t->poll_grow);
    params->poll_shrink = qatomic_read(&t->poll_shrink);
    params->aio_max_batch = qatomic_read(&t->aio_max_batch);
}

void iothread_set_params(IOThread *t, const IOThreadParams *params)
{
    qatomic_set(&t->poll_max_ns, params->poll_max_ns);
    qatomic_set(&t->poll_grow, params->poll_grow);
    qatomic_set(&t->poll_shrink, params->poll_shrink);
    qatomic_set(&t->aio_max_batch, params->aio_max_batch);
    aio_bh_schedule_oneshot(t->ctx, iothread_apply_params_bh, t);
}
