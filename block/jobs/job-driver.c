/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Jobs, the driver side (include/block/job-driver.h): the job's coroutine
 * and its pause points, waking it, the queries its run() makes, progress
 * and rate limiting.  Every public function here takes job_mutex itself.
 *
 * Invariants:
 * - A job's coroutine runs in the job's AioContext; when run() returns,
 *   everything else (completion, finalization, dismissal, freeing) runs in
 *   the main loop, reached through the job_exit() bottom half.
 * - `busy` is false only while the coroutine is yielded in
 *   job_do_yield_locked() (a pause point, job_yield(), job_sleep_ns());
 *   whoever sets it back to true wakes the coroutine, exactly once.
 */
#include "util/osdep.h"

#include "block/jobs/job-internal.h"
#include "util/aio-wait.h"
#include "util/main-loop.h"

/* --- Ratelimit ------------------------------------------------------------- */

void ratelimit_set_speed(RateLimit *rl, uint64_t per_sec, int64_t slice_ns)
{
    rl->slice_ns = slice_ns;
    rl->slice_quota = per_sec ? MAX(per_sec * slice_ns / 1000000000ULL, 1)
                              : 0;
}

int64_t ratelimit_calculate_delay(RateLimit *rl, uint64_t n, int64_t now_ns)
{
    if (!rl->slice_quota) {
        return 0;
    }
    if (now_ns >= rl->slice_start_ns + rl->slice_ns) {
        rl->slice_start_ns = now_ns;
        rl->dispatched = 0;
    }
    if (rl->dispatched && rl->dispatched + n > rl->slice_quota) {
        return rl->slice_start_ns + rl->slice_ns - now_ns;
    }
    rl->dispatched += n;
    return 0;
}

/* --- The coroutine ----------------------------------------------------------- */

/*
 * Yield until woken (busy set by the waker), after @ns if >= 0.  Drops
 * job_mutex across the yield.  The timer lives in this thread's context
 * and is gone before the coroutine goes on, so it never fires late.
 */
static void coroutine_fn job_do_yield_locked(Job *job, int64_t ns)
    TSA_REQUIRES(job_mutex);

static void job_sleep_timer_cb(void *opaque)
{
    job_enter(opaque);
}

static void coroutine_fn job_do_yield_locked(Job *job, int64_t ns)
{
    AioTimer *timer = NULL;

    assert(job->busy);
    if (ns >= 0) {
        timer = aio_timer_new(aio_get_current_context(), job_sleep_timer_cb,
                              job);
        aio_timer_mod_ns(timer, get_clock_ns() + ns);
        job->sleeping = true;
    }
    job->busy = false;
    job_unlock();
    /* A drain or job_finish_sync may wait for !busy; pairs with the
     * smp_mb() in AIO_WAIT_WHILE (inside aio_wait_kick()). */
    aio_wait_kick();
    co_yield();
    job_lock();
    if (timer) {
        aio_timer_del(timer);
        aio_timer_free(timer);
    }
    job->sleeping = false;
    assert(job->busy);
}

/* Pause here if asked to; job_mutex held. */
static void coroutine_fn job_pause_point_locked(Job *job)
    TSA_REQUIRES(job_mutex)
{
    JobStatus status;

    if (!job_should_pause_locked(job) || job_is_cancelled_locked(job)) {
        return;
    }
    if (job->driver->pause) {
        job_unlock();
        job->driver->pause(job);
        job_lock();
    }
    status = job->status;
    if (job_should_pause_locked(job) && !job_is_cancelled_locked(job)) {
        job_state_transition_locked(job, status == JOB_STATUS_READY ?
                                    JOB_STATUS_STANDBY : JOB_STATUS_PAUSED);
        job->paused = true;
        /* A stray job_enter() just yields again. */
        while (job_should_pause_locked(job) &&
               !job_is_cancelled_locked(job)) {
            job_do_yield_locked(job, -1);
        }
        job->paused = false;
        job_state_transition_locked(job, status);
    }
    if (job->driver->resume) {
        job_unlock();
        job->driver->resume(job);
        job_lock();
    }
}

void coroutine_fn job_pause_point(Job *job)
{
    job_lock();
    job_pause_point_locked(job);
    job_unlock();
}

void coroutine_fn job_yield_unless(Job *job, bool (*has_work)(void *opaque),
                                   void *opaque)
{
    job_lock();
    /*
     * A soft cancel is work too: it is a job_enter() like any other, lost
     * if it came between the caller's last look and this critical section.
     */
    if (!job_cancel_requested_locked(job) && !job_should_pause_locked(job) &&
        !has_work(opaque)) {
        job_do_yield_locked(job, -1);
    }
    job_pause_point_locked(job);
    job_unlock();
}

void coroutine_fn job_yield(Job *job)
{
    job_lock();
    /* A pause requested meanwhile is served by the pause point. */
    if (!job_is_cancelled_locked(job) && !job_should_pause_locked(job)) {
        job_do_yield_locked(job, -1);
    }
    job_pause_point_locked(job);
    job_unlock();
}

