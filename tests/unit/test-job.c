/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job core: the state machine and verb tables against QEMU's, the
 * events of a job's life, pause/resume/cancel in every state,
 * transactions, auto-finalize/auto-dismiss, job_mutex discipline under a
 * two-iothread stress, and BlockJobs under drain (a drain pauses a
 * running job and resumes it; a drain never waits on a job that waits).
 *
 * Jobs are of type "test", defined here: a loop that sleeps in short
 * steps, becomes READY when asked, finishes when completed, fails with
 * the error it is given, and counts its driver callbacks.  Tests wait
 * with AIO_WAIT_WHILE() on the job's state, never with sleeps.
 */
#include "util/osdep.h"

#include "block/blockjob.h"
#include "block/job-driver.h"
#include "block/job-monitor.h"
#include "qmp/job.h"
#include "qmp/qmp.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"

typedef struct TestJob {
    BlockJob common;                /* first; block jobs use all of it */
    int make_ready;                 /* atomic: go READY */
    int finish;                     /* atomic: leave the loop */
    int ret;                        /* atomic: what run() returns */
    int wait_forever;               /* atomic: job_yield() until entered */
    int iterations;                 /* atomic */
    int prepared, committed, aborted, cleaned;  /* main loop */
} TestJob;

static int coroutine_fn test_job_run(Job *job, Error **errp)
{
    TestJob *t = (TestJob *)job;

    while (!job_is_cancelled(job)) {
        if (qatomic_read(&t->make_ready) && !job_is_ready(job)) {
            job_transition_to_ready(job);
        }
        if (qatomic_read(&t->finish) || job_cancel_requested(job)) {
            break;
        }
        qatomic_inc(&t->iterations);
        job_progress_set_remaining(job, 1);
        if (qatomic_read(&t->wait_forever)) {
            job_yield(job);
        } else {
            job_sleep_ns(job, 100 * 1000);
        }
    }
    return qatomic_read(&t->ret);
}

static void test_job_complete(Job *job, Error **errp)
{
    TestJob *t = (TestJob *)job;

    qatomic_set(&t->finish, 1);
    job_enter(job);
}

/* Like mirror: a soft cancel of a READY job finishes it successfully. */
static bool test_job_cancel(Job *job, bool force)
{
    return force || !job_is_ready(job);
}

static int test_job_prepare(Job *job)
{
    ((TestJob *)job)->prepared++;
    return 0;
}

static void test_job_commit(Job *job)
{
    ((TestJob *)job)->committed++;
}

static void test_job_abort(Job *job)
{
    ((TestJob *)job)->aborted++;
}

static void test_job_clean(Job *job)
{
    ((TestJob *)job)->cleaned++;
}

static const JobDriver test_job_driver = {
    .instance_size = sizeof(TestJob),
    .job_type = "test",
    .run = test_job_run,
    .complete = test_job_complete,
    .cancel = test_job_cancel,
    .prepare = test_job_prepare,
    .commit = test_job_commit,
    .abort = test_job_abort,
    .clean = test_job_clean,
};

static const JobDriver test_block_job_driver = {
    .instance_size = sizeof(TestJob),
    .job_type = "test",
    .run = test_job_run,
    .complete = test_job_complete,
    .cancel = test_job_cancel,
    .free = block_job_free,
};

static int stress_iterations(void)
{
    const char *s = getenv("STRESS_ITERATIONS");

    return s ? MAX(atoi(s), 1) : 1;
}

/* --- Events ------------------------------------------------------------- */

static GString *status_log;         /* "created running ..." of test jobs */
static GPtrArray *event_log;        /* event names */
static struct json_object *last_event_data;

static void record_event(const char *event, struct json_object *msg,
                         void *opaque)
{
    struct json_object *data = json_object_object_get(msg, "data");

    g_ptr_array_add(event_log, g_strdup(event));
    json_object_put(last_event_data);
    last_event_data = json_object_get(data);
    if (!strcmp(event, "JOB_STATUS_CHANGE")) {
        g_string_append_printf(status_log, "%s%s", status_log->len ? " " : "",
            json_object_get_string(json_object_object_get(data, "status")));
    }
}

