/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dirty bitmaps of a node: byte ranges rounded out to the granularity,
 * next dirty / next clean byte and dirty areas at granularity boundaries
 * and on a node whose size is not a multiple of the granularity, counts in
 * bytes, the write path (writes, write-zeroes and discards through a
 * BlockBackend mark enabled bitmaps only), resize on truncate, and bad
 * arguments refused.
 *
 * The stress test is the mirror's pattern: writers in two iothreads bump
 * a per-chunk version and then mark the chunk dirty while the main thread
 * walks the dirty areas, resets each and records the versions it "copied";
 * once the writers stop, one more walk must leave every chunk copied at
 * its last version (no write is lost between a reset and a set).
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block_int.h"
#include "block/dirty-bitmap.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"

#define G   4096                    /* granularity of most tests */

static BlockDriverState *open_null(const char *name, int64_t size)
{
    GLOBAL_STATE_CODE();
    return open_node(&error_abort, "{\"driver\": \"null-co\", \"node-name\": "
                     "\"%s\", \"size\": %" PRId64 ", \"discard\": \"unmap\"}",
                     name, size);
}

/* A node of 10 granules and a half. */
#define ODD_SIZE    (10 * G + G / 2)

static void test_set_reset_get(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_null("n0", ODD_SIZE);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, G, NULL, &error_abort);

    g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bm), ==, G);
    g_assert_cmpint(bdrv_dirty_bitmap_size(bm), ==, ODD_SIZE);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 0);

    /* One byte dirties its whole granule. */
    bdrv_set_dirty_bitmap(bm, G + 1, 1);
    g_assert_false(bdrv_dirty_bitmap_get(bm, G - 1));
    g_assert_true(bdrv_dirty_bitmap_get(bm, G));
    g_assert_true(bdrv_dirty_bitmap_get(bm, 2 * G - 1));
    g_assert_false(bdrv_dirty_bitmap_get(bm, 2 * G));
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, G);

    /* A range across a boundary dirties both granules. */
    bdrv_set_dirty_bitmap(bm, 3 * G - 1, 2);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 3 * G);

    /* Reset also rounds out: one byte cleans the whole granule. */
    bdrv_reset_dirty_bitmap(bm, 3 * G + 5, 1);
    g_assert_false(bdrv_dirty_bitmap_get(bm, 3 * G));
    g_assert_true(bdrv_dirty_bitmap_get(bm, 2 * G));
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 2 * G);

    /* The last, half granule counts for its real length. */
    bdrv_set_dirty_bitmap(bm, ODD_SIZE - 1, 1);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 2 * G + G / 2);
    g_assert_true(bdrv_dirty_bitmap_get(bm, ODD_SIZE - 1));
    g_assert_false(bdrv_dirty_bitmap_get(bm, ODD_SIZE));

    /* Ranges past the end are clamped; negative lengths do nothing. */
    bdrv_set_dirty_bitmap(bm, ODD_SIZE, 1 << 20);
    bdrv_set_dirty_bitmap(bm, 0, -5);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 2 * G + G / 2);
    bdrv_set_dirty_bitmap(bm, 0, INT64_MAX);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, ODD_SIZE);
    bdrv_reset_dirty_bitmap(bm, 0, INT64_MAX);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 0);

    bdrv_release_dirty_bitmap(bm);
    bdrv_unref(bs);
}

static void test_next_dirty_zero(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_null("n0", ODD_SIZE);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, G, NULL, &error_abort);

    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 0, -1), ==, -1);
    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 0, -1), ==, 0);
    bdrv_set_dirty_bitmap(bm, 2 * G, 2 * G);        /* granules 2, 3 */
    bdrv_set_dirty_bitmap(bm, 10 * G, 1);           /* the half one */

    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 0, -1), ==, 2 * G);
    /* Inside a dirty granule: the offset itself. */
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 2 * G + 7, -1), ==,
                    2 * G + 7);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 4 * G, -1), ==, 10 * G);
    /* Range ending just before the dirty granule: none. */
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 0, 2 * G), ==, -1);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 0, 2 * G + 1), ==, 2 * G);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, ODD_SIZE, -1), ==, -1);

    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 2 * G, -1), ==, 4 * G);
    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 2 * G, 2 * G), ==, -1);
    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 3 * G + 1, -1), ==, 4 * G);
    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 4 * G + 3, -1), ==,
                    4 * G + 3);
    g_assert_cmpint(bdrv_dirty_bitmap_next_zero(bm, 10 * G, -1), ==, -1);

    bdrv_release_dirty_bitmap(bm);
    bdrv_unref(bs);
}