void coroutine_fn job_sleep_ns(Job *job, int64_t ns)
{
    job_lock();
    if (!job_is_cancelled_locked(job) && !job_should_pause_locked(job)) {
        job_do_yield_locked(job, ns);
    }
    job_pause_point_locked(job);
    job_unlock();
}

static void coroutine_fn job_co_entry(void *opaque)
{
    Job *job = opaque;
    Error *err = NULL;
    int ret;

    job_lock();
    assert(job->aio_context == aio_get_current_context());
    job_pause_point_locked(job);
    job_unlock();

    ret = job->driver->run(job, &err);

    job_lock();
    job->ret = ret;
    if (ret < 0 && !job->err) {
        job->err = err;
        err = NULL;
    }
    /* busy stays true: no driver code waits at a pause point any more,
     * and the coroutine must not be entered again. */
    job->deferred_to_main_loop = true;
    job_unlock();
    error_free(err);
    /*
     * Completion changes the graph and frees the job's nodes: it waits for
     * a safe point, never inside another piece of main-loop code's wait.
     */
    aio_wait_defer(job_exit, job);
}

void job_start(Job *job)
{
    GLOBAL_STATE_CODE();
    job_lock();
    assert(job->status == JOB_STATUS_CREATED && !job_started_locked(job));
    assert(job->pause_count > 0);
    job->co = co_create(job_co_entry, job);
    job_ref_locked(job);        /* the coroutine's, dropped by job_exit() */
    job->pause_count--;
    job->busy = true;
    job->paused = false;
    job_state_transition_locked(job, JOB_STATUS_RUNNING);
    job_unlock();
    aio_co_enter(job->aio_context, job->co);
}

AioContext *job_get_aio_context(Job *job)
{
    AioContext *ctx;

    job_lock();
    ctx = job->aio_context;
    job_unlock();
    return ctx;
}

void job_set_aio_context_locked(Job *job, AioContext *ctx)
{
    GLOBAL_STATE_CODE();
    /* The coroutine is yielded at a pause point, or not started. */
    assert(!job_started_locked(job) || job->paused ||
           job->deferred_to_main_loop);
    job->aio_context = ctx;
}

/* --- Waking ------------------------------------------------------------------ */

void job_enter_cond_locked(Job *job, bool (*cond)(Job *))
{
    Coroutine *co;

    if (!job_started_locked(job) || job->deferred_to_main_loop ||
        job->busy) {
        return;
    }
    if (cond && !cond(job)) {
        return;
    }
    job->busy = true;
    co = job->co;
    job_unlock();
    /* The coroutine yielded (busy was false); it is resumed in its
     * context, from a bottom half if that is another thread's. */
    aio_co_wake(co);
    job_lock();
}

void job_enter_locked(Job *job)
{
    job_enter_cond_locked(job, NULL);
}

void job_enter(Job *job)
{
    job_lock();
    job_enter_cond_locked(job, NULL);
    job_unlock();
}

/* Do not cut a sleep short, unless something else has to be done. */
bool job_not_sleeping(Job *job)
{
    return !job->sleeping;
}

bool job_is_sleeping(Job *job)
{
    return job->sleeping;
}

/* --- Driver-side queries ----------------------------------------------------- */

bool job_is_cancelled(Job *job)
{
    bool ret;

    job_lock();
    ret = job_is_cancelled_locked(job);
    job_unlock();
    return ret;
}

bool job_cancel_requested(Job *job)
{
    bool ret;

    job_lock();
    ret = job_cancel_requested_locked(job);
    job_unlock();
    return ret;
}

bool job_is_ready(Job *job)
{
    bool ret;

    job_lock();
    ret = job_is_ready_locked(job);
    job_unlock();
    return ret;
}

bool job_is_completed(Job *job)
{
    bool ret;

    job_lock();
    ret = job_is_completed_locked(job);
    job_unlock();
    return ret;
}

void job_transition_to_ready(Job *job)
{
    job_lock();
    job_state_transition_locked(job, JOB_STATUS_READY);
    job_notify_locked(job, JOB_EVENT_READY);
    job_unlock();
}

/* --- Progress and rate limiting ---------------------------------------------- */

void job_progress_update(Job *job, uint64_t done)
{
    job_lock();
    job->progress_current += done;
    job_unlock();
}

void job_progress_set_remaining(Job *job, uint64_t remaining)
{
    job_lock();
    job->progress_total = job->progress_current + remaining;
    job_unlock();
}

void job_progress_increase_remaining(Job *job, uint64_t delta)
{
    job_lock();
    job->progress_total += delta;
    job_unlock();
}

void job_progress_get_locked(Job *job, uint64_t *current, uint64_t *total)
{
    *current = job->progress_current;
    *total = job->progress_total;
}

int64_t job_ratelimit_calculate_delay(Job *job, uint64_t n)
{
    int64_t delay;

    job_lock();
    delay = ratelimit_calculate_delay(&job->limit, n, get_clock_ns());
    job_unlock();
    return delay;
}

void coroutine_fn job_ratelimit_wait(Job *job, uint64_t n)
{
    int64_t delay;

    while ((delay = job_ratelimit_calculate_delay(job, n)) > 0) {
        if (job_is_cancelled(job)) {
            return;
        }
        job_sleep_ns(job, delay);
    }
}
