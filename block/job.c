/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job core: QEMU's job state machine and verb table, transactions,
 * pause points, cancellation, finalization, progress, rate limiting and
 * JOB_STATUS_CHANGE events.
 *
 * Invariants:
 * - job_mutex guards the job list and every mutable job field; it is
 *   dropped around every driver callback, coroutine wake-up and wait, and
 *   never held across a yield.
 * - A job's coroutine runs in the job's AioContext; everything after run()
 *   returns (completion, finalization, dismissal, freeing) runs in the
 *   main loop, reached through a bottom half.
 * - `busy` is false only while the coroutine is yielded in job_do_yield
 *   (a pause point, job_yield(), job_sleep_ns()); whoever sets it back to
 *   true wakes the coroutine, exactly once.
 * - Status changes go through job_state_transition_locked(), which checks
 *   the transition table and queues JOB_STATUS_CHANGE.  Events are queued
 *   under job_mutex and sent from the main loop in queue order.
 * - started job: one reference for the coroutine, dropped by job_exit().
 */
#include "util/osdep.h"

#include "block/job-driver.h"
#include "block/job-monitor.h"
#include "qmp/qmp.h"
#include "util/aio-wait.h"
#include "util/main-loop.h"

#define JOB_RATELIMIT_SLICE_NS  (100 * 1000 * 1000LL)

struct JobTxn {
    QLIST_HEAD(, Job) jobs;         /* job_mutex */
    int refcnt;                     /* job_mutex */
    bool aborting;                  /* job_mutex */
};

BdMutex job_mutex = { PTHREAD_MUTEX_INITIALIZER };

static QLIST_HEAD(, Job) jobs TSA_GUARDED_BY(job_mutex);

/* Events waiting for the main loop, in order.  job_mutex */
typedef struct JobQueuedEvent {
    char *name;
    struct json_object *data;
} JobQueuedEvent;
static GQueue pending_events TSA_GUARDED_BY(job_mutex) = G_QUEUE_INIT;
static bool events_bh_scheduled TSA_GUARDED_BY(job_mutex);
/* The main loop is sending events (no re-entry from an observer).  BQL */
static bool events_flushing;

/* --- Tables -------------------------------------------------------------- */

static const char *const status_names[JOB_STATUS__MAX] = {
    [JOB_STATUS_UNDEFINED] = "undefined",
    [JOB_STATUS_CREATED] = "created",
    [JOB_STATUS_RUNNING] = "running",
    [JOB_STATUS_PAUSED] = "paused",
    [JOB_STATUS_READY] = "ready",
    [JOB_STATUS_STANDBY] = "standby",
    [JOB_STATUS_WAITING] = "waiting",
    [JOB_STATUS_PENDING] = "pending",
    [JOB_STATUS_ABORTING] = "aborting",
    [JOB_STATUS_CONCLUDED] = "concluded",
    [JOB_STATUS_NULL] = "null",
};

static const char *const verb_names[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = "cancel",
    [JOB_VERB_PAUSE] = "pause",
    [JOB_VERB_RESUME] = "resume",
    [JOB_VERB_SET_SPEED] = "set-speed",
    [JOB_VERB_COMPLETE] = "complete",
    [JOB_VERB_DISMISS] = "dismiss",
    [JOB_VERB_FINALIZE] = "finalize",
    [JOB_VERB_CHANGE] = "change",
};

#define S(x) (1u << JOB_STATUS_##x)

/* For each status, the set of statuses it may move to. */
static const unsigned next_statuses[JOB_STATUS__MAX] = {
    [JOB_STATUS_UNDEFINED] = S(CREATED),
    [JOB_STATUS_CREATED] = S(RUNNING) | S(ABORTING) | S(NULL),
    [JOB_STATUS_RUNNING] = S(PAUSED) | S(READY) | S(WAITING) | S(ABORTING),
    [JOB_STATUS_PAUSED] = S(RUNNING),
    [JOB_STATUS_READY] = S(STANDBY) | S(WAITING) | S(ABORTING),
    [JOB_STATUS_STANDBY] = S(READY),
    [JOB_STATUS_WAITING] = S(PENDING) | S(ABORTING),
    [JOB_STATUS_PENDING] = S(ABORTING) | S(CONCLUDED),
    [JOB_STATUS_ABORTING] = S(ABORTING) | S(CONCLUDED),
    [JOB_STATUS_CONCLUDED] = S(NULL),
    [JOB_STATUS_NULL] = 0,
};

