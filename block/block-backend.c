/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend: the root parent through which exports and jobs do I/O on a
 * node.  The backend is attached to its node by one edge ("root", class
 * child_root below) that carries the permissions its user asked for,
 * describes the user in permission conflicts, and receives the node's
 * drain, resize and AioContext events.
 *
 * Requests come from coroutines in any thread.  Each one is counted in
 * blk->requests from start to finish and, while its node is drained, is
 * parked on queued_requests (unless request queuing is disabled) instead
 * of reaching the node; a parked request does not count as in flight, so
 * a drain never waits for requests it is itself holding back.
 *
 * Invariants:
 *  - blk->root changes only under the graph write lock; the I/O path reads
 *    it under the graph read lock, taken after the request has passed the
 *    parking point (graph-lock.h: drain first, then lock).
 *  - A request is counted in exactly one half of blk->requests at any time
 *    (in flight or parked), and moves between them with one atomic add, so
 *    "the backend has no live request" is one atomic load of zero.
 *  - quiesce_counter > 0 exactly while the node is drained through our
 *    edge (drain.c calls drained_begin/end once per section of the node);
 *    dev_ops->drained_begin/end are called on its 0->1 and 1->0 steps.
 *  - The I/O path takes no lock that other threads contend for except the
 *    queue lock, and that only while the backend is quiesced.
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/main-loop.h"
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
    int refcnt;                     /* BQL */
    QLIST_ENTRY(BlockBackend) link; /* in all_backends; BQL */

    /*
     * The edge to our node, or NULL.  Written under the graph write lock
     * (main loop); read by the main loop or under the graph read lock.
     */
    BdrvChild *root;

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

    const BlockDevOps *dev_ops;     /* BQL */
    void *dev_opaque;               /* BQL */
    bool allow_aio_context_change;  /* BQL */
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

/* Every backend, in creation order, for blk_next().  BQL */
static QLIST_HEAD(, BlockBackend) all_backends TSA_GUARDED_BY(bql) =
    QLIST_HEAD_INITIALIZER;

/* --- Counting requests ---------------------------------------------------- */

/*
 * Acquire: a waiter that sees a request gone also sees everything the
 * request did to shared state before it left (pairs with the release of
 * the decrement, a sequentially consistent read-modify-write).
 */
static uint64_t blk_requests(BlockBackend *blk)
{
    return qatomic_load_acquire(&blk->requests);
}

static unsigned blk_in_flight(BlockBackend *blk)
{
    return blk_requests(blk) & BLK_IN_FLIGHT_MASK;
}

/* Any thread. */
static void blk_inc_in_flight(BlockBackend *blk)
{
    qatomic_inc(&blk->requests);
}

/*
 * Any thread.  The last access to @blk of a request: once the count drops,
 * a waiter in the main loop may free the backend.
 */
static void blk_dec_in_flight(BlockBackend *blk)
{
    qatomic_dec(&blk->requests);
    /* A drain or blk_unref() may be waiting for the count to drop. */
    aio_wait_kick();
}

/*
 * Park the calling request while the backend is quiesced.  The request is
 * counted in flight on entry and on return.
 *
 * The check against a drain that begins concurrently is Dekker's:
 *   request:  requests++ (in flight);  smp_mb();  read quiesce_counter
 *   drain:    quiesce_counter++;       smp_mb();  read requests (poll)
 * Either the request sees the drain and parks (leaving the in-flight count,
 * then kicking the drain), or the drain sees the request in flight and
 * waits for it.
 */
static void coroutine_fn blk_wait_while_drained(BlockBackend *blk)
{
    for (;;) {
        /*
         * Pairs with smp_mb() in blk_root_drained_begin() (and the one
         * after the parents' quiesce in bdrv_do_drained_begin_quiesce()).
         */
        smp_mb();
        if (!qatomic_read(&blk->quiesce_counter) ||
            qatomic_read(&blk->disable_request_queuing)) {
            return;
        }

        /* No longer in flight, but still alive (see blk->requests). */
        qatomic_add(&blk->requests, BLK_PARKED_ONE - 1);
        /* The drain may be polling for our in-flight count to drop. */
        aio_wait_kick();

        bd_mutex_lock(&blk->queued_requests_lock);
        /*
         * blk_root_drained_end() decrements the counter before it takes
         * the lock to restart us, so testing it under the lock cannot miss
         * the wake-up.
         */
        while (qatomic_read(&blk->quiesce_counter)) {
            co_queue_wait_bd(&blk->queued_requests,
                             &blk->queued_requests_lock);
        }
        bd_mutex_unlock(&blk->queued_requests_lock);

        qatomic_sub(&blk->requests, BLK_PARKED_ONE - 1);
        /* A new drain may have begun since: check again. */
    }
}

