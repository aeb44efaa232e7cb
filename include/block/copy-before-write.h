/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copy-before-write filter (block/jobs/copy-before-write.c): sits above a
 * source node (child "file") and, before a write, write-zeroes or discard
 * reaches the source, copies the old content of the clusters it touches
 * to the target (child "target") unless they were copied already.  Reads
 * pass through.  If the copy fails, the guest's request fails and the
 * source is left unchanged (QEMU's on-cbw-error=break-guest-write).
 *
 * The backup job inserts it with bdrv_cbw_append() and shares its
 * block-copy state; the filter is also a blockdev-add driver of its own
 * ("copy-before-write", options file and target).
 *
 * Main-loop code (GLOBAL_STATE_CODE), outside coroutines.
 */
#ifndef BLOCK_COPY_BEFORE_WRITE_H
#define BLOCK_COPY_BEFORE_WRITE_H

#include "block/block-copy.h"
#include "block/block-global-state.h"

/*
 * Open a copy-before-write node on @source and @target (named
 * @filter_node_name, or implicitly if NULL) and move every parent of
 * @source to it: drained, under the graph write lock, so that from now on
 * every write to @source goes through the filter.  The whole source is
 * marked to copy.  Returns the filter (a reference owned by the caller,
 * to give to bdrv_cbw_drop()) and its block-copy state in *@bcs, or NULL
 * with @errp set and nothing changed.
 */
BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  BlockCopyState **bcs, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);

/*
 * Undo bdrv_cbw_append(): move the filter's parents back to its source
 * (drained, under the write lock) and drop the caller's reference, which
 * closes the filter once nothing else uses it.
 */
void bdrv_cbw_drop(BlockDriverState *cbw) GRAPH_UNLOCKED TSA_REQUIRES(bql);

#endif /* BLOCK_COPY_BEFORE_WRITE_H */
