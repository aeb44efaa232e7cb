/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The generic request path (block/io/io.c): the checking layer, padding and
 * read-modify-write, serialisation of overlapping requests, splitting,
 * bounce buffers, write-zeroes fallback, detect-zeroes, FUA emulation,
 * flush generations, discard, block status, truncate, in-flight counting.
 *
 * The node under test is "test-mem", a memory-backed driver defined here:
 * it asserts that every request it gets is aligned, within max-transfer
 * and in range, counts its calls, and can hold one call of a chosen kind
 * until the test lets it go, which forces interleavings deterministically.
 * Deterministic tests run every coroutine in the main context; the stress
 * test adds two iothreads and scales with STRESS_ITERATIONS.  Nothing
 * sleeps: waits are AIO_WAIT_WHILE() on atomics.
 */
#include "util/osdep.h"

#include "block-helpers.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

#define KIB 1024
#define MIB (1024 * 1024)

static void atomic_max64(int64_t *p, int64_t v)
{
    int64_t cur = qatomic_read(p);

    while (v > cur) {
        int64_t seen = qatomic_cmpxchg(p, cur, v);

        if (seen == cur) {
            break;
        }
        cur = seen;
    }
}

/* --- The test driver: memory-backed, checking, counting, holding ------- */

enum {
    HOLD_READ   = 1 << 0,
    HOLD_WRITE  = 1 << 1,
    HOLD_FLUSH  = 1 << 2,
};

typedef struct TestMem {
    /* Immutable after open. */
    uint32_t align, mem_align, pdiscard_align;
    uint64_t max_transfer;
    bool zeroes;            /* pwrite_zeroes works (else -ENOTSUP) */
    bool yield;             /* go back to the event loop in every call */

    MemStore store;         /* the node's bytes */

    /* Counters: atomic. */
    int n_read, n_write, n_zero, n_discard, n_flush, n_status;
    int64_t max_req;            /* largest read or write seen */
    int last_write_flags, last_zero_flags;
    int64_t last_discard_offset, last_discard_bytes;
    int fail_flush;             /* fail this many flushes with -EIO */

    /* Holding: atomic.  hold: kinds of call to stop once; held: who. */
    int hold;
    Coroutine *held;
} TestMem;

static const OptDesc test_mem_opts[] = {
    { "size", OPT_SIZE, .def = "64k" },
    { "align", OPT_INT, .def = "1" },
    { "mem-align", OPT_INT, .def = "1" },
    { "max-transfer", OPT_SIZE, .def = "0" },
    { "pdiscard-alignment", OPT_INT, .def = "0" },
    { "pwrite-zeroes", OPT_BOOL, .def = "on" },
    { "yield", OPT_BOOL, .def = "off" },
    { NULL }
};

static int tm_open(BlockDriverState *bs, struct json_object *options,
                   int flags, Error **errp)
{
    TestMem *s = bs->opaque;

    s->align = opts_get_int(options, "align", 1);
    s->mem_align = opts_get_int(options, "mem-align", 1);
    s->max_transfer = opts_get_int(options, "max-transfer", 0);
    s->pdiscard_align = opts_get_int(options, "pdiscard-alignment", 0);
    s->zeroes = opts_get_bool(options, "pwrite-zeroes", true);
    s->yield = opts_get_bool(options, "yield", false);
    mem_store_init(&s->store, opts_get_int(options, "size", 64 * KIB));
    bs->total_bytes = s->store.size;
    return 0;
}

static void tm_close(BlockDriverState *bs)
{
    TestMem *s = bs->opaque;

    g_assert_null(qatomic_read(&s->held));
    mem_store_destroy(&s->store);
}

static void tm_refresh_limits(BlockDriverState *bs, Error **errp)
{
    TestMem *s = bs->opaque;

    bs->bl.request_alignment = s->align;
    bs->bl.min_mem_alignment = s->mem_align;
    bs->bl.max_transfer = s->max_transfer;
    bs->bl.pdiscard_alignment = s->pdiscard_align;
}

static void coroutine_fn tm_yield(void)
{
    aio_co_schedule(aio_get_current_context(), co_self());
    co_yield();
}

/* If the test asked to hold the next call of @kind, stop here. */
static void coroutine_fn tm_maybe_hold(TestMem *s, int kind)
{
    if ((qatomic_read(&s->hold) & kind) &&
        (qatomic_fetch_and(&s->hold, ~kind) & kind)) {
        /* Pairs with the load-acquire in tm_wait_held(). */
        qatomic_store_release(&s->held, co_self());
        aio_wait_kick();
        co_yield();
    }
}

/* The checks io.c promises every driver. */
static void tm_check_request(BlockDriverState *bs, TestMem *s, int64_t offset,
                             int64_t bytes, IOVec *qiov)
{
    g_assert_cmpint(offset % s->align, ==, 0);
    g_assert_cmpint(bytes % s->align, ==, 0);
    g_assert_cmpint(bytes, >, 0);
    g_assert_cmpint(offset + bytes, <=,
                    ROUND_UP(bdrv_get_total_bytes(bs), s->align));
    if (s->max_transfer) {
        g_assert_cmpint(bytes, <=, s->max_transfer);
    }
    if (qiov) {
        g_assert_cmpuint(qiov->size, ==, bytes);
        /* Like O_DIRECT, when the node has a memory alignment. */
        for (int i = 0; s->mem_align > 1 && i < qiov->niov; i++) {
            g_assert_cmpuint((uintptr_t)qiov->iov[i].iov_base % s->mem_align,
                             ==, 0);
            g_assert_cmpuint(qiov->iov[i].iov_len % s->align, ==, 0);
        }
    }
}

static int coroutine_fn tm_preadv(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, IOVec *qiov,
                                  BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    tm_check_request(bs, s, offset, bytes, qiov);
    g_assert_cmpint(flags, ==, 0);
    qatomic_inc(&s->n_read);
    atomic_max64(&s->max_req, bytes);
    tm_maybe_hold(s, HOLD_READ);
    mem_store_read(&s->store, offset, bytes, qiov);
    if (s->yield) {
        tm_yield();         /* widen the window of a read-modify-write */
    }
    return 0;
}

static int coroutine_fn tm_pwritev(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, IOVec *qiov,
                                   BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    tm_check_request(bs, s, offset, bytes, qiov);
    g_assert_cmpint(flags & ~bs->drv->supported_write_flags, ==, 0);
    qatomic_inc(&s->n_write);
    qatomic_set(&s->last_write_flags, flags);
    atomic_max64(&s->max_req, bytes);
    tm_maybe_hold(s, HOLD_WRITE);
    if (s->yield) {
        tm_yield();
    }
    mem_store_write(&s->store, offset, bytes, qiov);
    return 0;
}

static int coroutine_fn tm_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes,
                                         BdrvRequestFlags flags)
{
    TestMem *s = bs->opaque;

    tm_check_request(bs, s, offset, bytes, NULL);
    g_assert_cmpint(flags & ~bs->drv->supported_zero_flags, ==, 0);
    qatomic_inc(&s->n_zero);
    qatomic_set(&s->last_zero_flags, flags);
    if (!s->zeroes) {
        return -ENOTSUP;
    }
    bd_mutex_lock(&s->store.lock);
    memset(s->store.data + offset, 0, bytes);
    bd_mutex_unlock(&s->store.lock);
    return 0;
}

static int coroutine_fn tm_pdiscard(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes)
{
    TestMem *s = bs->opaque;

    tm_check_request(bs, s, offset, bytes, NULL);
    qatomic_inc(&s->n_discard);
    qatomic_set(&s->last_discard_offset, offset);
    qatomic_set(&s->last_discard_bytes, bytes);
    return 0;
}

static int coroutine_fn tm_flush(BlockDriverState *bs)
{
    TestMem *s = bs->opaque;

    qatomic_inc(&s->n_flush);
    tm_maybe_hold(s, HOLD_FLUSH);
    if (qatomic_read(&s->fail_flush) > 0) {
        qatomic_dec(&s->fail_flush);
        return -EIO;
    }
    return 0;
}