/* --- The root edge (child_root): main loop -------------------------------- */

static char *blk_root_get_parent_desc(BdrvChild *c)
{
    BlockBackend *blk = c->opaque;

    return g_strdup(*blk->name ? blk->name : "an unnamed block backend");
}

static void blk_root_drained_begin(BdrvChild *c)
{
    BlockBackend *blk = c->opaque;

    GLOBAL_STATE_CODE();
    if (qatomic_fetch_inc(&blk->quiesce_counter) == 0 &&
        blk->dev_ops && blk->dev_ops->drained_begin) {
        blk->dev_ops->drained_begin(blk->dev_opaque);
    }
    /*
     * Pairs with smp_mb() in blk_wait_while_drained(): the drain's polls
     * of our in-flight count come after this store.  drain.c has the same
     * barrier after quiescing all parents; this one keeps the pairing
     * local to this file for callers that quiesce a single edge (attaching
     * to a drained node).
     */
    smp_mb();
}

static bool blk_root_drained_poll(BdrvChild *c)
{
    BlockBackend *blk = c->opaque;

    GLOBAL_STATE_CODE();
    if (blk->dev_ops && blk->dev_ops->drained_poll &&
        blk->dev_ops->drained_poll(blk->dev_opaque)) {
        return true;
    }
    /* Parked requests are not counted here: the drain holds them back. */
    return blk_in_flight(blk) > 0;
}

static void blk_root_drained_end(BdrvChild *c)
{
    BlockBackend *blk = c->opaque;
    int old;

    GLOBAL_STATE_CODE();
    old = qatomic_fetch_dec(&blk->quiesce_counter);
    assert(old > 0);
    if (old > 1) {
        return;
    }
    if (blk->dev_ops && blk->dev_ops->drained_end) {
        blk->dev_ops->drained_end(blk->dev_opaque);
    }
    /*
     * Woken coroutines run later, in their own contexts (co-lock.h), so
     * holding the lock while waking them is fine.
     */
    bd_mutex_lock(&blk->queued_requests_lock);
    co_queue_restart_all(&blk->queued_requests);
    bd_mutex_unlock(&blk->queued_requests_lock);
}

static void blk_root_resize(BdrvChild *c)
{
    BlockBackend *blk = c->opaque;

    GLOBAL_STATE_CODE();
    if (blk->dev_ops && blk->dev_ops->resize) {
        blk->dev_ops->resize(blk->dev_opaque);
    }
}

/*
 * A backend follows its node to another context only if its user said so
 * (blk_set_allow_aio_context_change(), or blk_set_aio_context() asking
 * itself) or its dev_ops agree: an export that runs its connections in one
 * iothread must not find its node's requests running in another.
 */
static bool blk_root_can_set_aio_ctx(BdrvChild *c, AioContext *ctx,
                                     GHashTable *visited, Error **errp)
{
    BlockBackend *blk = c->opaque;

    GLOBAL_STATE_CODE();
    if (blk->allow_aio_context_change || ctx == qatomic_read(&blk->ctx)) {
        return true;
    }
    if (blk->dev_ops && blk->dev_ops->can_change_aio_context) {
        return blk->dev_ops->can_change_aio_context(blk->dev_opaque, ctx,
                                                    errp);
    }
    error_setg(errp, "Cannot change iothread of active block backend '%s' "
               "to '%s'", blk->name, aio_context_name(ctx));
    return false;
}

static void blk_root_set_aio_ctx(BdrvChild *c, AioContext *ctx,
                                 GHashTable *visited)
{
    BlockBackend *blk = c->opaque;

    GLOBAL_STATE_CODE();
    if (ctx == qatomic_read(&blk->ctx)) {
        return;
    }
    qatomic_set(&blk->ctx, ctx);
    if (blk->dev_ops && blk->dev_ops->aio_context_changed) {
        blk->dev_ops->aio_context_changed(blk->dev_opaque, ctx);
    }
}

