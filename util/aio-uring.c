/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The io_uring backend of AioContext: one ring per context carries
 * everything the loop waits for.
 *
 *  - SQEs from aio_get_sqe() accumulate in the submission queue and go to
 *    the kernel with the wait of the next loop iteration, in a single
 *    io_uring_enter() (io_uring_submit_and_wait_timeout(), whose timeout
 *    is the nearest timer deadline); or, with aio-max-batch, as soon as
 *    that many are queued.
 *  - fd handlers are one-shot POLL_ADDs whose user_data is the handler.
 *    When one completes, the handler runs and the poll is re-armed if the
 *    handler is still registered: a still-ready fd completes again at once,
 *    which gives level-triggered semantics.  Changing the event mask or
 *    removing the handler queues a POLL_REMOVE; the handler's memory lives
 *    until the cancelled poll's CQE has come back.
 *  - The context's eventfd has a READ outstanding at all times; its
 *    completion is the cross-thread wake-up.
 *  - Completion handlers run only from the loop's reap (uring_wait()),
 *    never from aio_get_sqe(): when submission needs room in a full CQ
 *    ring, the completions are moved to a per-context list and their
 *    handlers run from the next reap, in order, before newer ones.
 *
 * The ring is created with IORING_SETUP_SINGLE_ISSUER where the kernel has
 * it: only the home thread ever submits (see aio_get_sqe()).
 *
 * Everything here runs in the home thread.
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "util/aio-internal.h"
#include "util/atomic.h"
#include "util/log.h"

#define RING_ENTRIES 512

static void notify_complete(AioCqeHandler *handler, int res, uint32_t flags);
static void poll_complete(AioCqeHandler *handler, int res, uint32_t flags);

static NORETURN void ring_fatal(AioContext *ctx, const char *what, int ret)
{
    error_report("AioContext '%s': %s failed: %s", ctx->name, what,
                 g_strerror(-ret));
    abort();
}

/* A completion taken out of the CQ ring whose handler has not run yet. */
typedef struct DeferredCqe {
    AioCqeHandler *handler;
    int res;
    uint32_t flags;
} DeferredCqe;

/*
 * Empty the CQ ring, and the kernel's overflow list behind it, into
 * ctx->cqe_deferred without running a single handler: the reap runs them
 * later, in order, before any completion that arrives after this.
 */
static void uring_defer_cqes(AioContext *ctx)
{
    struct io_uring_cqe *cqe;

    if (!ctx->cqe_deferred) {
        ctx->cqe_deferred = g_array_new(false, false, sizeof(DeferredCqe));
    }
    /* io_uring_peek_cqe() flushes the kernel's overflow list when needed. */
    while (io_uring_peek_cqe(&ctx->ring, &cqe) == 0) {
        DeferredCqe d = {
            .handler = io_uring_cqe_get_data(cqe),
            .res = cqe->res,
            .flags = cqe->flags,
        };

        io_uring_cqe_seen(&ctx->ring, cqe);
        if (d.handler) {
            g_array_append_val(ctx->cqe_deferred, d);
        }
    }
}

/* Take the oldest deferred completion into *@d; false if there is none. */
static bool uring_pop_deferred(AioContext *ctx, DeferredCqe *d)
{
    GArray *a = ctx->cqe_deferred;

    if (!a || ctx->cqe_deferred_head == a->len) {
        return false;
    }
    *d = g_array_index(a, DeferredCqe, ctx->cqe_deferred_head++);
    if (ctx->cqe_deferred_head == a->len) {
        g_array_set_size(a, 0);
        ctx->cqe_deferred_head = 0;
    }
    return true;
}

static bool uring_have_deferred(AioContext *ctx)
{
    return ctx->cqe_deferred &&
           ctx->cqe_deferred_head < ctx->cqe_deferred->len;
}

/*
 * Submit what is queued; deal with a full completion queue.  Called from
 * aio_get_sqe(), so it must not run completion handlers: a caller may be
 * between two steps of its own state change, or hold a lock that a
 * handler takes.
 */
static void uring_submit(AioContext *ctx)
{
    for (;;) {
        int ret;

        if (unlikely(ctx->test_busy_on_overflow) &&
            (IO_URING_READ_ONCE(*ctx->ring.sq.kflags) &
             IORING_SQ_CQ_OVERFLOW)) {
            ret = -EBUSY;       /* aio_context_test_busy_on_cq_overflow() */
        } else {
            ret = io_uring_submit(&ctx->ring);
        }
        if (ret >= 0) {
            return;
        }
        if (ret == -EINTR) {
            continue;
        }
        if (ret == -EBUSY || ret == -EAGAIN) {
            /*
             * The kernel will not take more submissions until we consume
             * completions.  Consume them, but defer their handlers to the
             * loop's reap.
             */
            ctx->submit_busy_count++;
            uring_defer_cqes(ctx);
            continue;
        }
        ring_fatal(ctx, "io_uring_submit", ret);
    }
}

