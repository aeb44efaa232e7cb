/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block layer API of the main loop ("global state").
 *
 * Everything here runs in the main thread with the BQL held
 * (GLOBAL_STATE_CODE; declared TSA_REQUIRES(bql), so that clang's analysis
 * checks every caller), outside coroutines unless said otherwise, and may
 * call anything: drain, poll, take the graph write lock.  Functions marked
 * GRAPH_UNLOCKED take the graph lock themselves and must be called without
 * it; GRAPH_RDLOCK ones read the graph (bdrv_graph_rdlock_main_loop() is
 * enough in the main loop).
 */
#ifndef BLOCK_GLOBAL_STATE_H
#define BLOCK_GLOBAL_STATE_H

#include "block/block-common.h"
#include "util/main-loop.h"
#include "util/opts.h"

/* Register the drivers and the graph lock hooks.  Once, at start-up. */
void bdrv_init(void) TSA_REQUIRES(bql);

/*
 * Open a node from a blockdev definition (QMP blockdev-add arguments:
 * driver, node-name, common and driver options; children as node names or
 * nested definitions).  @options is checked and normalised (see opts.h);
 * with @strict_types, strings are not converted (QMP input).  The new node
 * has one reference, owned by the caller (the monitor for blockdev-add).
 * On failure nothing is left behind.
 */
BlockDriverState *bdrv_open(struct json_object *options, bool strict_types,
                            Error **errp) GRAPH_UNLOCKED TSA_REQUIRES(bql);

void bdrv_ref(BlockDriverState *bs) TSA_REQUIRES(bql);
/* Drop a reference; the last one closes the node and its children. */
void bdrv_unref(BlockDriverState *bs) GRAPH_UNLOCKED TSA_REQUIRES(bql);

BlockDriverState *bdrv_find_node(const char *node_name) TSA_REQUIRES(bql);
/*
 * Iterate over the nodes users see: bs = bdrv_next_node(NULL) ...  A node
 * being closed (its last reference dropped; closing may wait, and queries
 * answered meanwhile must not look into it) is skipped, as by
 * bdrv_find_node().
 */
BlockDriverState *bdrv_next_node(BlockDriverState *bs) TSA_REQUIRES(bql);

/*
 * QEMU's lookup of a node named by a command, with QEMU's words when there
 * is none: "Cannot find device='D' nor node-name='N'".  blockd has no
 * device names (BlockBackends are not named by users), so @device (may be
 * NULL) is tried as a node name too, as QEMU tries a device first.
 */
BlockDriverState *bdrv_lookup_bs(const char *device, const char *node_name,
                                 Error **errp) TSA_REQUIRES(bql);

/* No node is a parent of @bs (exports, jobs and backends may be). */
bool bdrv_is_root_node(BlockDriverState *bs) TSA_REQUIRES(bql);
/* Nodes opened by blockdev-add (the monitor's references). */
bool bdrv_is_monitor_owned(BlockDriverState *bs) TSA_REQUIRES(bql);
void bdrv_set_monitor_owned(BlockDriverState *bs, bool owned)
    TSA_REQUIRES(bql);
/* True if @bs has parents other than the monitor's reference. */
bool bdrv_has_parents(BlockDriverState *bs) GRAPH_RDLOCK TSA_REQUIRES(bql);
/*
 * "node 'disk0' as 'file'" for each parent of @bs (with @backends_only,
 * each parent that is not a node: a BlockBackend), comma-separated, or
 * NULL if there is none.  Returns a string to g_free().
 */
char *bdrv_parents_desc(BlockDriverState *bs, bool backends_only)
    GRAPH_RDLOCK TSA_REQUIRES(bql);
/*
 * For the QMP schema (blockdev-add, x-query-command-args): the names of
 * the registered drivers (NULL-terminated), and the options a node of
 * driver @name takes beyond the common ones (@name NULL: the common ones;
 * NULL if there is no such driver).
 */
const char *const *bdrv_driver_names(void) TSA_REQUIRES(bql);
const OptDesc *bdrv_driver_opts(const char *name) TSA_REQUIRES(bql);
/* The blockdev-create options of driver @name, NULL if it cannot create. */
const OptDesc *bdrv_driver_create_opts(const char *name) TSA_REQUIRES(bql);
/* References to @bs: its parents' edges, the monitor's, any other. */
int bdrv_get_refcnt(BlockDriverState *bs) TSA_REQUIRES(bql);
/* The node under @bs's 'file' child, or NULL. */
BlockDriverState *bdrv_file_bs(BlockDriverState *bs) GRAPH_RDLOCK
    TSA_REQUIRES(bql);

