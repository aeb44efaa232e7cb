/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The generic request path for data: every read, write, write-zeroes and
 * discard on a node passes through here before its driver sees it.  The
 * other requests have files of their own: flush.c, block-status.c and
 * truncate.c; the serialisation of overlapping requests is
 * tracked-requests.c (with io-int.h, their shared internals).
 *
 * Layers, top to bottom:
 *  1. Checking (bdrv_check_request): node open, flags known for the
 *     operation, range within the node, node writable.  A driver never sees
 *     a request that fails these checks.
 *  2. Accounting: every request counts in bs->in_flight from its first
 *     instruction to its last, so a drain that sees in_flight == 0 knows
 *     nothing of the node is running.
 *  3. Serialisation (tracked requests, tracked-requests.c): a write that
 *     is not aligned to bl.request_alignment is done as read-modify-write
 *     of its head and tail blocks and excludes every overlapping request
 *     for its duration.
 *  4. Padding: unaligned reads read the aligned range (the padding goes to
 *     a scratch buffer); unaligned writes merge the caller's data with the
 *     blocks they read back.
 *  5. Splitting to bl.max_transfer (and to bounded chunks for bounces and
 *     explicit zeroes), bouncing buffers that the node cannot take
 *     (bl.min_mem_alignment, for O_DIRECT), emulating FUA with a flush.
 *
 * Invariants:
 *  - Drivers only see requests aligned to bl.request_alignment, within
 *    max_transfer, with buffers aligned to bl.min_mem_alignment.
 *  - write_gen is incremented after every driver call that may have
 *    changed data (whatever its result), before the request completes
 *    (flush.c relies on it).
 *  - Likewise every enabled dirty bitmap of the node is marked dirty for
 *    the range of a write, write-zeroes or discard after the driver call
 *    and before the request completes, whatever the result (a failed
 *    write may have changed part of the range): a mirror that finds a
 *    clean bitmap after a drain has every completed write's data.
 *  - No BdMutex is held across a yield (reqs_lock is dropped by
 *    co_queue_wait_bd() while a request waits).
 *
 * Callers hold the graph read lock; everything here runs in coroutines in
 * any AioContext, except the accounting and the atomic accessor.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/io/io-int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/main-loop.h"

/*
 * Bounce buffers and the zero buffer of the write-zeroes fallback are
 * allocated per chunk of at most this size, whatever the request's size.
 */
#define BDRV_BOUNCE_CHUNK   (1 << 20)

/* The operations the checking layer knows, for their flags and checks. */
typedef enum BdrvReqType {
    BDRV_REQ_TYPE_READ,
    BDRV_REQ_TYPE_WRITE,
    BDRV_REQ_TYPE_ZERO,
    BDRV_REQ_TYPE_DISCARD,
} BdrvReqType;

/*
 * Flags a caller may pass, per operation.  The internal flags
 * (BDRV_REQ_SERIALISING, BDRV_REQ_ZERO_WRITE) are never accepted from
 * outside: io.c sets them itself.
 */
static const BdrvRequestFlags bdrv_valid_flags[] = {
    [BDRV_REQ_TYPE_READ]    = 0,
    [BDRV_REQ_TYPE_WRITE]   = BDRV_REQ_FUA,
    [BDRV_REQ_TYPE_ZERO]    = BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP |
                              BDRV_REQ_NO_FALLBACK,
    [BDRV_REQ_TYPE_DISCARD] = 0,
};

/* --- In-flight accounting ------------------------------------------------ */

void bdrv_inc_in_flight(BlockDriverState *bs)
{
    IO_CODE();
    qatomic_inc(&bs->in_flight);
}

void bdrv_dec_in_flight(BlockDriverState *bs)
{
    IO_CODE();
    qatomic_dec(&bs->in_flight);
    /*
     * The decrement is a full barrier, and aio_wait_kick() issues another
     * smp_mb() before it reads num_waiters: together they pair with the
     * smp_mb() after num_waiters++ in AIO_WAIT_WHILE().  A drain polling
     * in_flight in the main loop either reads the new count or is woken.
     */
    aio_wait_kick();
}

