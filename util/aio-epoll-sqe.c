/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SQE emulation for the epoll backend of AioContext (aio-epoll.c), so that
 * users of aio_get_sqe() cannot tell it from io_uring, apart from speed:
 *
 *  - aio_get_sqe() hands out a zeroed SQE inside a heap request
 *    (EpollReq); requests queue until the next wait(), which starts them
 *    in submission order.  Regular files and block devices go to the
 *    thread pool (preadv2, pwritev2, fsync, fdatasync, fallocate); socket
 *    operations, and reads and writes on sockets and non-blocking pipes,
 *    are tried at once with MSG_DONTWAIT and otherwise wait for readiness
 *    of their fd (in its EpollFd record); POLL_ADD waits for readiness.
 *    Results are those io_uring would give: a byte count, a poll mask, or
 *    -errno.
 *  - IOSQE_IO_LINK chains run one request after another; a failure, or a
 *    short transfer where io_uring counts one as failure, completes the
 *    rest of the chain with -ECANCELED (IOSQE_IO_HARDLINK carries on).
 *
 * Ordering: requests on one fd in one direction complete in submission
 * order (a later RECV never overtakes one that waits).  A request's
 * callback runs before the next request of its chain starts, so CQEs of a
 * chain arrive in order; in exchange, a request that waits behind its
 * predecessor cannot be cancelled from that predecessor's callback.
 * IOSQE_IO_DRAIN is accepted and ignored.  Not emulated (complete with
 * -EINVAL): fixed files, provided buffers, multishot requests, cancel
 * flags, and every opcode not listed in req_start().
 *
 * Everything here runs in the home thread, except req_pool_run(), which a
 * pool worker runs on a request that nobody else touches until the pool
 * hands it back (thread_pool_submit() orders both hand-overs).
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "util/aio-epoll-int.h"
#include "util/log.h"
#include "util/thread-pool.h"

static bool req_start(EpollState *es, EpollReq *req);

/* --- Completion ---------------------------------------------------------- */

static bool req_broke_link(EpollReq *req, int res)
{
    return res < 0 || (req->check_short && (size_t)res < req->expected);
}

/* Complete @req and the rest of its chain with -ECANCELED. */
static bool chain_cancel(EpollState *es, EpollReq *req);

/*
 * Deliver @res for @req, free it, and start (or cancel) the next request
 * of its chain.  Returns true if a completion callback ran.
 */
static bool req_complete(EpollState *es, EpollReq *req, int res)
{
    AioCqeHandler *handler = req->handler;
    EpollReq *next = req->link_next;
    bool broke = req_broke_link(req, res) &&
                 !(req->sqe.flags & IOSQE_IO_HARDLINK);
    bool skip = res >= 0 && (req->sqe.flags & IOSQE_CQE_SKIP_SUCCESS);
    bool progress = false;

    g_free(req);
    if (handler && !skip) {
        AioCqeFunc *cb = handler->cb;   /* @handler may free itself */

        cb(handler, res, 0);
        aio_cqe_assert_none_held(cb);
        progress = true;
    }
    if (next) {
        progress |= broke ? chain_cancel(es, next) : req_start(es, next);
    }
    return progress;
}

static bool chain_cancel(EpollState *es, EpollReq *req)
{
    bool progress = false;

    while (req) {
        EpollReq *next = req->link_next;

        req->link_next = NULL;
        progress |= req_complete(es, req, -ECANCELED);
        req = next;
    }
    return progress;
}

/* --- Requests that wait for readiness ----------------------------------- */

/* Stop waiting; the record may go away.  */
static void req_unwait(EpollState *es, EpollReq *req)
{
    EpollFd *efd = req->efd;

    assert(req->state == REQ_FD_WAIT);
    g_queue_unlink(&efd->waiters, &req->fd_link);
    g_queue_unlink(&es->active, &req->link);
    req->efd = NULL;
    aio_epoll_fd_sync(es, efd);
}

