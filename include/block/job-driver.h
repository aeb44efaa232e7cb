/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Jobs, the driver side: what a job type (mirror, backup, a test job) and
 * the generic BlockJob layer call.  Every function here takes job_mutex
 * itself: the caller must not hold it.  Functions marked coroutine_fn run
 * in the job's coroutine, in the job's AioContext (any thread); the others
 * are main-loop code unless they say "any thread".
 */
#ifndef BLOCK_JOB_DRIVER_H
#define BLOCK_JOB_DRIVER_H

#include "block/job.h"

/*
 * Create a job of type @driver with id @job_id (required and unique unless
 * JOB_INTERNAL), in the CREATED state, running in @ctx once started, in
 * transaction @txn (NULL: a transaction of its own; else a new reference).
 * @cb(@opaque, ret) is called when it finalizes.  The reference returned
 * belongs to the job list and is dropped when the job is dismissed; a
 * caller that keeps the pointer across the main loop takes its own.
 * Main loop.
 */
Job *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                AioContext *ctx, int flags, JobCompletionFunc *cb,
                void *opaque, Error **errp) TSA_EXCLUDES(job_mutex)
    TSA_REQUIRES(bql);

/* Start the coroutine (CREATED -> RUNNING).  Main loop. */
void job_start(Job *job) TSA_EXCLUDES(job_mutex) TSA_REQUIRES(bql);

/* The job's id, or "" for internal jobs.  Any thread. */
const char *job_id(Job *job);

/*
 * Pause here if a pause was requested (PAUSED, or STANDBY when READY) and
 * go on when resumed.  Returns at once if the job is cancelled.
 */
void coroutine_fn job_pause_point(Job *job) TSA_EXCLUDES(job_mutex);
/* Yield until job_enter() (or a pause/resume); a pause point before and
 * after. */
void coroutine_fn job_yield(Job *job) TSA_EXCLUDES(job_mutex);
/*
 * job_yield(), unless @has_work(@opaque) says there is something to do or
 * any cancel (soft ones too) was requested: @has_work is evaluated with
 * job_mutex held, in the same critical section that lets the job be woken.  So a waker that makes @has_work true and then
 * calls job_enter() (which takes job_mutex) is never lost: either the job
 * sees the work and does not yield, or it is yielded and woken.  No timer
 * is involved.  @has_work runs under job_mutex, a leaf: it may read
 * atomics but take no lock.
 */
void coroutine_fn job_yield_unless(Job *job, bool (*has_work)(void *opaque),
                                   void *opaque) TSA_EXCLUDES(job_mutex);
/* Sleep @ns (or until woken by a cancel, pause or job_enter()), then
 * pause if asked. */
void coroutine_fn job_sleep_ns(Job *job, int64_t ns) TSA_EXCLUDES(job_mutex);

/* Forced cancel requested?  (A soft cancel of a READY job is not.)  Any
 * thread. */
bool job_is_cancelled(Job *job) TSA_EXCLUDES(job_mutex);
/* Any cancel requested?  Any thread. */
bool job_cancel_requested(Job *job) TSA_EXCLUDES(job_mutex);
bool job_is_ready(Job *job) TSA_EXCLUDES(job_mutex);
bool job_is_completed(Job *job) TSA_EXCLUDES(job_mutex);

/* RUNNING -> READY (emits BLOCK_JOB_READY).  Any thread. */
void job_transition_to_ready(Job *job) TSA_EXCLUDES(job_mutex);

/* Wake the job's coroutine if it waits in job_yield()/job_sleep_ns().
 * Any thread. */
void job_enter(Job *job) TSA_EXCLUDES(job_mutex);

/* Progress, in units of the driver's choice.  Any thread. */
void job_progress_update(Job *job, uint64_t done) TSA_EXCLUDES(job_mutex);
void job_progress_set_remaining(Job *job, uint64_t remaining)
    TSA_EXCLUDES(job_mutex);
void job_progress_increase_remaining(Job *job, uint64_t delta)
    TSA_EXCLUDES(job_mutex);

/*
 * Rate limiting by the job's speed: account @n units about to be done and
 * return how long to wait first (0: go on), in ns.  Slices of 100 ms.
 * Any thread.  Typical loop: delay = job_ratelimit_calculate_delay(job, n);
 * job_sleep_ns(job, delay); copy n.
 */
int64_t job_ratelimit_calculate_delay(Job *job, uint64_t n)
    TSA_EXCLUDES(job_mutex);

/* The job's AioContext.  Any thread (the job's own coroutine, or the
 * main loop). */
AioContext *job_get_aio_context(Job *job) TSA_EXCLUDES(job_mutex);

/* References (main loop). */
void job_ref(Job *job) TSA_EXCLUDES(job_mutex) TSA_REQUIRES(bql);
void job_unref(Job *job) TSA_EXCLUDES(job_mutex) TSA_REQUIRES(bql);

/* Sleep until the rate limit admits @n units (or the job is cancelled),
 * accounting them. */
void coroutine_fn job_ratelimit_wait(Job *job, uint64_t n)
    TSA_EXCLUDES(job_mutex);

#endif /* BLOCK_JOB_DRIVER_H */