/* --- Small helpers -------------------------------------------------------- */

/* Alignment of buffers the driver needs; 1 when it takes any buffer. */
static size_t bdrv_mem_align(BlockDriverState *bs)
{
    size_t align = MAX(bs->bl.min_mem_alignment, 1);

    assert(is_power_of_2(align));
    return align;
}

/*
 * True if @v cannot go to the driver as it is: with O_DIRECT, every
 * element must start at a multiple of min_mem_alignment and be a multiple
 * of request_alignment long (statx's dio_mem_align / dio_offset_align).
 */
static bool bdrv_needs_bounce(BlockDriverState *bs, const IOVec *v)
{
    size_t mem_align = bdrv_mem_align(bs);
    size_t len_align = bdrv_req_align(bs);

    if (mem_align == 1) {
        return false;
    }
    for (int i = 0; i < v->niov; i++) {
        if ((uintptr_t)v->iov[i].iov_base % mem_align ||
            v->iov[i].iov_len % len_align) {
            return true;
        }
    }
    return false;
}

static bool bdrv_is_aligned(BlockDriverState *bs, int64_t offset,
                            int64_t bytes)
{
    uint32_t align = bdrv_req_align(bs);

    return IS_ALIGNED(offset, align) && IS_ALIGNED(bytes, align);
}

/*
 * Largest piece sent to the driver in one call: bl.max_transfer (or
 * @limit if smaller, 0 for none) rounded down to the request alignment,
 * never less than one aligned block.
 */
static int64_t bdrv_max_chunk(BlockDriverState *bs, uint64_t limit)
{
    uint32_t align = bdrv_req_align(bs);
    uint64_t max = BDRV_REQUEST_MAX_BYTES;

    if (bs->bl.max_transfer) {
        max = MIN(max, bs->bl.max_transfer);
    }
    if (limit) {
        max = MIN(max, limit);
    }
    return MAX(ROUND_DOWN(max, (uint64_t)align), align);
}

/* Round to a multiple of @align, which need not be a power of two. */
static int64_t round_up_any(int64_t n, int64_t align)
{
    return DIV_ROUND_UP(n, align) * align;
}

static int64_t round_down_any(int64_t n, int64_t align)
{
    return n / align * align;
}

/* --- Checking layer --------------------------------------------------------- */

/*
 * The checks every request passes before it reaches serialisation or a
 * driver.  Returns 0 or -errno:
 *   -ENOMEDIUM  the node has no driver;
 *   -EINVAL     a flag the operation does not take, or a buffer shorter
 *               than the request;
 *   -EPERM      a write, write-zeroes or discard on a read-only node;
 *   -EIO        a negative offset or length, a read or write longer than
 *               BDRV_REQUEST_MAX_BYTES, or a range that ends past the
 *               node's size (as QEMU).
 */
static int bdrv_check_request(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, const IOVec *qiov,
                              BdrvRequestFlags flags, BdrvReqType type)
{
    bool is_rw = type == BDRV_REQ_TYPE_READ || type == BDRV_REQ_TYPE_WRITE;
    int64_t max_bytes = is_rw ? BDRV_REQUEST_MAX_BYTES : BDRV_MAX_LENGTH;

    if (!bs->drv) {
        return -ENOMEDIUM;
    }
    if (flags & ~bdrv_valid_flags[type]) {
        return -EINVAL;
    }
    if (is_rw && bytes > 0 && (!qiov || qiov->size < (uint64_t)bytes)) {
        return -EINVAL;
    }
    if (type != BDRV_REQ_TYPE_READ && bs->read_only) {
        return -EPERM;
    }
    if (offset < 0 || bytes < 0 || bytes > max_bytes ||
        offset > bdrv_get_total_bytes(bs) - bytes) {
        return -EIO;
    }
    return 0;
}

/*
 * The range check again, once the request is tracked: it may have waited
 * behind a truncate that shrank the node since bdrv_check_request() saw
 * the old size.  The truncate stored the new size before it stopped
 * excluding us, and reqs_lock (tracked requests) or the acquire read of
 * serialising_in_flight (untracked writes) orders that store before this
 * read.
 */