static bool tm_is_zero(TestMem *s, int64_t offset, int64_t len)
    TSA_REQUIRES(&s->store.lock)
{
    for (int64_t i = 0; i < len; i++) {
        if (s->store.data[offset + i]) {
            return false;
        }
    }
    return true;
}

/* Runs of 512-byte blocks that are all zero (ZERO) or not (DATA). */
static int coroutine_fn tm_block_status(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file)
{
    TestMem *s = bs->opaque;
    int64_t n = 0;
    bool zero;

    qatomic_inc(&s->n_status);
    bd_mutex_lock(&s->store.lock);
    zero = tm_is_zero(s, offset, MIN(512, bytes));
    while (n < bytes) {
        int64_t len = MIN(512, bytes - n);

        if (tm_is_zero(s, offset + n, len) != zero) {
            break;
        }
        n += len;
    }
    bd_mutex_unlock(&s->store.lock);
    *pnum = n;
    *map = offset;
    *file = bs;
    return (zero ? BDRV_BLOCK_ZERO : BDRV_BLOCK_DATA) |
           BDRV_BLOCK_OFFSET_VALID;
}

/* Resizes its memory but leaves total_bytes to the generic code. */
static int coroutine_fn tm_truncate(BlockDriverState *bs, int64_t offset,
                                    bool exact, Error **errp)
{
    TestMem *s = bs->opaque;

    mem_store_truncate(&s->store, offset);
    return 0;
}

#define TEST_MEM_COMMON                                 \
    .instance_size = sizeof(TestMem),                   \
    .opts = test_mem_opts,                              \
    .bdrv_open = tm_open,                               \
    .bdrv_close = tm_close,                             \
    .bdrv_refresh_limits = tm_refresh_limits,           \
    .bdrv_co_preadv = tm_preadv,                        \
    .bdrv_co_pwritev = tm_pwritev,                      \
    .bdrv_co_flush_to_disk = tm_flush,                  \
    .bdrv_co_truncate = tm_truncate

/* No FUA: the generic code emulates it with a flush. */
static const BlockDriver test_mem_driver = {
    .format_name = "test-mem",
    TEST_MEM_COMMON,
    .bdrv_co_pwrite_zeroes = tm_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK,
    .bdrv_co_pdiscard = tm_pdiscard,
    .bdrv_co_block_status = tm_block_status,
};

static const BlockDriver test_mem_fua_driver = {
    .format_name = "test-mem-fua",
    TEST_MEM_COMMON,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = tm_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_FUA,
};

/* Only reads, writes, flush and truncate: every other callback absent. */
static const BlockDriver test_mem_plain_driver = {
    .format_name = "test-mem-plain",
    TEST_MEM_COMMON,
};

/* A driver with the classic bug: reads return the byte count, as pread(). */
static int coroutine_fn tm_preadv_returns_bytes(BlockDriverState *bs,
                                                int64_t offset, int64_t bytes,
                                                IOVec *qiov,
                                                BdrvRequestFlags flags)
{
    int ret = tm_preadv(bs, offset, bytes, qiov, flags);

    return ret < 0 ? ret : (int)bytes;
}

static const BlockDriver test_mem_broken_driver = {
    .format_name = "test-mem-broken",
    .instance_size = sizeof(TestMem),
    .opts = test_mem_opts,
    .bdrv_open = tm_open,
    .bdrv_close = tm_close,
    .bdrv_refresh_limits = tm_refresh_limits,
    .bdrv_co_preadv = tm_preadv_returns_bytes,
};

/* --- A format layer whose block status says "ask my file" -------------- */

static const OptDesc test_fmt_opts[] = {
    { "file", OPT_NODE, .required = true },
    { NULL }
};

static int test_fmt_open(BlockDriverState *bs, struct json_object *options,
                         int flags, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!bdrv_open_child(options, "file", bs,
                         BDRV_CHILD_IMAGE | BDRV_CHILD_PRIMARY, false,
                         errp)) {
        return -EINVAL;
    }
    /* Read the new edge; the main loop is the graph's only writer. */
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    bs->total_bytes = bdrv_get_total_bytes(bs->file->bs);
    return 0;
}

static int coroutine_fn test_fmt_block_status(BlockDriverState *bs,
                                              bool want_zero, int64_t offset,
                                              int64_t bytes, int64_t *pnum,
                                              int64_t *map,
                                              BlockDriverState **file)
    GRAPH_RDLOCK
{
    *pnum = bytes;
    *map = offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RECURSE | BDRV_BLOCK_OFFSET_VALID;
}

static int coroutine_fn test_fmt_pwritev(BlockDriverState *bs,
                                         int64_t offset, int64_t bytes,
                                         IOVec *qiov, BdrvRequestFlags flags)
    GRAPH_RDLOCK
{
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static const BlockDriver test_fmt_driver = {
    .format_name = "test-fmt",
    .opts = test_fmt_opts,
    .has_file_child = true,
    .bdrv_open = test_fmt_open,
    .bdrv_co_pwritev = test_fmt_pwritev,
    .bdrv_co_block_status = test_fmt_block_status,
};

/* --- Nodes under test and their root edge ------------------------------- */

typedef struct TestNode {
    BlockDriverState *bs;
    BdrvChild *root;        /* the test's own edge: I/O goes through it */
    TestMem *mem;           /* the test-mem node's state (bs or its file) */
    int resized;            /* root edge's resize callback calls; BQL */
} TestNode;

static char *root_desc(BdrvChild *c)
{
    return g_strdup("test");
}

static void root_resize(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    ((TestNode *)c->opaque)->resized++;
}

static const BdrvChildClass test_root_class = {
    .get_parent_desc = root_desc,
    .resize = root_resize,
};

static void node_open(TestNode *t, const char *json)
{
    struct json_object *opts = json_tokener_parse(json);
    uint64_t perm = BLK_PERM_CONSISTENT_READ;
    BlockDriverState *mem_bs;

    GLOBAL_STATE_CODE();
    g_assert_nonnull(opts);
    if (!json_object_object_get_ex(opts, "node-name", NULL)) {
        json_object_object_add(opts, "node-name",
                               json_object_new_string("test"));
    }
    *t = (TestNode) { 0 };
    t->bs = bdrv_open(opts, true, &error_abort);
    json_object_put(opts);
    if (!bdrv_is_read_only(t->bs)) {
        perm |= BLK_PERM_WRITE | BLK_PERM_RESIZE;
    }
    bdrv_graph_wrlock();
    t->root = bdrv_root_attach_child(t->bs, "root", &test_root_class,
                                     BDRV_CHILD_IMAGE, perm, BLK_PERM_ALL, t,
                                     &error_abort);
    mem_bs = t->bs->drv == &test_fmt_driver ? t->bs->file->bs : t->bs;
    bdrv_graph_wrunlock();
    t->mem = mem_bs->opaque;
}

static void node_close(TestNode *t)
{
    GLOBAL_STATE_CODE();
    g_assert_cmpuint(qatomic_read(&t->bs->in_flight), ==, 0);
    g_assert_true(QLIST_EMPTY(&t->bs->tracked_requests));
    g_assert_cmpint(qatomic_read(&t->bs->serialising_in_flight), ==, 0);
    bdrv_graph_wrlock();
    bdrv_root_unref_child(t->root);
    bdrv_graph_wrunlock();
    bdrv_unref(t->bs);
}

/* Direct access to the test-mem node's bytes (outside any request). */
static void mem_fill(TestMem *s, int64_t offset, int c, int64_t len)
{
    bd_mutex_lock(&s->store.lock);
    memset(s->store.data + offset, c, len);
    bd_mutex_unlock(&s->store.lock);
}

static void mem_pattern(TestMem *s)
{
    bd_mutex_lock(&s->store.lock);
    for (int64_t i = 0; i < s->store.size; i++) {
        s->store.data[i] = (uint8_t)(i * 7 + 3);
    }
    bd_mutex_unlock(&s->store.lock);
}

static uint8_t *mem_copy(TestMem *s)
{
    return mem_store_copy(&s->store);
}

/* Wait until a call the test asked to hold has stopped; return it. */
static Coroutine *tm_wait_held(TestMem *s)
{
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&s->held));
    return qatomic_read(&s->held);
}

