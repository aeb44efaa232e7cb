/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block-copy: copies clusters of a source node to a target node, each at
 * most once, as the copy-before-write filter and the backup job need.
 *
 * What remains to copy is a "copy bitmap" (an anonymous, disabled dirty
 * bitmap on the source, one bit per cluster): set means "the target does
 * not have this cluster's point-in-time content yet".  A copy takes the
 * clusters it will copy out of the bitmap and into a task, in one critical
 * section, so two callers never copy one cluster; a caller that needs a
 * cluster some task is copying waits for that task (its CoQueue) and then
 * looks again: if the task failed, the clusters are dirty again and the
 * caller copies them itself.  Bounce buffers of all tasks together stay
 * under a memory budget; a task waits for room before it reads.  Ranges
 * that the source's block status says read as zero are written as zeroes
 * on the target, or skipped if the target is known to read as zero.
 *
 * Who calls what:
 *  - block_copy_state_new/free, set_progress_callback, set_max_mem: main
 *    loop (BQL).
 *  - block_copy(), block_copy_*_target_zero: coroutines in any AioContext,
 *    several threads at once (filter requests in iothreads, the backup
 *    job in its own).  block_copy() needs the graph read lock: it does
 *    I/O on the source and target edges.
 *  - Getters: any thread.
 */
#ifndef BLOCK_BLOCK_COPY_H
#define BLOCK_BLOCK_COPY_H

#include "block/block-common.h"
#include "block/dirty-bitmap.h"

typedef struct BlockCopyState BlockCopyState;

/* Cluster size of block-copy (QEMU's backup default). */
#define BLOCK_COPY_CLUSTER_SIZE     (64 * 1024)
/* Largest task: one read and one write of at most this many bytes. */
#define BLOCK_COPY_MAX_CHUNK        (1024 * 1024)
/* Budget of bounce buffers of all tasks in flight together: the backup
 * job's workers use half (block/jobs/backup.c), the filter's copies the rest. */
#define BLOCK_COPY_MAX_MEM          (64 * 1024 * 1024)

/*
 * @bytes more were copied (or found already right on the target), by any
 * caller.  Called from the copying coroutine, any thread, no lock held.
 */
typedef void BlockCopyProgressFunc(void *opaque, int64_t bytes);

/*
 * Copy from @source's node to @target's node (edges of the caller, e.g.
 * the filter's children), @cluster_size bytes per bit.  The copy bitmap
 * starts clean: the caller dirties what is to be copied.  Main loop.
 */
BlockCopyState *block_copy_state_new(BdrvChild *source, BdrvChild *target,
                                     int64_t cluster_size, Error **errp)
    GRAPH_RDLOCK TSA_REQUIRES(bql);
/* No block_copy() may be running (the owner's node is drained/closed). */
void block_copy_state_free(BlockCopyState *s) TSA_REQUIRES(bql);

/* Who hears about progress.  Main loop, before the copy bitmap is used. */
void block_copy_set_progress_callback(BlockCopyState *s,
                                      BlockCopyProgressFunc *fn,
                                      void *opaque) TSA_REQUIRES(bql);

/*
 * Change the budget of bounce buffers in flight (default
 * BLOCK_COPY_MAX_MEM; tests use a small one).  Main loop.
 */
void block_copy_set_max_mem(BlockCopyState *s, int64_t bytes)
    TSA_REQUIRES(bql);

/* The copy bitmap (dirty: still to copy).  Any thread. */
BdrvDirtyBitmap *block_copy_dirty_bitmap(BlockCopyState *s);
int64_t block_copy_cluster_size(BlockCopyState *s);
/* Bytes covered by the copy bitmap (the source's size at creation). */
int64_t block_copy_len(BlockCopyState *s);

/*
 * Ask the target whether all of it reads as zero now; if so, zero ranges
 * of the source are skipped instead of written.  The caller guarantees
 * nobody but this BlockCopyState writes the target from now on.
 */
void coroutine_fn block_copy_probe_target_zero(BlockCopyState *s)
    GRAPH_RDLOCK;

/*
 * Make sure the target has the point-in-time content of every cluster
 * that touches [offset, offset + bytes): copy the dirty ones, wait for the
 * ones other callers are copying (and copy them if those copies failed).
 * Returns 0, or the first error (-errno) with *@error_is_read telling
 * whether reading the source or writing the target failed; clusters whose
 * copy failed are dirty again.  Any thread, coroutine.
 */
int coroutine_fn block_copy(BlockCopyState *s, int64_t offset, int64_t bytes,
                            bool *error_is_read) GRAPH_RDLOCK;

/* Tasks in flight right now (for tests and the job's last pass). */
int block_copy_tasks_in_flight(BlockCopyState *s);

#endif /* BLOCK_BLOCK_COPY_H */