/* True if a request already waits on @fd for one of @dir's events. */
static bool fd_dir_busy(EpollState *es, int fd, uint32_t dir)
{
    EpollFd *efd = aio_epoll_fd_lookup(es, fd);
    GList *l;

    if (!efd) {
        return false;
    }
    for (l = efd->waiters.head; l; l = l->next) {
        EpollReq *w = l->data;

        if (w->sqe.opcode != IORING_OP_POLL_ADD && (w->wait_events & dir)) {
            return true;
        }
    }
    return false;
}

/*
 * Park @req until its fd reports one of @events (or an error or hang-up).
 * Returns true if it completed at once (the fd cannot be watched).
 */
static bool req_wait_fd(EpollState *es, EpollReq *req, uint32_t events)
{
    EpollFd *efd = aio_epoll_fd_get(es, req->sqe.fd);
    int ret;

    req->state = REQ_FD_WAIT;
    req->efd = efd;
    req->wait_events = events;
    g_queue_push_tail_link(&efd->waiters, &req->fd_link);
    g_queue_push_tail_link(&es->active, &req->link);
    ret = aio_epoll_fd_sync(es, efd);
    if (ret == 0) {
        return false;
    }
    req_unwait(es, req);
    if (ret == -EPERM) {
        /*
         * Regular files and the like cannot be watched because they never
         * block: io_uring reports them ready for reading and writing.
         */
        ret = req->sqe.opcode == IORING_OP_POLL_ADD ?
              (int)(events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)) :
              -EAGAIN;
    }
    return req_complete(es, req, ret);
}

/*
 * One non-blocking attempt at a socket or stream operation.  Returns the
 * result, or -EAGAIN to wait for readiness.  For RECV and SEND with
 * MSG_WAITALL, progress accumulates in req->done until the whole buffer
 * has moved, the peer is gone or an error occurs.
 */
static int req_attempt(EpollReq *req)
{
    const struct io_uring_sqe *sqe = &req->sqe;
    char *buf = (char *)(uintptr_t)sqe->addr;
    struct iovec *iov = (struct iovec *)(uintptr_t)sqe->addr;
    struct msghdr *msg = (struct msghdr *)(uintptr_t)sqe->addr;
    struct msghdr vmsg = { .msg_iov = iov, .msg_iovlen = sqe->len };
    bool waitall = (sqe->opcode == IORING_OP_RECV ||
                    sqe->opcode == IORING_OP_SEND) &&
                   (sqe->msg_flags & MSG_WAITALL);
    int flags = (int)(sqe->msg_flags & ~MSG_WAITALL) | MSG_DONTWAIT;

    for (;;) {
        ssize_t n;

        switch (sqe->opcode) {
        case IORING_OP_RECV:
            n = recv(sqe->fd, buf + req->done, sqe->len - req->done, flags);
            break;
        case IORING_OP_SEND:
            n = send(sqe->fd, buf + req->done, sqe->len - req->done, flags);
            break;
        case IORING_OP_RECVMSG:
            n = recvmsg(sqe->fd, msg, flags);
            break;
        case IORING_OP_SENDMSG:
            n = sendmsg(sqe->fd, msg, flags);
            break;
        case IORING_OP_READ:
            n = req->is_socket ? recv(sqe->fd, buf, sqe->len, MSG_DONTWAIT)
                               : read(sqe->fd, buf, sqe->len);
            break;
        case IORING_OP_WRITE:
            n = req->is_socket ? send(sqe->fd, buf, sqe->len, MSG_DONTWAIT)
                               : write(sqe->fd, buf, sqe->len);
            break;
        case IORING_OP_READV:
            n = req->is_socket ? recvmsg(sqe->fd, &vmsg, MSG_DONTWAIT)
                               : readv(sqe->fd, iov, (int)sqe->len);
            break;
        case IORING_OP_WRITEV:
            n = req->is_socket ? sendmsg(sqe->fd, &vmsg, MSG_DONTWAIT)
                               : writev(sqe->fd, iov, (int)sqe->len);
            break;
        default:
            g_assert_not_reached();
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return -EAGAIN;
            }
            /* Like io_uring: bytes already moved win over the error. */
            return req->done ? (int)req->done : -errno;
        }
        if (waitall && n > 0 && req->done + n < sqe->len) {
            req->done += n;
            continue;
        }
        return (int)(req->done + n);
    }
}

