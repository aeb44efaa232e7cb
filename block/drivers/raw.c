/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "raw" format driver: the guest-visible data is the file child's
 * data, byte for byte, or a window of it given by the options offset
 * (default 0) and size (default: up to the end of the child).
 *
 * Requests are passed to the child shifted by the window's offset; the
 * generic layer has already checked them against this node's size, so
 * they never leave the window.  Block status asks the generic layer to
 * recurse into the child (BDRV_BLOCK_RECURSE) at the shifted offset.
 *
 * Invariants: offset and size are immutable after open, and the window
 * lies within the child when the node is opened.  A node without a fixed
 * size follows the child's size when resized through it.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/drivers/drivers.h"
#include "util/atomic.h"
#include "util/main-loop.h"

typedef struct BDRVRawState {
    uint64_t offset;            /* immutable: window start in the child */
    uint64_t size;              /* immutable if has_size */
    bool has_size;              /* immutable */
} BDRVRawState;

static int raw_open(BlockDriverState *bs, struct json_object *options,
                    int flags, Error **errp)
{
    BDRVRawState *s = bs->opaque;
    int64_t child_size;

    GLOBAL_STATE_CODE();
    s->offset = opts_get_int(options, "offset", 0);
    s->has_size = opts_get_int(options, "size", -1) >= 0;
    s->size = s->has_size ? opts_get_int(options, "size", 0) : 0;

    /*
     * raw has no metadata of its own: it passes its users' permissions
     * through, as a filter when it shows the whole child, as a plain data
     * user when it shows a window of it (as QEMU's raw does).  Claiming
     * METADATA would make it refuse to share write on its child.
     */
    if (!bdrv_open_child(options, "file", bs,
                         (s->offset || s->has_size ?
                          BDRV_CHILD_DATA : BDRV_CHILD_FILTERED) |
                         BDRV_CHILD_PRIMARY, false, errp)) {
        return -EINVAL;
    }
    /* Read the new edge; the main loop is the graph's only writer. */
    GRAPH_RDLOCK_GUARD_MAINLOOP();

    child_size = bdrv_get_total_bytes(bs->file->bs);
    if (child_size < 0) {
        error_setg_errno(errp, -child_size, "Could not get the size of '%s'",
                         bs->file->bs->node_name);
        return child_size;
    }
    if (s->offset > (uint64_t)child_size) {
        error_setg(errp, "'offset' (%" PRIu64 ") is beyond the end of "
                   "'%s' (%" PRId64 " bytes)", s->offset,
                   bs->file->bs->node_name, child_size);
        return -EINVAL;
    }
    if (s->has_size && s->size > (uint64_t)child_size - s->offset) {
        error_setg(errp, "'offset' + 'size' (%" PRIu64 " + %" PRIu64
                   ") is beyond the end of '%s' (%" PRId64 " bytes)",
                   s->offset, s->size, bs->file->bs->node_name, child_size);
        return -EINVAL;
    }
    qatomic_set(&bs->total_bytes,
                s->has_size ? (int64_t)s->size : child_size - (int64_t)s->offset);
    return 0;
}

/* Without a fixed size, the window runs to the end of the child. */
static void GRAPH_RDLOCK raw_child_resized(BlockDriverState *bs, BdrvChild *c)
{
    BDRVRawState *s = bs->opaque;
    int64_t child_size = bdrv_get_total_bytes(c->bs);

    GLOBAL_STATE_CODE();
    if (!s->has_size && child_size >= (int64_t)s->offset) {
        qatomic_set(&bs->total_bytes, child_size - (int64_t)s->offset);
    }
}

static int coroutine_fn GRAPH_RDLOCK
raw_co_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
              IOVec *qiov, BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    IO_CODE();
    return bdrv_co_preadv(bs->file, offset + s->offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
raw_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
               IOVec *qiov, BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    IO_CODE();
    return bdrv_co_pwritev(bs->file, offset + s->offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
raw_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    IO_CODE();
    return bdrv_co_pwrite_zeroes(bs->file, offset + s->offset, bytes, flags);
}

static int coroutine_fn GRAPH_RDLOCK
raw_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVRawState *s = bs->opaque;

    IO_CODE();
    return bdrv_co_pdiscard(bs->file, offset + s->offset, bytes);
}

static int coroutine_fn GRAPH_RDLOCK
raw_co_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                    int64_t bytes, int64_t *pnum, int64_t *map,
                    BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;

    IO_CODE();
    *pnum = bytes;
    *map = offset + s->offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RECURSE | BDRV_BLOCK_OFFSET_VALID;
}

/*
 * As QEMU's raw driver: a fixed-size window cannot be resized; a window
 * with only an offset resizes the child to keep ending at its end.
 */
static int coroutine_fn GRAPH_RDLOCK
raw_co_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                Error **errp)
{
    BDRVRawState *s = bs->opaque;
    int ret;

    IO_CODE();
    if (s->has_size) {
        error_setg(errp, "Cannot resize raw node '%s': it has a fixed "
                   "'size'", bs->node_name);
        return -ENOTSUP;
    }
    if (offset > BDRV_MAX_LENGTH - (int64_t)s->offset) {
        error_setg(errp, "Cannot resize raw node '%s' to %" PRId64
                   " bytes: too large with its 'offset' of %" PRIu64,
                   bs->node_name, offset, s->offset);
        return -EINVAL;
    }
    ret = bdrv_co_truncate(bs->file, offset + s->offset, exact, errp);
    if (ret == 0) {
        qatomic_set(&bs->total_bytes, offset);
    }
    return ret;
}

static int64_t coroutine_fn GRAPH_RDLOCK
raw_co_getlength(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int64_t len;

    if (s->has_size) {
        return s->size;
    }
    len = bdrv_co_getlength(bs->file->bs);
    if (len < 0) {
        return len;
    }
    return MAX(len - (int64_t)s->offset, 0);
}

static const OptDesc raw_opts[] = {
    { "file", OPT_NODE, .required = true,
      .help = "node (name or definition) holding the data" },
    { "offset", OPT_SIZE, .def = "0", .min = 0, .max = BDRV_MAX_LENGTH,
      .help = "start of the window into the file child, in bytes" },
    { "size", OPT_SIZE, .min = 0, .max = BDRV_MAX_LENGTH,
      .help = "size of the window (default: up to the end of the child)" },
    { NULL }
};

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(BDRVRawState),
    .opts = raw_opts,
    .has_file_child = true,

    .bdrv_open = raw_open,
    .bdrv_child_perm = bdrv_default_perms,
    /*
     * raw forwards byte ranges and lets the child pad; with a window that
     * starts off the child's alignment, padding here would not help.
     */
    .bdrv_refresh_limits = bdrv_filter_refresh_limits_bytes,
    .bdrv_child_resized = raw_child_resized,

    .bdrv_co_preadv = raw_co_preadv,
    .bdrv_co_pwritev = raw_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK |
                            BDRV_REQ_FUA,
    .bdrv_co_pdiscard = raw_co_pdiscard,
    .bdrv_co_block_status = raw_co_block_status,
    .bdrv_co_truncate = raw_co_truncate,
    .bdrv_co_getlength = raw_co_getlength,
};
