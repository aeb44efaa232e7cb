/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty bitmaps: which parts of a node were written since a point in time,
 * at a granularity (a power of two, at least 512 bytes).  Mirror and backup
 * use anonymous ones internally; named ones are for users.
 *
 * Who may call what:
 *  - create, release, enable, disable: the main loop (BQL).  The bitmap
 *    list of a node (bs->dirty_bitmaps) changes only there, under the node's
 *    dirty_bitmap_mutex.
 *  - everything else: any thread.  The functions take the node's
 *    dirty_bitmap_mutex themselves (a leaf lock: nothing else is taken
 *    under it, and it is never held across a yield).
 *
 * Ranges are in bytes, rounded out to the granularity; ranges past the
 * bitmap's size are clamped to it.  The bitmap's size follows the node's
 * size when the node is truncated.
 *
 * The write path marks every enabled bitmap of a node dirty after a write,
 * write-zeroes or discard reached the node's driver and before the request
 * completes (bdrv_set_dirty(), called by block/io/io.c).  A bitmap created
 * in a drained section therefore records every write that completes after
 * the section ends.
 */
#ifndef BLOCK_DIRTY_BITMAP_H
#define BLOCK_DIRTY_BITMAP_H

#include "block/block-common.h"

typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;

/* --- Main loop (BQL) ------------------------------------------------------ */

/*
 * A new, enabled, clean bitmap on @bs covering its current size.
 * @granularity: a power of two, >= 512 bytes.  @name NULL: anonymous
 * (internal, its user's: it holds a reference to @bs until released); a
 * named one belongs to the node, must be unique on it and goes with it.
 * NULL with @errp set on failure.
 */
BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint32_t granularity,
                                          const char *name, Error **errp)
    TSA_REQUIRES(bql);
void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bitmap) TSA_REQUIRES(bql);
/* A disabled bitmap ignores bdrv_set_dirty() (explicit sets still work). */
void bdrv_disable_dirty_bitmap(BdrvDirtyBitmap *bitmap) TSA_REQUIRES(bql);
void bdrv_enable_dirty_bitmap(BdrvDirtyBitmap *bitmap) TSA_REQUIRES(bql);
/* The named bitmap @name of @bs, or NULL. */
BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs,
                                        const char *name);

/* --- Any thread ------------------------------------------------------------ */

void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bitmap, int64_t offset,
                           int64_t bytes);
void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bitmap, int64_t offset,
                             int64_t bytes);
bool bdrv_dirty_bitmap_get(BdrvDirtyBitmap *bitmap, int64_t offset);
/* Dirty bytes (the last, partial chunk counts for its real length). */
int64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bitmap);
uint32_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bitmap);
/* Bytes covered: the node's size when the bitmap was created or resized. */
int64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bitmap);

/*
 * First dirty (resp. clean) byte offset in [offset, offset + bytes) (bytes
 * < 0: to the end), or -1.  The result is @offset itself when @offset lies
 * in a dirty (resp. clean) chunk, else the start of the chunk found.
 */
int64_t bdrv_dirty_bitmap_next_dirty(BdrvDirtyBitmap *bitmap, int64_t offset,
                                     int64_t bytes);
int64_t bdrv_dirty_bitmap_next_zero(BdrvDirtyBitmap *bitmap, int64_t offset,
                                    int64_t bytes);

/*
 * The next dirty extent in [start, end), cut to [start, end) and to at
 * most @max_dirty_count bytes: true with *dirty_start and *dirty_count
 * set, false if the range is clean.
 */
bool bdrv_dirty_bitmap_next_dirty_area(BdrvDirtyBitmap *bitmap, int64_t start,
                                       int64_t end, int64_t max_dirty_count,
                                       int64_t *dirty_start,
                                       int64_t *dirty_count);

/*
 * The write path (block/io/io.c): a write, write-zeroes or discard of
 * [offset, offset + bytes) reached @bs's driver; mark every enabled bitmap
 * of @bs dirty.  Any thread.  Cheap when @bs has no bitmap.
 */
void bdrv_set_dirty(BlockDriverState *bs, int64_t offset, int64_t bytes);

/* --- For the block layer itself -------------------------------------------- */

/* @bs's size changed to @size: resize its bitmaps.  Any thread. */
void bdrv_dirty_bitmap_truncate(BlockDriverState *bs, int64_t size);
/* @bs is being freed: release its bitmaps.  Main loop. */
void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs) TSA_REQUIRES(bql);

#endif /* BLOCK_DIRTY_BITMAP_H */
