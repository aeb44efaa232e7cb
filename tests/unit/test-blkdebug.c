/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The blkdebug filter: requests fail with exactly the errno a rule gives
 * (EIO by default, ENOSPC when asked), once or always, only on the sector
 * a rule names; requests no rule matches pass through to the child; and a
 * flush that failed is never reported as a success afterwards: the next
 * flush reaches the driver again instead of being skipped as "nothing
 * written since the last flush".
 *
 * Every node is blkdebug over "test-count", a driver defined here that
 * counts the requests reaching it, so the tests can check that a failed
 * request never got to the child.  Requests run through a BlockBackend
 * in the main loop (the synchronous blk_* wrappers, and bdrv_run_co()
 * for the requests that have none).
 */
#include "util/osdep.h"

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block_int.h"
#include "block/drivers/drivers.h"
#include "util/atomic.h"
#include "util/keyval.h"
#include "util/main-loop.h"

#define NODE_SIZE   (1024 * 1024)

/* --- The test-count driver ------------------------------------------------ */

/* Requests that reached the child, whatever thread ran them.  atomic */
static struct {
    int reads, writes, zeroes, discards, flushes;
} hits;

static int count_open(BlockDriverState *bs, struct json_object *options,
                      int flags, Error **errp)
{
    qatomic_set(&bs->total_bytes, NODE_SIZE);
    return 0;
}

static int coroutine_fn count_preadv(BlockDriverState *bs, int64_t offset,
                                     int64_t bytes, IOVec *qiov,
                                     BdrvRequestFlags flags)
{
    qatomic_inc(&hits.reads);
    iovec_memset(qiov, 0, 0, bytes);
    return 0;
}

static int coroutine_fn count_pwritev(BlockDriverState *bs, int64_t offset,
                                      int64_t bytes, IOVec *qiov,
                                      BdrvRequestFlags flags)
{
    qatomic_inc(&hits.writes);
    return 0;
}

static int coroutine_fn count_pwrite_zeroes(BlockDriverState *bs,
                                            int64_t offset, int64_t bytes,
                                            BdrvRequestFlags flags)
{
    qatomic_inc(&hits.zeroes);
    return 0;
}

static int coroutine_fn count_pdiscard(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes)
{
    qatomic_inc(&hits.discards);
    return 0;
}

static int coroutine_fn count_flush(BlockDriverState *bs)
{
    qatomic_inc(&hits.flushes);
    return 0;
}

static const BlockDriver test_count_driver = {
    .format_name = "test-count",
    .bdrv_open = count_open,
    .bdrv_co_preadv = count_preadv,
    .bdrv_co_pwritev = count_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = count_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP,
    .bdrv_co_pdiscard = count_pdiscard,
    .bdrv_co_flush_to_disk = count_flush,
};

/* --- Fixture ---------------------------------------------------------------- */

typedef struct Fixture {
    BlockDriverState *bs;
    BlockBackend *blk;
} Fixture;

/*
 * blkdebug "dbg0" over a test-count node, with @rules as inject-error;
 * discard=unmap so that discards are passed down rather than ignored.
 */
static void fixture_open_json(Fixture *f, const char *rules)
{
    GLOBAL_STATE_CODE();
    memset(&hits, 0, sizeof(hits));
    f->bs = open_node(&error_abort,
        "{\"driver\": \"blkdebug\", \"node-name\": \"dbg0\","
        " \"discard\": \"unmap\","
        " \"image\": {\"driver\": \"test-count\", \"node-name\": \"cnt0\"},"
        " \"inject-error\": %s}", rules);
    f->blk = new_backend("blk0", main_context(),
                         BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, f->bs);
}

static void fixture_cleanup(Fixture *f)
{
    GLOBAL_STATE_CODE();
    blk_unref(f->blk);
    bdrv_unref(f->bs);
    g_assert_null(bdrv_find_node("cnt0"));
}

static int do_read(Fixture *f, int64_t offset, int64_t bytes)
{
    g_autofree uint8_t *buf = g_malloc(bytes);

    GLOBAL_STATE_CODE();
    return blk_pread(f->blk, offset, bytes, buf, 0);
}

static int do_write(Fixture *f, int64_t offset, int64_t bytes)
{
    g_autofree uint8_t *buf = g_malloc0(bytes);

    GLOBAL_STATE_CODE();
    return blk_pwrite(f->blk, offset, bytes, buf, 0);
}

typedef struct ZeroReq {
    BlockBackend *blk;
    bool discard;
    int ret;
} ZeroReq;