static void tm_release(TestMem *s)
{
    Coroutine *co = qatomic_xchg(&s->held, NULL);

    g_assert_nonnull(co);
    aio_co_wake(co);
}

/* --- Requests from coroutines ----------------------------------------------- */

typedef enum {
    OP_READ, OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH, OP_TRUNCATE,
} IoOp;

typedef struct IoReq {
    TestNode *t;
    IoOp op;
    int64_t offset, bytes;
    void *buf;
    BdrvRequestFlags flags;
    int ret;
    int done;               /* atomic: store-release when ret is set */
} IoReq;

static void coroutine_fn io_entry(void *opaque)
{
    IoReq *r = opaque;
    BdrvChild *root = r->t->root;
    IOVec v;

    bdrv_graph_co_rdlock();
    iovec_init_buf(&v, r->buf, r->buf ? r->bytes : 0);
    switch (r->op) {
    case OP_READ:
        r->ret = bdrv_co_preadv(root, r->offset, r->bytes, &v, r->flags);
        break;
    case OP_WRITE:
        r->ret = bdrv_co_pwritev(root, r->offset, r->bytes, &v, r->flags);
        break;
    case OP_ZERO:
        r->ret = bdrv_co_pwrite_zeroes(root, r->offset, r->bytes, r->flags);
        break;
    case OP_DISCARD:
        r->ret = bdrv_co_pdiscard(root, r->offset, r->bytes);
        break;
    case OP_FLUSH:
        r->ret = bdrv_co_flush(root->bs);
        break;
    case OP_TRUNCATE:
        r->ret = bdrv_co_truncate(root, r->offset, true, NULL);
        break;
    }
    bdrv_graph_co_rdunlock();
    /* Pairs with the load-acquire in io_wait(). */
    qatomic_store_release(&r->done, 1);
    aio_wait_kick();
}

/* Start @r in the main context: it runs until it first waits. */
static void io_start(IoReq *r)
{
    aio_co_enter(main_context(), co_create(io_entry, r));
}

static bool io_done(IoReq *r)
{
    return qatomic_load_acquire(&r->done);
}

static int io_wait(IoReq *r)
{
    AIO_WAIT_WHILE(NULL, !io_done(r));
    return r->ret;
}

/*
 * Start @r and return once the driver holds it in its call of @kind (one
 * of HOLD_*): everything @r does before that call has happened.
 */
static void io_start_held(IoReq *r, int kind)
{
    qatomic_set(&r->t->mem->hold, kind);
    io_start(r);
    tm_wait_held(r->t->mem);
}

static int io_sync(TestNode *t, IoOp op, int64_t offset, int64_t bytes,
                   void *buf, BdrvRequestFlags flags)
{
    IoReq r = { .t = t, .op = op, .offset = offset, .bytes = bytes,
                .buf = buf, .flags = flags };

    io_start(&r);
    return io_wait(&r);
}

/* node_open(), then one write: the node has something to flush. */
static void node_open_written(TestNode *t, const char *json)
{
    uint8_t buf[512] = { 1 };

    node_open(t, json);
    g_assert_cmpint(io_sync(t, OP_WRITE, 0, 512, buf, 0), ==, 0);
}

/* --- Checking layer ----------------------------------------------------------- */

static void test_out_of_range_eio(void)
{
    TestNode t;
    uint8_t buf[1024];

    node_open(&t, "{\"driver\": \"test-mem\", \"size\": 65536}");
    g_assert_cmpint(io_sync(&t, OP_READ, 65536 - 512, 1024, buf, 0), ==,
                    -EIO);
    g_assert_cmpint(io_sync(&t, OP_WRITE, 65536, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(io_sync(&t, OP_READ, -512, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(io_sync(&t, OP_ZERO, 65000, 1000, NULL, 0), ==, -EIO);
    g_assert_cmpint(io_sync(&t, OP_DISCARD, 0, 65537, NULL, 0), ==, -EIO);
    /* Longer than any request may be (the buffer is never touched). */
    /* (io_entry claims a buffer of that size: it is never touched.) */
    g_assert_cmpint(io_sync(&t, OP_READ, 0, BDRV_REQUEST_MAX_BYTES + 512,
                            buf, 0), ==, -EIO);
    /* Empty requests at the end are fine and reach nobody. */
    g_assert_cmpint(io_sync(&t, OP_READ, 65536, 0, buf, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 0);
    node_close(&t);
}

/*
 * The checking layer around drivers: a driver that returns a byte count
 * from a read breaks the contract (0 or -errno) and is named at once.
 * (The request path used to take MIN(ret, 0) and call it a success.)
 */
static void test_driver_result_checked(void)
{
    if (g_test_subprocess()) {
        TestNode t;
        uint8_t buf[512];

        node_open(&t, "{\"driver\": \"test-mem-broken\"}");
        io_sync(&t, OP_READ, 0, 512, buf, 0);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*block driver 'test-mem-broken' (node "
                              "'test'), read: returned 512, neither 0 nor "
                              "a negative errno*");
}

static void test_unknown_flags_einval(void)
{
    TestNode t;
    uint8_t buf[512] = { 0 };

    node_open(&t, "{\"driver\": \"test-mem\"}");
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 512, buf, 1 << 10), ==,
                    -EINVAL);
    /* Internal flags and flags of other operations are refused too. */
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 512, buf, BDRV_REQ_SERIALISING),
                    ==, -EINVAL);
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 512, buf, BDRV_REQ_MAY_UNMAP),
                    ==, -EINVAL);
    g_assert_cmpint(io_sync(&t, OP_READ, 0, 512, buf, BDRV_REQ_FUA), ==,
                    -EINVAL);
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 512, NULL, BDRV_REQ_ZERO_WRITE),
                    ==, -EINVAL);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 0);
    node_close(&t);
}

static void test_read_only_eperm(void)
{
    TestNode t;
    uint8_t buf[512] = { 1 };

    node_open(&t, "{\"driver\": \"test-mem\", \"read-only\": true,"
                  " \"discard\": \"unmap\"}");
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 512, buf, 0), ==, -EPERM);
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 512, NULL, 0), ==, -EPERM);
    g_assert_cmpint(io_sync(&t, OP_DISCARD, 0, 512, NULL, 0), ==, -EPERM);
    g_assert_cmpint(io_sync(&t, OP_TRUNCATE, 4096, 0, NULL, 0), ==, -EPERM);
    g_assert_cmpint(io_sync(&t, OP_READ, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_discard), ==, 0);
    g_assert_cmpint(bdrv_get_total_bytes(t.bs), ==, 65536);
    node_close(&t);
}

/* --- Padding ------------------------------------------------------------------ */

