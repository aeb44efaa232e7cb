/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands of the NBD server and block exports (qmp/cmd-export.c):
 * nbd-server-start, nbd-server-stop, block-export-add, block-export-del and
 * query-block-exports, with QEMU's argument names and messages; the event
 * BLOCK_EXPORT_DELETED comes from block/export/export.c.
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#ifndef QMP_EXPORT_H
#define QMP_EXPORT_H

#include "util/main-loop.h"

/*
 * Register the "nbd" export type and the commands.  Start-up, once, after
 * bdrv_init() and qmp_objects_init() (exports look iothreads up by id).
 */
void qmp_export_init(void) TSA_REQUIRES(bql);

/*
 * Stop the NBD server and remove every export, waiting until they are
 * gone (daemon shutdown; nbd-server-stop does the same for NBD).
 */
void qmp_export_cleanup(void) TSA_REQUIRES(bql);

#endif /* QMP_EXPORT_H */
