/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The generic part of the AioContext event loop: bottom halves, timers, fd
 * handler bookkeeping, coroutine scheduling, the cross-thread wake-up
 * protocol and aio_poll() itself.  The backends (aio-uring.c, aio-epoll.c)
 * only submit, wait and dispatch; creating and destroying a context is in
 * aio-context.c.
 *
 * Invariants:
 *  - A bottom half is on at most one list at a time, the incoming stack or
 *    the ready FIFO, and is on one exactly while BH_PENDING is set.  Only
 *    the thread that sets BH_PENDING writes its link; only the home thread
 *    clears BH_PENDING, after it has unlinked the BH.
 *  - Bottom halves run in the order they were first scheduled: the incoming
 *    stack is reversed onto the tail of the ready FIFO, and a nested
 *    aio_poll() continues from the head of the same FIFO.
 *  - Memory of a deleted fd handler is freed only by the outermost
 *    aio_poll(), so a nested aio_poll() never frees a handler that an outer
 *    frame is dispatching.
 */
#include "util/osdep.h"

#include "util/aio-internal.h"
#include "util/atomic.h"
#include "util/coroutine-int.h"
#include "util/log.h"
#include "util/thread.h"

enum {
    BH_PENDING   = 1 << 0,   /* on the incoming stack or the ready FIFO */
    BH_SCHEDULED = 1 << 1,   /* run the callback when dequeued */
    BH_ONESHOT   = 1 << 2,   /* free after running */
    BH_DELETED   = 1 << 3,   /* free when dequeued, without running */
};

struct AioBH {
    AioContext *ctx;                /* immutable */
    AioBHFunc *cb;                  /* immutable */
    void *opaque;                   /* immutable */
    const char *name;               /* immutable */
    AioBH *next;                    /* see the invariants above */
    unsigned flags;                 /* atomic */
    AioBH *all_prev, *all_next;     /* registry, under bh_registry_lock */
};


/*
 * Registry of the non-oneshot bottom halves of every context, so that
 * destroying a context can name the ones left behind.  Bottom halves are
 * created and deleted on the control path, never per I/O request.
 */
static BdMutex bh_registry_lock;
static GHashTable *bh_registry TSA_GUARDED_BY(bh_registry_lock);
static pthread_once_t bh_registry_once = PTHREAD_ONCE_INIT;

static void bh_registry_init(void)
{
    bd_mutex_init(&bh_registry_lock);
}

static void bh_registry_add(AioBH *bh)
{
    pthread_once(&bh_registry_once, bh_registry_init);
    bd_mutex_lock(&bh_registry_lock);
    if (!bh_registry) {
        bh_registry = g_hash_table_new(NULL, NULL);
    }
    g_hash_table_add(bh_registry, bh);
    bd_mutex_unlock(&bh_registry_lock);
}

static void bh_registry_remove(AioBH *bh)
{
    bd_mutex_lock(&bh_registry_lock);
    g_hash_table_remove(bh_registry, bh);
    bd_mutex_unlock(&bh_registry_lock);
}

/* --- Current context ----------------------------------------------------- */

CO_TLS(AioContext *, current_ctx)

void aio_context_set_current(AioContext *ctx)
{
    set_current_ctx(ctx);
}

AioContext *aio_get_current_context(void)
{
    return get_current_ctx();
}

bool in_aio_context_home_thread(AioContext *ctx)
{
    return ctx == get_current_ctx();
}

/* --- Wake-up protocol ---------------------------------------------------- */