/* Did the caller ask for -EAGAIN rather than a wait? */
static bool req_nowait(EpollReq *req)
{
    switch (req->sqe.opcode) {
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
        return req->sqe.msg_flags & MSG_DONTWAIT;
    default:
        return req->sqe.rw_flags & RWF_NOWAIT;
    }
}

static uint32_t req_direction(EpollReq *req)
{
    switch (req->sqe.opcode) {
    case IORING_OP_RECV:
    case IORING_OP_RECVMSG:
    case IORING_OP_READ:
    case IORING_OP_READV:
        return POLLIN;
    default:
        return POLLOUT;
    }
}

/* Start a socket or stream operation: now if possible, else on readiness. */
static bool req_start_stream(EpollState *es, EpollReq *req)
{
    uint32_t dir = req_direction(req);
    int res;

    /* Do not overtake a request that already waits in this direction. */
    if (fd_dir_busy(es, req->sqe.fd, dir)) {
        return req_wait_fd(es, req, dir);
    }
    res = req_attempt(req);
    if (res != -EAGAIN || req_nowait(req)) {
        return req_complete(es, req, res);
    }
    return req_wait_fd(es, req, dir);
}

/*
 * Readiness @revents for the record tagged @key: retry its waiters in
 * order.  A waiter that must go on waiting blocks its direction for the
 * ones behind it.  Callbacks may change the list or free the record, so
 * after each completion we look the record up again and rescan from the
 * head; every pass completes a waiter or ends the loop.
 */
bool aio_epoll_run_waiters(EpollState *es, uint64_t key, uint32_t revents)
{
    bool progress = false;
    uint32_t blocked = 0;
    EpollFd *efd;

rescan:
    efd = aio_epoll_fd_lookup_key(es, key);
    if (!efd) {
        return progress;
    }
    for (GList *l = efd->waiters.head; l; l = l->next) {
        EpollReq *req = l->data;
        int res;

        if (req->sqe.opcode == IORING_OP_POLL_ADD) {
            res = (int)(revents & (req->wait_events | POLLERR | POLLHUP));
            if (!res) {
                continue;
            }
        } else {
            uint32_t dir = req->wait_events;

            if (blocked & dir) {
                continue;
            }
            if (!(revents & (dir | POLLERR | POLLHUP))) {
                blocked |= dir;
                continue;
            }
            res = req_attempt(req);
            if (res == -EAGAIN) {
                blocked |= dir;
                continue;
            }
        }
        req_unwait(es, req);
        progress |= req_complete(es, req, res);
        goto rescan;
    }
    return progress;
}

/* --- Requests on the thread pool ---------------------------------------- */

/* Runs in a pool worker.  Returns the result io_uring would give. */
static int req_pool_run(void *opaque)
{
    EpollReq *req = opaque;
    const struct io_uring_sqe *sqe = &req->sqe;
    const struct iovec *iov = (const struct iovec *)(uintptr_t)sqe->addr;
    int iovcnt = (int)sqe->len;
    /* -1: the file position, as io_uring does for offset -1 and streams */
    off_t off = req->stream || sqe->off == (uint64_t)-1 ? -1 : (off_t)sqe->off;
    ssize_t ret;

    if (sqe->opcode == IORING_OP_READ || sqe->opcode == IORING_OP_WRITE) {
        iov = &req->iov;
        iovcnt = 1;
    }
    do {
        switch (sqe->opcode) {
        case IORING_OP_READ:
        case IORING_OP_READV:
            ret = preadv2(sqe->fd, iov, iovcnt, off, sqe->rw_flags);
            break;
        case IORING_OP_WRITE:
        case IORING_OP_WRITEV:
            ret = pwritev2(sqe->fd, iov, iovcnt, off, sqe->rw_flags);
            break;
        case IORING_OP_FSYNC:
            /* io_uring may sync a range; syncing everything is a superset */
            ret = sqe->fsync_flags & IORING_FSYNC_DATASYNC ?
                  fdatasync(sqe->fd) : fsync(sqe->fd);
            break;
        case IORING_OP_FALLOCATE:
            /* see io_uring_prep_fallocate(): mode in len, length in addr */
            ret = fallocate(sqe->fd, (int)sqe->len, (off_t)sqe->off,
                            (off_t)sqe->addr);
            break;
        default:
            g_assert_not_reached();
        }
    } while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : (int)ret;
}

