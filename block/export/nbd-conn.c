/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD transmission phase: requests in, replies out, for one
 * connection, in the AioContext its export places it in.
 *
 * The connection coroutine becomes the *receive loop*.  It receives into
 * a per-connection buffer (NBD_RBUF_SIZE) and parses every request the
 * buffer holds before it receives again; each request gets a request
 * coroutine, which runs once the receive loop yields, so that the I/O of
 * all requests of one receive is queued as SQEs and goes to the kernel
 * with the loop's single io_uring_enter().  Up to max_in_flight requests
 * run at once; at the limit the loop stops reading (TCP then pushes back
 * on the client).  Request structs come from a per-connection free list
 * and data buffers from small per-connection pools: nothing is allocated
 * per request on the hot path.  Replies leave through a per-connection
 * send queue: the first request with a reply to send becomes the sender
 * and sends, with one vectored SENDMSG per batch, every reply queued
 * meanwhile (headers and data straight from the request buffers, no copy).
 *
 * The receive loop, one turn at a time:
 *
 *   checkpoint -- closing? ----------------------> end
 *       |         quiesced? ---> park (until the drain ends)
 *       |         elsewhere? --> move to target_ctx
 *       +-- pending request, no slot or budget --> wait for room
 *       +-- pending request, not admitted -------> admit (count, buffer)
 *       +-- pending WRITE short of payload ------> receive payload
 *       +-- payload to drop (refused WRITE) -----> receive and drop
 *       +-- pending request ---------------------> dispatch
 *       +-- NBD_CMD_DISC seen -------------------> end
 *       +-- a whole request header buffered -----> parse (bad magic: end)
 *       +-- otherwise ---------------------------> receive more
 *
 * After the end: wait until no request is in flight (their replies are
 * sent), move to the main loop, detach from the export.
 *
 * Drains and moves (docs/locking.md's rules, see nbd-int.h for who owns
 * what): drained_begin marks every connection quiesced and cancels a
 * pending receive (a bottom half in the connection's context submits
 * IORING_OP_ASYNC_CANCEL); the receive loop parks at its next checkpoint,
 * and the park becomes visible (parked = true) only from a bottom half
 * that runs after the coroutine has yielded, so whoever resumes a parked
 * connection may do so from any thread.  drained_poll reports busy while
 * a connection has requests in flight or has not parked; so inside a
 * polled drained section no connection has an SQE or a coroutine running,
 * and a move of the node only has to change target_ctx.  drained_end
 * resumes a parked connection in the context it parked in (park_ctx):
 * replies of its requests may still be on their way there, in request
 * coroutines that own the connection's home state with it; the receive
 * loop moves itself to target_ctx at its next checkpoint, once no request
 * is in flight.
 *
 * Every receive in this phase is cancellable and never MSG_WAITALL, so a
 * drain never waits for a client to send something.  Nor for a client to
 * read: drained_poll counts only requests whose block I/O runs
 * (io_in_flight), and a receive loop that waits for a slot or for buffer
 * budget (waiting_room) is idle, because it does nothing on the node
 * before its next checkpoint.  A request whose I/O is done touches only
 * the connection while its reply waits for the client.  A connection
 * moves to another thread only once no request is in flight at all,
 * replies included (the receive loop waits for that at its checkpoint,
 * outside any drain); QEMU's server, by contrast, lets a client that does
 * not read its replies hold a drain, and with it the main loop, for ever.
 *
 * Memory: requests are admitted (their WRITE payload buffer allocated,
 * their READ data counted) only while the connection holds less than its
 * buffer budget (x-blockd-buffer-budget) of request data; past it the
 * receive loop stops reading, so a connection pins at most the budget (or
 * one request longer than it) however its client behaves.
 */
#include "util/osdep.h"

#include <sys/socket.h>

#include "block/block-backend.h"
#include "block/export/nbd-int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iov.h"
#include "util/log.h"
#include "util/main-loop.h"

/* Receive buffer: requests and small payloads land here. */
#define NBD_RBUF_SIZE           (256 * 1024)
/* Data buffers: pooled up to these sizes, larger ones allocated. */
#define NBD_SMALL_BUF           (64 * 1024)
#define NBD_LARGE_BUF           (1024 * 1024)
#define NBD_LARGE_POOL          4
#define NBD_BUF_ALIGN           4096
/* iovecs of one batch of replies. */
#define NBD_SEND_IOV_MAX        64

