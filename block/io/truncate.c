/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Truncate, and the node's size that it changes.
 *
 * A truncate is a serialising tracked request from the first byte that
 * changes to the end of the node, so no request sees half a resize (a
 * read-modify-write of the old last block above all), and requests that
 * waited behind it check their range again (io.c).  The size
 * (bs->total_bytes) is written by open and truncate and read with
 * qatomic_read anywhere; the parents hear of a change through their
 * resize callbacks, in the main loop.  Coroutine code in any AioContext,
 * under the graph read lock, except the accessors at the end.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/io/io-int.h"
#include "util/aio.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

/*
 * Tell @bs's parents that its size changed.  Their resize callbacks are
 * main-loop code: a coroutine elsewhere goes there and comes back.
 */
static void coroutine_fn bdrv_co_parents_resized(BlockDriverState *bs)
    GRAPH_RDLOCK
{
    AioContext *home = aio_get_current_context();
    bool move = home != main_context();
    BdrvChild *c;

    if (move) {
        aio_co_reschedule_self(main_context());
    }
    GLOBAL_STATE_CODE();
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        if (c->klass->resize) {
            c->klass->resize(c);
        }
    }
    if (move) {
        aio_co_reschedule_self(home);
    }
}

int coroutine_fn bdrv_co_truncate(BdrvChild *child, int64_t offset,
                                  bool exact, Error **errp)
{
    BlockDriverState *bs = child->bs;
    const BlockDriver *drv = bs->drv;
    BdrvTrackedRequest req;
    int64_t old_size, start;
    int ret;

    IO_CODE();
    if (!drv) {
        error_setg(errp, "Node has no medium");
        return -ENOMEDIUM;
    }
    if (offset < 0) {
        error_setg(errp, "Image size cannot be negative");
        return -EINVAL;
    }
    if (offset > BDRV_MAX_LENGTH) {
        error_setg(errp, "Image size too large; max %" PRId64,
                   (int64_t)BDRV_MAX_LENGTH);
        return -EFBIG;
    }
    if (bs->read_only) {
        error_setg(errp, "Node '%s' is read-only", bs->node_name);
        return -EPERM;
    }
    if (!drv->bdrv_co_truncate) {
        error_setg(errp, "Driver '%s' does not support resize",
                   drv->format_name);
        return -ENOTSUP;
    }

    bdrv_inc_in_flight(bs);
    /*
     * Exclude every request from the first byte that changes to the end:
     * none of them may see half a resize (a read-modify-write of the old
     * last block, above all).
     */
    old_size = bdrv_get_total_bytes(bs);
    start = MIN(old_size, offset);
    tracked_request_begin(&req, bs, start, INT64_MAX - start,
                          BDRV_TRACK_SERIALISING);
    old_size = bdrv_get_total_bytes(bs);
    ret = bdrv_driver_check_result(bs, "truncate",
                                   drv->bdrv_co_truncate(bs, offset, exact,
                                                         errp));
    if (ret == 0) {
        int64_t len = drv->bdrv_co_getlength ?
                      drv->bdrv_co_getlength(bs) : -ENOTSUP;

        if (len >= 0) {
            qatomic_set(&bs->total_bytes, len);
        } else if (bdrv_get_total_bytes(bs) == old_size) {
            qatomic_set(&bs->total_bytes, offset);
        }
    }
    bdrv_data_changed(bs);
    if (ret == 0 && bdrv_get_total_bytes(bs) != old_size) {
        /* Before the end of the request: no write may land past the
         * bitmaps' old size unrecorded. */
        bdrv_dirty_bitmap_truncate(bs, bdrv_get_total_bytes(bs));
    }
    tracked_request_end(&req);
    if (ret == 0 && bdrv_get_total_bytes(bs) != old_size) {
        bdrv_co_parents_resized(bs);
    }
    bdrv_dec_in_flight(bs);
    return ret;
}

/* --- The size, for any thread ---------------------------------------------- */

int64_t bdrv_co_getlength(BlockDriverState *bs)
{
    IO_CODE();
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    return bdrv_get_total_bytes(bs);
}

int64_t bdrv_get_total_bytes(BlockDriverState *bs)
{
    IO_CODE();
    return qatomic_read(&bs->total_bytes);
}
