/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job core: the state machine and verb tables against QEMU's, the
 * events of a job's life, pause/resume/cancel, transactions, job_mutex
 * discipline under a two-iothread stress with verbs racing the jobs, and
 * BlockJobs: drain (a drain pauses a running job and resumes it; a drain
 * never waits on a job that waits), error policies and io-status, and the
 * QMP commands.  Every verb in every state is test-job-states.c.
 *
 * Jobs are of type "test" (job-helpers.c).  Tests wait with
 * AIO_WAIT_WHILE() on the job's state, never with sleeps.
 */
#include "util/osdep.h"

#include "job-helpers.h"
#include "util/atomic.h"

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

/* --- A job's life --------------------------------------------------------- */

static void test_life_events(void)
{
    TestJob *t = new_job("j0", NULL, NULL, JOB_DEFAULT);

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

/*
 * Every monitor verb, from the main loop, at random, on jobs that run,
 * finish and are replaced in two iothreads, with random auto-finalize and
 * auto-dismiss: whatever the interleaving, every verb either works or
 * fails with an error, every job's events follow the transition table
 * (job-helpers.c checks each), and every job ends in NULL.
 */
static void set_random_speed(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    /* Called by verb() with job_mutex held. */
    job_set_speed_locked(job, g_random_int_range(0, 2) << 30, errp);
}

static void internal_pause_resume(Job *job, Error **errp)
    TSA_REQUIRES(job_mutex)
{
    /* Called by verb() with job_mutex held: a drain's pause. */
    job_pause_locked(job);
    job_resume_locked(job);
}

static void query(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    uint64_t cur, total;

    /* Called by verb() with job_mutex held, as query-jobs does. */
    for (Job *j = job_next_locked(NULL); j; j = job_next_locked(j)) {
        job_progress_get_locked(j, &cur, &total);
        g_assert_cmpuint(cur, <=, total);
    }
}

static void (*const race_verbs[])(Job *, Error **) = {
    user_pause, user_resume, user_cancel, soft_cancel, complete, finalize,
    dismiss, set_random_speed, internal_pause_resume, query,
};

static TestJob *new_race_job(int slot, IOThread *io, GRand *rand)
{
    static const int flags[] = {
        JOB_DEFAULT, JOB_MANUAL_FINALIZE, JOB_MANUAL_DISMISS,
        JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS,
    };
    g_autofree char *id = g_strdup_printf("r%d", slot);
    TestJob *t = new_job(id, NULL, iothread_get_aio_context(io),
                         flags[g_rand_int_range(rand, 0, 4)]);

    GLOBAL_STATE_CODE();
    qatomic_set(&t->make_ready, g_rand_boolean(rand));
    if (g_rand_boolean(rand)) {
        job_start(&t->common.job);
    }
    return t;
}

static void test_stress_verbs_race_iothreads(void)
{
    IOThread *io[2];
    TestJob *t[8];
    int rounds = 2000 * stress_iterations();
    GRand *rand = g_rand_new_with_seed(4242);
    int replaced = 0;

    GLOBAL_STATE_CODE();
    io[0] = iothread_create("race-io0", 0, &error_abort);
    io[1] = iothread_create("race-io1", 0, &error_abort);
    for (int i = 0; i < 8; i++) {
        t[i] = new_race_job(i, io[i % 2], rand);
    }
    for (int r = 0; r < rounds; r++) {
        int i = g_rand_int_range(rand, 0, 8);
        int nverbs = G_N_ELEMENTS(race_verbs);
        int v = g_rand_int_range(rand, 0, nverbs + 2);
        Error *err = NULL;

        if (v == nverbs) {
            /* The job finishes by itself, in its iothread. */
            qatomic_set(&t[i]->finish, 1);
            job_enter(&t[i]->common.job);
        } else if (v > nverbs) {
            job_lock();
            if (t[i]->common.job.status == JOB_STATUS_CREATED &&
                !t[i]->common.job.co) {
                job_unlock();
                job_start(&t[i]->common.job);
            } else {
                job_unlock();
            }
        } else {
            verb(t[i], race_verbs[v], &err);
            error_free(err);
        }
        aio_poll(main_context(), false);
        if (status_of(t[i]) == JOB_STATUS_NULL) {
            put_job(t[i]);
            t[i] = new_race_job(i, io[i % 2], rand);
            replaced++;
        }
    }
    job_cancel_sync_all();
    for (int i = 0; i < 8; i++) {
        g_assert_cmpint(status_of(t[i]), ==, JOB_STATUS_NULL);
        put_job(t[i]);
    }
    g_assert_cmpuint(live_job_ids(), ==, 0);
    /* How far the jobs got depends on the scheduling: only reported. */
    g_test_message("%d jobs ended before the final cancel", replaced);
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);
    g_rand_free(rand);
}