G_STATIC_ASSERT(NBD_REQ_IOV_MAX <= NBD_SEND_IOV_MAX);

static inline NbdExport *nbd_exp(BlockExport *common)
{
    return container_of(common, NbdExport, common);
}

/* --- Buffers and request structs (home) ---------------------------------- */

static void nbd_buf_pool_init(NbdBufPool *pool, size_t size, unsigned max)
{
    pool->free = g_new(void *, max);
    pool->nfree = 0;
    pool->max = max;
    pool->size = size;
}

static void nbd_buf_pool_destroy(NbdBufPool *pool)
{
    while (pool->nfree) {
        blockd_vfree(pool->free[--pool->nfree]);
    }
    g_free(pool->free);
}

void *nbd_buf_get(NbdConn *conn, size_t len, size_t *size)
{
    NbdBufPool *pool = len <= NBD_SMALL_BUF ? &conn->small_bufs :
                       len <= NBD_LARGE_BUF ? &conn->large_bufs : NULL;

    IO_CODE();
    if (!pool) {
        *size = len;
        return blockd_memalign(NBD_BUF_ALIGN, len);
    }
    *size = pool->size;
    if (pool->nfree) {
        return pool->free[--pool->nfree];
    }
    return blockd_memalign(NBD_BUF_ALIGN, pool->size);
}

void nbd_buf_put(NbdConn *conn, void *buf, size_t size)
{
    NbdBufPool *pool = size == NBD_SMALL_BUF ? &conn->small_bufs :
                       size == NBD_LARGE_BUF ? &conn->large_bufs : NULL;

    if (pool && pool->nfree < pool->max) {
        pool->free[pool->nfree++] = buf;
    } else {
        blockd_vfree(buf);
    }
}

void nbd_conn_bufs_init(NbdConn *conn)
{
    nbd_buf_pool_init(&conn->small_bufs, NBD_SMALL_BUF,
                      conn->exp->max_in_flight + 1);
    nbd_buf_pool_init(&conn->large_bufs, NBD_LARGE_BUF, NBD_LARGE_POOL);
}

void nbd_conn_bufs_destroy(NbdConn *conn)
{
    nbd_buf_pool_destroy(&conn->small_bufs);
    nbd_buf_pool_destroy(&conn->large_bufs);
}

static NbdRequest *nbd_req_get(NbdConn *conn)
{
    NbdRequest *req = conn->free_reqs;

    if (req) {
        conn->free_reqs = req->next;
    } else {
        req = g_new(NbdRequest, 1);
    }
    req->conn = conn;
    req->next = NULL;
    req->send_waiter = NULL;
    req->error = 0;
    req->error_msg = NULL;
    req->buf = NULL;
    req->buf_size = 0;
    req->payload_done = 0;
    req->admitted = false;
    req->cost = 0;
    req->bytes_read = 0;
    req->bytes_written = 0;
    req->niov = 0;
    req->hdr_used = 0;
    return req;
}

/* Give @req's buffer back and @req to the free list. */
static void nbd_req_put(NbdConn *conn, NbdRequest *req)
{
    if (req->buf) {
        nbd_buf_put(conn, req->buf, req->buf_size);
        req->buf = NULL;
    }
    req->next = conn->free_reqs;
    conn->free_reqs = req;
}

/* Wake the receive loop if it waits for a slot or for the last request. */
static void nbd_conn_wake_receiver(NbdConn *conn)
{
    Coroutine *co = conn->idle_waiter;

    if (co) {
        conn->idle_waiter = NULL;
        aio_co_wake(co);
    }
}

/* The counters are written here only; query reads them atomically. */
static void nbd_stat_add(uint64_t *counter, uint64_t n)
{
    qatomic_set(counter, *counter + n);
}

/*
 * @req's reply is sent (or dropped): it is no longer in flight.  This is
 * the request's last access to @conn: once the count drops, a drain may
 * end and move the connection to another thread, or the connection may be
 * torn down.
 */
