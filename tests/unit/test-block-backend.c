/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockBackend: I/O through a backend, request parking while its node is
 * drained (and its opt-out), drains that wait for requests in two
 * iothreads, permission conflicts, checks (read-only, range), statistics,
 * dev ops callbacks, AioContext moves and the backend's lifetime.
 *
 * Nodes use "test-mem", a driver defined here: memory-backed, with a gate
 * that holds requests inside the driver until the test releases them, and
 * counters of the requests that reached it.  Every interleaving is forced
 * with bottom halves and AIO_WAIT_WHILE() on atomics, never with sleeps:
 * ctx_sync() runs a bottom half through an iothread so that everything
 * scheduled there before it (e.g. coroutines that park) has run.  The
 * stress test scales with STRESS_ITERATIONS.
 */
#include "util/osdep.h"

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

#define MEM_SIZE    (1024 * 1024)

/* --- The test-mem driver -------------------------------------------------- */

/* What the driver saw; one driver for the whole program. */
static struct {
    BdMutex lock;
    bool hold;              /* lock: requests wait in the gate */
    CoQueue held;           /* lock: the requests waiting there */
    int n_held;             /* atomic: requests that waited (cumulative) */
    int reads;              /* atomic: reads that reached the driver */
    int writes;             /* atomic: writes that reached the driver */
    int completed;          /* atomic: requests that left the driver */
    int fail_reads;         /* atomic: fail the next N reads with -EIO */
    bool drained;           /* atomic: the test says the node is drained */
    int violations;         /* atomic: requests that arrived while drained */
} drv;

static void drv_reset(void)
{
    bd_mutex_lock(&drv.lock);
    drv.hold = false;
    bd_mutex_unlock(&drv.lock);
    qatomic_set(&drv.n_held, 0);
    qatomic_set(&drv.reads, 0);
    qatomic_set(&drv.writes, 0);
    qatomic_set(&drv.completed, 0);
    qatomic_set(&drv.fail_reads, 0);
    qatomic_set(&drv.drained, false);
    qatomic_set(&drv.violations, 0);
}

static void drv_hold(void)
{
    bd_mutex_lock(&drv.lock);
    drv.hold = true;
    bd_mutex_unlock(&drv.lock);
}

/* Let held requests go.  Any thread, not in a coroutine. */
static void drv_release(void)
{
    bd_mutex_lock(&drv.lock);
    drv.hold = false;
    co_queue_restart_all(&drv.held);
    bd_mutex_unlock(&drv.lock);
}

/* Every request passes here on entry to the driver. */
static void coroutine_fn drv_gate(void)
{
    if (qatomic_read(&drv.drained)) {
        qatomic_inc(&drv.violations);
    }
    bd_mutex_lock(&drv.lock);
    if (drv.hold) {
        qatomic_inc(&drv.n_held);
        aio_wait_kick();
        while (drv.hold) {
            co_queue_wait_bd(&drv.held, &drv.lock);
        }
    }
    bd_mutex_unlock(&drv.lock);
}

static void drv_done(void)
{
    qatomic_inc(&drv.completed);
    aio_wait_kick();
}

static const OptDesc test_mem_opts[] = {
    { "size", OPT_SIZE, .required = true, .help = "size in bytes" },
    { NULL }
};

static int test_mem_open(BlockDriverState *bs, struct json_object *options,
                         int flags, Error **errp)
{
    MemStore *s = bs->opaque;

    mem_store_init(s, opts_get_int(options, "size", 0));
    qatomic_set(&bs->total_bytes, s->size);
    return 0;
}

static void test_mem_close(BlockDriverState *bs)
{
    MemStore *s = bs->opaque;

    mem_store_destroy(s);
}

