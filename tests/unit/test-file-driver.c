/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The file, raw and null-co drivers, driven through the real block layer
 * (bdrv_open() from JSON, a BlockBackend on top) on sparse files in a
 * private temporary directory, and checked against the files themselves
 * with plain pread()/lseek()/fstat().
 *
 * The I/O tests run once per aio mode (threads, native, io_uring).
 * aio=native needs O_DIRECT: if the temporary directory's file system
 * refuses it, /var/tmp is tried, and the tests that need O_DIRECT skip
 * with a message when neither accepts it.
 *
 * Block devices are tested on a loop device (root only; skipped when
 * /dev/loop-control cannot be used), set up with LO_FLAGS_AUTOCLEAR so
 * that it goes away when its last user closes it.
 *
 * Errors are produced deterministically:
 *  - EFBIG: RLIMIT_FSIZE lowered below a write's offset, SIGXFSZ ignored;
 *  - EIO: the node's descriptor is replaced (dup2) by one of
 *    /proc/self/mem, where reading or writing page 0, which is never
 *    mapped, fails with EIO.
 */
#include "util/osdep.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"

#define KiB (1024LL)
#define MiB (1024LL * 1024)

static char *tmp_dir;           /* private directory for the test files */
static char *direct_dir;        /* one whose file system takes O_DIRECT */
static unsigned node_counter;

/* --- Helpers ---------------------------------------------------------------- */

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
    }
}

/* A sparse file of @size bytes in @dir; g_free the path. */
static char *make_file(const char *dir, const char *name, int64_t size)
{
    char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
    return path;
}

/* Write @len bytes of pattern @seed at @offset of @path, directly. */
static void file_write_pattern(const char *path, int64_t offset, size_t len,
                               unsigned seed)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int fd = open(path, O_WRONLY);

    g_assert_cmpint(fd, >=, 0);
    fill_pattern(buf, len, seed);
    g_assert_cmpint(pwrite(fd, buf, len, offset), ==, (ssize_t)len);
    g_assert_cmpint(fsync(fd), ==, 0);
    close(fd);
}

/* Assert that @path holds @expect at @offset. */
static void file_assert_contents(const char *path, int64_t offset,
                                 const void *expect, size_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, offset), ==, (ssize_t)len);
    close(fd);
    g_assert_cmpmem(buf, len, expect, len);
}

static void file_assert_zero(const char *path, int64_t offset, size_t len)
{
    g_autofree uint8_t *zero = g_malloc0(len);

    file_assert_contents(path, offset, zero, len);
}

static int64_t file_blocks(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return st.st_blocks;
}

/* A file node on @path; @extra is appended to the options ("" or ", ..."). */
static BlockDriverState *open_file(const char *path, const char *aio,
                                   bool direct, const char *extra,
                                   Error **errp)
{
    GLOBAL_STATE_CODE();
    return open_node(errp, "{\"driver\": \"file\", \"node-name\": \"f%u\", "
                     "\"filename\": \"%s\", \"aio\": \"%s\", "
                     "\"cache\": {\"direct\": %s}%s}", node_counter++, path,
                     aio, direct ? "true" : "false", extra);
}

/* A node and the BlockBackend the test does its I/O through. */
typedef struct TestNode {
    BlockDriverState *bs;
    BlockBackend *blk;
} TestNode;

#define PERM_RW (BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE | BLK_PERM_RESIZE)

static bool attach(TestNode *t, BlockDriverState *bs, uint64_t perm,
                   uint64_t shared, Error **errp)
{
    GLOBAL_STATE_CODE();
    t->bs = bs;
    t->blk = blk_new("test", bdrv_get_aio_context(bs), perm, shared);
    if (blk_insert_bs(t->blk, bs, errp) < 0) {
        blk_unref(t->blk);
        t->blk = NULL;
        return false;
    }
    return true;
}

static void attach_rw(TestNode *t, BlockDriverState *bs)
{
    g_assert_nonnull(bs);
    g_assert_true(attach(t, bs, PERM_RW, BLK_PERM_ALL, &error_abort));
}

static void test_node_close(TestNode *t)
{
    GLOBAL_STATE_CODE();
    if (t->blk) {
        blk_unref(t->blk);
    }
    bdrv_unref(t->bs);
    t->blk = NULL;
    t->bs = NULL;
}

/* Requests that have no synchronous wrapper, run in the backend's context. */
typedef enum CoOp {
    CO_READV, CO_WRITEV, CO_ZEROES, CO_DISCARD, CO_STATUS, CO_TRUNCATE,
} CoOp;

typedef struct CoReq {
    BlockBackend *blk;
    CoOp op;
    int64_t offset, bytes;
    BdrvRequestFlags flags;
    IOVec *qiov;
    int64_t pnum;
    int status;
    Error **errp;
    int ret;
} CoReq;

static void coroutine_fn co_req_entry(void *opaque)
{
    CoReq *r = opaque;

    switch (r->op) {
    case CO_READV:
        r->ret = blk_co_preadv(r->blk, r->offset, r->bytes, r->qiov, r->flags);
        break;
    case CO_WRITEV:
        r->ret = blk_co_pwritev(r->blk, r->offset, r->bytes, r->qiov,
                                r->flags);
        break;
    case CO_ZEROES:
        r->ret = blk_co_pwrite_zeroes(r->blk, r->offset, r->bytes, r->flags);
        break;
    case CO_DISCARD:
        r->ret = blk_co_pdiscard(r->blk, r->offset, r->bytes);
        break;
    case CO_STATUS:
        r->ret = blk_co_block_status(r->blk, r->offset, r->bytes, &r->pnum,
                                     &r->status);
        break;
    case CO_TRUNCATE:
        r->ret = blk_co_truncate(r->blk, r->offset, r->errp);
        break;
    }
}