static void test_unaligned_read_padded(void)
{
    TestNode t;
    g_autofree uint8_t *expect = NULL;
    uint8_t buf[1000];

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    mem_pattern(t.mem);
    expect = mem_copy(t.mem);
    /* Head and tail both unaligned, spanning three blocks. */
    g_assert_cmpint(io_sync(&t, OP_READ, 100, 1000, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 1000, expect + 100, 1000);
    /* Inside one block. */
    g_assert_cmpint(io_sync(&t, OP_READ, 700, 13, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 13, expect + 700, 13);
    /* Aligned start, unaligned end, at the end of the node. */
    g_assert_cmpint(io_sync(&t, OP_READ, 65536 - 512, 300, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 300, expect + 65536 - 512, 300);
    /* The driver's own checks asserted alignment of every call. */
    g_assert_cmpint(qatomic_read(&t.mem->n_read), >=, 3);
    node_close(&t);
}

static void test_unaligned_write_rmw(void)
{
    TestNode t;
    g_autofree uint8_t *expect = NULL;
    g_autofree uint8_t *after = NULL;
    uint8_t buf[1200];

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    mem_pattern(t.mem);
    expect = mem_copy(t.mem);

    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(io_sync(&t, OP_WRITE, 100, 200, buf, 0), ==, 0);
    memset(expect + 100, 0xaa, 200);
    memset(buf, 0xbb, sizeof(buf));
    g_assert_cmpint(io_sync(&t, OP_WRITE, 4000, 1200, buf, 0), ==, 0);
    memset(expect + 4000, 0xbb, 1200);
    /* Unaligned write-zeroes: the head and tail blocks are merged too. */
    g_assert_cmpint(io_sync(&t, OP_ZERO, 10000, 3000, NULL, 0), ==, 0);
    memset(expect + 10000, 0, 3000);

    after = mem_copy(t.mem);
    g_assert_cmpmem(after, 65536, expect, 65536);
    node_close(&t);
}

static void test_unaligned_buffer_bounced(void)
{
    TestNode t;
    g_autofree uint8_t *raw = g_malloc(16 * KIB + 1);
    g_autofree uint8_t *back = g_malloc(16 * KIB + 3);
    uint8_t *buf = raw + 1;     /* misaligned for the node */

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512,"
                  " \"mem-align\": 4096}");
    for (int i = 0; i < 16 * KIB; i++) {
        buf[i] = i % 251;
    }
    g_assert_cmpint(io_sync(&t, OP_WRITE, 8192, 16 * KIB, buf, 0), ==, 0);
    g_assert_cmpint(io_sync(&t, OP_READ, 8192, 16 * KIB, back + 3, 0), ==, 0);
    g_assert_cmpmem(back + 3, 16 * KIB, buf, 16 * KIB);
    /* Padded and misaligned at once. */
    g_assert_cmpint(io_sync(&t, OP_READ, 8192 + 5, 1000, back + 1, 0), ==, 0);
    g_assert_cmpmem(back + 1, 1000, buf + 5, 1000);
    node_close(&t);
}

/* --- Serialisation ------------------------------------------------------------ */

static void test_overlapping_rmw_serialised(void)
{
    TestNode t;
    g_autofree uint8_t *expect = NULL;
    g_autofree uint8_t *after = NULL;
    uint8_t a[10], b[10];
    IoReq ra = { .t = &t, .op = OP_WRITE, .offset = 10, .bytes = 10,
                 .buf = a };
    IoReq rb = { .t = &t, .op = OP_WRITE, .offset = 30, .bytes = 10,
                 .buf = b };

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    mem_pattern(t.mem);
    expect = mem_copy(t.mem);
    memset(a, 'A', sizeof(a));
    memset(b, 'B', sizeof(b));

    /* A reads its block, then stops in the driver's write. */
    io_start_held(&ra, HOLD_WRITE);
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 1);

    /* B shares the block: it must not even read it while A runs. */
    io_start(&rb);
    settle();
    g_assert_false(io_done(&rb));
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 1);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 1);
    g_assert_cmpint(qatomic_read(&t.bs->serialising_in_flight), ==, 2);

    tm_release(t.mem);
    g_assert_cmpint(io_wait(&ra), ==, 0);
    g_assert_cmpint(io_wait(&rb), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 2);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 2);

    memset(expect + 10, 'A', 10);
    memset(expect + 30, 'B', 10);
    after = mem_copy(t.mem);
    g_assert_cmpmem(after, 65536, expect, 65536);
    node_close(&t);
}

static void test_aligned_write_waits_for_rmw(void)
{
    TestNode t;
    g_autofree uint8_t *after = NULL;
    uint8_t a[100], b[512];
    IoReq ra = { .t = &t, .op = OP_WRITE, .offset = 100, .bytes = 100,
                 .buf = a };
    IoReq rb = { .t = &t, .op = OP_WRITE, .offset = 0, .bytes = 512,
                 .buf = b };

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    memset(a, 'A', sizeof(a));
    memset(b, 'B', sizeof(b));

    io_start_held(&ra, HOLD_WRITE);
    io_start(&rb);
    settle();
    g_assert_false(io_done(&rb));
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 1);

    tm_release(t.mem);
    g_assert_cmpint(io_wait(&ra), ==, 0);
    g_assert_cmpint(io_wait(&rb), ==, 0);
    /* B started after A and waited for it: B's data is the last word. */
    after = mem_copy(t.mem);
    g_assert_cmpmem(after, 512, b, 512);
    node_close(&t);
}

static void test_rmw_waits_for_aligned_write(void)
{
    TestNode t;
    g_autofree uint8_t *after = NULL;
    uint8_t a[512], b[100], expect[512];
    IoReq ra = { .t = &t, .op = OP_WRITE, .offset = 0, .bytes = 512,
                 .buf = a };
    IoReq rb = { .t = &t, .op = OP_WRITE, .offset = 100, .bytes = 100,
                 .buf = b };

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    memset(a, 'A', sizeof(a));
    memset(b, 'B', sizeof(b));

    /*
     * An aligned write in flight, off the list (the lock-free path); then
     * a read-modify-write of its block, which finds it by the counter.
     */
    io_start_held(&ra, HOLD_WRITE);
    g_assert_cmpuint(qatomic_read(&t.bs->writes_untracked), ==, 1);
    io_start(&rb);
    settle();
    g_assert_false(io_done(&rb));
    g_assert_cmpint(qatomic_read(&t.bs->serialising_in_flight), ==, 1);
    /* Reading the block now would merge B into data A is replacing. */
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 0);

    tm_release(t.mem);
    g_assert_cmpint(io_wait(&ra), ==, 0);
    g_assert_cmpint(io_wait(&rb), ==, 0);
    g_assert_cmpuint(qatomic_read(&t.bs->writes_untracked), ==, 0);
    memset(expect, 'A', sizeof(expect));
    memset(expect + 100, 'B', 100);
    after = mem_copy(t.mem);
    g_assert_cmpmem(after, 512, expect, 512);
    node_close(&t);
}

static void test_read_waits_for_rmw(void)
{
    TestNode t;
    uint8_t a[100], back[512];
    IoReq ra = { .t = &t, .op = OP_WRITE, .offset = 100, .bytes = 100,
                 .buf = a };
    IoReq rr = { .t = &t, .op = OP_READ, .offset = 0, .bytes = 512,
                 .buf = back };

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    memset(a, 'A', sizeof(a));

    io_start_held(&ra, HOLD_WRITE);
    io_start(&rr);
    settle();
    g_assert_false(io_done(&rr));
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 1);   /* A's own */

    tm_release(t.mem);
    g_assert_cmpint(io_wait(&ra), ==, 0);
    g_assert_cmpint(io_wait(&rr), ==, 0);
    g_assert_cmpint(back[99], ==, 0);
    g_assert_cmpint(back[100], ==, 'A');
    g_assert_cmpint(back[199], ==, 'A');
    g_assert_cmpint(back[200], ==, 0);
    node_close(&t);
}

static void test_non_overlapping_not_serialised(void)
{
    TestNode t;
    uint8_t a[100], b[100];
    IoReq ra = { .t = &t, .op = OP_WRITE, .offset = 100, .bytes = 100,
                 .buf = a };
    IoReq rb = { .t = &t, .op = OP_WRITE, .offset = 1100, .bytes = 100,
                 .buf = b };

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    memset(a, 'A', sizeof(a));
    memset(b, 'B', sizeof(b));
    io_start_held(&ra, HOLD_WRITE);
    /* Another block: B runs to completion while A is held. */
    io_start(&rb);
    g_assert_cmpint(io_wait(&rb), ==, 0);
    tm_release(t.mem);
    g_assert_cmpint(io_wait(&ra), ==, 0);
    node_close(&t);
}