/* For each verb, the statuses in which the monitor may use it. */
static const unsigned verb_statuses[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = S(CREATED) | S(RUNNING) | S(PAUSED) | S(READY) |
                        S(STANDBY) | S(WAITING) | S(PENDING),
    [JOB_VERB_PAUSE] = S(CREATED) | S(RUNNING) | S(PAUSED) | S(READY) |
                       S(STANDBY),
    [JOB_VERB_RESUME] = S(CREATED) | S(RUNNING) | S(PAUSED) | S(READY) |
                        S(STANDBY),
    [JOB_VERB_SET_SPEED] = S(CREATED) | S(RUNNING) | S(PAUSED) | S(READY) |
                           S(STANDBY),
    [JOB_VERB_COMPLETE] = S(READY),
    [JOB_VERB_DISMISS] = S(CONCLUDED),
    [JOB_VERB_FINALIZE] = S(PENDING),
    [JOB_VERB_CHANGE] = S(RUNNING) | S(PAUSED) | S(READY) | S(STANDBY),
};

#undef S

const char *job_status_name(JobStatus status)
{
    assert(status < JOB_STATUS__MAX);
    return status_names[status];
}

const char *job_verb_name(JobVerb verb)
{
    assert(verb < JOB_VERB__MAX);
    return verb_names[verb];
}

bool job_transition_allowed(JobStatus from, JobStatus to)
{
    assert(from < JOB_STATUS__MAX && to < JOB_STATUS__MAX);
    return next_statuses[from] & (1u << to);
}

bool job_verb_allowed(JobStatus status, JobVerb verb)
{
    assert(status < JOB_STATUS__MAX && verb < JOB_VERB__MAX);
    return verb_statuses[verb] & (1u << status);
}

/* --- The lock and the event queue ------------------------------------------ */

void job_lock(void)
{
    bd_mutex_lock(&job_mutex);
}

/* Send the queued events.  Main loop, job_mutex not held. */
static void job_flush_events(void)
{
    bql_assert_held();
    if (events_flushing) {
        return;                 /* the outer flush sends the rest */
    }
    events_flushing = true;
    for (;;) {
        JobQueuedEvent *ev;

        job_lock();
        ev = g_queue_pop_head(&pending_events);
        bd_mutex_unlock(&job_mutex);
        if (!ev) {
            break;
        }
        qmp_event_emit(ev->name, ev->data);
        g_free(ev->name);
        g_free(ev);
    }
    events_flushing = false;
}

void job_unlock(void)
{
    bool flush = bql_locked() && !g_queue_is_empty(&pending_events);

    bd_mutex_unlock(&job_mutex);
    if (flush && bd_mutex_held_count() == 0) {
        job_flush_events();
    }
}

static void job_events_bh(void *opaque)
{
    job_lock();
    events_bh_scheduled = false;
    job_unlock();               /* flushes */
}

void job_event_queue_locked(const char *name, struct json_object *data)
{
    JobQueuedEvent *ev = g_new0(JobQueuedEvent, 1);

    IO_CODE();
    ev->name = g_strdup(name);
    ev->data = data;
    g_queue_push_tail(&pending_events, ev);
    /* The main loop flushes when it unlocks; others need a bottom half. */
    if (!bql_locked() && !events_bh_scheduled) {
        events_bh_scheduled = true;
        aio_bh_schedule_oneshot(main_context(), job_events_bh, NULL);
    }
}

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

/* --- Small state helpers --------------------------------------------------- */

static bool job_is_internal(Job *job)
{
    return job->id == NULL;
}

const char *job_id(Job *job)
{
    return job->id ? job->id : "";
}

const char *job_type_name(Job *job)
{
    return job->driver->job_type;
}

static bool job_started_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    return job->co != NULL;
}

static bool job_should_pause_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    return job->pause_count > 0;
}

bool job_is_completed_locked(Job *job)
{
    switch (job->status) {
    case JOB_STATUS_WAITING:
    case JOB_STATUS_PENDING:
    case JOB_STATUS_ABORTING:
    case JOB_STATUS_CONCLUDED:
    case JOB_STATUS_NULL:
        return true;
    default:
        return false;
    }
}

bool job_is_ready_locked(Job *job)
{
    return job->status == JOB_STATUS_READY ||
           job->status == JOB_STATUS_STANDBY;
}

bool job_is_paused_locked(Job *job)
{
    return job->paused;
}

bool job_is_busy_locked(Job *job)
{
    return job->busy;
}

bool job_is_cancelled_locked(Job *job)
{
    /* A soft cancel of a READY job lets it finish as a success. */
    return job->cancelled && job->force_cancel;
}