static int co_req(BlockBackend *blk, CoReq *r)
{
    GLOBAL_STATE_CODE();
    r->blk = blk;
    bdrv_run_co(blk_get_aio_context(blk), co_req_entry, r);
    return r->ret;
}

static int do_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                     BdrvRequestFlags flags)
{
    CoReq r = { .op = CO_ZEROES, .offset = offset, .bytes = bytes,
                .flags = flags };

    return co_req(blk, &r);
}

static int do_discard(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    CoReq r = { .op = CO_DISCARD, .offset = offset, .bytes = bytes };

    return co_req(blk, &r);
}

/* Status flags of @offset; *@pnum gets the length they hold for. */
static int do_status(BlockBackend *blk, int64_t offset, int64_t bytes,
                     int64_t *pnum)
{
    CoReq r = { .op = CO_STATUS, .offset = offset, .bytes = bytes };

    g_assert_cmpint(co_req(blk, &r), ==, 0);
    *pnum = r.pnum;
    return r.status;
}

static bool mode_is_native(const char *aio)
{
    return !strcmp(aio, "native");
}

/* Directory for a test in @aio mode (native needs O_DIRECT), or NULL. */
static const char *dir_for(const char *aio, bool direct)
{
    if (direct || mode_is_native(aio)) {
        if (!direct_dir) {
            g_test_skip("no file system here accepts O_DIRECT");
        }
        return direct_dir;
    }
    return tmp_dir;
}

/* --- file: reads and writes in each aio mode -------------------------------- */

static void test_rw_patterns(const void *opaque)
{
    const char *aio = opaque;
    bool direct = mode_is_native(aio);
    const char *dir = dir_for(aio, false);
    static const int64_t offsets[] = { 0, 16 * KiB, 64 * KiB + 512,
                                       1 * MiB - 8 * KiB };
    enum { LEN = 8 * KiB };
    g_autofree char *path = NULL;
    TestNode t;

    GLOBAL_STATE_CODE();
    if (!dir) {
        return;
    }
    path = make_file(dir, "rw.img", 1 * MiB);
    attach_rw(&t, open_file(path, aio, direct, "", &error_abort));
    g_assert_cmpint(blk_getlength(t.blk), ==, 1 * MiB);

    for (size_t i = 0; i < G_N_ELEMENTS(offsets); i++) {
        /* g_malloc'd: not aligned for O_DIRECT, so native bounces. */
        g_autofree uint8_t *buf = g_malloc(LEN);
        g_autofree uint8_t *back = g_malloc0(LEN);
        BdrvRequestFlags flags = (i & 1) ? BDRV_REQ_FUA : 0;

        fill_pattern(buf, LEN, i + 1);
        g_assert_cmpint(blk_pwrite(t.blk, offsets[i], LEN, buf, flags), ==, 0);
        g_assert_cmpint(blk_pread(t.blk, offsets[i], LEN, back, 0), ==, 0);
        g_assert_cmpmem(back, LEN, buf, LEN);
    }
    g_assert_cmpint(blk_flush(t.blk), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(offsets); i++) {
        g_autofree uint8_t *buf = g_malloc(LEN);

        fill_pattern(buf, LEN, i + 1);
        file_assert_contents(path, offsets[i], buf, LEN);
    }
    /* Bytes between the writes stayed holes. */
    file_assert_zero(path, 8 * KiB, 8 * KiB);
    file_assert_zero(path, 24 * KiB, 40 * KiB);
    test_node_close(&t);
    unlink(path);
}

/*
 * A vector of more elements than one system call takes (IOV_MAX): the
 * driver must split it (buffered) or bounce it (O_DIRECT).
 */
static void test_rw_many_iovecs(const void *opaque)
{
    const char *aio = opaque;
    bool direct = mode_is_native(aio);
    const char *dir = dir_for(aio, false);
    enum { N = 1500, ELEM = 512 };
    g_autofree char *path = NULL;
    g_autofree uint8_t *data = g_malloc(N * ELEM);
    g_autofree uint8_t *back = g_malloc0(N * ELEM);
    IOVec qiov;
    CoReq r;
    TestNode t;

    if (!dir) {
        return;
    }
    path = make_file(dir, "iov.img", 2 * MiB);
    attach_rw(&t, open_file(path, aio, direct, "", &error_abort));

    fill_pattern(data, N * ELEM, 42);
    iovec_init(&qiov, N);
    for (int i = 0; i < N; i++) {
        iovec_add(&qiov, data + i * ELEM, ELEM);
    }
    r = (CoReq) { .op = CO_WRITEV, .offset = 64 * KiB, .bytes = N * ELEM,
                  .qiov = &qiov };
    g_assert_cmpint(co_req(t.blk, &r), ==, 0);
    iovec_destroy(&qiov);
    file_assert_contents(path, 64 * KiB, data, N * ELEM);

    iovec_init(&qiov, N);
    for (int i = 0; i < N; i++) {
        iovec_add(&qiov, back + i * ELEM, ELEM);
    }
    r = (CoReq) { .op = CO_READV, .offset = 64 * KiB, .bytes = N * ELEM,
                  .qiov = &qiov };
    g_assert_cmpint(co_req(t.blk, &r), ==, 0);
    iovec_destroy(&qiov);
    g_assert_cmpmem(back, N * ELEM, data, N * ELEM);

    test_node_close(&t);
    unlink(path);
}

