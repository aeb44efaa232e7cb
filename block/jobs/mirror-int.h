/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the mirror job (block/jobs/mirror.c) and its filter node
 * (block/jobs/mirror-top.c) share.  Private to block/.
 *
 * Operations: every copy of a range from source to target (the job's
 * background copies) and every write-blocking guest write (the filter's
 * active writes) is a MirrorOp on the job's ops list while it runs.  Ops
 * never overlap: a new one waits for every older overlapping one first, so
 * a region is never copied twice at once and an old copy can never land on
 * the target after a newer guest write to it.  The list is under ops_lock
 * (a BdMutex: active writes may run in other iothreads than the job, with
 * a multiqueue export); the waits drop it (co_queue_wait_bd()).
 */
#ifndef BLOCK_MIRROR_INT_H
#define BLOCK_MIRROR_INT_H

#include "block/blockjob.h"
#include "block/dirty-bitmap.h"
#include "block/mirror.h"
#include "util/co-lock.h"

typedef struct MirrorBlockJob MirrorBlockJob;

typedef struct MirrorOp {
    int64_t offset;
    int64_t bytes;
    bool is_active_write;               /* immutable */
    CoQueue waiters;                    /* ops_lock: ops waiting for this */
    QLIST_ENTRY(MirrorOp) next;         /* ops_lock */
} MirrorOp;

struct MirrorBlockJob {
    BlockJob common;

    /* Immutable once the job is created. */
    BlockDriverState *mirror_top_bs;    /* the filter (our reference) */
    BlockDriverState *source;           /* referenced */
    BlockDriverState *target;
    BlockDriverState *to_replace;       /* NULL: the source; referenced */
    BlockBackend *target_blk;
    BdrvDirtyBitmap *dirty_bitmap;
    MirrorSyncMode sync;
    MirrorCopyMode copy_mode;
    BlockdevOnError on_source_error;
    BlockdevOnError on_target_error;
    int64_t granularity;
    int64_t buf_size;
    int64_t max_op_bytes;

    /* Set by job-complete in the main loop, read by the job.  atomic */
    bool should_complete;
    /*
     * The job is READY, idle, and about to wait (or waits) for writes:
     * set by the job's coroutine, cleared by it when it goes on or by the
     * first writer that kicks it (mirror_kick()), so that one write per
     * idle period, not every write, pays for the wake-up.  atomic
     */
    bool waiting_for_writes;

    BdMutex ops_lock;
    QLIST_HEAD(, MirrorOp) ops;         /* ops_lock */
    int64_t bytes_in_flight;            /* ops_lock: background copies */
    int ops_in_flight;                  /* ops_lock: background copies */
    CoQueue op_done;                    /* ops_lock: the job waits here */

    int ret;                            /* ops_lock: first reported error */

    /* The job's coroutine only. */
    int64_t cursor;                     /* where the next search starts */

    /* Main loop only. */
    bool exited;                        /* mirror_exit() ran */
};

/*
 * Register an op on [offset, offset + bytes) once no older op overlaps it
 * (waiting for them).  Coroutine, any thread.
 */
void coroutine_fn mirror_op_begin(MirrorBlockJob *s, MirrorOp *op,
                                  int64_t offset, int64_t bytes,
                                  bool is_active_write);
/* Unregister @op and wake whoever waits for it or for any op. */
void coroutine_fn mirror_op_end(MirrorBlockJob *s, MirrorOp *op);

/*
 * A write through the filter completed (the source's dirty bitmap, or the
 * filter, has recorded it): wake the job if it waits for writes.  Cheap
 * when it does not (a barrier and an atomic read).  Called concurrently
 * from any thread, in a request of the filter, so the job is alive: it is
 * detached from the filter in a drained section before it goes away.
 */
void mirror_kick(MirrorBlockJob *s);

/*
 * An I/O error (positive errno) on the source (@is_read) or the target:
 * apply on-source-error / on-target-error (block_job_error_action()) and,
 * for "report", remember it as the job's result.  Any thread.
 */
BlockErrorAction mirror_report_error(MirrorBlockJob *s, bool is_read,
                                     int error);

/* --- The filter (mirror-top.c) ------------------------------------------- */

/*
 * Open a mirror_top node (named @node_name, or implicitly) over @source.
 * It records nothing until mirror_top_set_job().  Main loop.
 */
BlockDriverState *mirror_top_open(BlockDriverState *source,
                                  const char *node_name, Error **errp)
    GRAPH_UNLOCKED;
/*
 * Attach (@s) or detach (NULL) the job whose copy mode the filter applies.
 * Main loop, with @bs drained.
 */
void mirror_top_set_job(BlockDriverState *bs, MirrorBlockJob *s);

#endif /* BLOCK_MIRROR_INT_H */
