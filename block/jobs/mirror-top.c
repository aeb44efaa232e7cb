/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mirror_top: the filter node a mirror job inserts above its source.  Every
 * user of the source goes through it while the job runs (an NBD export of
 * the source included), so the job sees every write:
 *
 *  - background copy mode: the filter passes everything to the source; the
 *    job's dirty bitmap on the source records the writes (block/io/io.c).
 *  - write-blocking copy mode: the job's bitmap is disabled and the filter
 *    does the recording.  A guest write becomes a MirrorOp (serialised with
 *    the job's copies, mirror-int.h), goes to the source, then to the
 *    target for the parts that are clean in the bitmap (dirty parts will
 *    be copied by the job anyway), before the guest sees it complete.  A
 *    target write that fails marks its range dirty again and is reported
 *    per on-target-error; the guest's write still succeeds, as in QEMU.
 *    Write-zeroes are mirrored the same way; discards only mark dirty.
 *
 * In both modes a completed write kicks the job (mirror_kick()), so an idle
 * READY job copies what it left dirty without polling.
 *
 * Without a job (before the job starts and after it ends) the filter is a
 * plain pass-through.  The driver is internal: it is not listed among the
 * drivers and refuses to be opened except by mirror_top_open().
 *
 * Locking: the job pointer is written in the main loop with the node
 * drained and read with qatomic_read by I/O coroutines in any thread.
 */
#include "util/osdep.h"

#include "block/backend/block-backend-int.h"
#include "block/block-io.h"
#include "block/drivers/drivers.h"
#include "block/jobs/mirror-int.h"
#include "util/atomic.h"
#include "util/main-loop.h"

typedef struct MirrorTopState {
    MirrorBlockJob *job;            /* see above: drained writes, atomic */
} MirrorTopState;

/* Set by mirror_top_open() around bdrv_open(); BQL. */
static bool mirror_top_opening;

static int mirror_top_drv_open(BlockDriverState *bs,
                               struct json_object *options, int flags,
                               Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!mirror_top_opening) {
        error_setg(errp, "Driver 'mirror_top' is internal to blockdev-mirror");
        return -EINVAL;
    }
    if (!bdrv_open_child(options, "file", bs,
                         BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY,
                         false, errp)) {
        return -EINVAL;
    }
    /* Read the new edge; the main loop is the graph's only writer. */
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    qatomic_set(&bs->total_bytes, bdrv_get_total_bytes(bs->file->bs));
    return 0;
}

BlockDriverState *mirror_top_open(BlockDriverState *source,
                                  const char *node_name, Error **errp)
{
    struct json_object *opts = json_object_new_object();
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    json_object_object_add(opts, "driver",
                           json_object_new_string("mirror_top"));
    json_object_object_add(opts, "file",
                           json_object_new_string(source->node_name));
    if (node_name) {
        json_object_object_add(opts, "node-name",
                               json_object_new_string(node_name));
    }
    mirror_top_opening = true;
    bs = bdrv_open_implicit(opts, errp);
    mirror_top_opening = false;
    json_object_put(opts);
    return bs;
}

void mirror_top_set_job(BlockDriverState *bs, MirrorBlockJob *s)
{
    MirrorTopState *st = bs->opaque;

    GLOBAL_STATE_CODE();
    assert(bs->drv == &bdrv_mirror_top);
    qatomic_set(&st->job, s);
}

static void GRAPH_RDLOCK mirror_top_child_resized(BlockDriverState *bs,
                                                  BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    qatomic_set(&bs->total_bytes, bdrv_get_total_bytes(c->bs));
}

/* --- I/O ------------------------------------------------------------------ */

/* The mirror job attached to @bs, or NULL. */
static MirrorBlockJob *job_of(BlockDriverState *bs)
{
    MirrorTopState *st = bs->opaque;

    return qatomic_read(&st->job);
}

/* @s if it is in write-blocking mode, else NULL. */
static MirrorBlockJob *active_job(MirrorBlockJob *s)
{
    return s && s->copy_mode == MIRROR_COPY_MODE_WRITE_BLOCKING ? s : NULL;
}

/*
 * Copy the guest's write of [offset, offset + bytes) (@qiov NULL: zeroes)
 * to the target where the bitmap is clean.  The caller holds an op on the
 * range, so no copy of the job runs there.  The write goes to the target
 * through the edge of the job's target backend, not through the backend:
 * we already hold the graph read lock, and a backend request would take
 * it again (a nested read lock can wait forever behind a writer).
 */