/* O_DIRECT with requests the generic layer must pad and buffers we bounce. */
static void test_direct_unaligned(const void *opaque)
{
    const char *aio = opaque;
    const char *dir = dir_for(aio, true);
    enum { SIZE = 64 * KiB };
    g_autofree char *path = NULL;
    uint8_t expect[SIZE];
    uint8_t back[8];
    TestNode t;

    GLOBAL_STATE_CODE();
    if (!dir) {
        return;
    }
    path = make_file(dir, "direct.img", SIZE);
    file_write_pattern(path, 0, SIZE, 9);
    fill_pattern(expect, SIZE, 9);
    attach_rw(&t, open_file(path, aio, true, "", &error_abort));
    g_assert_cmpuint(t.bs->bl.request_alignment, >=, 512);

    g_assert_cmpint(blk_pwrite(t.blk, 4097, 3, "xyz", 0), ==, 0);
    memcpy(expect + 4097, "xyz", 3);
    file_assert_contents(path, 0, expect, SIZE);

    g_assert_cmpint(blk_pread(t.blk, 4097, 3, back, 0), ==, 0);
    g_assert_cmpmem(back, 3, "xyz", 3);
    g_assert_cmpint(blk_pread(t.blk, 4095, 5, back, 0), ==, 0);
    g_assert_cmpmem(back, 5, expect + 4095, 5);

    test_node_close(&t);
    unlink(path);
}

/*
 * An O_DIRECT image whose size is not a multiple of the alignment: the
 * padded read of its tail stops short at the end of the file.
 */
static void test_direct_unaligned_eof(const void *opaque)
{
    const char *aio = opaque;
    const char *dir = dir_for(aio, true);
    enum { SIZE = 64 * KiB + 100 };
    g_autofree char *path = NULL;
    uint8_t expect[SIZE], back[200];
    TestNode t;

    GLOBAL_STATE_CODE();
    if (!dir) {
        return;
    }
    path = make_file(dir, "tail.img", SIZE);
    file_write_pattern(path, 0, SIZE, 3);
    fill_pattern(expect, SIZE, 3);
    attach_rw(&t, open_file(path, aio, true, "", &error_abort));
    g_assert_cmpint(blk_getlength(t.blk), ==, SIZE);

    g_assert_cmpint(blk_pread(t.blk, SIZE - 150, 150, back, 0), ==, 0);
    g_assert_cmpmem(back, 150, expect + SIZE - 150, 150);

    test_node_close(&t);
    unlink(path);
}

/* --- file: zeroes and discard ----------------------------------------------- */

static void test_write_zeroes(const void *opaque)
{
    const char *aio = opaque;
    bool direct = mode_is_native(aio);
    const char *dir = dir_for(aio, false);
    g_autofree char *path = NULL;
    g_autofree uint8_t *pattern = g_malloc(1 * MiB);
    TestNode t;

    if (!dir) {
        return;
    }
    path = make_file(dir, "zeroes.img", 1 * MiB);
    file_write_pattern(path, 0, 1 * MiB, 5);
    fill_pattern(pattern, 1 * MiB, 5);
    attach_rw(&t, open_file(path, aio, direct, ", \"discard\": \"unmap\"",
                            &error_abort));

    /* Without MAY_UNMAP: zeroes, the blocks stay allocated. */
    g_assert_cmpint(do_zeroes(t.blk, 64 * KiB, 64 * KiB, 0), ==, 0);
    file_assert_zero(path, 64 * KiB, 64 * KiB);
    file_assert_contents(path, 0, pattern, 64 * KiB);
    file_assert_contents(path, 128 * KiB, pattern + 128 * KiB, 64 * KiB);

    /* With MAY_UNMAP on a discard=unmap node: a hole. */
    g_assert_cmpint(do_zeroes(t.blk, 256 * KiB, 128 * KiB,
                              BDRV_REQ_MAY_UNMAP), ==, 0);
    file_assert_zero(path, 256 * KiB, 128 * KiB);
    file_assert_contents(path, 384 * KiB, pattern + 384 * KiB, 64 * KiB);
    {
        int fd = open(path, O_RDONLY);

        g_assert_cmpint(lseek(fd, 256 * KiB, SEEK_HOLE), ==, 256 * KiB);
        g_assert_cmpint(lseek(fd, 256 * KiB, SEEK_DATA), ==, 384 * KiB);
        close(fd);
    }
    test_node_close(&t);
    unlink(path);
}

static void test_discard_punches_hole(const void *opaque)
{
    const char *aio = opaque;
    bool direct = mode_is_native(aio);
    const char *dir = dir_for(aio, false);
    g_autofree char *path = NULL;
    int64_t blocks_before;
    TestNode t;
    int fd;

    if (!dir) {
        return;
    }
    path = make_file(dir, "discard.img", 1 * MiB);
    file_write_pattern(path, 0, 1 * MiB, 11);
    blocks_before = file_blocks(path);
    attach_rw(&t, open_file(path, aio, direct, ", \"discard\": \"unmap\"",
                            &error_abort));

    g_assert_cmpint(do_discard(t.blk, 512 * KiB, 256 * KiB), ==, 0);
    g_assert_cmpint(file_blocks(path), <=,
                    blocks_before - 256 * KiB / 512);
    file_assert_zero(path, 512 * KiB, 256 * KiB);
    fd = open(path, O_RDONLY);
    g_assert_cmpint(lseek(fd, 0, SEEK_HOLE), ==, 512 * KiB);
    g_assert_cmpint(lseek(fd, 512 * KiB, SEEK_DATA), ==, 768 * KiB);
    close(fd);

    test_node_close(&t);
    unlink(path);
}

/* --- file: block status ------------------------------------------------------ */

static void assert_status(BlockBackend *blk, int64_t offset, int64_t end,
                          int64_t expect_pnum, int expect_flags)
{
    int64_t pnum;
    int status = do_status(blk, offset, end - offset, &pnum);

    g_assert_cmpint(pnum, ==, expect_pnum);
    g_assert_cmpint(status & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==,
                    expect_flags);
}