static void nbd_req_release(NbdConn *conn, NbdRequest *req)
{
    nbd_stat_add(&conn->stats.requests, 1);
    nbd_stat_add(&conn->stats.bytes_read, req->bytes_read);
    nbd_stat_add(&conn->stats.bytes_written, req->bytes_written);
    conn->buffered -= req->cost;
    nbd_req_put(conn, req);
    /* Runs after we yield, in this thread: it then sees the new count. */
    nbd_conn_wake_receiver(conn);
    qatomic_dec(&conn->in_flight);
    /*
     * drained_poll() may wait for the count.  Pairs with smp_mb() in
     * AIO_WAIT_WHILE(), through the one in aio_wait_kick().
     */
    aio_wait_kick();
}

/* --- Sending replies (home) ---------------------------------------------- */

typedef struct NbdSendMsg {
    int fd;
    struct msghdr *msg;
} NbdSendMsg;

static void nbd_sendmsg_prep(struct io_uring_sqe *sqe, void *opaque)
{
    NbdSendMsg *s = opaque;

    io_uring_prep_sendmsg(sqe, s->fd, s->msg, MSG_NOSIGNAL);
}

/* Send all of @iov (which is consumed).  0 or -errno. */
static int coroutine_fn nbd_conn_sendv(NbdConn *conn, struct iovec *iov,
                                       int niov)
{
    while (niov) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        NbdSendMsg s = { conn->fd, &msg };
        int ret = aio_co_submit_sqe(nbd_sendmsg_prep, &s, NULL);

        if (ret == -EINTR || ret == -EAGAIN) {
            continue;
        }
        if (ret <= 0) {
            return ret < 0 ? ret : -EPIPE;
        }
        while (niov && (size_t)ret >= iov->iov_len) {
            ret -= iov->iov_len;
            iov++;
            niov--;
        }
        if (niov) {
            iov->iov_base = (uint8_t *)iov->iov_base + ret;
            iov->iov_len -= ret;
        }
    }
    return 0;
}

/* The socket broke while sending: close this connection only. */
static void nbd_conn_break(NbdConn *conn, int err)
{
    debug_report("nbd: %s: cannot send: %s", conn->peer, strerror(-err));
    conn->send_failed = true;
    bd_mutex_lock(&conn->lock);
    qatomic_set(&conn->closing, true);
    bd_mutex_unlock(&conn->lock);
    /* The receive loop's pending RECV sees EOF and it ends. */
    shutdown(conn->fd, SHUT_RDWR);
}

/*
 * Queue @req's reply and return once it is sent (or dropped, if the
 * socket is broken), with @req released: neither @req nor @conn may be
 * touched after this.  The first request to find nobody sending becomes
 * the sender: it sends batches of whole replies, one SENDMSG each, until
 * the queue is empty, waking the requests of each batch after its send.
 * Replies are never interleaved: one SENDMSG at a time.
 *
 * Every request releases itself, as its last step.  The sender does so
 * only once it is done with the queue, so that the in-flight count cannot
 * drop to zero (letting a drain move the connection to another thread)
 * while a sender still works on it.
 */
static void coroutine_fn nbd_conn_send_reply(NbdConn *conn, NbdRequest *req)
{
    IO_CODE();
    req->next = NULL;
    *conn->sendq_tail = req;
    conn->sendq_tail = &req->next;
    if (conn->sending) {
        req->send_waiter = co_self();
        co_yield();             /* the sender wakes us once it is sent */
        nbd_req_release(conn, req);
        return;
    }

    conn->sending = true;
    while (conn->sendq_head) {
        NbdRequest *batch = conn->sendq_head, *last = NULL, *r;
        int niov = 0;

        for (r = batch; r && niov + r->niov <= NBD_SEND_IOV_MAX; r = r->next) {
            memcpy(&conn->send_iov[niov], r->iov,
                   r->niov * sizeof(struct iovec));
            niov += r->niov;
            last = r;
        }
        conn->sendq_head = last->next;
        if (!conn->sendq_head) {
            conn->sendq_tail = &conn->sendq_head;
        }
        last->next = NULL;

        if (!conn->send_failed) {
            int ret = nbd_conn_sendv(conn, conn->send_iov, niov);

            if (ret < 0) {
                nbd_conn_break(conn, ret);
            }
        }
        for (r = batch; r; r = r->next) {
            /* Woken coroutines run after we yield or return. */
            if (r->send_waiter) {
                aio_co_wake(r->send_waiter);
            }
        }
    }
    conn->sending = false;
    nbd_req_release(conn, req);
}