static AioContext *blk_root_get_parent_aio_context(BdrvChild *c)
{
    BlockBackend *blk = c->opaque;

    return qatomic_read(&blk->ctx);
}

static const BdrvChildClass child_root = {
    .parent_is_bds = false,
    .get_parent_desc = blk_root_get_parent_desc,
    .drained_begin = blk_root_drained_begin,
    .drained_poll = blk_root_drained_poll,
    .drained_end = blk_root_drained_end,
    .resize = blk_root_resize,
    .can_set_aio_ctx = blk_root_can_set_aio_ctx,
    .set_aio_ctx = blk_root_set_aio_ctx,
    .get_parent_aio_context = blk_root_get_parent_aio_context,
};

/* --- Global state --------------------------------------------------------- */

BlockBackend *blk_new(const char *name, AioContext *ctx, uint64_t perm,
                      uint64_t shared)
{
    BlockBackend *blk = g_new0(BlockBackend, 1);
    BlockBackend *last;

    bql_assert_held();
    blk->name = g_strdup(name ? name : "");
    blk->refcnt = 1;
    blk->ctx = ctx ? ctx : main_context();
    blk->perm = perm;
    blk->shared_perm = shared;
    bd_mutex_init(&blk->queued_requests_lock);
    co_queue_init(&blk->queued_requests);

    /* Append, so that blk_next() lists backends in creation order. */
    last = QLIST_FIRST(&all_backends);
    if (!last) {
        QLIST_INSERT_HEAD(&all_backends, blk, link);
    } else {
        while (QLIST_NEXT(last, link)) {
            last = QLIST_NEXT(last, link);
        }
        blk->link.le_next = NULL;
        blk->link.le_prev = &last->link.le_next;
        last->link.le_next = blk;
    }
    return blk;
}

void blk_unref(BlockBackend *blk)
{
    bql_assert_held();
    if (!blk) {
        return;
    }
    assert(blk->refcnt > 0);
    if (--blk->refcnt > 0) {
        return;
    }

    blk_remove_bs(blk);
    /*
     * Requests parked when the node went away were restarted by the
     * detach (drained_end) and fail with -ENOMEDIUM; wait until none of
     * them, nor any other request, still touches the backend.
     */
    AIO_WAIT_WHILE(NULL, blk_requests(blk) != 0);
    assert(qatomic_read(&blk->quiesce_counter) == 0);
    bd_mutex_lock(&blk->queued_requests_lock);
    assert(co_queue_empty(&blk->queued_requests));
    bd_mutex_unlock(&blk->queued_requests_lock);

    QLIST_REMOVE(blk, link);
    bd_mutex_destroy(&blk->queued_requests_lock);
    g_free(blk->name);
    g_free(blk);
}

int blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp)
{
    BdrvChild *root;

    GLOBAL_STATE_CODE();
    assert(!blk->root);
    bdrv_graph_wrlock();
    root = bdrv_root_attach_child(bs, "root", &child_root,
                                  BDRV_CHILD_IMAGE | BDRV_CHILD_PRIMARY,
                                  blk->perm, blk->shared_perm, blk, errp);
    blk->root = root;
    bdrv_graph_wrunlock();
    return root ? 0 : -EPERM;
}

void blk_remove_bs(BlockBackend *blk)
{
    BlockDriverState *bs;
    BdrvChild *root;

    GLOBAL_STATE_CODE();
    if (!blk->root) {
        return;
    }
    bs = blk->root->bs;
    /*
     * Keep the node until the write lock is released: if ours is the last
     * reference, closing the node drains, which must not happen under the
     * lock.
     */
    bdrv_ref(bs);
    /* Let requests on the old edge finish before it goes. */
    blk_drain(blk);

    bdrv_graph_wrlock();
    root = blk->root;
    blk->root = NULL;
    bdrv_root_unref_child(root);
    bdrv_graph_wrunlock();
    bdrv_unref(bs);
}

int blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared,
                 Error **errp)
{
    GLOBAL_STATE_CODE();
    if (blk->root) {
        int ret;

        bdrv_graph_rdlock_main_loop();
        ret = bdrv_child_try_set_perm(blk->root, perm, shared, errp);
        bdrv_graph_rdunlock_main_loop();
        if (ret < 0) {
            return ret;
        }
    }
    qatomic_set(&blk->perm, perm);
    qatomic_set(&blk->shared_perm, shared);
    return 0;
}