static void test_block_status(const void *opaque)
{
    const char *aio = opaque;
    enum { SIZE = 4 * MiB };
    g_autofree char *path = make_file(tmp_dir, "status.img", SIZE);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    TestNode t, r;

    GLOBAL_STATE_CODE();
    attach_rw(&t, open_file(path, aio, false, "", &error_abort));
    fill_pattern(buf, 64 * KiB, 1);
    g_assert_cmpint(blk_pwrite(t.blk, 1 * MiB, 64 * KiB, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(t.blk, 3 * MiB, 4 * KiB, buf, 0), ==, 0);

    assert_status(t.blk, 0, SIZE, 1 * MiB, BDRV_BLOCK_ZERO);
    assert_status(t.blk, 1 * MiB, SIZE, 64 * KiB, BDRV_BLOCK_DATA);
    assert_status(t.blk, 1 * MiB + 64 * KiB, SIZE, 2 * MiB - 64 * KiB,
                  BDRV_BLOCK_ZERO);
    assert_status(t.blk, 3 * MiB, SIZE, 4 * KiB, BDRV_BLOCK_DATA);
    assert_status(t.blk, 3 * MiB + 4 * KiB, SIZE, 1 * MiB - 4 * KiB,
                  BDRV_BLOCK_ZERO);
    /* Bounded by the request. */
    assert_status(t.blk, 1 * MiB, 1 * MiB + 4 * KiB, 4 * KiB,
                  BDRV_BLOCK_DATA);

    /*
     * Through raw, with the answers shifted by the window's offset.  raw
     * does not share "write" on its file: our writer must go first.
     */
    blk_unref(t.blk);
    t.blk = NULL;
    g_assert_true(attach(&r, open_node(&error_abort,
                                       "{\"driver\": \"raw\", \"node-name\": "
                                       "\"status-raw\", \"file\": \"%s\", "
                                       "\"offset\": %lld}",
                                       bdrv_get_node_name(t.bs), 1 * MiB),
                         BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL,
                         &error_abort));
    assert_status(r.blk, 0, 3 * MiB, 64 * KiB, BDRV_BLOCK_DATA);
    assert_status(r.blk, 64 * KiB, 3 * MiB, 2 * MiB - 64 * KiB,
                  BDRV_BLOCK_ZERO);
    assert_status(r.blk, 2 * MiB, 3 * MiB, 4 * KiB, BDRV_BLOCK_DATA);
    test_node_close(&r);

    test_node_close(&t);
    unlink(path);
}

/* --- file: truncate ---------------------------------------------------------- */

static void test_truncate(void)
{
    g_autofree char *path = make_file(tmp_dir, "resize.img", 1 * MiB);
    CoReq r = { .op = CO_TRUNCATE, .errp = &error_abort };
    struct stat st;
    TestNode t;

    attach_rw(&t, open_file(path, "io_uring", false, "", &error_abort));
    r.offset = 3 * MiB;
    g_assert_cmpint(co_req(t.blk, &r), ==, 0);
    g_assert_cmpint(blk_getlength(t.blk), ==, 3 * MiB);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 3 * MiB);

    r.offset = 512 * KiB;
    g_assert_cmpint(co_req(t.blk, &r), ==, 0);
    g_assert_cmpint(blk_getlength(t.blk), ==, 512 * KiB);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 512 * KiB);
    test_node_close(&t);
    unlink(path);
}

/* --- file: errors --------------------------------------------------------------- */

static void test_open_missing_file(void)
{
    g_autofree char *path = g_build_filename(tmp_dir, "nonexistent", NULL);
    g_autofree char *expect = g_strdup_printf(
        "Could not open '%s': No such file or directory", path);
    Error *err = NULL;

    g_assert_null(open_file(path, "io_uring", false, "", &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(error_get_pretty(err), expect));
    error_free(err);
}

static void test_native_needs_direct(void)
{
    g_autofree char *path = make_file(tmp_dir, "native.img", 64 * KiB);
    Error *err = NULL;

    g_assert_null(open_file(path, "native", false, "", &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "cache.direct=on"));
    error_free(err);
    unlink(path);
}

/* A write past RLIMIT_FSIZE fails with EFBIG (SIGXFSZ ignored). */
static void test_error_efbig(const void *opaque)
{
    const char *aio = opaque;
    bool direct = mode_is_native(aio);
    const char *dir = dir_for(aio, false);
    g_autofree char *path = NULL;
    uint8_t buf[4096];
    struct rlimit old_limit, limit;
    struct sigaction ign = { .sa_handler = SIG_IGN }, old_action;
    int ret_low, ret_high;
    TestNode t;

    GLOBAL_STATE_CODE();
    if (!dir) {
        return;
    }
    path = make_file(dir, "efbig.img", 4 * MiB);
    attach_rw(&t, open_file(path, aio, direct, "", &error_abort));
    memset(buf, 0x55, sizeof(buf));

    g_assert_cmpint(sigaction(SIGXFSZ, &ign, &old_action), ==, 0);
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old_limit), ==, 0);
    limit = old_limit;
    limit.rlim_cur = 1 * MiB;
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &limit), ==, 0);
    ret_low = blk_pwrite(t.blk, 0, sizeof(buf), buf, 0);
    ret_high = blk_pwrite(t.blk, 2 * MiB, sizeof(buf), buf, 0);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old_limit), ==, 0);
    g_assert_cmpint(sigaction(SIGXFSZ, &old_action, NULL), ==, 0);

    g_assert_cmpint(ret_low, ==, 0);
    g_assert_cmpint(ret_high, ==, -EFBIG);
    test_node_close(&t);
    unlink(path);
}