static void coroutine_fn nbd_request_co(void *opaque)
{
    NbdRequest *req = opaque;
    NbdConn *conn = req->conn;

    IO_CODE();
    nbd_req_execute(conn, req);
    /*
     * Our block I/O is done: a drain no longer waits for us, however long
     * the client takes to read the reply.  From here we touch only the
     * connection, which stays in this thread until in_flight drops.
     * Pairs with the load-acquire in nbd_export_drained_poll(), and with
     * AIO_WAIT_WHILE() through the smp_mb() in aio_wait_kick().
     */
    qatomic_store_release(&conn->io_in_flight, conn->io_in_flight - 1);
    aio_wait_kick();
    nbd_conn_send_reply(conn, req);
}

/* --- The receive loop (home) -------------------------------------------- */

static void nbd_conn_recv_done(AioCqeHandler *handler, int res,
                               uint32_t flags)
{
    NbdConn *conn = container_of(handler, NbdConn, recv_handler);

    conn->recv_res = res;
    /* The CQE arrives on the ring of the thread that submitted it. */
    co_enter(conn->co);
}

/*
 * Receive up to @len bytes into @buf, cancellably.  Returns the byte
 * count; 0 if a drain began (or interrupted it): the caller goes back to
 * its checkpoint; -ECONNRESET when the client closed; -errno.
 */
static int coroutine_fn nbd_conn_recv(NbdConn *conn, void *buf, size_t len)
{
    AioContext *ctx = aio_get_current_context();
    struct io_uring_sqe *sqe;
    int res;

    IO_CODE();
    bd_mutex_lock(&conn->lock);
    if (conn->closing) {
        bd_mutex_unlock(&conn->lock);
        return -ESHUTDOWN;
    }
    if (conn->quiesced) {
        bd_mutex_unlock(&conn->lock);
        return 0;
    }
    /* From here, drained_begin cancels us (nbd_conn_cancel_recv_bh()). */
    conn->recv_ctx = ctx;
    bd_mutex_unlock(&conn->lock);

    sqe = aio_get_sqe(ctx, &conn->recv_handler);
    io_uring_prep_recv(sqe, conn->fd, buf, len, 0);
    co_yield();                 /* nbd_conn_recv_done() enters us */
    res = conn->recv_res;

    bd_mutex_lock(&conn->lock);
    conn->recv_ctx = NULL;
    bd_mutex_unlock(&conn->lock);

    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
        return 0;
    }
    return res == 0 ? -ECONNRESET : res;
}

/* A drain began: cancel the RECV pending in this context, if any. */
static void nbd_conn_cancel_recv_bh(void *opaque)
{
    NbdConn *conn = opaque;
    AioContext *ctx = aio_get_current_context();
    bool cancel;

    IO_CODE();
    bd_mutex_lock(&conn->lock);
    cancel = conn->quiesced && conn->recv_ctx == ctx;
    bd_mutex_unlock(&conn->lock);
    /*
     * Decided under the lock, prepared after it: aio_get_sqe() is never
     * called holding a BdMutex (docs/locking.md).  That is safe because
     * nothing else runs in this thread between the unlock and the SQE
     * (aio_get_sqe() runs no completion handler), and the RECV, its
     * completion and the receive loop that would set up the next one
     * all run only in this thread: the RECV we decided to cancel is still
     * the pending one when the cancel is queued, and any later RECV is
     * queued behind the cancel.  The main loop may end the drain
     * meanwhile, as it could after the unlock before; a cancel that
     * comes too late finds nothing, one that is no longer needed sends
     * the receive loop back to its checkpoint.  recv_handler, whose
     * address the cancel matches, lives in @conn, which bh_refs keeps
     * alive until we drop it below.
     */
    if (cancel) {
        /* The RECV's own completion is what the drain waits for. */
        io_uring_prep_cancel(aio_get_sqe(ctx, NULL), &conn->recv_handler, 0);
    }
    /*
     * @conn may be freed once the count drops.  Pairs with AIO_WAIT_WHILE()
     * in nbd_conn_free_bh(), through the smp_mb() in aio_wait_kick().
     */
    qatomic_dec(&conn->bh_refs);
    aio_wait_kick();
}