/* --- Splitting ----------------------------------------------------------------- */

static void test_max_transfer_split(void)
{
    TestNode t;
    g_autofree uint8_t *buf = g_malloc(20 * KIB);
    g_autofree uint8_t *back = g_malloc(20 * KIB);

    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512,"
                  " \"max-transfer\": 4096}");
    for (int i = 0; i < 20 * KIB; i++) {
        buf[i] = i % 253;
    }
    g_assert_cmpint(io_sync(&t, OP_WRITE, 4096, 20 * KIB, buf, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 5);
    g_assert_cmpint(io_sync(&t, OP_READ, 4096, 20 * KIB, back, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 5);
    g_assert_cmpint(qatomic_read(&t.mem->max_req), ==, 4096);
    g_assert_cmpmem(back, 20 * KIB, buf, 20 * KIB);
    node_close(&t);
}

/* --- Write-zeroes ----------------------------------------------------------- */

static void check_zero_fallback(const char *json)
{
    TestNode t;
    g_autofree uint8_t *after = NULL;
    int64_t start = 512, len = 3 * MIB;

    node_open(&t, json);
    mem_fill(t.mem, 0, 0xff, 4 * MIB);
    g_assert_cmpint(io_sync(&t, OP_ZERO, start, len, NULL, 0), ==, 0);
    after = mem_copy(t.mem);
    for (int64_t i = 0; i < 4 * MIB; i++) {
        bool in = i >= start && i < start + len;

        if (after[i] != (in ? 0 : 0xff)) {
            g_error("byte %" PRId64 " is %#x", i, after[i]);
        }
    }
    /* Explicit zeroes, in bounded chunks. */
    g_assert_cmpint(qatomic_read(&t.mem->n_write), >=, 3);
    g_assert_cmpint(qatomic_read(&t.mem->max_req), <=, 1 * MIB);
    node_close(&t);
}

static void test_zeroes_fallback(void)
{
    /* The driver refuses with -ENOTSUP ... */
    check_zero_fallback("{\"driver\": \"test-mem\", \"size\": 4194304,"
                        " \"align\": 512, \"pwrite-zeroes\": false}");
    /* ... or has no write-zeroes at all. */
    check_zero_fallback("{\"driver\": \"test-mem-plain\", \"size\": 4194304,"
                        " \"align\": 512}");
}

static void test_zeroes_no_fallback_enotsup(void)
{
    const char *nodes[] = {
        /* The driver tries and refuses ... */
        "{\"driver\": \"test-mem\", \"align\": 512, \"pwrite-zeroes\": false}",
        /* ... has no write-zeroes ... */
        "{\"driver\": \"test-mem-plain\", \"align\": 512}",
        /* ... or cannot promise not to fall back itself. */
        "{\"driver\": \"test-mem-fua\", \"align\": 512}",
    };
    TestNode t;

    for (int i = 0; i < (int)G_N_ELEMENTS(nodes); i++) {
        node_open(&t, nodes[i]);
        mem_fill(t.mem, 0, 0xff, 65536);
        g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 8192, NULL,
                                BDRV_REQ_NO_FALLBACK), ==, -ENOTSUP);
        /* Unaligned too: it fails before the read-modify-write. */
        g_assert_cmpint(io_sync(&t, OP_ZERO, 100, 8192, NULL,
                                BDRV_REQ_NO_FALLBACK), ==, -ENOTSUP);
        g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 0);
        g_assert_cmpint(qatomic_read(&t.mem->n_read), ==, 0);
        g_assert_cmpint(t.mem->store.data[100], ==, 0xff);
        node_close(&t);
    }

    /* A driver that zeroes fast gets the flag and succeeds. */
    node_open(&t, "{\"driver\": \"test-mem\", \"align\": 512}");
    mem_fill(t.mem, 0, 0xff, 65536);
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 8192, NULL,
                            BDRV_REQ_NO_FALLBACK), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->last_zero_flags), ==,
                    BDRV_REQ_NO_FALLBACK);
    g_assert_cmpint(t.mem->store.data[8191], ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 0);
    node_close(&t);
}

static void test_zeroes_may_unmap_needs_discard_unmap(void)
{
    TestNode t;

    node_open(&t, "{\"driver\": \"test-mem\"}");
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 4096, NULL, BDRV_REQ_MAY_UNMAP),
                    ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->last_zero_flags), ==, 0);
    node_close(&t);

    node_open(&t, "{\"driver\": \"test-mem\", \"discard\": \"unmap\"}");
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 4096, NULL, BDRV_REQ_MAY_UNMAP),
                    ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->last_zero_flags), ==,
                    BDRV_REQ_MAY_UNMAP);
    node_close(&t);
}

static void test_detect_zeroes(void)
{
    TestNode t;
    uint8_t zeroes[4096] = { 0 };
    uint8_t data[4096];

    memset(data, 0x5a, sizeof(data));

    node_open(&t, "{\"driver\": \"test-mem\", \"detect-zeroes\": \"off\"}");
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 4096, zeroes, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 1);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 0);
    node_close(&t);

    node_open(&t, "{\"driver\": \"test-mem\", \"detect-zeroes\": \"on\","
                  " \"discard\": \"unmap\"}");
    mem_fill(t.mem, 0, 0xff, 65536);
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 4096, zeroes, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 1);
    g_assert_cmpint(qatomic_read(&t.mem->last_zero_flags), ==, 0);
    g_assert_cmpint(t.mem->store.data[4095], ==, 0);
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 4096, data, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 1);
    node_close(&t);

    node_open(&t, "{\"driver\": \"test-mem\", \"detect-zeroes\": \"unmap\","
                  " \"discard\": \"unmap\"}");
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 4096, zeroes, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 1);
    g_assert_cmpint(qatomic_read(&t.mem->last_zero_flags), ==,
                    BDRV_REQ_MAY_UNMAP);
    node_close(&t);
}

/* --- FUA and flush ------------------------------------------------------------- */

static void test_fua_emulated_by_flush(void)
{
    TestNode t;
    uint8_t buf[4096];

    memset(buf, 1, sizeof(buf));
    node_open(&t, "{\"driver\": \"test-mem\"}");
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 4096, buf, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->last_write_flags), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    /* Write-zeroes without native FUA: emulated the same way. */
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 4096, NULL, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 2);
    node_close(&t);

    /* A driver that does FUA itself gets the flag and no flush. */
    node_open(&t, "{\"driver\": \"test-mem-fua\"}");
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 4096, buf, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->last_write_flags), ==,
                    BDRV_REQ_FUA);
    g_assert_cmpint(io_sync(&t, OP_ZERO, 0, 4096, NULL, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->last_zero_flags), ==, BDRV_REQ_FUA);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 0);
    node_close(&t);
}

static void test_flush_skipped_when_clean(void)
{
    TestNode t;
    uint8_t buf[512] = { 1 };

    node_open(&t, "{\"driver\": \"test-mem\"}");
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 0);
    g_assert_cmpint(io_sync(&t, OP_WRITE, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    /* Reads do not dirty the node. */
    g_assert_cmpint(io_sync(&t, OP_READ, 0, 512, buf, 0), ==, 0);
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    node_close(&t);
}

static void test_flush_error_not_success(void)
{
    TestNode t;

    node_open_written(&t, "{\"driver\": \"test-mem\"}");
    qatomic_set(&t.mem->fail_flush, 1);
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, -EIO);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    /* The failure covered nothing: the next flush must do the work. */
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 2);
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 2);
    node_close(&t);
}

