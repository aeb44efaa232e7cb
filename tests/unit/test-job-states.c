/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Every monitor verb in every job state, on real jobs driven into that
 * state: whether it is accepted, QEMU's message when it is not, the state
 * the job reaches and which driver callbacks (commit or abort) run.  The
 * jobs' JOB_STATUS_CHANGE events are checked against the transition table
 * as they come (job-helpers.c), and every transition the table allows
 * must have been taken.  Also:
 * transactions finalized by hand, and the four auto-finalize/auto-dismiss
 * combinations.
 *
 * Jobs are of type "test" (job-helpers.c); tests wait on job states with
 * AIO_WAIT_WHILE(), never with sleeps.
 */
#include "util/osdep.h"

#include "job-helpers.h"
#include "util/atomic.h"

/* One letter per JobStatus, in enum order. */
static const char status_letters[] = "UCRPYSWDXEN";

static JobStatus status_of_letter(char c)
{
    const char *p = strchr(status_letters, c);

    g_assert_nonnull(p);
    return p - status_letters;
}

/* --- Driving a job into a state ------------------------------------------- */

typedef struct Case {
    TestJob *t;
    TestJob *partner;               /* the other job of t's transaction */
} Case;

/* A job "t" in @status (any but UNDEFINED and ABORTING). */
static Case enter_state(JobStatus status)
{
    Case c = { 0 };
    int flags = status == JOB_STATUS_PENDING ? JOB_MANUAL_FINALIZE :
                status == JOB_STATUS_CONCLUDED ? JOB_MANUAL_DISMISS :
                JOB_DEFAULT;
    JobTxn *txn = NULL;

    GLOBAL_STATE_CODE();
    if (status == JOB_STATUS_WAITING) {
        /* t waits for the partner, which runs until cancelled. */
        txn = job_txn_new();
        c.partner = new_job("partner", txn, NULL, JOB_DEFAULT);
        job_start(&c.partner->common.job);
    }
    c.t = new_job("t", txn, NULL, flags);
    job_txn_unref(txn);
    if (status == JOB_STATUS_CREATED) {
        return c;
    }
    qatomic_set(&c.t->make_ready, status == JOB_STATUS_READY ||
                                  status == JOB_STATUS_STANDBY);
    qatomic_set(&c.t->finish, status >= JOB_STATUS_WAITING);
    job_start(&c.t->common.job);
    switch (status) {
    case JOB_STATUS_RUNNING:
        AIO_WAIT_WHILE(NULL, qatomic_read(&c.t->iterations) == 0);
        break;
    case JOB_STATUS_PAUSED:
        verb(c.t, user_pause, &error_abort);
        break;
    case JOB_STATUS_STANDBY:
        WAIT_STATUS(c.t, JOB_STATUS_READY);
        verb(c.t, user_pause, &error_abort);
        break;
    default:
        break;
    }
    WAIT_STATUS(c.t, status);
    return c;
}

static void cancel_sync(TestJob *t)
{
    GLOBAL_STATE_CODE();
    if (t && status_of(t) != JOB_STATUS_NULL) {
        job_lock();
        job_cancel_sync_locked(&t->common.job, true);
        job_unlock();
    }
}

static void leave_case(Case *c)
{
    cancel_sync(c->t);
    cancel_sync(c->partner);
    g_assert_cmpint(status_of(c->t), ==, JOB_STATUS_NULL);
    put_job(c->t);
    if (c->partner) {
        g_assert_cmpint(status_of(c->partner), ==, JOB_STATUS_NULL);
        put_job(c->partner);
    }
    g_assert_cmpuint(live_job_ids(), ==, 0);
}

/* --- Every verb in every state -------------------------------------------- */

static void set_speed(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    /* Called by verb() with job_mutex held. */
    job_set_speed_locked(job, 1 << 20, errp);
}

/*
 * What each verb does in each state, one column per status letter
 * ("UCRPYSWDXEN"; U, marked '-', is never observable):
 *   outcome   '.'  refused by the verb table ("cannot accept command verb")
 *             'r'  refused: "Can't resume a job that was not paused"
 *             'p'  refused: "Job is already paused"
 *             else accepted, and the job reaches that status
 *   callbacks 'c' commit ran, 'a' abort ran, '.' neither
 * ABORTING (X) is checked from the abort callback, where it lasts.
 */
typedef struct VerbCase {
    const char *name;
    JobVerb verb;
    void (*fn)(Job *job, Error **errp);
    const char *outcome;
    const char *callbacks;
} VerbCase;

