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
 * Drains, moves, parking and closing are the export client life cycle
 * (client.h), shared with the other export types: the receive loop calls
 * blk_exp_client_checkpoint() each turn and receives with
 * blk_exp_client_recv(), which a drain cancels; requests count themselves
 * with blk_exp_client_request_start(), _io_done() (a drain waits only for
 * their block I/O, never for a client to read a reply) and
 * _request_end().  Bytes go through the connection's transport.
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
#include "block/export/nbd/nbd-int.h"
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
    blk_exp_client_request_end(&conn->client);
}

/* --- Sending replies (home) ---------------------------------------------- */

/* The socket broke while sending: close this connection only. */
static void nbd_conn_break(NbdConn *conn, int err)
{
    debug_report("nbd: %s: cannot send: %s", conn->peer, strerror(-err));
    conn->send_failed = true;
    bd_mutex_lock(&conn->client.lock);
    qatomic_set(&conn->client.closing, true);
    bd_mutex_unlock(&conn->client.lock);
    /* The receive loop's pending receive sees EOF and it ends. */
    blk_exp_transport_shutdown(conn->client.transport);
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
            int ret = blk_exp_transport_sendv(conn->client.transport,
                                              conn->send_iov, niov);

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
     * From here we touch only the connection, which stays in this thread
     * until our reply is sent.
     */
    blk_exp_client_io_done(&conn->client);
    nbd_conn_send_reply(conn, req);
}

/* --- The receive loop (home) -------------------------------------------- */

/*
 * Whether the pending request @opaque may be admitted now: a slot is free
 * and its data fits the buffer budget (a request longer than the budget
 * runs alone).
 */
static bool nbd_conn_has_room(BlkExpClient *c, void *opaque)
{
    NbdConn *conn = container_of(c, NbdConn, client);
    NbdRequest *req = opaque;
    unsigned in_flight = qatomic_read(&c->in_flight);

    return in_flight < conn->exp->max_in_flight &&
           (in_flight == 0 ||
            conn->buffered + req->cost <= conn->exp->buffer_budget);
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

static void nbd_conn_dispatch(NbdConn *conn, NbdRequest *req)
{
    /*
     * No barrier needed against a drain that begins meanwhile:
     * drained_poll() counts us busy until the receive loop has parked,
     * which it does only after this.
     */
    blk_exp_client_request_start(&conn->client);
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
    ret = blk_exp_client_recv(&conn->client, req->buf + req->payload_done, left);
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
    ret = blk_exp_client_recv(&conn->client, conn->rbuf, MIN(conn->discard, NBD_RBUF_SIZE));
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
    ret = blk_exp_client_recv(&conn->client, conn->rbuf + conn->rend,
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
    while (ret >= 0 && blk_exp_client_checkpoint(&conn->client)) {
        NbdRequest *req = conn->pending;

        if (req && !req->admitted &&
            !nbd_conn_has_room(&conn->client, req)) {
            blk_exp_client_wait_room(&conn->client, nbd_conn_has_room, req);
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
    GLOBAL_STATE_CODE();
    conn->rbuf = g_malloc(NBD_RBUF_SIZE);
    conn->send_iov = g_new(struct iovec, NBD_SEND_IOV_MAX);
    conn->sendq_tail = &conn->sendq_head;
    nbd_conn_bufs_init(conn);
    /* The export reference from the handshake passes to the client. */
    blk_exp_client_attach(&conn->client, &conn->exp->common);
}

static void nbd_conn_detach(NbdConn *conn)
{
    BlockExport *common = &conn->exp->common;
    NbdRequest *req;

    GLOBAL_STATE_CODE();
    qatomic_add(&common->stats.requests, conn->stats.requests);
    qatomic_add(&common->stats.bytes_read, conn->stats.bytes_read);
    qatomic_add(&common->stats.bytes_written, conn->stats.bytes_written);

    while ((req = conn->free_reqs)) {
        conn->free_reqs = req->next;
        g_free(req);
    }
    nbd_conn_bufs_destroy(conn);
    g_free(conn->send_iov);
    g_free(conn->rbuf);
    conn->exp = NULL;
    blk_exp_client_detach(&conn->client);
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

    if (conn->pending) {
        /* Parsed, never dispatched: no reply is owed to a leaving client. */
        if (conn->pending->admitted) {
            conn->buffered -= conn->pending->cost;
        }
        nbd_req_put(conn, conn->pending);
        conn->pending = NULL;
    }
    /* Let the requests in flight send their replies; back to the main loop. */
    blk_exp_client_finish(&conn->client);
    nbd_conn_detach(conn);
}

/* --- Statistics (main loop) ------------------------------------------------ */

void nbd_export_get_stats(BlockExport *common, BlockExportStats *stats)
{
    BlkExpClient *c;

    GLOBAL_STATE_CODE();
    QLIST_FOREACH(c, &common->client_list, link) {
        NbdConn *conn = container_of(c, NbdConn, client);

        stats->requests += qatomic_read(&conn->stats.requests);
        stats->bytes_read += qatomic_read(&conn->stats.bytes_read);
        stats->bytes_written += qatomic_read(&conn->stats.bytes_written);
    }
}
