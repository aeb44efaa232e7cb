/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The life cycle every export type's clients share: attach to an export,
 * move to the thread the export places them in, serve requests, park
 * while the node is drained, follow the node to another iothread, close,
 * detach.  Written once here, so that the NBD server, and the FUSE and
 * vhost-user-blk exports after it, do not each carry their own copy of
 * the subtle part.  Private to block/export/.
 *
 * A client is run by one coroutine, its *receive loop*, which takes
 * requests from its peer (through a BlkExpTransport, or whatever the type
 * reads from) and starts a coroutine per request in the same context.
 * The loop calls blk_exp_client_checkpoint() before each step; requests
 * bracket their life with blk_exp_client_request_start(),
 * blk_exp_client_io_done() (their block I/O is over) and
 * blk_exp_client_request_end() (their reply is sent: the last access).
 *
 * Who owns what:
 *   immutable   set before the receive loop starts;
 *   BQL         main loop only;
 *   lock        client->lock, which the main loop and the client's
 *               thread use to hand the client over (drains, moves,
 *               closing); a leaf, held for a few instructions, never
 *               across a yield or a call out;
 *   home        only the thread the client currently runs in: its
 *               receive loop and its request coroutines, which all run in
 *               one AioContext.  The client moves only while no request is
 *               in flight and its receive loop is suspended;
 *               aio_co_schedule()'s release/acquire orders the hand-over;
 *   atomic      written in one thread, read in another (util/atomic.h).
 *
 * Drains (the export's BlockBackend dev ops, export.c, call the
 * blk_exp_clients_* functions below; all main loop):
 *  - drained_begin marks every client quiesced and, if its receive loop
 *    waits in blk_exp_client_recv(), cancels that receive with a bottom
 *    half in the loop's context; the loop parks at its next checkpoint.
 *    The park becomes visible (parked) only from a bottom half that runs
 *    after the coroutine has yielded, so whoever resumes it may do so
 *    from any thread.
 *  - drained_poll reports busy while a client has block I/O in flight
 *    (io_in_flight) or its receive loop is neither parked, nor done, nor
 *    waiting for room (blk_exp_client_wait_room()): never because a peer
 *    does not read its replies.
 *  - drained_end resumes a parked loop where it parked (park_ctx), beside
 *    request coroutines that may still be sending replies there; a loop
 *    whose target context changed moves at its next checkpoint, once no
 *    request is in flight at all.
 *  - aio_context_changed (the node moved, drained, under the write lock)
 *    only records the new target context, for single-iothread exports.
 */
#ifndef BLOCK_EXPORT_CLIENT_H
#define BLOCK_EXPORT_CLIENT_H

#include "block/export.h"
#include "block/export/transport.h"
#include "util/aio.h"
#include "util/queue.h"
#include "util/thread.h"

typedef struct BlkExpClient BlkExpClient;

struct BlkExpClient {
    const char *name;               /* immutable: "peer" for messages */
    Coroutine *co;                  /* immutable: the receive loop */
    BlkExpTransport *transport;     /* immutable; NULL for types without */
    /* A reference while attached. */
    BlockExport *exp TSA_GUARDED_BY(bql);
    /* In exp->client_list. */
    QLIST_ENTRY(BlkExpClient TSA_GUARDED_BY(bql)) link;

    BdMutex lock;
    /*
     * quiesced, closing and target_ctx: written under the lock with
     * qatomic_set(); read under it, or with qatomic_read() by the receive
     * loop's lock-free fast path in blk_exp_client_checkpoint().
     */
    bool quiesced;                  /* lock: the node is drained */
    bool parked;                    /* lock: suspended because quiesced */
    bool closing;                   /* lock: stop; tear down */
    bool done;                      /* lock: the receive loop has ended */
    bool waiting_room;              /* lock: in blk_exp_client_wait_room() */
    AioContext *recv_ctx;           /* lock: context of a pending recv */
    AioContext *park_ctx;           /* lock: where it parked */
    AioContext *target_ctx;         /* lock: where the client runs */

