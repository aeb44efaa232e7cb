/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The backup job (see include/block/backup.h), QEMU's blockdev-backup.
 *
 * Creation (main loop): the copy-before-write filter goes above the
 * source, drained and under the graph write lock, so every writer of the
 * source (an NBD export in an iothread) now writes through it; its copy
 * bitmap has every cluster dirty.  The job is a parent of the filter and
 * of the target (perm 0: it does its I/O through the filter's block-copy
 * state, on the filter's edges).
 *
 * run() (the job's coroutine, in the source's AioContext): sync=full
 * walks the copy bitmap in chunks, each started between a pause point and
 * the rate limit and copied by block_copy() in a worker coroutine of its
 * own (same AioContext), up to BACKUP_MAX_WORKERS at once, as QEMU's
 * backup runs parallel block-copy tasks: one chunk at a time leaves the
 * disk idle while each read waits for the write before it.  Once the walk
 * finds nothing dirty and no worker runs, one block_copy() of the whole
 * image returns 0 only once no cluster is dirty and no task (of the
 * filter) is in flight: from then on no cluster can become dirty again,
 * so the target is complete.  sync=none yields until cancelled.
 * Errors go through block_job_error_action(): report fails the job,
 * ignore retries, stop pauses as job-pause does and retries on resume
 * (QEMU's behaviour).
 *
 * clean() (main loop, every outcome) removes the filter, drained and under
 * the write lock, giving the source back to its parents.
 *
 * Fields: everything is immutable after creation except cbw (BQL, cleared
 * by clean()) and the workers' state (workers_lock); progress goes to the
 * job core, which locks.
 */
#include "util/osdep.h"

#include "block/backup.h"
#include "block/block-copy.h"
#include "block/copy-before-write.h"
#include "block/job-driver.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

/*
 * Chunks (BLOCK_COPY_MAX_CHUNK) the job copies at once: 32 MiB of bounce
 * buffers, half of block-copy's budget, so the filter's copies of guest
 * writes always find room.  Fewer leave the disk idle: with one chunk at
 * a time the job copied at about half of QSD's speed, with 16 at about
 * two thirds (scripts/bench-jobs, docs/benchmarks.md).
 */
#define BACKUP_MAX_WORKERS  32

const char *const backup_sync_mode_names[] = {
    "top", "full", "none", "incremental", "bitmap", NULL,
};

typedef struct BackupJob {
    BlockJob common;                /* first */
    BlockDriverState *cbw;          /* BQL: the filter, NULL once removed */
    BlockCopyState *bcs;            /* immutable: the filter's */
    BackupSyncMode sync;            /* immutable */
    BlockdevOnError on_source_error;    /* immutable */
    BlockdevOnError on_target_error;    /* immutable */
    int64_t len;                    /* immutable */

    /*
     * The job's coroutine and its workers run in the job's AioContext;
     * the lock keeps that an implementation detail, as mirror's ops_lock.
     */
    BdMutex workers_lock;
    int workers;                    /* workers_lock: copies in flight */
    int worker_err;                 /* workers_lock: first failure, -errno */
    bool worker_err_is_read;        /* workers_lock: of worker_err */
    CoQueue worker_done;            /* workers_lock: the job waits here */
} BackupJob;

/* Block-copy's progress: copies by the filter count as well (as QEMU). */
static void backup_progress(void *opaque, int64_t bytes)
{
    job_progress_update(opaque, bytes);
}

/*
 * Apply the error policy to a failed copy.  Returns -errno to fail the
 * job (report), or -EAGAIN: ignored, or stopped (the job pauses at its
 * next pause point); the failed clusters are dirty again, to retry.
 */
static int backup_error_action(BackupJob *s, int ret, bool is_read)
{
    BlockErrorAction action = block_job_error_action(
        &s->common, is_read ? s->on_source_error : s->on_target_error,
        is_read, -ret);

    return action == BLOCK_ERROR_ACTION_REPORT ? ret : -EAGAIN;
}

/* Copy [offset, offset + bytes); 0, or backup_error_action()'s result. */
static int coroutine_fn backup_copy(BackupJob *s, int64_t offset,
                                    int64_t bytes)
{
    bool is_read = false;
    int ret = 0;

    WITH_GRAPH_RDLOCK_GUARD() {
        ret = block_copy(s->bcs, offset, bytes, &is_read);
    }
    return ret < 0 ? backup_error_action(s, ret, is_read) : 0;
}

typedef struct BackupWorker {
    BackupJob *s;
    int64_t offset;
    int64_t bytes;
} BackupWorker;

/*
 * One chunk.  A failure is only recorded: the job applies the policy once
 * for all the workers that fail together, as QEMU's backup does for one
 * block-copy call, so a failing target sends one BLOCK_JOB_ERROR, not one
 * per chunk in flight.
 */
static void coroutine_fn backup_co_worker(void *opaque)
{
    BackupWorker *w = opaque;
    BackupJob *s = w->s;
    bool is_read = false;
    int ret = 0;

    WITH_GRAPH_RDLOCK_GUARD() {
        ret = block_copy(s->bcs, w->offset, w->bytes, &is_read);
    }
    bd_mutex_lock(&s->workers_lock);
    if (ret < 0 && !s->worker_err) {
        s->worker_err = ret;
        s->worker_err_is_read = is_read;
    }
    s->workers--;
    co_queue_restart_all(&s->worker_done);
    bd_mutex_unlock(&s->workers_lock);
    g_free(w);
}

/* Sleep until fewer than @max workers run (@max 1: none). */
static void coroutine_fn backup_wait_workers(BackupJob *s, int max)
{
    bd_mutex_lock(&s->workers_lock);
    while (s->workers >= max && s->workers > 0) {
        co_queue_wait_bd(&s->worker_done, &s->workers_lock);
    }
    bd_mutex_unlock(&s->workers_lock);
}

static int backup_workers_running(BackupJob *s)
{
    int n;

    bd_mutex_lock(&s->workers_lock);
    n = s->workers;
    bd_mutex_unlock(&s->workers_lock);
    return n;
}

/*
 * If a worker failed: wait for all of them (their failed clusters are
 * dirty again), then apply the policy to the first failure.  0 if none
 * failed, else as backup_error_action().
 */
static int coroutine_fn backup_worker_error(BackupJob *s)
{
    bool is_read;
    int err;

    bd_mutex_lock(&s->workers_lock);
    err = s->worker_err;
    bd_mutex_unlock(&s->workers_lock);
    if (!err) {
        return 0;
    }
    backup_wait_workers(s, 1);
    bd_mutex_lock(&s->workers_lock);
    err = s->worker_err;
    is_read = s->worker_err_is_read;
    s->worker_err = 0;
    bd_mutex_unlock(&s->workers_lock);
    return backup_error_action(s, err, is_read);
}

static void coroutine_fn backup_start_worker(BackupJob *s, int64_t offset,
                                             int64_t bytes)
{
    BackupWorker *w = g_new0(BackupWorker, 1);

    w->s = s;
    w->offset = offset;
    w->bytes = bytes;
    bd_mutex_lock(&s->workers_lock);
    s->workers++;
    bd_mutex_unlock(&s->workers_lock);
    /* Runs once this coroutine yields. */
    aio_co_enter(job_get_aio_context(&s->common.job),
                 co_create(backup_co_worker, w));
}

static int coroutine_fn backup_walk(BackupJob *s)
{
    Job *job = &s->common.job;
    BdrvDirtyBitmap *bitmap = block_copy_dirty_bitmap(s->bcs);
    int64_t cursor = 0;
    int ret;

    for (;;) {
        int64_t next, bytes;

        job_pause_point(job);
        if (job_is_cancelled(job)) {
            return 0;
        }
        ret = backup_worker_error(s);
        if (ret == -EAGAIN) {
            continue;               /* ignored, or pause at the top */
        }
        if (ret < 0) {
            return ret;
        }
        next = bdrv_dirty_bitmap_next_dirty(bitmap, cursor, -1);
        if (next < 0 && backup_workers_running(s) > 0) {
            /*
             * Look behind the cursor only once no worker runs: a chunk
             * handed to a worker stays dirty until the worker starts.
             */
            backup_wait_workers(s, 1);
            continue;
        }
        if (next < 0 && cursor > 0) {
            /* Failed copies behind us are dirty again. */
            cursor = 0;
            continue;
        }
        if (next < 0) {
            /* No worker runs.  Waits for the filter's copies in flight;
             * 0 means done. */
            ret = backup_copy(s, 0, s->len);
            if (ret != -EAGAIN) {
                return ret;
            }
            continue;
        }
        bytes = MIN(BLOCK_COPY_MAX_CHUNK, s->len - next);
        backup_wait_workers(s, BACKUP_MAX_WORKERS);
        job_ratelimit_wait(job, bytes);
        if (job_is_cancelled(job)) {
            return 0;
        }
        backup_start_worker(s, next, bytes);
        cursor = next + bytes;
    }
}

static int coroutine_fn backup_loop(BackupJob *s)
{
    int ret = backup_walk(s);

    /* No worker may outlive the loop: they use the job.  Their failures
     * after the walk ended (cancelled or failed) no longer matter. */
    backup_wait_workers(s, 1);
    return ret;
}

static int coroutine_fn backup_run(Job *job, Error **errp)
{
    BackupJob *s = container_of(job, BackupJob, common.job);

    WITH_GRAPH_RDLOCK_GUARD() {
        block_copy_probe_target_zero(s->bcs);
    }
    if (s->sync == BACKUP_SYNC_MODE_NONE) {
        /* Only the filter copies, until the user cancels. */
        while (!job_is_cancelled(job)) {
            job_yield(job);
        }
        return 0;
    }
    return backup_loop(s);
}

static void backup_clean(Job *job)
{
    BackupJob *s = container_of(job, BackupJob, common.job);

    GLOBAL_STATE_CODE();
    if (s->cbw) {
        bdrv_cbw_drop(s->cbw);
        s->cbw = NULL;
    }
    bd_mutex_destroy(&s->workers_lock);
}

static const JobDriver backup_job_driver = {
    .instance_size = sizeof(BackupJob),
    .job_type = "backup",
    .run = backup_run,
    .clean = backup_clean,
    .free = block_job_free,
};

static bool backup_check(BlockDriverState *source, BlockDriverState *target,
                         const BackupOptions *opts, Error **errp)
    TSA_REQUIRES(bql)
{
    if (source == target) {
        error_setg(errp, "Source and target cannot be the same");
        return false;
    }
    /* As QEMU: the source may be backed up twice, not a job's node. */
    if (!block_job_check_node(source, errp) ||
        !block_job_check_node(target, errp)) {
        return false;
    }
    if (opts->sync != BACKUP_SYNC_MODE_FULL &&
        opts->sync != BACKUP_SYNC_MODE_NONE) {
        error_setg(errp, "Sync mode '%s' not supported",
                   backup_sync_mode_names[opts->sync]);
        return false;
    }
    if (bdrv_getlength(source) != bdrv_getlength(target)) {
        error_setg(errp, "Source and target image have different sizes");
        return false;
    }
    if (bdrv_get_aio_context(source) != bdrv_get_aio_context(target)) {
        error_setg(errp, "Source '%s' and target '%s' are in different "
                   "iothreads", bdrv_get_node_name(source), bdrv_get_node_name(target));
        return false;
    }
    return true;
}

BlockJob *backup_job_create(BlockDriverState *source,
                            BlockDriverState *target,
                            const BackupOptions *opts, Error **errp)
{
    BlockCopyState *bcs;
    BlockDriverState *cbw;
    BackupJob *s;

    GLOBAL_STATE_CODE();
    if (!backup_check(source, target, opts, errp)) {
        return NULL;
    }
    cbw = bdrv_cbw_append(source, target, opts->filter_node_name, &bcs,
                          errp);
    if (!cbw) {
        return NULL;
    }
    s = block_job_create(opts->job_id, &backup_job_driver, NULL, cbw, 0,
                         BLK_PERM_ALL, opts->speed, opts->flags, NULL, NULL,
                         errp);
    if (!s) {
        bdrv_cbw_drop(cbw);
        return NULL;
    }
    bd_mutex_init(&s->workers_lock);
    co_queue_init(&s->worker_done);
    s->cbw = cbw;
    s->bcs = bcs;
    s->sync = opts->sync;
    s->on_source_error = opts->on_source_error;
    s->on_target_error = opts->on_target_error;
    s->len = block_copy_len(bcs);
    if (!block_job_add_bdrv(&s->common, "target", target, 0, BLK_PERM_ALL,
                            errp)) {
        /* Never started: the cancel concludes it and clean() drops cbw. */
        job_lock();
        job_cancel_locked(&s->common.job, true);
        job_unlock();
        return NULL;
    }
    /*
     * Drained: no copy of the filter is in flight, so what is still dirty
     * is exactly what will be counted from now on.
     */
    bdrv_drained_begin(cbw);
    block_copy_set_progress_callback(bcs, backup_progress, &s->common.job);
    job_progress_set_remaining(&s->common.job,
                               bdrv_get_dirty_count(
                                   block_copy_dirty_bitmap(bcs)));
    bdrv_drained_end(cbw);
    return &s->common;
}
