/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend: the root parent through which exports and jobs do I/O on a
 * node.  The backend is attached to its node by one edge ("root", class
 * child_root below) that carries the permissions its user asked for,
 * describes the user in permission conflicts, and receives the node's
 * drain, resize and AioContext events.  This file has the global state,
 * that edge, and the counting and parking of requests that its drain
 * callbacks pair with; the request path is block-backend-io.c.
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
 *    dev_ops->drained_begin/end are called on its 0->1 and 1->0 steps,
 *    and drained_begin by blk_set_dev_ops() for ops installed while > 0.
 *  - The I/O path takes no lock that other threads contend for except the
 *    queue lock, and that only while the backend is quiesced.
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/backend/block-backend-int.h"
#include "block/block-global-state.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/main-loop.h"
#include "util/queue.h"
#include "util/thread.h"

/* Every backend, in creation order, for blk_next().  BQL */
static QTAILQ_HEAD(, BlockBackend TSA_GUARDED_BY(bql)) all_backends =
    QTAILQ_HEAD_INITIALIZER(all_backends);

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
void blk_inc_in_flight(BlockBackend *blk)
{
    qatomic_inc(&blk->requests);
}

/*
 * Any thread.  The last access to @blk of a request: once the count drops,
 * a waiter in the main loop may free the backend.
 */
void blk_dec_in_flight(BlockBackend *blk)
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
void coroutine_fn blk_wait_while_drained(BlockBackend *blk)
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

    bql_assert_held();
    blk->name = g_strdup(name ? name : "");
    blk->refcnt = 1;
    blk->ctx = ctx ? ctx : main_context();
    blk->perm = perm;
    blk->shared_perm = shared;
    bd_mutex_init(&blk->queued_requests_lock);
    co_queue_init(&blk->queued_requests);

    /* Append, so that blk_next() lists backends in creation order. */
    QTAILQ_INSERT_TAIL(&all_backends, blk, link);
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

    QTAILQ_REMOVE(&all_backends, blk, link);
    bd_mutex_destroy(&blk->queued_requests_lock);
    g_free(blk->name);
    g_free(blk);
}

int blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp)
{
    BdrvChild *root;

    GLOBAL_STATE_CODE();
    bdrv_graph_wrlock();
    assert(!blk->root);
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
    bs = blk_bs(blk);
    if (!bs) {
        return;
    }
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
    int ret = 0;

    GLOBAL_STATE_CODE();
    bdrv_graph_rdlock_main_loop();
    if (blk->root) {
        ret = bdrv_child_try_set_perm(blk->root, perm, shared, errp);
    }
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        return ret;
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
    bool quiesced = qatomic_read(&blk->quiesce_counter) > 0;

    GLOBAL_STATE_CODE();
    /*
     * Ops installed while the node is drained (a job attached to a node
     * that its creator keeps drained) hear the begin now, so that the
     * drained_end they will hear is matched.  Ops removed meanwhile (a
     * user going away) hear nothing more.
     */
    blk->dev_ops = ops;
    blk->dev_opaque = opaque;
    if (quiesced && ops && ops->drained_begin) {
        ops->drained_begin(opaque);
    }
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
    BlockDriverState *bs = blk_bs(blk);

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
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    bdrv_graph_rdlock_main_loop();
    bs = blk->root ? blk->root->bs : NULL;
    bdrv_graph_rdunlock_main_loop();
    return bs;
}

int blk_set_aio_context(BlockBackend *blk, AioContext *ctx, Error **errp)
{
    BlockDriverState *bs = blk_bs(blk);
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
    return blk ? QTAILQ_NEXT(blk, link) : QTAILQ_FIRST(&all_backends);
}
