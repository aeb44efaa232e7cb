/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals of drained sections shared by block.c (attaching and
 * detaching edges of drained nodes, child_of_bds's callbacks) and drain.c.
 * Main loop, BQL.
 */
#ifndef BLOCK_DRAIN_H
#define BLOCK_DRAIN_H

#include "block/block_int.h"

/* Nesting of bdrv_drain_all_begin(): new nodes start this drained. */
extern int bdrv_drain_all_count;

/* Quiesce @bs's parents (if not yet) without polling. */
void bdrv_do_drained_begin_quiesce(BlockDriverState *bs)
    GRAPH_RDLOCK TSA_REQUIRES(bql);
/* End one drained section of @bs; releases parents at zero.  No polling. */
void bdrv_do_drained_end(BlockDriverState *bs) GRAPH_RDLOCK TSA_REQUIRES(bql);
/* Tell one parent edge its child is drained / no longer drained. */
void bdrv_parent_drained_begin_single(BdrvChild *c)
    GRAPH_RDLOCK TSA_REQUIRES(bql);
void bdrv_parent_drained_end_single(BdrvChild *c)
    GRAPH_RDLOCK TSA_REQUIRES(bql);

#endif /* BLOCK_DRAIN_H */
