/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "blkdebug" filter driver: fault injection for tests.  It sits on one
 * child, "image" (a node name or a nested definition), passes every
 * request through to it, and fails the requests that match one of its
 * inject-error rules with the rule's errno instead of passing them on.
 *
 * Options, with QEMU's names:
 *   image                      the filtered child (required)
 *   inject-error.N.event       read_aio | write_aio | flush_to_disk |
 *                              pwrite_zeroes | pdiscard
 *   inject-error.N.errno       positive errno to fail with (default EIO)
 *   inject-error.N.once        fire once, then never again (default false)
 *   inject-error.N.sector      only requests covering this 512-byte sector
 *                              (default -1: any request; a flush has no
 *                              range, so a rule with a sector never fails
 *                              a flush)
 *   inject-error.N.immediately fail at once; otherwise the request first
 *                              takes a trip through its event loop, as a
 *                              real failing request would (default false)
 *
 * The first rule that matches a request decides its fate; a once rule that
 * has fired no longer matches.  A failed request never reaches the child.
 *
 * Invariants: the rule array is immutable after open; a once rule's
 * "fired" flag goes from false to true exactly once (an atomic exchange),
 * so two threads racing on it fail exactly one request between them.
 * I/O callbacks run in any AioContext, under the graph read lock.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/drivers/drivers.h"
#include "util/aio.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

#define BLKDEBUG_SECTOR_SIZE 512

typedef enum BlkdebugEvent {
    BLKDBG_READ_AIO,
    BLKDBG_WRITE_AIO,
    BLKDBG_FLUSH_TO_DISK,
    BLKDBG_PWRITE_ZEROES,
    BLKDBG_PDISCARD,
} BlkdebugEvent;

static const char *const blkdebug_event_names[] = {
    [BLKDBG_READ_AIO] = "read_aio",
    [BLKDBG_WRITE_AIO] = "write_aio",
    [BLKDBG_FLUSH_TO_DISK] = "flush_to_disk",
    [BLKDBG_PWRITE_ZEROES] = "pwrite_zeroes",
    [BLKDBG_PDISCARD] = "pdiscard",
    NULL
};

typedef struct BlkdebugRule {
    BlkdebugEvent event;        /* immutable */
    int error;                  /* immutable: positive errno */
    bool once;                  /* immutable */
    int64_t sector;             /* immutable: -1 for any */
    bool immediately;           /* immutable */
    bool fired;                 /* atomic: a once rule has fired */
} BlkdebugRule;

typedef struct BDRVBlkdebugState {
    BlkdebugRule *rules;        /* immutable after open */
    size_t n_rules;             /* immutable after open */
} BDRVBlkdebugState;

static const OptDesc blkdebug_rule_opts[] = {
    { "event", OPT_ENUM, .required = true,
      .enum_values = blkdebug_event_names,
      .help = "the kind of request to fail" },
    { "errno", OPT_INT, .def = "5", .min = 1, .max = 4095,
      .help = "the errno to fail it with (default EIO)" },
    { "once", OPT_BOOL, .def = "off",
      .help = "fail only the first matching request" },
    { "sector", OPT_INT, .def = "-1", .min = -1,
      .max = BDRV_MAX_LENGTH / BLKDEBUG_SECTOR_SIZE,
      .help = "only requests covering this 512-byte sector (-1: any)" },
    { "immediately", OPT_BOOL, .def = "off",
      .help = "fail without a trip through the event loop" },
    { NULL }
};

static const OptDesc blkdebug_opts[] = {
    { "image", OPT_NODE, .required = true,
      .help = "node (name or definition) whose requests are filtered" },
    { "inject-error", OPT_LIST, .nested = blkdebug_rule_opts,
      .help = "rules: which requests fail, and with which errno" },
    { NULL }
};

static void blkdebug_parse_rules(BDRVBlkdebugState *s,
                                 struct json_object *options)
{
    struct json_object *list;

    if (!json_object_object_get_ex(options, "inject-error", &list) ||
        !json_object_is_type(list, json_type_array)) {
        return;
    }
    s->n_rules = json_object_array_length(list);
    s->rules = g_new0(BlkdebugRule, s->n_rules);
    for (size_t i = 0; i < s->n_rules; i++) {
        struct json_object *r = json_object_array_get_idx(list, i);
        BlkdebugRule *rule = &s->rules[i];

        rule->event = opts_get_enum(r, "event", blkdebug_event_names, 0);
        rule->error = opts_get_int(r, "errno", EIO);
        rule->once = opts_get_bool(r, "once", false);
        rule->sector = opts_get_int(r, "sector", -1);
        rule->immediately = opts_get_bool(r, "immediately", false);
    }
}

