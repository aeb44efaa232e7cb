/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend's request path: every request of a backend's user, from a
 * coroutine in any thread, is counted, parked while the node is drained
 * (block-backend.c), checked (a node, the permission it needs, a range
 * inside the node), sent to the node under the graph read lock, and
 * accounted in the backend's statistics.  The synchronous wrappers at the
 * end run one request from the main loop and wait for it.
 *
 * Invariants: the graph read lock is taken only after the parking point,
 * and released before the request stops counting in flight; the request's
 * last access to the backend is blk_dec_in_flight().
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/backend/block-backend-int.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

/* --- I/O: any thread ------------------------------------------------------ */

/*
 * Read the graph (blk->root and its node) from wherever we are: coroutines
 * take the read lock, the main loop outside coroutines needs none.  Plain
 * (non-coroutine) code in an iothread may not look at the graph.  The
 * choice depends on in_coroutine(), which cannot change between the two
 * calls: nothing in between yields.
 */
static void blk_graph_rdlock_any(void) TSA_ACQUIRE_SHARED(graph_lock)
    TSA_NO_TSA
{
    if (in_coroutine()) {
        bdrv_graph_co_rdlock();
    } else {
        bdrv_graph_rdlock_main_loop();
    }
}

static void blk_graph_rdunlock_any(void) TSA_RELEASE_SHARED(graph_lock)
    TSA_NO_TSA
{
    if (in_coroutine()) {
        bdrv_graph_co_rdunlock();
    } else {
        bdrv_graph_rdunlock_main_loop();
    }
}

AioContext *blk_get_aio_context(BlockBackend *blk)
{
    IO_CODE();
    return qatomic_read(&blk->ctx);
}

int64_t blk_getlength(BlockBackend *blk)
{
    int64_t len;

    IO_CODE();
    blk_graph_rdlock_any();
    len = blk->root ? bdrv_get_total_bytes(blk->root->bs) : -ENOMEDIUM;
    blk_graph_rdunlock_any();
    return len;
}

bool blk_is_read_only(BlockBackend *blk)
{
    IO_CODE();
    return !(qatomic_read(&blk->perm) & BLK_PERM_WRITE);
}

uint32_t blk_get_request_alignment(BlockBackend *blk)
{
    uint32_t align = BDRV_SECTOR_SIZE;

    IO_CODE();
    blk_graph_rdlock_any();
    if (blk->root) {
        align = blk->root->bs->bl.request_alignment;
    }
    blk_graph_rdunlock_any();
    return align;
}

uint64_t blk_get_max_transfer(BlockBackend *blk)
{
    uint64_t max = BDRV_REQUEST_MAX_BYTES;

    IO_CODE();
    blk_graph_rdlock_any();
    if (blk->root && blk->root->bs->bl.max_transfer) {
        max = MIN(max, blk->root->bs->bl.max_transfer);
    }
    blk_graph_rdunlock_any();
    return ROUND_DOWN(max, (uint64_t)blk_get_request_alignment(blk));
}

/* --- Requests ------------------------------------------------------------- */

/* The first five have statistics (blk_acct_fields). */
typedef enum BlkReqType {
    BLK_REQ_READ,
    BLK_REQ_WRITE,
    BLK_REQ_ZERO,
    BLK_REQ_DISCARD,
    BLK_REQ_FLUSH,
    BLK_REQ_BLOCK_STATUS,
    BLK_REQ_TRUNCATE,
} BlkReqType;

typedef struct BlkRequest {
    BlkReqType type;
    int64_t offset;                 /* truncate: the new size */
    int64_t bytes;
    IOVec *qiov;                    /* read, write */
    BdrvRequestFlags flags;         /* read, write, zero */
    int64_t *pnum;                  /* block status */
    int *status;                    /* block status */
    Error **errp;                   /* truncate */
} BlkRequest;

/* Where each accounted request type counts; SIZE_MAX: not counted. */
typedef struct BlkAcctFields {
    size_t bytes, ops, failed, invalid, time_ns;
} BlkAcctFields;

#define STAT(f) offsetof(BlockAcctStats, f)

/*
 * BlockAcctStats has no invalid_zero_ops or invalid_unmap_ops: invalid
 * write-zeroes and discards count as invalid writes.
 */
static const BlkAcctFields blk_acct_fields[] = {
    [BLK_REQ_READ] = { STAT(rd_bytes), STAT(rd_ops), STAT(failed_rd_ops),
                       STAT(invalid_rd_ops), STAT(rd_total_time_ns) },
    [BLK_REQ_WRITE] = { STAT(wr_bytes), STAT(wr_ops), STAT(failed_wr_ops),
                        STAT(invalid_wr_ops), STAT(wr_total_time_ns) },
    [BLK_REQ_ZERO] = { STAT(zero_bytes), STAT(zero_ops),
                       STAT(failed_zero_ops), STAT(invalid_wr_ops),
                       STAT(zero_total_time_ns) },
    [BLK_REQ_DISCARD] = { STAT(unmap_bytes), STAT(unmap_ops),
                          STAT(failed_unmap_ops), STAT(invalid_wr_ops),
                          STAT(unmap_total_time_ns) },
    [BLK_REQ_FLUSH] = { SIZE_MAX, STAT(flush_ops), STAT(failed_flush_ops),
                        STAT(invalid_flush_ops), STAT(flush_total_time_ns) },
};