static int bdrv_check_range_tracked(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes)
{
    return offset > bdrv_get_total_bytes(bs) - bytes ? -EIO : 0;
}

/* --- The driver contract ---------------------------------------------------- */

static void G_NORETURN bdrv_driver_broke(BlockDriverState *bs, const char *op,
                                         const char *what)
{
    error_report("block driver '%s' (node '%s'), %s: %s",
                 bs->drv ? bs->drv->format_name : "(none)", bs->node_name, op,
                 what);
    abort();
}

void bdrv_driver_check_request(BlockDriverState *bs, const char *op,
                               int64_t offset, int64_t bytes,
                               BdrvRequestFlags flags,
                               BdrvRequestFlags supported)
{
    uint32_t align = bdrv_req_align(bs);
    int64_t end = ROUND_UP(bdrv_get_total_bytes(bs), align);

    if (!bs->drv) {
        bdrv_driver_broke(bs, op, "called on a closed node");
    }
    if (offset < 0 || bytes <= 0 || !IS_ALIGNED(offset, align) ||
        !IS_ALIGNED(bytes, align) || offset > end - bytes) {
        g_autofree char *why = g_strdup_printf(
            "request [%" PRId64 ", +%" PRId64 ") not aligned to %" PRIu32
            " or past the end (%" PRId64 ")", offset, bytes, align, end);

        bdrv_driver_broke(bs, op, why);
    }
    if (flags & ~supported) {
        bdrv_driver_broke(bs, op, "flags the driver does not take");
    }
}

/* The same for a read or write, which also respects max_transfer. */
static void bdrv_driver_check_rw(BlockDriverState *bs, const char *op,
                                 int64_t offset, int64_t bytes,
                                 BdrvRequestFlags flags,
                                 BdrvRequestFlags supported)
{
    bdrv_driver_check_request(bs, op, offset, bytes, flags, supported);
    if (bs->bl.max_transfer && (uint64_t)bytes > bs->bl.max_transfer) {
        bdrv_driver_broke(bs, op, "request longer than max_transfer");
    }
}

int bdrv_driver_check_result(BlockDriverState *bs, const char *op, int ret)
{
    if (ret > 0) {
        g_autofree char *why = g_strdup_printf(
            "returned %d, neither 0 nor a negative errno", ret);

        bdrv_driver_broke(bs, op, why);
    }
    return ret;
}

/* --- Driver calls: sub-ranges and bounce buffers --------------------------- */

/*
 * The buffer a driver call gets for [qoff, qoff + bytes) of @qiov: @qiov
 * itself when it is exactly that and suitably aligned, a sub-vector of it
 * when only the range differs, or a bounce buffer aligned to
 * min_mem_alignment.
 */
typedef struct DriverBuf {
    IOVec local;
    IOVec *v;           /* what the driver gets */
    void *bounce;       /* blockd_memalign()ed, or NULL */
} DriverBuf;

static void driver_buf_prepare(BlockDriverState *bs, DriverBuf *b,
                               IOVec *qiov, size_t qoff, int64_t bytes,
                               bool is_write)
{
    b->bounce = NULL;
    b->v = qiov;
    if (qoff != 0 || qiov->size != (uint64_t)bytes) {
        iovec_init(&b->local, qiov->niov);
        iovec_concat(&b->local, qiov, qoff, bytes);
        b->v = &b->local;
    }
    if (!bdrv_needs_bounce(bs, b->v)) {
        return;
    }
    b->bounce = blockd_memalign(bdrv_mem_align(bs), bytes);
    if (is_write) {
        iovec_to_buf(qiov, qoff, b->bounce, bytes);
    }
    if (b->v == &b->local) {
        iovec_destroy(&b->local);
    }
    iovec_init_buf(&b->local, b->bounce, bytes);
    b->v = &b->local;
}

