/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals of the generic request path shared by the files that make it
 * up: io.c (checks, reads, writes, write-zeroes, discard),
 * tracked-requests.c (serialisation of overlapping requests) and
 * truncate.c.  Private to block/; coroutine code in any AioContext, under
 * the graph read lock.
 */
#ifndef BLOCK_IO_INT_H
#define BLOCK_IO_INT_H

#include "block/block_int.h"
#include "util/atomic.h"

static inline bool is_power_of_2(uint64_t x)
{
    return x && !(x & (x - 1));
}

/* bl.request_alignment, a power of two (1 when the node has none). */
static inline uint32_t bdrv_req_align(BlockDriverState *bs)
{
    uint32_t align = MAX(bs->bl.request_alignment, 1);

    assert(is_power_of_2(align));
    return align;
}

/* A driver call that may have changed data has returned: see flush.c. */
static inline void bdrv_data_changed(BlockDriverState *bs)
{
    qatomic_inc(&bs->write_gen);
}

/* --- The driver contract (io.c) ------------------------------------------- */

/*
 * What every driver I/O callback is promised, and promises, checked around
 * each call as nbdkit's backend checks its plugins, so that a bug in one
 * driver shows up as itself instead of corrupting the core's view:
 *  - before: the node is open; [offset, offset + bytes) is aligned to
 *    bl.request_alignment, inside the node (the last block may reach past
 *    an unaligned end), at most bl.max_transfer for reads and writes; the
 *    flags are among those the driver declared (@supported);
 *  - after: 0 on success, a negative errno on failure (never a byte count
 *    or another positive value).
 * A violation aborts, naming the driver, the node and the callback @op.
 */
void bdrv_driver_check_request(BlockDriverState *bs, const char *op,
                               int64_t offset, int64_t bytes,
                               BdrvRequestFlags flags,
                               BdrvRequestFlags supported);
/* Check @ret of callback @op and return it. */
int bdrv_driver_check_result(BlockDriverState *bs, const char *op, int ret);

/* --- Tracked requests (tracked-requests.c) -------------------------------- */

typedef enum BdrvTrackKind {
    BDRV_TRACK_READ,            /* tracked only if serialising in flight */
    BDRV_TRACK_WRITE,           /* counted in writes_untracked, or tracked */
    BDRV_TRACK_SERIALISING,     /* always tracked, excludes overlaps */
} BdrvTrackKind;

/*
 * Start tracking @req for [offset, offset + bytes) and wait for the older
 * requests it conflicts with.  @bytes may reach to INT64_MAX (truncate).
 * An untracked read leaves req->bs NULL.
 */
void coroutine_fn tracked_request_begin(BdrvTrackedRequest *req,
                                        BlockDriverState *bs,
                                        int64_t offset, int64_t bytes,
                                        BdrvTrackKind kind);
/* Stop tracking @req and wake the requests that wait for it. */
void coroutine_fn tracked_request_end(BdrvTrackedRequest *req);

#endif /* BLOCK_IO_INT_H */