static void test_next_dirty_area(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_null("n0", ODD_SIZE);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, G, NULL, &error_abort);
    int64_t s, c;

    g_assert_false(bdrv_dirty_bitmap_next_dirty_area(bm, 0, ODD_SIZE,
                                                     INT64_MAX, &s, &c));
    bdrv_set_dirty_bitmap(bm, G, 3 * G);            /* granules 1..3 */
    bdrv_set_dirty_bitmap(bm, 9 * G, 2 * G);        /* 9 and the half 10 */

    g_assert_true(bdrv_dirty_bitmap_next_dirty_area(bm, 0, ODD_SIZE,
                                                    INT64_MAX, &s, &c));
    g_assert_cmpint(s, ==, G);
    g_assert_cmpint(c, ==, 3 * G);
    /* Cut by max_dirty_count, by a misaligned start and by end. */
    g_assert_true(bdrv_dirty_bitmap_next_dirty_area(bm, 0, ODD_SIZE, G + 1,
                                                    &s, &c));
    g_assert_cmpint(s, ==, G);
    g_assert_cmpint(c, ==, G + 1);
    g_assert_true(bdrv_dirty_bitmap_next_dirty_area(bm, G + 100, 3 * G,
                                                    INT64_MAX, &s, &c));
    g_assert_cmpint(s, ==, G + 100);
    g_assert_cmpint(c, ==, 2 * G - 100);
    /* The tail stops at the node's end, not at the granule's. */
    g_assert_true(bdrv_dirty_bitmap_next_dirty_area(bm, 4 * G, INT64_MAX,
                                                    INT64_MAX, &s, &c));
    g_assert_cmpint(s, ==, 9 * G);
    g_assert_cmpint(c, ==, ODD_SIZE - 9 * G);
    g_assert_false(bdrv_dirty_bitmap_next_dirty_area(bm, 4 * G, 9 * G,
                                                     INT64_MAX, &s, &c));

    bdrv_release_dirty_bitmap(bm);
    bdrv_unref(bs);
}

static void test_bad_arguments(void)
{
    BlockDriverState *bs = open_null("n0", ODD_SIZE);
    BdrvDirtyBitmap *bm;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    g_assert_null(bdrv_create_dirty_bitmap(bs, 256, NULL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Granularity must be power of 2 and at least 512");
    error_free(err);
    err = NULL;
    g_assert_null(bdrv_create_dirty_bitmap(bs, 3 * 512, NULL, &err));
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;

    bm = bdrv_create_dirty_bitmap(bs, 512, "b0", &error_abort);
    g_assert_true(bdrv_find_dirty_bitmap(bs, "b0") == bm);
    g_assert_null(bdrv_create_dirty_bitmap(bs, 512, "b0", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Bitmap already exists: b0");
    error_free(err);
    /* Named bitmaps left on a node go away with it (ASan checks). */
    bdrv_unref(bs);
}

/* --- The write path ---------------------------------------------------------- */

typedef struct ReqData {
    BlockBackend *blk;
    bool discard;
    int64_t offset, bytes;
    int ret;
} ReqData;

static void coroutine_fn req_co(void *opaque)
{
    ReqData *d = opaque;

    d->ret = d->discard ? blk_co_pdiscard(d->blk, d->offset, d->bytes)
                        : blk_co_pwrite_zeroes(d->blk, d->offset, d->bytes, 0);
}

static void run_req(BlockBackend *blk, bool discard, int64_t offset,
                    int64_t bytes)
{
    ReqData d = { blk, discard, offset, bytes, -EINPROGRESS };

    GLOBAL_STATE_CODE();
    bdrv_run_co(blk_get_aio_context(blk), req_co, &d);
    g_assert_cmpint(d.ret, ==, 0);
}

static void test_write_path(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_null("n0", 1 << 20);
    BlockBackend *blk = new_backend("blk0", main_context(),
                                    BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                                    bs);
    BdrvDirtyBitmap *on, *off;
    g_autofree uint8_t *buf = g_malloc0(3 * G);

    on = bdrv_create_dirty_bitmap(bs, G, NULL, &error_abort);
    off = bdrv_create_dirty_bitmap(bs, 512, NULL, &error_abort);
    bdrv_disable_dirty_bitmap(off);

    g_assert_cmpint(blk_pwrite(blk, 5 * G + 10, 100, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(on), ==, G);
    g_assert_true(bdrv_dirty_bitmap_get(on, 5 * G));
    run_req(blk, false, 20 * G, 2 * G);             /* write-zeroes */
    g_assert_cmpint(bdrv_get_dirty_count(on), ==, 3 * G);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(on, 6 * G, -1), ==, 20 * G);
    run_req(blk, true, 40 * G, G);                  /* discard */
    g_assert_true(bdrv_dirty_bitmap_get(on, 40 * G));
    g_assert_cmpint(bdrv_get_dirty_count(on), ==, 4 * G);
    /* Reads do not dirty. */
    g_assert_cmpint(blk_pread(blk, 60 * G, G, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(on), ==, 4 * G);

    /* The disabled bitmap saw nothing; enabled again, it sees writes. */
    g_assert_cmpint(bdrv_get_dirty_count(off), ==, 0);
    bdrv_enable_dirty_bitmap(off);
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(off), ==, 512);

    bdrv_release_dirty_bitmap(on);
    bdrv_release_dirty_bitmap(off);
    /* No bitmap left: writes go on without one. */
    g_assert_cmpint(blk_pwrite(blk, 0, 512, buf, 0), ==, 0);
    blk_unref(blk);
    bdrv_unref(bs);
}

static void test_truncate_resizes(void)
{
    g_autofree char *path = make_temp_image("test-dirty-bitmap-XXXXXX", 8 * G,
                                            NULL, 0);
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort, "{\"driver\": \"file\", \"node-name\": "
                   "\"f0\", \"filename\": \"%s\"}", path);

    bm = bdrv_create_dirty_bitmap(bs, G, NULL, &error_abort);
    bdrv_set_dirty_bitmap(bm, 7 * G, G);
    g_assert_cmpint(bdrv_truncate(bs, 20 * G + 512, &error_abort), ==, 0);
    g_assert_cmpint(bdrv_dirty_bitmap_size(bm), ==, 20 * G + 512);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, G);
    bdrv_set_dirty_bitmap(bm, 20 * G, 1);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, G + 512);
    g_assert_cmpint(bdrv_truncate(bs, 4 * G, &error_abort), ==, 0);
    g_assert_cmpint(bdrv_dirty_bitmap_size(bm), ==, 4 * G);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 0);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(bm, 0, -1), ==, -1);

    bdrv_release_dirty_bitmap(bm);
    bdrv_unref(bs);
    unlink(path);
}