static void log_reset(void)
{
    g_string_truncate(status_log, 0);
    g_ptr_array_set_size(event_log, 0);
}

static bool logged(const char *event)
{
    for (guint i = 0; i < event_log->len; i++) {
        if (!strcmp(event_log->pdata[i], event)) {
            return true;
        }
    }
    return false;
}

/* --- Helpers ------------------------------------------------------------ */

static TestJob *new_job(const char *id, JobTxn *txn, AioContext *ctx,
                        int flags)
{
    Job *job = job_create(id, &test_job_driver, txn,
                          ctx ? ctx : main_context(), flags, NULL, NULL,
                          &error_abort);

    job_ref(job);               /* the test's own, dropped by put_job() */
    return (TestJob *)job;
}

static void put_job(TestJob *t)
{
    job_unref(&t->common.job);
}

static JobStatus status_of(TestJob *t)
{
    JobStatus s;

    job_lock();
    s = t->common.job.status;
    job_unlock();
    return s;
}

static bool status_is_not(TestJob *t, JobStatus s)
{
    return status_of(t) != s;
}

#define WAIT_STATUS(t, s) AIO_WAIT_WHILE(NULL, status_is_not(t, s))

static void verb(TestJob *t, void (*fn)(Job *, Error **), Error **errp)
{
    job_lock();
    fn(&t->common.job, errp);
    job_unlock();
}

static void user_pause(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_pause_locked(job, errp);
}

static void user_resume(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_resume_locked(job, errp);
}

static void user_cancel(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_cancel_locked(job, true, errp);
}

static void soft_cancel(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_cancel_locked(job, false, errp);
}

static void complete(Job *job, Error **errp) TSA_NO_TSA
{
    job_complete_locked(job, errp);
}

static void finalize(Job *job, Error **errp) TSA_NO_TSA
{
    job_finalize_locked(job, errp);
}

static void dismiss(Job *job, Error **errp) TSA_NO_TSA
{
    job_dismiss_locked(&job, errp);
}

/* --- Tables ------------------------------------------------------------- */

/* QEMU's tables, written out as strings (one letter per status). */
static const char status_letters[] = "UCRPYSWDXEN";
static const char *const qemu_transitions[JOB_STATUS__MAX] = {
    "C", "RXN", "PYWX", "R", "SWX", "Y", "DX", "XE", "XE", "N", "",
};
static const char *const qemu_verbs[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = "CRPYSWD",
    [JOB_VERB_PAUSE] = "CRPYS",
    [JOB_VERB_RESUME] = "CRPYS",
    [JOB_VERB_SET_SPEED] = "CRPYS",
    [JOB_VERB_COMPLETE] = "Y",
    [JOB_VERB_DISMISS] = "E",
    [JOB_VERB_FINALIZE] = "D",
    [JOB_VERB_CHANGE] = "RPYS",
};

static void test_transition_table(void)
{
    for (int from = 0; from < JOB_STATUS__MAX; from++) {
        for (int to = 0; to < JOB_STATUS__MAX; to++) {
            bool want = strchr(qemu_transitions[from], status_letters[to]);

            g_assert_cmpint(job_transition_allowed(from, to), ==, want);
        }
    }
}

static void test_verb_table(void)
{
    for (int v = 0; v < JOB_VERB__MAX; v++) {
        for (int s = 0; s < JOB_STATUS__MAX; s++) {
            bool want = strchr(qemu_verbs[v], status_letters[s]);

            g_assert_cmpint(job_verb_allowed(s, v), ==, want);
        }
    }
    g_assert_cmpstr(job_status_name(JOB_STATUS_CONCLUDED), ==, "concluded");
    g_assert_cmpstr(job_verb_name(JOB_VERB_SET_SPEED), ==, "set-speed");
}

/* Every verb in a job's current state: refused exactly as the table says,
 * with QEMU's message. */
