/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Jobs, the monitor side (include/block/job-monitor.h): the verbs (pause,
 * resume, set-speed, cancel, complete, finalize, dismiss), the completion
 * of a job and of its transaction once run() has returned, and waiting for
 * jobs.  Main-loop code, called with job_mutex held (`_locked`); it drops
 * the lock around driver callbacks and waits.
 *
 * A transaction completes together: a job that finishes well waits
 * (WAITING) until every other job of its transaction has too, then all go
 * PENDING and are finalized together (prepare each, then commit or abort
 * each, then clean each).  A job that fails or is cancelled aborts the
 * transaction: the others are force-cancelled and waited for, and all of
 * them abort.
 */
#include "util/osdep.h"

#include "block/jobs/job-internal.h"
#include "util/aio-wait.h"
#include "util/main-loop.h"

/* --- Pause and resume ------------------------------------------------------- */

void job_pause_locked(Job *job)
{
    job->pause_count++;
    if (!job->paused) {
        job_enter_cond_locked(job, NULL);
    }
}

void job_resume_locked(Job *job)
{
    assert(job->pause_count > 0);
    job->pause_count--;
    if (job->pause_count) {
        return;
    }
    job_enter_cond_locked(job, job_not_sleeping);
}

void job_user_pause_locked(Job *job, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!job_apply_verb_locked(job, JOB_VERB_PAUSE, errp)) {
        return;
    }
    if (job->user_paused) {
        error_setg(errp, "Job is already paused");
        return;
    }
    job->user_paused = true;
    job_pause_locked(job);
}

void job_user_resume_locked(Job *job, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!job->user_paused || job->pause_count <= 0) {
        error_setg(errp, "Can't resume a job that was not paused");
        return;
    }
    if (!job_apply_verb_locked(job, JOB_VERB_RESUME, errp)) {
        return;
    }
    if (job->driver->user_resume) {
        job_unlock();
        job->driver->user_resume(job);
        job_lock();
    }
    job->user_paused = false;
    job_notify_locked(job, JOB_EVENT_USER_RESUMED);
    job_resume_locked(job);
}

bool job_set_speed_locked(Job *job, int64_t speed, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!job_apply_verb_locked(job, JOB_VERB_SET_SPEED, errp)) {
        return false;
    }
    if (speed < 0) {
        error_setg(errp, "Parameter 'speed' expects a non-negative value");
        return false;
    }
    job->speed = speed;
    ratelimit_set_speed(&job->limit, speed, JOB_RATELIMIT_SLICE_NS);
    /* A job sleeping for the old limit recomputes its delay. */
    job_enter_cond_locked(job, job_is_sleeping);
    return true;
}

/* --- Completion and finalization (main loop) ------------------------------ */

/* ret from cancellation and a missing error message. */
static void job_update_rc_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    if (!job->ret && job_is_cancelled_locked(job)) {
        job->ret = -ECANCELED;
    }
    if (job->ret) {
        if (!job->err) {
            error_setg(&job->err, "%s", strerror(-job->ret));
        }
        job_state_transition_locked(job, JOB_STATUS_ABORTING);
    }
}

static void job_do_dismiss_locked(Job *job) TSA_REQUIRES(bql, job_mutex)
{
    job->busy = false;
    job->paused = false;
    job->deferred_to_main_loop = true;
    job_txn_del_job_locked(job);
    job_state_transition_locked(job, JOB_STATUS_NULL);
    QLIST_REMOVE(job, job_link);
    job_unref_locked(job);
}

/* Call a main-loop driver callback without the lock. */
#define JOB_CALL_UNLOCKED(job, cb) do {                                 \
        if ((job)->driver->cb) {                                        \
            job_unlock();                                               \
            (job)->driver->cb(job);                                     \
            job_lock();                                                 \
        }                                                               \
    } while (0)