static int coroutine_fn test_mem_preadv(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVec *qiov,
                                        BdrvRequestFlags flags)
{
    MemStore *s = bs->opaque;
    int ret = 0;

    qatomic_inc(&drv.reads);
    drv_gate();
    if (qatomic_read(&drv.fail_reads) > 0) {
        qatomic_dec(&drv.fail_reads);
        ret = -EIO;
    } else {
        bd_mutex_lock(&s->lock);
        g_assert_cmpint(offset + bytes, <=, s->size);
        mem_store_read_locked(s, offset, bytes, qiov);
        bd_mutex_unlock(&s->lock);
    }
    drv_done();
    return ret;
}

static int coroutine_fn test_mem_pwritev(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, IOVec *qiov,
                                         BdrvRequestFlags flags)
{
    MemStore *s = bs->opaque;

    qatomic_inc(&drv.writes);
    drv_gate();
    bd_mutex_lock(&s->lock);
    g_assert_cmpint(offset + bytes, <=, s->size);
    mem_store_write_locked(s, offset, bytes, qiov);
    bd_mutex_unlock(&s->lock);
    drv_done();
    return 0;
}

static int coroutine_fn test_mem_flush(BlockDriverState *bs)
{
    return 0;
}

static int coroutine_fn test_mem_truncate(BlockDriverState *bs,
                                          int64_t offset, bool exact,
                                          Error **errp)
{
    MemStore *s = bs->opaque;

    mem_store_truncate(s, offset);
    qatomic_set(&bs->total_bytes, offset);
    return 0;
}

static const BlockDriver test_mem_driver = {
    .format_name = "test-mem",
    .instance_size = sizeof(MemStore),
    .opts = test_mem_opts,
    .bdrv_open = test_mem_open,
    .bdrv_close = test_mem_close,
    .bdrv_co_preadv = test_mem_preadv,
    .bdrv_co_pwritev = test_mem_pwritev,
    .bdrv_co_flush_to_disk = test_mem_flush,
    .bdrv_co_truncate = test_mem_truncate,
};

/* --- Helpers -------------------------------------------------------------- */

typedef struct Fixture {
    BlockDriverState *bs;
    BlockBackend *blk;
    IOThread *io[2];
} Fixture;

static BlockDriverState *open_mem_node(const char *name, int64_t size)
{
    GLOBAL_STATE_CODE();
    return open_node(&error_abort, "{\"driver\": \"test-mem\", \"node-name\": "
                     "\"%s\", \"size\": %" PRId64 "}", name, size);
}

/* A node "n0" and a backend "blk0" on it, with @perm and sharing all. */
static void fixture_init(Fixture *f, uint64_t perm, int n_iothreads)
{
    static const char *const names[] = { "io0", "io1" };

    GLOBAL_STATE_CODE();
    drv_reset();
    *f = (Fixture) { 0 };
    for (int i = 0; i < n_iothreads; i++) {
        f->io[i] = iothread_create(names[i], 0, &error_abort);
    }
    f->bs = open_mem_node("n0", MEM_SIZE);
    f->blk = new_backend("blk0", main_context(), perm, f->bs);
}

static void fixture_cleanup(Fixture *f)
{
    GLOBAL_STATE_CODE();
    blk_unref(f->blk);
    bdrv_unref(f->bs);
    for (int i = 0; i < 2; i++) {
        iothread_destroy(f->io[i]);
    }
}

static AioContext *io_ctx(Fixture *f, int i)
{
    return iothread_get_aio_context(f->io[i]);
}

/* A read or write of a pattern, from a coroutine in any context. */
typedef struct Req {
    BlockBackend *blk;
    bool write;
    int64_t offset;
    int64_t bytes;
    uint8_t *buf;
    int ret;                /* valid once done */
    bool done;              /* atomic */
} Req;

static void req_init(Req *r, BlockBackend *blk, bool write, int64_t offset,
                     int64_t bytes)
{
    *r = (Req) {
        .blk = blk, .write = write, .offset = offset, .bytes = bytes,
        .buf = g_malloc(bytes),
    };
    memset(r->buf, write ? 0xa5 : 0, bytes);
}

