/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty bitmaps of a node (see include/block/dirty-bitmap.h): an HBitmap
 * with one bit per granularity-sized chunk of the node, on a list in the
 * node.
 *
 * Locking: the node's dirty_bitmap_mutex guards its bitmap list and, for
 * every bitmap on it, the bits, the size and the disabled flag.  The list
 * changes only in the main loop; writers in any thread take the mutex to
 * set bits.  The mutex is a leaf: nothing else is taken while it is held,
 * and no function here yields.  Immutable after creation: bs, granularity,
 * name.
 *
 * Lifetime: an anonymous bitmap belongs to its user (a job, a filter), not
 * to the node, and holds a reference to the node until it is released: a
 * graph change can take the node out of the graph (the mirror's filter
 * goes when its job ends, with a backup filter still copying from it), and
 * the user's bitmap must stay valid.  A named bitmap belongs to the node
 * and goes with it.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "util/atomic.h"
#include "util/hbitmap.h"
#include "util/main-loop.h"

struct BdrvDirtyBitmap {
    BlockDriverState *bs;               /* immutable */
    uint32_t granularity;               /* immutable, power of two */
    char *name;                         /* immutable, NULL: anonymous */
    HBitmap *hb;                        /* bs->dirty_bitmap_mutex */
    int64_t size;                       /* bytes; bs->dirty_bitmap_mutex */
    bool disabled;                      /* bs->dirty_bitmap_mutex */
    QLIST_ENTRY(BdrvDirtyBitmap) list;  /* bs->dirty_bitmap_mutex */
};

/* --- Main loop -------------------------------------------------------------- */

static bool granularity_valid(uint32_t granularity)
{
    return granularity >= 512 && !(granularity & (granularity - 1));
}

BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs,
                                        const char *name)
{
    BdrvDirtyBitmap *bm;

    GLOBAL_STATE_CODE();
    /* The list changes only in the main loop: no lock needed to walk it. */
    QLIST_FOREACH(bm, &bs->dirty_bitmaps, list) {
        if (bm->name && !strcmp(bm->name, name)) {
            return bm;
        }
    }
    return NULL;
}

BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint32_t granularity,
                                          const char *name, Error **errp)
{
    BdrvDirtyBitmap *bitmap;
    int64_t size;

    GLOBAL_STATE_CODE();
    if (!granularity_valid(granularity)) {
        error_setg(errp, "Granularity must be power of 2 and at least 512");
        return NULL;
    }
    if (name && bdrv_find_dirty_bitmap(bs, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return NULL;
    }
    size = bdrv_get_total_bytes(bs);
    if (size < 0) {
        error_setg_errno(errp, -size, "could not get length of device");
        return NULL;
    }
    bitmap = g_new0(BdrvDirtyBitmap, 1);
    if (!name) {
        bdrv_ref(bs);
    }
    bitmap->bs = bs;
    bitmap->granularity = granularity;
    bitmap->name = g_strdup(name);
    bitmap->size = size;
    bitmap->hb = hbitmap_alloc(DIV_ROUND_UP((uint64_t)size, granularity));

    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    QLIST_INSERT_HEAD(&bs->dirty_bitmaps, bitmap, list);
    /*
     * Writers that read the new count take the mutex before they touch
     * the list, so the mutex orders the insertion before their walk.
     */
    qatomic_inc(&bs->dirty_bitmap_count);
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
    return bitmap;
}

void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bitmap)
{
    BlockDriverState *bs = bitmap->bs;

    GLOBAL_STATE_CODE();
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    QLIST_REMOVE(bitmap, list);
    qatomic_dec(&bs->dirty_bitmap_count);
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
    hbitmap_free(bitmap->hb);
    if (!bitmap->name) {
        bdrv_unref(bs);
    }
    g_free(bitmap->name);
    g_free(bitmap);
}

void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    /* Anonymous ones hold a reference: only named ones are left here. */
    while (!QLIST_EMPTY(&bs->dirty_bitmaps)) {
        bdrv_release_dirty_bitmap(QLIST_FIRST(&bs->dirty_bitmaps));
    }
}

