/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals shared by the parts of the NBD server: nbd-server.c
 * (listeners, connection life cycle, the "nbd" export type),
 * nbd-handshake.c (option haggling), nbd-conn.c (the transmission phase:
 * receiving, sending, drains) and nbd-cmd.c (checking and running
 * commands, building replies).
 *
 * A connection (NbdConn) is run by one coroutine for its whole life:
 *
 *   main loop        handshake (nbd-handshake.c), until GO / EXPORT_NAME
 *   export's thread  transmission (nbd-conn.c): the receive loop; request
 *                    coroutines do the I/O and send the replies
 *   main loop        teardown: detach from the export, then a bottom half
 *                    closes the socket and frees the connection
 *
 * The connection's life cycle -- parking while drained, moving between
 * iothreads, closing, the hand-over lock -- is the export client's
 * (client.h, conn->client), and its bytes go through conn->client's
 * transport.  Ownership of the fields here is written beside each one:
 *   immutable   set before the connection coroutine starts (accept) or
 *               before the transmission phase starts (negotiated);
 *   BQL         main loop only;
 *   home        only the thread the connection currently runs in: its
 *               receive coroutine and its request coroutines, which all
 *               run in the same AioContext (client.h says when it moves);
 *   atomic      written in one thread, read in another with util/atomic.h.
 */
#ifndef BLOCK_EXPORT_NBD_INT_H
#define BLOCK_EXPORT_NBD_INT_H

#include "block/nbd.h"
#include "block/export/client.h"
#include "block/export/nbd/nbd-protocol.h"
#include "util/aio.h"
#include "util/queue.h"
#include "util/thread.h"

typedef struct NbdServer NbdServer;
typedef struct NbdConn NbdConn;
typedef struct NbdRequest NbdRequest;

/* An export of type "nbd". */
typedef struct NbdExport {
    BlockExport common;             /* first: BlockExport's instance */
    char *name;                     /* immutable (after create) */
    char *description;              /* immutable; NULL if none */
    int64_t size;                   /* immutable: resize is not shared */
    uint32_t pref_block;            /* immutable: preferred block size */
    uint32_t max_in_flight;         /* immutable: requests per connection */
    uint64_t buffer_budget;         /* immutable: data bytes per connection */
} NbdExport;

/* The metadata context id blockd assigns to base:allocation. */
#define NBD_META_ID_BASE_ALLOCATION 1

/* Per-connection counters, folded into the export's when it leaves. */
typedef struct NbdConnStats {
    uint64_t requests;              /* written home; read atomic (query) */
    uint64_t bytes_read;
    uint64_t bytes_written;
} NbdConnStats;

/* A free-list of equally sized data buffers (home). */
typedef struct NbdBufPool {
    void **free;
    unsigned nfree;
    unsigned max;
    size_t size;
} NbdBufPool;

struct NbdConn {
    /*
     * The client life cycle every export type shares (client.h): its
     * receive loop, hand-over lock, drain and move state, request counts
     * and transport.  Initialised at accept; attached to the export in
     * the transmission phase.
     */
    BlkExpClient client;

    /* --- Set at accept ------------------------------------------------ */
    NbdServer *server;              /* immutable */
    char *peer;                     /* immutable: "addr:port" or "unix" */
    QLIST_ENTRY(NbdConn TSA_GUARDED_BY(bql)) server_link;

    /* --- Handshake (main loop) ---------------------------------------- */
    /* NULL once the handshake ends. */
    AioTimer *handshake_timer TSA_GUARDED_BY(bql);
    bool timed_out TSA_GUARDED_BY(bql);

    /* --- Negotiated: immutable once the transmission starts ----------- */
    bool structured;                /* structured replies */
    bool no_zeroes;                 /* NBD_FLAG_C_NO_ZEROES */
    char *meta_export;              /* base:allocation selected for it */
    NbdExport *exp;                 /* the export; holds a reference */
    uint16_t tx_flags;              /* transmission flags sent */
    bool base_allocation;           /* BLOCK_STATUS allowed */

    /* --- Transmission (home) ------------------------------------------ */
    uint8_t *rbuf;                  /* home: received, not yet parsed */
    size_t rpos, rend;              /* home: unparsed bytes [rpos, rend) */
    uint64_t discard;               /* home: payload bytes to drop */
    NbdRequest *pending;            /* home: parsed, not yet dispatched */
    bool stop_reading;              /* home: NBD_CMD_DISC or bad stream */
    NbdRequest *free_reqs;          /* home: request structs to reuse */
    uint64_t buffered;              /* home: data bytes of admitted requests */
    NbdRequest *sendq_head;         /* home: replies waiting to be sent */
    NbdRequest **sendq_tail;        /* home */
    bool sending;                   /* home: a request is sending replies */
    bool send_failed;               /* home: the socket is broken */
    struct iovec *send_iov;         /* home: the sender's batch */
    NbdBufPool small_bufs;          /* home */
    NbdBufPool large_bufs;          /* home */
    int64_t data_start, data_end;   /* home: a range known to be data */
    NbdConnStats stats;             /* home writes, atomic reads */
};