static void coroutine_fn req_entry(void *opaque)
{
    Req *r = opaque;
    int ret;

    ret = r->write ? blk_co_pwrite(r->blk, r->offset, r->bytes, r->buf, 0)
                   : blk_co_pread(r->blk, r->offset, r->bytes, r->buf, 0);
    r->ret = ret;
    /* Pairs with the load-acquire in req_wait(). */
    qatomic_store_release(&r->done, true);
    aio_wait_kick();
}

static void req_start(Req *r, AioContext *ctx)
{
    aio_co_enter(ctx, co_create(req_entry, r));
}

static bool req_done(Req *r)
{
    return qatomic_load_acquire(&r->done);
}

/* Wait for @r and check that it succeeded. */
static void req_wait(Req *r)
{
    AIO_WAIT_WHILE(NULL, !req_done(r));
    g_assert_cmpint(r->ret, ==, 0);
    g_free(r->buf);
    r->buf = NULL;
}

static int drv_reached(void)
{
    return qatomic_read(&drv.reads) + qatomic_read(&drv.writes);
}

/* dev ops that count their calls. */
typedef struct DevOpsCounts {
    int drained_begin, drained_end, resize, ctx_changed;
    AioContext *new_ctx;
    IOThread *release_in;   /* drained_begin schedules a release there */
    bool release_started;   /* atomic */
} DevOpsCounts;

static void dev_drained_begin(void *opaque);

static void dev_drained_end(void *opaque)
{
    DevOpsCounts *d = opaque;

    d->drained_end++;
}

static void dev_resize(void *opaque)
{
    DevOpsCounts *d = opaque;

    d->resize++;
}

static void dev_ctx_changed(void *opaque, AioContext *ctx)
{
    DevOpsCounts *d = opaque;

    d->ctx_changed++;
    d->new_ctx = ctx;
}

static const BlockDevOps counting_dev_ops = {
    .drained_begin = dev_drained_begin,
    .drained_end = dev_drained_end,
    .resize = dev_resize,
    .aio_context_changed = dev_ctx_changed,
};

/* --- I/O ------------------------------------------------------------------ */

static void test_read_write_roundtrip(void)
{
    Fixture f;
    g_autofree uint8_t *out = g_malloc(4096);
    g_autofree uint8_t *in = g_malloc(4096);
    g_autofree uint8_t *zero = g_malloc0(4096);

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 0);
    for (int i = 0; i < 4096; i++) {
        out[i] = i * 7 + 3;
    }
    g_assert_cmpint(blk_pwrite(f.blk, 8192, 4096, out, 0), ==, 0);
    g_assert_cmpint(blk_pread(f.blk, 8192, 4096, in, 0), ==, 0);
    g_assert_cmpmem(in, 4096, out, 4096);
    g_assert_cmpint(blk_pread(f.blk, 0, 4096, in, 0), ==, 0);
    g_assert_cmpmem(in, 4096, zero, 4096);
    g_assert_cmpint(qatomic_read(&drv.writes), ==, 1);
    g_assert_cmpint(qatomic_read(&drv.reads), ==, 2);
    g_assert_cmpint(blk_getlength(f.blk), ==, MEM_SIZE);
    fixture_cleanup(&f);
}

/* --- Parking while drained ------------------------------------------------ */

static void test_parked_requests_resume(void)
{
    Fixture f;
    Req r[4];

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 1);
    bdrv_drained_begin(f.bs);
    for (int i = 0; i < 4; i++) {
        req_init(&r[i], f.blk, i % 2, i * 4096, 4096);
        req_start(&r[i], io_ctx(&f, 0));
    }
    ctx_sync(io_ctx(&f, 0));
    /* Every request has run up to its parking point and stopped there. */
    g_assert_cmpint(drv_reached(), ==, 0);
    for (int i = 0; i < 4; i++) {
        g_assert_false(req_done(&r[i]));
    }

    bdrv_drained_end(f.bs);
    for (int i = 0; i < 4; i++) {
        req_wait(&r[i]);
    }
    g_assert_cmpint(drv_reached(), ==, 4);
    fixture_cleanup(&f);
}