/* Back from the pool, in the home thread. */
static void req_pool_done(void *opaque, int ret)
{
    EpollReq *req = opaque;
    EpollState *es = req->ctx->epoll;

    assert(req->state == REQ_POOL);
    g_queue_unlink(&es->active, &req->link);
    req_complete(es, req, ret);
}

static bool req_start_pool(EpollState *es, EpollReq *req)
{
    req->state = REQ_POOL;
    g_queue_push_tail_link(&es->active, &req->link);
    thread_pool_submit(req->ctx, req_pool_run, req, req_pool_done);
    return false;
}

/* READ, WRITE, READV, WRITEV: choose by the kind of file. */
static bool req_start_rw(EpollState *es, EpollReq *req)
{
    const struct io_uring_sqe *sqe = &req->sqe;
    struct stat st;
    int fl;

    req->check_short = true;
    if (sqe->opcode == IORING_OP_READ || sqe->opcode == IORING_OP_WRITE) {
        req->iov.iov_base = (void *)(uintptr_t)sqe->addr;
        req->iov.iov_len = sqe->len;
        req->expected = sqe->len;
    } else {
        const struct iovec *iov = (const struct iovec *)(uintptr_t)sqe->addr;
        unsigned i;

        for (i = 0; i < sqe->len; i++) {
            req->expected += iov[i].iov_len;
        }
    }

    if (fstat(sqe->fd, &st) < 0) {
        return req_complete(es, req, -errno);
    }
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
        return req_start_pool(es, req);
    }
    req->stream = true;
    if (S_ISSOCK(st.st_mode)) {
        req->is_socket = true;
        return req_start_stream(es, req);
    }
    /*
     * Pipes, character devices, eventfds: wait for readiness if the file
     * is non-blocking; otherwise let a worker block on it.
     */
    fl = fcntl(sqe->fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) {
        return req_start_stream(es, req);
    }
    return req_start_pool(es, req);
}

/* --- Cancellation -------------------------------------------------------- */

/*
 * Cancel the request whose user_data is @key (only POLL_ADDs if
 * @poll_only).  Returns the cancel's own result: 0, -ENOENT if no such
 * request waits, -EALREADY if it is running on the pool.
 */
static int req_cancel(EpollState *es, uint64_t key, bool poll_only)
{
    if (!key) {
        return -ENOENT;
    }
    for (GList *l = es->active.head; l; l = l->next) {
        EpollReq *req = l->data;
        EpollReq **pp;

        if ((uintptr_t)req->handler == key &&
            (!poll_only || req->sqe.opcode == IORING_OP_POLL_ADD)) {
            if (req->state == REQ_POOL) {
                return -EALREADY;
            }
            req_unwait(es, req);
            req_complete(es, req, -ECANCELED);
            return 0;
        }
        if (poll_only) {
            continue;
        }
        for (pp = &req->link_next; *pp; pp = &(*pp)->link_next) {
            if ((uintptr_t)(*pp)->handler == key) {
                EpollReq *victim = *pp;

                /* Like io_uring: the rest of the chain goes with it. */
                *pp = NULL;
                chain_cancel(es, victim);
                return 0;
            }
        }
    }
    return -ENOENT;
}

/* --- Starting requests --------------------------------------------------- */