/* The descriptor this process has open on @path (exactly one). */
static int find_fd_of(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = -1;

    g_assert_nonnull(d);
    while ((e = readdir(d))) {
        g_autofree char *link = g_strdup_printf("/proc/self/fd/%s", e->d_name);
        char target[PATH_MAX];
        ssize_t n = readlink(link, target, sizeof(target) - 1);

        if (n > 0) {
            target[n] = 0;
            if (!strcmp(target, path)) {
                g_assert_cmpint(found, ==, -1);
                found = atoi(e->d_name);
            }
        }
    }
    closedir(d);
    g_assert_cmpint(found, >=, 0);
    return found;
}

/* I/O errors of the kernel reach the caller as -EIO. */
static void test_error_eio(const void *opaque)
{
    const char *aio = opaque;
    g_autofree char *path = make_file(tmp_dir, "eio.img", 1 * MiB);
    g_autofree char *real = NULL;
    uint8_t buf[4096];
    TestNode t;
    int fd, mem;

    GLOBAL_STATE_CODE();
    attach_rw(&t, open_file(path, aio, false, ", \"locking\": \"off\"",
                            &error_abort));
    real = realpath(path, NULL);
    fd = find_fd_of(real);
    mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    g_assert_cmpint(mem, >=, 0);
    g_assert_cmpint(dup2(mem, fd), ==, fd);
    close(mem);

    g_assert_cmpint(blk_pread(t.blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    memset(buf, 0, sizeof(buf));
    g_assert_cmpint(blk_pwrite(t.blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    test_node_close(&t);
    unlink(path);
}

/* --- file: OFD image locking -------------------------------------------------- */

static BlockDriverState *open_raw_over_file(const char *path,
                                            const char *locking,
                                            bool read_only, bool force_share,
                                            Error **errp)
{
    GLOBAL_STATE_CODE();
    return open_node(errp, "{\"driver\": \"raw\", \"node-name\": \"r%u\", "
                     "\"read-only\": %s, \"force-share\": %s, "
                     "\"file\": {\"driver\": \"file\", \"filename\": \"%s\", "
                     "\"locking\": \"%s\", \"read-only\": %s, "
                     "\"force-share\": %s}}", node_counter++,
                     read_only ? "true" : "false",
                     force_share ? "true" : "false", path, locking,
                     read_only ? "true" : "false",
                     force_share ? "true" : "false");
}

static void assert_lock_error(Error *err, const char *what, const char *path)
{
    g_autofree char *expect = g_strdup_printf(
        "Failed to get %s lock on '%s': another process holds a "
        "conflicting lock", what, path);

    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), expect)) {
        g_error("expected '%s' in '%s'", expect, error_get_pretty(err));
    }
}

/* A user that writes and lets nobody else write, as an export does. */
static BlockBackend *attach_writer(BlockDriverState *bs, Error **errp)
{
    GLOBAL_STATE_CODE();
    BlockBackend *blk = blk_new("writer", bdrv_get_aio_context(bs),
                                BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                                BLK_PERM_ALL & ~BLK_PERM_WRITE);

    if (blk_insert_bs(blk, bs, errp) < 0) {
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

static void test_lock_two_writers(void)
{
    g_autofree char *path = make_file(tmp_dir, "lock.img", 1 * MiB);
    BlockDriverState *a, *b;
    BlockBackend *wa, *wb;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    /*
     * Opening takes no lock by itself (raw passes its users' permissions
     * through, as in QEMU): the second writer is what must be refused.
     */
    a = open_raw_over_file(path, "auto", false, false, &error_abort);
    b = open_raw_over_file(path, "auto", false, false, &error_abort);
    wa = attach_writer(a, &error_abort);
    wb = attach_writer(b, &err);
    g_assert_null(wb);
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), path)) {
        g_error("lock error does not name the file: %s",
                error_get_pretty(err));
    }
    error_free(err);

    /* Removing the first writer releases its locks. */
    blk_unref(wa);
    wb = attach_writer(b, &error_abort);
    blk_unref(wb);
    bdrv_unref(a);
    bdrv_unref(b);
    unlink(path);
}

static void test_lock_off(void)
{
    g_autofree char *path = make_file(tmp_dir, "nolock.img", 1 * MiB);
    BlockDriverState *a, *b;

    GLOBAL_STATE_CODE();
    a = open_raw_over_file(path, "off", false, false, &error_abort);
    b = open_raw_over_file(path, "off", false, false, &error_abort);
    bdrv_unref(b);
    bdrv_unref(a);
    unlink(path);
}

/* Plain file nodes: locks follow the permissions of their users. */
static void test_lock_readers(void)
{
    g_autofree char *path = make_file(tmp_dir, "readers.img", 1 * MiB);
    uint64_t reader_shared = BLK_PERM_CONSISTENT_READ |
                             BLK_PERM_WRITE_UNCHANGED;
    TestNode writer, reader;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    attach_rw(&writer, open_file(path, "io_uring", false, "", &error_abort));
    /* Sharing everything, the writer holds no lock that bars readers. */
    g_assert_true(attach(&reader,
                         open_node(&error_abort, "{\"driver\": \"file\", "
                                   "\"node-name\": \"f%u\", \"filename\": "
                                   "\"%s\", \"read-only\": true}",
                                   node_counter++, path),
                         BLK_PERM_CONSISTENT_READ, reader_shared, &err) ==
                  false);
    /* ... but this reader does not share "write", which the writer has. */
    assert_lock_error(err, "exclusive \"write\"", path);
    error_free(err);
    err = NULL;
    bdrv_unref(reader.bs);

    /* With force-share, a read-only node takes no locks at all. */
    g_assert_true(attach(&reader,
                         open_node(&error_abort, "{\"driver\": \"file\", "
                                   "\"node-name\": \"f%u\", \"filename\": "
                                   "\"%s\", \"read-only\": true, "
                                   "\"force-share\": true}",
                                   node_counter++, path),
                         BLK_PERM_CONSISTENT_READ, reader_shared,
                         &error_abort));
    test_node_close(&reader);
    test_node_close(&writer);

    /* The other way round: a writer cannot join a reader that denies it. */
    g_assert_true(attach(&reader,
                         open_file(path, "io_uring", false, "", &error_abort),
                         BLK_PERM_CONSISTENT_READ, reader_shared,
                         &error_abort));
    g_assert_false(attach(&writer,
                          open_file(path, "io_uring", false, "",
                                    &error_abort),
                          PERM_RW, BLK_PERM_ALL, &err));
    assert_lock_error(err, "\"write\"", path);
    error_free(err);
    bdrv_unref(writer.bs);
    test_node_close(&reader);
    unlink(path);
}

