/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * block-copy and the copy-before-write filter: a guest write waits for the
 * copy of its cluster that is in flight instead of copying it again; every
 * cluster is read from the source exactly once, whoever copies it; copies
 * wait for room in the bounce-buffer budget; a failed copy fails the guest's write, leaves the source unchanged and the
 * cluster still to copy; and a stress test with guest writers in two
 * iothreads racing a job-like copier ends with the target equal to the
 * source as it was at the start (TSan clean, scales with
 * STRESS_ITERATIONS).
 *
 * Nodes use "test-mem", defined here: memory-backed, counting the reads
 * that cover each cluster, with a gate that holds reads until the test
 * releases them and a switch that fails the next writes.  Interleavings
 * are forced with AIO_WAIT_WHILE() on atomics, never with sleeps.
 */
#include "util/osdep.h"

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-copy.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"
#include "block/dirty-bitmap.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

#define CLUSTER     BLOCK_COPY_CLUSTER_SIZE
#define N_CLUSTERS  64
#define SIZE        ((int64_t)N_CLUSTERS * CLUSTER)

/* --- The test-mem driver -------------------------------------------------- */

typedef struct TestMem {
    MemStore store;                 /* the node's bytes */
    bool hold;                      /* store.lock: reads wait in the gate */
    CoQueue held;                   /* store.lock: the reads waiting there */
    int n_held;                     /* atomic: reads that waited */
    int reads[N_CLUSTERS];          /* atomic: reads covering each cluster */
    int fail_writes;                /* atomic: fail the next N writes */
} TestMem;

static int test_mem_open(BlockDriverState *bs, struct json_object *options,
                         int flags, Error **errp)
{
    TestMem *s = bs->opaque;

    mem_store_init(&s->store, SIZE);
    co_queue_init(&s->held);
    qatomic_set(&bs->total_bytes, SIZE);
    return 0;
}

static void test_mem_close(BlockDriverState *bs)
{
    TestMem *s = bs->opaque;

    mem_store_destroy(&s->store);
}

static int coroutine_fn test_mem_preadv(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVec *qiov,
                                        BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    for (int64_t c = offset / CLUSTER; c * CLUSTER < offset + bytes; c++) {
        qatomic_inc(&s->reads[c]);
    }
    bd_mutex_lock(&s->store.lock);
    if (s->hold) {
        qatomic_inc(&s->n_held);
        aio_wait_kick();
        while (s->hold) {
            co_queue_wait_bd(&s->held, &s->store.lock);
        }
    }
    mem_store_read_locked(&s->store, offset, bytes, qiov);
    bd_mutex_unlock(&s->store.lock);
    return 0;
}

static int coroutine_fn test_mem_pwritev(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, IOVec *qiov,
                                         BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;
    int left = qatomic_read(&s->fail_writes);

    while (left > 0) {
        if (qatomic_cmpxchg(&s->fail_writes, left, left - 1) == left) {
            return -EIO;
        }
        left = qatomic_read(&s->fail_writes);
    }
    mem_store_write(&s->store, offset, bytes, qiov);
    return 0;
}

static int coroutine_fn test_mem_flush(BlockDriverState *bs)
{
    return 0;
}

static const OptDesc test_mem_opts[] = { { NULL } };

static const BlockDriver test_mem_driver = {
    .format_name = "test-mem",
    .instance_size = sizeof(TestMem),
    .opts = test_mem_opts,
    .bdrv_open = test_mem_open,
    .bdrv_close = test_mem_close,
    .bdrv_co_preadv = test_mem_preadv,
    .bdrv_co_pwritev = test_mem_pwritev,
    .bdrv_co_flush_to_disk = test_mem_flush,
};

static void mem_hold(BlockDriverState *bs, bool hold)
{
    TestMem *s = bs->opaque;

    bd_mutex_lock(&s->store.lock);
    s->hold = hold;
    if (!hold) {
        co_queue_restart_all(&s->held);
    }
    bd_mutex_unlock(&s->store.lock);
}

