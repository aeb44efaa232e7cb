/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP blockdev-backup (QEMU's qapi/block-core.json BlockdevBackup): a
 * backup job from node @device to node @target.
 *
 * The arguments blockd implements keep QEMU's names and defaults; sync
 * modes that need backing files or named bitmaps (top, incremental,
 * bitmap) and compress=true are refused with a message that says so.  As
 * in QEMU, the target is first moved to the source's iothread; if the
 * command then fails, it is moved back, so a failed command changes
 * nothing.  blockd has no device names: @device and @target are node
 * names, and job-id defaults to @device.
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/backup.h"
#include "block/job-driver.h"
#include "block/job-monitor.h"
#include "qmp/backup.h"
#include "qmp/qmp.h"
#include "util/aio-wait.h"
#include "util/main-loop.h"

static const OptDesc blockdev_backup_args[] = {
    { "job-id", OPT_STRING,
      .help = "the job's id (default: the device's node name)" },
    { "device", OPT_STRING, .required = true,
      .help = "node name of the source" },
    { "target", OPT_STRING, .required = true,
      .help = "node name of the target (same size as the source)" },
    { "sync", OPT_ENUM, .required = true,
      .enum_values = backup_sync_mode_names,
      .help = "'full': copy everything; 'none': only what the guest "
              "overwrites ('top', 'incremental', 'bitmap' are refused)" },
    { "speed", OPT_INT, .def = "0",
      .help = "rate limit in bytes per second, 0 for unlimited" },
    { "on-source-error", OPT_ENUM, .def = "report",
      .enum_values = blockdev_on_error_names,
      .help = "report, ignore (retry), stop (pause), enospc, auto" },
    { "on-target-error", OPT_ENUM, .def = "report",
      .enum_values = blockdev_on_error_names,
      .help = "report, ignore (retry), stop (pause), enospc, auto" },
    { "auto-finalize", OPT_BOOL, .def = "true",
      .help = "finalize as soon as the job is done" },
    { "auto-dismiss", OPT_BOOL, .def = "true",
      .help = "dismiss as soon as the job has concluded" },
    { "filter-node-name", OPT_STRING,
      .help = "node name of the copy-before-write filter" },
    { "compress", OPT_BOOL, .def = "false",
      .help = "compress the target's data (not supported: must be false)" },
    { NULL }
};

/*
 * The job's coroutine runs (has not reached a pause point yet, nor
 * finished: a job that failed at once waits for its completion, which is
 * deferred work and cannot run inside our wait).
 */
static bool job_is_busy(Job *job)
{
    bool busy;

    job_lock();
    busy = job_is_busy_locked(job);
    job_unlock();
    return busy;
}

static void qmp_blockdev_backup(struct json_object *args,
                                struct json_object **ret, Error **errp)
{
    const char *device = opts_get_str(args, "device");
    BackupOptions opts = {
        .job_id = opts_get_str(args, "job-id"),
        .sync = opts_get_enum(args, "sync", backup_sync_mode_names,
                              BACKUP_SYNC_MODE_FULL),
        .speed = opts_get_int(args, "speed", 0),
        .on_source_error = opts_get_enum(args, "on-source-error",
                                         blockdev_on_error_names,
                                         BLOCKDEV_ON_ERROR_REPORT),
        .on_target_error = opts_get_enum(args, "on-target-error",
                                         blockdev_on_error_names,
                                         BLOCKDEV_ON_ERROR_REPORT),
        .filter_node_name = opts_get_str(args, "filter-node-name"),
    };
    BlockDriverState *source, *target;
    AioContext *old_ctx;
    BlockJob *job;

    GLOBAL_STATE_CODE();
    source = bdrv_lookup_bs(device, device, errp);
    target = source ? bdrv_lookup_bs(opts_get_str(args, "target"),
                                     opts_get_str(args, "target"), errp)
                    : NULL;
    if (!target) {
        return;
    }
    if (opts_get_bool(args, "compress", false)) {
        error_setg(errp, "Compression is not supported for this drive %s",
                   bdrv_get_node_name(target));
        return;
    }
    if (!opts.job_id) {
        opts.job_id = device;
    }
    if (!opts_get_bool(args, "auto-finalize", true)) {
        opts.flags |= JOB_MANUAL_FINALIZE;
    }
    if (!opts_get_bool(args, "auto-dismiss", true)) {
        opts.flags |= JOB_MANUAL_DISMISS;
    }

    /*
     * As QEMU: the source stays drained from before the target moves to
     * its iothread until the job has started, so the job begins paused
     * (its first pause point) and resumes when the drain ends; clients see
     * QEMU's created, running, paused, running.
     */
    /* Before the target moves: QEMU refuses a job's node first. */
    if (source != target && (!block_job_check_node(source, errp) ||
                             !block_job_check_node(target, errp))) {
        return;
    }
    bdrv_drained_begin(source);
    old_ctx = bdrv_get_aio_context(target);
    if (source == target ||
        bdrv_try_change_aio_context(target, bdrv_get_aio_context(source),
                                    NULL, errp) == 0) {
        job = backup_job_create(source, target, &opts, errp);
    } else {
        job = NULL;
    }
    if (job) {
        job_start(&job->job);
        AIO_WAIT_WHILE(NULL, job_is_busy(&job->job));
    } else if (bdrv_get_aio_context(target) != old_ctx) {
        Error *local_err = NULL;

        if (bdrv_try_change_aio_context(target, old_ctx, NULL,
                                        &local_err) < 0) {
            warn_report_err(local_err);
        }
    }
    bdrv_drained_end(source);
}

static const QmpCommand backup_commands[] = {
    { "blockdev-backup", blockdev_backup_args, qmp_blockdev_backup, 0,
      "start a point-in-time backup of a node to another node" },
    { NULL }
};

void qmp_backup_init(void)
{
    GLOBAL_STATE_CODE();
    qmp_register_commands(backup_commands);
}
