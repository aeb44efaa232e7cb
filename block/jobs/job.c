/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job core: QEMU's job state machine and verb table, the ordered
 * queue of job events, the job list, references, transactions and
 * creation.  The driver-facing API (the job's coroutine, pause points,
 * progress, rate limiting) is in job-driver.c, the monitor-facing verbs
 * and the completion of transactions in job-monitor.c; job-internal.h is
 * what the three share.
 *
 * Invariants:
 * - job_mutex guards the job list and every mutable job field; it is
 *   dropped around every driver callback, coroutine wake-up and wait, and
 *   never held across a yield.
 * - Status changes go through job_state_transition_locked(), which checks
 *   the transition table and queues JOB_STATUS_CHANGE.  Events are queued
 *   under job_mutex and sent from the main loop in queue order.
 * - The job list holds one reference, dropped when the job is dismissed;
 *   a started job's coroutine holds another, dropped by job_exit().
 */
#include "util/osdep.h"

#include "block/jobs/job-internal.h"
#include "util/event.h"
#include "util/id.h"
#include "util/main-loop.h"

BdMutex job_mutex = { PTHREAD_MUTEX_INITIALIZER };

/* Every job; the lock is in the element type, so the list macros check it. */
static QLIST_HEAD(, Job TSA_GUARDED_BY(job_mutex)) jobs;

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
        event_emit(ev->name, ev->data);
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

/* --- Small state helpers --------------------------------------------------- */

const char *job_id(Job *job)
{
    return job->id ? job->id : "";
}

const char *job_type_name(Job *job)
{
    return job->driver->job_type;
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
    return job->busy && !job->deferred_to_main_loop &&
           !job_is_completed_locked(job);
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

void job_state_transition_locked(Job *job, JobStatus to)
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

void job_notify_locked(Job *job, JobEvent ev)
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
    Error *err;

    assert(job->refcnt > 0);
    if (--job->refcnt) {
        return;
    }
    assert(job->status == JOB_STATUS_NULL);
    assert(!job->txn && !QLIST_IS_INSERTED(job, job_link));
    err = job->err;
    job->err = NULL;
    job_unlock();
    if (job->driver->free) {
        job->driver->free(job);
    }
    error_free(err);
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

/* A new object, but its fields are job_mutex's like any transaction's. */
static JobTxn *job_txn_new_locked(void) TSA_REQUIRES(job_mutex)
{
    JobTxn *txn = g_new0(JobTxn, 1);    /* no jobs yet */

    txn->refcnt = 1;
    return txn;
}

JobTxn *job_txn_new(void)
{
    JobTxn *txn;

    job_lock();
    txn = job_txn_new_locked();
    job_unlock();
    return txn;
}

void job_txn_unref_locked(JobTxn *txn)
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

void job_txn_del_job_locked(Job *job)
{
    if (job->txn) {
        QLIST_REMOVE(job, txn_link);
        job_txn_unref_locked(job->txn);
        job->txn = NULL;
    }
}

int job_txn_apply_locked(Job *job, int (*fn)(Job *))
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

/* --- Creation ---------------------------------------------------------------- */

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
    if (job_id && !id_wellformed(job_id)) {
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
        txn = job_txn_new_locked();
        job_txn_add_job_locked(txn, job);
        job_txn_unref_locked(txn);
    }
    job_unlock();
    return job;
}