/* A copy of the node's data (no request may be in flight). */
static uint8_t *mem_snapshot(BlockDriverState *bs)
{
    return mem_store_copy(&((TestMem *)bs->opaque)->store);
}

/* --- Fixture: src and tgt, the filter on src, a guest backend on it ------- */

typedef struct Fixture {
    IOThread *io[2];
    BlockDriverState *src, *tgt, *cbw;
    BlockCopyState *bcs;
    BlockBackend *guest;
    uint8_t *original;              /* src's data before any write */
    int64_t progress;               /* atomic: block-copy's progress */
} Fixture;

static BlockDriverState *open_mem(const char *name, uint32_t seed)
{
    BlockDriverState *bs;
    GRand *rand = g_rand_new_with_seed(seed);
    TestMem *s;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-mem\", \"node-name\": \"%s\"}", name);
    s = bs->opaque;
    for (int64_t i = 0; i < SIZE; i += 4) {
        uint32_t v = g_rand_int(rand);

        memcpy(s->store.data + i, &v, 4);
    }
    g_rand_free(rand);
    return bs;
}

static void progress_cb(void *opaque, int64_t bytes)
{
    Fixture *f = opaque;

    qatomic_add(&f->progress, bytes);
}

static void fixture_init(Fixture *f, int n_iothreads)
{
    static const char *const names[] = { "bc-io0", "bc-io1" };
    AioContext *ctx = main_context();

    GLOBAL_STATE_CODE();
    *f = (Fixture) { 0 };
    for (int i = 0; i < n_iothreads; i++) {
        f->io[i] = iothread_create(names[i], 0, &error_abort);
    }
    f->src = open_mem("src", 1);
    f->tgt = open_mem("tgt", 2);
    if (n_iothreads) {
        ctx = iothread_get_aio_context(f->io[0]);
        g_assert_cmpint(bdrv_try_change_aio_context(f->src, ctx, NULL,
                                                    &error_abort), ==, 0);
        g_assert_cmpint(bdrv_try_change_aio_context(f->tgt, ctx, NULL,
                                                    &error_abort), ==, 0);
    }
    f->original = mem_snapshot(f->src);
    f->cbw = bdrv_cbw_append(f->src, f->tgt, "cbw", &f->bcs, &error_abort);
    block_copy_set_progress_callback(f->bcs, progress_cb, f);
    f->guest = new_backend("guest", ctx, BLK_PERM_CONSISTENT_READ |
                           BLK_PERM_WRITE, f->cbw);
}

static void fixture_destroy(Fixture *f)
{
    GLOBAL_STATE_CODE();
    blk_unref(f->guest);
    bdrv_cbw_drop(f->cbw);
    bdrv_unref(f->src);
    bdrv_unref(f->tgt);
    for (int i = 0; i < 2; i++) {
        if (f->io[i]) {
            iothread_destroy(f->io[i]);
        }
    }
    g_free(f->original);
}

static int reads_of(BlockDriverState *bs, int cluster)
{
    return qatomic_read(&((TestMem *)bs->opaque)->reads[cluster]);
}

/* --- Requests in coroutines ----------------------------------------------- */

typedef struct Req {
    Fixture *f;
    int64_t offset, bytes;
    uint8_t byte;                   /* guest writes: the pattern */
    int ret;
    int done;                       /* atomic */
} Req;

static void req_finish(Req *r, int ret)
{
    r->ret = ret;
    /* Pairs with the load-acquire of the waiter: ret is visible. */
    qatomic_store_release(&r->done, 1);
    aio_wait_kick();
}

static void coroutine_fn guest_write_entry(void *opaque)
{
    Req *r = opaque;
    g_autofree uint8_t *buf = g_malloc(r->bytes);

    memset(buf, r->byte, r->bytes);
    req_finish(r, blk_co_pwrite(r->f->guest, r->offset, r->bytes, buf, 0));
}