static void driver_buf_finish(DriverBuf *b, IOVec *qiov, size_t qoff,
                              int64_t bytes, bool copy_out)
{
    if (b->bounce && copy_out) {
        iovec_from_buf(qiov, qoff, b->bounce, bytes);
    }
    if (b->v == &b->local) {
        iovec_destroy(&b->local);
    }
    if (b->bounce) {
        blockd_vfree(b->bounce);
    }
}

static int coroutine_fn bdrv_driver_preadv(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVec *qiov, size_t qoff,
                                           BdrvRequestFlags flags)
    GRAPH_RDLOCK
{
    const BlockDriver *drv = bs->drv;
    DriverBuf b;
    int ret;

    if (!drv->bdrv_co_preadv) {
        return -ENOTSUP;
    }
    bdrv_driver_check_rw(bs, "read", offset, bytes, flags, 0);
    driver_buf_prepare(bs, &b, qiov, qoff, bytes, false);
    ret = drv->bdrv_co_preadv(bs, offset, bytes, b.v, flags);
    driver_buf_finish(&b, qiov, qoff, bytes, ret == 0);
    return bdrv_driver_check_result(bs, "read", ret);
}

static int coroutine_fn bdrv_driver_pwritev(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            IOVec *qiov, size_t qoff,
                                            BdrvRequestFlags flags)
    GRAPH_RDLOCK
{
    const BlockDriver *drv = bs->drv;
    DriverBuf b;
    int ret;

    if (!drv->bdrv_co_pwritev) {
        return -ENOTSUP;
    }
    bdrv_driver_check_rw(bs, "write", offset, bytes, flags,
                         drv->supported_write_flags);
    driver_buf_prepare(bs, &b, qiov, qoff, bytes, true);
    ret = drv->bdrv_co_pwritev(bs, offset, bytes, b.v, flags);
    bdrv_data_changed(bs);
    driver_buf_finish(&b, qiov, qoff, bytes, false);
    return bdrv_driver_check_result(bs, "write", ret);
}

/*
 * Call @fn (bdrv_driver_preadv or _pwritev) for the aligned range
 * [offset, offset + bytes) and [qoff, ...) of @qiov, in pieces of at most
 * max_transfer (and of bounded size when the buffer has to be bounced).
 */
typedef int coroutine_fn DriverRwFn(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, IOVec *qiov, size_t qoff,
                                    BdrvRequestFlags flags);

static int coroutine_fn bdrv_driver_rw_chunks(BlockDriverState *bs,
                                              DriverRwFn *fn, int64_t offset,
                                              int64_t bytes, IOVec *qiov,
                                              size_t qoff,
                                              BdrvRequestFlags flags)
    GRAPH_RDLOCK
{
    int64_t chunk = bdrv_max_chunk(bs, bdrv_needs_bounce(bs, qiov) ?
                                       BDRV_BOUNCE_CHUNK : 0);

    assert(bdrv_is_aligned(bs, offset, bytes));
    while (bytes > 0) {
        int64_t n = MIN(bytes, chunk);
        int ret = fn(bs, offset, n, qiov, qoff, flags);

        if (ret < 0) {
            return ret;
        }
        offset += n;
        qoff += n;
        bytes -= n;
    }
    return 0;
}

/* --- Reads ------------------------------------------------------------------ */

/*
 * Read an aligned range into [qoff, qoff + bytes) of @qiov, in pieces of
 * at most max_transfer.  Past the last (partial) block of the node, the
 * buffer is zero-filled: padding of a node whose size is not aligned.
 * No checks, no serialisation: the callers did both.
 */
static int coroutine_fn bdrv_aligned_preadv(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            IOVec *qiov, size_t qoff)
    GRAPH_RDLOCK
{
    uint32_t align = bdrv_req_align(bs);
    int64_t end_of_data = ROUND_UP(bdrv_get_total_bytes(bs), align);
    int64_t max = MAX(end_of_data - offset, 0);

    assert(bdrv_is_aligned(bs, offset, bytes));
    if (bytes > max) {
        iovec_memset(qiov, qoff + max, 0, bytes - max);
        bytes = max;
    }
    return bdrv_driver_rw_chunks(bs, bdrv_driver_preadv, offset, bytes, qiov,
                                 qoff, 0);
}

