/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "null-co" driver: a node of a given size that stores nothing, for
 * tests and benchmarks.  Writes, write-zeroes, discards and flushes
 * succeed without doing anything; reads leave the caller's buffer as it
 * was, or fill it with zeroes with read-zeroes=on.  With latency-ns, every
 * request sleeps at least that long on a timer of its AioContext before it
 * completes (a lower bound: the event loop may run it later).
 *
 * Invariants: all state is immutable after open, so requests in any
 * number of threads need no lock.
 */
#include "util/osdep.h"

#include "block/block_int.h"
#include "block/drivers/drivers.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/main-loop.h"

typedef struct BDRVNullState {
    int64_t latency_ns;         /* immutable */
    bool read_zeroes;           /* immutable */
} BDRVNullState;

static int null_open(BlockDriverState *bs, struct json_object *options,
                     int flags, Error **errp)
{
    BDRVNullState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    s->latency_ns = opts_get_int(options, "latency-ns", 0);
    s->read_zeroes = opts_get_bool(options, "read-zeroes", false);
    qatomic_set(&bs->total_bytes, opts_get_int(options, "size", 1LL << 30));
    g_strlcpy(bs->filename, "null-co://", sizeof(bs->filename));
    return 0;
}

/* Every request ends here: wait out the configured latency. */
static int coroutine_fn null_co_complete(BlockDriverState *bs)
{
    BDRVNullState *s = bs->opaque;

    if (s->latency_ns) {
        co_sleep_ns(s->latency_ns);
    }
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK
null_co_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
               IOVec *qiov, BdrvRequestFlags flags)
{
    BDRVNullState *s = bs->opaque;

    IO_CODE();
    if (s->read_zeroes) {
        iovec_memset(qiov, 0, 0, bytes);
    }
    return null_co_complete(bs);
}

static int coroutine_fn GRAPH_RDLOCK
null_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                IOVec *qiov, BdrvRequestFlags flags)
{
    IO_CODE();
    return null_co_complete(bs);
}

static int coroutine_fn GRAPH_RDLOCK
null_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    IO_CODE();
    return null_co_complete(bs);
}

static int coroutine_fn GRAPH_RDLOCK
null_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    IO_CODE();
    return null_co_complete(bs);
}

static int coroutine_fn GRAPH_RDLOCK null_co_flush(BlockDriverState *bs)
{
    IO_CODE();
    return null_co_complete(bs);
}

static int coroutine_fn GRAPH_RDLOCK
null_co_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                     int64_t bytes, int64_t *pnum, int64_t *map,
                     BlockDriverState **file)
{
    BDRVNullState *s = bs->opaque;

    IO_CODE();
    *pnum = bytes;
    *map = offset;
    *file = bs;
    return BDRV_BLOCK_OFFSET_VALID |
           (s->read_zeroes ? BDRV_BLOCK_ZERO : BDRV_BLOCK_DATA);
}

static const OptDesc null_opts[] = {
    { "size", OPT_SIZE, .def = "1G", .min = 0, .max = BDRV_MAX_LENGTH,
      .help = "size of the node in bytes" },
    { "read-zeroes", OPT_BOOL, .def = "off",
      .help = "fill read buffers with zeroes (else leave them untouched)" },
    { "latency-ns", OPT_INT, .def = "0", .min = 0, .max = INT64_MAX,
      .help = "minimum time every request takes, in nanoseconds" },
    { NULL }
};

const BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    .instance_size = sizeof(BDRVNullState),
    .opts = null_opts,

    .bdrv_open = null_open,

    .bdrv_co_preadv = null_co_preadv,
    .bdrv_co_pwritev = null_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = null_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK |
                            BDRV_REQ_FUA,
    .bdrv_co_pdiscard = null_co_pdiscard,
    .bdrv_co_flush_to_disk = null_co_flush,
    .bdrv_co_block_status = null_co_block_status,
};