static void blk_stat_add(BlockBackend *blk, size_t field, uint64_t n)
{
    if (field != SIZE_MAX) {
        qatomic_add((uint64_t *)((char *)&blk->stats + field), n);
    }
}

/*
 * Count a request that was refused before reaching the node (@valid
 * false), or that completed with @ret after starting at @start_ns.
 */
static void blk_account(BlockBackend *blk, const BlkRequest *r, bool valid,
                        int ret, int64_t start_ns)
{
    const BlkAcctFields *f;
    int64_t now = get_clock_ns();

    if (r->type >= G_N_ELEMENTS(blk_acct_fields)) {
        return;
    }
    f = &blk_acct_fields[r->type];
    if (!valid) {
        blk_stat_add(blk, f->invalid, 1);
    } else if (ret < 0) {
        blk_stat_add(blk, f->failed, 1);
        blk_stat_add(blk, f->time_ns, now - start_ns);
    } else {
        blk_stat_add(blk, f->ops, 1);
        blk_stat_add(blk, f->bytes, r->bytes);
        blk_stat_add(blk, f->time_ns, now - start_ns);
    }
    qatomic_set(&blk->stats.last_access_time_ns, now);
}

/*
 * The backend's own checks, before the node sees the request: a node to
 * send it to, the permission it needs, and a range inside the node.
 */
static int blk_check_request(BlockBackend *blk, const BlkRequest *r)
    GRAPH_RDLOCK
{
    uint64_t perm = qatomic_read(&blk->perm);
    int64_t len;

    if (!blk->root) {
        error_setg(r->errp, "Block backend '%s' has no node", blk->name);
        return -ENOMEDIUM;
    }
    switch (r->type) {
    case BLK_REQ_WRITE:
    case BLK_REQ_ZERO:
    case BLK_REQ_DISCARD:
        if (!(perm & BLK_PERM_WRITE)) {
            return -EPERM;
        }
        break;
    case BLK_REQ_TRUNCATE:
        if (!(perm & BLK_PERM_RESIZE)) {
            error_setg(r->errp, "Block backend '%s' does not have the "
                       "'resize' permission", blk->name);
            return -EPERM;
        }
        if (r->offset < 0) {
            error_setg(r->errp, "Invalid size %" PRId64, r->offset);
            return -EINVAL;
        }
        return 0;
    case BLK_REQ_FLUSH:
        return 0;
    default:
        break;
    }

    if (r->offset < 0 || r->bytes < 0) {
        return -EIO;
    }
    if ((r->type == BLK_REQ_READ || r->type == BLK_REQ_WRITE) &&
        r->bytes > BDRV_REQUEST_MAX_BYTES) {
        return -EIO;
    }
    len = bdrv_get_total_bytes(blk->root->bs);
    if (r->offset > len || len - r->offset < r->bytes) {
        return -EIO;
    }
    return 0;
}

static int coroutine_fn blk_co_do_request(BlockBackend *blk,
                                          const BlkRequest *r) GRAPH_RDLOCK
{
    BdrvChild *root = blk->root;
    BlockDriverState *file;
    int64_t map;
    int ret;

    switch (r->type) {
    case BLK_REQ_READ:
        return bdrv_co_preadv(root, r->offset, r->bytes, r->qiov, r->flags);
    case BLK_REQ_WRITE:
        return bdrv_co_pwritev(root, r->offset, r->bytes, r->qiov, r->flags);
    case BLK_REQ_ZERO:
        return bdrv_co_pwrite_zeroes(root, r->offset, r->bytes, r->flags);
    case BLK_REQ_DISCARD:
        return bdrv_co_pdiscard(root, r->offset, r->bytes);
    case BLK_REQ_FLUSH:
        return bdrv_co_flush(root->bs);
    case BLK_REQ_BLOCK_STATUS:
        ret = bdrv_co_block_status(root->bs, true, r->offset, r->bytes,
                                   r->pnum, &map, &file);
        if (ret < 0) {
            return ret;
        }
        *r->status = ret;
        return 0;
    case BLK_REQ_TRUNCATE:
        /* Not exact, like block_resize: a driver may round up. */
        return bdrv_co_truncate(root, r->offset, false, r->errp);
    }
    g_assert_not_reached();
}

/*
 * Every request goes through here: counted, parked while drained, checked,
 * sent to the node under the graph read lock, accounted.  Called
 * concurrently from coroutines in any thread.
 */