/* What the backup job does: block_copy() under the graph read lock. */
static void coroutine_fn copy_entry(void *opaque)
{
    Req *r = opaque;
    bool is_read = false;
    int ret = -EINPROGRESS;

    WITH_GRAPH_RDLOCK_GUARD() {
        ret = block_copy(r->f->bcs, r->offset, r->bytes, &is_read);
    }
    req_finish(r, ret);
}

static void start(AioContext *ctx, CoroutineEntry *entry, Req *r)
{
    aio_co_enter(ctx, co_create(entry, r));
}

static bool req_done(Req *r)
{
    return qatomic_load_acquire(&r->done);
}

/* --- Tests ---------------------------------------------------------------- */

static void test_writer_waits_for_copy_in_flight(void)
{
    Fixture f;
    TestMem *src;
    Req copy = { .offset = 0, .bytes = CLUSTER };
    Req write = { .offset = 4096, .bytes = 4096, .byte = 0xaa };

    fixture_init(&f, 0);
    src = f.src->opaque;
    copy.f = write.f = &f;
    mem_hold(f.src, true);
    start(main_context(), copy_entry, &copy);
    AIO_WAIT_WHILE(NULL, qatomic_read(&src->n_held) < 1);

    start(main_context(), guest_write_entry, &write);
    for (int i = 0; i < 100; i++) {
        aio_poll(main_context(), false);
    }
    /* It waits for the copy; it did not read the cluster again. */
    g_assert_false(req_done(&write));
    g_assert_cmpint(qatomic_read(&src->n_held), ==, 1);
    g_assert_cmpint(reads_of(f.src, 0), ==, 1);
    g_assert_cmpint(block_copy_tasks_in_flight(f.bcs), ==, 1);

    mem_hold(f.src, false);
    AIO_WAIT_WHILE(NULL, !req_done(&copy) || !req_done(&write));
    g_assert_cmpint(copy.ret, ==, 0);
    g_assert_cmpint(write.ret, ==, 0);
    g_assert_cmpint(reads_of(f.src, 0), ==, 1);
    g_assert_cmpmem(((TestMem *)f.tgt->opaque)->store.data, CLUSTER,
                    f.original, CLUSTER);
    g_assert_cmpint(src->store.data[4096], ==, 0xaa);
    g_assert_cmpint(qatomic_read(&f.progress), ==, CLUSTER);
    fixture_destroy(&f);
}

static void test_each_cluster_copied_once(void)
{
    Fixture f;
    Req w1 = { .offset = CLUSTER + 512, .bytes = 1024, .byte = 1 };
    Req w2 = { .offset = CLUSTER, .bytes = 2 * CLUSTER, .byte = 2 };
    Req all = { .offset = 0, .bytes = SIZE };
    BdrvDirtyBitmap *bitmap;

    fixture_init(&f, 0);
    bitmap = block_copy_dirty_bitmap(f.bcs);
    g_assert_cmpint(bdrv_get_dirty_count(bitmap), ==, SIZE);
    w1.f = w2.f = all.f = &f;

    start(main_context(), guest_write_entry, &w1);
    AIO_WAIT_WHILE(NULL, !req_done(&w1));
    g_assert_cmpint(reads_of(f.src, 1), ==, 1);
    g_assert_false(bdrv_dirty_bitmap_get(bitmap, CLUSTER));
    /* Cluster 1 is saved: only cluster 2 is copied for this one. */
    start(main_context(), guest_write_entry, &w2);
    AIO_WAIT_WHILE(NULL, !req_done(&w2));
    g_assert_cmpint(reads_of(f.src, 1), ==, 1);
    g_assert_cmpint(reads_of(f.src, 2), ==, 1);

    start(main_context(), copy_entry, &all);
    AIO_WAIT_WHILE(NULL, !req_done(&all));
    g_assert_cmpint(all.ret, ==, 0);
    for (int c = 0; c < N_CLUSTERS; c++) {
        g_assert_cmpint(reads_of(f.src, c), ==, 1);
    }
    g_assert_cmpint(bdrv_get_dirty_count(bitmap), ==, 0);
    g_assert_cmpmem(((TestMem *)f.tgt->opaque)->store.data, SIZE, f.original,
                    SIZE);
    g_assert_cmpint(qatomic_read(&f.progress), ==, SIZE);
    fixture_destroy(&f);
}

