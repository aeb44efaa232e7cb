/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "copy-before-write" filter driver (QEMU's name and options: file,
 * target).  See include/block/copy-before-write.h for what it does.
 *
 * The point-in-time guarantee: from the moment the filter is above the
 * source (inserted drained, so no request of the old graph is in flight)
 * every request that changes the source passes here, and block_copy()
 * returns only once the target holds the old content of every cluster
 * the request touches -- copied by this request, or by whoever (another
 * request, the backup job) was copying it, which we waited for.  Only
 * then does the request reach the source.
 *
 * Invariants: the block-copy state is created at open and freed at close,
 * when no request is in flight; it is otherwise immutable here (its own
 * lock guards its inside).  I/O callbacks run in any AioContext under the
 * graph read lock.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"
#include "block/drivers/drivers.h"
#include "util/atomic.h"
#include "util/main-loop.h"

typedef struct BDRVCopyBeforeWriteState {
    BlockCopyState *bcs;            /* immutable between open and close */
    BdrvChild *target;              /* immutable between open and close */
    /* Being removed: ask nothing of the children any more.  BQL */
    bool dropping;
} BDRVCopyBeforeWriteState;

static const OptDesc cbw_opts[] = {
    { "file", OPT_NODE, .required = true,
      .help = "the source: node whose old data is copied before writes" },
    { "target", OPT_NODE, .required = true,
      .help = "node that receives the old data" },
    { NULL }
};

static int cbw_open(BlockDriverState *bs, struct json_object *options,
                    int flags, Error **errp)
{
    BDRVCopyBeforeWriteState *s = bs->opaque;
    int64_t size;

    GLOBAL_STATE_CODE();
    if (!bdrv_open_child(options, "file", bs,
                         BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY,
                         false, errp)) {
        return -EINVAL;
    }
    s->target = bdrv_open_child(options, "target", bs, BDRV_CHILD_DATA,
                                false, errp);
    if (!s->target) {
        return -EINVAL;
    }
    /* Read the new edge; the main loop is the graph's only writer. */
    GRAPH_RDLOCK_GUARD_MAINLOOP();

    /* A parent joins its first child's iothread; both must share one. */
    if (s->target->bs->aio_context != bs->file->bs->aio_context) {
        error_setg(errp, "Cannot use node '%s' as target of '%s': they are "
                   "in different iothreads", s->target->bs->node_name,
                   bs->file->bs->node_name);
        return -EINVAL;
    }
    size = bdrv_get_total_bytes(bs->file->bs);
    if (size != bdrv_get_total_bytes(s->target->bs)) {
        error_setg(errp, "Source and target image have different sizes");
        return -EINVAL;
    }

    s->bcs = block_copy_state_new(bs->file, s->target,
                                  BLOCK_COPY_CLUSTER_SIZE, errp);
    if (!s->bcs) {
        return -EINVAL;
    }
    /* Everything is still to be protected (QEMU's default, no bitmap). */
    bdrv_set_dirty_bitmap(block_copy_dirty_bitmap(s->bcs), 0, size);
    qatomic_set(&bs->total_bytes, size);
    return 0;
}

static void cbw_close(BlockDriverState *bs)
{
    BDRVCopyBeforeWriteState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    block_copy_state_free(s->bcs);
    s->bcs = NULL;
}

/*
 * As QEMU's: the source gets what our users need, plus consistent read
 * for the copies; once we have users, nobody may write or resize the
 * source behind our back.  The target is written only by us (and whoever
 * the user lets share it), and must keep its size.
 */
static void GRAPH_RDLOCK cbw_child_perm(BlockDriverState *bs, BdrvChild *c,
                                        BdrvChildRole role,
                                        uint64_t parent_perm,
                                        uint64_t parent_shared,
                                        uint64_t *nperm, uint64_t *nshared)
{
    BDRVCopyBeforeWriteState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    if (s->dropping) {
        *nperm = 0;
        *nshared = BLK_PERM_ALL;
        return;
    }
    if (!(role & BDRV_CHILD_FILTERED)) {
        *nperm = BLK_PERM_WRITE;
        *nshared = BLK_PERM_ALL & ~BLK_PERM_RESIZE;
        return;
    }
    bdrv_default_perms(bs, c, role, parent_perm, parent_shared, nperm,
                       nshared);
    if (!QLIST_EMPTY(&bs->parents)) {
        *nperm |= BLK_PERM_CONSISTENT_READ;
        *nshared &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    }
}

