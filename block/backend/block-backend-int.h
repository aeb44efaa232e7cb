/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals of BlockBackend shared by its two files: block-backend.c
 * (global state, the root edge and its drain callbacks, the counting and
 * parking of requests that pairs with them) and block-backend-io.c (the
 * request path).  Private to block/.
 */
#ifndef BLOCK_BLOCK_BACKEND_INT_H
#define BLOCK_BLOCK_BACKEND_INT_H

#include "block/block-backend.h"
#include "block/block_int.h"
#include "util/co-lock.h"
#include "util/queue.h"
#include "util/thread.h"

/*
 * blk->requests holds two counts in one atomic word:
 *   low 32 bits:  requests in flight (what a drain waits for);
 *   high 32 bits: requests parked while the backend is quiesced.
 * Parking adds (BLK_PARKED_ONE - 1) and resuming subtracts it: a request
 * moves from one count to the other without ever being counted in neither,
 * which blk_unref() relies on to know when no request can touch the
 * backend any more.
 */
#define BLK_IN_FLIGHT_MASK  0xffffffffULL
#define BLK_PARKED_ONE      (1ULL << 32)

struct BlockBackend {
    char *name;                     /* immutable: "exp0", for messages */
    int refcnt TSA_GUARDED_BY(bql);
    QTAILQ_ENTRY(BlockBackend TSA_GUARDED_BY(bql)) link;  /* all_backends */

    /*
     * The edge to our node, or NULL.  Written under the graph write lock
     * (main loop); read by the main loop or under the graph read lock.
     */
    BdrvChild * GRAPH_RDLOCK_PTR root;

    /*
     * Home context: where the synchronous wrappers run their coroutines and
     * what the node's other parents are told.  Written in the main loop
     * (drained, under the graph write lock when attached); atomic reads.
     */
    AioContext *ctx;

    /*
     * What we take and share on the node.  Written in the main loop with
     * qatomic_set after the graph accepted them; the I/O path's permission
     * checks read them with qatomic_read.
     */
    uint64_t perm;
    uint64_t shared_perm;

    const BlockDevOps *dev_ops TSA_GUARDED_BY(bql);
    void *dev_opaque TSA_GUARDED_BY(bql);
    bool allow_aio_context_change TSA_GUARDED_BY(bql);
    bool disable_request_queuing;   /* written BQL; atomic */

    /* Drained sections of our node.  Written in the main loop; atomic. */
    int quiesce_counter;

    /* In-flight and parked requests (see above).  atomic */
    uint64_t requests;

    /* Parked requests; their wake-up is ordered by the lock. */
    BdMutex queued_requests_lock;
    CoQueue queued_requests;        /* queued_requests_lock */

    /* Updated by requests in any thread; every field atomic. */
    BlockAcctStats stats;
};

/*
 * Count a request in flight on entry (any thread), and uncount it as its
 * last access to @blk: once the count drops, a waiter in the main loop
 * may free the backend.
 */
void blk_inc_in_flight(BlockBackend *blk);
void blk_dec_in_flight(BlockBackend *blk);
/*
 * Park the calling request while the backend is quiesced; counted in
 * flight on entry and on return (the Dekker pair with the drain is in
 * block-backend.c).
 */
void coroutine_fn blk_wait_while_drained(BlockBackend *blk);

#endif /* BLOCK_BLOCK_BACKEND_INT_H */