/*
 * A drain that begins while requests are parked returns at once: parked
 * requests are not in flight (were they counted, it would wait forever
 * for requests that it holds back itself).
 */
static void test_parked_not_counted_in_flight(void)
{
    Fixture f;
    Req r[2];

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 1);
    bdrv_drained_begin(f.bs);
    for (int i = 0; i < 2; i++) {
        req_init(&r[i], f.blk, false, 0, 512);
        req_start(&r[i], io_ctx(&f, 0));
    }
    ctx_sync(io_ctx(&f, 0));

    blk_drain(f.blk);
    bdrv_drained_begin(f.bs);
    bdrv_drained_end(f.bs);
    ctx_sync(io_ctx(&f, 0));
    g_assert_cmpint(drv_reached(), ==, 0);
    g_assert_false(req_done(&r[0]));
    g_assert_false(req_done(&r[1]));

    bdrv_drained_end(f.bs);
    req_wait(&r[0]);
    req_wait(&r[1]);
    fixture_cleanup(&f);
}

static void test_disable_request_queuing(void)
{
    Fixture f;
    Req r;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 1);
    blk_set_disable_request_queuing(f.blk, true);
    bdrv_drained_begin(f.bs);
    req_init(&r, f.blk, true, 0, 512);
    req_start(&r, io_ctx(&f, 0));
    /* Completes inside the drained section. */
    req_wait(&r);
    g_assert_cmpint(qatomic_read(&drv.writes), ==, 1);
    bdrv_drained_end(f.bs);
    fixture_cleanup(&f);
}

/* --- Drains wait for requests in flight ----------------------------------- */

/*
 * Releases the held requests, but only once the main loop is waiting in
 * the drain: dev_drained_begin() (called by bdrv_drained_begin() before
 * it polls) schedules this in an iothread, and it reschedules itself until
 * the main thread has entered AIO_WAIT_WHILE().
 */
static void release_when_waiting_bh(void *opaque)
{
    DevOpsCounts *d = opaque;

    if (!qatomic_read(&global_aio_wait.num_waiters)) {
        aio_bh_schedule_oneshot(iothread_get_aio_context(d->release_in),
                                release_when_waiting_bh, d);
        return;
    }
    drv_release();
}

static void dev_drained_begin(void *opaque)
{
    DevOpsCounts *d = opaque;

    d->drained_begin++;
    if (d->release_in && !qatomic_read(&d->release_started)) {
        qatomic_set(&d->release_started, true);
        aio_bh_schedule_oneshot(iothread_get_aio_context(d->release_in),
                                release_when_waiting_bh, d);
    }
}

static void test_drain_waits_for_two_iothreads(void)
{
    Fixture f;
    DevOpsCounts d = { 0 };
    Req r[2];

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 2);
    d.release_in = f.io[0];
    blk_set_dev_ops(f.blk, &counting_dev_ops, &d);

    drv_hold();
    for (int i = 0; i < 2; i++) {
        req_init(&r[i], f.blk, i == 1, i * 4096, 4096);
        req_start(&r[i], io_ctx(&f, i));
    }
    AIO_WAIT_WHILE(NULL, qatomic_read(&drv.n_held) < 2);
    g_assert_cmpint(qatomic_read(&drv.completed), ==, 0);

    bdrv_drained_begin(f.bs);
    /* It returned only after both requests had left the driver. */
    g_assert_true(qatomic_read(&d.release_started));
    g_assert_cmpint(qatomic_read(&drv.completed), ==, 2);
    g_assert_cmpint(d.drained_begin, ==, 1);
    bdrv_drained_end(f.bs);

    req_wait(&r[0]);
    req_wait(&r[1]);
    blk_set_dev_ops(f.blk, NULL, NULL);
    fixture_cleanup(&f);
}