    unsigned bh_refs;               /* atomic: BHs that point to us */
    /*
     * Requests from start until their reply is sent, and among them those
     * whose block I/O is not over.  atomic; written home.
     */
    unsigned in_flight;
    unsigned io_in_flight;
    Coroutine *idle_waiter;         /* home: the loop waits for a request */
};

/* Set up @c (its receive loop @co not started yet).  Main loop. */
void blk_exp_client_init(BlkExpClient *c, const char *name, Coroutine *co,
                         BlkExpTransport *transport) TSA_REQUIRES(bql);
/*
 * Free what init set up, once the client is detached and its loop gone;
 * waits (a plain wait) for bottom halves that still point to @c.  Main
 * loop.
 */
void blk_exp_client_destroy(BlkExpClient *c) TSA_REQUIRES(bql);

/*
 * Join @exp (whose reference the caller passes to @c): counted in its
 * clients, quiesced if it is drained, placed in the context the export
 * chooses (blk_exp_next_aio_context()).  Main loop, from the receive loop
 * (coroutine) before it serves requests.
 */
void blk_exp_client_attach(BlkExpClient *c, BlockExport *exp)
    TSA_REQUIRES(bql);
/*
 * Leave the export and drop the reference.  Main loop; the receive loop
 * has ended and no request is in flight (blk_exp_client_finish()).
 */
void blk_exp_client_detach(BlkExpClient *c) TSA_REQUIRES(bql);

/*
 * The receive loop's turn: false if the client is closing; parks while
 * the node is drained; moves to the target context (after attach, or
 * after the node moved).  Receive loop.
 */
bool coroutine_fn blk_exp_client_checkpoint(BlkExpClient *c);

/*
 * Receive up to @len bytes from the transport, cancellably: the byte
 * count; 0 if a drain began (back to the checkpoint); -ECONNRESET when
 * the peer closed; -ESHUTDOWN when closing; -errno.  Receive loop.
 */
int coroutine_fn blk_exp_client_recv(BlkExpClient *c, void *buf, size_t len);

/*
 * Wait until @has_room(@c, @opaque) (or, with @has_room NULL, until no
 * request is in flight), woken by each request's end.  Meanwhile the
 * loop counts as idle for drains.  Receive loop.
 */
typedef bool BlkExpClientRoomFn(BlkExpClient *c, void *opaque);
void coroutine_fn blk_exp_client_wait_room(BlkExpClient *c,
                                           BlkExpClientRoomFn *has_room,
                                           void *opaque);

/* A request starts (receive loop, before it creates the coroutine). */
void blk_exp_client_request_start(BlkExpClient *c);
/* The request's block I/O is over: drains stop waiting for it.  home */
void blk_exp_client_io_done(BlkExpClient *c);
/*
 * The request's reply is sent (or dropped): its last access to @c, which
 * may move or be torn down as soon as the count drops.  home
 */
void blk_exp_client_request_end(BlkExpClient *c);

/*
 * The receive loop has ended: let the requests in flight finish and send
 * their replies, and go back to the main loop (where the caller detaches).
 * Receive loop.
 */
void coroutine_fn blk_exp_client_finish(BlkExpClient *c);

/*
 * Close @c in whatever phase it is: set closing, shut the transport down
 * (pending receives and sends fail), resume the loop if it is parked.
 * Main loop.
 */
void blk_exp_client_request_close(BlkExpClient *c) TSA_REQUIRES(bql);

/* The export's side: its dev ops forward drains and moves here. */
void blk_exp_clients_drained_begin(BlockExport *exp) TSA_REQUIRES(bql);
bool blk_exp_clients_drained_poll(BlockExport *exp) TSA_REQUIRES(bql);
void blk_exp_clients_drained_end(BlockExport *exp) TSA_REQUIRES(bql);
void blk_exp_clients_aio_context_changed(BlockExport *exp, AioContext *ctx)
    TSA_REQUIRES(bql);
/* Close every client of @exp (request_shutdown). */
void blk_exp_clients_close_all(BlockExport *exp) TSA_REQUIRES(bql);

#endif /* BLOCK_EXPORT_CLIENT_H */