static void check_verbs_in_state(TestJob *t)
{
    JobStatus s = status_of(t);

    for (int v = 0; v < JOB_VERB__MAX; v++) {
        Error *err = NULL;
        bool ok;

        job_lock();
        ok = job_apply_verb_locked(&t->common.job, v, &err);
        job_unlock();
        g_assert_cmpint(ok, ==, job_verb_allowed(s, v));
        if (!ok) {
            g_autofree char *want = g_strdup_printf(
                "Job '%s' in state '%s' cannot accept command verb '%s'",
                t->common.job.id, job_status_name(s), job_verb_name(v));
            g_assert_cmpstr(error_get_pretty(err), ==, want);
            error_free(err);
        }
    }
}

/* --- A job's life --------------------------------------------------------- */

static void test_life_events(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_DEFAULT);

    log_reset();
    check_verbs_in_state(t);
    job_start(&t->common.job);
    check_verbs_in_state(t);
    qatomic_set(&t->make_ready, 1);
    WAIT_STATUS(t, JOB_STATUS_READY);
    check_verbs_in_state(t);
    verb(t, complete, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    g_assert_cmpstr(status_log->str, ==,
                    "running ready waiting pending concluded null");
    g_assert_cmpint(t->prepared, ==, 1);
    g_assert_cmpint(t->committed, ==, 1);
    g_assert_cmpint(t->aborted, ==, 0);
    g_assert_cmpint(t->cleaned, ==, 1);
    put_job(t);
}

static void test_created_event(void)
{
    TestJob *t;

    log_reset();
    t = new_job("j0", NULL, NULL, JOB_DEFAULT);
    g_assert_cmpstr(status_log->str, ==, "created");
    /* Cancelling a job that never started: aborting, concluded, null. */
    verb(t, user_cancel, &error_abort);
    g_assert_cmpstr(status_log->str, ==, "created aborting concluded null");
    g_assert_cmpint(t->aborted, ==, 1);
    put_job(t);
}

static void test_duplicate_and_missing_id(void)
{
    TestJob *t = new_job("dup", NULL, NULL, JOB_DEFAULT);
    Error *err = NULL;

    g_assert_null(job_create("dup", &test_job_driver, NULL, main_context(),
                             0, NULL, NULL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Job ID 'dup' already in use");
    error_free(err);
    err = NULL;
    g_assert_null(job_create(NULL, &test_job_driver, NULL, main_context(),
                             0, NULL, NULL, &err));
    error_free(err);
    verb(t, user_cancel, &error_abort);
    put_job(t);
}

/* --- Pause, resume, cancel in every state ----------------------------------- */

static void test_pause_resume_running(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_DEFAULT);
    Error *err = NULL;

    job_start(&t->common.job);
    log_reset();
    verb(t, user_pause, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_PAUSED);
    check_verbs_in_state(t);
    verb(t, user_pause, &err);
    g_assert_cmpstr(error_get_pretty(err), ==, "Job is already paused");
    error_free(err);
    verb(t, user_resume, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_RUNNING);
    err = NULL;
    verb(t, user_resume, &err);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Can't resume a job that was not paused");
    error_free(err);
    g_assert_cmpstr(status_log->str, ==, "paused running");

    /* Cancel while paused: the cancel resumes it and it aborts. */
    verb(t, user_pause, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_PAUSED);
    verb(t, user_cancel, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    g_assert_cmpint(t->aborted, ==, 1);
    put_job(t);
}

static void test_pause_created(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_DEFAULT);

    verb(t, user_pause, &error_abort);
    job_start(&t->common.job);
    /* Paused at its first pause point, before run() ran. */
    WAIT_STATUS(t, JOB_STATUS_PAUSED);
    g_assert_cmpint(qatomic_read(&t->iterations), ==, 0);
    verb(t, user_resume, &error_abort);
    AIO_WAIT_WHILE(NULL, qatomic_read(&t->iterations) == 0);
    verb(t, user_cancel, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    put_job(t);
}

static void test_pause_ready_standby(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_DEFAULT);

    qatomic_set(&t->make_ready, 1);
    job_start(&t->common.job);
    WAIT_STATUS(t, JOB_STATUS_READY);
    verb(t, user_pause, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_STANDBY);
    check_verbs_in_state(t);
    verb(t, user_resume, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_READY);
    /* A soft cancel of a READY job completes it (as mirror's). */
    log_reset();
    verb(t, soft_cancel, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    g_assert_cmpstr(status_log->str, ==, "waiting pending concluded null");
    g_assert_cmpint(t->committed, ==, 1);
    put_job(t);
}

static void test_manual_finalize_dismiss(void)
{
    TestJob *t = new_job("j0", NULL, NULL,
                         JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS);
    Error *err = NULL;

    qatomic_set(&t->finish, 1);
    job_start(&t->common.job);
    WAIT_STATUS(t, JOB_STATUS_PENDING);
    check_verbs_in_state(t);
    g_assert_cmpint(t->prepared, ==, 0);
    verb(t, dismiss, &err);
    g_assert_nonnull(err);
    error_free(err);
    verb(t, finalize, &error_abort);
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_CONCLUDED);
    check_verbs_in_state(t);
    g_assert_cmpint(t->committed, ==, 1);
    verb(t, dismiss, &error_abort);
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_NULL);
    put_job(t);
}

