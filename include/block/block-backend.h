/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend: the root parent through which exports and jobs do I/O on a
 * node.  It holds its permissions on the node, counts its own requests in
 * flight, parks new requests while its node is drained (unless request
 * queuing is disabled, for users whose own coroutines must finish for the
 * drain to end), keeps per-backend statistics for query-blockstats, and
 * tells its user (dev ops) about drains and resizes.
 *
 * Global-state functions (main loop, BQL) and I/O functions (any thread,
 * coroutines) are marked as such below.
 */
#ifndef BLOCK_BACKEND_H
#define BLOCK_BACKEND_H

#include "block/block-common.h"

/* Callbacks to the backend's user; main loop. */
typedef struct BlockDevOps {
    /* The node is being drained: stop submitting; do not poll. */
    void (*drained_begin)(void *opaque) BQL_PTR;
    /* Still busy with requests of its own? (true keeps the drain waiting) */
    bool (*drained_poll)(void *opaque) BQL_PTR;
    void (*drained_end)(void *opaque) BQL_PTR;
    /* The node's size changed. */
    void (*resize)(void *opaque) BQL_PTR;
    /* The node moved to @ctx (false + errp: refuse, before the move). */
    bool (*can_change_aio_context)(void *opaque, AioContext *ctx,
                                   Error **errp) BQL_PTR;
    void (*aio_context_changed)(void *opaque, AioContext *ctx) BQL_PTR;
} BlockDevOps;

/* Statistics, updated with atomics from any thread. */
typedef struct BlockAcctStats {
    uint64_t rd_bytes, wr_bytes, zero_bytes, unmap_bytes;
    uint64_t rd_ops, wr_ops, zero_ops, unmap_ops, flush_ops;
    uint64_t failed_rd_ops, failed_wr_ops, failed_zero_ops;
    uint64_t failed_unmap_ops, failed_flush_ops;
    uint64_t invalid_rd_ops, invalid_wr_ops, invalid_flush_ops;
    uint64_t rd_total_time_ns, wr_total_time_ns, flush_total_time_ns;
    uint64_t zero_total_time_ns, unmap_total_time_ns;
    int64_t last_access_time_ns;
} BlockAcctStats;

/* --- Global state: main loop, TSA_REQUIRES(bql) ------------------------- */

/*
 * A backend in @ctx that will take @perm and share @shared on its node.
 * @name describes the user in permission conflicts ("exp0").
 */
BlockBackend *blk_new(const char *name, AioContext *ctx, uint64_t perm,
                      uint64_t shared) TSA_REQUIRES(bql);
void blk_unref(BlockBackend *blk) GRAPH_UNLOCKED TSA_REQUIRES(bql);
/* Attach to @bs, taking the permissions; refused on conflict. */
int blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);
void blk_remove_bs(BlockBackend *blk) GRAPH_UNLOCKED TSA_REQUIRES(bql);
int blk_set_perm(BlockBackend *blk, uint64_t perm, uint64_t shared,
                 Error **errp) GRAPH_UNLOCKED TSA_REQUIRES(bql);
void blk_get_perm(BlockBackend *blk, uint64_t *perm, uint64_t *shared)
    TSA_REQUIRES(bql);
void blk_set_dev_ops(BlockBackend *blk, const BlockDevOps *ops,
                     void *opaque) TSA_REQUIRES(bql);
void blk_set_disable_request_queuing(BlockBackend *blk, bool disable)
    TSA_REQUIRES(bql);
/* Let the node move to another AioContext under us (default: no). */
void blk_set_allow_aio_context_change(BlockBackend *blk, bool allow)
    TSA_REQUIRES(bql);
/* Wait for this backend's requests to finish (drains its node). */
void blk_drain(BlockBackend *blk) GRAPH_UNLOCKED TSA_REQUIRES(bql);
const char *blk_name(BlockBackend *blk);
/* The node, or NULL (reads the graph as main-loop code may, unlocked). */
BlockDriverState *blk_bs(BlockBackend *blk) TSA_REQUIRES(bql);
int blk_set_aio_context(BlockBackend *blk, AioContext *ctx, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);
void blk_get_stats(BlockBackend *blk, BlockAcctStats *stats) TSA_REQUIRES(bql);
/* Iterate over all backends: blk = blk_next(NULL) ... */
BlockBackend *blk_next(BlockBackend *blk) TSA_REQUIRES(bql);

/* --- I/O: any thread, coroutines ---------------------------------------- */

AioContext *blk_get_aio_context(BlockBackend *blk);
int64_t blk_getlength(BlockBackend *blk);
bool blk_is_read_only(BlockBackend *blk);
/* Largest request the node accepts in one piece, and its alignment. */
uint32_t blk_get_request_alignment(BlockBackend *blk);
uint64_t blk_get_max_transfer(BlockBackend *blk);

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, IOVec *qiov,
                               BdrvRequestFlags flags);
int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, IOVec *qiov,
                                BdrvRequestFlags flags);
int coroutine_fn blk_co_pread(BlockBackend *blk, int64_t offset,
                              int64_t bytes, void *buf,
                              BdrvRequestFlags flags);
int coroutine_fn blk_co_pwrite(BlockBackend *blk, int64_t offset,
                               int64_t bytes, const void *buf,
                               BdrvRequestFlags flags);
int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes);
int coroutine_fn blk_co_flush(BlockBackend *blk);
int coroutine_fn blk_co_block_status(BlockBackend *blk, int64_t offset,
                                     int64_t bytes, int64_t *pnum,
                                     int *status);
int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset,
                                 Error **errp);

/*
 * Synchronous wrappers for the main loop (tests, QMP): run the request in
 * a coroutine in the backend's context and wait (AIO_WAIT_WHILE).
 */
int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags) GRAPH_UNLOCKED TSA_REQUIRES(bql);
int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags) GRAPH_UNLOCKED
    TSA_REQUIRES(bql);
int blk_flush(BlockBackend *blk) GRAPH_UNLOCKED TSA_REQUIRES(bql);

#endif /* BLOCK_BACKEND_H */
