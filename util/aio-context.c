/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The life cycle of an AioContext: choosing its backend, creating it,
 * the hooks and slots through which higher layers keep per-context state,
 * its tunables, and destroying it.  The loop that runs a context is in
 * async.c.
 *
 * Teardown checks lifetimes: destroying a context that still has an fd
 * handler, a timer or a bottom half aborts with that thing's name, so
 * leaks and dangling work are loud.
 */
#include "util/osdep.h"

#include <sched.h>
#include <sys/eventfd.h>

#include "util/aio-internal.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/thread.h"

/* --- Backends and hooks ------------------------------------------------- */

/*
 * Backend selection: io_uring unless BLOCKD_AIO_BACKEND=epoll, or unless
 * setting up a ring fails once, after which every new context uses epoll.
 * Written under backend_lock; read by aio_context_new() in any thread.
 */
static BdMutex backend_lock;
static const AioBackend *default_backend TSA_GUARDED_BY(backend_lock);
static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

static void backend_init(void)
{
    const char *env = getenv("BLOCKD_AIO_BACKEND");

    bd_mutex_init(&backend_lock);
    bd_mutex_lock(&backend_lock);
    default_backend = &aio_uring_backend;
    if (env && !strcmp(env, "epoll")) {
        default_backend = &aio_epoll_backend;
    } else if (env && strcmp(env, "io_uring") && *env) {
        warn_report("BLOCKD_AIO_BACKEND=%s is not 'io_uring' or 'epoll'; "
                    "using io_uring", env);
    }
    bd_mutex_unlock(&backend_lock);
}

/* Registered before any context exists; read-only afterwards. */
#define MAX_HOOKS 4
static const AioContextHooks *context_hooks[MAX_HOOKS];
static unsigned num_context_hooks;

void aio_context_add_hooks(const AioContextHooks *hooks)
{
    assert(num_context_hooks < MAX_HOOKS);
    context_hooks[num_context_hooks++] = hooks;
}

void *aio_context_get_slot(AioContext *ctx, AioContextSlot slot)
{
    return ctx->slots[slot];
}

void aio_context_set_slot(AioContext *ctx, AioContextSlot slot, void *state)
{
    ctx->slots[slot] = state;
}

/* --- Creation and destruction ------------------------------------------- */

AioContext *aio_context_new(const char *name, Error **errp)
{
    AioContext *ctx = g_new0(AioContext, 1);
    const AioBackend *backend;
    Error *local_err = NULL;

    pthread_once(&backend_once, backend_init);
    ctx->name = g_strdup(name);
    ctx->bh_ready_tail = &ctx->bh_ready_head;
    ctx->fd_handlers = g_hash_table_new(NULL, NULL);
    ctx->poll_grow = 2;
    ctx->poll_shrink = 2;
    ctx->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ctx->notify_fd < 0) {
        error_setg_errno(errp, errno, "AioContext '%s': eventfd", name);
        goto fail;
    }

    bd_mutex_lock(&backend_lock);
    backend = default_backend;
    bd_mutex_unlock(&backend_lock);

    if (!backend->init(ctx, &local_err)) {
        if (backend != &aio_uring_backend) {
            error_propagate(errp, local_err);
            goto fail;
        }
        /* io_uring is unusable here: fall back for good, and say so once. */
        warn_report_once("io_uring unavailable (%s); using epoll for the "
                         "event loop", error_get_pretty(local_err));
        error_free(local_err);
        backend = &aio_epoll_backend;
        bd_mutex_lock(&backend_lock);
        default_backend = backend;
        bd_mutex_unlock(&backend_lock);
        if (!backend->init(ctx, errp)) {
            goto fail;
        }
    }
    ctx->backend = backend;
    ctx->co_schedule_bh = aio_bh_new(ctx, aio_co_schedule_bh, ctx);
    for (unsigned i = 0; i < num_context_hooks; i++) {
        if (context_hooks[i]->created) {
            context_hooks[i]->created(ctx);
        }
    }
    return ctx;