static void test_nested_drains(void)
{
    Fixture f;
    DevOpsCounts d = { 0 };
    Req r;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 1);
    blk_set_dev_ops(f.blk, &counting_dev_ops, &d);
    bdrv_drained_begin(f.bs);
    bdrv_drained_begin(f.bs);
    g_assert_cmpint(d.drained_begin, ==, 1);

    req_init(&r, f.blk, false, 0, 512);
    req_start(&r, io_ctx(&f, 0));
    ctx_sync(io_ctx(&f, 0));

    /* The inner end leaves the backend quiesced. */
    bdrv_drained_end(f.bs);
    ctx_sync(io_ctx(&f, 0));
    g_assert_cmpint(d.drained_end, ==, 0);
    g_assert_cmpint(drv_reached(), ==, 0);
    g_assert_false(req_done(&r));

    bdrv_drained_end(f.bs);
    g_assert_cmpint(d.drained_end, ==, 1);
    req_wait(&r);
    g_assert_cmpint(drv_reached(), ==, 1);
    blk_set_dev_ops(f.blk, NULL, NULL);
    fixture_cleanup(&f);
}

/* --- Permissions and checks ----------------------------------------------- */

static void test_perm_conflict_message(void)
{
    BlockDriverState *bs;
    BlockBackend *a, *b;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    drv_reset();
    bs = open_mem_node("n0", MEM_SIZE);
    a = blk_new("exp0", main_context(),
                BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                BLK_PERM_ALL & ~BLK_PERM_WRITE);
    g_assert_cmpint(blk_insert_bs(a, bs, &error_abort), ==, 0);

    b = blk_new("exp1", main_context(),
                BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, BLK_PERM_ALL);
    g_assert_cmpint(blk_insert_bs(b, bs, &err), <, 0);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Conflicts with use by exp0 as 'root', which does not "
                    "allow 'write' on n0");
    error_free(err);
    g_assert_null(blk_bs(b));

    blk_unref(b);
    blk_unref(a);
    bdrv_unref(bs);
}

static void test_read_only_eperm(void)
{
    Fixture f;
    uint8_t buf[512] = { 0 };

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ, 0);
    g_assert_true(blk_is_read_only(f.blk));
    g_assert_cmpint(blk_pwrite(f.blk, 0, sizeof(buf), buf, 0), ==, -EPERM);
    g_assert_cmpint(qatomic_read(&drv.writes), ==, 0);
    g_assert_cmpint(blk_pread(f.blk, 0, sizeof(buf), buf, 0), ==, 0);
    fixture_cleanup(&f);
}