void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared)
{
    GLOBAL_STATE_CODE();
    *perm = blk->perm;
    *shared = blk->shared_perm;
}

void blk_set_dev_ops(BlockBackend *blk, const BlockDevOps *ops, void *opaque)
{
    GLOBAL_STATE_CODE();
    blk->dev_ops = ops;
    blk->dev_opaque = opaque;
}

void blk_set_disable_request_queuing(BlockBackend *blk, bool disable)
{
    GLOBAL_STATE_CODE();
    qatomic_set(&blk->disable_request_queuing, disable);
}

void blk_set_allow_aio_context_change(BlockBackend *blk, bool allow)
{
    GLOBAL_STATE_CODE();
    blk->allow_aio_context_change = allow;
}

void blk_drain(BlockBackend *blk)
{
    BlockDriverState *bs = blk->root ? blk->root->bs : NULL;

    GLOBAL_STATE_CODE();
    if (bs) {
        bdrv_ref(bs);
        bdrv_drained_begin(bs);
    }
    /*
     * The node's drain already waited for our in-flight requests; without
     * a node, requests are not parked but fail at once (-ENOMEDIUM), so
     * this wait is short either way.
     */
    AIO_WAIT_WHILE(NULL, blk_in_flight(blk) > 0);
    if (bs) {
        bdrv_drained_end(bs);
        bdrv_unref(bs);
    }
}

const char *blk_name(BlockBackend *blk)
{
    return blk->name;
}

BlockDriverState *blk_bs(BlockBackend *blk)
{
    GLOBAL_STATE_CODE();
    return blk->root ? blk->root->bs : NULL;
}

int blk_set_aio_context(BlockBackend *blk, AioContext *ctx, Error **errp)
{
    BlockDriverState *bs = blk->root ? blk->root->bs : NULL;
    bool old_allow;
    int ret;

    GLOBAL_STATE_CODE();
    if (!bs) {
        qatomic_set(&blk->ctx, ctx);
        return 0;
    }
    /*
     * We ask, so we agree: our own can_set_aio_ctx must not refuse.  The
     * node's other parents may, and then nothing moves.
     */
    bdrv_ref(bs);
    old_allow = blk->allow_aio_context_change;
    blk->allow_aio_context_change = true;
    ret = bdrv_try_change_aio_context(bs, ctx, NULL, errp);
    blk->allow_aio_context_change = old_allow;
    if (ret == 0) {
        /* The node may have been there already: no callback then. */
        qatomic_set(&blk->ctx, ctx);
    }
    bdrv_unref(bs);
    return ret;
}

/* Statistics are 64-bit counters only, so they can be copied as an array. */
G_STATIC_ASSERT(sizeof(BlockAcctStats) % sizeof(uint64_t) == 0);

void blk_get_stats(BlockBackend *blk, BlockAcctStats *stats)
{
    const uint64_t *src = (const uint64_t *)&blk->stats;
    uint64_t *dst = (uint64_t *)stats;

    for (size_t i = 0; i < sizeof(*stats) / sizeof(uint64_t); i++) {
        dst[i] = qatomic_read(&src[i]);
    }
}

BlockBackend *blk_next(BlockBackend *blk)
{
    bql_assert_held();
    return blk ? QLIST_NEXT(blk, link) : QLIST_FIRST(&all_backends);
}

/* --- I/O: any thread ------------------------------------------------------ */

/*
 * Read the graph (blk->root and its node) from wherever we are: coroutines
 * take the read lock, the main loop outside coroutines needs none.  Plain
 * (non-coroutine) code in an iothread may not look at the graph.  The
 * choice depends on in_coroutine(), which cannot change between the two
 * calls: nothing in between yields.
 */
static void blk_graph_rdlock_any(void) TSA_ACQUIRE_SHARED(graph_lock)
    TSA_NO_TSA
{
    if (in_coroutine()) {
        bdrv_graph_co_rdlock();
    } else {
        bdrv_graph_rdlock_main_loop();
    }
}

static void blk_graph_rdunlock_any(void) TSA_RELEASE_SHARED(graph_lock)
    TSA_NO_TSA
{
    if (in_coroutine()) {
        bdrv_graph_co_rdunlock();
    } else {
        bdrv_graph_rdunlock_main_loop();
    }
}

AioContext *blk_get_aio_context(BlockBackend *blk)
{
    IO_CODE();
    return qatomic_read(&blk->ctx);
}