static void coroutine_fn GRAPH_RDLOCK
mirror_top_write_target(MirrorBlockJob *s, int64_t offset, int64_t bytes,
                        IOVec *qiov, BdrvRequestFlags flags)
{
    BdrvChild *target = s->target_blk->root;
    int64_t end = offset + bytes, pos = offset;

    while (pos < end) {
        int64_t dirty = bdrv_dirty_bitmap_next_dirty(s->dirty_bitmap, pos,
                                                     end - pos);
        int64_t clean_end = dirty < 0 ? end : dirty;
        int ret = 0;

        if (clean_end > pos) {
            if (qiov) {
                IOVec part;

                iovec_init(&part, qiov->niov);
                iovec_concat(&part, qiov, pos - offset, clean_end - pos);
                ret = bdrv_co_pwritev(target, pos, clean_end - pos, &part,
                                      flags & BDRV_REQ_FUA);
                iovec_destroy(&part);
            } else {
                ret = bdrv_co_pwrite_zeroes(target, pos, clean_end - pos,
                                            flags & BDRV_REQ_MAY_UNMAP);
            }
            if (ret < 0) {
                bdrv_set_dirty_bitmap(s->dirty_bitmap, pos, clean_end - pos);
                mirror_report_error(s, false, -ret);
            }
        }
        if (dirty < 0) {
            break;
        }
        pos = bdrv_dirty_bitmap_next_zero(s->dirty_bitmap, dirty, end - dirty);
        if (pos < 0) {
            break;
        }
    }
}

typedef enum MirrorTopWrite {
    MIRROR_TOP_WRITE,
    MIRROR_TOP_ZEROES,
    MIRROR_TOP_DISCARD,
} MirrorTopWrite;

/* The write itself; @s: the job in write-blocking mode, or NULL. */
static int coroutine_fn GRAPH_RDLOCK
mirror_top_write_through(BlockDriverState *bs, MirrorBlockJob *s,
                         MirrorTopWrite type, int64_t offset, int64_t bytes,
                         IOVec *qiov, BdrvRequestFlags flags)
{
    MirrorOp op;
    int ret;

    if (s) {
        mirror_op_begin(s, &op, offset, bytes, true);
    }
    switch (type) {
    case MIRROR_TOP_WRITE:
        ret = bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
        break;
    case MIRROR_TOP_ZEROES:
        ret = bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
        break;
    default:
        ret = bdrv_co_pdiscard(bs->file, offset, bytes);
        break;
    }
    if (s) {
        if (ret < 0 || type == MIRROR_TOP_DISCARD) {
            /* The source may have changed anyway: copy it later. */
            bdrv_set_dirty_bitmap(s->dirty_bitmap, offset, bytes);
        } else {
            mirror_top_write_target(s, offset, bytes,
                                    type == MIRROR_TOP_WRITE ? qiov : NULL,
                                    flags);
        }
        mirror_op_end(s, &op);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
mirror_top_do_write(BlockDriverState *bs, MirrorTopWrite type, int64_t offset,
                    int64_t bytes, IOVec *qiov, BdrvRequestFlags flags)
{
    MirrorBlockJob *s = job_of(bs);
    int ret;

    ret = mirror_top_write_through(bs, active_job(s), type, offset, bytes,
                                   qiov, flags);
    /*
     * Any copy mode: the write may have left dirty bits for the job (set
     * by block/io/io.c before the source's request completed, or by us).
     */
    if (s) {
        mirror_kick(s);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
mirror_top_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      IOVec *qiov, BdrvRequestFlags flags)
{
    IO_CODE();
    return mirror_top_do_write(bs, MIRROR_TOP_WRITE, offset, bytes, qiov,
                               flags);
}

static int coroutine_fn GRAPH_RDLOCK
mirror_top_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, BdrvRequestFlags flags)
{
    IO_CODE();
    return mirror_top_do_write(bs, MIRROR_TOP_ZEROES, offset, bytes, NULL,
                               flags);
}

static int coroutine_fn GRAPH_RDLOCK
mirror_top_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    IO_CODE();
    return mirror_top_do_write(bs, MIRROR_TOP_DISCARD, offset, bytes, NULL, 0);
}

static const OptDesc mirror_top_opts[] = {
    { "file", OPT_NODE, .required = true, .help = "the mirror's source" },
    { NULL }
};

const BlockDriver bdrv_mirror_top = {
    .format_name = "mirror_top",
    .instance_size = sizeof(MirrorTopState),
    .opts = mirror_top_opts,
    .has_file_child = true,
    .is_filter = true,
    .internal = true,

    .bdrv_open = mirror_top_drv_open,
    .bdrv_child_perm = bdrv_default_perms,
    .bdrv_refresh_limits = bdrv_filter_refresh_limits_bytes,
    .bdrv_child_resized = mirror_top_child_resized,

    .bdrv_co_preadv = bdrv_filter_co_preadv,
    .bdrv_co_pwritev = mirror_top_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = mirror_top_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK |
                            BDRV_REQ_FUA,
    .bdrv_co_pdiscard = mirror_top_co_pdiscard,
    .bdrv_co_block_status = bdrv_filter_co_block_status,
    .bdrv_co_getlength = bdrv_filter_co_getlength,
};