/* --- file: I/O from an iothread ----------------------------------------------- */

typedef struct ParallelWrites {
    BlockBackend *blk;
    int64_t offset;
    unsigned seed;
    int ret;
    int *remaining;             /* atomic */
} ParallelWrites;

static void coroutine_fn parallel_write_entry(void *opaque)
{
    ParallelWrites *p = opaque;
    uint8_t *buf = g_malloc(64 * KiB);
    uint8_t *back = g_malloc(64 * KiB);

    fill_pattern(buf, 64 * KiB, p->seed);
    p->ret = blk_co_pwrite(p->blk, p->offset, 64 * KiB, buf, 0);
    if (p->ret == 0) {
        p->ret = blk_co_pread(p->blk, p->offset, 64 * KiB, back, 0);
    }
    if (p->ret == 0 && memcmp(buf, back, 64 * KiB)) {
        p->ret = -EILSEQ;
    }
    g_free(buf);
    g_free(back);
    /* Pairs with the load-acquire in test_iothread_io(). */
    qatomic_dec(p->remaining);
    aio_wait_kick();
}

static void test_iothread_io(const void *opaque)
{
    const char *aio = opaque;
    bool direct = mode_is_native(aio);
    const char *dir = dir_for(aio, false);
    enum { N = 16 };
    ParallelWrites p[N];
    g_autofree char *path = NULL;
    IOThread *iothread;
    AioContext *ctx;
    int remaining = N;
    TestNode t;

    GLOBAL_STATE_CODE();
    if (!dir) {
        return;
    }
    path = make_file(dir, "iothread.img", N * 64 * KiB);
    iothread = iothread_create("io0", 0, &error_abort);
    ctx = iothread_get_aio_context(iothread);
    attach_rw(&t, open_file(path, aio, direct, "", &error_abort));
    g_assert_cmpint(blk_set_aio_context(t.blk, ctx, &error_abort), ==, 0);

    for (int i = 0; i < N; i++) {
        p[i] = (ParallelWrites) {
            .blk = t.blk, .offset = i * 64 * KiB, .seed = i,
            .remaining = &remaining,
        };
        aio_co_enter(ctx, co_create(parallel_write_entry, &p[i]));
    }
    /* Pairs with qatomic_dec() in parallel_write_entry(): ret is seen. */
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&remaining) > 0);
    for (int i = 0; i < N; i++) {
        g_autofree uint8_t *buf = g_malloc(64 * KiB);

        g_assert_cmpint(p[i].ret, ==, 0);
        fill_pattern(buf, 64 * KiB, i);
        file_assert_contents(path, i * 64 * KiB, buf, 64 * KiB);
    }

    g_assert_cmpint(blk_set_aio_context(t.blk, main_context(), &error_abort),
                    ==, 0);
    test_node_close(&t);
    /* Destroys the iothread's context, and with it its libaio state. */
    iothread_destroy(iothread);
    unlink(path);
}

/* --- file: block devices ------------------------------------------------------ */

/*
 * Attach @backing to a free loop device; returns an fd of the device (its
 * closing detaches it, with the last user) and its path, or -errno.
 */
static int loop_attach(const char *backing, char **dev_path)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int ret = -EBUSY;

    if (ctl < 0) {
        return -errno;
    }
    /* Another process may take the free device first: try again. */
    for (int attempt = 0; attempt < 10 && ret == -EBUSY; attempt++) {
        struct loop_config cfg = {
            .info.lo_flags = LO_FLAGS_AUTOCLEAR,
        };
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        int dev, file;

        if (n < 0) {
            ret = -errno;
            break;
        }
        *dev_path = g_strdup_printf("/dev/loop%d", n);
        dev = open(*dev_path, O_RDWR | O_CLOEXEC);
        file = open(backing, O_RDWR | O_CLOEXEC);
        g_assert_cmpint(file, >=, 0);
        cfg.fd = file;
        if (dev >= 0 && ioctl(dev, LOOP_CONFIGURE, &cfg) == 0) {
            ret = dev;
        } else {
            ret = -errno;
            if (dev >= 0) {
                close(dev);
            }
            g_free(*dev_path);
            *dev_path = NULL;
        }
        close(file);
    }
    close(ctl);
    return ret;
}