static void test_out_of_range_eio(void)
{
    Fixture f;
    uint8_t buf[1024] = { 0 };

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 0);
    g_assert_cmpint(blk_pread(f.blk, MEM_SIZE - 512, 1024, buf, 0), ==,
                    -EIO);
    g_assert_cmpint(blk_pread(f.blk, -512, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(f.blk, 0, -1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(f.blk, MEM_SIZE, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(f.blk, INT64_MAX - 256, 512, buf, 0), ==,
                    -EIO);
    g_assert_cmpint(drv_reached(), ==, 0);
    /* The last bytes of the node are in range. */
    g_assert_cmpint(blk_pread(f.blk, MEM_SIZE - 1024, 1024, buf, 0), ==, 0);
    fixture_cleanup(&f);
}

static void test_stats_counted(void)
{
    Fixture f;
    BlockAcctStats st;
    uint8_t buf[4096] = { 0 };
    int64_t before = get_clock_ns(), after;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 0);
    g_assert_cmpint(blk_pwrite(f.blk, 0, 4096, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(f.blk, 4096, 2048, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(f.blk, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(blk_flush(f.blk), ==, 0);
    g_assert_cmpint(blk_pread(f.blk, MEM_SIZE, 512, buf, 0), ==, -EIO);
    qatomic_set(&drv.fail_reads, 1);
    g_assert_cmpint(blk_pread(f.blk, 0, 512, buf, 0), ==, -EIO);
    after = get_clock_ns();

    blk_get_stats(f.blk, &st);
    g_assert_cmpuint(st.wr_ops, ==, 2);
    g_assert_cmpuint(st.wr_bytes, ==, 4096 + 2048);
    g_assert_cmpuint(st.rd_ops, ==, 1);
    g_assert_cmpuint(st.rd_bytes, ==, 512);
    g_assert_cmpuint(st.flush_ops, ==, 1);
    g_assert_cmpuint(st.invalid_rd_ops, ==, 1);
    g_assert_cmpuint(st.failed_rd_ops, ==, 1);
    g_assert_cmpuint(st.failed_wr_ops, ==, 0);
    g_assert_cmpuint(st.invalid_wr_ops, ==, 0);
    g_assert_cmpuint(st.rd_total_time_ns, <=, (uint64_t)(after - before));
    g_assert_cmpint(st.last_access_time_ns, >=, before);
    g_assert_cmpint(st.last_access_time_ns, <=, after);
    fixture_cleanup(&f);
}

/* --- dev ops and AioContexts ---------------------------------------------- */

typedef struct TruncateCo {
    BlockBackend *blk;
    int64_t size;
    int ret;
    bool done;              /* atomic */
} TruncateCo;

static void coroutine_fn truncate_entry(void *opaque)
{
    TruncateCo *t = opaque;

    t->ret = blk_co_truncate(t->blk, t->size, &error_abort);
    qatomic_store_release(&t->done, true);
    aio_wait_kick();
}

static void test_dev_ops_resize_called(void)
{
    Fixture f;
    DevOpsCounts d = { 0 };
    TruncateCo t;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_RESIZE, 0);
    blk_set_dev_ops(f.blk, &counting_dev_ops, &d);
    t = (TruncateCo) { .blk = f.blk, .size = 2 * MEM_SIZE };
    aio_co_enter(main_context(), co_create(truncate_entry, &t));
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&t.done));
    g_assert_cmpint(t.ret, ==, 0);
    /* The callback runs in the main loop, maybe from a bottom half. */
    settle();
    g_assert_cmpint(d.resize, ==, 1);
    g_assert_cmpint(blk_getlength(f.blk), ==, 2 * MEM_SIZE);
    blk_set_dev_ops(f.blk, NULL, NULL);
    fixture_cleanup(&f);
}

static void test_refuses_aio_context_change(void)
{
    Fixture f;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ, 1);
    g_assert_cmpint(bdrv_try_change_aio_context(f.bs, io_ctx(&f, 0), NULL,
                                                &err), <, 0);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(error_get_pretty(err),
                            "Cannot change iothread of active block backend "
                            "'blk0' to 'io0'"));
    error_free(err);
    g_assert_true(bdrv_get_aio_context(f.bs) == main_context());
    g_assert_true(blk_get_aio_context(f.blk) == main_context());
    fixture_cleanup(&f);
}

static void test_allowed_aio_context_change(void)
{
    Fixture f;
    DevOpsCounts d = { 0 };
    uint8_t buf[512];

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ, 1);
    blk_set_dev_ops(f.blk, &counting_dev_ops, &d);
    blk_set_allow_aio_context_change(f.blk, true);
    g_assert_cmpint(bdrv_try_change_aio_context(f.bs, io_ctx(&f, 0), NULL,
                                                &error_abort), ==, 0);
    g_assert_true(blk_get_aio_context(f.blk) == io_ctx(&f, 0));
    g_assert_cmpint(d.ctx_changed, ==, 1);
    g_assert_true(d.new_ctx == io_ctx(&f, 0));
    /* The synchronous wrappers now run the request in the iothread. */
    g_assert_cmpint(blk_pread(f.blk, 0, sizeof(buf), buf, 0), ==, 0);

    g_assert_cmpint(bdrv_try_change_aio_context(f.bs, main_context(), NULL,
                                                &error_abort), ==, 0);
    g_assert_cmpint(d.ctx_changed, ==, 2);
    blk_set_dev_ops(f.blk, NULL, NULL);
    fixture_cleanup(&f);
}