/*
 * Runs after the receive loop yielded to park: make the park visible, or
 * resume the loop if the drain is already over.
 */
static void nbd_conn_park_bh(void *opaque)
{
    NbdConn *conn = opaque;
    Coroutine *co = conn->co;

    IO_CODE();
    bd_mutex_lock(&conn->lock);
    if (conn->quiesced && !conn->closing) {
        /* From now on only drained_end or a close resumes us, here. */
        conn->parked = true;
        conn->park_ctx = aio_get_current_context();
        bd_mutex_unlock(&conn->lock);
        /* drained_poll() may wait for the park; @conn is not ours now. */
        aio_wait_kick();
        return;
    }
    bd_mutex_unlock(&conn->lock);
    co_enter(co);
}

/*
 * Whether @req may be admitted now: a slot is free and its data fits the
 * buffer budget (a request longer than the budget runs alone).  With
 * @req NULL: whether no request is in flight at all.
 */
static bool nbd_conn_has_room(NbdConn *conn, NbdRequest *req)
{
    unsigned in_flight = qatomic_read(&conn->in_flight);

    if (!req) {
        return in_flight == 0;
    }
    return in_flight < conn->exp->max_in_flight &&
           (in_flight == 0 ||
            conn->buffered + req->cost <= conn->exp->buffer_budget);
}

/*
 * Wait until nbd_conn_has_room(@req).  Meanwhile the receive loop counts
 * as idle for drains: it does nothing on the node before its next
 * checkpoint, and whoever wakes it (a request leaving) runs in this
 * thread.  So a client that reads no replies, holding every slot or the
 * whole budget, holds up no drain.
 */
static void coroutine_fn nbd_conn_wait_room(NbdConn *conn, NbdRequest *req)
{
    while (!nbd_conn_has_room(conn, req)) {
        bd_mutex_lock(&conn->lock);
        conn->waiting_room = true;
        bd_mutex_unlock(&conn->lock);
        /* drained_poll() may be waiting for us to be idle. */
        aio_wait_kick();
        conn->idle_waiter = co_self();
        co_yield();             /* nbd_req_release() wakes us */
        bd_mutex_lock(&conn->lock);
        conn->waiting_room = false;
        bd_mutex_unlock(&conn->lock);
    }
}

/*
 * Count @req's data against the buffer budget and give a WRITE its
 * payload buffer.  Only after nbd_conn_has_room(): the payload stays in
 * the socket (TCP pushes back) while the budget is spent.
 */
static void nbd_conn_admit(NbdConn *conn, NbdRequest *req)
{
    req->admitted = true;
    conn->buffered += req->cost;
    if (req->type == NBD_CMD_WRITE && !req->error && req->len) {
        req->buf = nbd_buf_get(conn, req->len, &req->buf_size);
    }
}

/*
 * Where the receive loop decides whether to go on: false if the
 * connection is closing; parks while the node is drained; moves to the
 * connection's target context (placement after the handshake, or a node
 * that moved while drained).
 */
static bool coroutine_fn nbd_conn_checkpoint(NbdConn *conn)
{
    IO_CODE();
    /*
     * Fast path, lock-free: nothing asks us to stop, park or move (the
     * receive loop passes here two or three times per request).  A stale
     * read is the same as the close or drain beginning just after a locked
     * check: the next checkpoint sees it, nbd_conn_recv() checks again
     * under the lock before it waits, and drained_poll() counts us busy
     * until we have parked.
     */
    if (!qatomic_read(&conn->closing) && !qatomic_read(&conn->quiesced) &&
        qatomic_read(&conn->target_ctx) == aio_get_current_context()) {
        return true;
    }
    for (;;) {
        AioContext *target;

        bd_mutex_lock(&conn->lock);
        if (conn->closing) {
            bd_mutex_unlock(&conn->lock);
            return false;
        }
        if (conn->quiesced) {
            bd_mutex_unlock(&conn->lock);
            aio_bh_schedule_oneshot(aio_get_current_context(),
                                    nbd_conn_park_bh, conn);
            co_yield();
            continue;
        }
        target = conn->target_ctx;
        bd_mutex_unlock(&conn->lock);
        if (target == aio_get_current_context()) {
            return true;
        }
        /*
         * Requests run in our context: none may be left behind.  Their
         * block I/O is done (the node moved in a drained section), but
         * replies may still be on their way to a slow client.
         */
        nbd_conn_wait_room(conn, NULL);
        aio_co_reschedule_self(target);
    }
}