void aio_notify(AioContext *ctx)
{
    /*
     * Pairs with smp_mb() in aio_poll(): the work our caller queued is
     * visible before we read ctx->sleeping, so either the home thread sees
     * the work before it blocks, or we see it sleeping and wake it.
     */
    smp_mb();
    if (!qatomic_read(&ctx->sleeping)) {
        return;
    }
    if (qatomic_xchg(&ctx->notified, 1)) {
        return;     /* a write is already on its way */
    }
    for (;;) {
        uint64_t one = 1;
        ssize_t ret = write(ctx->notify_fd, &one, sizeof(one));
        if (ret == sizeof(one) || (ret < 0 && errno == EAGAIN)) {
            return; /* EAGAIN: the counter is full, the fd is readable */
        }
        if (ret < 0 && errno != EINTR) {
            error_report("aio_notify(%s): write to eventfd failed: %s",
                         ctx->name, g_strerror(errno));
            abort();
        }
    }
}

void aio_notify_accept(AioContext *ctx)
{
    /*
     * Pairs with the xchg in aio_notify(): a notifier that comes after this
     * store writes the eventfd again.
     */
    qatomic_xchg(&ctx->notified, 0);
}

/* --- Bottom halves ------------------------------------------------------- */

static AioBH *bh_alloc(AioContext *ctx, AioBHFunc *cb, void *opaque,
                       const char *name, unsigned flags)
{
    AioBH *bh = g_new0(AioBH, 1);

    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    bh->name = name;
    bh->flags = flags;
    return bh;
}

/* Set @new_flags and queue @bh unless already queued.  Any thread. */
static void bh_enqueue(AioBH *bh, unsigned new_flags)
{
    AioContext *ctx = bh->ctx;
    unsigned old;

    /*
     * Once the bottom half is visible, its context may run it, and whoever
     * waits for that may destroy the context while we are still in
     * aio_notify() below.  Count ourselves in first: destruction waits for
     * the count to drop (aio_context_destroy()).  The increment is ordered
     * before the push (full barrier), so anyone who learns that the bottom
     * half ran also sees the count.
     */
    qatomic_inc(&ctx->notifiers_active);
    old = qatomic_fetch_or(&bh->flags, BH_PENDING | new_flags);

    if (!(old & BH_PENDING)) {
        AioBH *head = qatomic_read(&ctx->bh_incoming);

        /* We set BH_PENDING, so bh->next is ours until the home thread
         * takes the stack: the successful CAS publishes it. */
        do {
            bh->next = head;
        } while (!__atomic_compare_exchange_n(&ctx->bh_incoming, &head, bh,
                                              true, __ATOMIC_RELEASE,
                                              __ATOMIC_RELAXED));
    }
    aio_notify(ctx);
    /* Pairs with the load-acquire in aio_context_destroy(). */
    qatomic_fetch_dec(&ctx->notifiers_active);
}

AioBH *aio_bh_new_full(AioContext *ctx, AioBHFunc *cb, void *opaque,
                       const char *name)
{
    AioBH *bh = bh_alloc(ctx, cb, opaque, name, 0);

    bh_registry_add(bh);
    return bh;
}

void aio_bh_schedule(AioBH *bh)
{
    bh_enqueue(bh, BH_SCHEDULED);
}

void aio_bh_cancel(AioBH *bh)
{
    qatomic_fetch_and(&bh->flags, ~BH_SCHEDULED);
}

void aio_bh_delete(AioBH *bh)
{
    bh_registry_remove(bh);
    bh_enqueue(bh, BH_DELETED);
}

void aio_bh_schedule_oneshot_full(AioContext *ctx, AioBHFunc *cb,
                                  void *opaque, const char *name)
{
    AioBH *bh = bh_alloc(ctx, cb, opaque, name, BH_ONESHOT);

    bh_enqueue(bh, BH_SCHEDULED);
}

static bool bh_pending(AioContext *ctx)
{
    return ctx->bh_ready_head || qatomic_read(&ctx->bh_incoming);
}