int64_t blk_getlength(BlockBackend *blk)
{
    int64_t len;

    IO_CODE();
    blk_graph_rdlock_any();
    len = blk->root ? bdrv_get_total_bytes(blk->root->bs) : -ENOMEDIUM;
    blk_graph_rdunlock_any();
    return len;
}

bool blk_is_read_only(BlockBackend *blk)
{
    IO_CODE();
    return !(qatomic_read(&blk->perm) & BLK_PERM_WRITE);
}

uint32_t blk_get_request_alignment(BlockBackend *blk)
{
    uint32_t align = BDRV_SECTOR_SIZE;

    IO_CODE();
    blk_graph_rdlock_any();
    if (blk->root) {
        align = blk->root->bs->bl.request_alignment;
    }
    blk_graph_rdunlock_any();
    return align;
}

uint64_t blk_get_max_transfer(BlockBackend *blk)
{
    uint64_t max = BDRV_REQUEST_MAX_BYTES;

    IO_CODE();
    blk_graph_rdlock_any();
    if (blk->root && blk->root->bs->bl.max_transfer) {
        max = MIN(max, blk->root->bs->bl.max_transfer);
    }
    blk_graph_rdunlock_any();
    return ROUND_DOWN(max, (uint64_t)blk_get_request_alignment(blk));
}

/* --- Requests ------------------------------------------------------------- */

/* The first five have statistics (blk_acct_fields). */
typedef enum BlkReqType {
    BLK_REQ_READ,
    BLK_REQ_WRITE,
    BLK_REQ_ZERO,
    BLK_REQ_DISCARD,
    BLK_REQ_FLUSH,
    BLK_REQ_BLOCK_STATUS,
    BLK_REQ_TRUNCATE,
} BlkReqType;

typedef struct BlkRequest {
    BlkReqType type;
    int64_t offset;                 /* truncate: the new size */
    int64_t bytes;
    IOVec *qiov;                    /* read, write */
    BdrvRequestFlags flags;         /* read, write, zero */
    int64_t *pnum;                  /* block status */
    int *status;                    /* block status */
    Error **errp;                   /* truncate */
} BlkRequest;

/* Where each accounted request type counts; SIZE_MAX: not counted. */
typedef struct BlkAcctFields {
    size_t bytes, ops, failed, invalid, time_ns;
} BlkAcctFields;

#define STAT(f) offsetof(BlockAcctStats, f)

/*
 * BlockAcctStats has no invalid_zero_ops or invalid_unmap_ops: invalid
 * write-zeroes and discards count as invalid writes.
 */
static const BlkAcctFields blk_acct_fields[] = {
    [BLK_REQ_READ] = { STAT(rd_bytes), STAT(rd_ops), STAT(failed_rd_ops),
                       STAT(invalid_rd_ops), STAT(rd_total_time_ns) },
    [BLK_REQ_WRITE] = { STAT(wr_bytes), STAT(wr_ops), STAT(failed_wr_ops),
                        STAT(invalid_wr_ops), STAT(wr_total_time_ns) },
    [BLK_REQ_ZERO] = { STAT(zero_bytes), STAT(zero_ops),
                       STAT(failed_zero_ops), STAT(invalid_wr_ops),
                       STAT(zero_total_time_ns) },
    [BLK_REQ_DISCARD] = { STAT(unmap_bytes), STAT(unmap_ops),
                          STAT(failed_unmap_ops), STAT(invalid_wr_ops),
                          STAT(unmap_total_time_ns) },
    [BLK_REQ_FLUSH] = { SIZE_MAX, STAT(flush_ops), STAT(failed_flush_ops),
                        STAT(invalid_flush_ops), STAT(flush_total_time_ns) },
};

static void blk_stat_add(BlockBackend *blk, size_t field, uint64_t n)
{
    if (field != SIZE_MAX) {
        qatomic_add((uint64_t *)((char *)&blk->stats + field), n);
    }
}

/*
 * Count a request that was refused before reaching the node (@valid
 * false), or that completed with @ret after starting at @start_ns.
 */