/*
 * Before [offset, offset + bytes) of the source changes: its old content
 * must be on the target.  A failure fails the request
 * (break-guest-write).
 */
static int coroutine_fn GRAPH_RDLOCK
cbw_do_copy_before_write(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVCopyBeforeWriteState *s = bs->opaque;

    IO_CODE();
    return block_copy(s->bcs, offset, bytes, NULL);
}

static int coroutine_fn GRAPH_RDLOCK
cbw_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
               IOVec *qiov, BdrvRequestFlags flags)
{
    int ret;

    IO_CODE();
    ret = cbw_do_copy_before_write(bs, offset, bytes);
    return ret < 0 ? ret
                   : bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
cbw_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     BdrvRequestFlags flags)
{
    int ret;

    IO_CODE();
    ret = cbw_do_copy_before_write(bs, offset, bytes);
    return ret < 0 ? ret
                   : bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn GRAPH_RDLOCK
cbw_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int ret;

    IO_CODE();
    ret = cbw_do_copy_before_write(bs, offset, bytes);
    return ret < 0 ? ret : bdrv_co_pdiscard(bs->file, offset, bytes);
}

/* The copy bitmap has the source's size: the source keeps it. */
static int coroutine_fn GRAPH_RDLOCK
cbw_co_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                Error **errp)
{
    IO_CODE();
    error_setg(errp, "Cannot resize node '%s': copy-before-write keeps "
               "the size of its source", bs->node_name);
    return -ENOTSUP;
}

const BlockDriver bdrv_copy_before_write = {
    .format_name = "copy-before-write",
    .instance_size = sizeof(BDRVCopyBeforeWriteState),
    .opts = cbw_opts,
    .is_filter = true,

    .bdrv_open = cbw_open,
    .bdrv_close = cbw_close,
    .bdrv_child_perm = cbw_child_perm,
    .bdrv_refresh_limits = bdrv_filter_refresh_limits,

    .bdrv_co_preadv = bdrv_filter_co_preadv,
    .bdrv_co_pwritev = cbw_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = cbw_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK |
                            BDRV_REQ_FUA,
    .bdrv_co_pdiscard = cbw_co_pdiscard,
    .bdrv_co_block_status = bdrv_filter_co_block_status,
    .bdrv_co_truncate = cbw_co_truncate,
    .bdrv_co_getlength = bdrv_filter_co_getlength,
};

/* --- Inserting and removing ------------------------------------------------ */

BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  BlockCopyState **bcs, Error **errp)
{
    struct json_object *opts = json_object_new_object();
    BlockDriverState *cbw;

    GLOBAL_STATE_CODE();
    json_object_object_add(opts, "driver",
                           json_object_new_string("copy-before-write"));
    if (filter_node_name) {
        json_object_object_add(opts, "node-name",
                               json_object_new_string(filter_node_name));
    }
    json_object_object_add(opts, "file",
                           json_object_new_string(source->node_name));
    json_object_object_add(opts, "target",
                           json_object_new_string(target->node_name));
    cbw = bdrv_open_implicit(opts, errp);
    json_object_put(opts);
    if (!cbw) {
        return NULL;
    }
    if (bdrv_replace_node(source, cbw, errp) < 0) {
        bdrv_unref(cbw);
        return NULL;
    }
    *bcs = ((BDRVCopyBeforeWriteState *)cbw->opaque)->bcs;
    return cbw;
}

void bdrv_cbw_drop(BlockDriverState *cbw)
{
    BDRVCopyBeforeWriteState *s = cbw->opaque;
    Error *local_err = NULL;
    BlockDriverState *source;

    GLOBAL_STATE_CODE();
    /*
     * First let the filter's edges ask nothing (no request passes while
     * drained): otherwise, once our parents are back on the source, our
     * own edge would still carry their permissions and conflict with
     * them.  Then give the parents back; that only lowers what is asked
     * of the source, so it cannot fail for permissions.
     */
    bdrv_drained_begin(cbw);
    s->dropping = true;
    bdrv_graph_rdlock_main_loop();
    source = cbw->file->bs;
    if (bdrv_refresh_perms(cbw, NULL, 0, 0, &local_err) < 0) {
        warn_report_err(local_err);
        local_err = NULL;
    }
    bdrv_graph_rdunlock_main_loop();
    if (bdrv_replace_node(cbw, source, &local_err) < 0) {
        warn_report_err(local_err);
    }
    bdrv_drained_end(cbw);
    bdrv_unref(cbw);
}
