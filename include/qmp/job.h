/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands on jobs (qmp/cmd-job.c): job-pause, job-resume, job-cancel,
 * job-complete, job-dismiss, job-finalize, query-jobs and the block-job-*
 * forms (block-job-cancel, -complete, -pause, -resume, -finalize,
 * -dismiss, -set-speed, query-block-jobs), with QEMU's arguments, errors
 * and replies.
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#ifndef QMP_JOB_H
#define QMP_JOB_H

#include "block/graph-lock.h"
#include "block/job.h"

/* Register the commands.  Start-up, once. */
void qmp_job_init(void) TSA_REQUIRES(bql);

/*
 * Cancel every job (forced) and wait until each has concluded, then
 * dismiss it.  Daemon shutdown and quit, before exports and nodes go;
 * main loop, job_mutex not held.
 */
void job_cancel_sync_all(void)
    TSA_REQUIRES(bql) TSA_EXCLUDES(job_mutex) GRAPH_UNLOCKED;

#endif /* QMP_JOB_H */
