/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How an export's client talks to its peer: receive into a buffer, send a
 * vector, cancel a pending receive, shut down.  The NBD server's
 * connections use it for every byte, in the handshake and in the
 * transmission phase, so that a transport that is not a plain socket (TLS
 * records, and later what other export types need) plugs in without
 * touching the protocol code.
 *
 * Calling contexts:
 *  - recv and sendv are coroutine_fn and run in the thread the client
 *    currently runs in; each issues its I/O on that thread's ring.  One
 *    recv and one sendv may be pending at the same time (from two
 *    coroutines of the client), never two of one kind.
 *  - cancel_recv runs in the context of the pending recv (a bottom half
 *    there), never in another thread.
 *  - shutdown may be called from the main loop at any time, while recv
 *    and sendv are pending in another thread: they fail, and so does every
 *    later one.  It never blocks.
 *  - destroy runs in the main loop once nothing is pending and nobody
 *    will call the transport again.
 */
#ifndef BLOCK_EXPORT_TRANSPORT_H
#define BLOCK_EXPORT_TRANSPORT_H

#include "util/osdep.h"

#include <sys/uio.h>

#include "util/coroutine.h"

typedef struct BlkExpTransport BlkExpTransport;

typedef struct BlkExpTransportOps {
    /*
     * Receive up to @len bytes into @buf.  Returns the byte count (> 0),
     * 0 when the peer closed, -ECANCELED when cancel_recv() stopped it
     * before any byte arrived, or -errno.
     */
    int coroutine_fn (*recv)(BlkExpTransport *t, void *buf, size_t len);
    /* Send all of @iov (consumed: it may be changed).  0 or -errno. */
    int coroutine_fn (*sendv)(BlkExpTransport *t, struct iovec *iov,
                              int niov);
    /* Ask the pending recv in the calling context to end (-ECANCELED). */
    void (*cancel_recv)(BlkExpTransport *t);
    /* Fail pending and later I/O (the peer sees the connection close). */
    void (*shutdown)(BlkExpTransport *t);
    /* Close and free. */
    void (*destroy)(BlkExpTransport *t);
} BlkExpTransportOps;

struct BlkExpTransport {
    const BlkExpTransportOps *ops;  /* immutable */
};

/*
 * A transport over the connected stream socket @fd (owned from now on:
 * destroy closes it), with io_uring RECV and SENDMSG on the calling
 * thread's ring.
 */
BlkExpTransport *blk_exp_socket_transport_new(int fd);

static inline int coroutine_fn blk_exp_transport_recv(BlkExpTransport *t,
                                                      void *buf, size_t len)
{
    return t->ops->recv(t, buf, len);
}

static inline int coroutine_fn blk_exp_transport_sendv(BlkExpTransport *t,
                                                       struct iovec *iov,
                                                       int niov)
{
    return t->ops->sendv(t, iov, niov);
}

static inline void blk_exp_transport_cancel_recv(BlkExpTransport *t)
{
    t->ops->cancel_recv(t);
}

static inline void blk_exp_transport_shutdown(BlkExpTransport *t)
{
    t->ops->shutdown(t);
}

static inline void blk_exp_transport_destroy(BlkExpTransport *t)
{
    if (t) {
        t->ops->destroy(t);
    }
}

/*
 * Receive exactly @len bytes (not cancellable: -ECANCELED is retried).
 * 0, -ECONNRESET if the peer closed first, or -errno.
 */
int coroutine_fn blk_exp_transport_recv_all(BlkExpTransport *t, void *buf,
                                            size_t len);

/* Send the @len bytes at @buf.  0 or -errno. */
int coroutine_fn blk_exp_transport_send_all(BlkExpTransport *t,
                                            const void *buf, size_t len);

#endif /* BLOCK_EXPORT_TRANSPORT_H */
