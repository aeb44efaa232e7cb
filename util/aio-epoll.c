/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The epoll backend of AioContext, for kernels or sandboxes where io_uring
 * cannot be set up (or BLOCKD_AIO_BACKEND=epoll).  Callers cannot tell it
 * from the io_uring backend, apart from speed:
 *
 *  - fd handlers are level-triggered epoll registrations;
 *  - the context's eventfd is registered too; reading it accepts the
 *    wake-up (aio_notify_accept());
 *  - SQEs are emulated (aio-epoll-sqe.c): aio_get_sqe() hands out a zeroed
 *    SQE in a heap request, and each wait() first starts the requests
 *    queued since the last one.
 *
 * This file is the loop, the backend interface and the per-fd records.
 * epoll allows one registration per fd, so every fd we watch has one
 * record (EpollFd) whose registered events are the union of what its fd
 * handler wants and what the emulated requests waiting on it want.  The
 * record lives exactly as long as it has a handler or a waiter.  epoll
 * events carry the fd and the record's generation, not a pointer: an event
 * that epoll_wait() returned for a record since freed, or replaced by a
 * newer one for a reused fd number, finds no match and is dropped.  So
 * nothing here ever holds a pointer that a callback could have freed
 * without looking it up again, and handler_busy() never has to defer the
 * freeing of an AioHandler.
 *
 * Everything here runs in the home thread.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sys/epoll.h>

#include "util/aio-epoll-int.h"
#include "util/atomic.h"
#include "util/log.h"

static NORETURN void epoll_fatal(AioContext *ctx, const char *what, int err)
{
    error_report("AioContext '%s': %s failed: %s", ctx->name, what,
                 g_strerror(err));
    abort();
}

/* --- Event masks --------------------------------------------------------- */

static const struct {
    uint32_t poll, epoll;
} event_bits[] = {
    { POLLIN, EPOLLIN },
    { POLLPRI, EPOLLPRI },
    { POLLOUT, EPOLLOUT },
    { POLLERR, EPOLLERR },
    { POLLHUP, EPOLLHUP },
    { POLLRDNORM, EPOLLRDNORM },
    { POLLRDBAND, EPOLLRDBAND },
    { POLLWRNORM, EPOLLWRNORM },
    { POLLWRBAND, EPOLLWRBAND },
    { POLLRDHUP, EPOLLRDHUP },
};

static uint32_t poll_to_epoll(uint32_t events)
{
    uint32_t out = 0;
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(event_bits); i++) {
        if (events & event_bits[i].poll) {
            out |= event_bits[i].epoll;
        }
    }
    return out;
}

static uint32_t epoll_to_poll(uint32_t events)
{
    uint32_t out = 0;
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(event_bits); i++) {
        if (events & event_bits[i].epoll) {
            out |= event_bits[i].poll;
        }
    }
    return out;
}

/* --- Per-fd records ------------------------------------------------------ */