static void blk_account(BlockBackend *blk, const BlkRequest *r, bool valid,
                        int ret, int64_t start_ns)
{
    const BlkAcctFields *f;
    int64_t now = get_clock_ns();

    if (r->type >= G_N_ELEMENTS(blk_acct_fields)) {
        return;
    }
    f = &blk_acct_fields[r->type];
    if (!valid) {
        blk_stat_add(blk, f->invalid, 1);
    } else if (ret < 0) {
        blk_stat_add(blk, f->failed, 1);
        blk_stat_add(blk, f->time_ns, now - start_ns);
    } else {
        blk_stat_add(blk, f->ops, 1);
        blk_stat_add(blk, f->bytes, r->bytes);
        blk_stat_add(blk, f->time_ns, now - start_ns);
    }
    qatomic_set(&blk->stats.last_access_time_ns, now);
}

/*
 * The backend's own checks, before the node sees the request: a node to
 * send it to, the permission it needs, and a range inside the node.
 */
static int blk_check_request(BlockBackend *blk, const BlkRequest *r)
    GRAPH_RDLOCK
{
    uint64_t perm = qatomic_read(&blk->perm);
    int64_t len;

    if (!blk->root) {
        error_setg(r->errp, "Block backend '%s' has no node", blk->name);
        return -ENOMEDIUM;
    }
    switch (r->type) {
    case BLK_REQ_WRITE:
    case BLK_REQ_ZERO:
    case BLK_REQ_DISCARD:
        if (!(perm & BLK_PERM_WRITE)) {
            return -EPERM;
        }
        break;
    case BLK_REQ_TRUNCATE:
        if (!(perm & BLK_PERM_RESIZE)) {
            error_setg(r->errp, "Block backend '%s' does not have the "
                       "'resize' permission", blk->name);
            return -EPERM;
        }
        if (r->offset < 0) {
            error_setg(r->errp, "Invalid size %" PRId64, r->offset);
            return -EINVAL;
        }
        return 0;
    case BLK_REQ_FLUSH:
        return 0;
    default:
        break;
    }

    if (r->offset < 0 || r->bytes < 0) {
        return -EIO;
    }
    if ((r->type == BLK_REQ_READ || r->type == BLK_REQ_WRITE) &&
        r->bytes > BDRV_REQUEST_MAX_BYTES) {
        return -EIO;
    }
    len = bdrv_get_total_bytes(blk->root->bs);
    if (r->offset > len || len - r->offset < r->bytes) {
        return -EIO;
    }
    return 0;
}

static int coroutine_fn blk_co_do_request(BlockBackend *blk,
                                          const BlkRequest *r) GRAPH_RDLOCK
{
    BdrvChild *root = blk->root;
    BlockDriverState *file;
    int64_t map;
    int ret;

    switch (r->type) {
    case BLK_REQ_READ:
        return bdrv_co_preadv(root, r->offset, r->bytes, r->qiov, r->flags);
    case BLK_REQ_WRITE:
        return bdrv_co_pwritev(root, r->offset, r->bytes, r->qiov, r->flags);
    case BLK_REQ_ZERO:
        return bdrv_co_pwrite_zeroes(root, r->offset, r->bytes, r->flags);
    case BLK_REQ_DISCARD:
        return bdrv_co_pdiscard(root, r->offset, r->bytes);
    case BLK_REQ_FLUSH:
        return bdrv_co_flush(root->bs);
    case BLK_REQ_BLOCK_STATUS:
        ret = bdrv_co_block_status(root->bs, true, r->offset, r->bytes,
                                   r->pnum, &map, &file);
        if (ret < 0) {
            return ret;
        }
        *r->status = ret;
        return 0;
    case BLK_REQ_TRUNCATE:
        /* Not exact, like block_resize: a driver may round up. */
        return bdrv_co_truncate(root, r->offset, false, r->errp);
    }
    g_assert_not_reached();
}

/*
 * Every request goes through here: counted, parked while drained, checked,
 * sent to the node under the graph read lock, accounted.  Called
 * concurrently from coroutines in any thread.
 */