/* Content chunks of one structured READ reply (holes split it). */
#define NBD_READ_MAX_CHUNKS     8
/* Extents of one BLOCK_STATUS reply (the client asks again for more). */
#define NBD_MAX_EXTENTS         128
/* iovecs of one reply. */
#define NBD_REQ_IOV_MAX         (2 * NBD_READ_MAX_CHUNKS + 2)
/* Reply headers of one request (chunk headers, extents, error). */
#define NBD_REQ_HDR_SIZE        (NBD_CHUNK_HEADER_SIZE + \
                                 NBD_BLOCK_STATUS_SIZE + \
                                 NBD_MAX_EXTENTS * NBD_EXTENT_SIZE)

G_STATIC_ASSERT(NBD_READ_MAX_CHUNKS *
                (NBD_CHUNK_HEADER_SIZE + NBD_OFFSET_HOLE_SIZE) <=
                NBD_REQ_HDR_SIZE);

/* One request, from parsing until its reply is sent.  home */
struct NbdRequest {
    NbdConn *conn;
    NbdRequest *next;               /* free list or send queue */
    Coroutine *send_waiter;         /* waits for the sender to send it */

    uint16_t flags;                 /* NBD_CMD_FLAG_* */
    uint16_t type;                  /* NBD_CMD_* */
    uint64_t handle;
    uint64_t offset;
    uint32_t len;
    bool admitted;                  /* counted in conn->buffered */
    uint32_t cost;                  /* its share of conn->buffered */

    int error;                      /* NBD error of the reply, or 0 */
    const char *error_msg;          /* for structured error chunks */
    uint8_t *buf;                   /* READ/WRITE data, or NULL */
    size_t buf_size;                /* its allocated size */
    uint32_t payload_done;          /* WRITE: payload bytes received */
    uint64_t bytes_read;            /* for the statistics */
    uint64_t bytes_written;

    unsigned niov;                  /* the reply */
    struct iovec iov[NBD_REQ_IOV_MAX];
    size_t hdr_used;
    uint8_t hdr[NBD_REQ_HDR_SIZE];
};

/* --- nbd-conn.c: the transmission phase --------------------------------- */

/*
 * Run the transmission phase of @conn, whose handshake chose conn->exp
 * (with a reference).  Called by the connection coroutine in the main
 * loop; attaches to the export, moves to its context, serves requests
 * until the client leaves, the stream breaks or the connection is closed,
 * and returns in the main loop, detached (the export reference dropped).
 */
void coroutine_fn nbd_conn_transmission(NbdConn *conn);

/* The counters of @exp's live connections, for query (main loop). */
void nbd_export_get_stats(BlockExport *exp, BlockExportStats *stats);

/*
 * A data buffer of at least @len bytes from @conn's pools; *@size is its
 * size, for the release.  home
 */
void *nbd_buf_get(NbdConn *conn, size_t len, size_t *size);

/*
 * Give back a buffer from nbd_buf_get() (@size as it returned).  home
 */
void nbd_buf_put(NbdConn *conn, void *buf, size_t size);

/*
 * Set up and free @conn's data buffer pools: attaching and detaching do,
 * and so does anything that runs commands without a socket (the fuzz
 * harnesses).
 */
void nbd_conn_bufs_init(NbdConn *conn);
void nbd_conn_bufs_destroy(NbdConn *conn);

/* --- nbd-cmd.c: parsing and checking requests (pure, any thread) ------- */

/* A request header as the wire has it (NBD_REQUEST_SIZE bytes). */
typedef struct NbdRequestHdr {
    uint16_t flags;                 /* NBD_CMD_FLAG_* */
    uint16_t type;                  /* NBD_CMD_* */
    uint64_t handle;                /* the client's cookie */
    uint64_t offset;
    uint32_t len;
} NbdRequestHdr;

/* What a request is checked against: the export and the negotiation. */
typedef struct NbdReqLimits {
    uint64_t size;                  /* the export's size */
    bool writable;                  /* the export takes writes */
    bool structured;                /* structured replies negotiated */
    bool base_allocation;           /* base:allocation negotiated */
} NbdReqLimits;

/*
 * Decode the NBD_REQUEST_SIZE bytes at @buf into @hdr.  False if the
 * magic is wrong (the stream is garbage: the server hangs up).
 */
