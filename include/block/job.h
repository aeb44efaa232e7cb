/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Jobs: long-running background operations (mirror, backup) with QEMU's
 * state machine, verbs and events.  This header holds what both sides of
 * a job share: the Job object, the JobDriver table, the status and verb
 * enums and job_mutex.  Code that acts on jobs includes one of:
 *
 *   block/job-monitor.h  monitor side (QMP, shutdown): the caller takes
 *                        job_mutex, looks a job up and acts on it in one
 *                        critical section; every function is *_locked.
 *   block/job-driver.h   driver side (a job's own coroutine and callbacks):
 *                        functions take job_mutex themselves.
 *
 * job_mutex is one global mutex: it guards the job list and every mutable
 * field of every job.  It is a leaf towards everything except the BQL: no
 * driver callback, event observer or coroutine entry runs with it held,
 * and it is never held across a yield.  Lock order: BQL -> job_mutex;
 * graph lock and drains are never taken with job_mutex held.
 */
#ifndef BLOCK_JOB_H
#define BLOCK_JOB_H

#include <json-c/json.h>

#include "util/aio.h"
#include "util/coroutine.h"
#include "util/error.h"
#include "util/main-loop.h"
#include "util/queue.h"
#include "util/thread.h"
#include "util/tsa.h"

/* QEMU's JobStatus (qapi/job.json), in its order. */
typedef enum JobStatus {
    JOB_STATUS_UNDEFINED,
    JOB_STATUS_CREATED,
    JOB_STATUS_RUNNING,
    JOB_STATUS_PAUSED,
    JOB_STATUS_READY,
    JOB_STATUS_STANDBY,
    JOB_STATUS_WAITING,
    JOB_STATUS_PENDING,
    JOB_STATUS_ABORTING,
    JOB_STATUS_CONCLUDED,
    JOB_STATUS_NULL,
    JOB_STATUS__MAX,
} JobStatus;

/* QEMU's JobVerb, in its order. */
typedef enum JobVerb {
    JOB_VERB_CANCEL,
    JOB_VERB_PAUSE,
    JOB_VERB_RESUME,
    JOB_VERB_SET_SPEED,
    JOB_VERB_COMPLETE,
    JOB_VERB_DISMISS,
    JOB_VERB_FINALIZE,
    JOB_VERB_CHANGE,
    JOB_VERB__MAX,
} JobVerb;

/* The wire names ("running", "set-speed"). */
const char *job_status_name(JobStatus status);
const char *job_verb_name(JobVerb verb);

/* job_create() flags. */
typedef enum JobCreateFlags {
    JOB_DEFAULT = 0,
    JOB_INTERNAL = 1 << 0,          /* no id, not listed, no events */
    JOB_MANUAL_FINALIZE = 1 << 1,   /* auto-finalize=false */
    JOB_MANUAL_DISMISS = 1 << 2,    /* auto-dismiss=false */
} JobCreateFlags;

typedef struct Job Job;
typedef struct JobTxn JobTxn;

/*
 * A rate limiter in slices: at most slice_quota units start per slice.
 * No lock of its own; the owner's lock guards it (job_mutex for jobs).
 */
typedef struct RateLimit {
    int64_t slice_start_ns;
    int64_t slice_ns;
    uint64_t slice_quota;           /* units per slice; 0 = unlimited */
    uint64_t dispatched;            /* units started in this slice */
} RateLimit;

/* Units per second -> quota per @slice_ns (0: unlimited). */
void ratelimit_set_speed(RateLimit *rl, uint64_t per_sec, int64_t slice_ns);
/*
 * Account @n units at @now_ns and return 0, or, if the slice's quota is
 * used up, the ns to wait before asking again (nothing is accounted).
 * A fresh slice always admits one request, however large.
 */
int64_t ratelimit_calculate_delay(RateLimit *rl, uint64_t n, int64_t now_ns);

/* What the generic layer above Job (BlockJob) hears about, main loop. */
typedef enum JobEvent {
    JOB_EVENT_READY,        /* may come from the job's thread: see below */
    JOB_EVENT_PENDING,
    JOB_EVENT_COMPLETED,
    JOB_EVENT_CANCELLED,
    /* No longer paused by the user (job-resume, or a cancel of a job
     * paused by job-pause): a block job's io-status goes back to ok. */
    JOB_EVENT_USER_RESUMED,
} JobEvent;

/*
 * The lock of every job.  Take it with job_lock()/job_unlock() (explicit,
 * so that clang's analysis follows it; there is no scoped guard).
 */
extern BdMutex job_mutex;

void job_lock(void) TSA_ACQUIRE(job_mutex);
/*
 * Release job_mutex.  In the main loop (BQL held) and with no other
 * BdMutex held, it then sends the events queued while the lock was held,
 * so that QMP clients see them in order and before the command's reply.
 */
void job_unlock(void) TSA_RELEASE(job_mutex);

/*
 * Queue QMP event @name with @data (ownership taken) for the main loop, in
 * order with every other job event.  Any thread.  The events are sent when
 * the main loop next releases job_mutex, or by a bottom half.
 */
void job_event_queue_locked(const char *name, struct json_object *data)
    TSA_REQUIRES(job_mutex);

/*
 * A job type.  Immutable tables.  Callbacks run without job_mutex.
 */
typedef struct JobDriver {
    /* --- immutable ---------------------------------------------------- */
    size_t instance_size;           /* >= sizeof(Job), Job first */
    const char *job_type;           /* "mirror", "backup", ... */

    /* --- the job's coroutine, in the job's AioContext ----------------- */
    /*
     * The job's work.  Returns 0 or -errno (then sets @errp, or the core
     * uses strerror).  Must call job_pause_point() (or job_yield(),
     * job_sleep_ns()) regularly and return soon once
     * job_is_cancelled() is true.  Required.
     */
    int coroutine_fn (*run)(Job *job, Error **errp);
    /* The job is about to pause / has resumed at a pause point. */
    void coroutine_fn (*pause)(Job *job);
    void coroutine_fn (*resume)(Job *job);

    /* --- main loop (BQL), job_mutex not held -------------------------- */
    /* The user paused / resumed the job (job-pause, job-resume). */
    void (*user_resume)(Job *job) BQL_PTR;
    /* job-complete on a READY job: start the switch-over. */
    void (*complete)(Job *job, Error **errp) BQL_PTR;
    /* Drained: the job's I/O must stop (BlockJob's dev ops). */
    void (*drain)(Job *job) BQL_PTR;
    /*
     * Cancel requested.  Returns whether the cancel is forced; a driver
     * that can finish gracefully (a READY mirror) returns @force.
     * Without the callback every cancel is forced.
     */
    bool (*cancel)(Job *job, bool force) BQL_PTR;
    /* Finalization, all jobs of a transaction together: prepare each,
     * then commit each (all succeeded) or abort each, then clean each. */
    int (*prepare)(Job *job) BQL_PTR;
    void (*commit)(Job *job) BQL_PTR;
    void (*abort)(Job *job) BQL_PTR;
    void (*clean)(Job *job) BQL_PTR;
    /* The last reference is gone: free what the driver owns. */
    void (*free)(Job *job) BQL_PTR;
} JobDriver;

/* Called with the job's final ret when it finalizes (main loop). */
typedef void JobCompletionFunc(void *opaque, int ret);

/*
 * A job.  Ownership of each field:
 *   immutable  set by job_create() before the job is listed
 *   job_mutex  read and written only with job_mutex held:
 *              TSA_GUARDED_BY(job_mutex), checked by clang's analysis
 *   job_mutex + BQL  written with both held, read with either (the
 *              analysis cannot express "either": a comment only)
 */
struct Job {
    char *id;                       /* immutable; NULL for internal jobs */
    const JobDriver *driver;        /* immutable */
    Coroutine *co;                  /* immutable once job_start() ran */
    JobCompletionFunc *cb;          /* immutable */
    void *opaque;                   /* immutable */
    bool auto_finalize;             /* immutable */
    bool auto_dismiss;              /* immutable */

    /*
     * Where the coroutine runs.  Written only with the BQL and job_mutex
     * held while the job is paused (or not started); read under either.
     */
    AioContext *aio_context;

    /* The generic layer's hook for events (BlockJob), main loop.
     * Set once before job_start(). */
    void (*event_hook)(Job *job, JobEvent ev) TSA_GUARDED_BY(job_mutex);

    int refcnt TSA_GUARDED_BY(job_mutex);
    JobStatus status TSA_GUARDED_BY(job_mutex);
    /* > 0: the job must pause at its next pause point. */
    int pause_count TSA_GUARDED_BY(job_mutex);
    bool user_paused TSA_GUARDED_BY(job_mutex);   /* job-pause, not drain */
    bool paused TSA_GUARDED_BY(job_mutex);    /* yielded at a pause point */
    /* The coroutine runs, or was entered and has not yielded. */
    bool busy TSA_GUARDED_BY(job_mutex);
    /* The coroutine is sleeping in job_sleep_ns() (not a pause). */
    bool sleeping TSA_GUARDED_BY(job_mutex);
    /* run() returned; the rest happens in the main loop. */
    bool deferred_to_main_loop TSA_GUARDED_BY(job_mutex);
    bool cancelled TSA_GUARDED_BY(job_mutex); /* a cancel was requested */
    bool force_cancel TSA_GUARDED_BY(job_mutex);  /* ... and it is forced */
    int ret TSA_GUARDED_BY(job_mutex);        /* 0, or -errno */
    Error *err TSA_GUARDED_BY(job_mutex);     /* set when ret < 0 */

    /* Progress, in driver-defined units (bytes for block jobs). */
    uint64_t progress_current TSA_GUARDED_BY(job_mutex);
    uint64_t progress_total TSA_GUARDED_BY(job_mutex);

    /* Rate limit in units per second, 0 = unlimited. */
    int64_t speed TSA_GUARDED_BY(job_mutex);
    RateLimit limit TSA_GUARDED_BY(job_mutex);

    JobTxn *txn TSA_GUARDED_BY(job_mutex);
    /*
     * Links in the transaction's list and in the global job list (the
     * lock is named in the element type, so that it guards every link
     * the list macros follow).
     */
    QLIST_ENTRY(Job TSA_GUARDED_BY(job_mutex)) txn_link;
    QLIST_ENTRY(Job TSA_GUARDED_BY(job_mutex)) job_link;
};

#endif /* BLOCK_JOB_H */