static const VerbCase verb_cases[] = {
    /*                                    "UCRPYSWDXEN" */
    { "cancel", JOB_VERB_CANCEL, user_cancel,
                                          "-NNNNNNN...",
                                          "-aaaaaaa..." },
    /* Soft: the test driver (as mirror) completes a READY or STANDBY job
     * and forces the cancel in any other state. */
    { "soft-cancel", JOB_VERB_CANCEL, soft_cancel,
                                          "-NNNNNNN...",
                                          "-aaaccaa..." },
    { "pause", JOB_VERB_PAUSE, user_pause,
                                          "-CPpSp.....",
                                          "-.........." },
    { "resume", JOB_VERB_RESUME, user_resume,
                                          "-rrRrYrrrrr",
                                          "-.........." },
    { "set-speed", JOB_VERB_SET_SPEED, set_speed,
                                          "-CRPYS.....",
                                          "-.........." },
    { "complete", JOB_VERB_COMPLETE, complete,
                                          "-...N......",
                                          "-...c......" },
    { "finalize", JOB_VERB_FINALIZE, finalize,
                                          "-......N...",
                                          "-......c..." },
    { "dismiss", JOB_VERB_DISMISS, dismiss,
                                          "-........N.",
                                          "-.........." },
};

/* The error @vc gives in @status, or NULL if it is accepted. */
static char *expected_error(const VerbCase *vc, JobStatus status)
{
    switch (vc->outcome[status]) {
    case '.':
        return g_strdup_printf("Job 't' in state '%s' cannot accept "
                               "command verb '%s'", job_status_name(status),
                               job_verb_name(vc->verb));
    case 'r':
        return g_strdup("Can't resume a job that was not paused");
    case 'p':
        return g_strdup("Job is already paused");
    default:
        return NULL;
    }
}

static void run_verb_case(const VerbCase *vc, JobStatus status)
{
    Case c = enter_state(status);
    g_autofree char *want_err = expected_error(vc, status);
    char cb = vc->callbacks[status];
    int committed, aborted;
    Error *err = NULL;

    if (g_test_verbose()) {
        g_test_message("%s in %s", vc->name, job_status_name(status));
    }
    /* The outcome table agrees with QEMU's verb table ('r' and 'p' are
     * checked before, or after, the table). */
    if (vc->outcome[status] == '.') {
        g_assert_false(job_verb_allowed(status, vc->verb));
    } else if (!want_err) {
        g_assert_true(job_verb_allowed(status, vc->verb));
    }
    check_verbs_in_state(c.t);
    committed = c.t->committed;
    aborted = c.t->aborted;
    verb(c.t, vc->fn, &err);
    if (want_err) {
        g_assert_nonnull(err);
        g_assert_cmpstr(error_get_pretty(err), ==, want_err);
        error_free(err);
        g_assert_cmpint(status_of(c.t), ==, status);
    } else {
        g_assert_null(err);
        WAIT_STATUS(c.t, status_of_letter(vc->outcome[status]));
    }
    g_assert_cmpint(c.t->committed - committed, ==, cb == 'c');
    g_assert_cmpint(c.t->aborted - aborted, ==, cb == 'a');
    if (c.partner && vc->outcome[status] == 'N') {
        /* Cancelling one job of a transaction aborts the others. */
        g_assert_cmpint(status_of(c.partner), ==, JOB_STATUS_NULL);
        g_assert_cmpint(c.partner->aborted, ==, 1);
    }
    leave_case(&c);
}

static void test_every_verb_in_every_state(void)
{
    for (size_t v = 0; v < G_N_ELEMENTS(verb_cases); v++) {
        for (JobStatus s = JOB_STATUS_CREATED; s < JOB_STATUS__MAX; s++) {
            if (s != JOB_STATUS_ABORTING) {
                run_verb_case(&verb_cases[v], s);
            }
        }
    }
}

/* ABORTING lasts while the main loop aborts the job: check from its
 * abort callback that every verb is refused there. */
static void verbs_while_aborting(TestJob *t)
{
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_ABORTING);
    check_verbs_in_state(t);
    for (size_t v = 0; v < G_N_ELEMENTS(verb_cases); v++) {
        g_autofree char *want = expected_error(&verb_cases[v],
                                               JOB_STATUS_ABORTING);
        Error *err = NULL;

        g_assert_nonnull(want);
        verb(t, verb_cases[v].fn, &err);
        g_assert_cmpstr(error_get_pretty(err), ==, want);
        error_free(err);
    }
    g_assert_cmpint(status_of(t), ==, JOB_STATUS_ABORTING);
}

static void test_every_verb_while_aborting(void)
{
    GLOBAL_STATE_CODE();
    /* A failure, and a cancel of a PENDING job. */
    for (int i = 0; i < 2; i++) {
        TestJob *t = new_job("t", NULL, NULL,
                             i ? JOB_MANUAL_FINALIZE : JOB_DEFAULT);

        t->on_abort = verbs_while_aborting;
        qatomic_set(&t->ret, i ? 0 : -EIO);
        qatomic_set(&t->finish, 1);
        job_start(&t->common.job);
        if (i) {
            WAIT_STATUS(t, JOB_STATUS_PENDING);
            verb(t, user_cancel, &error_abort);
        }
        WAIT_STATUS(t, JOB_STATUS_NULL);
        g_assert_cmpint(t->aborted, ==, 1);
        put_job(t);
    }
}