bool job_cancel_requested_locked(Job *job)
{
    return job->cancelled;
}

static void job_state_transition_locked(Job *job, JobStatus to)
    TSA_REQUIRES(job_mutex)
{
    JobStatus from = job->status;

    if (!job_transition_allowed(from, to)) {
        g_error("job '%s': invalid transition %s -> %s", job_id(job),
                job_status_name(from), job_status_name(to));
    }
    job->status = to;
    if (!job_is_internal(job) && from != to) {
        struct json_object *data = json_object_new_object();

        json_object_object_add(data, "id", json_object_new_string(job->id));
        json_object_object_add(data, "status",
                               json_object_new_string(job_status_name(to)));
        job_event_queue_locked("JOB_STATUS_CHANGE", data);
    }
}

static void job_notify_locked(Job *job, JobEvent ev) TSA_REQUIRES(job_mutex)
{
    if (job->event_hook && !job_is_internal(job)) {
        job->event_hook(job, ev);
    }
}

bool job_apply_verb_locked(Job *job, JobVerb verb, Error **errp)
{
    if (job_verb_allowed(job->status, verb)) {
        return true;
    }
    error_setg(errp, "Job '%s' in state '%s' cannot accept command verb '%s'",
               job_id(job), job_status_name(job->status),
               job_verb_name(verb));
    return false;
}

/* --- List and references ------------------------------------------------- */

static Job *job_next_any_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    return job ? QLIST_NEXT(job, job_link) : QLIST_FIRST(&jobs);
}

Job *job_next_locked(Job *job)
{
    do {
        job = job_next_any_locked(job);
    } while (job && job_is_internal(job));
    return job;
}

Job *job_get_locked(const char *id)
{
    Job *job;

    QLIST_FOREACH(job, &jobs, job_link) {
        if (job->id && !strcmp(id, job->id)) {
            return job;
        }
    }
    return NULL;
}

void job_ref_locked(Job *job)
{
    job->refcnt++;
}

void job_unref_locked(Job *job)
{
    assert(job->refcnt > 0);
    if (--job->refcnt) {
        return;
    }
    assert(job->status == JOB_STATUS_NULL);
    assert(!job->txn && !QLIST_IS_INSERTED(job, job_link));
    job_unlock();
    if (job->driver->free) {
        job->driver->free(job);
    }
    error_free(job->err);
    g_free(job->id);
    g_free(job);
    job_lock();
}

void job_ref(Job *job)
{
    job_lock();
    job_ref_locked(job);
    job_unlock();
}

void job_unref(Job *job)
{
    job_lock();
    job_unref_locked(job);
    job_unlock();
}

/* --- Transactions ---------------------------------------------------------- */

JobTxn *job_txn_new(void)
{
    JobTxn *txn = g_new0(JobTxn, 1);

    QLIST_INIT(&txn->jobs);
    txn->refcnt = 1;
    return txn;
}

static void job_txn_unref_locked(JobTxn *txn) TSA_REQUIRES(job_mutex)
{
    if (txn && --txn->refcnt == 0) {
        assert(QLIST_EMPTY(&txn->jobs));
        g_free(txn);
    }
}

void job_txn_unref(JobTxn *txn)
{
    job_lock();
    job_txn_unref_locked(txn);
    job_unlock();
}

static void job_txn_add_job_locked(JobTxn *txn, Job *job)
    TSA_REQUIRES(job_mutex)
{
    assert(!job->txn);
    job->txn = txn;
    QLIST_INSERT_HEAD(&txn->jobs, job, txn_link);
    txn->refcnt++;
}

static void job_txn_del_job_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    if (job->txn) {
        QLIST_REMOVE(job, txn_link);
        job_txn_unref_locked(job->txn);
        job->txn = NULL;
    }
}

/*
 * Call @fn on every job of @job's transaction until one returns non-zero;
 * returns that value.  @fn may drop job_mutex: the transaction and the
 * jobs are referenced meanwhile.
 */
static int job_txn_apply_locked(Job *job, int (*fn)(Job *))
    TSA_REQUIRES(job_mutex)
{
    JobTxn *txn = job->txn;
    Job *other, *next;
    int rc = 0;

    txn->refcnt++;
    job_ref_locked(job);
    QLIST_FOREACH_SAFE(other, &txn->jobs, txn_link, next) {
        rc = fn(other);
        if (rc) {
            break;
        }
    }
    job_unref_locked(job);
    job_txn_unref_locked(txn);
    return rc;
}

/* --- Creation and the coroutine -------------------------------------------- */

static bool job_id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