void bdrv_disable_dirty_bitmap(BdrvDirtyBitmap *bitmap)
{
    GLOBAL_STATE_CODE();
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    bitmap->disabled = true;
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
}

void bdrv_enable_dirty_bitmap(BdrvDirtyBitmap *bitmap)
{
    GLOBAL_STATE_CODE();
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    bitmap->disabled = false;
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
}

/* --- Any thread ------------------------------------------------------------- */

/*
 * The chunks [*first, *first + *count) that cover the bytes [offset,
 * offset + bytes) clamped to the size; false if nothing is left.
 */
static bool bitmap_chunks(BlockDriverState *bs, BdrvDirtyBitmap *bitmap,
                          int64_t offset, int64_t bytes, uint64_t *first,
                          uint64_t *count)
    TSA_REQUIRES(&bs->dirty_bitmap_mutex)
{
    assert(bitmap->bs == bs);
    int64_t end;

    if (offset < 0) {
        bytes += offset;
        offset = 0;
    }
    if (bytes <= 0 || offset >= bitmap->size) {
        return false;
    }
    end = bytes > bitmap->size - offset ? bitmap->size : offset + bytes;
    *first = offset / bitmap->granularity;
    *count = DIV_ROUND_UP((uint64_t)end, bitmap->granularity) - *first;
    return true;
}

static void bitmap_set_locked(BlockDriverState *bs, BdrvDirtyBitmap *bitmap,
                              int64_t offset, int64_t bytes)
    TSA_REQUIRES(&bs->dirty_bitmap_mutex)
{
    uint64_t first, count;

    if (bitmap_chunks(bs, bitmap, offset, bytes, &first, &count)) {
        hbitmap_set(bitmap->hb, first, count);
    }
}

void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bitmap, int64_t offset,
                           int64_t bytes)
{
    IO_CODE();
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    bitmap_set_locked(bitmap->bs, bitmap, offset, bytes);
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
}

void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bitmap, int64_t offset,
                             int64_t bytes)
{
    uint64_t first, count;

    IO_CODE();
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    if (bitmap_chunks(bitmap->bs, bitmap, offset, bytes, &first, &count)) {
        hbitmap_reset(bitmap->hb, first, count);
    }
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
}

bool bdrv_dirty_bitmap_get(BdrvDirtyBitmap *bitmap, int64_t offset)
{
    bool ret;

    IO_CODE();
    if (offset < 0) {
        return false;
    }
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    ret = offset < bitmap->size &&
          hbitmap_get(bitmap->hb, offset / bitmap->granularity);
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
    return ret;
}

int64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bitmap)
{
    uint64_t nbits;
    int64_t count;

    IO_CODE();
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    nbits = hbitmap_size(bitmap->hb);
    count = hbitmap_count(bitmap->hb) * bitmap->granularity;
    if (nbits && hbitmap_get(bitmap->hb, nbits - 1)) {
        /* The last chunk may reach past the end of the node. */
        count -= nbits * bitmap->granularity - bitmap->size;
    }
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
    return count;
}

uint32_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bitmap)
{
    IO_CODE();
    return bitmap->granularity;
}

int64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bitmap)
    TSA_NO_TSA  /* a const pointer: clang cannot name the lock through it */
{
    BdrvDirtyBitmap *bm = (BdrvDirtyBitmap *)bitmap;
    int64_t size;

    IO_CODE();
    bd_mutex_lock(&bm->bs->dirty_bitmap_mutex);
    size = bm->size;
    bd_mutex_unlock(&bm->bs->dirty_bitmap_mutex);
    return size;
}

/* Byte range [offset, end) of a search, clamped; false if empty. */
static bool search_range(BlockDriverState *bs, BdrvDirtyBitmap *bitmap,
                         int64_t offset, int64_t bytes, int64_t *end)
    TSA_REQUIRES(&bs->dirty_bitmap_mutex)
{
    assert(bitmap->bs == bs);
    if (offset < 0 || offset >= bitmap->size || bytes == 0) {
        return false;
    }
    *end = bytes < 0 || bytes > bitmap->size - offset ?
           bitmap->size : offset + bytes;
    return true;
}

