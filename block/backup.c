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
 * walks the copy bitmap in chunks, each copied by block_copy() between a
 * pause point and the rate limit, and ends with one block_copy() of the
 * whole image, which returns 0 only once no cluster is dirty and no task
 * (of the filter) is in flight: from then on no cluster can become dirty
 * again, so the target is complete.  sync=none yields until cancelled.
 * Errors go through block_job_error_action(): report fails the job,
 * ignore retries, stop pauses as job-pause does and retries on resume
 * (QEMU's behaviour).
 *
 * clean() (main loop, every outcome) removes the filter, drained and under
 * the write lock, giving the source back to its parents.
 *
 * Fields: everything is immutable after creation except cbw (BQL, cleared
 * by clean()); progress goes to the job core, which locks.
 */
#include "util/osdep.h"

#include "block/backup.h"
#include "block/block-copy.h"
#include "block/copy-before-write.h"
#include "block/job-driver.h"
#include "util/main-loop.h"

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
} BackupJob;

/* Block-copy's progress: copies by the filter count as well (as QEMU). */
static void backup_progress(void *opaque, int64_t bytes)
{
    job_progress_update(opaque, bytes);
}

/*
 * Copy [offset, offset + bytes) and apply the error policy.  Returns 0
 * (copied, or an ignored/stopped error: the caller retries), or -errno to
 * fail the job.
 */
static int coroutine_fn backup_copy(BackupJob *s, int64_t offset,
                                    int64_t bytes)
{
    bool is_read = false;
    int ret = 0;

    WITH_GRAPH_RDLOCK_GUARD() {
        ret = block_copy(s->bcs, offset, bytes, &is_read);
    }
    if (ret < 0) {
        BlockErrorAction action = block_job_error_action(
            &s->common, is_read ? s->on_source_error : s->on_target_error,
            is_read, -ret);

        if (action == BLOCK_ERROR_ACTION_REPORT) {
            return ret;
        }
        /* ignore: retry; stop: paused, retry after job-resume */
        return -EAGAIN;
    }
    return 0;
}

static int coroutine_fn backup_loop(BackupJob *s)
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
        next = bdrv_dirty_bitmap_next_dirty(bitmap, cursor, -1);
        if (next < 0 && cursor > 0) {
            /* Failed copies of the filter behind us are dirty again. */
            cursor = 0;
            continue;
        }
        if (next < 0) {
            /* Waits for the filter's copies in flight; 0 means done. */
            ret = backup_copy(s, 0, s->len);
            if (ret != -EAGAIN) {
                return ret;
            }
            continue;
        }
        bytes = MIN(BLOCK_COPY_MAX_CHUNK, s->len - next);
        job_ratelimit_wait(job, bytes);
        if (job_is_cancelled(job)) {
            return 0;
        }
        ret = backup_copy(s, next, bytes);
        if (ret == -EAGAIN) {
            continue;
        }
        if (ret < 0) {
            return ret;
        }
        cursor = next + bytes;
    }
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
{
    if (source == target) {
        error_setg(errp, "Source and target cannot be the same");
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