/* Runs after the tests above: they went through every transition of
 * QEMU's table but two that blockd never takes: CREATED -> NULL (a job
 * cancelled before it started still aborts and concludes, which QEMU
 * allows too) and ABORTING -> ABORTING (no event). */
static void test_every_transition_seen(void)
{
    for (JobStatus from = 0; from < JOB_STATUS__MAX; from++) {
        for (JobStatus to = 0; to < JOB_STATUS__MAX; to++) {
            bool skip = (from == JOB_STATUS_CREATED &&
                         to == JOB_STATUS_NULL) ||
                        (from == JOB_STATUS_ABORTING &&
                         to == JOB_STATUS_ABORTING);

            if (job_transition_allowed(from, to) && !skip &&
                !transition_seen[from][to]) {
                g_error("transition %s -> %s never taken",
                        job_status_name(from), job_status_name(to));
            }
        }
    }
}

/* --- Transactions finalized by hand ---------------------------------------- */

/* Three jobs with auto-finalize off: all wait PENDING; finalizing one
 * finalizes all.  @failing's prepare() fails: then all abort. */
static void run_manual_txn(int failing)
{
    JobTxn *txn = job_txn_new();
    TestJob *t[3];

    GLOBAL_STATE_CODE();
    for (int i = 0; i < 3; i++) {
        g_autofree char *id = g_strdup_printf("m%d", i);

        t[i] = new_job(id, txn, NULL, JOB_MANUAL_FINALIZE);
        if (i == failing) {
            t[i]->prepare_ret = -EIO;
        }
        job_start(&t[i]->common.job);
    }
    job_txn_unref(txn);
    for (int i = 0; i < 3; i++) {
        qatomic_set(&t[i]->finish, 1);
        if (i < 2) {
            /* Done, but the transaction is not. */
            WAIT_STATUS(t[i], JOB_STATUS_WAITING);
        }
    }
    for (int i = 0; i < 3; i++) {
        WAIT_STATUS(t[i], JOB_STATUS_PENDING);
        g_assert_cmpint(t[i]->prepared, ==, 0);
    }
    verb(t[1], finalize, &error_abort);
    for (int i = 0; i < 3; i++) {
        g_assert_cmpint(status_of(t[i]), ==, JOB_STATUS_NULL);
        g_assert_cmpint(t[i]->committed, ==, failing < 0);
        g_assert_cmpint(t[i]->aborted, ==, failing >= 0);
        g_assert_cmpint(t[i]->cleaned, ==, 1);
        put_job(t[i]);
    }
}

static void test_txn_manual_finalize(void)
{
    run_manual_txn(-1);
}

static void test_txn_manual_finalize_prepare_fails(void)
{
    run_manual_txn(2);
}

/* --- auto-finalize x auto-dismiss ------------------------------------------ */

static void test_auto_finalize_dismiss_combinations(void)
{
    static const struct {
        int flags;
        const char *log;
    } combos[] = {
        { JOB_DEFAULT, "running waiting pending concluded null" },
        { JOB_MANUAL_FINALIZE, "running waiting pending | concluded null" },
        { JOB_MANUAL_DISMISS, "running waiting pending concluded | null" },
        { JOB_MANUAL_FINALIZE | JOB_MANUAL_DISMISS,
          "running waiting pending | concluded | null" },
    };

    GLOBAL_STATE_CODE();
    for (size_t i = 0; i < G_N_ELEMENTS(combos); i++) {
        TestJob *t = new_job("t", NULL, NULL, combos[i].flags);

        log_reset();
        qatomic_set(&t->finish, 1);
        job_start(&t->common.job);
        if (combos[i].flags & JOB_MANUAL_FINALIZE) {
            WAIT_STATUS(t, JOB_STATUS_PENDING);
            g_string_append(status_log, " |");
            verb(t, finalize, &error_abort);
        }
        if (combos[i].flags & JOB_MANUAL_DISMISS) {
            WAIT_STATUS(t, JOB_STATUS_CONCLUDED);
            g_string_append(status_log, " |");
            verb(t, dismiss, &error_abort);
        }
        WAIT_STATUS(t, JOB_STATUS_NULL);
        g_assert_cmpstr(status_log->str, ==, combos[i].log);
        g_assert_cmpint(t->committed, ==, 1);
        put_job(t);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    job_helpers_init();

    g_test_add_func("/job/states/every-verb-in-every-state",
                    test_every_verb_in_every_state);
    g_test_add_func("/job/states/every-verb-while-aborting",
                    test_every_verb_while_aborting);
    g_test_add_func("/job/states/txn-manual-finalize",
                    test_txn_manual_finalize);
    g_test_add_func("/job/states/txn-manual-finalize-prepare-fails",
                    test_txn_manual_finalize_prepare_fails);
    g_test_add_func("/job/states/auto-finalize-dismiss-combinations",
                    test_auto_finalize_dismiss_combinations);
    /* Last: needs the transitions of the tests above. */
    g_test_add_func("/job/states/every-transition-taken",
                    test_every_transition_seen);
    return g_test_run();
}
