/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the job tests: the "test" job type and helpers to drive it.
 *
 * A test job is a loop that sleeps in short steps (or yields until
 * entered), becomes READY when asked, finishes when completed or asked
 * to, fails with the error it is given, and counts its driver callbacks.
 * Tests wait with AIO_WAIT_WHILE() on the job's state, never with sleeps.
 * Everything here is main-loop code.
 */
#ifndef TESTS_UNIT_JOB_HELPERS_H
#define TESTS_UNIT_JOB_HELPERS_H

#include "block/blockjob.h"
#include "block/job-driver.h"
#include "block/job-monitor.h"
#include "qmp/job.h"
#include "qmp/qmp.h"
#include "util/aio-wait.h"
#include "util/iothread.h"

typedef struct TestJob {
    BlockJob common;                /* first; block jobs use all of it */
    int make_ready;                 /* atomic: go READY */
    int finish;                     /* atomic: leave the loop */
    int ret;                        /* atomic: what run() returns */
    int wait_forever;               /* atomic: job_yield() until entered */
    int iterations;                 /* atomic */
    int prepare_ret;                /* main loop: what prepare() returns */
    int prepared, committed, aborted, cleaned;  /* main loop */
    /* Called by abort(), in the ABORTING state.  Main loop */
    void (*on_abort)(struct TestJob *t);
} TestJob;

/* The job type (instance TestJob) and its block-job form. */
extern const JobDriver test_job_driver;
extern const JobDriver test_block_job_driver;

/* Main loop, event loop, block layer, QMP job commands, event log. */
void job_helpers_init(void);

/* STRESS_ITERATIONS from the environment (meson -Dstress_iterations). */
int stress_iterations(void);

/* --- Events ---------------------------------------------------------- */

extern GString *status_log;         /* "created running ..." of test jobs */
extern GPtrArray *event_log;        /* event names, in order */
extern struct json_object *last_event_data;
void log_reset(void);
bool logged(const char *event);
/* Which transitions JOB_STATUS_CHANGE events have shown so far (every
 * event is checked against the transition table as it comes). */
extern bool transition_seen[JOB_STATUS__MAX][JOB_STATUS__MAX];
/* How many jobs have sent events but not yet gone to NULL. */
unsigned live_job_ids(void);

/* --- Jobs ------------------------------------------------------------ */

/* A test job in @ctx (NULL: the main loop), with a reference of the
 * test's own that put_job() drops. */
TestJob *new_job(const char *id, JobTxn *txn, AioContext *ctx, int flags);
void put_job(TestJob *t);
JobStatus status_of(TestJob *t);
bool status_is_not(TestJob *t, JobStatus s);
/*
 * The test is the outermost loop, a safe point: a job's completion
 * (deferred work, util/aio-wait.h) runs inside this wait.
 */
#define WAIT_STATUS(t, s) AIO_WAIT_WHILE_RUNNING_DEFERRED(status_is_not(t, s))

/* Apply a monitor verb under job_mutex. */
void verb(TestJob *t, void (*fn)(Job *, Error **), Error **errp);
/* The verbs, for verb(); called with job_mutex held. */
void user_pause(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void user_resume(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void user_cancel(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void soft_cancel(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void complete(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void finalize(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void dismiss(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);

/* Every verb's table check in the job's current state: refused exactly
 * as the table says, with QEMU's message. */
void check_verbs_in_state(TestJob *t);

/* --- Block jobs and QMP ---------------------------------------------- */

/* A 1 MiB null-co node named @name, in @io's context if not NULL. */
BlockDriverState *open_null(const char *name, IOThread *io);
/* A test block job on @bs, with the test's own reference. */
TestJob *new_block_job(const char *id, BlockDriverState *bs);
/* Run QMP command @cmd with @args (JSON text or NULL). */
struct json_object *qmp(const char *cmd, const char *args, Error **errp);
/* A field of @id's entry in query-block-jobs, as a string (new). */
char *block_job_field(const char *id, const char *field);

#endif /* TESTS_UNIT_JOB_HELPERS_H */