static void test_set_aio_context_moves_node(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ, 1);
    /* The backend's own request needs no permission to move. */
    g_assert_cmpint(blk_set_aio_context(f.blk, io_ctx(&f, 0), &error_abort),
                    ==, 0);
    g_assert_true(bdrv_get_aio_context(f.bs) == io_ctx(&f, 0));
    g_assert_true(blk_get_aio_context(f.blk) == io_ctx(&f, 0));
    g_assert_cmpint(blk_set_aio_context(f.blk, main_context(), &error_abort),
                    ==, 0);
    g_assert_true(bdrv_get_aio_context(f.bs) == main_context());
    fixture_cleanup(&f);
}

/* --- Lifetime ------------------------------------------------------------- */

/*
 * Dropping a backend whose requests are parked: detaching it from the
 * drained node releases them, they fail with -ENOMEDIUM, and the backend
 * is freed only after they are done with it (ASan checks the rest).
 */
static void test_unref_fails_parked_requests(void)
{
    Fixture f;
    Req r;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ, 1);
    bdrv_drained_begin(f.bs);
    req_init(&r, f.blk, false, 0, 512);
    req_start(&r, io_ctx(&f, 0));
    ctx_sync(io_ctx(&f, 0));
    g_assert_false(req_done(&r));

    blk_unref(f.blk);
    f.blk = NULL;
    AIO_WAIT_WHILE(NULL, !req_done(&r));
    g_assert_cmpint(r.ret, ==, -ENOMEDIUM);
    g_assert_cmpint(drv_reached(), ==, 0);
    g_free(r.buf);
    bdrv_drained_end(f.bs);
    fixture_cleanup(&f);
}

static void test_blk_next_lists_backends(void)
{
    GLOBAL_STATE_CODE();
    BlockBackend *a = blk_new("a", NULL, 0, BLK_PERM_ALL);
    BlockBackend *b = blk_new("b", NULL, 0, BLK_PERM_ALL);

    g_assert_true(blk_next(NULL) == a);
    g_assert_true(blk_next(a) == b);
    g_assert_null(blk_next(b));
    g_assert_cmpstr(blk_name(b), ==, "b");
    blk_unref(a);
    g_assert_true(blk_next(NULL) == b);
    blk_unref(b);
    g_assert_null(blk_next(NULL));
}

/* --- Stress --------------------------------------------------------------- */

/*
 * Coroutines in two iothreads issue requests while the main loop drains
 * the node over and over.  Between bdrv_drained_begin() returning and
 * bdrv_drained_end(), no request may enter the driver (the Dekker pair of
 * the in-flight count and quiesce_counter), and every request completes.
 */
typedef struct StressWorker {
    BlockBackend *blk;
    bool *stop;             /* atomic */
    uint32_t rnd;
    int n_requests;
    int failures;
    bool done;              /* atomic */
} StressWorker;

static void coroutine_fn stress_worker(void *opaque)
{
    StressWorker *w = opaque;
    uint8_t buf[512];

    memset(buf, 0x5a, sizeof(buf));
    while (!qatomic_read(w->stop)) {
        int64_t offset;
        int ret;

        w->rnd = w->rnd * 1103515245u + 12345u;
        offset = ((w->rnd >> 8) % (MEM_SIZE / 512)) * 512;
        ret = (w->rnd & 1) ? blk_co_pwrite(w->blk, offset, 512, buf, 0)
                           : blk_co_pread(w->blk, offset, 512, buf, 0);
        if (ret < 0) {
            w->failures++;
        }
        w->n_requests++;
        /* The test driver never yields: let the loop run bottom halves. */
        aio_co_schedule(aio_get_current_context(), co_self());
        co_yield();
    }
    qatomic_store_release(&w->done, true);
    aio_wait_kick();
}