Job *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                AioContext *ctx, int flags, JobCompletionFunc *cb,
                void *opaque, Error **errp)
{
    Job *job;

    GLOBAL_STATE_CODE();
    assert(driver->instance_size >= sizeof(Job) && driver->run);
    if (job_id && (flags & JOB_INTERNAL)) {
        error_setg(errp, "Cannot specify job ID for internal job");
        return NULL;
    }
    if (!job_id && !(flags & JOB_INTERNAL)) {
        error_setg(errp, "An explicit job ID is required");
        return NULL;
    }
    if (job_id && !job_id_wellformed(job_id)) {
        error_setg(errp, "Invalid job ID '%s'", job_id);
        return NULL;
    }

    job_lock();
    if (job_id && job_get_locked(job_id)) {
        job_unlock();
        error_setg(errp, "Job ID '%s' already in use", job_id);
        return NULL;
    }
    job = g_malloc0(driver->instance_size);
    job->id = g_strdup(job_id);
    job->driver = driver;
    job->aio_context = ctx;
    job->cb = cb;
    job->opaque = opaque;
    job->auto_finalize = !(flags & JOB_MANUAL_FINALIZE);
    job->auto_dismiss = !(flags & JOB_MANUAL_DISMISS);
    job->refcnt = 1;
    /* Not started: counts as paused until job_start(). */
    job->pause_count = 1;
    job->paused = true;
    job->limit.slice_ns = JOB_RATELIMIT_SLICE_NS;
    QLIST_INSERT_HEAD(&jobs, job, job_link);
    job_state_transition_locked(job, JOB_STATUS_CREATED);
    if (txn) {
        job_txn_add_job_locked(txn, job);
    } else {
        txn = job_txn_new();
        job_txn_add_job_locked(txn, job);
        job_txn_unref_locked(txn);
    }
    job_unlock();
    return job;
}

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

static void job_exit(void *opaque);

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
    aio_bh_schedule_oneshot(main_context(), job_exit, job);
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

/* Wake the coroutine if it is yielded and @cond (NULL: always) agrees.
 * Drops job_mutex around the wake-up. */
static void job_enter_cond_locked(Job *job, bool (*cond)(Job *))
    TSA_REQUIRES(job_mutex)
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
static bool job_not_sleeping(Job *job) TSA_NO_TSA
{
    /* Called from job_enter_cond_locked() with job_mutex held. */
    return !job->sleeping;
}

static bool job_is_sleeping(Job *job) TSA_NO_TSA
{
    /* Called from job_enter_cond_locked() with job_mutex held. */
    return job->sleeping;
}

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

static void job_do_dismiss_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    job->busy = false;
    job->paused = false;
    job->deferred_to_main_loop = true;
    job_txn_del_job_locked(job);
    job_state_transition_locked(job, JOB_STATUS_NULL);
    QLIST_REMOVE(job, job_link);
    job->job_link.le_prev = NULL;
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

static int job_finalize_single_locked(Job *job) TSA_REQUIRES(job_mutex)
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

static int job_prepare_locked(Job *job) TSA_REQUIRES(job_mutex)
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

static void job_completed_txn_abort_locked(Job *job) TSA_REQUIRES(job_mutex);

static void job_do_finalize_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    assert(job->txn);
    if (job_txn_apply_locked(job, job_prepare_locked)) {
        job_completed_txn_abort_locked(job);
    } else {
        job_txn_apply_locked(job, job_finalize_single_locked);
    }
}

static void job_cancel_async_locked(Job *job, bool force)
    TSA_REQUIRES(job_mutex)
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
    TSA_REQUIRES(job_mutex)
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

static void job_completed_locked(Job *job) TSA_REQUIRES(job_mutex)
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
static void job_exit(void *opaque)
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
    AIO_WAIT_WHILE(NULL, job_wait_unfinished(job));
    job_lock();
    ret = (job_is_cancelled_locked(job) && job->ret == 0) ? -ECANCELED
                                                          : job->ret;
    job_unref_locked(job);
    return ret;
}

static void job_force_cancel_err(Job *job, Error **errp)
    TSA_NO_TSA
{
    /* Called by job_finish_sync_locked() with job_mutex held. */
    job_cancel_locked(job, true);
}

static void job_soft_cancel_err(Job *job, Error **errp)
    TSA_NO_TSA
{
    /* Called by job_finish_sync_locked() with job_mutex held. */
    job_cancel_locked(job, false);
}

int job_cancel_sync_locked(Job *job, bool force)
{
    return job_finish_sync_locked(job, force ? job_force_cancel_err
                                             : job_soft_cancel_err, NULL);
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
