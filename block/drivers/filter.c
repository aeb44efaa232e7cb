/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Driver callbacks for filters: nodes that pass requests to their "file"
 * child unchanged (blkdebug, copy-before-write, mirror_top) or nearly so
 * (raw).  Each driver points its table at these where it has nothing of
 * its own to add, instead of writing the same forwarding again.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "util/main-loop.h"

void bdrv_filter_refresh_limits(BlockDriverState *bs, Error **errp)
{
    GLOBAL_STATE_CODE();
    bs->bl = bs->file->bs->bl;
}

void bdrv_filter_refresh_limits_bytes(BlockDriverState *bs, Error **errp)
{
    GLOBAL_STATE_CODE();
    bs->bl = bs->file->bs->bl;
    /*
     * Forward byte ranges as they come and let the child pad: padding here
     * would forward a range past our end whenever our size is not a
     * multiple of the child's alignment (an O_DIRECT file of odd size),
     * which only the bottom driver can read (the kernel stops at the end
     * of the file).
     */
    bs->bl.request_alignment = 1;
}

int coroutine_fn bdrv_filter_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVec *qiov,
                                       BdrvRequestFlags flags)
{
    IO_CODE();
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

int coroutine_fn bdrv_filter_co_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
{
    IO_CODE();
    *pnum = bytes;
    *map = offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RECURSE | BDRV_BLOCK_OFFSET_VALID;
}

int64_t coroutine_fn bdrv_filter_co_getlength(BlockDriverState *bs)
{
    IO_CODE();
    return bdrv_co_getlength(bs->file->bs);
}
