/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The mirror block job (block/jobs/mirror.c): copies a node (the source) to
 * another (the target) while the source stays in use, then optionally
 * switches the source's users over to the target.  See docs/jobs.md.
 *
 * Main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef BLOCK_MIRROR_H
#define BLOCK_MIRROR_H

#include "block/blockjob.h"

/* QEMU's MirrorSyncMode (the modes mirror supports), in its order. */
typedef enum MirrorSyncMode {
    MIRROR_SYNC_MODE_TOP,       /* as full: raw nodes have no backing */
    MIRROR_SYNC_MODE_FULL,
    MIRROR_SYNC_MODE_NONE,      /* only what is written from now on */
    MIRROR_SYNC_MODE_INCREMENTAL,   /* refused, as QEMU's mirror does */
    MIRROR_SYNC_MODE_BITMAP,        /* refused, as QEMU's mirror does */
    MIRROR_SYNC_MODE__MAX,
} MirrorSyncMode;

/* QEMU's MirrorCopyMode. */
typedef enum MirrorCopyMode {
    MIRROR_COPY_MODE_BACKGROUND,
    MIRROR_COPY_MODE_WRITE_BLOCKING,
    MIRROR_COPY_MODE__MAX,
} MirrorCopyMode;

/* NULL-terminated wire names, for OPT_ENUM. */
extern const char *const mirror_sync_mode_names[];
extern const char *const mirror_copy_mode_names[];

/* blockdev-mirror's arguments, looked up and checked by the caller
 * except where said. */
typedef struct MirrorArgs {
    const char *job_id;             /* NULL: the source's node name */
    BlockDriverState *source;
    BlockDriverState *target;
    const char *replaces;           /* NULL: the source; checked here */
    MirrorSyncMode sync;
    int64_t speed;
    uint32_t granularity;           /* 0: default; checked here */
    int64_t buf_size;               /* 0: default; checked here */
    BlockdevOnError on_source_error;
    BlockdevOnError on_target_error;
    const char *filter_node_name;   /* NULL: an implicit name */
    MirrorCopyMode copy_mode;
    bool auto_finalize;
    bool auto_dismiss;
} MirrorArgs;

/*
 * Insert the mirror_top filter above the source, create the job and start
 * it.  On failure nothing is left behind and @errp is set (QEMU's
 * messages).
 */
bool mirror_start(const MirrorArgs *args, Error **errp) GRAPH_UNLOCKED
    TSA_REQUIRES(bql);

/*
 * QEMU mirrors root nodes only: a node with a node above it, or one a
 * block job works on, is refused with QEMU's "Need a root block node".
 * Callers check the source as soon as they have looked it up (QEMU's
 * order of errors).  Main loop.
 */
bool mirror_check_source(BlockDriverState *source, Error **errp);

#endif /* BLOCK_MIRROR_H */