/* --- BlockJobs and drain ---------------------------------------------------- */


static void test_drain_pauses_block_job(void)
{
    GLOBAL_STATE_CODE();
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

    GLOBAL_STATE_CODE();
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

/*
 * A job created on a node that is already drained (blockdev-backup keeps
 * its source drained until the job started) pauses at its first pause
 * point and resumes when the drain ends: the drain's end is matched by
 * the begin its backend's dev ops heard when they were installed.
 */
static void test_block_job_created_drained(void)
{
    BlockDriverState *bs = open_null("null-drained", NULL);
    TestJob *t;
    int seen;

    GLOBAL_STATE_CODE();
    bdrv_drained_begin(bs);
    t = new_block_job("bj-drained", bs);
    job_start(&t->common.job);
    /* Paused before its first iteration (without the begin, it runs). */
    AIO_WAIT_WHILE(NULL, status_is_not(t, JOB_STATUS_PAUSED) &&
                         qatomic_read(&t->iterations) == 0);
    g_assert_cmpint(qatomic_read(&t->iterations), ==, 0);
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_PAUSED);
    seen = qatomic_read(&t->iterations);
    bdrv_drained_end(bs);
    AIO_WAIT_WHILE(NULL, qatomic_read(&t->iterations) == seen);
    WAIT_STATUS(t, JOB_STATUS_RUNNING);
    verb(t, user_cancel, &error_abort);
    WAIT_STATUS(t, JOB_STATUS_NULL);
    put_job(t);
    bdrv_unref(bs);
}

/* --- QMP ------------------------------------------------------------------- */


static void test_qmp_commands(void)
{
    BlockDriverState *bs = open_null("null-qmp", NULL);
    TestJob *t = new_block_job("bj3", bs);
    struct json_object *ret;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
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

#define ASSERT_FIELD(id, field, want) do {                               \
        g_autofree char *v_ = block_job_field(id, field);                \
        g_assert_cmpstr(v_, ==, want);                                   \
    } while (0)


static void test_block_job_error_stop(void)
{
    BlockDriverState *bs = open_null("null-err", NULL);
    TestJob *t = new_block_job("bj2", bs);
    struct json_object *ev;

    GLOBAL_STATE_CODE();
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
    GLOBAL_STATE_CODE();
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
    job_helpers_init();

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
    g_test_add_func("/job/stress/verbs-race-iothreads",
                    test_stress_verbs_race_iothreads);
    g_test_add_func("/job/blockjob/drain-pauses-and-resumes",
                    test_drain_pauses_block_job);
    g_test_add_func("/job/blockjob/drain-with-waiting-job",
                    test_drain_with_waiting_job);
    g_test_add_func("/job/blockjob/error-stop-and-report",
                    test_block_job_error_stop);
    g_test_add_func("/job/blockjob/created-on-drained-node",
                    test_block_job_created_drained);
    g_test_add_func("/job/qmp/commands-and-errors", test_qmp_commands);
    g_test_add_func("/job/qmp/block-job-finalize-dismiss",
                    test_qmp_block_job_finalize_dismiss);
    return g_test_run();
}
