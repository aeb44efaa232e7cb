/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer I/O API: safe in any thread (IO_CODE), in coroutines unless
 * said otherwise.  These functions may call only other I/O and common
 * functions: no graph changes, no drain, no polling.
 *
 * Requests are checked here before any driver sees them (the checking
 * layer): offset and length within the node and BDRV_REQUEST_MAX_BYTES,
 * flags known, node open; unaligned requests are padded to the node's
 * request_alignment with read-modify-write, serialised against
 * overlapping requests.  All return 0 or -errno.
 *
 * Callers hold the graph read lock (GRAPH_RDLOCK): BlockBackend takes it
 * for its users.
 */
#ifndef BLOCK_IO_H
#define BLOCK_IO_H

#include "block/block-common.h"

int coroutine_fn bdrv_co_preadv(BdrvChild *child, int64_t offset,
                                int64_t bytes, IOVec *qiov,
                                BdrvRequestFlags flags) GRAPH_RDLOCK;
int coroutine_fn bdrv_co_pwritev(BdrvChild *child, int64_t offset,
                                 int64_t bytes, IOVec *qiov,
                                 BdrvRequestFlags flags) GRAPH_RDLOCK;
int coroutine_fn bdrv_co_pwrite_zeroes(BdrvChild *child, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags)
    GRAPH_RDLOCK;
int coroutine_fn bdrv_co_pdiscard(BdrvChild *child, int64_t offset,
                                  int64_t bytes) GRAPH_RDLOCK;
/*
 * Flush: every write that completed before the flush started, in any
 * thread, is on stable storage when it returns 0.
 */
int coroutine_fn bdrv_co_flush(BlockDriverState *bs) GRAPH_RDLOCK;
int coroutine_fn bdrv_co_block_status(BlockDriverState *bs, bool want_zero,
                                      int64_t offset, int64_t bytes,
                                      int64_t *pnum, int64_t *map,
                                      BlockDriverState **file) GRAPH_RDLOCK;
int coroutine_fn bdrv_co_truncate(BdrvChild *child, int64_t offset,
                                  bool exact, Error **errp) GRAPH_RDLOCK;

/* Size in bytes (atomic read; any thread, any context). */
int64_t bdrv_co_getlength(BlockDriverState *bs) GRAPH_RDLOCK;
int64_t bdrv_get_total_bytes(BlockDriverState *bs);

/* The node's home AioContext (atomic read). */
AioContext *bdrv_get_aio_context_io(BlockDriverState *bs);

#endif /* BLOCK_IO_H */
