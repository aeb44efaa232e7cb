/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An idle READY mirror waits for writes, not for a timer: once READY and
 * in sync, the job is yielded with no sleep timer armed; a guest write
 * through the filter wakes it, it copies the write and goes back to the
 * same wait, all within a bounded number of non-blocking event-loop
 * iterations (so nothing here waits for a clock: had the job slept on a
 * timer, the write would still be dirty after them).  job-complete and a
 * soft cancel wake it the same way.  null-co nodes in the main loop, so
 * every request completes without waiting for the kernel.
 */
#include "util/osdep.h"

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/job-monitor.h"
#include "block/mirror.h"
#include "util/aio-wait.h"
#include "util/main-loop.h"

#define IMG_SIZE    (4 * 1024 * 1024)
/* Non-blocking loop iterations a wake-up and a copy may take, at most. */
#define MAX_ITERATIONS  100

typedef struct Fixture {
    BlockDriverState *src, *tgt;
    BlockBackend *guest;
} Fixture;

static BlockDriverState *open_null(const char *name)
{
    GLOBAL_STATE_CODE();
    return open_node(&error_abort, "{\"driver\": \"null-co\", \"node-name\": "
                     "\"%s\", \"size\": %d, \"read-zeroes\": true}", name,
                     IMG_SIZE);
}

static void fixture_init(Fixture *f, MirrorCopyMode mode)
{
    MirrorArgs a = {
        .job_id = "m0",
        .sync = MIRROR_SYNC_MODE_FULL,
        .granularity = 4096,
        .filter_node_name = "mtop",
        .copy_mode = mode,
        .auto_finalize = true,
        .auto_dismiss = true,
    };

    GLOBAL_STATE_CODE();
    f->src = open_null("src");
    f->tgt = open_null("tgt");
    f->guest = new_backend("guest", main_context(),
                           BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, f->src);
    a.source = f->src;
    a.target = f->tgt;
    g_assert_true(mirror_start(&a, &error_abort));
}

static void fixture_cleanup(Fixture *f)
{
    GLOBAL_STATE_CODE();
    blk_unref(f->guest);
    bdrv_unref(f->src);
    bdrv_unref(f->tgt);
}

typedef struct JobView {
    bool ready, busy, sleeping;
    uint64_t current, total;
} JobView;

static JobView job_view(void)
{
    JobView v;
    Job *job;

    GLOBAL_STATE_CODE();
    job_lock();
    job = job_get_locked("m0");
    g_assert_nonnull(job);
    v = (JobView) {
        .ready = job->status == JOB_STATUS_READY,
        .busy = job->busy,
        .sleeping = job->sleeping,
        .current = job->progress_current,
        .total = job->progress_total,
    };
    job_unlock();
    return v;
}

/* READY, in sync and yielded. */
static bool job_idle(JobView v)
{
    return v.ready && !v.busy && v.current == v.total;
}

/* Idle, and with no sleep timer: only an event can wake it. */
static bool job_waits_for_writes(JobView v)
{
    return job_idle(v) && !v.sleeping;
}

/* Run the main loop without blocking until the job waits for writes. */
static JobView settle_job(void)
{
    JobView v = job_view();

    for (int i = 0; i < MAX_ITERATIONS && !job_waits_for_writes(v); i++) {
        aio_poll(main_context(), false);
        v = job_view();
    }
    return v;
}

/* READY and idle (the yield kicks AioWait); then it must not sleep. */
static void wait_ready(void)
{
    AIO_WAIT_WHILE(NULL, !job_idle(job_view()));
    g_assert_false(job_view().sleeping);
}

/*
 * Eight writes to a job waiting for writes: each one is copied by the job
 * (@copies: background mode) or was written through by the filter, and
 * the job is back to waiting after a bounded number of iterations.
 */
static void check_write_wakes_job(Fixture *f, bool copies)
{
    g_autofree uint8_t *buf = g_malloc(65536);
    JobView v;

    GLOBAL_STATE_CODE();
    wait_ready();
    v = settle_job();
    g_assert_true(job_waits_for_writes(v));

    for (int i = 0; i < 8; i++) {
        uint64_t copied = v.current;

        memset(buf, i + 1, 65536);
        g_assert_cmpint(blk_pwrite(f->guest, i * 262144, 65536, buf, 0),
                        ==, 0);
        v = settle_job();
        g_assert_true(job_waits_for_writes(v));
        g_assert_cmpuint(v.current, ==, copied + (copies ? 65536 : 0));
    }
}

static void test_background_write_wakes(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_init(&f, MIRROR_COPY_MODE_BACKGROUND);
    check_write_wakes_job(&f, true);
    g_assert_cmpint(finish_job("m0", complete), ==, 0);
    g_assert_true(blk_bs(f.guest) == f.tgt);
    fixture_cleanup(&f);
}

static void test_write_blocking_write_wakes(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_init(&f, MIRROR_COPY_MODE_WRITE_BLOCKING);
    check_write_wakes_job(&f, false);
    g_assert_cmpint(finish_job("m0", complete), ==, 0);
    g_assert_true(blk_bs(f.guest) == f.tgt);
    fixture_cleanup(&f);
}

static void test_soft_cancel_wakes(void)
{
    Fixture f;

    GLOBAL_STATE_CODE();
    fixture_init(&f, MIRROR_COPY_MODE_BACKGROUND);
    wait_ready();
    g_assert_true(job_waits_for_writes(settle_job()));
    g_assert_cmpint(finish_job("m0", soft_cancel), ==, 0);
    g_assert_true(blk_bs(f.guest) == f.src);
    g_assert_null(bdrv_find_node("mtop"));
    fixture_cleanup(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();

    g_test_add_func("/mirror-wakeup/background-write",
                    test_background_write_wakes);
    g_test_add_func("/mirror-wakeup/write-blocking-write",
                    test_write_blocking_write_wakes);
    g_test_add_func("/mirror-wakeup/soft-cancel", test_soft_cancel_wakes);
    return g_test_run();
}