fail:
    if (ctx->notify_fd >= 0) {
        close(ctx->notify_fd);
    }
    g_hash_table_destroy(ctx->fd_handlers);
    g_free(ctx->name);
    g_free(ctx);
    return NULL;
}

void aio_context_leak_abort(AioContext *ctx, const char *what,
                            const char *name)
{
    fprintf(stderr, "AioContext '%s' destroyed with %s '%s' still "
            "present\n", ctx->name, what, name ? name : "?");
    abort();
}

void aio_context_destroy(AioContext *ctx)
{
    GHashTableIter iter;
    gpointer value;

    if (!ctx) {
        return;
    }
    assert(in_aio_context_home_thread(ctx));
    assert(ctx->poll_depth == 0);
    assert(!qatomic_read(&ctx->co_sched_incoming));
    /*
     * A thread that scheduled a bottom half we already ran may still be in
     * aio_notify() on us: wait for it to leave (a few instructions; it
     * cannot block).  Pairs with the decrement in bh_enqueue().  Scheduling
     * new work on a context being destroyed is a bug of the caller.
     */
    while (qatomic_load_acquire(&ctx->notifiers_active)) {
        sched_yield();
    }
    for (unsigned i = num_context_hooks; i-- > 0;) {
        if (context_hooks[i]->destroying) {
            context_hooks[i]->destroying(ctx);
        }
    }

    g_hash_table_iter_init(&iter, ctx->fd_handlers);
    if (g_hash_table_iter_next(&iter, NULL, &value)) {
        aio_context_leak_abort(ctx, "fd handler", ((AioHandler *)value)->name);
    }
    if (ctx->timers) {
        aio_context_leak_abort(ctx, "armed timer", aio_timer_name(ctx->timers));
    }
    if (ctx->timer_count) {
        aio_context_leak_abort(ctx, "timer", NULL);
    }

    aio_bh_delete(ctx->co_schedule_bh);
    aio_bh_check_leaks(ctx);

    /*
     * Let the backend retire removed handlers: a cancelled POLL_ADD still
     * owes us its CQE, which the blocking wait collects.
     */
    aio_free_deleted_handlers(ctx);
    while (ctx->deleted_handlers) {
        ctx->backend->wait(ctx, -1);
        aio_free_deleted_handlers(ctx);
    }
    ctx->backend->cleanup(ctx);
    close(ctx->notify_fd);
    g_hash_table_destroy(ctx->fd_handlers);
    g_free(ctx->name);
    g_free(ctx);
}

/* --- Properties --------------------------------------------------------- */

const char *aio_context_name(AioContext *ctx)
{
    return ctx->name;
}

const char *aio_context_backend_name(AioContext *ctx)
{
    return ctx->backend->name;
}

bool aio_context_uses_io_uring(AioContext *ctx)
{
    return ctx->backend == &aio_uring_backend;
}

void aio_context_set_poll_params(AioContext *ctx, int64_t max_ns,
                                 int64_t grow, int64_t shrink)
{
    ctx->poll_max_ns = MAX(max_ns, 0);
    ctx->poll_grow = grow > 1 ? grow : 2;
    ctx->poll_shrink = shrink > 1 ? shrink : 2;
    ctx->poll_ns = MIN(ctx->poll_ns, ctx->poll_max_ns);
}

int64_t aio_context_get_poll_max_ns(AioContext *ctx)
{
    return ctx->poll_max_ns;
}

void aio_context_get_poll_params(AioContext *ctx, int64_t *max_ns,
                                 int64_t *grow, int64_t *shrink)
{
    *max_ns = ctx->poll_max_ns;
    *grow = ctx->poll_grow;
    *shrink = ctx->poll_shrink;
}

void aio_context_set_aio_params(AioContext *ctx, int64_t max_batch)
{
    ctx->aio_max_batch = MAX(max_batch, 0);
}