static void nbd_conn_dispatch(NbdConn *conn, NbdRequest *req)
{
    /*
     * No barrier needed against a drain that begins meanwhile:
     * drained_poll() counts us busy until the receive loop has parked,
     * which it does only after this.
     */
    qatomic_inc(&conn->in_flight);
    qatomic_inc(&conn->io_in_flight);
    /* Runs when the receive loop yields: after the whole buffer's parse. */
    aio_co_enter(aio_get_current_context(), co_create(nbd_request_co, req));
}

/* Parse the request header at rbuf[rpos].  -EPROTO if it is garbage. */
static int nbd_conn_parse(NbdConn *conn)
{
    const uint8_t *p = conn->rbuf + conn->rpos;
    NbdRequestHdr hdr;
    NbdRequest *req;

    if (!nbd_request_decode(p, &hdr)) {
        debug_report("nbd: %s: bad request magic 0x%08" PRIx32
                     ": disconnecting", conn->peer, nbd_get32(p));
        return -EPROTO;
    }
    conn->rpos += NBD_REQUEST_SIZE;
    if (hdr.type == NBD_CMD_DISC) {
        conn->stop_reading = true;
        return 0;
    }
    req = nbd_req_get(conn);
    req->flags = hdr.flags;
    req->type = hdr.type;
    req->handle = hdr.handle;
    req->offset = hdr.offset;
    req->len = hdr.len;
    nbd_req_check(conn, req);
    if (!req->error &&
        (req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE)) {
        req->cost = req->len;
    }
    if (req->type == NBD_CMD_WRITE && req->error) {
        /* Keep the stream in step: the payload follows regardless. */
        conn->discard = req->len;
    }
    conn->pending = req;
    return 0;
}

/* Take a WRITE's payload from the buffer, or receive it in place. */
static int coroutine_fn nbd_conn_recv_payload(NbdConn *conn, NbdRequest *req)
{
    size_t left = req->len - req->payload_done;
    size_t avail = conn->rend - conn->rpos;
    int ret;

    if (avail) {
        size_t n = MIN(avail, left);

        memcpy(req->buf + req->payload_done, conn->rbuf + conn->rpos, n);
        conn->rpos += n;
        req->payload_done += n;
        return 0;
    }
    ret = nbd_conn_recv(conn, req->buf + req->payload_done, left);
    if (ret > 0) {
        req->payload_done += ret;
    }
    return MIN(ret, 0);
}

/* Drop the payload of a refused WRITE. */
static int coroutine_fn nbd_conn_discard(NbdConn *conn)
{
    size_t avail = conn->rend - conn->rpos;
    int ret;

    if (avail) {
        size_t n = MIN(avail, conn->discard);

        conn->rpos += n;
        conn->discard -= n;
        return 0;
    }
    conn->rpos = conn->rend = 0;
    ret = nbd_conn_recv(conn, conn->rbuf, MIN(conn->discard, NBD_RBUF_SIZE));
    if (ret > 0) {
        conn->discard -= ret;
    }
    return MIN(ret, 0);
}

/* Receive more requests behind the (partial) one buffered. */
static int coroutine_fn nbd_conn_fill(NbdConn *conn)
{
    size_t have = conn->rend - conn->rpos;
    int ret;

    /* Less than a header is left: move it to the front (< 28 bytes). */
    if (conn->rpos) {
        memmove(conn->rbuf, conn->rbuf + conn->rpos, have);
        conn->rpos = 0;
        conn->rend = have;
    }
    ret = nbd_conn_recv(conn, conn->rbuf + conn->rend,
                        NBD_RBUF_SIZE - conn->rend);
    if (ret > 0) {
        conn->rend += ret;
    }
    return MIN(ret, 0);
}