/*
 * Attach @child_bs under a parent.  @perm/@shared are the parent's
 * permissions on the edge (a BlockBackend's own; for node parents they are
 * computed by the driver's bdrv_child_perm).  Refused, with a message
 * naming both users, if another parent of @child_bs does not share what
 * this one takes.  Takes a reference to @child_bs.  bdrv_attach_child()
 * makes a BDRV_CHILD_PRIMARY child its parent's bs->file.
 */
BdrvChild *bdrv_root_attach_child(BlockDriverState *child_bs,
                                  const char *child_name,
                                  const BdrvChildClass *child_class,
                                  BdrvChildRole role, uint64_t perm,
                                  uint64_t shared_perm, void *opaque,
                                  Error **errp) GRAPH_WRLOCK TSA_REQUIRES(bql);
BdrvChild *bdrv_attach_child(BlockDriverState *parent_bs,
                             BlockDriverState *child_bs,
                             const char *child_name, BdrvChildRole role,
                             Error **errp) GRAPH_WRLOCK TSA_REQUIRES(bql);
/* Detach and drop the edge's reference to its node. */
void bdrv_root_unref_child(BdrvChild *child) GRAPH_WRLOCK TSA_REQUIRES(bql);
void bdrv_unref_child(BlockDriverState *parent, BdrvChild *child)
    GRAPH_WRLOCK TSA_REQUIRES(bql);

/* Change the permissions of one edge (e.g. a BlockBackend's). */
int bdrv_child_try_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                            Error **errp) GRAPH_RDLOCK TSA_REQUIRES(bql);
/* "Conflicts with use by ... " description of a parent. */
char *bdrv_child_user_desc(BdrvChild *c) TSA_REQUIRES(bql);

/*
 * Make every parent of @from point to @to instead (inserting or removing a
 * filter, completing a mirror).  Checks permissions first; on failure
 * nothing changes.  Drains @from and @to and takes the write lock.
 */
int bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                      Error **errp) GRAPH_UNLOCKED TSA_REQUIRES(bql);

/*
 * Drained sections (see docs/locking.md).  begin quiesces @bs's parents up
 * to their BlockBackends, exports and jobs, and waits until @bs and its
 * parents have no request in flight; end lets them go on and never polls.
 * Main loop, or a coroutine in any thread: a coroutine caller is bounced
 * to a main-loop bottom half (so these four are not TSA_REQUIRES(bql)).
 * Never with the graph lock held.
 */
void bdrv_drained_begin(BlockDriverState *bs) GRAPH_UNLOCKED;
void bdrv_drained_end(BlockDriverState *bs) GRAPH_UNLOCKED;
bool bdrv_drain_poll(BlockDriverState *bs) GRAPH_RDLOCK TSA_REQUIRES(bql);
void bdrv_drain_all_begin(void) GRAPH_UNLOCKED;
void bdrv_drain_all_begin_nopoll(void) TSA_REQUIRES(bql);
void bdrv_drain_all_end(void) GRAPH_UNLOCKED;

/* Flush every node (shutdown).  Returns the first error. */
int bdrv_flush_all(void) GRAPH_UNLOCKED TSA_REQUIRES(bql);

/*
 * Move @bs, and every node and parent connected to it, to @ctx: drained,
 * checked with every parent (which may refuse), under the write lock.
 * @ignore_child is the edge through which the caller asks (it moves
 * itself), or NULL.
 */
int bdrv_try_change_aio_context(BlockDriverState *bs, AioContext *ctx,
                                BdrvChild *ignore_child, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);

/* Current size, or -errno; main loop. */
int64_t bdrv_getlength(BlockDriverState *bs) TSA_REQUIRES(bql);
/* Resize (block_resize): drained request through the I/O path. */
int bdrv_truncate(BlockDriverState *bs, int64_t offset, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);

/* BlockDeviceInfo-like description for query-named-block-nodes. */
struct json_object *bdrv_query_info(BlockDriverState *bs) GRAPH_RDLOCK
    TSA_REQUIRES(bql);

bool bdrv_is_read_only(BlockDriverState *bs) TSA_REQUIRES(bql);
const char *bdrv_get_node_name(BlockDriverState *bs) TSA_REQUIRES(bql);
AioContext *bdrv_get_aio_context(BlockDriverState *bs) TSA_REQUIRES(bql);

#endif /* BLOCK_GLOBAL_STATE_H */