static void test_cancel_pending(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_MANUAL_FINALIZE);

    qatomic_set(&t->finish, 1);
    job_start(&t->common.job);
    WAIT_STATUS(t, JOB_STATUS_PENDING);
    log_reset();
    verb(t, user_cancel, &error_abort);
    g_assert_cmpstr(status_log->str, ==, "aborting concluded null");
    g_assert_cmpint(t->aborted, ==, 1);
    g_assert_cmpint(t->committed, ==, 0);
    put_job(t);
}

static void test_failure_reported(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_MANUAL_DISMISS);

    qatomic_set(&t->ret, -EIO);
    qatomic_set(&t->finish, 1);
    job_start(&t->common.job);
    WAIT_STATUS(t, JOB_STATUS_CONCLUDED);
    job_lock();
    g_assert_cmpint(t->common.job.ret, ==, -EIO);
    g_assert_cmpstr(error_get_pretty(t->common.job.err), ==,
                    strerror(EIO));
    job_unlock();
    g_assert_cmpint(t->aborted, ==, 1);
    verb(t, dismiss, &error_abort);
    put_job(t);
}

/* --- Transactions ------------------------------------------------------------ */

static void test_txn_one_fails_all_abort(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a = new_job("a", txn, NULL, JOB_DEFAULT);
    TestJob *b = new_job("b", txn, NULL, JOB_DEFAULT);
    TestJob *c = new_job("c", txn, NULL, JOB_DEFAULT);

    job_txn_unref(txn);
    job_start(&a->common.job);
    job_start(&b->common.job);
    job_start(&c->common.job);
    qatomic_set(&a->finish, 1);         /* a succeeds first: WAITING */
    WAIT_STATUS(a, JOB_STATUS_WAITING);
    qatomic_set(&b->ret, -ENOSPC);      /* b fails */
    qatomic_set(&b->finish, 1);
    WAIT_STATUS(c, JOB_STATUS_NULL);
    g_assert_cmpint(status_of(a), ==, JOB_STATUS_NULL);
    g_assert_cmpint(status_of(b), ==, JOB_STATUS_NULL);
    for (int i = 0; i < 3; i++) {
        TestJob *t = (TestJob *[]){ a, b, c }[i];

        g_assert_cmpint(t->aborted, ==, 1);
        g_assert_cmpint(t->committed, ==, 0);
        put_job(t);
    }
}

static void test_txn_all_succeed_together(void)
{
    JobTxn *txn = job_txn_new();
    TestJob *a = new_job("a", txn, NULL, JOB_DEFAULT);
    TestJob *b = new_job("b", txn, NULL, JOB_DEFAULT);

    job_txn_unref(txn);
    job_start(&a->common.job);
    job_start(&b->common.job);
    qatomic_set(&a->finish, 1);
    WAIT_STATUS(a, JOB_STATUS_WAITING);
    g_assert_cmpint(a->committed, ==, 0);   /* waits for b */
    qatomic_set(&b->finish, 1);
    WAIT_STATUS(a, JOB_STATUS_NULL);
    g_assert_cmpint(a->committed, ==, 1);
    g_assert_cmpint(b->committed, ==, 1);
    put_job(a);
    put_job(b);
}