static int job_finalize_single_locked(Job *job) TSA_REQUIRES(bql, job_mutex)
{
    assert(job_is_completed_locked(job));
    job_update_rc_locked(job);
    if (!job->ret) {
        JOB_CALL_UNLOCKED(job, commit);
    } else {
        JOB_CALL_UNLOCKED(job, abort);
    }
    JOB_CALL_UNLOCKED(job, clean);
    if (job->cb) {
        int ret = job->ret;

        job_unlock();
        job->cb(job->opaque, ret);
        job_lock();
    }
    if (job_started_locked(job)) {
        job_notify_locked(job, job_is_cancelled_locked(job) ?
                          JOB_EVENT_CANCELLED : JOB_EVENT_COMPLETED);
    }
    job_txn_del_job_locked(job);
    job_state_transition_locked(job, JOB_STATUS_CONCLUDED);
    if (job->auto_dismiss || !job_started_locked(job)) {
        job_do_dismiss_locked(job);
    }
    return 0;
}

static int job_prepare_locked(Job *job) TSA_REQUIRES(bql, job_mutex)
{
    if (job->ret == 0 && job->driver->prepare) {
        int ret;

        job_unlock();
        ret = job->driver->prepare(job);
        job_lock();
        job->ret = ret;
        job_update_rc_locked(job);
    }
    return job->ret;
}

static int job_needs_finalize_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    return !job->auto_finalize;
}

static int job_transition_to_pending_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    job_state_transition_locked(job, JOB_STATUS_PENDING);
    if (!job->auto_finalize) {
        job_notify_locked(job, JOB_EVENT_PENDING);
    }
    return 0;
}

static void job_completed_txn_abort_locked(Job *job)
    TSA_REQUIRES(bql, job_mutex);

static void job_do_finalize_locked(Job *job) TSA_REQUIRES(bql, job_mutex)
{
    JobTxn *txn = job->txn;
    Job *failed;

    assert(txn);
    if (!job_txn_apply_locked(job, job_prepare_locked)) {
        job_txn_apply_locked(job, job_finalize_single_locked);
        return;
    }
    /*
     * The abort spares the job it is given, which must be the one that
     * failed: @job (job-finalize's) may have prepared well, and would
     * commit while the others abort.
     */
    QLIST_FOREACH(failed, &txn->jobs, txn_link) {
        if (failed->ret) {
            break;
        }
    }
    assert(failed);
    job_completed_txn_abort_locked(failed);
}

static void job_cancel_async_locked(Job *job, bool force)
    TSA_REQUIRES(bql, job_mutex)
{
    if (job->driver->cancel) {
        job_unlock();
        force = job->driver->cancel(job, force);
        job_lock();
    } else {
        force = true;           /* nothing to finish gracefully */
    }
    if (job->user_paused) {
        /* The caller wakes the job. */
        if (job->driver->user_resume) {
            job_unlock();
            job->driver->user_resume(job);
            job_lock();
        }
        job->user_paused = false;
        job_notify_locked(job, JOB_EVENT_USER_RESUMED);
        assert(job->pause_count > 0);
        job->pause_count--;
    }
    /* A soft cancel of a job that is already done changes nothing. */
    if (force || !job->deferred_to_main_loop) {
        job->cancelled = true;
        job->force_cancel |= force;
    }
}

static void job_completed_txn_abort_locked(Job *job)
{
    JobTxn *txn = job->txn;
    Job *other;

    if (txn->aborting) {
        return;                 /* the job that started the abort does it */
    }
    txn->aborting = true;
    txn->refcnt++;
    job_ref_locked(job);

    /* One failed: nothing of the others matters, force them. */
    QLIST_FOREACH(other, &txn->jobs, txn_link) {
        if (other != job) {
            job_cancel_async_locked(other, true);
        }
    }
    while (!QLIST_EMPTY(&txn->jobs)) {
        other = QLIST_FIRST(&txn->jobs);
        if (!job_is_completed_locked(other)) {
            assert(job_cancel_requested_locked(other));
            if (job_started_locked(other)) {
                job_finish_sync_locked(other, NULL, NULL);
            } else {
                job_update_rc_locked(other);
            }
        }
        job_finalize_single_locked(other);
    }
    job_unref_locked(job);
    job_txn_unref_locked(txn);
}

static void job_completed_txn_success_locked(Job *job)
    TSA_REQUIRES(bql, job_mutex)
{
    Job *other;

    job_state_transition_locked(job, JOB_STATUS_WAITING);
    QLIST_FOREACH(other, &job->txn->jobs, txn_link) {
        if (!job_is_completed_locked(other)) {
            return;             /* the last one to finish goes on */
        }
        assert(other->ret == 0);
    }
    job_txn_apply_locked(job, job_transition_to_pending_locked);
    if (job_txn_apply_locked(job, job_needs_finalize_locked) == 0) {
        job_do_finalize_locked(job);
    }
}