bool nbd_request_decode(const uint8_t *buf, NbdRequestHdr *hdr);

/*
 * Check @hdr (not NBD_CMD_DISC, which has no reply) against the protocol
 * and @lim: unknown command, flags the command does not take, writes to a
 * read-only export, READ/WRITE over NBD_MAX_BUFFER, a range past the end,
 * BLOCK_STATUS without a negotiated context or with length 0.  Returns 0
 * or the NBD error of the reply (docs/nbd.md has the table), with a
 * message for structured error chunks in *@msg (NULL on success).  No
 * alignment is checked: the server advertises a minimum block size of 1.
 */
uint32_t nbd_request_check(const NbdReqLimits *lim, const NbdRequestHdr *hdr,
                           const char **msg);

/* --- nbd-cmd.c: commands ------------------------------------------------ */

/*
 * Check a parsed request against the protocol and the export with
 * nbd_request_check(); a refusal sets req->error (an NBD error) and
 * req->error_msg.  home
 */
void nbd_req_check(NbdConn *conn, NbdRequest *req);

/*
 * Run @req (unless nbd_req_check() refused it) and build its reply in
 * req->iov.  Request coroutine, home.
 */
void coroutine_fn nbd_req_execute(NbdConn *conn, NbdRequest *req);

/* --- nbd-handshake.c ----------------------------------------------------- */

/*
 * The handshake as a state machine over bytes, without I/O: it says how
 * many bytes it needs next (nbd_hs_want()), takes exactly that many
 * (nbd_hs_input()) and appends its replies to hs->out, which the caller
 * sends and empties.  nbd_handshake() drives it on the socket; the fuzz
 * harness drives it from memory.  Main loop (it looks exports up).
 */
typedef enum NbdHsState {
    NBD_HS_CLIENT_FLAGS,        /* receive the client's flags (4 bytes) */
    NBD_HS_OPTION_HEADER,       /* receive an option header */
    NBD_HS_OPTION_DATA,         /* receive its data, reply to it */
    NBD_HS_OPTION_SKIP,         /* drop the data of a too long option */
    NBD_HS_GO,                  /* done: enter transmission (hs->chosen) */
    NBD_HS_CLOSE,               /* done: hang up */
} NbdHsState;

typedef struct NbdHandshake {
    NbdConn *conn;
    NbdHsState state;
    bool multi_conn;            /* the server allows NBD_FLAG_CAN_MULTI_CONN */
    uint32_t opt;               /* the option being handled */
    uint32_t len;               /* its data length */
    uint32_t skip;              /* OPTION_SKIP: data bytes left to drop */
    const uint8_t *data;        /* its data, while it is handled */
    GByteArray *out;            /* replies built, not yet sent */
    NbdExport *chosen;          /* GO / EXPORT_NAME: with a reference */
} NbdHandshake;

/* Start @conn's handshake: the greeting is queued in hs->out. */
void nbd_hs_init(NbdHandshake *hs, NbdConn *conn, bool multi_conn)
    TSA_REQUIRES(bql);
/* Bytes the handshake needs next; 0 once it is done (GO or CLOSE). */
size_t nbd_hs_want(const NbdHandshake *hs);
/* Take the nbd_hs_want() bytes at @buf; replies go to hs->out. */
void nbd_hs_input(NbdHandshake *hs, const uint8_t *buf, size_t len)
    TSA_REQUIRES(bql);
/*
 * End the handshake (the caller sets hs->state to NBD_HS_CLOSE first if
 * it could not send a reply).  Returns true if the client chose an export:
 * conn->exp is set, with a reference, and the transmission phase begins.
 */
bool nbd_hs_finish(NbdHandshake *hs) TSA_REQUIRES(bql);

/*
 * Run the handshake of @conn, in its coroutine in the main loop.  Returns
 * true if the client chose an export (conn->exp, with a reference) and
 * the transmission phase begins.
 */
bool coroutine_fn nbd_handshake(NbdConn *conn) TSA_REQUIRES(bql);

/* --- nbd-server.c -------------------------------------------------------- */

/* Multi-conn is consistent unless the server allows one connection. */
bool nbd_server_allows_multi_conn(NbdServer *server);

/*
 * Iterate over the exports clients can choose (type nbd, not shutting
 * down): exp = nbd_export_next(NULL) ...  Main loop.
 */
NbdExport *nbd_export_next(NbdExport *exp) TSA_REQUIRES(bql);
/*
 * The export called @name among those.  The empty name is the default
 * export: the only one, if there is exactly one.  Main loop.
 */
NbdExport *nbd_export_find(const char *name) TSA_REQUIRES(bql);

#endif /* BLOCK_EXPORT_NBD_INT_H */
