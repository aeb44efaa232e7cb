/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The AioContext structure and the interface between the generic event
 * loop (async.c: bottom halves, coroutine scheduling, the loop itself;
 * aio-timer.c: timers; aio-context.c: creating and destroying contexts)
 * and its two backends (aio-uring.c, aio-epoll.c).  Private to util/.
 *
 * Ownership: fields marked "home" are touched only by the context's home
 * thread; fields marked "atomic" are shared with other threads and accessed
 * only with util/atomic.h; "immutable" ones are set before the context is
 * first used and never change.
 */
#ifndef UTIL_AIO_INTERNAL_H
#define UTIL_AIO_INTERNAL_H

#include <poll.h>

#include "util/aio.h"
#include "util/thread.h"

typedef struct AioHandler AioHandler;

struct AioHandler {
    AioContext *ctx;                /* immutable */
    int fd;                         /* immutable */
    AioFdHandler *io_read;          /* home */
    AioFdHandler *io_write;         /* home */
    void *opaque;                   /* home */
    const char *name;               /* home */
    /*
     * Removed from the fd table; freed by the outermost aio_poll() once the
     * backend no longer references it (backend->handler_busy()).  home
     */
    bool deleted;
    AioHandler *deleted_next;       /* home: ctx->deleted_handlers */

    /* Backend state, home thread. */
    union {
        struct {
            AioCqeHandler cqe;      /* user_data of the POLL_ADD */
            bool armed;             /* a POLL_ADD is in the kernel */
            bool removing;          /* a POLL_REMOVE for it is queued */
            uint32_t armed_mask;    /* events the POLL_ADD waits for */
        } uring;
        struct {
            uint32_t mask;          /* events registered with epoll */
        } epoll;
    };
};

/* Events the handler wants: POLLIN if io_read, POLLOUT if io_write. */
static inline uint32_t aio_handler_mask(const AioHandler *h)
{
    return (h->io_read ? POLLIN : 0) | (h->io_write ? POLLOUT : 0);
}

typedef struct AioBackend {
    const char *name;
    /* Set up the backend for a new context; ctx->notify_fd exists. */
    bool (*init)(AioContext *ctx, Error **errp);
    void (*cleanup)(AioContext *ctx);
    /*
     * The wanted mask of @h changed, or @h was deleted (h->deleted): bring
     * the kernel's registration in line.  Called from aio_set_fd_handler.
     */
    void (*update_handler)(AioContext *ctx, AioHandler *h);
    /* True while the backend still holds a reference to deleted @h. */
    bool (*handler_busy)(AioContext *ctx, AioHandler *h);
    /* See aio_get_sqe(). */
    struct io_uring_sqe *(*get_sqe)(AioContext *ctx, AioCqeHandler *handler);
    /*
     * Submit queued SQEs, wait up to @timeout_ns (-1: no limit, 0: do not
     * block) for completions or readiness, and dispatch them (CQE callbacks,
     * fd handlers through aio_dispatch_fd(), the notifier through
     * aio_notify_accept()).  Returns true if any callback other than the
     * notifier ran.
     */
    bool (*wait)(AioContext *ctx, int64_t timeout_ns);
    /* Cheap check, for busy polling: would wait(ctx, 0) find anything? */
    bool (*poll_ready)(AioContext *ctx);
} AioBackend;

extern const AioBackend aio_uring_backend;
extern const AioBackend aio_epoll_backend;

struct AioContext {
    char *name;                     /* immutable */
    const AioBackend *backend;      /* immutable */
    int notify_fd;                  /* immutable: eventfd */

    /*
     * Wake-up protocol (see aio_notify() and aio_poll()).
     * sleeping: set by the home thread before it checks for work and
     * blocks.  notified: set by the thread that writes notify_fd, cleared
     * by the home thread when it consumes the write.  atomic
     */
    int sleeping;
    int notified;
    /* Threads between publishing a bottom half and leaving aio_notify(). */
    int notifiers_active;

