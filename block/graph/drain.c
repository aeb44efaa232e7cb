/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Drained sections: quiesce a node's users and wait for its requests.
 *
 * Draining a node quiesces its parents, recursively up to the roots
 * (BlockBackends, exports, jobs), each through its BdrvChildClass
 * drained_begin; then polls until the node and all its parents report no
 * request in flight (drained_poll).  Children are not drained: every
 * request on a child comes from the node itself, whose own in-flight count
 * covers it.
 *
 * Invariants (all main loop, BQL):
 *  - bs->quiesce_counter > 0 exactly while bs is in a drained section.
 *  - An edge's quiesced_parent is true exactly while its child is drained
 *    and the edge has told its parent (drained_begin called, drained_end
 *    not yet): a parent attached to a drained node is quiesced at once,
 *    one detached from it is released at once (bdrv_child_set_bs()).
 *  - Nothing here runs under the graph write lock or in a coroutine: a
 *    coroutine asking for a drain is bounced to a main-loop bottom half.
 *  - drained_end never polls.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/graph/drain.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

/* Nesting of bdrv_drain_all_begin(); new nodes start this drained.  BQL */
int bdrv_drain_all_count;

void bdrv_parent_drained_begin_single(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    if (c->quiesced_parent) {
        return;
    }
    c->quiesced_parent = true;
    if (c->klass->drained_begin) {
        c->klass->drained_begin(c);
    }
}

void bdrv_parent_drained_end_single(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    if (!c->quiesced_parent) {
        return;
    }
    c->quiesced_parent = false;
    if (c->klass->drained_end) {
        c->klass->drained_end(c);
    }
}

void bdrv_do_drained_begin_quiesce(BlockDriverState *bs)
{
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    if (qatomic_fetch_inc(&bs->quiesce_counter) > 0) {
        return;
    }
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        bdrv_parent_drained_begin_single(c);
    }
    /*
     * Pairs with the smp_mb() between the in-flight increment and the read
     * of the quiesce counter in the request paths (BlockBackend): either
     * they see us quiesced and park, or we see their request in flight
     * when we poll.
     */
    smp_mb();
}

void bdrv_do_drained_end(BlockDriverState *bs)
{
    BdrvChild *c;
    int old;

    GLOBAL_STATE_CODE();
    old = qatomic_fetch_dec(&bs->quiesce_counter);
    assert(old > 0);
    if (old > 1) {
        return;
    }
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        bdrv_parent_drained_end_single(c);
    }
}

bool bdrv_drain_poll(BlockDriverState *bs)
{
    BdrvChild *c;

    if (qatomic_read(&bs->in_flight)) {
        return true;
    }
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        if (c->klass->drained_poll && c->klass->drained_poll(c)) {
            return true;
        }
    }
    return false;
}

/* --- Bouncing coroutine callers to the main loop ------------------------ */

typedef struct DrainCo {
    BlockDriverState *bs;       /* NULL: drain all */
    bool begin;
    Coroutine *co;
} DrainCo;

static void drain_co_bh(void *opaque)
{
    DrainCo *d = opaque;

    GLOBAL_STATE_CODE();
    if (d->bs) {
        /* Our own count must not keep the drain waiting. */
        bdrv_dec_in_flight(d->bs);
        if (d->begin) {
            bdrv_drained_begin(d->bs);
        } else {
            bdrv_drained_end(d->bs);
        }
    } else if (d->begin) {
        bdrv_drain_all_begin();
    } else {
        bdrv_drain_all_end();
    }
    aio_co_wake(d->co);
}

/* Run the drain operation @d in a main-loop bottom half and wait for it. */
static void coroutine_fn drain_bounce(DrainCo *d)
{
    d->co = co_self();
    if (d->bs) {
        /*
         * Keep @bs from being closed until the bottom half runs: closing
         * drains, and a drain waits for in-flight requests.  (bdrv_ref()
         * is main-loop only.)
         */
        bdrv_inc_in_flight(d->bs);
    }
    aio_bh_schedule_oneshot(main_context(), drain_co_bh, d);
    co_yield();
}

/* --- Drained sections ---------------------------------------------------- */

void bdrv_drained_begin(BlockDriverState *bs)
{
    if (in_coroutine()) {
        DrainCo d = { .bs = bs, .begin = true };

        drain_bounce(&d);
        return;
    }
    GLOBAL_STATE_CODE();
    bdrv_graph_rdlock_main_loop();
    bdrv_do_drained_begin_quiesce(bs);
    AIO_WAIT_WHILE(NULL, bdrv_drain_poll(bs));
    bdrv_graph_rdunlock_main_loop();
}

void bdrv_drained_end(BlockDriverState *bs)
{
    if (in_coroutine()) {
        DrainCo d = { .bs = bs, .begin = false };

        drain_bounce(&d);
        return;
    }
    GLOBAL_STATE_CODE();
    bdrv_graph_rdlock_main_loop();
    bdrv_do_drained_end(bs);
    bdrv_graph_rdunlock_main_loop();
}

void bdrv_drain_all_begin_nopoll(void)
{
    BlockDriverState *bs = NULL;

    GLOBAL_STATE_CODE();
    bdrv_drain_all_count++;
    bdrv_graph_rdlock_main_loop();
    while ((bs = bdrv_next_node_all(bs))) {
        bdrv_do_drained_begin_quiesce(bs);
    }
    bdrv_graph_rdunlock_main_loop();
}

static bool GRAPH_RDLOCK drain_all_poll(void) TSA_REQUIRES(bql)
{
    BlockDriverState *bs = NULL;

    while ((bs = bdrv_next_node_all(bs))) {
        if (bdrv_drain_poll(bs)) {
            return true;
        }
    }
    return false;
}

void bdrv_drain_all_begin(void)
{
    if (in_coroutine()) {
        DrainCo d = { .begin = true };

        drain_bounce(&d);
        return;
    }
    GLOBAL_STATE_CODE();
    bdrv_drain_all_begin_nopoll();
    bdrv_graph_rdlock_main_loop();
    AIO_WAIT_WHILE(NULL, drain_all_poll());
    bdrv_graph_rdunlock_main_loop();
}

void bdrv_drain_all_end(void)
{
    BlockDriverState *bs = NULL;

    if (in_coroutine()) {
        DrainCo d = { .begin = false };

        drain_bounce(&d);
        return;
    }
    GLOBAL_STATE_CODE();
    assert(bdrv_drain_all_count > 0);
    bdrv_graph_rdlock_main_loop();
    while ((bs = bdrv_next_node_all(bs))) {
        bdrv_do_drained_end(bs);
    }
    bdrv_graph_rdunlock_main_loop();
    bdrv_drain_all_count--;
}
