/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The mirror job on file nodes in an iothread, with guest writers: several
 * coroutines, half in the job's iothread and half in another one (as a
 * multiqueue export's connections are), write random data through a
 * BlockBackend on the source (each to a stripe of its own, so the expected content is
 * known) before, during and after the copy.  After job-complete the
 * target file holds exactly what was written and the guest's backend sits
 * on the target; after a forced cancel the guest is back on the source and
 * the filter is gone.  Both copy modes; small granularity and buf-size so
 * that many copies are in flight at once.  The writes to a READY job wake
 * it (mirror_kick()), from its own thread and from the other one.  In the
 * 'stress' suite: TSan checks the job, the filter, the bitmap and the
 * wake-ups under concurrent I/O.
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/job-monitor.h"
#include "block/mirror.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"

#define IMG_SIZE    (4 * 1024 * 1024)
#define N_WRITERS   4
#define STRIPE      (IMG_SIZE / N_WRITERS)

typedef struct Fixture {
    IOThread *io;               /* the nodes' and the job's */
    IOThread *io1;              /* odd writers only */
    char *src_path, *tgt_path;
    BlockDriverState *src, *tgt;
    BlockBackend *guest;
    BlockBackend *direct;       /* NULL, or odd writers' backend */
    uint8_t *model;             /* stripe i: writer i's coroutine only */
    int budget;                 /* atomic: writes left to start */
    int running;                /* atomic: writers still running */
    int writes;                 /* atomic: writes done, all writers */
} Fixture;

static BlockDriverState *open_file(const char *name, const char *path)
{
    GLOBAL_STATE_CODE();
    return open_node(&error_abort, "{\"driver\": \"file\", \"node-name\": "
                     "\"%s\", \"filename\": \"%s\"}", name, path);
}

static void fixture_init(Fixture *f)
{
    GRand *r = g_rand_new_with_seed(11);

    GLOBAL_STATE_CODE();
    *f = (Fixture) { 0 };
    f->model = g_malloc0(IMG_SIZE);
    for (int i = 0; i < IMG_SIZE / 2; i++) {
        f->model[i] = g_rand_int(r);
    }
    g_rand_free(r);
    f->src_path = make_temp_image("mirror-src-XXXXXX", IMG_SIZE, f->model,
                                  IMG_SIZE / 2);
    f->tgt_path = make_temp_image("mirror-tgt-XXXXXX", IMG_SIZE, NULL, 0);
    f->io = iothread_create("io0", 0, &error_abort);
    f->io1 = iothread_create("io1", 0, &error_abort);
    f->src = open_file("src", f->src_path);
    f->tgt = open_file("tgt", f->tgt_path);
    g_assert_cmpint(bdrv_try_change_aio_context(
                        f->src, iothread_get_aio_context(f->io), NULL,
                        &error_abort), ==, 0);
    f->guest = new_backend("guest", iothread_get_aio_context(f->io),
                           BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, f->src);
    blk_set_allow_aio_context_change(f->guest, true);
}

static void fixture_cleanup(Fixture *f)
{
    GLOBAL_STATE_CODE();
    blk_unref(f->guest);
    if (f->src) {
        bdrv_unref(f->src);
    }
    bdrv_unref(f->tgt);
    iothread_destroy(f->io1);
    iothread_destroy(f->io);
    unlink(f->src_path);
    unlink(f->tgt_path);
    g_free(f->src_path);
    g_free(f->tgt_path);
    g_free(f->model);
}

/* --- Writers ---------------------------------------------------------------- */

typedef struct Writer {
    Fixture *f;
    int index;
} Writer;

static Writer writers[N_WRITERS];

static void coroutine_fn writer_co(void *opaque)
{
    Writer *w = opaque;
    Fixture *f = w->f;
    GRand *r = g_rand_new_with_seed(100 + w->index);
    uint8_t *buf = g_malloc(65536);

    while (qatomic_fetch_dec(&f->budget) > 0) {
        int64_t len = g_rand_int_range(r, 1, 17) * 4096;
        int64_t off = w->index * STRIPE +
                      g_rand_int_range(r, 0, (STRIPE - len) / 512 + 1) * 512;
        uint8_t v = g_rand_int(r);

        memset(buf, v, len);
        g_assert_cmpint(blk_co_pwrite(w->index % 2 && f->direct ? f->direct
                                                                : f->guest,
                                      off, len, buf, 0), ==, 0);
        memset(f->model + off, v, len);
        qatomic_inc(&f->writes);
        /* Pairs with the smp_mb() in AIO_WAIT_WHILE(). */
        aio_wait_kick();
    }
    g_free(buf);
    g_rand_free(r);
    qatomic_dec(&f->running);
    aio_wait_kick();
}