static void coroutine_fn nbd_conn_receive_loop(NbdConn *conn)
{
    int ret = 0;

    IO_CODE();
    while (ret >= 0 && nbd_conn_checkpoint(conn)) {
        NbdRequest *req = conn->pending;

        if (req && !req->admitted && !nbd_conn_has_room(conn, req)) {
            nbd_conn_wait_room(conn, req);
        } else if (req && !req->admitted) {
            nbd_conn_admit(conn, req);
        } else if (req && req->type == NBD_CMD_WRITE && !req->error &&
                   req->payload_done < req->len) {
            ret = nbd_conn_recv_payload(conn, req);
        } else if (conn->discard) {
            /*
             * A refused WRITE's payload goes first: clients do not expect
             * a reply to a request they are still sending.
             */
            ret = nbd_conn_discard(conn);
        } else if (req) {
            conn->pending = NULL;
            nbd_conn_dispatch(conn, req);
        } else if (conn->stop_reading) {
            break;
        } else if (conn->rend - conn->rpos >= NBD_REQUEST_SIZE) {
            ret = nbd_conn_parse(conn);
        } else {
            ret = nbd_conn_fill(conn);
        }
    }
    if (ret < 0 && ret != -ECONNRESET && ret != -ESHUTDOWN &&
        ret != -EPROTO) {
        debug_report("nbd: %s: cannot receive: %s", conn->peer,
                     strerror(-ret));
    }
}

/* --- Attaching and detaching (main loop) --------------------------------- */

static void nbd_conn_attach(NbdConn *conn)
{
    NbdExport *exp = conn->exp;

    GLOBAL_STATE_CODE();
    conn->rbuf = g_malloc(NBD_RBUF_SIZE);
    conn->send_iov = g_new(struct iovec, NBD_SEND_IOV_MAX);
    conn->sendq_tail = &conn->sendq_head;
    nbd_conn_bufs_init(conn);
    conn->recv_handler.cb = nbd_conn_recv_done;

    exp->common.clients++;
    QLIST_INSERT_HEAD(&exp->conns, conn, exp_link);
    bd_mutex_lock(&conn->lock);
    /* A drain in effect covers us from now on. */
    qatomic_set(&conn->quiesced, exp->quiesced);
    qatomic_set(&conn->target_ctx, blk_exp_next_aio_context(&exp->common));
    bd_mutex_unlock(&conn->lock);
    debug_report("nbd: %s: runs in '%s'", conn->peer,
                 aio_context_name(conn->target_ctx));
}

static void nbd_conn_detach(NbdConn *conn)
{
    NbdExport *exp = conn->exp;
    NbdRequest *req;

    GLOBAL_STATE_CODE();
    QLIST_REMOVE(conn, exp_link);
    exp->common.clients--;
    qatomic_add(&exp->common.stats.requests, conn->stats.requests);
    qatomic_add(&exp->common.stats.bytes_read, conn->stats.bytes_read);
    qatomic_add(&exp->common.stats.bytes_written, conn->stats.bytes_written);

    while ((req = conn->free_reqs)) {
        conn->free_reqs = req->next;
        g_free(req);
    }
    nbd_conn_bufs_destroy(conn);
    g_free(conn->send_iov);
    g_free(conn->rbuf);
    conn->exp = NULL;
    blk_exp_unref(&exp->common);
}

void coroutine_fn nbd_conn_transmission(NbdConn *conn)
{
    GLOBAL_STATE_CODE();
    if (conn->exp->common.shutting_down) {
        /* Removed while the handshake answered GO. */
        blk_exp_unref(&conn->exp->common);
        conn->exp = NULL;
        return;
    }
    nbd_conn_attach(conn);
    nbd_conn_receive_loop(conn);

    /* Drains stop waiting for our receive loop; only requests count. */
    bd_mutex_lock(&conn->lock);
    conn->done = true;
    bd_mutex_unlock(&conn->lock);
    if (conn->pending) {
        /* Parsed, never dispatched: no reply is owed to a leaving client. */
        if (conn->pending->admitted) {
            conn->buffered -= conn->pending->cost;
        }
        nbd_req_put(conn, conn->pending);
        conn->pending = NULL;
    }
    /* Let the requests in flight finish and send their replies. */
    nbd_conn_wait_room(conn, NULL);
    aio_co_reschedule_self(main_context());
    nbd_conn_detach(conn);
}