static void coroutine_fn zero_req_entry(void *opaque)
{
    ZeroReq *r = opaque;

    r->ret = r->discard ? blk_co_pdiscard(r->blk, 0, 4096)
                        : blk_co_pwrite_zeroes(r->blk, 0, 4096, 0);
}

static int do_zero_or_discard(Fixture *f, bool discard)
{
    ZeroReq r = { .blk = f->blk, .discard = discard, .ret = 1 };

    GLOBAL_STATE_CODE();
    bdrv_run_co(main_context(), zero_req_entry, &r);
    g_assert_cmpint(r.ret, <=, 0);
    return r.ret;
}

/* --- Tests -------------------------------------------------------------------- */

static void test_read_eio_always(void)
{
    Fixture f;

    fixture_open_json(&f, "[{\"event\": \"read_aio\"}]");
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(do_read(&f, 0, 4096), ==, -EIO);
    }
    g_assert_cmpint(qatomic_read(&hits.reads), ==, 0);
    /* Writes are not the rule's business. */
    g_assert_cmpint(do_write(&f, 0, 4096), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.writes), ==, 1);
    fixture_cleanup(&f);
}

static void test_write_enospc_once(void)
{
    Fixture f;

    fixture_open_json(&f, "[{\"event\": \"write_aio\", \"errno\": 28,"
                          " \"once\": true, \"immediately\": true}]");
    g_assert_cmpint(do_write(&f, 0, 4096), ==, -ENOSPC);
    g_assert_cmpint(qatomic_read(&hits.writes), ==, 0);
    g_assert_cmpint(do_write(&f, 0, 4096), ==, 0);
    g_assert_cmpint(do_write(&f, 8192, 4096), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.writes), ==, 2);
    g_assert_cmpint(do_read(&f, 0, 4096), ==, 0);
    fixture_cleanup(&f);
}

static void test_sector_matching(void)
{
    Fixture f;

    /* Sector 8 is bytes [4096, 4608). */
    fixture_open_json(&f, "[{\"event\": \"read_aio\", \"sector\": 8}]");
    g_assert_cmpint(do_read(&f, 0, 4096), ==, 0);
    g_assert_cmpint(do_read(&f, 4608, 4096), ==, 0);
    g_assert_cmpint(do_read(&f, 4096, 512), ==, -EIO);
    g_assert_cmpint(do_read(&f, 0, 8192), ==, -EIO);
    g_assert_cmpint(qatomic_read(&hits.reads), ==, 2);
    fixture_cleanup(&f);
}

static void test_first_matching_rule_wins(void)
{
    Fixture f;

    fixture_open_json(&f, "[{\"event\": \"read_aio\", \"errno\": 28,"
                          "  \"once\": true},"
                          " {\"event\": \"read_aio\"}]");
    g_assert_cmpint(do_read(&f, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(do_read(&f, 0, 512), ==, -EIO);
    g_assert_cmpint(do_read(&f, 0, 512), ==, -EIO);
    fixture_cleanup(&f);
}

static void test_zeroes_and_discard(void)
{
    Fixture f;

    fixture_open_json(&f, "[{\"event\": \"pwrite_zeroes\", \"once\": true},"
                          " {\"event\": \"pdiscard\", \"errno\": 28,"
                          "  \"once\": true}]");
    g_assert_cmpint(do_zero_or_discard(&f, false), ==, -EIO);
    g_assert_cmpint(do_zero_or_discard(&f, true), ==, -ENOSPC);
    g_assert_cmpint(qatomic_read(&hits.zeroes), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.discards), ==, 0);
    g_assert_cmpint(do_zero_or_discard(&f, false), ==, 0);
    g_assert_cmpint(do_zero_or_discard(&f, true), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.zeroes), ==, 1);
    g_assert_cmpint(qatomic_read(&hits.discards), ==, 1);
    fixture_cleanup(&f);
}

/*
 * The generic flush skips a flush when nothing was written since the
 * last successful one.  A failed flush must not count as successful: the
 * next one reaches blkdebug again (and gets the second rule's ENOSPC),
 * and only the one after succeeds and reaches the child.
 */