static void test_flush_covers_only_earlier_writes(void)
{
    TestNode t;
    uint8_t buf[512] = { 1 };
    IoReq f1 = { .t = &t, .op = OP_FLUSH };

    node_open_written(&t, "{\"driver\": \"test-mem\"}");

    /* F1 starts, then a write completes while F1 is in the driver. */
    io_start_held(&f1, HOLD_FLUSH);
    g_assert_cmpint(io_sync(&t, OP_WRITE, 512, 512, buf, 0), ==, 0);
    tm_release(t.mem);
    g_assert_cmpint(io_wait(&f1), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);

    /* F1 may not have covered that write: this flush must not skip. */
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 2);
    node_close(&t);
}

/*
 * A written test-mem node in @t, flush @f1 held in the driver and flush
 * @f2 started behind it, run as far as it goes.
 */
static void start_flush_behind_flush(TestNode *t, IoReq *f1, IoReq *f2)
{
    node_open_written(t, "{\"driver\": \"test-mem\"}");
    io_start_held(f1, HOLD_FLUSH);
    io_start(f2);
    settle();
}

/*
 * A flush must not answer while an earlier flush of the same writes is
 * still in the driver.  On Linux only one of two concurrent fdatasync()
 * calls on a file learns that a writeback failed; the other reports
 * success for writes that may be lost.  So the second flush waits, and
 * asks the driver again once the first has failed (the file driver then
 * fails it, as it fails every flush after a failed one: modelled here by
 * failing two).
 */
static void test_flush_waits_for_flush_in_driver(void)
{
    TestNode t;
    IoReq f1 = { .t = &t, .op = OP_FLUSH };
    IoReq f2 = { .t = &t, .op = OP_FLUSH };

    start_flush_behind_flush(&t, &f1, &f2);
    g_assert_false(io_done(&f2));
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);

    qatomic_set(&t.mem->fail_flush, 2);
    tm_release(t.mem);
    g_assert_cmpint(io_wait(&f1), ==, -EIO);
    g_assert_cmpint(io_wait(&f2), ==, -EIO);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 2);
    node_close(&t);
}

/*
 * A flush that waited behind a successful flush which covered all of its
 * writes has nothing left to do.
 */