static void test_failed_copy_fails_write(void)
{
    Fixture f;
    TestMem *src, *tgt;
    Req w1 = { .offset = 2 * CLUSTER, .bytes = 4096, .byte = 0x55 };
    Req w2 = { .offset = 2 * CLUSTER, .bytes = 4096, .byte = 0x66 };

    fixture_init(&f, 0);
    src = f.src->opaque;
    tgt = f.tgt->opaque;
    w1.f = w2.f = &f;
    qatomic_set(&tgt->fail_writes, 1);
    start(main_context(), guest_write_entry, &w1);
    AIO_WAIT_WHILE(NULL, !req_done(&w1));
    g_assert_cmpint(w1.ret, ==, -EIO);
    /* The source did not change and the cluster is still to copy. */
    g_assert_cmpmem(src->store.data + 2 * CLUSTER, CLUSTER,
                    f.original + 2 * CLUSTER, CLUSTER);
    g_assert_true(bdrv_dirty_bitmap_get(block_copy_dirty_bitmap(f.bcs),
                                        2 * CLUSTER));
    g_assert_cmpint(qatomic_read(&f.progress), ==, 0);

    start(main_context(), guest_write_entry, &w2);
    AIO_WAIT_WHILE(NULL, !req_done(&w2));
    g_assert_cmpint(w2.ret, ==, 0);
    g_assert_cmpmem(tgt->store.data + 2 * CLUSTER, CLUSTER,
                    f.original + 2 * CLUSTER, CLUSTER);
    g_assert_cmpint(src->store.data[2 * CLUSTER], ==, 0x66);
    fixture_destroy(&f);
}

static void test_memory_budget(void)
{
    Fixture f;
    TestMem *src;
    Req w[4];

    GLOBAL_STATE_CODE();
    fixture_init(&f, 0);
    src = f.src->opaque;
    block_copy_set_max_mem(f.bcs, 2 * CLUSTER);
    mem_hold(f.src, true);
    for (int i = 0; i < 4; i++) {
        w[i] = (Req) { .f = &f, .offset = i * CLUSTER, .bytes = 4096,
                       .byte = 0x10 + i };
        start(main_context(), guest_write_entry, &w[i]);
    }
    AIO_WAIT_WHILE(NULL, qatomic_read(&src->n_held) < 2);
    for (int i = 0; i < 100; i++) {
        aio_poll(main_context(), false);
    }
    /* Two clusters' worth of buffers: the other two copies wait. */
    g_assert_cmpint(qatomic_read(&src->n_held), ==, 2);
    g_assert_cmpint(block_copy_tasks_in_flight(f.bcs), ==, 4);
    mem_hold(f.src, false);
    for (int i = 0; i < 4; i++) {
        AIO_WAIT_WHILE(NULL, !req_done(&w[i]));
        g_assert_cmpint(w[i].ret, ==, 0);
        g_assert_cmpint(reads_of(f.src, i), ==, 1);
        g_assert_cmpint(src->store.data[i * CLUSTER], ==, 0x10 + i);
    }
    g_assert_cmpmem(((TestMem *)f.tgt->opaque)->store.data, 4 * CLUSTER,
                    f.original, 4 * CLUSTER);
    fixture_destroy(&f);
}

/* --- Stress: writers in two iothreads against a job-like copier ---------- */

#define N_WRITERS 8

typedef struct Writer {
    Fixture *f;
    uint32_t seed;
    int writes;
    int failed;                     /* atomic */
    int done;                       /* atomic */
} Writer;