static void start_writers_bh(void *opaque)
{
    Fixture *f = opaque;

    for (int i = 0; i < N_WRITERS; i++) {
        writers[i] = (Writer) { f, i };
        aio_co_enter(iothread_get_aio_context(i % 2 ? f->io1 : f->io),
                     co_create(writer_co, &writers[i]));
    }
}

/*
 * Writers for @n writes in all, not a time: a mirror in background mode
 * need not converge under writes without end (nor does QEMU's).
 */
static void start_writers(Fixture *f, int n)
{
    qatomic_set(&f->budget, n);
    qatomic_set(&f->running, N_WRITERS);
    aio_bh_schedule_oneshot(iothread_get_aio_context(f->io),
                            start_writers_bh, f);
}

static void writes_at_least(Fixture *f, int n)
{
    AIO_WAIT_WHILE(NULL, qatomic_read(&f->writes) < n);
}

static void wait_writers(Fixture *f)
{
    AIO_WAIT_WHILE(NULL, qatomic_read(&f->running) > 0);
}

/* --- The job ------------------------------------------------------------------ */

static void start_mirror(Fixture *f, MirrorCopyMode mode)
{
    MirrorArgs a = {
        .job_id = "m0",
        .source = f->src,
        .target = f->tgt,
        .sync = MIRROR_SYNC_MODE_FULL,
        .granularity = 4096,
        .buf_size = 64 * 1024,
        .filter_node_name = "mtop",
        .copy_mode = mode,
        .auto_finalize = true,
        .auto_dismiss = true,
    };

    GLOBAL_STATE_CODE();
    g_assert_true(mirror_start(&a, &error_abort));
    g_assert_nonnull(bdrv_find_node("mtop"));
}

static bool job_not_ready(void)
{
    Job *job;
    bool ret;

    GLOBAL_STATE_CODE();
    job_lock();
    job = job_get_locked("m0");
    g_assert_nonnull(job);
    ret = !job_is_ready_locked(job);
    job_unlock();
    return ret;
}

static void check_target_file(Fixture *f)
{
    g_autofree char *data = NULL;
    gsize len;

    g_assert_true(g_file_get_contents(f->tgt_path, &data, &len, NULL));
    g_assert_cmpuint(len, ==, IMG_SIZE);
    g_assert_true(memcmp(data, f->model, IMG_SIZE) == 0);
}

static void test_complete_under_writes(MirrorCopyMode mode)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    for (int it = 0; it < stress_iterations(); it++) {
        fixture_init(&f);
        start_writers(&f, 400);
        writes_at_least(&f, 20);
        start_mirror(&f, mode);
        wait_writers(&f);
        AIO_WAIT_WHILE(NULL, job_not_ready());
        /* Writes to a READY job. */
        start_writers(&f, 100);
        wait_writers(&f);
        g_assert_cmpint(finish_job("m0", complete), ==, 0);

        g_assert_null(bdrv_find_node("mtop"));
        g_assert_true(blk_bs(f.guest) == f.tgt);
        check_target_file(&f);
        fixture_cleanup(&f);
    }
}

static void test_complete_background(void)
{
    test_complete_under_writes(MIRROR_COPY_MODE_BACKGROUND);
}

static void test_complete_write_blocking(void)
{
    test_complete_under_writes(MIRROR_COPY_MODE_WRITE_BLOCKING);
}

/*
 * A writer attached to the source itself after the mirror started (not
 * through the filter: a second export of the source node) writes on while
 * job-complete runs.  Its writes are in the bitmap; the final copy must
 * not miss the ones that land while it runs, and after the switch the
 * writer is on the target.
 */