/* Start @req.  Returns true if a completion callback ran already. */
static bool req_start(EpollState *es, EpollReq *req)
{
    const struct io_uring_sqe *sqe = &req->sqe;

    if (sqe->flags & (IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT)) {
        return req_complete(es, req, -EINVAL);
    }
    switch (sqe->opcode) {
    case IORING_OP_NOP:
        return req_complete(es, req, 0);
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
        return req_start_rw(es, req);
    case IORING_OP_FSYNC:
    case IORING_OP_FALLOCATE:
        return req_start_pool(es, req);
    case IORING_OP_RECV:
    case IORING_OP_SEND:
        if (sqe->ioprio & IORING_RECV_MULTISHOT) {
            return req_complete(es, req, -EINVAL);
        }
        if (sqe->msg_flags & MSG_WAITALL) {
            req->check_short = true;
            req->expected = sqe->len;
        }
        return req_start_stream(es, req);
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
        if (sqe->ioprio & IORING_RECV_MULTISHOT) {
            return req_complete(es, req, -EINVAL);
        }
        return req_start_stream(es, req);
    case IORING_OP_POLL_ADD:
        if (sqe->len & IORING_POLL_ADD_MULTI) {
            return req_complete(es, req, -EINVAL);
        }
        return req_wait_fd(es, req, sqe->poll32_events);
    case IORING_OP_POLL_REMOVE:
        return req_complete(es, req, req_cancel(es, sqe->addr, true));
    case IORING_OP_ASYNC_CANCEL:
        if (sqe->cancel_flags) {
            return req_complete(es, req, -EINVAL);
        }
        return req_complete(es, req, req_cancel(es, sqe->addr, false));
    default:
        return req_complete(es, req, -EINVAL);
    }
}

static EpollReq *submit_pop(EpollState *es)
{
    GList *l = g_queue_pop_head_link(&es->submit);

    return l ? l->data : NULL;
}

/*
 * Start the requests that were queued when we were called, in order,
 * chains as a whole.  Requests that callbacks queue meanwhile wait for the
 * next call, so a coroutine that keeps submitting cannot starve the loop;
 * a nested wait() (from a callback) continues from the head of the same
 * queue, which keeps the order.  Returns true if a callback ran.
 */
bool aio_epoll_run_queue(EpollState *es)
{
    unsigned budget = es->submit.length;
    bool progress = false;
    EpollReq *head;

    while (budget && (head = submit_pop(es))) {
        EpollReq *tail = head;

        budget--;
        while ((tail->sqe.flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)) &&
               budget && es->submit.head) {
            tail->link_next = submit_pop(es);
            tail = tail->link_next;
            tail->state = REQ_LINKED;
            budget--;
        }
        progress |= req_start(es, head);
    }
    return progress;
}

/* --- The backend's get_sqe() and leak check --------------------------- */

struct io_uring_sqe *aio_epoll_get_sqe(AioContext *ctx,
                                       AioCqeHandler *handler)
{
    EpollState *es = ctx->epoll;
    EpollReq *req = g_new0(EpollReq, 1);

    req->handler = handler;
    req->ctx = ctx;
    req->state = REQ_QUEUED;
    req->link.data = req;
    req->fd_link.data = req;
    req->sqe.user_data = (uint64_t)(uintptr_t)handler;
    g_queue_push_tail_link(&es->submit, &req->link);
    return &req->sqe;
}

/* Requests still queued or in flight are dangling work: say so, loudly. */
void aio_epoll_check_leaks(AioContext *ctx, EpollState *es)
{
    GQueue *queues[] = { &es->submit, &es->active };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(queues); i++) {
        if (!g_queue_is_empty(queues[i])) {
            EpollReq *req = queues[i]->head->data;

            error_report("AioContext '%s' destroyed with %u emulated SQE(s) "
                         "%s (first: opcode %u on fd %d)", ctx->name,
                         queues[i]->length, i ? "in flight" : "not started",
                         req->sqe.opcode, req->sqe.fd);
            abort();
        }
    }
    /* No request waits, and the generic code removed every handler. */
    assert(g_hash_table_size(es->fds) == 0);
}
