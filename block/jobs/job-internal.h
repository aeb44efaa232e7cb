/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the three files of the job core share and nobody else sees:
 *   block/jobs/job.c          the state machine, the event queue, the job list,
 *                        references, transactions and creation;
 *   block/jobs/job-driver.c   the driver-facing API (include/block/job-driver.h):
 *                        the job's coroutine, pause points, waking,
 *                        progress and rate limiting;
 *   block/jobs/job-monitor.c  the monitor-facing API (job-monitor.h): the verbs,
 *                        completion and finalization of transactions, and
 *                        waiting for jobs.
 * Everything here requires job_mutex unless it says otherwise.
 */
#ifndef BLOCK_JOB_INTERNAL_H
#define BLOCK_JOB_INTERNAL_H

#include "block/job-driver.h"
#include "block/job-monitor.h"

#define JOB_RATELIMIT_SLICE_NS  (100 * 1000 * 1000LL)

struct JobTxn {
    QLIST_HEAD(, Job TSA_GUARDED_BY(job_mutex)) jobs;
    int refcnt TSA_GUARDED_BY(job_mutex);
    bool aborting TSA_GUARDED_BY(job_mutex);
};

/* Internal jobs have no id, are not listed and send no events.  Any
 * thread (id is immutable). */
static inline bool job_is_internal(Job *job)
{
    return job->id == NULL;
}

static inline bool job_started_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    return job->co != NULL;
}

static inline bool job_should_pause_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    return job->pause_count > 0;
}

/* --- block/jobs/job.c ---------------------------------------------------------- */

/* Move to @to (must be allowed by the table, else abort) and queue
 * JOB_STATUS_CHANGE. */
void job_state_transition_locked(Job *job, JobStatus to)
    TSA_REQUIRES(job_mutex);
/* Tell the layer above (BlockJob) about @ev. */
void job_notify_locked(Job *job, JobEvent ev) TSA_REQUIRES(job_mutex);

void job_txn_unref_locked(JobTxn *txn) TSA_REQUIRES(job_mutex);
/* Take @job out of its transaction (no-op if it has none). */
void job_txn_del_job_locked(Job *job) TSA_REQUIRES(job_mutex);
/*
 * Call @fn on every job of @job's transaction until one returns non-zero;
 * returns that value.  @fn may drop job_mutex: the transaction and the
 * jobs are referenced meanwhile.
 */
int job_txn_apply_locked(Job *job, int (*fn)(Job *))
    TSA_REQUIRES(bql, job_mutex);

/* --- block/jobs/job-driver.c ----------------------------------------------------- */

/* Wake the coroutine if it is yielded and @cond (NULL: always) agrees.
 * Drops job_mutex around the wake-up. */
void job_enter_cond_locked(Job *job, bool (*cond)(Job *))
    TSA_REQUIRES(job_mutex);
/* Conditions for job_enter_cond_locked(), called with job_mutex held. */
bool job_not_sleeping(Job *job) TSA_REQUIRES(job_mutex);
bool job_is_sleeping(Job *job) TSA_REQUIRES(job_mutex);

/* --- block/jobs/job-monitor.c ---------------------------------------------------- */

/* Bottom half in the main loop: run() returned, complete the job.  Takes
 * job_mutex itself. */
void job_exit(void *opaque) TSA_EXCLUDES(job_mutex);

#endif /* BLOCK_JOB_INTERNAL_H */
