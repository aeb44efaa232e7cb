/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * aio=native for the file driver: reads and writes through libaio, with
 * one io_context_t per AioContext, created on the first request there
 * (or at open, to fail early) and destroyed with the context.
 *
 * A request submits one iocb on the calling thread's io_context and
 * yields; the kernel signals completions on an eventfd whose handler in
 * the same thread reaps them and wakes the requests.  At most
 * LAIO_MAX_EVENTS requests are in flight per context; more wait in a
 * queue.  Only O_DIRECT makes io_submit() asynchronous, so file-posix.c
 * refuses aio=native without cache.direct=on.
 *
 * Invariants: every field of a LaioState is touched only in its
 * context's home thread; a context is destroyed only with no request in
 * flight (it dies drained).
 */
#include "util/osdep.h"

#include <libaio.h>
#include <sys/eventfd.h>

#include "block/drivers/drivers.h"
#include "block/drivers/file-posix-int.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

#define LAIO_MAX_EVENTS 256

/*
 * The libaio state of one AioContext, created on first use there and
 * stored in its AIO_SLOT_LINUX_AIO slot.  Every field is touched only in
 * that context's home thread.
 */
struct LaioState {
    AioContext *ctx;
    io_context_t io_ctx;
    int efd;                    /* eventfd the kernel signals completions on */
    unsigned in_flight;         /* submitted, not yet completed */
    CoQueue slot_waiters;       /* requests waiting for in_flight to drop */
};

typedef struct LaioReq {
    struct iocb iocb;
    Coroutine *co;
    long ret;
} LaioReq;

static void laio_completion_cb(void *opaque)
{
    LaioState *s = opaque;
    struct io_event events[64];
    struct timespec no_wait = { 0 };
    uint64_t count;
    int n;

    /* Consume the count first: a completion after this re-arms it. */
    if (read(s->efd, &count, sizeof(count)) != sizeof(count)) {
        return;     /* EAGAIN: already consumed by an earlier call */
    }
    do {
        n = io_getevents(s->io_ctx, 0, G_N_ELEMENTS(events), events,
                         &no_wait);
        for (int i = 0; i < n; i++) {
            LaioReq *req = container_of(events[i].obj, LaioReq, iocb);

            req->ret = (long)events[i].res;
            s->in_flight--;
            co_queue_next(&s->slot_waiters);
            aio_co_wake(req->co);
        }
    } while (n == G_N_ELEMENTS(events) || n == -EINTR);
}

static void laio_free(LaioState *s)
{
    aio_set_fd_handler(s->ctx, s->efd, NULL, NULL, NULL);
    io_destroy(s->io_ctx);
    close(s->efd);
    g_free(s);
}

/* The calling thread's libaio state, created if need be.  Home thread. */
int laio_get(AioContext *ctx, LaioState **out)
{
    LaioState *s = aio_context_get_slot(ctx, AIO_SLOT_LINUX_AIO);
    int ret;

    if (s) {
        *out = s;
        return 0;
    }
    s = g_new0(LaioState, 1);
    s->ctx = ctx;
    co_queue_init(&s->slot_waiters);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        ret = -errno;
        g_free(s);
        return ret;
    }
    ret = io_setup(LAIO_MAX_EVENTS, &s->io_ctx);
    if (ret < 0) {
        close(s->efd);
        g_free(s);
        return ret;
    }
    aio_set_fd_handler(ctx, s->efd, laio_completion_cb, NULL, s);
    aio_context_set_slot(ctx, AIO_SLOT_LINUX_AIO, s);
    *out = s;
    return 0;
}

int coroutine_fn laio_co_submit(FileIo *io)
{
    LaioReq req = { .co = co_self() };
    struct iocb *iocbs[1] = { &req.iocb };
    LaioState *s;
    int ret;

    ret = laio_get(aio_get_current_context(), &s);
    if (ret < 0) {
        return ret;
    }
    while (s->in_flight >= LAIO_MAX_EVENTS) {
        /* Every user of the queue runs in this thread: no lock. */
        co_queue_wait(&s->slot_waiters, NULL);
    }
    if (io->op == FILE_OP_READ) {
        io_prep_preadv2(&req.iocb, io->fd, io->iov, io->niov, io->offset,
                        io->rw_flags);
    } else {
        io_prep_pwritev2(&req.iocb, io->fd, io->iov, io->niov, io->offset,
                         io->rw_flags);
    }
    io_set_eventfd(&req.iocb, s->efd);
    do {
        ret = io_submit(s->io_ctx, 1, iocbs);
    } while (ret == -EINTR);
    if (ret != 1) {
        return ret < 0 ? ret : -EIO;
    }
    s->in_flight++;
    co_yield();         /* woken by laio_completion_cb() */
    return req.ret;
}

static void laio_context_created(AioContext *ctx)
{
    /* Nothing: the state is created on first use in the context. */
}

static void laio_context_destroying(AioContext *ctx)
{
    LaioState *s = aio_context_get_slot(ctx, AIO_SLOT_LINUX_AIO);

    if (s) {
        /* Contexts die drained: a request in flight would be a bug. */
        assert(s->in_flight == 0);
        laio_free(s);
        aio_context_set_slot(ctx, AIO_SLOT_LINUX_AIO, NULL);
    }
}

static const AioContextHooks laio_hooks = {
    .created = laio_context_created,
    .destroying = laio_context_destroying,
};

void bdrv_file_init(void)
{
    static bool done;

    GLOBAL_STATE_CODE();
    if (!done) {
        done = true;
        aio_context_add_hooks(&laio_hooks);
    }
}
