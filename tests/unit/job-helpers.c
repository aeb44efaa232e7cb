/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "test" job type and helpers shared by the job tests (test-job.c,
 * test-job-states.c): see job-helpers.h.
 */
#include "util/osdep.h"

#include "job-helpers.h"
#include "util/atomic.h"

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
    TestJob *t = (TestJob *)job;

    t->prepared++;
    return t->prepare_ret;
}

static void test_job_commit(Job *job)
{
    ((TestJob *)job)->committed++;
}

static void test_job_abort(Job *job)
{
    TestJob *t = (TestJob *)job;

    t->aborted++;
    if (t->on_abort) {
        t->on_abort(t);
    }
}

static void test_job_clean(Job *job)
{
    ((TestJob *)job)->cleaned++;
}

const JobDriver test_job_driver = {
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

const JobDriver test_block_job_driver = {
    .instance_size = sizeof(TestJob),
    .job_type = "test",
    .run = test_job_run,
    .complete = test_job_complete,
    .cancel = test_job_cancel,
    .free = block_job_free,
};

/* --- Events ------------------------------------------------------------- */

GString *status_log;         /* "created running ..." of test jobs */
GPtrArray *event_log;        /* event names */
struct json_object *last_event_data;

/* Job id -> its last status, from JOB_STATUS_CHANGE. */
static GHashTable *last_status;
bool transition_seen[JOB_STATUS__MAX][JOB_STATUS__MAX];

/* Every job's JOB_STATUS_CHANGE events follow the transition table, from
 * UNDEFINED to NULL. */
static void check_transition(struct json_object *data)
{
    const char *id = json_object_get_string(json_object_object_get(data,
                                                                   "id"));
    const char *status = json_object_get_string(
        json_object_object_get(data, "status"));
    JobStatus from = JOB_STATUS_UNDEFINED, to = 0;
    gpointer prev;

    while (strcmp(job_status_name(to), status)) {
        to++;
        g_assert_cmpint(to, <, JOB_STATUS__MAX);
    }
    if (g_hash_table_lookup_extended(last_status, id, NULL, &prev)) {
        from = GPOINTER_TO_INT(prev);
    }
    if (!job_transition_allowed(from, to)) {
        g_error("job '%s' went %s -> %s", id, job_status_name(from), status);
    }
    transition_seen[from][to] = true;
    if (to == JOB_STATUS_NULL) {
        g_hash_table_remove(last_status, id);
    } else {
        g_hash_table_insert(last_status, g_strdup(id), GINT_TO_POINTER(to));
    }
}

unsigned live_job_ids(void)
{
    return g_hash_table_size(last_status);
}

static void record_event(const char *event, struct json_object *msg,
                         void *opaque)
{
    struct json_object *data = json_object_object_get(msg, "data");

    g_ptr_array_add(event_log, g_strdup(event));
    json_object_put(last_event_data);
    last_event_data = json_object_get(data);
    if (!strcmp(event, "JOB_STATUS_CHANGE")) {
        check_transition(data);
        g_string_append_printf(status_log, "%s%s", status_log->len ? " " : "",
            json_object_get_string(json_object_object_get(data, "status")));
    }
}

void log_reset(void)
{
    g_string_truncate(status_log, 0);
    g_ptr_array_set_size(event_log, 0);
}

bool logged(const char *event)
{
    for (guint i = 0; i < event_log->len; i++) {
        if (!strcmp(event_log->pdata[i], event)) {
            return true;
        }
    }
    return false;
}

/* --- Helpers ------------------------------------------------------------ */

TestJob *new_job(const char *id, JobTxn *txn, AioContext *ctx,
                        int flags)
{
    GLOBAL_STATE_CODE();
    Job *job = job_create(id, &test_job_driver, txn,
                          ctx ? ctx : main_context(), flags, NULL, NULL,
                          &error_abort);

    job_ref(job);               /* the test's own, dropped by put_job() */
    return (TestJob *)job;
}

void put_job(TestJob *t)
{
    GLOBAL_STATE_CODE();
    job_unref(&t->common.job);
}

JobStatus status_of(TestJob *t)
{
    JobStatus s;

    job_lock();
    s = t->common.job.status;
    job_unlock();
    return s;
}

bool status_is_not(TestJob *t, JobStatus s)
{
    return status_of(t) != s;
}

void verb(TestJob *t, void (*fn)(Job *, Error **), Error **errp)
{
    job_lock();
    fn(&t->common.job, errp);
    job_unlock();
}

/* Every verb in a job's current state: refused exactly as the table says,
 * with QEMU's message. */
void check_verbs_in_state(TestJob *t)
{
    JobStatus s = status_of(t);

    GLOBAL_STATE_CODE();
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

BlockDriverState *open_null(const char *name, IOThread *io)
{
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"null-co\", \"node-name\": \"%s\", \"size\": 1048576}",
        name);

    if (io) {
        g_assert_cmpint(bdrv_try_change_aio_context(
            bs, iothread_get_aio_context(io), NULL, &error_abort), ==, 0);
    }
    return bs;
}

TestJob *new_block_job(const char *id, BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    TestJob *t = block_job_create(id, &test_block_job_driver, NULL, bs,
                                  BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL, 0,
                                  JOB_DEFAULT, NULL, NULL, &error_abort);

    job_ref(&t->common.job);
    return t;
}

struct json_object *qmp(const char *cmd, const char *args,
                               Error **errp)
{
    GLOBAL_STATE_CODE();
    struct json_object *a = args ? json_tokener_parse(args) : NULL;
    struct json_object *ret = qmp_run_command(cmd, a, OPTS_STRICT_TYPES, errp);

    json_object_put(a);
    return ret;
}

char *block_job_field(const char *id, const char *field)
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

void job_helpers_init(void)
{
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    qmp_job_init();
    status_log = g_string_new("");
    event_log = g_ptr_array_new_with_free_func(g_free);
    last_status = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        NULL);
    qmp_add_event_observer(record_event, NULL);
}
