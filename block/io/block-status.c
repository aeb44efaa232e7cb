/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block status: what a range of a node reads as (data, zeroes), whether
 * this layer allocates it, and where its data lives (*map in *file).
 *
 * The generic part clamps the range to the node, answers for drivers
 * without the callback (all data; a protocol node's data is where it
 * says), checks that a driver describes at least one byte and no more
 * than asked, and follows BDRV_BLOCK_RECURSE into the file a format
 * driver names.  Coroutine code in any AioContext, under the graph read
 * lock; the node counts the call in its in-flight requests.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "util/main-loop.h"

/*
 * The driver said BDRV_BLOCK_RECURSE: its data is in @file at @map, and
 * @file knows better whether it reads as zero.  Take DATA and ZERO from
 * @file and clip *@pnum to what @file's answer covers.  Beyond @file's
 * end the data reads as zero.  If @file cannot tell, keep the driver's
 * answer, as data.
 */
static int coroutine_fn bdrv_block_status_recurse(BlockDriverState *file,
                                                  bool want_zero, int ret,
                                                  int64_t map, int64_t *pnum)
    GRAPH_RDLOCK
{
    int64_t file_pnum;
    int ret2;

    ret &= ~BDRV_BLOCK_RECURSE;
    ret2 = bdrv_co_block_status(file, want_zero, map, *pnum, &file_pnum,
                                NULL, NULL);
    if (ret2 < 0) {
        return (ret & BDRV_BLOCK_ZERO) ? ret : ret | BDRV_BLOCK_DATA;
    }
    if (file_pnum == 0) {
        return (ret & ~BDRV_BLOCK_DATA) | BDRV_BLOCK_ZERO;
    }
    *pnum = MIN(*pnum, file_pnum);
    return (ret & ~(BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) |
           (ret2 & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO));
}

int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, bool want_zero,
                                      int64_t offset, int64_t bytes,
                                      int64_t *pnum, int64_t *map,
                                      BlockDriverState **file)
{
    const BlockDriver *drv = bs->drv;
    BlockDriverState *local_file = NULL;
    int64_t local_map = 0;
    int64_t total;
    int ret;

    IO_CODE();
    *pnum = 0;
    if (map) {
        *map = 0;
    }
    if (file) {
        *file = NULL;
    }
    if (!drv) {
        return -ENOMEDIUM;
    }
    if (offset < 0 || bytes < 0) {
        return -EIO;
    }
    total = bdrv_get_total_bytes(bs);
    if (bytes == 0 || offset >= total) {
        return 0;
    }
    bytes = MIN(bytes, total - offset);

    bdrv_inc_in_flight(bs);
    if (!drv->bdrv_co_block_status) {
        *pnum = bytes;
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
        if (!drv->has_file_child && !drv->is_filter) {
            /* A protocol node: its data is where it says. */
            ret |= BDRV_BLOCK_OFFSET_VALID;
            local_map = offset;
            local_file = bs;
        }
        goto out;
    }
    ret = drv->bdrv_co_block_status(bs, want_zero, offset, bytes, pnum,
                                    &local_map, &local_file);
    if (ret < 0) {
        *pnum = 0;
        goto out;
    }
    /* Checking layer: a driver must describe at least one byte. */
    assert(*pnum > 0 && *pnum <= bytes);
    if (ret & BDRV_BLOCK_RECURSE) {
        if (local_file && local_file != bs) {
            ret = bdrv_block_status_recurse(local_file, want_zero, ret,
                                            local_map, pnum);
        } else {
            ret = (ret & ~BDRV_BLOCK_RECURSE) | BDRV_BLOCK_DATA;
        }
    }
    /* Reading data or zeroes from this layer means it is allocated here. */
    if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
        ret |= BDRV_BLOCK_ALLOCATED;
    }
out:
    if (ret >= 0 && (ret & BDRV_BLOCK_OFFSET_VALID)) {
        if (map) {
            *map = local_map;
        }
        if (file) {
            *file = local_file;
        }
    }
    bdrv_dec_in_flight(bs);
    return ret;
}