static int coroutine_fn blk_co_request(BlockBackend *blk, const BlkRequest *r)
{
    int64_t start_ns;
    bool valid;
    int ret;

    IO_CODE();
    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    start_ns = get_clock_ns();

    bdrv_graph_co_rdlock();
    ret = blk_check_request(blk, r);
    valid = ret == 0;
    if (valid) {
        ret = blk_co_do_request(blk, r);
    }
    bdrv_graph_co_rdunlock();

    blk_account(blk, r, valid, ret, start_ns);
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, IOVec *qiov,
                               BdrvRequestFlags flags)
{
    BlkRequest r = {
        .type = BLK_REQ_READ, .offset = offset, .bytes = bytes,
        .qiov = qiov, .flags = flags,
    };

    assert(bytes < 0 || qiov->size == (uint64_t)bytes);
    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, IOVec *qiov,
                                BdrvRequestFlags flags)
{
    BlkRequest r = {
        .type = BLK_REQ_WRITE, .offset = offset, .bytes = bytes,
        .qiov = qiov, .flags = flags,
    };

    assert(bytes < 0 || qiov->size == (uint64_t)bytes);
    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_pread(BlockBackend *blk, int64_t offset,
                              int64_t bytes, void *buf,
                              BdrvRequestFlags flags)
{
    IOVec qiov;

    iovec_init_buf(&qiov, buf, MAX(bytes, 0));
    return blk_co_preadv(blk, offset, bytes, &qiov, flags);
}

int coroutine_fn blk_co_pwrite(BlockBackend *blk, int64_t offset,
                               int64_t bytes, const void *buf,
                               BdrvRequestFlags flags)
{
    IOVec qiov;

    /* The write only reads the buffer. */
    iovec_init_buf(&qiov, (void *)buf, MAX(bytes, 0));
    return blk_co_pwritev(blk, offset, bytes, &qiov, flags);
}

int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    BlkRequest r = {
        .type = BLK_REQ_ZERO, .offset = offset, .bytes = bytes,
        .flags = flags,
    };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes)
{
    BlkRequest r = {
        .type = BLK_REQ_DISCARD, .offset = offset, .bytes = bytes,
    };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_flush(BlockBackend *blk)
{
    BlkRequest r = { .type = BLK_REQ_FLUSH };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_block_status(BlockBackend *blk, int64_t offset,
                                     int64_t bytes, int64_t *pnum,
                                     int *status)
{
    BlkRequest r = {
        .type = BLK_REQ_BLOCK_STATUS, .offset = offset, .bytes = bytes,
        .pnum = pnum, .status = status,
    };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset,
                                 Error **errp)
{
    BlkRequest r = {
        .type = BLK_REQ_TRUNCATE, .offset = offset, .errp = errp,
    };

    return blk_co_request(blk, &r);
}

/* --- Synchronous wrappers: main loop -------------------------------------- */

typedef struct BlkSyncCo {
    BlockBackend *blk;
    BlkRequest req;
    IOVec qiov;
    int ret;
    bool done;          /* atomic: written last by the coroutine */
} BlkSyncCo;

static void coroutine_fn blk_sync_co_entry(void *opaque)
{
    BlkSyncCo *s = opaque;

    s->ret = blk_co_request(s->blk, &s->req);
    /* Pairs with the load-acquire in blk_sync_run(): ret is visible. */
    qatomic_store_release(&s->done, true);
    /* @s may be gone now: the waiter can return as soon as it sees done. */
    aio_wait_kick();
}

/*
 * Run @s's request in a coroutine in the backend's context and wait for it
 * in the main loop.  A request on a drained node parks until the drain
 * ends, so this must not be called inside a drained section of the node.
 */
static int blk_sync_run(BlkSyncCo *s)
{
    GLOBAL_STATE_CODE();
    assert(!in_coroutine());
    aio_co_enter(blk_get_aio_context(s->blk),
                 co_create(blk_sync_co_entry, s));
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&s->done));
    return s->ret;
}

static int blk_sync_rw(BlockBackend *blk, BlkReqType type, int64_t offset,
                       int64_t bytes, void *buf, BdrvRequestFlags flags)
{
    BlkSyncCo s = {
        .blk = blk,
        .req = {
            .type = type, .offset = offset, .bytes = bytes,
            .qiov = &s.qiov, .flags = flags,
        },
    };

    iovec_init_buf(&s.qiov, buf, MAX(bytes, 0));
    return blk_sync_run(&s);
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    return blk_sync_rw(blk, BLK_REQ_READ, offset, bytes, buf, flags);
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    /* The write only reads the buffer. */
    return blk_sync_rw(blk, BLK_REQ_WRITE, offset, bytes, (void *)buf,
                       flags);
}

int blk_flush(BlockBackend *blk)
{
    BlkSyncCo s = { .blk = blk, .req = { .type = BLK_REQ_FLUSH } };

    return blk_sync_run(&s);
}