static int blkdebug_open(BlockDriverState *bs, struct json_object *options,
                         int flags, Error **errp)
{
    BDRVBlkdebugState *s = bs->opaque;
    int64_t size;

    GLOBAL_STATE_CODE();
    blkdebug_parse_rules(s, options);
    if (!bdrv_open_child(options, "image", bs,
                         BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY,
                         false, errp)) {
        g_free(s->rules);
        s->rules = NULL;
        return -EINVAL;
    }
    /* Read the new edge; the main loop is the graph's only writer. */
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    size = bdrv_get_total_bytes(bs->file->bs);
    if (size < 0) {
        error_setg_errno(errp, -size, "Could not get the size of '%s'",
                         bs->file->bs->node_name);
        g_free(s->rules);
        s->rules = NULL;
        return size;
    }
    qatomic_set(&bs->total_bytes, size);
    return 0;
}

static void blkdebug_close(BlockDriverState *bs)
{
    BDRVBlkdebugState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    g_free(s->rules);
    s->rules = NULL;
}

/* Does @rule apply to a request [offset, offset + bytes) of @event? */
static bool blkdebug_rule_matches(const BlkdebugRule *rule,
                                  BlkdebugEvent event, int64_t offset,
                                  int64_t bytes)
{
    int64_t start;

    if (rule->event != event) {
        return false;
    }
    if (rule->sector < 0) {
        return true;
    }
    start = rule->sector * BLKDEBUG_SECTOR_SIZE;
    return bytes > 0 && start + BLKDEBUG_SECTOR_SIZE > offset &&
           start < offset + bytes;
}

/*
 * The errno to fail a request with (negative), or 0 to pass it through.
 * Called concurrently from any thread.
 */
static int coroutine_fn blkdebug_check(BlockDriverState *bs,
                                       BlkdebugEvent event, int64_t offset,
                                       int64_t bytes)
{
    BDRVBlkdebugState *s = bs->opaque;

    IO_CODE();
    for (size_t i = 0; i < s->n_rules; i++) {
        BlkdebugRule *rule = &s->rules[i];

        if (!blkdebug_rule_matches(rule, event, offset, bytes)) {
            continue;
        }
        if (rule->once && qatomic_xchg(&rule->fired, true)) {
            continue;       /* spent: later rules may still match */
        }
        if (!rule->immediately) {
            /* Complete from the event loop, as real I/O would. */
            aio_co_schedule(aio_get_current_context(), co_self());
            co_yield();
        }
        return -rule->error;
    }
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK
blkdebug_co_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                   IOVec *qiov, BdrvRequestFlags flags)
{
    int ret = blkdebug_check(bs, BLKDBG_READ_AIO, offset, bytes);

    return ret ? ret : bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
blkdebug_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                    IOVec *qiov, BdrvRequestFlags flags)
{
    int ret = blkdebug_check(bs, BLKDBG_WRITE_AIO, offset, bytes);

    return ret ? ret : bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
blkdebug_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                          int64_t bytes, BdrvRequestFlags flags)
{
    int ret = blkdebug_check(bs, BLKDBG_PWRITE_ZEROES, offset, bytes);

    return ret ? ret : bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int coroutine_fn GRAPH_RDLOCK
blkdebug_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int ret = blkdebug_check(bs, BLKDBG_PDISCARD, offset, bytes);

    return ret ? ret : bdrv_co_pdiscard(bs->file, offset, bytes);
}

/* The generic flush then flushes the child (block/io/flush.c). */
static int coroutine_fn GRAPH_RDLOCK
blkdebug_co_flush_to_disk(BlockDriverState *bs)
{
    return blkdebug_check(bs, BLKDBG_FLUSH_TO_DISK, 0, 0);
}

static int coroutine_fn GRAPH_RDLOCK
blkdebug_co_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                     Error **errp)
{
    int ret;

    IO_CODE();
    ret = bdrv_co_truncate(bs->file, offset, exact, errp);
    if (ret == 0) {
        qatomic_set(&bs->total_bytes, offset);
    }
    return ret;
}

const BlockDriver bdrv_blkdebug = {
    .format_name = "blkdebug",
    .instance_size = sizeof(BDRVBlkdebugState),
    .opts = blkdebug_opts,
    .is_filter = true,

    .bdrv_open = blkdebug_open,
    .bdrv_close = blkdebug_close,
    .bdrv_child_perm = bdrv_default_perms,
    .bdrv_refresh_limits = bdrv_filter_refresh_limits,

    .bdrv_co_preadv = blkdebug_co_preadv,
    .bdrv_co_pwritev = blkdebug_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = blkdebug_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK |
                            BDRV_REQ_FUA,
    .bdrv_co_pdiscard = blkdebug_co_pdiscard,
    .bdrv_co_flush_to_disk = blkdebug_co_flush_to_disk,
    .bdrv_co_block_status = bdrv_filter_co_block_status,
    .bdrv_co_truncate = blkdebug_co_truncate,
    .bdrv_co_getlength = bdrv_filter_co_getlength,
};