void nbd_conn_request_close(NbdConn *conn)
{
    AioContext *wake = NULL;

    GLOBAL_STATE_CODE();
    bd_mutex_lock(&conn->lock);
    qatomic_set(&conn->closing, true);
    if (conn->parked) {
        conn->parked = false;
        wake = conn->park_ctx;
    }
    bd_mutex_unlock(&conn->lock);
    /* Pending receives see EOF, pending sends fail. */
    shutdown(conn->fd, SHUT_RDWR);
    if (wake) {
        /*
         * Parked: fully suspended (nbd_conn_park_bh()), so any thread may
         * resume it; in the context it parked in, where its requests (if
         * any) run, it finds closing set and ends.
         */
        aio_co_schedule(wake, conn->co);
    }
}

/* --- The export type's drain and move callbacks (main loop) ------------- */

void nbd_export_drained_begin(BlockExport *common)
{
    NbdExport *exp = nbd_exp(common);
    NbdConn *conn;

    GLOBAL_STATE_CODE();
    exp->quiesced = true;
    QLIST_FOREACH(conn, &exp->conns, exp_link) {
        AioContext *ctx;

        bd_mutex_lock(&conn->lock);
        qatomic_set(&conn->quiesced, true);
        /*
         * A RECV set up before it saw quiesced must be cancelled; one set
         * up later never starts (nbd_conn_recv() checks under the lock).
         */
        ctx = conn->recv_ctx;
        if (ctx) {
            /* Dropped by the bottom half; nbd_conn_free_bh() waits. */
            qatomic_inc(&conn->bh_refs);
        }
        bd_mutex_unlock(&conn->lock);
        if (ctx) {
            aio_bh_schedule_oneshot(ctx, nbd_conn_cancel_recv_bh, conn);
        }
    }
}

bool nbd_export_drained_poll(BlockExport *common)
{
    NbdExport *exp = nbd_exp(common);
    NbdConn *conn;

    GLOBAL_STATE_CODE();
    QLIST_FOREACH(conn, &exp->conns, exp_link) {
        bool idle;

        /*
         * Pairs with the store-release in nbd_request_co(): seeing the
         * count at zero, we also see that every request is done with the
         * node (replies may still be on their way: they touch only the
         * connection, which moves only once in_flight is zero).
         */
        if (qatomic_load_acquire(&conn->io_in_flight)) {
            return true;
        }
        bd_mutex_lock(&conn->lock);
        idle = conn->parked || conn->done || conn->waiting_room;
        bd_mutex_unlock(&conn->lock);
        if (!idle) {
            return true;
        }
    }
    return false;
}

void nbd_export_drained_end(BlockExport *common)
{
    NbdExport *exp = nbd_exp(common);
    NbdConn *conn;

    GLOBAL_STATE_CODE();
    exp->quiesced = false;
    QLIST_FOREACH(conn, &exp->conns, exp_link) {
        AioContext *ctx = NULL;

        bd_mutex_lock(&conn->lock);
        qatomic_set(&conn->quiesced, false);
        if (conn->parked) {
            conn->parked = false;
            ctx = conn->park_ctx;
        }
        bd_mutex_unlock(&conn->lock);
        if (ctx) {
            /*
             * Where it parked, beside its requests still sending replies;
             * if the node moved, it follows at its checkpoint.
             */
            aio_co_schedule(ctx, conn->co);
        }
    }
}

void nbd_export_aio_context_changed(BlockExport *common, AioContext *ctx)
{
    NbdExport *exp = nbd_exp(common);
    NbdConn *conn;

    GLOBAL_STATE_CODE();
    /* Multiqueue connections stay on their iothreads. */
    if (common->iothreads->len > 1) {
        return;
    }
    /* Every connection is parked or done: this drain was polled. */
    QLIST_FOREACH(conn, &exp->conns, exp_link) {
        bd_mutex_lock(&conn->lock);
        qatomic_set(&conn->target_ctx, ctx);
        bd_mutex_unlock(&conn->lock);
    }
}

void nbd_export_get_stats(BlockExport *common, BlockExportStats *stats)
{
    NbdExport *exp = nbd_exp(common);
    NbdConn *conn;

    GLOBAL_STATE_CODE();
    QLIST_FOREACH(conn, &exp->conns, exp_link) {
        stats->requests += qatomic_read(&conn->stats.requests);
        stats->bytes_read += qatomic_read(&conn->stats.bytes_read);
        stats->bytes_written += qatomic_read(&conn->stats.bytes_written);
    }
}