static void job_completed_locked(Job *job) TSA_REQUIRES(bql, job_mutex)
{
    assert(job->txn && !job_is_completed_locked(job));
    job_update_rc_locked(job);
    if (job->ret) {
        job_completed_txn_abort_locked(job);
    } else {
        job_completed_txn_success_locked(job);
    }
}

/* run() returned: complete the job in the main loop. */
void job_exit(void *opaque)
{
    Job *job = opaque;

    GLOBAL_STATE_CODE();
    job_lock();
    job->busy = false;
    /* A forced cancel may have finished it in the meantime (nested). */
    if (!job_is_completed_locked(job)) {
        job_completed_locked(job);
    }
    job_unref_locked(job);
    job_unlock();
    aio_wait_kick();
}

void job_cancel_locked(Job *job, bool force)
{
    GLOBAL_STATE_CODE();
    if (job->status == JOB_STATUS_CONCLUDED) {
        job_do_dismiss_locked(job);
        return;
    }
    job_cancel_async_locked(job, force);
    if (!job_started_locked(job)) {
        job_completed_locked(job);
    } else if (job->deferred_to_main_loop) {
        /* Soft cancels of finished jobs were ignored above. */
        if (job_is_cancelled_locked(job)) {
            job_completed_txn_abort_locked(job);
        }
    } else {
        job_enter_cond_locked(job, NULL);
    }
}

void job_user_cancel_locked(Job *job, bool force, Error **errp)
{
    if (!job_apply_verb_locked(job, JOB_VERB_CANCEL, errp)) {
        return;
    }
    job_cancel_locked(job, force);
}

void job_complete_locked(Job *job, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!job_apply_verb_locked(job, JOB_VERB_COMPLETE, errp)) {
        return;
    }
    if (job_cancel_requested_locked(job) || !job->driver->complete) {
        error_setg(errp, "The active block job '%s' cannot be completed",
                   job_id(job));
        return;
    }
    job_unlock();
    job->driver->complete(job, errp);
    job_lock();
}

void job_finalize_locked(Job *job, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!job_apply_verb_locked(job, JOB_VERB_FINALIZE, errp)) {
        return;
    }
    job_do_finalize_locked(job);
}

void job_dismiss_locked(Job **jobptr, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!job_apply_verb_locked(*jobptr, JOB_VERB_DISMISS, errp)) {
        return;
    }
    job_do_dismiss_locked(*jobptr);
    *jobptr = NULL;
}

/* --- Waiting ----------------------------------------------------------------- */

/* Kick the job (so a cancelled job leaves its yield) and test it. */
static bool job_wait_unfinished(Job *job) TSA_EXCLUDES(job_mutex)
{
    bool unfinished;

    job_lock();
    job_enter_cond_locked(job, NULL);
    unfinished = !job_is_completed_locked(job);
    job_unlock();
    return unfinished;
}

int job_finish_sync_locked(Job *job, void (*finish)(Job *, Error **errp),
                           Error **errp)
{
    Error *local_err = NULL;
    int ret;

    GLOBAL_STATE_CODE();
    job_ref_locked(job);
    if (finish) {
        finish(job, &local_err);
    }
    if (local_err) {
        error_propagate(errp, local_err);
        job_unref_locked(job);
        return -EBUSY;
    }
    job_unlock();
    /*
     * Completion (job_exit()) is deferred work: it runs inside this wait,
     * and so may other jobs' completions and exports' deletions.  We hold
     * a reference to @job.
     */
    AIO_WAIT_WHILE_RUNNING_DEFERRED(job_wait_unfinished(job));
    job_lock();
    ret = (job_is_cancelled_locked(job) && job->ret == 0) ? -ECANCELED
                                                          : job->ret;
    job_unref_locked(job);
    return ret;
}

/* job_finish_sync_locked()'s @finish, called with job_mutex held. */
static void job_force_cancel_err(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_cancel_locked(job, true);
}

static void job_soft_cancel_err(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_cancel_locked(job, false);
}

int job_cancel_sync_locked(Job *job, bool force)
{
    return job_finish_sync_locked(job, force ? job_force_cancel_err
                                             : job_soft_cancel_err, NULL);
}