static void test_complete_with_direct_writer(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    /* The window is short: enough rounds to hit it without the fix. */
    for (int it = 0; it < MAX(stress_iterations(), 20); it++) {
        fixture_init(&f);
        start_mirror(&f, MIRROR_COPY_MODE_BACKGROUND);
        AIO_WAIT_WHILE(NULL, job_not_ready());
        f.direct = new_backend("direct", iothread_get_aio_context(f.io),
                               BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                               f.src);
        blk_set_allow_aio_context_change(f.direct, true);
        start_writers(&f, 3000);
        writes_at_least(&f, 100);
        g_assert_cmpint(finish_job("m0", complete), ==, 0);
        wait_writers(&f);

        g_assert_true(blk_bs(f.guest) == f.tgt);
        g_assert_true(blk_bs(f.direct) == f.tgt);
        check_target_file(&f);
        blk_unref(f.direct);
        f.direct = NULL;
        fixture_cleanup(&f);
    }
}

/*
 * The source is held by nothing but its parents (an inline child, as
 * 'file' of a format node given by definition): the switch takes its last
 * parent, and it goes away while the job still holds its dirty bitmap.
 */
static void test_complete_source_freed_by_switch(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_init(&f);
    start_mirror(&f, MIRROR_COPY_MODE_BACKGROUND);
    AIO_WAIT_WHILE(NULL, job_not_ready());
    bdrv_unref(f.src);      /* the filter's edge holds it now */
    f.src = NULL;
    start_writers(&f, 100);
    wait_writers(&f);
    g_assert_cmpint(finish_job("m0", complete), ==, 0);
    g_assert_null(bdrv_find_node("src"));
    g_assert_true(blk_bs(f.guest) == f.tgt);
    check_target_file(&f);
    fixture_cleanup(&f);
}

static void test_cancel_under_writes(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    for (int it = 0; it < stress_iterations(); it++) {
        fixture_init(&f);
        start_writers(&f, 400);
        start_mirror(&f, it % 2 ? MIRROR_COPY_MODE_WRITE_BLOCKING
                                : MIRROR_COPY_MODE_BACKGROUND);
        writes_at_least(&f, 30);
        g_assert_cmpint(finish_job("m0", user_cancel), ==, -ECANCELED);
        g_assert_null(bdrv_find_node("mtop"));
        g_assert_true(blk_bs(f.guest) == f.src);
        /* The guest goes on writing the source without the job. */
        wait_writers(&f);
        fixture_cleanup(&f);
    }
}

/*
 * Issue #12's first crash, without QMP: job-cancel of a READY mirror, then
 * at once a move of its filter to another iothread.  The move drains and
 * takes the write lock, and the cancelled job finishes meanwhile; its
 * completion (which frees the filter) used to run inside the move's wait,
 * which then went on with the freed filter.  Completion is deferred work
 * now: the move sees a live filter (and a job that cannot move), and the
 * filter goes away only when the test, the outermost loop, lets deferred
 * work run.
 */
static void test_cancel_then_move_filter(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    for (int it = 0; it < MAX(stress_iterations(), 20); it++) {
        BlockDriverState *mtop;
        Error *err = NULL;
        Job *job;
        int ret;

        fixture_init(&f);
        start_mirror(&f, MIRROR_COPY_MODE_BACKGROUND);
        AIO_WAIT_WHILE(NULL, job_not_ready());
        mtop = bdrv_find_node("mtop");
        g_assert_nonnull(mtop);

        job_lock();
        job = job_get_locked("m0");
        job_user_cancel_locked(job, true, &error_abort);
        job_unlock();
        ret = bdrv_try_change_aio_context(mtop,
                                          iothread_get_aio_context(f.io1),
                                          NULL, &err);
        g_assert_cmpint(ret, <, 0);
        g_assert_nonnull(strstr(error_get_pretty(err), "block job"));
        error_free(err);
        g_assert_true(bdrv_find_node("mtop") == mtop);

        AIO_WAIT_WHILE_RUNNING_DEFERRED(bdrv_find_node("mtop") != NULL);
        g_assert_true(blk_bs(f.guest) == f.src);
        fixture_cleanup(&f);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();

    g_test_add_func("/mirror/complete-under-writes/background",
                    test_complete_background);
    g_test_add_func("/mirror/complete-under-writes/write-blocking",
                    test_complete_write_blocking);
    g_test_add_func("/mirror/complete-with-direct-writer",
                    test_complete_with_direct_writer);
    g_test_add_func("/mirror/complete-source-freed-by-switch",
                    test_complete_source_freed_by_switch);
    g_test_add_func("/mirror/cancel-under-writes", test_cancel_under_writes);
    g_test_add_func("/mirror/cancel-then-move-filter",
                    test_cancel_then_move_filter);
    return g_test_run();
}
