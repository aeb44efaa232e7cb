/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The backup block job (block/jobs/backup.c): a point-in-time copy of a source
 * node to a target node while the source keeps changing, as QEMU's
 * blockdev-backup.  A copy-before-write filter above the source saves the
 * old content of clusters before they are overwritten; the job copies the
 * rest (sync=full), or nothing itself (sync=none: it runs until cancelled
 * and the target receives only what the filter saves).
 *
 * Main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef BLOCK_BACKUP_H
#define BLOCK_BACKUP_H

#include "block/blockjob.h"

/* QEMU's MirrorSyncMode, in its order. */
typedef enum BackupSyncMode {
    BACKUP_SYNC_MODE_TOP,
    BACKUP_SYNC_MODE_FULL,
    BACKUP_SYNC_MODE_NONE,
    BACKUP_SYNC_MODE_INCREMENTAL,
    BACKUP_SYNC_MODE_BITMAP,
    BACKUP_SYNC_MODE__MAX,
} BackupSyncMode;

/* NULL-terminated wire names, for OPT_ENUM. */
extern const char *const backup_sync_mode_names[];

typedef struct BackupOptions {
    const char *job_id;             /* required */
    BackupSyncMode sync;
    int64_t speed;                  /* bytes/s, 0 = unlimited */
    BlockdevOnError on_source_error;
    BlockdevOnError on_target_error;
    int flags;                      /* JobCreateFlags */
    const char *filter_node_name;   /* NULL: an implicit name */
} BackupOptions;

/*
 * Insert the filter above @source and create the job (CREATED; the
 * caller starts it with job_start()).  @target must be in @source's
 * AioContext and have its size.  On failure nothing is left behind.
 */
BlockJob *backup_job_create(BlockDriverState *source,
                            BlockDriverState *target,
                            const BackupOptions *opts, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);

#endif /* BLOCK_BACKUP_H */
