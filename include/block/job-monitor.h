/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Jobs, the monitor side: QMP commands, the daemon's shutdown and the
 * drain callbacks of BlockJob.  These functions require job_mutex (the
 * `_locked` suffix): the caller locks, looks the job up and acts on it in
 * one critical section, so that nothing changes the job between the check
 * and the action.  They run in the main loop under the BQL
 * (TSA_REQUIRES(bql, job_mutex)), except the state getters and the
 * internal pause, resume and wake-up, which any thread may call.  A
 * command reads:
 *
 *     job_lock();
 *     job = job_get_locked(id);
 *     if (job) job_user_pause_locked(job, errp);
 *     job_unlock();
 *
 * Several of them call driver callbacks or wait; they drop job_mutex
 * around those (documented per function), so a Job * is valid across the
 * call only while the caller holds a reference (job_ref_locked()).
 */
#ifndef BLOCK_JOB_MONITOR_H
#define BLOCK_JOB_MONITOR_H

#include "block/graph-lock.h"
#include "block/job.h"

/* --- Lookup -------------------------------------------------------------- */

/* The job with id @id, or NULL (internal jobs are never found). */
Job *job_get_locked(const char *id) TSA_REQUIRES(bql, job_mutex);
/* Iterate: job = job_next_locked(NULL) ...; internal jobs are skipped. */
Job *job_next_locked(Job *job) TSA_REQUIRES(bql, job_mutex);

void job_ref_locked(Job *job) TSA_REQUIRES(bql, job_mutex);
/* Drop a reference; the last one frees the job (may drop job_mutex to
 * call the driver's free callback). */
void job_unref_locked(Job *job) TSA_REQUIRES(bql, job_mutex);

/* --- State ------------------------------------------------------------- */

const char *job_type_name(Job *job);
/* Is @verb allowed in the job's current status?  Sets QEMU's error
 * ("Job 'x' in state 'running' cannot accept command verb 'finalize'"). */
bool job_apply_verb_locked(Job *job, JobVerb verb, Error **errp)
    TSA_REQUIRES(bql, job_mutex);
/* Pure table look-ups, for tests and checks. */
bool job_transition_allowed(JobStatus from, JobStatus to);
bool job_verb_allowed(JobStatus status, JobVerb verb);

bool job_is_completed_locked(Job *job) TSA_REQUIRES(job_mutex);
bool job_is_ready_locked(Job *job) TSA_REQUIRES(job_mutex);
bool job_is_paused_locked(Job *job) TSA_REQUIRES(job_mutex);
/*
 * The job's coroutine runs driver code: it is between pause points and has
 * not finished (a finished job only waits for its completion in the main
 * loop, which may be deferred: nobody may wait for that with a plain wait).
 */
bool job_is_busy_locked(Job *job) TSA_REQUIRES(job_mutex);
bool job_is_cancelled_locked(Job *job) TSA_REQUIRES(job_mutex);
bool job_cancel_requested_locked(Job *job) TSA_REQUIRES(job_mutex);

/* --- Verbs (QMP) ------------------------------------------------------- */

/* job-pause: counts as one pause until job-resume.  Refused if already
 * user-paused ("The block job is already paused"). */
void job_user_pause_locked(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex);
/* job-resume; calls the driver's user_resume without the lock. */
void job_user_resume_locked(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex);
/* job-cancel / block-job-cancel (@force: see JobDriver.cancel). */
void job_user_cancel_locked(Job *job, bool force, Error **errp)
    TSA_REQUIRES(bql, job_mutex);
/* job-complete: a READY job switches over (driver->complete, unlocked). */
void job_complete_locked(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
/* job-finalize: finalize the job's whole transaction (PENDING). */
void job_finalize_locked(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
/* job-dismiss: a CONCLUDED job goes to NULL and leaves the list. */
void job_dismiss_locked(Job **job, Error **errp) TSA_REQUIRES(bql, job_mutex);
/* block-job-set-speed. */
bool job_set_speed_locked(Job *job, int64_t speed, Error **errp)
    TSA_REQUIRES(bql, job_mutex);

/* Internal pause/resume (drain, an I/O error that stops the job):
 * counted, not user-visible.  Any thread. */
void job_pause_locked(Job *job) TSA_REQUIRES(job_mutex);
void job_resume_locked(Job *job) TSA_REQUIRES(job_mutex);
/* Wake the coroutine if it is at a pause point and should go on
 * (drops job_mutex around the wake-up). */
void job_enter_locked(Job *job) TSA_REQUIRES(job_mutex);

/* Cancel (forced unless @force is false and the driver agrees) without
 * the verb check; used by transactions and shutdown. */
void job_cancel_locked(Job *job, bool force) TSA_REQUIRES(bql, job_mutex);

/*
 * Cancel @job and wait (nested main-loop iterations, job_mutex dropped
 * while waiting) until it has concluded; dismiss it if it concluded.
 * Returns its ret.  Main loop.
 */
int job_cancel_sync_locked(Job *job, bool force)
    TSA_REQUIRES(bql, job_mutex) GRAPH_UNLOCKED;

/*
 * Wait until @job has concluded (or gone), finishing it in the meantime
 * with @finish (job-cancel or job-complete) if not NULL.  Returns the job's
 * ret.  Drops job_mutex while it waits.  Main loop.
 */
int job_finish_sync_locked(Job *job,
                           void (*finish)(Job *, Error **errp),
                           Error **errp)
    TSA_REQUIRES(bql, job_mutex) GRAPH_UNLOCKED;

/* Change where the job runs; the job must be paused or not started.
 * Main loop. */
void job_set_aio_context_locked(Job *job, AioContext *ctx)
    TSA_REQUIRES(bql, job_mutex);

/* Progress as reported by query-jobs. */
void job_progress_get_locked(Job *job, uint64_t *current, uint64_t *total)
    TSA_REQUIRES(job_mutex);

/* --- Transactions -------------------------------------------------------- */

/* A transaction: its jobs finalize together, or abort together if one
 * fails or is cancelled.  A job created without one gets its own. */
JobTxn *job_txn_new(void) TSA_EXCLUDES(job_mutex);
void job_txn_unref(JobTxn *txn) TSA_EXCLUDES(job_mutex);

#endif /* BLOCK_JOB_MONITOR_H */