static void test_failed_flush_not_reported_as_success(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_open_json(&f, "[{\"event\": \"flush_to_disk\", \"once\": true},"
                          " {\"event\": \"flush_to_disk\", \"errno\": 28,"
                          "  \"once\": true}]");
    g_assert_cmpint(do_write(&f, 0, 4096), ==, 0);
    g_assert_cmpint(blk_flush(f.blk), ==, -EIO);
    g_assert_cmpint(blk_flush(f.blk), ==, -ENOSPC);
    g_assert_cmpint(qatomic_read(&hits.flushes), ==, 0);
    g_assert_cmpint(blk_flush(f.blk), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.flushes), ==, 1);
    /* Nothing written since: the fast path, not the driver. */
    g_assert_cmpint(blk_flush(f.blk), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.flushes), ==, 1);
    /* A new write makes the next flush reach the child again. */
    g_assert_cmpint(do_write(&f, 0, 4096), ==, 0);
    g_assert_cmpint(blk_flush(f.blk), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.flushes), ==, 2);
    fixture_cleanup(&f);
}

static void test_flush_always_failing(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_open_json(&f, "[{\"event\": \"flush_to_disk\"}]");
    g_assert_cmpint(do_write(&f, 0, 4096), ==, 0);
    for (int i = 0; i < 5; i++) {
        g_assert_cmpint(blk_flush(f.blk), ==, -EIO);
    }
    g_assert_cmpint(qatomic_read(&hits.flushes), ==, 0);
    fixture_cleanup(&f);
}

/* A rule with a sector never fails a flush: a flush has no range. */
static void test_flush_ignores_sector_rules(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_open_json(&f, "[{\"event\": \"flush_to_disk\", \"sector\": 0}]");
    g_assert_cmpint(do_write(&f, 0, 4096), ==, 0);
    g_assert_cmpint(blk_flush(f.blk), ==, 0);
    g_assert_cmpint(qatomic_read(&hits.flushes), ==, 1);
    fixture_cleanup(&f);
}

/* The command-line form: keyval, strings converted by the schema. */
static void test_keyval_options(void)
{
    struct json_object *opts = keyval_parse(
        "blkdebug,node-name=dbg0,image.driver=test-count,"
        "image.node-name=cnt0,inject-error.0.event=write_aio,"
        "inject-error.0.errno=28,inject-error.0.once=on", "driver",
        &error_abort);
    Fixture f;

    GLOBAL_STATE_CODE();
    memset(&hits, 0, sizeof(hits));
    f.bs = bdrv_open(opts, false, &error_abort);
    json_object_put(opts);
    f.blk = new_backend("blk0", main_context(),
                        BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, f.bs);
    g_assert_cmpint(do_write(&f, 0, 512), ==, -ENOSPC);
    g_assert_cmpint(do_write(&f, 0, 512), ==, 0);
    fixture_cleanup(&f);
}

static void test_bad_options_refused(void)
{
    static const char *const bad[] = {
        "{\"driver\": \"blkdebug\", \"node-name\": \"dbg0\","
        " \"inject-error\": []}",                       /* no image */
        "{\"driver\": \"blkdebug\", \"image\": {\"driver\": \"test-count\"},"
        " \"inject-error\": [{\"event\": \"open\"}]}",  /* unknown event */
        "{\"driver\": \"blkdebug\", \"image\": {\"driver\": \"test-count\"},"
        " \"inject-error\": [{\"event\": \"read_aio\", \"errno\": 0}]}",
        "{\"driver\": \"blkdebug\", \"image\": {\"driver\": \"test-count\"},"
        " \"inject-error\": [{\"event\": \"read_aio\", \"state\": 1}]}",
    };

    GLOBAL_STATE_CODE();
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        Error *err = NULL;

        g_assert_null(open_node(&err, "%s", bad[i]));
        g_assert_nonnull(err);
        error_free(err);
    }
    g_assert_null(bdrv_next_node(NULL));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    bdrv_register(&test_count_driver);

    g_test_add_func("/blkdebug/read-eio-always", test_read_eio_always);
    g_test_add_func("/blkdebug/write-enospc-once", test_write_enospc_once);
    g_test_add_func("/blkdebug/sector-matching", test_sector_matching);
    g_test_add_func("/blkdebug/first-matching-rule-wins",
                    test_first_matching_rule_wins);
    g_test_add_func("/blkdebug/zeroes-and-discard", test_zeroes_and_discard);
    g_test_add_func("/blkdebug/failed-flush-not-reported-as-success",
                    test_failed_flush_not_reported_as_success);
    g_test_add_func("/blkdebug/flush-always-failing",
                    test_flush_always_failing);
    g_test_add_func("/blkdebug/flush-ignores-sector-rules",
                    test_flush_ignores_sector_rules);
    g_test_add_func("/blkdebug/keyval-options", test_keyval_options);
    g_test_add_func("/blkdebug/bad-options-refused",
                    test_bad_options_refused);
    return g_test_run();
}