static void coroutine_fn stress_writer(void *opaque)
{
    Writer *w = opaque;
    GRand *rand = g_rand_new_with_seed(w->seed);
    uint8_t *buf = g_malloc(3 * CLUSTER);

    for (int i = 0; i < w->writes; i++) {
        int64_t bytes = g_rand_int_range(rand, 1, 3 * CLUSTER / 4096) * 4096;
        int64_t offset = g_rand_int_range(rand, 0, (SIZE - bytes) / 4096 + 1)
                         * 4096;

        memset(buf, g_rand_int_range(rand, 1, 256), bytes);
        if (blk_co_pwrite(w->f->guest, offset, bytes, buf, 0) < 0) {
            qatomic_inc(&w->failed);
        }
    }
    g_free(buf);
    g_rand_free(rand);
    qatomic_store_release(&w->done, 1);
    aio_wait_kick();
}

/* The backup job's loop: chunks in order, then the whole range. */
static void coroutine_fn stress_copier(void *opaque)
{
    Req *r = opaque;
    bool is_read;
    int ret = 0;

    WITH_GRAPH_RDLOCK_GUARD() {
        for (int64_t off = 0; off < SIZE && ret == 0;
             off += BLOCK_COPY_MAX_CHUNK / 4) {
            ret = block_copy(r->f->bcs, off, BLOCK_COPY_MAX_CHUNK / 4,
                             &is_read);
            aio_co_schedule(aio_get_current_context(), co_self());
            co_yield();
        }
        if (ret == 0) {
            ret = block_copy(r->f->bcs, 0, SIZE, &is_read);
        }
    }
    req_finish(r, ret);
}

static bool writers_done(Writer *w)
{
    for (int i = 0; i < N_WRITERS; i++) {
        if (!qatomic_load_acquire(&w[i].done)) {
            return false;
        }
    }
    return true;
}

static void test_stress_two_iothreads(void)
{
    int rounds = 4 * stress_iterations();

    for (int round = 0; round < rounds; round++) {
        Fixture f;
        Writer w[N_WRITERS];
        Req copier = { .offset = 0, .bytes = SIZE };
        g_autofree uint8_t *tgt = NULL;

        fixture_init(&f, 2);
        copier.f = &f;
        for (int i = 0; i < N_WRITERS; i++) {
            w[i] = (Writer) { .f = &f, .seed = round * 100 + i,
                              .writes = 64 };
        }
        start(iothread_get_aio_context(f.io[0]), stress_copier, &copier);
        for (int i = 0; i < N_WRITERS; i++) {
            aio_co_enter(iothread_get_aio_context(f.io[i % 2]),
                         co_create(stress_writer, &w[i]));
        }
        AIO_WAIT_WHILE(NULL, !req_done(&copier) || !writers_done(w));
        g_assert_cmpint(copier.ret, ==, 0);
        for (int i = 0; i < N_WRITERS; i++) {
            g_assert_cmpint(qatomic_read(&w[i].failed), ==, 0);
        }
        for (int c = 0; c < N_CLUSTERS; c++) {
            g_assert_cmpint(reads_of(f.src, c), ==, 1);
        }
        tgt = mem_snapshot(f.tgt);
        g_assert_cmpmem(tgt, SIZE, f.original, SIZE);
        g_assert_cmpint(qatomic_read(&f.progress), ==, SIZE);
        fixture_destroy(&f);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    bdrv_register(&test_mem_driver);

    g_test_add_func("/block-copy/filter/writer-waits-for-copy-in-flight",
                    test_writer_waits_for_copy_in_flight);
    g_test_add_func("/block-copy/filter/each-cluster-copied-once",
                    test_each_cluster_copied_once);
    g_test_add_func("/block-copy/filter/failed-copy-fails-write",
                    test_failed_copy_fails_write);
    g_test_add_func("/block-copy/filter/memory-budget", test_memory_budget);
    g_test_add_func("/block-copy/stress/two-iothreads",
                    test_stress_two_iothreads);
    return g_test_run();
}