/*
 * Unaligned read: read the aligned range, with the bytes before and after
 * the request going to a scratch buffer.  (If the combined vector does
 * not suit the node's buffer alignment, the driver call bounces it.)
 */
static int coroutine_fn bdrv_padded_preadv(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVec *qiov)
    GRAPH_RDLOCK
{
    uint32_t align = bdrv_req_align(bs);
    int64_t start = ROUND_DOWN(offset, align);
    int64_t end = ROUND_UP(offset + bytes, align);
    int64_t head = offset - start;
    int64_t tail = end - (offset + bytes);
    uint8_t *scratch = blockd_memalign(bdrv_mem_align(bs), 2 * align);
    IOVec v;
    int ret;

    iovec_init(&v, qiov->niov + 2);
    if (head) {
        iovec_add(&v, scratch, head);
    }
    iovec_concat(&v, qiov, 0, bytes);
    if (tail) {
        iovec_add(&v, scratch + align, tail);
    }
    ret = bdrv_aligned_preadv(bs, start, end - start, &v, 0);
    iovec_destroy(&v);
    blockd_vfree(scratch);
    return ret;
}

int coroutine_fn bdrv_co_preadv(BdrvChild *child, int64_t offset,
                                int64_t bytes, IOVec *qiov,
                                BdrvRequestFlags flags)
{
    BlockDriverState *bs = child->bs;
    BdrvTrackedRequest req;
    int ret;

    IO_CODE();
    bdrv_inc_in_flight(bs);
    ret = bdrv_check_request(bs, offset, bytes, qiov, flags,
                             BDRV_REQ_TYPE_READ);
    if (ret < 0 || bytes == 0) {
        goto out;
    }
    tracked_request_begin(&req, bs, offset, bytes, BDRV_TRACK_READ);
    if (bdrv_is_aligned(bs, offset, bytes)) {
        ret = bdrv_aligned_preadv(bs, offset, bytes, qiov, 0);
    } else {
        ret = bdrv_padded_preadv(bs, offset, bytes, qiov);
    }
    tracked_request_end(&req);
out:
    bdrv_dec_in_flight(bs);
    return ret;
}

/* --- Writes: aligned data and zeroes --------------------------------------- */

/*
 * The write helpers below report through *@need_flush that the caller
 * asked for FUA and some driver call could not honour it: the top of the
 * write path then flushes once at the end.
 */

static int coroutine_fn bdrv_write_data_aligned(BlockDriverState *bs,
                                                int64_t offset, int64_t bytes,
                                                IOVec *qiov, size_t qoff,
                                                BdrvRequestFlags flags,
                                                bool *need_flush)
    GRAPH_RDLOCK
{
    BdrvRequestFlags dflags = flags & BDRV_REQ_FUA &
                              bs->drv->supported_write_flags;

    if ((flags & BDRV_REQ_FUA) && !(dflags & BDRV_REQ_FUA)) {
        *need_flush = true;
    }
    return bdrv_driver_rw_chunks(bs, bdrv_driver_pwritev, offset, bytes,
                                 qiov, qoff, dflags);
}

/* Write-zeroes fallback: explicit zero buffers, one bounded chunk reused. */
static int coroutine_fn bdrv_write_zero_buffers(BlockDriverState *bs,
                                                int64_t offset, int64_t bytes,
                                                BdrvRequestFlags flags,
                                                bool *need_flush)
    GRAPH_RDLOCK
{
    int64_t chunk = MIN(bytes, bdrv_max_chunk(bs, BDRV_BOUNCE_CHUNK));
    void *buf = blockd_memalign(bdrv_mem_align(bs), chunk);
    int ret = 0;

    memset(buf, 0, chunk);
    while (bytes > 0 && ret == 0) {
        int64_t n = MIN(bytes, chunk);
        IOVec v;

        iovec_init_buf(&v, buf, n);
        ret = bdrv_write_data_aligned(bs, offset, n, &v, 0,
                                      flags & BDRV_REQ_FUA, need_flush);
        offset += n;
        bytes -= n;
    }
    blockd_vfree(buf);
    return ret;
}

