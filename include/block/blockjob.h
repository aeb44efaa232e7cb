/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockJob: a Job that does I/O on block nodes.  It is a parent in the
 * graph through one BlockBackend per node it uses (request queuing
 * disabled: the job's own coroutine must finish its requests for a drain
 * to end), whose dev ops pause the job while any of its nodes is drained
 * and resume it after.  It sends QEMU's block-job events (BLOCK_JOB_READY,
 * BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED, BLOCK_JOB_PENDING,
 * BLOCK_JOB_ERROR) and applies on-source-error / on-target-error.
 *
 * Creation and teardown are main-loop code; block_job_error_action() runs
 * in the job's coroutine.  A block job type's JobDriver must set
 * .free = block_job_free.
 */
#ifndef BLOCK_BLOCKJOB_H
#define BLOCK_BLOCKJOB_H

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/job-driver.h"
#include "block/job-monitor.h"

/* QEMU's BlockdevOnError. */
typedef enum BlockdevOnError {
    BLOCKDEV_ON_ERROR_REPORT,
    BLOCKDEV_ON_ERROR_IGNORE,
    BLOCKDEV_ON_ERROR_ENOSPC,       /* stop on ENOSPC, else report */
    BLOCKDEV_ON_ERROR_STOP,
    BLOCKDEV_ON_ERROR_AUTO,         /* as enospc, for jobs */
    BLOCKDEV_ON_ERROR__MAX,
} BlockdevOnError;

/* NULL-terminated wire names, for OPT_ENUM. */
extern const char *const blockdev_on_error_names[];

typedef enum BlockErrorAction {
    BLOCK_ERROR_ACTION_IGNORE,
    BLOCK_ERROR_ACTION_REPORT,
    BLOCK_ERROR_ACTION_STOP,
} BlockErrorAction;

typedef struct BlockJob {
    Job job;                        /* first */
    BlockBackend *blk;              /* immutable: the main node's backend */
    /* Further nodes' backends (block_job_add_bdrv()).  BQL */
    GSList *extra_blks;
    /*
     * Nodes the job works on, with a reference each: no other block job
     * may start on them (block_job_check_node()) until this one is freed,
     * as QEMU's op blockers.  BQL
     */
    GSList *blocked_nodes;
    /* QEMU's io-status: an I/O error stopped the job (on-*-error=stop, or
     * enospc/auto on ENOSPC) and it was not resumed since. */
    bool iostatus_failed TSA_GUARDED_BY(job_mutex);
    bool iostatus_nospace TSA_GUARDED_BY(job_mutex);   /* ... ENOSPC */
} BlockJob;

/*
 * Create a block job on @bs: a Job (see job_create(); @job_id NULL means
 * the node name), a BlockBackend on @bs taking @perm and sharing
 * @shared_perm, and @speed.  Main loop.
 */
void *block_job_create(const char *job_id, const JobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, uint64_t perm,
                       uint64_t shared_perm, int64_t speed, int flags,
                       JobCompletionFunc *cb, void *opaque, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);

/* Use another node too (its drains pause the job as well).  Main loop. */
bool block_job_add_bdrv(BlockJob *job, const char *name,
                        BlockDriverState *bs, uint64_t perm,
                        uint64_t shared_perm, Error **errp) GRAPH_UNLOCKED
    TSA_REQUIRES(bql);

/*
 * Mark @bs as used by @job (block_job_create() and block_job_add_bdrv()
 * do so for their nodes; jobs call it for the others they work on, such
 * as a filter's source).  Main loop.
 */
void block_job_block_node(BlockJob *job, BlockDriverState *bs);

/* Whether a block job uses @bs (its blocked nodes).  Main loop. */
bool block_job_uses_node(BlockDriverState *bs);

/*
 * Whether a new block job may use @bs: false, with QEMU's "Node 'X' is
 * busy: block device is in use by block job: mirror", if a job uses it.
 * Main loop.
 */
bool block_job_check_node(BlockDriverState *bs, Error **errp);

/* The JobDriver.free of every block job type. */
void block_job_free(Job *job);

/* The block job for @job, or NULL if @job is not one. */
BlockJob *block_job_from_job(Job *job) TSA_REQUIRES(bql);
/* The block job with id @id, or NULL. */
BlockJob *block_job_get_locked(const char *id) TSA_REQUIRES(bql, job_mutex);

/*
 * An I/O error @error (positive errno) in the job: decide by @on_err as
 * QEMU does (stop; report; ignore; enospc and auto stop on ENOSPC and
 * report anything else), send BLOCK_JOB_ERROR (not for internal jobs)
 * and, for "stop", pause the job as if by the user and set io-status to
 * failed (nospace for ENOSPC) until job-resume.  Returns the action.  Any
 * thread (the job's coroutine).
 */
BlockErrorAction block_job_error_action(BlockJob *job, BlockdevOnError on_err,
                                        bool is_read, int error)
    TSA_EXCLUDES(job_mutex);

/* QEMU's BlockJobInfo for query-block-jobs (new reference). */
struct json_object *block_job_query_locked(BlockJob *job)
    TSA_REQUIRES(bql, job_mutex);

#endif /* BLOCK_BLOCKJOB_H */