static void test_flush_behind_covering_flush_skipped(void)
{
    TestNode t;
    IoReq f1 = { .t = &t, .op = OP_FLUSH };
    IoReq f2 = { .t = &t, .op = OP_FLUSH };

    start_flush_behind_flush(&t, &f1, &f2);
    tm_release(t.mem);
    g_assert_cmpint(io_wait(&f1), ==, 0);
    g_assert_cmpint(io_wait(&f2), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    node_close(&t);
}

static void test_flush_recurses_into_children(void)
{
    TestNode t;

    /* The format layer has no flush of its own: its file's is called. */
    node_open_written(&t, "{\"driver\": \"test-fmt\", \"node-name\": \"fmt\","
                      " \"file\": {\"driver\": \"test-mem\"}}");
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    g_assert_cmpint(io_sync(&t, OP_FLUSH, 0, 0, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_flush), ==, 1);
    node_close(&t);
}

/* --- Discard -------------------------------------------------------------------- */

static void test_discard_ignored_without_unmap(void)
{
    TestNode t;

    node_open(&t, "{\"driver\": \"test-mem\"}");
    g_assert_cmpint(io_sync(&t, OP_DISCARD, 0, 8192, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_discard), ==, 0);
    node_close(&t);

    node_open(&t, "{\"driver\": \"test-mem\", \"discard\": \"unmap\"}");
    g_assert_cmpint(io_sync(&t, OP_DISCARD, 0, 8192, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_discard), ==, 1);
    node_close(&t);
}

static void test_discard_skips_unaligned_head_tail(void)
{
    TestNode t;

    node_open(&t, "{\"driver\": \"test-mem\", \"discard\": \"unmap\","
                  " \"align\": 512, \"pdiscard-alignment\": 4096}");
    g_assert_cmpint(io_sync(&t, OP_DISCARD, 1000, 9000, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_discard), ==, 1);
    g_assert_cmpint(qatomic_read(&t.mem->last_discard_offset), ==, 4096);
    g_assert_cmpint(qatomic_read(&t.mem->last_discard_bytes), ==, 4096);
    /* Nothing aligned inside: nothing to do. */
    g_assert_cmpint(io_sync(&t, OP_DISCARD, 100, 4000, NULL, 0), ==, 0);
    g_assert_cmpint(qatomic_read(&t.mem->n_discard), ==, 1);
    node_close(&t);
}

/* --- Block status ----------------------------------------------------------- */

typedef struct StatusReq {
    BlockDriverState *bs;
    int64_t offset, bytes;
    int64_t pnum, map;
    BlockDriverState *file;
    int ret;
} StatusReq;

static void coroutine_fn status_entry(void *opaque)
{
    StatusReq *r = opaque;

    bdrv_graph_co_rdlock();
    r->ret = bdrv_co_block_status(r->bs, true, r->offset, r->bytes, &r->pnum,
                                  &r->map, &r->file);
    bdrv_graph_co_rdunlock();
}

static int block_status(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        StatusReq *r)
{
    GLOBAL_STATE_CODE();
    *r = (StatusReq) { .bs = bs, .offset = offset, .bytes = bytes,
                       .pnum = -1, .map = -1 };
    bdrv_run_co(main_context(), status_entry, r);
    return r->ret;
}

static void test_block_status_recurse(void)
{
    TestNode t;
    BlockDriverState *file;
    StatusReq r;
    int ret;

    GLOBAL_STATE_CODE();
    node_open(&t, "{\"driver\": \"test-fmt\", \"node-name\": \"fmt\","
                  " \"file\": {\"driver\": \"test-mem\"}}");
    bdrv_graph_rdlock_main_loop();
    file = t.bs->file->bs;
    bdrv_graph_rdunlock_main_loop();
    /* [0, 4k) data, [4k, 12k) zero, [12k, 64k) data. */
    mem_fill(t.mem, 0, 1, 65536);
    mem_fill(t.mem, 4096, 0, 8192);

    ret = block_status(t.bs, 0, 65536, &r);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED |
                             BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(r.pnum, ==, 4096);      /* clipped to the file's run */
    g_assert_cmpint(r.map, ==, 0);
    g_assert_true(r.file == file);

    ret = block_status(t.bs, 4096, 65536 - 4096, &r);
    g_assert_cmpint(ret, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED |
                             BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(r.pnum, ==, 8192);
    g_assert_cmpint(r.map, ==, 4096);

    ret = block_status(t.bs, 12288, 65536, &r);     /* clamped to EOF */
    g_assert_cmpint(ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==,
                    BDRV_BLOCK_DATA);
    g_assert_cmpint(r.pnum, ==, 65536 - 12288);
    g_assert_cmpint(qatomic_read(&t.mem->n_status), ==, 3);
    node_close(&t);
}

static void test_block_status_default_and_eof(void)
{
    TestNode t;
    StatusReq r;

    node_open(&t, "{\"driver\": \"test-mem-plain\"}");
    /* No callback: data, allocated, for the whole range up to EOF. */
    g_assert_cmpint(block_status(t.bs, 1000, 1 << 30, &r), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED |
                    BDRV_BLOCK_OFFSET_VALID);
    g_assert_cmpint(r.pnum, ==, 65536 - 1000);
    g_assert_cmpint(r.map, ==, 1000);
    g_assert_true(r.file == t.bs);
    /* Empty, at EOF, past EOF: nothing, pnum 0. */
    g_assert_cmpint(block_status(t.bs, 0, 0, &r), ==, 0);
    g_assert_cmpint(r.pnum, ==, 0);
    g_assert_cmpint(block_status(t.bs, 65536, 512, &r), ==, 0);
    g_assert_cmpint(r.pnum, ==, 0);
    g_assert_cmpint(block_status(t.bs, 1 << 20, 512, &r), ==, 0);
    g_assert_cmpint(r.pnum, ==, 0);
    g_assert_cmpint(block_status(t.bs, -1, 512, &r), ==, -EIO);
    node_close(&t);
}

/* --- Truncate -------------------------------------------------------------- */

static void test_truncate_updates_size(void)
{
    TestNode t;
    uint8_t buf[512];
    unsigned gen;

    node_open(&t, "{\"driver\": \"test-mem\"}");
    gen = qatomic_read(&t.bs->write_gen);
    g_assert_cmpint(io_sync(&t, OP_READ, 65536, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(io_sync(&t, OP_TRUNCATE, 131072, 0, NULL, 0), ==, 0);
    g_assert_cmpint(bdrv_get_total_bytes(t.bs), ==, 131072);
    g_assert_cmpuint(qatomic_read(&t.bs->write_gen), !=, gen);
    g_assert_cmpint(t.resized, ==, 1);
    g_assert_cmpint(io_sync(&t, OP_READ, 65536, 512, buf, 0), ==, 0);
    g_assert_cmpint(io_sync(&t, OP_TRUNCATE, -1, 0, NULL, 0), ==, -EINVAL);
    g_assert_cmpint(t.resized, ==, 1);
    node_close(&t);
}

/*
 * Requests that waited behind a truncate shrinking the node were checked
 * against the old size: they must fail once it is done, not reach the
 * driver past the new end.  W0 holds the truncate back; a write and a
 * write-zeroes beyond the new end queue up behind the truncate.
 */
static void test_write_behind_shrinking_truncate_eio(void)
{
    TestNode t;
    uint8_t a[4096], b[4096];
    IoReq w0 = { .t = &t, .op = OP_WRITE, .offset = 48 * KIB,
                 .bytes = 4096, .buf = a };
    IoReq tr = { .t = &t, .op = OP_TRUNCATE, .offset = 32 * KIB };
    IoReq w1 = { .t = &t, .op = OP_WRITE, .offset = 40 * KIB,
                 .bytes = 4096, .buf = b };
    IoReq z1 = { .t = &t, .op = OP_ZERO, .offset = 28 * KIB,
                 .bytes = 8 * KIB };

    memset(a, 'A', sizeof(a));
    memset(b, 'B', sizeof(b));
    node_open(&t, "{\"driver\": \"test-mem\"}");
    io_start_held(&w0, HOLD_WRITE);
    io_start(&tr);
    io_start(&w1);
    io_start(&z1);
    settle();
    g_assert_false(io_done(&tr));
    g_assert_false(io_done(&w1));
    g_assert_false(io_done(&z1));

    tm_release(t.mem);
    g_assert_cmpint(io_wait(&w0), ==, 0);
    g_assert_cmpint(io_wait(&tr), ==, 0);
    g_assert_cmpint(io_wait(&w1), ==, -EIO);
    g_assert_cmpint(io_wait(&z1), ==, -EIO);
    g_assert_cmpint(bdrv_get_total_bytes(t.bs), ==, 32 * KIB);
    g_assert_cmpint(qatomic_read(&t.mem->n_write), ==, 1);
    g_assert_cmpint(qatomic_read(&t.mem->n_zero), ==, 0);
    node_close(&t);
}

/* The same for a discard: it fails rather than reach past the end. */
static void test_discard_behind_shrinking_truncate_eio(void)
{
    TestNode t;
    uint8_t a[4096];
    IoReq w0 = { .t = &t, .op = OP_WRITE, .offset = 48 * KIB,
                 .bytes = 4096, .buf = a };
    IoReq tr = { .t = &t, .op = OP_TRUNCATE, .offset = 32 * KIB };
    IoReq d1 = { .t = &t, .op = OP_DISCARD, .offset = 36 * KIB,
                 .bytes = 8 * KIB };

    memset(a, 'A', sizeof(a));
    node_open(&t, "{\"driver\": \"test-mem\", \"discard\": \"unmap\"}");
    io_start_held(&w0, HOLD_WRITE);
    io_start(&tr);
    io_start(&d1);
    settle();
    g_assert_false(io_done(&d1));

    tm_release(t.mem);
    g_assert_cmpint(io_wait(&w0), ==, 0);
    g_assert_cmpint(io_wait(&tr), ==, 0);
    g_assert_cmpint(io_wait(&d1), ==, -EIO);
    g_assert_cmpint(qatomic_read(&t.mem->n_discard), ==, 0);
    node_close(&t);
}

/* --- In-flight accounting ----------------------------------------------------- */

static void test_in_flight_counted(void)
{
    TestNode t;
    uint8_t buf[512];
    IoReq r = { .t = &t, .op = OP_READ, .offset = 0, .bytes = 512,
                .buf = buf };

    node_open(&t, "{\"driver\": \"test-mem\"}");
    g_assert_cmpuint(qatomic_read(&t.bs->in_flight), ==, 0);
    io_start_held(&r, HOLD_READ);
    g_assert_cmpuint(qatomic_read(&t.bs->in_flight), ==, 1);
    tm_release(t.mem);
    g_assert_cmpint(io_wait(&r), ==, 0);
    g_assert_cmpuint(qatomic_read(&t.bs->in_flight), ==, 0);
    /* Failed requests are counted and uncounted too. */
    g_assert_cmpint(io_sync(&t, OP_READ, -1, 512, buf, 0), ==, -EIO);
    g_assert_cmpuint(qatomic_read(&t.bs->in_flight), ==, 0);
    node_close(&t);
}

/* --- Synchronous calls from the main loop --------------------------------- */

/* Keeps the main loop busy: AIO_WAIT_WHILE() re-reads its condition often. */
typedef struct Spinner {
    AioBH *bh;
    int on;                 /* atomic */
} Spinner;

static void spinner_cb(void *opaque)
{
    Spinner *sp = opaque;

    if (qatomic_read(&sp->on)) {
        aio_bh_schedule(sp->bh);
    }
}

typedef struct PublishRes {
    int64_t a, b;           /* written by the coroutine, read by the test */
} PublishRes;

static void coroutine_fn publish_entry(void *opaque)
{
    PublishRes *r = opaque;

    r->a = 42;
    r->b = 43;
}

/*
 * bdrv_run_co() returns what its coroutine wrote in another thread
 * (bdrv_flush_all()'s results, block_resize's error): the coroutine's
 * writes must happen before the caller's reads, even when the main loop
 * sees the coroutine finish before any wake-up reaches it.  Checked by
 * ThreadSanitizer (the stress suite runs under it); the main loop spins
 * to make that case the usual one.
 */
static void test_run_co_publishes_results(void)
{
    GLOBAL_STATE_CODE();
    IOThread *io = iothread_create("pub", 0, &error_abort);
    Spinner sp = { .on = 1 };

    sp.bh = aio_bh_new(main_context(), spinner_cb, &sp);
    aio_bh_schedule(sp.bh);
    for (int i = 0; i < 2000 * stress_iterations(); i++) {
        PublishRes r = { 0 };

        bdrv_run_co(iothread_get_aio_context(io), publish_entry, &r);
        g_assert_cmpint(r.a, ==, 42);
        g_assert_cmpint(r.b, ==, 43);
    }
    qatomic_set(&sp.on, 0);
    settle();
    aio_bh_delete(sp.bh);
    iothread_destroy(io);
}

/* --- Stress: read-modify-write from three threads ---------------------------- */

/*
 * Three writers (the main loop and two iothreads) own interleaved 37-byte
 * granules of a 512-aligned node, so every block is shared by all three
 * and every write is a read-modify-write.  The driver yields in every call
 * to widen the window between the read and the write.  Each writer keeps
 * a shadow of its own granules; at the end every byte must match its
 * owner's shadow: a lost update shows up as a stale granule.
 */
#define STRESS_SIZE     (16 * KIB)
#define STRESS_GRANULE  37
#define STRESS_WRITERS  3

static int stress_owner(int64_t byte)
{
    return (byte / STRESS_GRANULE) % STRESS_WRITERS;
}

typedef struct StressWriter {
    TestNode *t;
    int id;
    int iterations;
    uint32_t seed;
    uint8_t shadow[STRESS_SIZE];    /* this writer's coroutine only */
    int failures;                   /* read-back mismatches; ditto */
    int done;                       /* atomic: store-release at the end */
} StressWriter;

static uint32_t next_rand(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

static void coroutine_fn stress_writer_entry(void *opaque)
{
    StressWriter *w = opaque;
    BdrvChild *root = w->t->root;
    int n_granules = STRESS_SIZE / STRESS_GRANULE;
    uint8_t buf[STRESS_GRANULE];

    bdrv_graph_co_rdlock();
    for (int i = 0; i < w->iterations; i++) {
        int g = next_rand(&w->seed) % (n_granules / STRESS_WRITERS);
        int64_t start = (int64_t)(g * STRESS_WRITERS + w->id) *
                        STRESS_GRANULE;
        int64_t off = start + next_rand(&w->seed) % STRESS_GRANULE;
        int64_t len = 1 + next_rand(&w->seed) % (start + STRESS_GRANULE - off);
        IOVec v;
        int ret;

        g_assert_cmpint(stress_owner(off), ==, w->id);
        g_assert_cmpint(stress_owner(off + len - 1), ==, w->id);
        for (int64_t j = 0; j < len; j++) {
            buf[j] = next_rand(&w->seed);
        }
        iovec_init_buf(&v, buf, len);
        ret = bdrv_co_pwritev(root, off, len, &v, 0);
        g_assert_cmpint(ret, ==, 0);
        memcpy(w->shadow + off, buf, len);

        if (i % 4 == 0) {
            iovec_init_buf(&v, buf, STRESS_GRANULE);
            ret = bdrv_co_preadv(root, start, STRESS_GRANULE, &v, 0);
            g_assert_cmpint(ret, ==, 0);
            if (memcmp(buf, w->shadow + start, STRESS_GRANULE)) {
                w->failures++;
            }
        }
    }
    bdrv_graph_co_rdunlock();
    /* Pairs with the load-acquire in the test's AIO_WAIT_WHILE(). */
    qatomic_store_release(&w->done, 1);
    aio_wait_kick();
}

static void test_rmw_stress(void)
{
    TestNode t;
    IOThread *io[2];
    StressWriter *w = g_new0(StressWriter, STRESS_WRITERS);
    g_autofree uint8_t *after = NULL;
    AioContext *ctx[STRESS_WRITERS];

    GLOBAL_STATE_CODE();
    node_open(&t, "{\"driver\": \"test-mem\", \"size\": 16384,"
                  " \"align\": 512, \"yield\": true}");
    io[0] = iothread_create("rmw0", 0, &error_abort);
    io[1] = iothread_create("rmw1", 0, &error_abort);
    ctx[0] = main_context();
    ctx[1] = iothread_get_aio_context(io[0]);
    ctx[2] = iothread_get_aio_context(io[1]);

    for (int i = 0; i < STRESS_WRITERS; i++) {
        w[i] = (StressWriter) {
            .t = &t, .id = i, .iterations = 300 * stress_iterations(),
            .seed = 0x1234u + i * 7919u,
        };
    }
    for (int i = 0; i < STRESS_WRITERS; i++) {
        aio_co_enter(ctx[i], co_create(stress_writer_entry, &w[i]));
    }
    for (int i = 0; i < STRESS_WRITERS; i++) {
        AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&w[i].done));
    }
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);

    after = mem_copy(t.mem);
    for (int64_t i = 0; i < STRESS_SIZE; i++) {
        uint8_t expect = w[stress_owner(i)].shadow[i];

        if (after[i] != expect) {
            g_error("byte %" PRId64 " (writer %d) is %#x, expected %#x", i,
                    stress_owner(i), after[i], expect);
        }
    }
    for (int i = 0; i < STRESS_WRITERS; i++) {
        g_assert_cmpint(w[i].failures, ==, 0);
    }
    g_assert_cmpint(qatomic_read(&t.mem->n_read), >=,
                    STRESS_WRITERS * 300 * stress_iterations());
    node_close(&t);
    g_free(w);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    bdrv_register(&test_mem_driver);
    bdrv_register(&test_mem_broken_driver);
    bdrv_register(&test_mem_fua_driver);
    bdrv_register(&test_mem_plain_driver);
    bdrv_register(&test_fmt_driver);

    g_test_add_func("/block-io/out-of-range-eio", test_out_of_range_eio);
    g_test_add_func("/block-io/driver-result-checked",
                    test_driver_result_checked);
    g_test_add_func("/block-io/unknown-flags-einval",
                    test_unknown_flags_einval);
    g_test_add_func("/block-io/read-only-eperm", test_read_only_eperm);
    g_test_add_func("/block-io/unaligned-read-padded",
                    test_unaligned_read_padded);
    g_test_add_func("/block-io/unaligned-write-rmw",
                    test_unaligned_write_rmw);
    g_test_add_func("/block-io/unaligned-buffer-bounced",
                    test_unaligned_buffer_bounced);
    g_test_add_func("/block-io/overlapping-rmw-serialised",
                    test_overlapping_rmw_serialised);
    g_test_add_func("/block-io/aligned-write-waits-for-rmw",
                    test_aligned_write_waits_for_rmw);
    g_test_add_func("/block-io/rmw-waits-for-aligned-write",
                    test_rmw_waits_for_aligned_write);
    g_test_add_func("/block-io/read-waits-for-rmw", test_read_waits_for_rmw);
    g_test_add_func("/block-io/non-overlapping-not-serialised",
                    test_non_overlapping_not_serialised);
    g_test_add_func("/block-io/max-transfer-split", test_max_transfer_split);
    g_test_add_func("/block-io/zeroes-fallback", test_zeroes_fallback);
    g_test_add_func("/block-io/zeroes-no-fallback-enotsup",
                    test_zeroes_no_fallback_enotsup);
    g_test_add_func("/block-io/zeroes-may-unmap-needs-discard-unmap",
                    test_zeroes_may_unmap_needs_discard_unmap);
    g_test_add_func("/block-io/detect-zeroes", test_detect_zeroes);
    g_test_add_func("/block-io/fua-emulated-by-flush",
                    test_fua_emulated_by_flush);
    g_test_add_func("/block-io/flush-skipped-when-clean",
                    test_flush_skipped_when_clean);
    g_test_add_func("/block-io/flush-error-not-success",
                    test_flush_error_not_success);
    g_test_add_func("/block-io/flush-covers-only-earlier-writes",
                    test_flush_covers_only_earlier_writes);
    g_test_add_func("/block-io/flush-waits-for-flush-in-driver",
                    test_flush_waits_for_flush_in_driver);
    g_test_add_func("/block-io/flush-behind-covering-flush-skipped",
                    test_flush_behind_covering_flush_skipped);
    g_test_add_func("/block-io/flush-recurses-into-children",
                    test_flush_recurses_into_children);
    g_test_add_func("/block-io/discard-ignored-without-unmap",
                    test_discard_ignored_without_unmap);
    g_test_add_func("/block-io/discard-skips-unaligned-head-tail",
                    test_discard_skips_unaligned_head_tail);
    g_test_add_func("/block-io/block-status-recurse",
                    test_block_status_recurse);
    g_test_add_func("/block-io/block-status-default-and-eof",
                    test_block_status_default_and_eof);
    g_test_add_func("/block-io/truncate-updates-size",
                    test_truncate_updates_size);
    g_test_add_func("/block-io/write-behind-shrinking-truncate-eio",
                    test_write_behind_shrinking_truncate_eio);
    g_test_add_func("/block-io/discard-behind-shrinking-truncate-eio",
                    test_discard_behind_shrinking_truncate_eio);
    g_test_add_func("/block-io/in-flight-counted", test_in_flight_counted);
    g_test_add_func("/block-io/run-co-publishes-results",
                    test_run_co_publishes_results);
    g_test_add_func("/block-io/rmw-stress-2-iothreads", test_rmw_stress);
    return g_test_run();
}