static void test_block_device(const void *opaque)
{
    const char *aio = opaque;
    g_autofree char *backing = NULL;
    g_autofree char *dev_path = NULL;
    uint8_t expect[64 * KiB], back[8];
    CoReq r = { .op = CO_TRUNCATE };
    Error *err = NULL;
    int64_t pnum;
    TestNode t;
    int dev, fd;

    GLOBAL_STATE_CODE();
    if (!direct_dir) {
        g_test_skip("no file system here accepts O_DIRECT");
        return;
    }
    backing = make_file(direct_dir, "loop.img", 1 * MiB);
    file_write_pattern(backing, 0, sizeof(expect), 21);
    fill_pattern(expect, sizeof(expect), 21);
    dev = loop_attach(backing, &dev_path);
    if (dev < 0) {
        g_autofree char *msg = g_strdup_printf(
            "no loop device (%s): needs root and /dev/loop-control",
            strerror(-dev));

        g_test_skip(msg);
        unlink(backing);
        return;
    }

    attach_rw(&t, open_file(dev_path, aio, true, ", \"discard\": \"unmap\"",
                            &error_abort));
    g_assert_cmpint(blk_getlength(t.blk), ==, 1 * MiB);
    g_assert_cmpuint(t.bs->bl.request_alignment, ==, 512);

    /* Padded to the device's sectors; lands in the backing file. */
    g_assert_cmpint(blk_pwrite(t.blk, 4097, 3, "xyz", BDRV_REQ_FUA), ==, 0);
    memcpy(expect + 4097, "xyz", 3);
    g_assert_cmpint(blk_pread(t.blk, 4095, 5, back, 0), ==, 0);
    g_assert_cmpmem(back, 5, expect + 4095, 5);
    g_assert_cmpint(blk_flush(t.blk), ==, 0);
    file_assert_contents(backing, 0, expect, sizeof(expect));

    /* Zeroes and discard (BLKDISCARD: the loop driver punches a hole). */
    g_assert_cmpint(do_zeroes(t.blk, 8 * KiB, 8 * KiB, 0), ==, 0);
    g_assert_cmpint(do_discard(t.blk, 512 * KiB, 256 * KiB), ==, 0);
    g_assert_cmpint(blk_flush(t.blk), ==, 0);
    file_assert_zero(backing, 8 * KiB, 8 * KiB);
    fd = open(backing, O_RDONLY);
    g_assert_cmpint(lseek(fd, 512 * KiB, SEEK_DATA), ==, -1);
    close(fd);

    /* A block device is all data, and cannot be resized. */
    g_assert_cmpint(do_status(t.blk, 0, 1 * MiB, &pnum) &
                    (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==, BDRV_BLOCK_DATA);
    g_assert_cmpint(pnum, ==, 1 * MiB);
    r.offset = 2 * MiB;
    r.errp = &err;
    g_assert_cmpint(co_req(t.blk, &r), ==, -ENOTSUP);
    g_assert_nonnull(strstr(error_get_pretty(err), "Cannot resize block "
                            "device"));
    error_free(err);
    r.offset = 1 * MiB;
    r.errp = &error_abort;
    g_assert_cmpint(co_req(t.blk, &r), ==, 0);

    test_node_close(&t);
    close(dev);             /* the last user: the device detaches */
    unlink(backing);
}

/* --- raw ------------------------------------------------------------------------ */

static void test_raw_window(void)
{
    enum { SIZE = 64 * KiB, OFF = 4 * KiB, LEN = 8 * KiB };
    g_autofree char *path = make_file(tmp_dir, "window.img", SIZE);
    uint8_t expect[SIZE], back[LEN];
    CoReq r = { .op = CO_TRUNCATE, .offset = 4 * KiB };
    Error *err = NULL;
    TestNode t;

    GLOBAL_STATE_CODE();
    file_write_pattern(path, 0, SIZE, 17);
    fill_pattern(expect, SIZE, 17);
    attach_rw(&t, open_node(&error_abort, "{\"driver\": \"raw\", "
                            "\"node-name\": \"win\", \"offset\": %d, "
                            "\"size\": %d, \"file\": {\"driver\": \"file\", "
                            "\"filename\": \"%s\"}}", OFF, LEN, path));
    g_assert_cmpint(blk_getlength(t.blk), ==, LEN);

    g_assert_cmpint(blk_pread(t.blk, 0, LEN, back, 0), ==, 0);
    g_assert_cmpmem(back, LEN, expect + OFF, LEN);

    g_assert_cmpint(blk_pwrite(t.blk, LEN - 16, 16, "0123456789abcdef", 0),
                    ==, 0);
    memcpy(expect + OFF + LEN - 16, "0123456789abcdef", 16);
    file_assert_contents(path, 0, expect, SIZE);

    /* Nothing outside the window. */
    g_assert_cmpint(blk_pread(t.blk, LEN, 1, back, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(t.blk, LEN - 2, 4, "abcd", 0), ==, -EIO);
    file_assert_contents(path, 0, expect, SIZE);

    r.errp = &err;
    g_assert_cmpint(co_req(t.blk, &r), ==, -ENOTSUP);
    g_assert_nonnull(strstr(error_get_pretty(err), "fixed 'size'"));
    error_free(err);
    test_node_close(&t);
    unlink(path);
}

static void test_raw_window_beyond_eof(void)
{
    g_autofree char *path = make_file(tmp_dir, "small.img", 64 * KiB);
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    g_assert_null(open_node(&err, "{\"driver\": \"raw\", \"node-name\": "
                            "\"w1\", \"offset\": %lld, \"file\": {\"driver\": "
                            "\"file\", \"filename\": \"%s\"}}",
                            64 * KiB + 1, path));
    g_assert_nonnull(strstr(error_get_pretty(err), "beyond the end"));
    error_free(err);
    err = NULL;

    g_assert_null(open_node(&err, "{\"driver\": \"raw\", \"node-name\": "
                            "\"w2\", \"offset\": 4096, \"size\": %lld, "
                            "\"file\": {\"driver\": \"file\", \"filename\": "
                            "\"%s\"}}", 64 * KiB, path));
    g_assert_nonnull(strstr(error_get_pretty(err), "beyond the end"));
    error_free(err);
    unlink(path);
}

/* --- null-co ---------------------------------------------------------------------- */

static void test_null_read_zeroes(void)
{
    uint8_t buf[4096];
    int64_t pnum;
    TestNode t;

    GLOBAL_STATE_CODE();
    attach_rw(&t, open_node(&error_abort, "{\"driver\": \"null-co\", "
                            "\"node-name\": \"null0\", "
                            "\"read-zeroes\": true}"));
    g_assert_cmpint(blk_getlength(t.blk), ==, 1LL << 30);
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(blk_pread(t.blk, 12345, sizeof(buf), buf, 0), ==, 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        g_assert_cmpint(buf[i], ==, 0);
    }
    g_assert_cmpint(do_status(t.blk, 0, 1 * MiB, &pnum) &
                    (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, 1 * MiB);
    test_node_close(&t);

    /* Without read-zeroes, the buffer is left alone. */
    attach_rw(&t, open_node(&error_abort, "{\"driver\": \"null-co\", "
                            "\"node-name\": \"null1\", \"size\": 4096}"));
    g_assert_cmpint(blk_getlength(t.blk), ==, 4096);
    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(blk_pread(t.blk, 0, sizeof(buf), buf, 0), ==, 0);
    for (size_t i = 0; i < sizeof(buf); i++) {
        g_assert_cmpint(buf[i], ==, 0x5a);
    }
    g_assert_cmpint(blk_pwrite(t.blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_flush(t.blk), ==, 0);
    g_assert_cmpint(do_status(t.blk, 0, 4096, &pnum) &
                    (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==, BDRV_BLOCK_DATA);
    test_node_close(&t);
}

static void test_null_latency(void)
{
    const int64_t latency = 20 * 1000 * 1000;
    uint8_t buf[512];
    int64_t start;
    TestNode t;

    GLOBAL_STATE_CODE();
    attach_rw(&t, open_node(&error_abort, "{\"driver\": \"null-co\", "
                            "\"node-name\": \"slow\", \"latency-ns\": %"
                            PRId64 "}", latency));
    start = get_clock_ns();
    g_assert_cmpint(blk_pread(t.blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(get_clock_ns() - start, >=, latency);

    start = get_clock_ns();
    g_assert_cmpint(blk_pwrite(t.blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(get_clock_ns() - start, >=, latency);
    test_node_close(&t);
}

/* --- main ------------------------------------------------------------------------- */

/* True if the file system of @dir accepts O_DIRECT. */
static bool dir_takes_o_direct(const char *dir)
{
    g_autofree char *path = g_build_filename(dir, "o_direct-probe", NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);

    if (fd < 0) {
        return false;
    }
    close(fd);
    unlink(path);
    return true;
}

static void remove_tree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    if (!d) {
        return;
    }
    while ((name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);

        unlink(path);
    }
    g_dir_close(d);
    rmdir(dir);
}

static void add_mode_test(const char *name, const char *aio,
                          GTestDataFunc fn)
{
    g_autofree char *path = g_strdup_printf("/file/%s/%s", aio, name);

    g_test_add_data_func(path, aio, fn);
}

int main(int argc, char **argv)
{
    static const char *const modes[] = { "threads", "native", "io_uring" };
    char *var_tmp_dir = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();

    tmp_dir = g_dir_make_tmp("blockd-file-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    if (dir_takes_o_direct(tmp_dir)) {
        direct_dir = tmp_dir;
    } else {
        var_tmp_dir = g_build_filename("/var/tmp", "blockd-file-XXXXXX",
                                       NULL);
        if (g_mkdtemp(var_tmp_dir) && dir_takes_o_direct(var_tmp_dir)) {
            direct_dir = var_tmp_dir;
        }
    }

    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        add_mode_test("rw-patterns", modes[i], test_rw_patterns);
        add_mode_test("rw-many-iovecs", modes[i], test_rw_many_iovecs);
        add_mode_test("direct-unaligned", modes[i], test_direct_unaligned);
        add_mode_test("direct-unaligned-eof", modes[i],
                      test_direct_unaligned_eof);
        add_mode_test("write-zeroes", modes[i], test_write_zeroes);
        add_mode_test("discard-punches-hole", modes[i],
                      test_discard_punches_hole);
        add_mode_test("error-efbig", modes[i], test_error_efbig);
        add_mode_test("iothread-io", modes[i], test_iothread_io);
        add_mode_test("block-device", modes[i], test_block_device);
        if (!mode_is_native(modes[i])) {
            /* libaio cannot read /proc/self/mem; native is direct-only. */
            add_mode_test("error-eio", modes[i], test_error_eio);
            add_mode_test("block-status", modes[i], test_block_status);
        }
    }
    g_test_add_func("/file/truncate", test_truncate);
    g_test_add_func("/file/open/missing-file", test_open_missing_file);
    g_test_add_func("/file/open/native-needs-direct",
                    test_native_needs_direct);
    g_test_add_func("/file/lock/two-writers", test_lock_two_writers);
    g_test_add_func("/file/lock/off", test_lock_off);
    g_test_add_func("/file/lock/readers", test_lock_readers);
    g_test_add_func("/raw/window", test_raw_window);
    g_test_add_func("/raw/window-beyond-eof", test_raw_window_beyond_eof);
    g_test_add_func("/null/read-zeroes", test_null_read_zeroes);
    g_test_add_func("/null/latency", test_null_latency);

    ret = g_test_run();

    remove_tree(tmp_dir);
    g_free(tmp_dir);
    if (var_tmp_dir) {
        remove_tree(var_tmp_dir);
        g_free(var_tmp_dir);
    }
    return ret;
}