    /*
     * Bottom halves.  Any thread pushes onto bh_incoming (lock-free stack,
     * atomic); the home thread moves it, reversed, to the tail of the FIFO
     * bh_ready list (home) and runs from its head.
     */
    AioBH *bh_incoming;
    AioBH *bh_ready_head;
    AioBH **bh_ready_tail;
    unsigned bh_count;              /* live non-oneshot BHs; atomic */

    /* Coroutines scheduled by aio_co_schedule(): lock-free stack. atomic */
    Coroutine *co_sched_incoming;
    AioBH *co_schedule_bh;          /* immutable */

    /* fd handlers: fd -> AioHandler.  home */
    GHashTable *fd_handlers;
    AioHandler *deleted_handlers;   /* home */

    /* Armed timers, sorted by deadline.  home */
    AioTimer *timers;
    unsigned timer_count;           /* allocated timers; home */

    int poll_depth;                 /* nesting of aio_poll(); home */
    /* aio_poll_at_outermost_exit()'s hook, NULL if none.  home */
    void (*outermost_exit_fn)(void *opaque);
    void *outermost_exit_opaque;    /* home */

    /* Adaptive polling.  home */
    int64_t poll_ns;
    int64_t poll_max_ns;
    int64_t poll_grow;
    int64_t poll_shrink;
    /* Submit once this many SQEs are queued (0: once per iteration).  home */
    int64_t aio_max_batch;
    /* Blocking waits left before polling may grow again (contended). */
    unsigned poll_backoff;

    /* io_uring backend.  home */
    struct io_uring ring;
    uint64_t notify_buf;            /* target of the eventfd READ */
    AioCqeHandler notify_cqe;
    bool notify_armed;
    /*
     * Completions moved out of the CQ ring, handlers not yet run, oldest
     * first from index cqe_deferred_head (see uring_submit()).  The reap
     * runs them before anything still in the ring.  NULL until needed.
     */
    GArray *cqe_deferred;
    guint cqe_deferred_head;
    /* aio_context_test_busy_on_cq_overflow() and its count. */
    bool test_busy_on_overflow;
    unsigned submit_busy_count;

    /* epoll backend's private state.  home */
    void *epoll;

    /* State of higher layers (see AioContextHooks). */
    void *slots[AIO_SLOT_MAX];
};

/*
 * After running the CQE handler @cb: abort, naming @cb and the BdMutexes
 * it left held, if it returned holding one.  Home.
 */
void aio_cqe_held_abort(AioCqeFunc *cb);
static inline void aio_cqe_assert_none_held(AioCqeFunc *cb)
{
    if (unlikely(bd_mutex_held_count() != 0)) {
        aio_cqe_held_abort(cb);
    }
}

/* Call the handler's callbacks for @revents (POLLIN etc.).  Home. */
bool aio_dispatch_fd(AioContext *ctx, AioHandler *h, uint32_t revents);

/*
 * The backend consumed a write to notify_fd: clear ctx->notified so that
 * the next aio_notify() writes again.  Home.
 */
void aio_notify_accept(AioContext *ctx);

/* Nanoseconds until the first timer fires: -1 if none, 0 if due. */
int64_t aio_timers_deadline_ns(AioContext *ctx, int64_t now);
/* Run expired timers; true if any ran.  Home. */
bool aio_run_timers(AioContext *ctx);
const char *aio_timer_name(AioTimer *timer);

/*
 * Between async.c and aio-context.c, for creating and destroying a
 * context.  All home thread.
 */
/* ctx->co_schedule_bh: enters the coroutines aio_co_schedule() queued. */
void aio_co_schedule_bh(void *opaque);
/* Free the deleted fd handlers that the backend no longer references. */
void aio_free_deleted_handlers(AioContext *ctx);
/*
 * Teardown: free the deleted and cancelled bottom halves of @ctx; abort,
 * naming it, if one is still scheduled or was never deleted.
 */
void aio_bh_check_leaks(AioContext *ctx);
/* Teardown found @what @name still present in @ctx: say so and abort. */
NORETURN void aio_context_leak_abort(AioContext *ctx, const char *what,
                                     const char *name);

#endif /* UTIL_AIO_INTERNAL_H */
