/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Flush: the generic part of bdrv_co_flush().  A flush covers every write
 * that completed before it started, in any thread, and a failed flush is
 * never reported as a success; the comment below says how generations
 * make that cheap and why flushes of one node are serialised.
 *
 * Invariants: write_gen is bumped (bdrv_data_changed(), io-int.h) after
 * every driver call that may have changed data; flushed_gen only grows,
 * is written only under the node's flush_lock, and only to a generation
 * whose flush succeeded.  Coroutine code in any AioContext, under the
 * graph read lock.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/io/io-int.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/main-loop.h"

/*
 * Generations: write_gen counts driver calls that may have changed data;
 * flushed_gen is the largest generation g such that a flush which read g
 * at its start has succeeded.  Both are compared with serial-number
 * arithmetic, so wrap-around is harmless.
 *
 * A flush reads write_gen first: every write that completed before the
 * flush started is counted in that value (the increment happens before
 * the write completes, and the caller's completion happens-before the
 * flush, so even a relaxed read sees it).  If flushed_gen already equals
 * it, a successful flush has covered all of those writes: return at once.
 *
 * Otherwise the flush takes the node's flush_lock: flushes of one node
 * reach the driver one at a time.  They must, because a driver's success
 * is worth nothing while another flush of the same file is failing: on
 * Linux only one of two concurrent fdatasync() calls learns that a
 * writeback failed, and the other reports success for writes that may be
 * lost.  Serialised, a flush that waited behind a failing one asks the
 * driver after the failure (and the file driver fails every flush after a
 * failed one).  Under the lock, a flush whose generation an earlier flush
 * has covered meanwhile returns at once; the others flush (this node's
 * caches to the OS, the OS to the disk unless cache.no-flush, then every
 * child, whose locks are taken inside ours: parents before children) and,
 * only on success, raise flushed_gen to the generation read at the start.
 * A failed flush leaves flushed_gen alone, so the next flush calls the
 * driver again.  Only the holder of flush_lock writes flushed_gen, and
 * only upwards; the fast path reads it without the lock.
 */
static bool gen_after(unsigned a, unsigned b)
{
    return (int)(a - b) > 0;
}

/* The flush proper, for writes up to generation @gen. */
static int coroutine_fn bdrv_co_flush_locked(BlockDriverState *bs,
                                             unsigned gen)
    GRAPH_RDLOCK TSA_REQUIRES(&bs->flush_lock)
{
    const BlockDriver *drv = bs->drv;
    BdrvChild *c;
    int ret;

    /* A flush that held the lock before us may have covered @gen. */
    if (!gen_after(gen, qatomic_read(&bs->flushed_gen))) {
        return 0;
    }
    if (drv->bdrv_co_flush_to_os) {
        ret = bdrv_driver_check_result(bs, "flush to the OS",
                                       drv->bdrv_co_flush_to_os(bs));
        if (ret < 0) {
            return ret;
        }
    }
    if (!(bs->open_flags & BDRV_O_NO_FLUSH) && drv->bdrv_co_flush_to_disk) {
        ret = bdrv_driver_check_result(bs, "flush to disk",
                                       drv->bdrv_co_flush_to_disk(bs));
        if (ret < 0) {
            return ret;
        }
    }
    QLIST_FOREACH(c, &bs->children, next) {
        ret = bdrv_co_flush(c->bs);
        if (ret < 0) {
            return ret;
        }
    }
    qatomic_set(&bs->flushed_gen, gen);
    return 0;
}

int coroutine_fn bdrv_co_flush(BlockDriverState *bs)
{
    unsigned gen;
    int ret = 0;

    IO_CODE();
    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    bdrv_inc_in_flight(bs);
    gen = qatomic_read(&bs->write_gen);
    if (!bs->read_only && gen != qatomic_read(&bs->flushed_gen)) {
        co_mutex_lock(&bs->flush_lock);
        ret = bdrv_co_flush_locked(bs, gen);
        co_mutex_unlock(&bs->flush_lock);
    }
    bdrv_dec_in_flight(bs);
    return ret;
}