static int64_t bitmap_next(BdrvDirtyBitmap *bitmap, int64_t offset,
                           int64_t bytes, bool dirty)
{
    uint64_t g = bitmap->granularity;
    int64_t end, bit = -1;

    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    if (search_range(bitmap->bs, bitmap, offset, bytes, &end)) {
        uint64_t first = offset / g, last = DIV_ROUND_UP((uint64_t)end, g);

        bit = dirty ? hbitmap_next_set(bitmap->hb, first, last)
                    : hbitmap_next_zero(bitmap->hb, first, last);
    }
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
    return bit < 0 ? -1 : MAX(offset, bit * (int64_t)g);
}

int64_t bdrv_dirty_bitmap_next_dirty(BdrvDirtyBitmap *bitmap, int64_t offset,
                                     int64_t bytes)
{
    IO_CODE();
    return bitmap_next(bitmap, offset, bytes, true);
}

int64_t bdrv_dirty_bitmap_next_zero(BdrvDirtyBitmap *bitmap, int64_t offset,
                                    int64_t bytes)
{
    IO_CODE();
    return bitmap_next(bitmap, offset, bytes, false);
}

bool bdrv_dirty_bitmap_next_dirty_area(BdrvDirtyBitmap *bitmap, int64_t start,
                                       int64_t end, int64_t max_dirty_count,
                                       int64_t *dirty_start,
                                       int64_t *dirty_count)
{
    uint64_t g = bitmap->granularity;
    uint64_t run_start, run_count;
    int64_t lim;
    bool found = false;

    IO_CODE();
    if (max_dirty_count <= 0 || end <= start) {
        return false;
    }
    bd_mutex_lock(&bitmap->bs->dirty_bitmap_mutex);
    if (search_range(bitmap->bs, bitmap, start, end - start, &lim)) {
        uint64_t first = start / g, last = DIV_ROUND_UP((uint64_t)lim, g);
        /* Enough chunks for max_dirty_count bytes from a misaligned start. */
        uint64_t max_chunks = (uint64_t)max_dirty_count / g + 2;

        found = hbitmap_next_run(bitmap->hb, first, last, max_chunks,
                                 &run_start, &run_count);
        if (found) {
            int64_t s = MAX(start, (int64_t)(run_start * g));
            int64_t e = MIN(lim, (int64_t)((run_start + run_count) * g));

            *dirty_start = s;
            *dirty_count = MIN(e - s, max_dirty_count);
        }
    }
    bd_mutex_unlock(&bitmap->bs->dirty_bitmap_mutex);
    return found;
}

void bdrv_set_dirty(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BdrvDirtyBitmap *bm;

    IO_CODE();
    /*
     * Relaxed: a bitmap created while this request was in flight need not
     * see it (bitmaps that must see every write are created drained).
     */
    if (!qatomic_read(&bs->dirty_bitmap_count)) {
        return;
    }
    bd_mutex_lock(&bs->dirty_bitmap_mutex);
    QLIST_FOREACH(bm, &bs->dirty_bitmaps, list) {
        if (!bm->disabled) {
            bitmap_set_locked(bs, bm, offset, bytes);
        }
    }
    bd_mutex_unlock(&bs->dirty_bitmap_mutex);
}

void bdrv_dirty_bitmap_truncate(BlockDriverState *bs, int64_t size)
{
    BdrvDirtyBitmap *bm;

    IO_CODE();
    bd_mutex_lock(&bs->dirty_bitmap_mutex);
    QLIST_FOREACH(bm, &bs->dirty_bitmaps, list) {
        if (bm->size != size) {
            hbitmap_truncate(bm->hb,
                             DIV_ROUND_UP((uint64_t)size, bm->granularity));
            bm->size = size;
        }
    }
    bd_mutex_unlock(&bs->dirty_bitmap_mutex);
}