static int coroutine_fn blk_co_request(BlockBackend *blk, const BlkRequest *r)
{
    int64_t start_ns;
    bool valid;
    int ret;

    IO_CODE();
    blk_inc_in_flight(blk);
    blk_wait_while_drained(blk);
    start_ns = get_clock_ns();

    bdrv_graph_co_rdlock();
    ret = blk_check_request(blk, r);
    valid = ret == 0;
    if (valid) {
        ret = blk_co_do_request(blk, r);
    }
    bdrv_graph_co_rdunlock();

    blk_account(blk, r, valid, ret, start_ns);
    blk_dec_in_flight(blk);
    return ret;
}

int coroutine_fn blk_co_preadv(BlockBackend *blk, int64_t offset,
                               int64_t bytes, IOVec *qiov,
                               BdrvRequestFlags flags)
{
    BlkRequest r = {
        .type = BLK_REQ_READ, .offset = offset, .bytes = bytes,
        .qiov = qiov, .flags = flags,
    };

    assert(bytes < 0 || qiov->size == (uint64_t)bytes);
    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_pwritev(BlockBackend *blk, int64_t offset,
                                int64_t bytes, IOVec *qiov,
                                BdrvRequestFlags flags)
{
    BlkRequest r = {
        .type = BLK_REQ_WRITE, .offset = offset, .bytes = bytes,
        .qiov = qiov, .flags = flags,
    };

    assert(bytes < 0 || qiov->size == (uint64_t)bytes);
    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_pread(BlockBackend *blk, int64_t offset,
                              int64_t bytes, void *buf,
                              BdrvRequestFlags flags)
{
    IOVec qiov;

    iovec_init_buf(&qiov, buf, MAX(bytes, 0));
    return blk_co_preadv(blk, offset, bytes, &qiov, flags);
}

int coroutine_fn blk_co_pwrite(BlockBackend *blk, int64_t offset,
                               int64_t bytes, const void *buf,
                               BdrvRequestFlags flags)
{
    IOVec qiov;

    /* The write only reads the buffer. */
    iovec_init_buf(&qiov, (void *)buf, MAX(bytes, 0));
    return blk_co_pwritev(blk, offset, bytes, &qiov, flags);
}

int coroutine_fn blk_co_pwrite_zeroes(BlockBackend *blk, int64_t offset,
                                      int64_t bytes, BdrvRequestFlags flags)
{
    BlkRequest r = {
        .type = BLK_REQ_ZERO, .offset = offset, .bytes = bytes,
        .flags = flags,
    };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_pdiscard(BlockBackend *blk, int64_t offset,
                                 int64_t bytes)
{
    BlkRequest r = {
        .type = BLK_REQ_DISCARD, .offset = offset, .bytes = bytes,
    };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_flush(BlockBackend *blk)
{
    BlkRequest r = { .type = BLK_REQ_FLUSH };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_block_status(BlockBackend *blk, int64_t offset,
                                     int64_t bytes, int64_t *pnum,
                                     int *status)
{
    BlkRequest r = {
        .type = BLK_REQ_BLOCK_STATUS, .offset = offset, .bytes = bytes,
        .pnum = pnum, .status = status,
    };

    return blk_co_request(blk, &r);
}

int coroutine_fn blk_co_truncate(BlockBackend *blk, int64_t offset,
                                 Error **errp)
{
    BlkRequest r = {
        .type = BLK_REQ_TRUNCATE, .offset = offset, .errp = errp,
    };

    return blk_co_request(blk, &r);
}

/* --- Synchronous wrappers: main loop -------------------------------------- */

typedef struct BlkSyncCo {
    BlockBackend *blk;
    BlkRequest req;
    IOVec qiov;
} BlkSyncCo;

static int coroutine_fn blk_sync_co(void *opaque)
{
    BlkSyncCo *s = opaque;

    return blk_co_request(s->blk, &s->req);
}

/*
 * Run @s's request in a coroutine in the backend's context and wait for it
 * in the main loop.  A request on a drained node parks until the drain
 * ends, so this must not be called inside a drained section of the node.
 */
static int blk_sync_run(BlkSyncCo *s)
{
    GLOBAL_STATE_CODE();
    assert(!in_coroutine());
    return bdrv_run_co_ret(blk_get_aio_context(s->blk), blk_sync_co, s);
}

static int blk_sync_rw(BlockBackend *blk, BlkReqType type, int64_t offset,
                       int64_t bytes, void *buf, BdrvRequestFlags flags)
{
    BlkSyncCo s = {
        .blk = blk,
        .req = {
            .type = type, .offset = offset, .bytes = bytes,
            .qiov = &s.qiov, .flags = flags,
        },
    };

    iovec_init_buf(&s.qiov, buf, MAX(bytes, 0));
    return blk_sync_run(&s);
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    return blk_sync_rw(blk, BLK_REQ_READ, offset, bytes, buf, flags);
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    /* The write only reads the buffer. */
    return blk_sync_rw(blk, BLK_REQ_WRITE, offset, bytes, (void *)buf,
                       flags);
}

int blk_flush(BlockBackend *blk)
{
    BlkSyncCo s = { .blk = blk, .req = { .type = BLK_REQ_FLUSH } };

    return blk_sync_run(&s);
}