/* --- Rate limiting and progress ----------------------------------------------- */

static void test_ratelimit(void)
{
    RateLimit rl = { 0 };

    ratelimit_set_speed(&rl, 1000, 100 * 1000 * 1000);     /* 100/slice */
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 60, 1000), ==, 0);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 40, 2000), ==, 0);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 1, 3000), ==,
                    100 * 1000 * 1000 - 3000);  /* slice from 0 */
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 500, 200 * 1000 * 1000),
                    ==, 0);
    ratelimit_set_speed(&rl, 0, 100 * 1000 * 1000);
    g_assert_cmpint(ratelimit_calculate_delay(&rl, 1 << 30, 0), ==, 0);
}

static void test_set_speed_refused_negative(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_DEFAULT);
    Error *err = NULL;

    job_lock();
    g_assert_false(job_set_speed_locked(&t->common.job, -1, &err));
    g_assert_true(job_set_speed_locked(&t->common.job, 4096, &error_abort));
    g_assert_cmpint(t->common.job.speed, ==, 4096);
    job_unlock();
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'speed' expects a non-negative value");
    error_free(err);
    verb(t, user_cancel, &error_abort);
    put_job(t);
}

/* --- Stress: jobs in two iothreads ---------------------------------------- */

static void test_stress_two_iothreads(void)
{
    IOThread *io[2];
    TestJob *t[8];
    int rounds = 200 * stress_iterations();
    GRand *rand = g_rand_new_with_seed(42);

    io[0] = iothread_create("job-io0", 0, &error_abort);
    io[1] = iothread_create("job-io1", 0, &error_abort);
    for (int i = 0; i < 8; i++) {
        g_autofree char *id = g_strdup_printf("s%d", i);

        t[i] = new_job(id, NULL, iothread_get_aio_context(io[i % 2]),
                       JOB_DEFAULT);
        qatomic_set(&t[i]->make_ready, i % 3 == 0);
        job_start(&t[i]->common.job);
    }
    for (int r = 0; r < rounds; r++) {
        TestJob *x = t[g_rand_int_range(rand, 0, 8)];
        Error *err = NULL;

        switch (g_rand_int_range(rand, 0, 3)) {
        case 0:
            verb(x, user_pause, &err);
            break;
        case 1:
            verb(x, user_resume, &err);
            break;
        default:
            job_lock();
            job_pause_locked(&x->common.job);
            job_resume_locked(&x->common.job);
            job_unlock();
            break;
        }
        error_free(err);
        aio_poll(main_context(), false);
    }
    for (int i = 0; i < 8; i++) {
        if (i % 2) {
            verb(t[i], user_cancel, NULL);
        } else {
            verb(t[i], soft_cancel, NULL);
        }
    }
    for (int i = 0; i < 8; i++) {
        WAIT_STATUS(t[i], JOB_STATUS_NULL);
        put_job(t[i]);
    }
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);
    g_rand_free(rand);
}

/* --- BlockJobs and drain ---------------------------------------------------- */

static BlockDriverState *open_null(const char *name, IOThread *io)
{
    g_autofree char *s = g_strdup_printf(
        "{\"driver\": \"null-co\", \"node-name\": \"%s\", \"size\": 1048576}",
        name);
    struct json_object *opts = json_tokener_parse(s);
    BlockDriverState *bs = bdrv_open(opts, true, &error_abort);

    json_object_put(opts);
    if (io) {
        g_assert_cmpint(bdrv_try_change_aio_context(
            bs, iothread_get_aio_context(io), NULL, &error_abort), ==, 0);
    }
    return bs;
}

static TestJob *new_block_job(const char *id, BlockDriverState *bs)
{
    TestJob *t = block_job_create(id, &test_block_job_driver, NULL, bs,
                                  BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL, 0,
                                  JOB_DEFAULT, NULL, NULL, &error_abort);

    job_ref(&t->common.job);
    return t;
}

