/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP blockdev-backup (qmp/cmd-backup.c), with QEMU's arguments, errors
 * and events (the job's are block/jobs/blockjob.c's).
 *
 * Main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef QMP_BACKUP_H
#define QMP_BACKUP_H

#include "util/main-loop.h"

/* Register the command.  Start-up, once, after bdrv_init(). */
void qmp_backup_init(void) TSA_REQUIRES(bql);

#endif /* QMP_BACKUP_H */
