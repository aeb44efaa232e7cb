/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP blockdev-mirror (qmp/cmd-mirror.c), with QEMU's arguments and errors.
 * The job is then driven by the job commands of qmp/cmd-job.c.
 *
 * Main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef QMP_MIRROR_H
#define QMP_MIRROR_H

#include "util/main-loop.h"

/* Register the command.  Start-up, once. */
void qmp_mirror_init(void) TSA_REQUIRES(bql);

#endif /* QMP_MIRROR_H */