/*
 * Next piece of an aligned write-zeroes at @offset: at most
 * max_pwrite_zeroes, and cut at pwrite_zeroes_alignment boundaries so that
 * the unaligned head and tail go to the driver on their own (it may well
 * refuse them with -ENOTSUP, and they then fall back to explicit zeroes).
 */
static int64_t bdrv_zero_piece(BlockDriverState *bs, int64_t offset,
                               int64_t bytes)
{
    uint32_t align = bdrv_req_align(bs);
    int64_t zalign = MAX(bs->bl.pwrite_zeroes_alignment, align);
    int64_t n = MIN(bytes, bdrv_max_chunk(bs, bs->bl.max_pwrite_zeroes));

    if (offset % zalign) {
        return MIN(n, zalign - offset % zalign);
    }
    if (n > zalign) {
        return round_down_any(n, zalign);
    }
    return n;
}

static int coroutine_fn bdrv_write_zeroes_aligned(BlockDriverState *bs,
                                                  int64_t offset,
                                                  int64_t bytes,
                                                  BdrvRequestFlags flags,
                                                  bool *need_flush)
    GRAPH_RDLOCK
{
    const BlockDriver *drv = bs->drv;
    BdrvRequestFlags zflags = flags & drv->supported_zero_flags &
        (BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK);

    assert(bdrv_is_aligned(bs, offset, bytes));
    while (bytes > 0) {
        int64_t n = bdrv_zero_piece(bs, offset, bytes);
        int ret = -ENOTSUP;

        if (drv->bdrv_co_pwrite_zeroes) {
            bdrv_driver_check_request(bs, "write-zeroes", offset, n, zflags,
                                      drv->supported_zero_flags);
            ret = drv->bdrv_co_pwrite_zeroes(bs, offset, n, zflags);
            bdrv_data_changed(bs);
            bdrv_driver_check_result(bs, "write-zeroes", ret);
            if (ret == 0 && (flags & BDRV_REQ_FUA) &&
                !(zflags & BDRV_REQ_FUA)) {
                *need_flush = true;
            }
        }
        if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
            ret = bdrv_write_zero_buffers(bs, offset, n, flags, need_flush);
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    return 0;
}

static int coroutine_fn bdrv_write_aligned(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVec *qiov, size_t qoff,
                                           BdrvRequestFlags flags,
                                           bool *need_flush)
    GRAPH_RDLOCK
{
    if (flags & BDRV_REQ_ZERO_WRITE) {
        return bdrv_write_zeroes_aligned(bs, offset, bytes, flags,
                                         need_flush);
    }
    return bdrv_write_data_aligned(bs, offset, bytes, qiov, qoff, flags,
                                   need_flush);
}

/* Read / write one aligned block of @bs through a plain buffer. */
static int coroutine_fn bdrv_read_block(BlockDriverState *bs, int64_t offset,
                                        void *buf, int64_t len)
    GRAPH_RDLOCK
{
    IOVec v;

    iovec_init_buf(&v, buf, len);
    return bdrv_aligned_preadv(bs, offset, len, &v, 0);
}

static int coroutine_fn bdrv_write_block(BlockDriverState *bs, int64_t offset,
                                         void *buf, int64_t len,
                                         BdrvRequestFlags flags,
                                         bool *need_flush)
    GRAPH_RDLOCK
{
    IOVec v;

    iovec_init_buf(&v, buf, len);
    return bdrv_write_data_aligned(bs, offset, len, &v, 0, flags, need_flush);
}

/*
 * Read-modify-write of an unaligned write or write-zeroes.  The caller
 * tracks it as a serialising request, so nothing else touches the blocks
 * between the read and the write.
 */
static int coroutine_fn bdrv_write_padded(BlockDriverState *bs,
                                          int64_t offset, int64_t bytes,
                                          IOVec *qiov, BdrvRequestFlags flags,
                                          bool *need_flush)
    GRAPH_RDLOCK
{
    uint32_t align = bdrv_req_align(bs);
    int64_t start = ROUND_DOWN(offset, align);
    int64_t end = ROUND_UP(offset + bytes, align);
    int64_t head = offset - start;
    int64_t tail = end - (offset + bytes);
    bool one_block = end - start == align;
    uint8_t *pad = blockd_memalign(bdrv_mem_align(bs), 2 * align);
    uint8_t *tail_buf = one_block ? pad : pad + align;
    BdrvRequestFlags data_flags = flags & BDRV_REQ_FUA;
    int ret = 0;

    /* Middle first: with NO_FALLBACK it may fail before we touch data. */
    if ((flags & BDRV_REQ_ZERO_WRITE) && !one_block) {
        int64_t mid_start = head ? start + align : start;
        int64_t mid_end = tail ? end - align : end;

        if (mid_end > mid_start) {
            ret = bdrv_write_zeroes_aligned(bs, mid_start,
                                            mid_end - mid_start, flags,
                                            need_flush);
        }
    }
    if (ret == 0 && (head || one_block)) {
        ret = bdrv_read_block(bs, start, pad, align);
    }
    if (ret == 0 && tail && !one_block) {
        ret = bdrv_read_block(bs, end - align, tail_buf, align);
    }
    if (ret < 0) {
        goto out;
    }

    if (!(flags & BDRV_REQ_ZERO_WRITE)) {
        IOVec v;

        iovec_init(&v, qiov->niov + 2);
        if (head) {
            iovec_add(&v, pad, head);
        }
        iovec_concat(&v, qiov, 0, bytes);
        if (tail) {
            iovec_add(&v, tail_buf + align - tail, tail);
        }
        ret = bdrv_write_data_aligned(bs, start, end - start, &v, 0, flags,
                                      need_flush);
        iovec_destroy(&v);
    } else if (one_block) {
        memset(pad + head, 0, bytes);
        ret = bdrv_write_block(bs, start, pad, align, data_flags,
                               need_flush);
    } else {
        if (head) {
            memset(pad + head, 0, align - head);
            ret = bdrv_write_block(bs, start, pad, align, data_flags,
                                   need_flush);
        }
        if (ret == 0 && tail) {
            memset(tail_buf, 0, align - tail);
            ret = bdrv_write_block(bs, end - align, tail_buf, align,
                                   data_flags, need_flush);
        }
    }
out:
    blockd_vfree(pad);
    return ret;
}

/*
 * Every write (@type BDRV_REQ_TYPE_WRITE) and write-zeroes
 * (BDRV_REQ_TYPE_ZERO, @qiov NULL) ends here, with the caller's @flags.
 */
static int coroutine_fn bdrv_co_do_pwritev(BlockDriverState *bs,
                                           int64_t offset, int64_t bytes,
                                           IOVec *qiov,
                                           BdrvRequestFlags flags,
                                           BdrvReqType type)
    GRAPH_RDLOCK
{
    BdrvTrackedRequest req;
    bool need_flush = false;
    bool aligned;
    int ret;

    bdrv_inc_in_flight(bs);
    ret = bdrv_check_request(bs, offset, bytes, qiov, flags, type);
    if (ret < 0 || bytes == 0) {
        goto out;
    }
    if (type == BDRV_REQ_TYPE_ZERO) {
        flags |= BDRV_REQ_ZERO_WRITE;
        qiov = NULL;
    }
    if (!(flags & BDRV_REQ_ZERO_WRITE) &&
        bs->detect_zeroes != BDRV_DETECT_ZEROES_OFF &&
        iovec_is_zero(qiov, 0, bytes)) {
        flags |= BDRV_REQ_ZERO_WRITE;
        if (bs->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP &&
            (bs->open_flags & BDRV_O_UNMAP)) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
        qiov = NULL;
    }
    if ((flags & BDRV_REQ_NO_FALLBACK) &&
        (!bs->drv->bdrv_co_pwrite_zeroes ||
         !(bs->drv->supported_zero_flags & BDRV_REQ_NO_FALLBACK))) {
        /* The driver cannot promise not to fall back to slow zeroing. */
        ret = -ENOTSUP;
        goto out;
    }

    aligned = bdrv_is_aligned(bs, offset, bytes);
    tracked_request_begin(&req, bs, offset, bytes,
                          aligned ? BDRV_TRACK_WRITE
                                  : BDRV_TRACK_SERIALISING);
    ret = bdrv_check_range_tracked(bs, offset, bytes);
    if (ret == 0 && aligned) {
        ret = bdrv_write_aligned(bs, offset, bytes, qiov, 0, flags,
                                 &need_flush);
    } else if (ret == 0) {
        ret = bdrv_write_padded(bs, offset, bytes, qiov, flags, &need_flush);
    }
    bdrv_set_dirty(bs, offset, bytes);
    tracked_request_end(&req);
    if (ret == 0 && need_flush) {
        /* Emulated FUA: write_gen already counts this write. */
        ret = bdrv_co_flush(bs);
    }
out:
    bdrv_dec_in_flight(bs);
    return ret;
}

int coroutine_fn bdrv_co_pwritev(BdrvChild *child, int64_t offset,
                                 int64_t bytes, IOVec *qiov,
                                 BdrvRequestFlags flags)
{
    IO_CODE();
    return bdrv_co_do_pwritev(child->bs, offset, bytes, qiov, flags,
                              BDRV_REQ_TYPE_WRITE);
}

int coroutine_fn bdrv_co_pwrite_zeroes(BdrvChild *child, int64_t offset,
                                       int64_t bytes, BdrvRequestFlags flags)
{
    BlockDriverState *bs = child->bs;

    IO_CODE();
    if (!(bs->open_flags & BDRV_O_UNMAP)) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    return bdrv_co_do_pwritev(bs, offset, bytes, NULL, flags,
                              BDRV_REQ_TYPE_ZERO);
}

/* --- Discard ---------------------------------------------------------------- */

/*
 * Discard is advisory: without discard=unmap, or when the driver cannot,
 * it succeeds without doing anything; the parts of the range that are not
 * aligned to pdiscard_alignment are skipped.
 */
int coroutine_fn bdrv_co_pdiscard(BdrvChild *child, int64_t offset,
                                  int64_t bytes)
{
    BlockDriverState *bs = child->bs;
    const BlockDriver *drv = bs->drv;
    BdrvTrackedRequest req;
    int64_t align, start, end, max;
    int ret;

    IO_CODE();
    bdrv_inc_in_flight(bs);
    ret = bdrv_check_request(bs, offset, bytes, NULL, 0,
                             BDRV_REQ_TYPE_DISCARD);
    if (ret < 0 || !(bs->open_flags & BDRV_O_UNMAP) ||
        !drv->bdrv_co_pdiscard) {
        goto out;
    }
    align = MAX(bs->bl.pdiscard_alignment, bdrv_req_align(bs));
    start = round_up_any(offset, align);
    end = round_down_any(offset + bytes, align);
    if (start >= end) {
        goto out;
    }
    max = bs->bl.max_pdiscard ?
          MAX(round_down_any(MIN(bs->bl.max_pdiscard, BDRV_MAX_LENGTH),
                             align), align) :
          end - start;

    tracked_request_begin(&req, bs, start, end - start, BDRV_TRACK_WRITE);
    ret = bdrv_check_range_tracked(bs, offset, bytes);
    while (ret == 0 && start < end) {
        int64_t n = MIN(end - start, max);

        bdrv_driver_check_request(bs, "discard", start, n, 0, 0);
        ret = drv->bdrv_co_pdiscard(bs, start, n);
        bdrv_data_changed(bs);
        bdrv_driver_check_result(bs, "discard", ret);
        if (ret == -ENOTSUP) {
            ret = 0;
            break;
        }
        if (ret < 0) {
            break;
        }
        ret = 0;
        start += n;
    }
    bdrv_set_dirty(bs, offset, bytes);
    tracked_request_end(&req);
out:
    bdrv_dec_in_flight(bs);
    return ret;
}

/* --- Atomic accessors ----------------------------------------------------- */

AioContext *bdrv_get_aio_context_io(BlockDriverState *bs)
{
    IO_CODE();
    return qatomic_read(&bs->aio_context);
}