static void test_drain_pauses_block_job(void)
{
    IOThread *io = iothread_create("job-drain", 0, &error_abort);
    BlockDriverState *bs = open_null("null-drain", io);
    TestJob *t = new_block_job("bj0", bs);
    int seen;

    job_start(&t->common.job);
    AIO_WAIT_WHILE(NULL, qatomic_read(&t->iterations) < 2);
    bdrv_drained_begin(bs);
    /* Drained: the job is at a pause point and does not move. */
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_PAUSED);
    job_lock();
    g_assert_false(t->common.job.busy);
    job_unlock();
    seen = qatomic_read(&t->iterations);
    for (int i = 0; i < 10; i++) {
        aio_poll(main_context(), false);
    }
    g_assert_cmpint(qatomic_read(&t->iterations), ==, seen);
    bdrv_drained_end(bs);
    AIO_WAIT_WHILE(NULL, qatomic_read(&t->iterations) == seen);
    WAIT_STATUS(t, JOB_STATUS_RUNNING);

    log_reset();
    verb(t, user_cancel, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    g_assert_true(logged("BLOCK_JOB_CANCELLED"));
    put_job(t);
    bdrv_unref(bs);
    iothread_destroy(io);
}

static void test_drain_with_waiting_job(void)
{
    BlockDriverState *bs = open_null("null-wait", NULL);
    TestJob *t = new_block_job("bj1", bs);

    /* The job yields until entered: the drain must not wait for it. */
    qatomic_set(&t->wait_forever, 1);
    job_start(&t->common.job);
    AIO_WAIT_WHILE(NULL, qatomic_read(&t->iterations) < 1);
    bdrv_drained_begin(bs);
    bdrv_drained_end(bs);
    /* The drain's pause woke it; it paused and resumed, and waits again. */
    qatomic_set(&t->wait_forever, 0);
    qatomic_set(&t->make_ready, 1);
    job_enter(&t->common.job);
    WAIT_STATUS(t, JOB_STATUS_READY);
    log_reset();
    verb(t, complete, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    g_assert_true(logged("BLOCK_JOB_COMPLETED"));
    put_job(t);
    bdrv_unref(bs);
}

/* --- QMP ------------------------------------------------------------------- */

static struct json_object *qmp(const char *cmd, const char *args,
                               Error **errp)
{
    struct json_object *a = args ? json_tokener_parse(args) : NULL;
    struct json_object *ret = qmp_run_command(cmd, a, OPTS_STRICT_TYPES, errp);

    json_object_put(a);
    return ret;
}

static void test_qmp_commands(void)
{
    BlockDriverState *bs = open_null("null-qmp", NULL);
    TestJob *t = new_block_job("bj3", bs);
    struct json_object *ret;
    Error *err = NULL;

    job_start(&t->common.job);
    ret = qmp("query-jobs", NULL, &error_abort);
    g_assert_cmpint(json_object_array_length(ret), ==, 1);
    g_assert_cmpstr(json_object_get_string(json_object_object_get(
        json_object_array_get_idx(ret, 0), "status")), ==, "running");
    json_object_put(ret);
    ret = qmp("query-block-jobs", NULL, &error_abort);
    g_assert_cmpstr(json_object_get_string(json_object_object_get(
        json_object_array_get_idx(ret, 0), "device")), ==, "bj3");
    json_object_put(ret);

    g_assert_null(qmp("job-finalize", "{\"id\": \"bj3\"}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Job 'bj3' in state "
                    "'running' cannot accept command verb 'finalize'");
    error_free(err);
    err = NULL;
    g_assert_null(qmp("job-pause", "{\"id\": \"nope\"}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Job not found");
    error_free(err);
    err = NULL;
    g_assert_null(qmp("block-job-pause", "{\"device\": \"nope\"}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Block job 'nope' not found");
    error_free(err);
    json_object_put(qmp("block-job-set-speed",
                        "{\"device\": \"bj3\", \"speed\": 1000}",
                        &error_abort));
    json_object_put(qmp("block-job-pause", "{\"device\": \"bj3\"}",
                        &error_abort));
    err = NULL;
    g_assert_null(qmp("block-job-cancel", "{\"device\": \"bj3\"}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "The block job for device 'bj3' is currently paused");
    error_free(err);
    json_object_put(qmp("block-job-cancel",
                        "{\"device\": \"bj3\", \"force\": true}",
                        &error_abort));
    WAIT_STATUS(t, JOB_STATUS_NULL);
    put_job(t);
    bdrv_unref(bs);
}

/* A field of @id's entry in query-block-jobs, as a string. */
static char *block_job_field(const char *id, const char *field)
{
    struct json_object *ret = qmp("query-block-jobs", NULL, &error_abort);
    char *val = NULL;

    for (size_t i = 0; i < json_object_array_length(ret); i++) {
        struct json_object *info = json_object_array_get_idx(ret, i);

        if (!strcmp(json_object_get_string(
                json_object_object_get(info, "device")), id)) {
            val = g_strdup(json_object_get_string(
                json_object_object_get(info, field)));
        }
    }
    json_object_put(ret);
    g_assert_nonnull(val);
    return val;
}

#define ASSERT_FIELD(id, field, want) do {                               \
        g_autofree char *v_ = block_job_field(id, field);                \
        g_assert_cmpstr(v_, ==, want);                                   \
    } while (0)

static void test_block_job_error_stop(void)
{
    BlockDriverState *bs = open_null("null-err", NULL);
    TestJob *t = new_block_job("bj2", bs);
    struct json_object *ev;

    job_start(&t->common.job);
    log_reset();
    g_assert_cmpint(block_job_error_action(&t->common, BLOCKDEV_ON_ERROR_STOP,
                                           false, EIO), ==,
                    BLOCK_ERROR_ACTION_STOP);
    WAIT_STATUS(t, JOB_STATUS_PAUSED);
    g_assert_true(logged("BLOCK_JOB_ERROR"));
    ASSERT_FIELD("bj2", "io-status", "failed");
    ASSERT_FIELD("bj2", "paused", "true");
    /* enospc and auto report errors other than ENOSPC, as QEMU's. */
    g_assert_cmpint(block_job_error_action(&t->common,
                                           BLOCKDEV_ON_ERROR_ENOSPC, true,
                                           EIO), ==,
                    BLOCK_ERROR_ACTION_REPORT);
    g_assert_cmpint(block_job_error_action(&t->common, BLOCKDEV_ON_ERROR_AUTO,
                                           true, EIO), ==,
                    BLOCK_ERROR_ACTION_REPORT);
    g_assert_cmpint(block_job_error_action(&t->common,
                                           BLOCKDEV_ON_ERROR_IGNORE, true,
                                           EIO), ==,
                    BLOCK_ERROR_ACTION_IGNORE);
    /* Resuming a job stopped by an error clears its io-status. */
    json_object_put(qmp("block-job-resume", "{\"device\": \"bj2\"}",
                        &error_abort));
    WAIT_STATUS(t, JOB_STATUS_RUNNING);
    ASSERT_FIELD("bj2", "io-status", "ok");

    /* ... and they stop on ENOSPC: io-status nospace. */
    log_reset();
    g_assert_cmpint(block_job_error_action(&t->common, BLOCKDEV_ON_ERROR_AUTO,
                                           false, ENOSPC), ==,
                    BLOCK_ERROR_ACTION_STOP);
    g_assert_cmpint(block_job_error_action(&t->common,
                                           BLOCKDEV_ON_ERROR_ENOSPC, false,
                                           ENOSPC), ==,
                    BLOCK_ERROR_ACTION_STOP);
    WAIT_STATUS(t, JOB_STATUS_PAUSED);
    ASSERT_FIELD("bj2", "io-status", "nospace");
    g_assert_cmpint(event_log->len, >=, 2);
    ev = last_event_data;
    g_assert_cmpstr(json_object_get_string(json_object_object_get(
        ev, "device")), ==, "bj2");
    g_assert_cmpstr(json_object_get_string(json_object_object_get(
        ev, "operation")), ==, "write");
    g_assert_cmpstr(json_object_get_string(json_object_object_get(
        ev, "action")), ==, "stop");
    verb(t, user_resume, &error_abort);
    ASSERT_FIELD("bj2", "io-status", "ok");
    job_cancel_sync_all();
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_NULL);
    put_job(t);
    bdrv_unref(bs);
}

/* QEMU's block-job-finalize and block-job-dismiss take "id". */
static void test_qmp_block_job_finalize_dismiss(void)
{
    BlockDriverState *bs = open_null("null-fin", NULL);
    TestJob *t = block_job_create("bj4", &test_block_job_driver, NULL, bs,
                                  BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL, 0,
                                  JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS,
                                  NULL, NULL, &error_abort);
    Error *err = NULL;

    job_ref(&t->common.job);
    qatomic_set(&t->finish, 1);
    job_start(&t->common.job);
    WAIT_STATUS(t, JOB_STATUS_PENDING);
    ASSERT_FIELD("bj4", "auto-finalize", "false");
    ASSERT_FIELD("bj4", "auto-dismiss", "false");
    g_assert_null(qmp("block-job-dismiss", "{\"id\": \"bj4\"}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Job 'bj4' in state "
                    "'pending' cannot accept command verb 'dismiss'");
    error_free(err);
    err = NULL;
    g_assert_null(qmp("block-job-finalize", "{\"id\": \"nope\"}", &err));
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_ACTIVE);
    g_assert_cmpstr(error_get_pretty(err), ==, "Block job 'nope' not found");
    error_free(err);
    err = NULL;
    g_assert_null(qmp("block-job-finalize", "{\"device\": \"bj4\"}", &err));
    g_assert_nonnull(err);
    error_free(err);
    log_reset();
    json_object_put(qmp("block-job-finalize", "{\"id\": \"bj4\"}",
                        &error_abort));
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_CONCLUDED);
    g_assert_true(logged("BLOCK_JOB_COMPLETED"));
    ASSERT_FIELD("bj4", "status", "concluded");
    json_object_put(qmp("block-job-dismiss", "{\"id\": \"bj4\"}",
                        &error_abort));
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_NULL);
    g_assert_cmpstr(status_log->str, ==, "concluded null");
    put_job(t);
    bdrv_unref(bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    bdrv_init();
    qmp_job_init();
    status_log = g_string_new("");
    event_log = g_ptr_array_new_with_free_func(g_free);
    qmp_add_event_observer(record_event, NULL);

    g_test_add_func("/job/table/transitions-as-qemu", test_transition_table);
    g_test_add_func("/job/table/verbs-as-qemu", test_verb_table);
    g_test_add_func("/job/life/events-to-null", test_life_events);
    g_test_add_func("/job/life/created-then-cancelled", test_created_event);
    g_test_add_func("/job/life/duplicate-and-missing-id",
                    test_duplicate_and_missing_id);
    g_test_add_func("/job/pause/running-paused-cancel",
                    test_pause_resume_running);
    g_test_add_func("/job/pause/created-pauses-at-start", test_pause_created);
    g_test_add_func("/job/pause/ready-standby-soft-cancel",
                    test_pause_ready_standby);
    g_test_add_func("/job/finalize/manual-finalize-dismiss",
                    test_manual_finalize_dismiss);
    g_test_add_func("/job/cancel/pending-aborts", test_cancel_pending);
    g_test_add_func("/job/error/failure-reported", test_failure_reported);
    g_test_add_func("/job/txn/one-fails-all-abort",
                    test_txn_one_fails_all_abort);
    g_test_add_func("/job/txn/all-succeed-together",
                    test_txn_all_succeed_together);
    g_test_add_func("/job/speed/ratelimit", test_ratelimit);
    g_test_add_func("/job/speed/negative-refused",
                    test_set_speed_refused_negative);
    g_test_add_func("/job/stress/two-iothreads", test_stress_two_iothreads);
    g_test_add_func("/job/blockjob/drain-pauses-and-resumes",
                    test_drain_pauses_block_job);
    g_test_add_func("/job/blockjob/drain-with-waiting-job",
                    test_drain_with_waiting_job);
    g_test_add_func("/job/blockjob/error-stop-and-report",
                    test_block_job_error_stop);
    g_test_add_func("/job/qmp/commands-and-errors", test_qmp_commands);
    g_test_add_func("/job/qmp/block-job-finalize-dismiss",
                    test_qmp_block_job_finalize_dismiss);
    return g_test_run();
}
