/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands on block nodes (qmp/cmd-block.c): blockdev-add,
 * blockdev-del, query-named-block-nodes, x-blockdev-set-iothread,
 * block_resize, query-blockstats, and the hidden x-query-command-args that
 * lets tests compare docs/qmp.md with the command tables.
 *
 * The monitor owns one reference to each node that blockdev-add created
 * (bdrv_set_monitor_owned()); blockdev-del drops it, refusing while the
 * node has parents (nodes, exports' BlockBackends) or other references.
 * Implicit children, created from nested definitions, belong to their
 * parent and go away with it.
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#ifndef QMP_BLOCK_H
#define QMP_BLOCK_H

#include "util/main-loop.h"

/*
 * Register the commands.  Start-up, after bdrv_init() (blockdev-add's
 * argument schema is built from the registered drivers' options).
 */
void qmp_block_init(void) TSA_REQUIRES(bql);

/*
 * Drop the monitor's reference to every node blockdev-add created
 * (shutdown, after the exports and jobs that used them are gone).  Nodes
 * that something else still references stay open.
 */
void qmp_block_cleanup(void) TSA_REQUIRES(bql);

#endif /* QMP_BLOCK_H */