/* --- Stress: writers in two iothreads, the main thread resets ------------- */

#define STRESS_CHUNKS   4096

typedef struct Stress {
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm;
    unsigned version[STRESS_CHUNKS];    /* atomic: bumped by writers */
    unsigned copied[STRESS_CHUNKS];     /* main thread only */
    int writes_per_thread;
    int writers_done;                   /* atomic */
} Stress;

typedef struct Writer {
    Stress *s;
    unsigned seed;
} Writer;

static void writer_bh(void *opaque)
{
    Writer *w = opaque;
    Stress *s = w->s;
    GRand *r = g_rand_new_with_seed(w->seed);

    for (int i = 0; i < s->writes_per_thread; i++) {
        int first = g_rand_int_range(r, 0, STRESS_CHUNKS);
        int len = g_rand_int_range(r, 1, 9);
        int n = MIN(len, STRESS_CHUNKS - first);

        for (int c = first; c < first + n; c++) {
            qatomic_inc(&s->version[c]);
        }
        /* As the write path: data first, then the bit. */
        bdrv_set_dirty(s->bs, (int64_t)first * 512, (int64_t)n * 512);
    }
    g_rand_free(r);
    /* A full barrier; pairs with the load-acquire in the main thread. */
    qatomic_inc(&s->writers_done);
}

/* One walk: reset each dirty area, then record what was "copied". */
static void copy_pass(Stress *s)
{
    int64_t start = 0, ds, dc;

    while (bdrv_dirty_bitmap_next_dirty_area(s->bm, start, INT64_MAX,
                                             64 * 512, &ds, &dc)) {
        bdrv_reset_dirty_bitmap(s->bm, ds, dc);
        for (int64_t c = ds / 512; c < (ds + dc) / 512; c++) {
            s->copied[c] = qatomic_read(&s->version[c]);
        }
        start = ds + dc;
    }
}

static void test_stress_writers_and_resetter(void)
{
    IOThread *io[2];
    Writer w[2];
    Stress *s = g_new0(Stress, 1);

    GLOBAL_STATE_CODE();
    s->bs = open_null("n0", STRESS_CHUNKS * 512);
    s->bm = bdrv_create_dirty_bitmap(s->bs, 512, NULL, &error_abort);
    s->writes_per_thread = 20000 * stress_iterations();
    io[0] = iothread_create("dirty0", 0, &error_abort);
    io[1] = iothread_create("dirty1", 0, &error_abort);
    for (int i = 0; i < 2; i++) {
        w[i] = (Writer) { s, 1000 + i };
        aio_bh_schedule_oneshot(iothread_get_aio_context(io[i]), writer_bh,
                                &w[i]);
    }
    /* Pairs with the increment in writer_bh(): then every set is seen. */
    while (qatomic_load_acquire(&s->writers_done) < 2) {
        copy_pass(s);
        g_assert_cmpint(bdrv_get_dirty_count(s->bm), <=, STRESS_CHUNKS * 512);
    }
    copy_pass(s);
    g_assert_cmpint(bdrv_get_dirty_count(s->bm), ==, 0);
    for (int c = 0; c < STRESS_CHUNKS; c++) {
        g_assert_cmpuint(s->copied[c], ==, qatomic_read(&s->version[c]));
    }
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);
    bdrv_release_dirty_bitmap(s->bm);
    bdrv_unref(s->bs);
    g_free(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();

    g_test_add_func("/dirty-bitmap/set-reset-get", test_set_reset_get);
    g_test_add_func("/dirty-bitmap/next-dirty-zero", test_next_dirty_zero);
    g_test_add_func("/dirty-bitmap/next-dirty-area", test_next_dirty_area);
    g_test_add_func("/dirty-bitmap/bad-arguments", test_bad_arguments);
    g_test_add_func("/dirty-bitmap/write-path", test_write_path);
    g_test_add_func("/dirty-bitmap/truncate-resizes", test_truncate_resizes);
    g_test_add_func("/dirty-bitmap/stress-writers-and-resetter",
                    test_stress_writers_and_resetter);
    return g_test_run();
}