static bool stress_all_done(StressWorker *w, int n)
{
    for (int i = 0; i < n; i++) {
        if (!qatomic_load_acquire(&w[i].done)) {
            return false;
        }
    }
    return true;
}

static void test_stress_drain_vs_requests(void)
{
    enum { N_WORKERS = 8 };
    Fixture f;
    StressWorker w[N_WORKERS];
    int n_drains = 200 * stress_iterations();
    bool stop = false;
    int total = 0;

    GLOBAL_STATE_CODE();
    fixture_init(&f, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, 2);
    for (int i = 0; i < N_WORKERS; i++) {
        w[i] = (StressWorker) { .blk = f.blk, .stop = &stop, .rnd = i + 1 };
        aio_co_enter(io_ctx(&f, i % 2), co_create(stress_worker, &w[i]));
    }
    for (int i = 0; i < n_drains; i++) {
        bdrv_drained_begin(f.bs);
        qatomic_set(&drv.drained, true);
        /* Give the iothreads a chance to push requests in. */
        ctx_sync(io_ctx(&f, i % 2));
        qatomic_set(&drv.drained, false);
        bdrv_drained_end(f.bs);
        /*
         * The restarted requests run before these bottom halves: every
         * worker gets going again before the next drain.
         */
        ctx_sync(io_ctx(&f, 0));
        ctx_sync(io_ctx(&f, 1));
    }
    qatomic_set(&stop, true);
    AIO_WAIT_WHILE(NULL, !stress_all_done(w, N_WORKERS));

    g_assert_cmpint(qatomic_read(&drv.violations), ==, 0);
    for (int i = 0; i < N_WORKERS; i++) {
        g_assert_cmpint(w[i].failures, ==, 0);
        g_assert_cmpint(w[i].n_requests, >, 0);
        total += w[i].n_requests;
    }
    g_assert_cmpint(drv_reached(), ==, total);
    g_test_message("%d requests across %d drained sections", total,
                   n_drains);
    fixture_cleanup(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    bd_mutex_init(&drv.lock);
    co_queue_init(&drv.held);
    bdrv_register(&test_mem_driver);

    g_test_add_func("/block-backend/read-write-roundtrip",
                    test_read_write_roundtrip);
    g_test_add_func("/block-backend/parked-requests-resume-after-drained-end",
                    test_parked_requests_resume);
    g_test_add_func("/block-backend/parked-not-counted-in-flight",
                    test_parked_not_counted_in_flight);
    g_test_add_func("/block-backend/disable-request-queuing-passes-through",
                    test_disable_request_queuing);
    g_test_add_func("/block-backend/drain-waits-for-in-flight-"
                    "from-two-iothreads", test_drain_waits_for_two_iothreads);
    g_test_add_func("/block-backend/nested-drains", test_nested_drains);
    g_test_add_func("/block-backend/perm-conflict-message",
                    test_perm_conflict_message);
    g_test_add_func("/block-backend/read-only-eperm", test_read_only_eperm);
    g_test_add_func("/block-backend/out-of-range-eio", test_out_of_range_eio);
    g_test_add_func("/block-backend/stats-counted", test_stats_counted);
    g_test_add_func("/block-backend/dev-ops-resize-called",
                    test_dev_ops_resize_called);
    g_test_add_func("/block-backend/refuses-aio-context-change-by-default",
                    test_refuses_aio_context_change);
    g_test_add_func("/block-backend/allowed-aio-context-change-follows-node",
                    test_allowed_aio_context_change);
    g_test_add_func("/block-backend/set-aio-context-moves-node",
                    test_set_aio_context_moves_node);
    g_test_add_func("/block-backend/unref-fails-parked-requests",
                    test_unref_fails_parked_requests);
    g_test_add_func("/block-backend/blk-next-lists-backends",
                    test_blk_next_lists_backends);
    g_test_add_func("/block-backend/stress-drain-vs-requests",
                    test_stress_drain_vs_requests);
    return g_test_run();
}