static uint64_t efd_key(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

EpollFd *aio_epoll_fd_lookup(EpollState *es, int fd)
{
    return g_hash_table_lookup(es->fds, GINT_TO_POINTER(fd));
}

/* The record an epoll event was for, if it still exists. */
EpollFd *aio_epoll_fd_lookup_key(EpollState *es, uint64_t key)
{
    EpollFd *efd = aio_epoll_fd_lookup(es, (int)(uint32_t)key);

    return efd && efd->gen == (uint32_t)(key >> 32) ? efd : NULL;
}

EpollFd *aio_epoll_fd_get(EpollState *es, int fd)
{
    EpollFd *efd = aio_epoll_fd_lookup(es, fd);

    if (!efd) {
        efd = g_new0(EpollFd, 1);
        efd->fd = fd;
        efd->gen = es->next_gen++;
        if (es->next_gen == NOTIFY_GEN) {
            es->next_gen++;
        }
        g_queue_init(&efd->waiters);
        g_hash_table_insert(es->fds, GINT_TO_POINTER(fd), efd);
    }
    return efd;
}

/* POLL* events that the handler and the waiters of @efd want. */
static uint32_t efd_interest(EpollFd *efd)
{
    uint32_t events = efd->handler ? aio_handler_mask(efd->handler) : 0;
    GList *l;

    for (l = efd->waiters.head; l; l = l->next) {
        events |= ((EpollReq *)l->data)->wait_events;
    }
    return events;
}

/*
 * Bring the epoll registration of @efd in line with its interest; free the
 * record once it has neither handler nor waiter.  Returns 0 or the -errno
 * of a failed registration.  @efd may be freed: callers look it up again.
 */
int aio_epoll_fd_sync(EpollState *es, EpollFd *efd)
{
    struct epoll_event ev = {
        .events = poll_to_epoll(efd_interest(efd)),
        .data.u64 = efd_key(efd->fd, efd->gen),
    };
    int ret;

    if (!efd->handler && g_queue_is_empty(&efd->waiters)) {
        /* EBADF/ENOENT: the fd was closed, which unregistered it. */
        if (efd->in_epoll) {
            epoll_ctl(es->epfd, EPOLL_CTL_DEL, efd->fd, NULL);
        }
        g_hash_table_remove(es->fds, GINT_TO_POINTER(efd->fd));
        g_free(efd);
        return 0;
    }
    if (efd->in_epoll && ev.events == efd->registered) {
        return 0;
    }
    ret = epoll_ctl(es->epfd, efd->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
                    efd->fd, &ev);
    if (ret < 0 && errno == ENOENT && efd->in_epoll) {
        /* Closed and reopened under the same number since we added it. */
        ret = epoll_ctl(es->epfd, EPOLL_CTL_ADD, efd->fd, &ev);
    } else if (ret < 0 && errno == EEXIST) {
        ret = epoll_ctl(es->epfd, EPOLL_CTL_MOD, efd->fd, &ev);
    }
    if (ret < 0) {
        efd->in_epoll = false;
        return -errno;
    }
    efd->in_epoll = true;
    efd->registered = ev.events;
    return 0;
}

/* --- The backend interface ----------------------------------------------- */

static void epoll_update_handler(AioContext *ctx, AioHandler *h)
{
    EpollState *es = ctx->epoll;
    EpollFd *efd = aio_epoll_fd_lookup(es, h->fd);
    int ret;

    if (h->deleted) {
        /* From here on nothing of ours points to h. */
        h->epoll.mask = 0;
        if (efd && efd->handler == h) {
            efd->handler = NULL;
            aio_epoll_fd_sync(es, efd);
        }
        return;
    }
    if (!efd) {
        efd = aio_epoll_fd_get(es, h->fd);
    }
    efd->handler = h;
    h->epoll.mask = aio_handler_mask(h);
    ret = aio_epoll_fd_sync(es, efd);
    if (ret < 0) {
        warn_report("fd handler '%s' (fd %d): cannot watch it with epoll: %s",
                    h->name, h->fd, g_strerror(-ret));
    }
}

/* Records point to live handlers only (see epoll_update_handler()). */
static bool epoll_handler_busy(AioContext *ctx, AioHandler *h)
{
    return false;
}

static void notify_read(AioContext *ctx)
{
    uint64_t value;
    ssize_t ret;

    do {
        ret = read(ctx->notify_fd, &value, sizeof(value));
    } while (ret < 0 && errno == EINTR);
    if (ret < 0 && errno != EAGAIN) {
        epoll_fatal(ctx, "read of the notification eventfd", errno);
    }
    aio_notify_accept(ctx);
}

static bool epoll_dispatch(AioContext *ctx, EpollState *es,
                           const struct epoll_event *ev)
{
    uint64_t key = ev->data.u64;
    uint32_t revents = epoll_to_poll(ev->events);
    bool progress = false;
    EpollFd *efd;

    if ((uint32_t)(key >> 32) == NOTIFY_GEN) {
        notify_read(ctx);
        return false;
    }
    efd = aio_epoll_fd_lookup_key(es, key);
    if (!efd) {
        return false;   /* gone since epoll_wait() returned */
    }
    if (efd->handler) {
        /*
         * The handler may remove itself (and with it possibly the record);
         * the generic code keeps its memory until the outermost aio_poll()
         * returns, and aio_dispatch_fd() checks h->deleted between calls.
         */
        progress |= aio_dispatch_fd(ctx, efd->handler, revents);
    }
    if (aio_epoll_fd_lookup_key(es, key)) {
        progress |= aio_epoll_run_waiters(es, key, revents);
    }
    return progress;
}

#ifdef CONFIG_EPOLL_PWAIT2
/* Cleared if the kernel lacks epoll_pwait2 (before 5.11).  atomic */
static bool have_epoll_pwait2 = true;
#endif

/* epoll_wait() with a timeout in nanoseconds (-1: forever). */
static int epoll_wait_ns(AioContext *ctx, EpollState *es,
                         struct epoll_event *events, int64_t timeout_ns)
{
    int timeout_ms;
    int n;

#ifdef CONFIG_EPOLL_PWAIT2
    if (timeout_ns > 0 && qatomic_read(&have_epoll_pwait2)) {
        struct timespec ts = {
            .tv_sec = timeout_ns / 1000000000LL,
            .tv_nsec = timeout_ns % 1000000000LL,
        };

        n = epoll_pwait2(es->epfd, events, EPOLL_MAX_EVENTS, &ts, NULL);
        if (n >= 0 || errno != ENOSYS) {
            goto out;
        }
        qatomic_set(&have_epoll_pwait2, false);
    }
#endif
    if (timeout_ns < 0) {
        timeout_ms = -1;
    } else {
        /* Round up: waking before a timer's deadline would spin. */
        timeout_ms = (int)MIN(DIV_ROUND_UP(timeout_ns, 1000000LL),
                              (int64_t)INT_MAX);
    }
    n = epoll_wait(es->epfd, events, EPOLL_MAX_EVENTS, timeout_ms);
#ifdef CONFIG_EPOLL_PWAIT2
out:
#endif
    if (n < 0) {
        if (errno == EINTR) {
            return 0;
        }
        epoll_fatal(ctx, "epoll_wait", errno);
    }
    return n;
}

static bool epoll_wait_backend(AioContext *ctx, int64_t timeout_ns)
{
    EpollState *es = ctx->epoll;
    struct epoll_event events[EPOLL_MAX_EVENTS];
    bool progress;
    int n, i;

    progress = aio_epoll_run_queue(es);
    if (progress || !g_queue_is_empty(&es->submit)) {
        /* Do not sleep on work we have, or on requests not started yet. */
        timeout_ns = 0;
    }
    if (es->n_ready) {
        n = es->n_ready;
        memcpy(events, es->ready, n * sizeof(events[0]));
        es->n_ready = 0;
    } else {
        n = epoll_wait_ns(ctx, es, events, timeout_ns);
    }
    for (i = 0; i < n; i++) {
        progress |= epoll_dispatch(ctx, es, &events[i]);
    }
    return progress;
}

static bool epoll_poll_ready(AioContext *ctx)
{
    EpollState *es = ctx->epoll;
    int n;

    if (es->n_ready || !g_queue_is_empty(&es->submit)) {
        return true;
    }
    /* Keep what we find: level-triggered fds would report it again, but
     * the eventfd's wake-up must not be lost. */
    n = epoll_wait(es->epfd, es->ready, EPOLL_MAX_EVENTS, 0);
    if (n > 0) {
        es->n_ready = n;
        return true;
    }
    return false;
}

static bool epoll_init(AioContext *ctx, Error **errp)
{
    EpollState *es = g_new0(EpollState, 1);
    struct epoll_event ev = {
        .events = EPOLLIN,
        .data.u64 = efd_key(ctx->notify_fd, NOTIFY_GEN),
    };
    int fl;

    es->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (es->epfd < 0) {
        error_setg_errno(errp, errno, "epoll_create1");
        g_free(es);
        return false;
    }
    /* We drain the eventfd with read(): it must not block. */
    fl = fcntl(ctx->notify_fd, F_GETFL);
    if (fl < 0 || fcntl(ctx->notify_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        epoll_ctl(es->epfd, EPOLL_CTL_ADD, ctx->notify_fd, &ev) < 0) {
        error_setg_errno(errp, errno, "registering the notification eventfd");
        close(es->epfd);
        g_free(es);
        return false;
    }
    es->fds = g_hash_table_new(NULL, NULL);
    es->next_gen = NOTIFY_GEN + 1;
    g_queue_init(&es->submit);
    g_queue_init(&es->active);
    ctx->epoll = es;
    return true;
}

static void epoll_cleanup(AioContext *ctx)
{
    EpollState *es = ctx->epoll;

    aio_epoll_check_leaks(ctx, es);
    g_hash_table_destroy(es->fds);
    close(es->epfd);
    g_free(es);
    ctx->epoll = NULL;
}

const AioBackend aio_epoll_backend = {
    .name = "epoll",
    .init = epoll_init,
    .cleanup = epoll_cleanup,
    .update_handler = epoll_update_handler,
    .handler_busy = epoll_handler_busy,
    .get_sqe = aio_epoll_get_sqe,
    .wait = epoll_wait_backend,
    .poll_ready = epoll_poll_ready,
};