static struct io_uring_sqe *uring_get_sqe(AioContext *ctx,
                                          AioCqeHandler *handler)
{
    struct io_uring_sqe *sqe;

    if (ctx->aio_max_batch &&
        io_uring_sq_ready(&ctx->ring) >= ctx->aio_max_batch) {
        uring_submit(ctx);
    }
    while (!(sqe = io_uring_get_sqe(&ctx->ring))) {
        uring_submit(ctx);
    }
    io_uring_sqe_set_data(sqe, handler);
    return sqe;
}

static void arm_notify(AioContext *ctx)
{
    struct io_uring_sqe *sqe = uring_get_sqe(ctx, &ctx->notify_cqe);

    io_uring_prep_read(sqe, ctx->notify_fd, &ctx->notify_buf,
                       sizeof(ctx->notify_buf), 0);
    ctx->notify_armed = true;
}

static void notify_complete(AioCqeHandler *handler, int res, uint32_t flags)
{
    AioContext *ctx = container_of(handler, AioContext, notify_cqe);

    ctx->notify_armed = false;
    if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
        ring_fatal(ctx, "read of the notification eventfd", res);
    }
    aio_notify_accept(ctx);
}

static bool uring_init(AioContext *ctx, Error **errp)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    struct io_uring_params params;
    int ret = -EINVAL;
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(flag_sets); i++) {
        memset(&params, 0, sizeof(params));
        params.flags = flag_sets[i];
        ret = io_uring_queue_init_params(RING_ENTRIES, &ctx->ring, &params);
        if (ret != -EINVAL) {
            break;
        }
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "io_uring_queue_init");
        return false;
    }
    if (!(params.features & IORING_FEAT_NODROP)) {
        warn_report_once("io_uring without IORING_FEAT_NODROP: completions "
                         "may be lost under overload");
    }

    /*
     * io_uring honours O_NONBLOCK and would fail the READ with -EAGAIN
     * instead of waiting: the ring's eventfd must block.
     */
    if (fcntl(ctx->notify_fd, F_SETFL,
              fcntl(ctx->notify_fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        error_setg_errno(errp, errno, "fcntl on the notification eventfd");
        io_uring_queue_exit(&ctx->ring);
        return false;
    }
    ctx->notify_cqe.cb = notify_complete;
    arm_notify(ctx);
    return true;
}

static void uring_cleanup(AioContext *ctx)
{
    /* Like completions left in the ring: nobody waits for them any more. */
    if (ctx->cqe_deferred) {
        g_array_free(ctx->cqe_deferred, true);
    }
    io_uring_queue_exit(&ctx->ring);
}

static void arm_poll(AioContext *ctx, AioHandler *h, uint32_t mask)
{
    struct io_uring_sqe *sqe;

    h->uring.cqe.cb = poll_complete;
    sqe = uring_get_sqe(ctx, &h->uring.cqe);
    io_uring_prep_poll_add(sqe, h->fd, mask);
    h->uring.armed = true;
    h->uring.armed_mask = mask;
}

static void uring_update_handler(AioContext *ctx, AioHandler *h)
{
    uint32_t want = h->deleted ? 0 : aio_handler_mask(h);

    if (!h->uring.armed) {
        if (want) {
            arm_poll(ctx, h, want);
        }
        return;
    }
    if (want == h->uring.armed_mask || h->uring.removing) {
        return;
    }
    /*
     * Cancel the outstanding poll; poll_complete() re-arms with the new
     * mask when its CQE arrives.  The remove is ordered before any re-arm
     * in the submission queue, so it can only hit the old poll.
     */
    io_uring_prep_poll_remove(uring_get_sqe(ctx, NULL),
                              (uint64_t)(uintptr_t)&h->uring.cqe);
    h->uring.removing = true;
}

static void poll_complete(AioCqeHandler *handler, int res, uint32_t flags)
{
    AioHandler *h = container_of(handler, AioHandler, uring.cqe);
    AioContext *ctx = h->ctx;
    uint32_t want;

    h->uring.armed = false;
    h->uring.removing = false;
    if (h->deleted) {
        return;
    }
    if (res > 0) {
        aio_dispatch_fd(ctx, h, (uint32_t)res);
    } else if (res < 0 && res != -ECANCELED) {
        /* e.g. -EBADF: the fd was closed before its handler was removed */
        warn_report("fd handler '%s' (fd %d): poll failed: %s",
                    h->name, h->fd, g_strerror(-res));
        return;
    }
    /* The callback may have changed or removed the handler. */
    want = h->deleted ? 0 : aio_handler_mask(h);
    if (want && !h->uring.armed) {
        arm_poll(ctx, h, want);
    }
}

static bool uring_handler_busy(AioContext *ctx, AioHandler *h)
{
    return h->uring.armed;
}

/*
 * Dispatch completions one at a time, consuming each before its callback
 * runs: a callback may run a nested aio_poll() that reaps the same ring.
 * Deferred completions (uring_submit()) are older than anything in the
 * ring, so they go first; a callback that defers more (by filling the
 * submission queue) appends them behind the ones still waiting, and the
 * next pass of the loop takes them before the ring.
 */
static bool uring_reap(AioContext *ctx)
{
    bool progress = false;

    for (;;) {
        struct io_uring_cqe *cqe;
        DeferredCqe d;
        AioCqeFunc *cb;
        bool counts;

        if (!uring_pop_deferred(ctx, &d)) {
            if (io_uring_peek_cqe(&ctx->ring, &cqe) != 0) {
                break;
            }
            d.handler = io_uring_cqe_get_data(cqe);
            d.res = cqe->res;
            d.flags = cqe->flags;
            io_uring_cqe_seen(&ctx->ring, cqe);
        }
        if (!d.handler) {
            continue;   /* POLL_REMOVE and other fire-and-forget SQEs */
        }
        /* The handler may free itself: read what we need before. */
        cb = d.handler->cb;
        counts = d.handler != &ctx->notify_cqe;
        cb(d.handler, d.res, d.flags);
        aio_cqe_assert_none_held(cb);
        progress |= counts;
    }
    return progress;
}

static bool uring_wait(AioContext *ctx, int64_t timeout_ns)
{
    if (!ctx->notify_armed) {
        arm_notify(ctx);
    }
    if (uring_have_deferred(ctx)) {
        timeout_ns = 0;     /* completions are waiting for their handlers */
    }
    if (timeout_ns == 0) {
        if (io_uring_sq_ready(&ctx->ring)) {
            uring_submit(ctx);
        }
    } else {
        struct __kernel_timespec ts;
        struct io_uring_cqe *cqe;
        int ret;

        if (timeout_ns > 0) {
            ts.tv_sec = timeout_ns / 1000000000LL;
            ts.tv_nsec = timeout_ns % 1000000000LL;
        }
        do {
            ret = io_uring_submit_and_wait_timeout(&ctx->ring, &cqe, 1,
                                                   timeout_ns > 0 ? &ts : NULL,
                                                   NULL);
        } while (ret == -EINTR);
        if (ret < 0 && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY) {
            ring_fatal(ctx, "io_uring_submit_and_wait_timeout", ret);
        }
    }
    return uring_reap(ctx);
}

static bool uring_poll_ready(AioContext *ctx)
{
    if (io_uring_sq_ready(&ctx->ring)) {
        uring_submit(ctx);
    }
    if (uring_have_deferred(ctx) || io_uring_cq_ready(&ctx->ring)) {
        return true;
    }
    /* With COOP_TASKRUN, completions may wait for us to enter the kernel. */
    if (IO_URING_READ_ONCE(*ctx->ring.sq.kflags) & IORING_SQ_TASKRUN) {
        io_uring_get_events(&ctx->ring);
        return io_uring_cq_ready(&ctx->ring) > 0;
    }
    return false;
}

bool aio_context_test_busy_on_cq_overflow(AioContext *ctx, bool on)
{
    assert(in_aio_context_home_thread(ctx));
    if (ctx->backend != &aio_uring_backend) {
        return false;
    }
    ctx->test_busy_on_overflow = on;
    return true;
}

unsigned aio_context_test_submit_busy_count(AioContext *ctx)
{
    assert(in_aio_context_home_thread(ctx));
    return ctx->submit_busy_count;
}

const AioBackend aio_uring_backend = {
    .name = "io_uring",
    .init = uring_init,
    .cleanup = uring_cleanup,
    .update_handler = uring_update_handler,
    .handler_busy = uring_handler_busy,
    .get_sqe = uring_get_sqe,
    .wait = uring_wait,
    .poll_ready = uring_poll_ready,
};
