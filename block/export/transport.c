/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The socket transport of export clients (see transport.h), and the
 * whole-message helpers every transport shares.
 *
 * A receive is one IORING_OP_RECV on the calling thread's ring, never
 * MSG_WAITALL, so that it returns what has arrived and can be cancelled
 * (IORING_OP_ASYNC_CANCEL on its user data, from the same ring); a send
 * is a loop of IORING_OP_SENDMSG until the vector is gone.  shutdown(2)
 * from the main loop fails whatever is pending in any thread.
 */
#include "util/osdep.h"

#include <sys/socket.h>

#include "block/export/transport.h"
#include "util/aio.h"
#include "util/main-loop.h"

typedef struct SocketTransport {
    BlkExpTransport common;
    int fd;                         /* immutable; closed by destroy */
    /* The pending RECV: one at a time, in the client's thread.  home */
    AioCqeHandler recv_handler;
    Coroutine *recv_co;
    int recv_res;
} SocketTransport;

static void socket_recv_done(AioCqeHandler *handler, int res, uint32_t flags)
{
    SocketTransport *s = container_of(handler, SocketTransport, recv_handler);

    s->recv_res = res;
    /* The CQE arrives on the ring of the thread that submitted it. */
    co_enter(s->recv_co);
}

static int coroutine_fn socket_recv(BlkExpTransport *t, void *buf,
                                    size_t len)
{
    SocketTransport *s = container_of(t, SocketTransport, common);
    struct io_uring_sqe *sqe;
    int res;

    IO_CODE();
    s->recv_co = co_self();
    sqe = aio_get_sqe(aio_get_current_context(), &s->recv_handler);
    io_uring_prep_recv(sqe, s->fd, buf, len, 0);
    co_yield();                 /* socket_recv_done() enters us */
    res = s->recv_res;
    if (res == -EINTR || res == -EAGAIN) {
        /* Interrupted: let the caller look at its state again. */
        return -ECANCELED;
    }
    return res;
}

static void socket_cancel_recv(BlkExpTransport *t)
{
    SocketTransport *s = container_of(t, SocketTransport, common);

    IO_CODE();
    /*
     * Fire and forget: the RECV's own completion (-ECANCELED, or its data
     * if it won the race) is what the receiver waits for.  A cancel that
     * finds nothing is harmless.
     */
    io_uring_prep_cancel(aio_get_sqe(aio_get_current_context(), NULL),
                         &s->recv_handler, 0);
}

typedef struct SendMsgOp {
    int fd;
    struct msghdr *msg;
} SendMsgOp;

static void sendmsg_prep(struct io_uring_sqe *sqe, void *opaque)
{
    SendMsgOp *op = opaque;

    io_uring_prep_sendmsg(sqe, op->fd, op->msg, MSG_NOSIGNAL);
}

static int coroutine_fn socket_sendv(BlkExpTransport *t, struct iovec *iov,
                                     int niov)
{
    SocketTransport *s = container_of(t, SocketTransport, common);

    IO_CODE();
    while (niov) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        SendMsgOp op = { s->fd, &msg };
        int ret = aio_co_submit_sqe(sendmsg_prep, &op, NULL);

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

static void socket_shutdown(BlkExpTransport *t)
{
    SocketTransport *s = container_of(t, SocketTransport, common);

    /* Pending receives see EOF, pending sends fail, in any thread. */
    shutdown(s->fd, SHUT_RDWR);
}

static void socket_destroy(BlkExpTransport *t)
{
    SocketTransport *s = container_of(t, SocketTransport, common);

    close(s->fd);
    g_free(s);
}

static const BlkExpTransportOps socket_transport_ops = {
    .recv = socket_recv,
    .sendv = socket_sendv,
    .cancel_recv = socket_cancel_recv,
    .shutdown = socket_shutdown,
    .destroy = socket_destroy,
};

BlkExpTransport *blk_exp_socket_transport_new(int fd)
{
    SocketTransport *s = g_new0(SocketTransport, 1);

    s->common.ops = &socket_transport_ops;
    s->fd = fd;
    s->recv_handler.cb = socket_recv_done;
    return &s->common;
}

/* --- Whole messages, over any transport ----------------------------------- */

int coroutine_fn blk_exp_transport_recv_all(BlkExpTransport *t, void *buf,
                                            size_t len)
{
    size_t done = 0;

    while (done < len) {
        int ret = blk_exp_transport_recv(t, (uint8_t *)buf + done,
                                         len - done);

        if (ret == -ECANCELED) {
            continue;
        }
        if (ret < 0) {
            return ret;
        }
        if (ret == 0) {
            return -ECONNRESET;
        }
        done += ret;
    }
    return 0;
}

int coroutine_fn blk_exp_transport_send_all(BlkExpTransport *t,
                                            const void *buf, size_t len)
{
    /* The vector only reads the buffer. */
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return len ? blk_exp_transport_sendv(t, &iov, 1) : 0;
}