/* Move the incoming stack, in scheduling order, to the ready FIFO. */
static void bh_take_incoming(AioContext *ctx)
{
    AioBH *list = qatomic_xchg(&ctx->bh_incoming, NULL);
    AioBH *fifo = NULL;

    /* The stack is newest first: reverse it. */
    while (list) {
        AioBH *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    if (fifo) {
        *ctx->bh_ready_tail = fifo;
        while (fifo->next) {
            fifo = fifo->next;
        }
        ctx->bh_ready_tail = &fifo->next;
    }
}

static AioBH *bh_pop_ready(AioContext *ctx, unsigned *flags)
{
    AioBH *bh = ctx->bh_ready_head;

    if (!bh) {
        return NULL;
    }
    ctx->bh_ready_head = bh->next;
    if (!ctx->bh_ready_head) {
        ctx->bh_ready_tail = &ctx->bh_ready_head;
    }
    bh->next = NULL;
    /*
     * From here another thread may queue @bh again.  Clearing SCHEDULED
     * before the callback lets the callback reschedule itself.
     */
    *flags = qatomic_fetch_and(&bh->flags,
                               ~(BH_PENDING | BH_SCHEDULED));
    return bh;
}

/*
 * Run the bottom halves that are ready.  BHs scheduled while we run go on
 * the incoming stack and wait for the next call, so this terminates even
 * if a BH keeps rescheduling itself.
 */
static bool aio_bh_poll(AioContext *ctx)
{
    bool progress = false;
    unsigned flags;
    AioBH *bh;

    bh_take_incoming(ctx);
    while ((bh = bh_pop_ready(ctx, &flags))) {
        if (flags & BH_DELETED) {
            g_free(bh);
            continue;
        }
        if (flags & BH_SCHEDULED) {
            /*
             * The callback may delete @bh and then run a nested aio_poll(),
             * which frees it: take what we need afterwards now, and do not
             * touch @bh after the call unless we own it (oneshot).
             */
            const char *name = bh->name;
            bool counts = bh != ctx->co_schedule_bh;

            bh->cb(bh->opaque);
            bd_mutex_assert_none_held(name);
            progress |= counts;
        }
        if (flags & BH_ONESHOT) {
            g_free(bh);
        }
    }
    return progress;
}

/*
 * Teardown of @ctx: free its deleted and cancelled bottom halves, and abort
 * naming any that is still scheduled or was never deleted.  Home.
 */
void aio_bh_check_leaks(AioContext *ctx)
{
    AioBH *bh;
    unsigned flags;
    GHashTableIter iter;
    gpointer key;

    bh_take_incoming(ctx);
    while ((bh = bh_pop_ready(ctx, &flags))) {
        if (flags & BH_DELETED) {
            g_free(bh);
        } else if (flags & BH_SCHEDULED) {
            aio_context_leak_abort(ctx, "scheduled bottom half", bh->name);
        } else if (flags & BH_ONESHOT) {
            g_free(bh);     /* cancelled oneshot */
        }
    }
    pthread_once(&bh_registry_once, bh_registry_init);
    bd_mutex_lock(&bh_registry_lock);
    if (bh_registry) {
        g_hash_table_iter_init(&iter, bh_registry);
        while (g_hash_table_iter_next(&iter, &key, NULL)) {
            bh = key;
            if (bh->ctx == ctx) {
                aio_context_leak_abort(ctx, "bottom half", bh->name);
            }
        }
    }
    bd_mutex_unlock(&bh_registry_lock);
}

/* --- Coroutine scheduling ------------------------------------------------ */

void aio_co_schedule_full(AioContext *ctx, Coroutine *co, const char *who)
{
    const char *prev = qatomic_cmpxchg(&co->scheduled, NULL, who);
    Coroutine *head;

    if (prev) {
        fprintf(stderr, "%s: coroutine %p was already scheduled in '%s'\n",
                who, (void *)co, prev);
        abort();
    }
    /*
     * As in bh_enqueue(): once @co is on the list, a co_schedule_bh that is
     * already pending may run it, and its context may then be destroyed
     * while we still schedule the bottom half.  Count ourselves in first.
     */
    qatomic_inc(&ctx->notifiers_active);
    head = qatomic_read(&ctx->co_sched_incoming);
    do {
        co->sched_next = head;
    } while (!__atomic_compare_exchange_n(&ctx->co_sched_incoming, &head, co,
                                          true, __ATOMIC_RELEASE,
                                          __ATOMIC_RELAXED));
    aio_bh_schedule(ctx->co_schedule_bh);
    /* Pairs with the load-acquire in aio_context_destroy(). */
    qatomic_fetch_dec(&ctx->notifiers_active);
}

void aio_co_schedule_bh(void *opaque)
{
    AioContext *ctx = opaque;
    Coroutine *list = qatomic_xchg(&ctx->co_sched_incoming, NULL);
    Coroutine *fifo = NULL;

    while (list) {
        Coroutine *next = list->sched_next;
        list->sched_next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        Coroutine *co = fifo;

        fifo = co->sched_next;
        /*
         * Clear before entering, so that the coroutine can be scheduled
         * again as soon as it runs.  Pairs with the cmpxchg in
         * aio_co_schedule_full().
         */
        qatomic_store_release(&co->scheduled, NULL);
        co_enter(co);
    }
}

void aio_co_enter(AioContext *ctx, Coroutine *co)
{
    if (ctx != get_current_ctx()) {
        aio_co_schedule(ctx, co);
    } else if (in_coroutine()) {
        co_wakeup_later(co);
    } else {
        co_enter(co);
    }
}

void aio_co_wake(Coroutine *co)
{
    AioContext *ctx = qatomic_load_acquire(&co->ctx);

    assert(ctx);
    aio_co_enter(ctx, co);
}

typedef struct RescheduleData {
    AioContext *new_ctx;
    Coroutine *co;
} RescheduleData;

static void co_reschedule_bh(void *opaque)
{
    RescheduleData *data = opaque;

    aio_co_schedule(data->new_ctx, data->co);
}

void coroutine_fn aio_co_reschedule_self(AioContext *new_ctx)
{
    AioContext *old_ctx = get_current_ctx();
    RescheduleData data = { .new_ctx = new_ctx, .co = co_self() };

    assert(data.co);
    if (old_ctx == new_ctx) {
        return;
    }
    /*
     * The target thread must not enter us before we have yielded here:
     * schedule from a bottom half of our own context, which runs only
     * after the yield.
     */
    aio_bh_schedule_oneshot(old_ctx, co_reschedule_bh, &data);
    co_yield();
    assert(get_current_ctx() == new_ctx);
}

/* --- fd handlers --------------------------------------------------------- */

void aio_set_fd_handler_full(AioContext *ctx, int fd, AioFdHandler *io_read,
                             AioFdHandler *io_write, void *opaque,
                             const char *name)
{
    AioHandler *h = g_hash_table_lookup(ctx->fd_handlers, GINT_TO_POINTER(fd));

    assert(in_aio_context_home_thread(ctx) || !get_current_ctx());
    if (!io_read && !io_write) {
        if (!h) {
            return;
        }
        g_hash_table_remove(ctx->fd_handlers, GINT_TO_POINTER(fd));
        h->deleted = true;
        h->io_read = NULL;
        h->io_write = NULL;
        h->deleted_next = ctx->deleted_handlers;
        ctx->deleted_handlers = h;
        ctx->backend->update_handler(ctx, h);
        return;
    }
    if (!h) {
        h = g_new0(AioHandler, 1);
        h->ctx = ctx;
        h->fd = fd;
        g_hash_table_insert(ctx->fd_handlers, GINT_TO_POINTER(fd), h);
    }
    h->io_read = io_read;
    h->io_write = io_write;
    h->opaque = opaque;
    h->name = name;
    ctx->backend->update_handler(ctx, h);
}

bool aio_dispatch_fd(AioContext *ctx, AioHandler *h, uint32_t revents)
{
    bool progress = false;

    if (!h->deleted && h->io_read &&
        (revents & (POLLIN | POLLHUP | POLLERR))) {
        h->io_read(h->opaque);
        bd_mutex_assert_none_held(h->name);
        progress = true;
    }
    if (!h->deleted && h->io_write &&
        (revents & (POLLOUT | POLLHUP | POLLERR))) {
        h->io_write(h->opaque);
        bd_mutex_assert_none_held(h->name);
        progress = true;
    }
    return progress;
}

void aio_free_deleted_handlers(AioContext *ctx)
{
    AioHandler **p = &ctx->deleted_handlers;

    while (*p) {
        AioHandler *h = *p;

        if (ctx->backend->handler_busy(ctx, h)) {
            p = &h->deleted_next;
            continue;
        }
        *p = h->deleted_next;
        g_free(h);
    }
}

/* --- SQEs ---------------------------------------------------------------- */

void aio_cqe_held_abort(AioCqeFunc *cb)
{
    char where[64];

    /* CQE handlers have no name: the address is for addr2line. */
    snprintf(where, sizeof(where), "CQE handler %p", (void *)(uintptr_t)cb);
    bd_mutex_assert_none_held(where);
}

struct io_uring_sqe *aio_get_sqe(AioContext *ctx, AioCqeHandler *handler)
{
    assert(in_aio_context_home_thread(ctx));
    return ctx->backend->get_sqe(ctx, handler);
}

typedef struct CoSqe {
    AioCqeHandler handler;
    Coroutine *co;
    int res;
    uint32_t flags;
} CoSqe;

static void co_sqe_complete(AioCqeHandler *handler, int res, uint32_t flags)
{
    CoSqe *req = container_of(handler, CoSqe, handler);

    req->res = res;
    req->flags = flags;
    /* The CQE arrives on the ring of the submitting thread, which is the
     * coroutine's own context: enter it directly. */
    co_enter(req->co);
}

int coroutine_fn aio_co_submit_sqe(AioSqePrep *prep, void *opaque,
                                   uint32_t *cqe_flags)
{
    AioContext *ctx = get_current_ctx();
    CoSqe req = { .handler.cb = co_sqe_complete, .co = co_self() };
    struct io_uring_sqe *sqe;

    assert(ctx && req.co);
    sqe = ctx->backend->get_sqe(ctx, &req.handler);
    prep(sqe, opaque);
    io_uring_sqe_set_data(sqe, &req.handler);
    co_yield();
    if (cqe_flags) {
        *cqe_flags = req.flags;
    }
    return req.res;
}

/* --- The loop ------------------------------------------------------------ */

#define POLL_NS_START 4000
/*
 * A poll that got the CPU for less than half of its wall-clock time was
 * preempted: the CPU is oversubscribed, and spinning takes it from the
 * threads that would produce the very work we poll for (on a small
 * machine, the client).  Polling then stops for this many blocking waits.
 */
#define POLL_CONTENDED_BACKOFF 1024

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void adjust_poll_time(AioContext *ctx, int64_t block_ns)
{
    if (ctx->poll_backoff) {
        ctx->poll_backoff--;
        return;
    }
    if (block_ns <= ctx->poll_ns) {
        return;     /* polling longer would have caught it: keep */
    }
    if (block_ns > ctx->poll_max_ns) {
        /* Waits are long: spinning only burns CPU. */
        ctx->poll_ns /= ctx->poll_shrink;
        if (ctx->poll_ns < POLL_NS_START) {
            ctx->poll_ns = 0;
        }
    } else if (ctx->poll_ns < ctx->poll_max_ns) {
        int64_t ns = ctx->poll_ns ? ctx->poll_ns * ctx->poll_grow
                                  : POLL_NS_START;
        ctx->poll_ns = MIN(ns, ctx->poll_max_ns);
    }
}

/* Spin for up to ctx->poll_ns; true if something became ready. */
static bool aio_busy_poll(AioContext *ctx, int64_t timeout_ns)
{
    int64_t limit = ctx->poll_ns;
    int64_t start = get_clock_ns();
    int64_t cpu_start = thread_cpu_ns();
    bool ready = false;

    if (timeout_ns >= 0 && timeout_ns < limit) {
        limit = timeout_ns;
    }
    do {
        if (qatomic_read(&ctx->bh_incoming) ||
            ctx->backend->poll_ready(ctx)) {
            ready = true;
            break;
        }
    } while (get_clock_ns() < start + limit);
    if (2 * (thread_cpu_ns() - cpu_start) < get_clock_ns() - start) {
        /* Preempted while spinning: see POLL_CONTENDED_BACKOFF. */
        ctx->poll_ns = 0;
        ctx->poll_backoff = POLL_CONTENDED_BACKOFF;
    }
    return ready;
}

bool aio_poll(AioContext *ctx, bool blocking)
{
    bool progress = false;
    int64_t timeout = 0;
    int64_t block_start = 0;

    assert(in_aio_context_home_thread(ctx));
    ctx->poll_depth++;

    if (blocking && !bh_pending(ctx)) {
        timeout = aio_timers_deadline_ns(ctx, get_clock_ns());
    }
    if (timeout != 0 && ctx->poll_ns > 0 && aio_busy_poll(ctx, timeout)) {
        timeout = 0;
    }
    if (timeout != 0) {
        qatomic_set(&ctx->sleeping, 1);
        /*
         * Pairs with smp_mb() in aio_notify(): either we see the work a
         * notifier queued, or it sees ctx->sleeping and writes notify_fd.
         */
        smp_mb();
        if (qatomic_read(&ctx->bh_incoming)) {
            timeout = 0;
        }
        if (ctx->poll_max_ns) {
            block_start = get_clock_ns();
        }
    }

    progress |= ctx->backend->wait(ctx, timeout);

    if (timeout != 0) {
        qatomic_set(&ctx->sleeping, 0);
        if (ctx->poll_max_ns) {
            adjust_poll_time(ctx, get_clock_ns() - block_start);
        }
    }

    progress |= aio_run_timers(ctx);
    progress |= aio_bh_poll(ctx);

    if (--ctx->poll_depth == 0) {
        void (*fn)(void *opaque) = ctx->outermost_exit_fn;

        if (ctx->deleted_handlers) {
            aio_free_deleted_handlers(ctx);
        }
        if (fn) {
            /* Cleared first: @fn may set it again (from a nested loop). */
            ctx->outermost_exit_fn = NULL;
            fn(ctx->outermost_exit_opaque);
        }
    }
    return progress;
}

void aio_poll_until_idle(AioContext *ctx)
{
    bool progress;

    assert(in_aio_context_home_thread(ctx));
    /*
     * aio_poll()'s result alone is not enough: aio_bh_poll() does not count
     * co_schedule_bh as progress, so an iteration that only entered
     * scheduled coroutines returns false even if one of them scheduled
     * another.  Keep going while work is queued, whatever was counted.
     * (Counting co_schedule_bh would change aio_poll()'s contract for
     * every caller; only teardown needs "until idle".)
     */
    do {
        progress = aio_poll(ctx, false);
    } while (progress || bh_pending(ctx) ||
             qatomic_read(&ctx->co_sched_incoming));
}

int aio_poll_depth(AioContext *ctx)
{
    assert(in_aio_context_home_thread(ctx));
    return ctx->poll_depth;
}

void aio_poll_at_outermost_exit(AioContext *ctx, void (*fn)(void *opaque),
                                void *opaque)
{
    assert(in_aio_context_home_thread(ctx));
    assert(ctx->poll_depth > 0);
    assert(!ctx->outermost_exit_fn ||
           (ctx->outermost_exit_fn == fn &&
            ctx->outermost_exit_opaque == opaque));
    ctx->outermost_exit_fn = fn;
    ctx->outermost_exit_opaque = opaque;
}
