/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands on jobs.  Each handler takes job_mutex, looks the job up
 * and acts on it in one critical section (block/job-monitor.h), so the
 * job cannot change state between the check of a verb and its action.
 *
 * Lookups fail as QEMU's do: job-* commands with GenericError "Job not
 * found", block-job-* commands with DeviceNotActive "Block job 'x' not
 * found".  Verbs refused in the job's state fail with "Job 'x' in state
 * 'running' cannot accept command verb 'finalize'".
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/blockjob.h"
#include "block/job-monitor.h"
#include "qmp/job.h"
#include "qmp/qmp.h"

static const OptDesc id_args[] = {
    { "id", OPT_STRING, .required = true, .help = "the job's id" },
    { NULL }
};

static const OptDesc device_args[] = {
    { "device", OPT_STRING, .required = true, .help = "the job's id" },
    { NULL }
};

static const OptDesc block_job_cancel_args[] = {
    { "device", OPT_STRING, .required = true, .help = "the job's id" },
    { "force", OPT_BOOL, .def = "false",
      .help = "cancel a READY job without completing it" },
    { NULL }
};

static const OptDesc set_speed_args[] = {
    { "device", OPT_STRING, .required = true, .help = "the job's id" },
    { "speed", OPT_INT, .required = true,
      .help = "bytes per second, 0 for unlimited" },
    { NULL }
};

static Job *find_job_locked(const char *id, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    Job *job = job_get_locked(id);

    if (!job) {
        error_setg(errp, "Job not found");
    }
    return job;
}

static BlockJob *find_block_job_locked(const char *id, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    BlockJob *bjob = block_job_get_locked(id);

    if (!bjob) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                  "Block job '%s' not found", id);
    }
    return bjob;
}

/* --- job-* -------------------------------------------------------------- */

typedef enum JobCmd {
    JOB_CMD_PAUSE,
    JOB_CMD_RESUME,
    JOB_CMD_CANCEL,
    JOB_CMD_COMPLETE,
    JOB_CMD_DISMISS,
    JOB_CMD_FINALIZE,
} JobCmd;

/* Apply @cmd to @job (found under the lock the caller holds). */
static void job_cmd_locked(Job *job, JobCmd cmd, bool force, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    switch (cmd) {
    case JOB_CMD_PAUSE:
        job_user_pause_locked(job, errp);
        break;
    case JOB_CMD_RESUME:
        job_user_resume_locked(job, errp);
        break;
    case JOB_CMD_CANCEL:
        job_user_cancel_locked(job, force, errp);
        break;
    case JOB_CMD_COMPLETE:
        job_complete_locked(job, errp);
        break;
    case JOB_CMD_DISMISS:
        job_dismiss_locked(&job, errp);
        break;
    case JOB_CMD_FINALIZE:
        job_ref_locked(job);
        job_finalize_locked(job, errp);
        job_unref_locked(job);
        break;
    }
}

static void run_job_cmd(struct json_object *args, JobCmd cmd, Error **errp)
{
    Job *job;

    GLOBAL_STATE_CODE();
    job_lock();
    job = find_job_locked(opts_get_str(args, "id"), errp);
    if (job) {
        /* job-cancel is always forced, as QEMU's */
        job_cmd_locked(job, cmd, true, errp);
    }
    job_unlock();
}

#define JOB_HANDLER(name, cmd)                                          \
    static void name(struct json_object *args, struct json_object **ret, \
                     Error **errp)                                      \
    {                                                                   \
        run_job_cmd(args, cmd, errp);                                   \
    }

JOB_HANDLER(qmp_job_pause, JOB_CMD_PAUSE)
JOB_HANDLER(qmp_job_resume, JOB_CMD_RESUME)
JOB_HANDLER(qmp_job_cancel, JOB_CMD_CANCEL)
JOB_HANDLER(qmp_job_complete, JOB_CMD_COMPLETE)
JOB_HANDLER(qmp_job_dismiss, JOB_CMD_DISMISS)
JOB_HANDLER(qmp_job_finalize, JOB_CMD_FINALIZE)

static struct json_object *job_info_locked(Job *job) TSA_REQUIRES(job_mutex)
{
    struct json_object *info = json_object_new_object();
    uint64_t cur, total;

    job_progress_get_locked(job, &cur, &total);
    json_object_object_add(info, "id", json_object_new_string(job->id));
    json_object_object_add(info, "type",
                           json_object_new_string(job_type_name(job)));
    json_object_object_add(info, "status", json_object_new_string(
                               job_status_name(job->status)));
    json_object_object_add(info, "current-progress",
                           json_object_new_int64(cur));
    json_object_object_add(info, "total-progress",
                           json_object_new_int64(total));
    if (job->ret) {
        json_object_object_add(info, "error", json_object_new_string(
            job->err ? error_get_pretty(job->err) : strerror(-job->ret)));
    }
    return info;
}

static void qmp_query_jobs(struct json_object *args, struct json_object **ret,
                           Error **errp)
{
    struct json_object *list = json_object_new_array();

    GLOBAL_STATE_CODE();
    job_lock();
    for (Job *job = job_next_locked(NULL); job; job = job_next_locked(job)) {
        json_object_array_add(list, job_info_locked(job));
    }
    job_unlock();
    *ret = list;
}

/* --- block-job-* -------------------------------------------------------- */

static void qmp_block_job_cancel(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    const char *device = opts_get_str(args, "device");
    bool force = opts_get_bool(args, "force", false);
    BlockJob *bjob;

    GLOBAL_STATE_CODE();
    job_lock();
    bjob = find_block_job_locked(device, errp);
    if (bjob) {
        if (bjob->job.user_paused && !force) {
            error_setg(errp, "The block job for device '%s' is currently "
                       "paused", device);
        } else {
            job_user_cancel_locked(&bjob->job, force, errp);
        }
    }
    job_unlock();
}

/* @key: "device", or "id" for the commands QEMU added later (finalize,
 * dismiss). */
static void run_block_job_cmd(struct json_object *args, const char *key,
                              JobCmd cmd, Error **errp)
{
    BlockJob *bjob;

    GLOBAL_STATE_CODE();
    job_lock();
    bjob = find_block_job_locked(opts_get_str(args, key), errp);
    if (bjob) {
        job_cmd_locked(&bjob->job, cmd, false, errp);
    }
    job_unlock();
}

#define BLOCK_JOB_HANDLER(name, key, cmd)                               \
    static void name(struct json_object *args, struct json_object **ret, \
                     Error **errp)                                      \
    {                                                                   \
        run_block_job_cmd(args, key, cmd, errp);                        \
    }

BLOCK_JOB_HANDLER(qmp_block_job_pause, "device", JOB_CMD_PAUSE)
BLOCK_JOB_HANDLER(qmp_block_job_resume, "device", JOB_CMD_RESUME)
BLOCK_JOB_HANDLER(qmp_block_job_complete, "device", JOB_CMD_COMPLETE)
BLOCK_JOB_HANDLER(qmp_block_job_finalize, "id", JOB_CMD_FINALIZE)
BLOCK_JOB_HANDLER(qmp_block_job_dismiss, "id", JOB_CMD_DISMISS)

static void qmp_block_job_set_speed(struct json_object *args,
                                    struct json_object **ret, Error **errp)
{
    BlockJob *bjob;

    GLOBAL_STATE_CODE();
    job_lock();
    bjob = find_block_job_locked(opts_get_str(args, "device"), errp);
    if (bjob) {
        job_set_speed_locked(&bjob->job, opts_get_int(args, "speed", 0),
                             errp);
    }
    job_unlock();
}

static void qmp_query_block_jobs(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    struct json_object *list = json_object_new_array();

    GLOBAL_STATE_CODE();
    job_lock();
    for (Job *job = job_next_locked(NULL); job; job = job_next_locked(job)) {
        BlockJob *bjob = block_job_from_job(job);

        if (bjob) {
            json_object_array_add(list, block_job_query_locked(bjob));
        }
    }
    job_unlock();
    *ret = list;
}

/* --- Shutdown ----------------------------------------------------------- */

void job_cancel_sync_all(void)
{
    Job *job;

    GLOBAL_STATE_CODE();
    job_lock();
    /* Each cancel removes its job from the list (or dismisses it). */
    while ((job = job_next_locked(NULL))) {
        job_cancel_sync_locked(job, true);
    }
    job_unlock();
}

/* --- Registration ------------------------------------------------------- */

static const QmpCommand job_commands[] = {
    { "job-pause", id_args, qmp_job_pause, 0, "pause a job" },
    { "job-resume", id_args, qmp_job_resume, 0, "resume a paused job" },
    { "job-cancel", id_args, qmp_job_cancel, 0, "cancel a job" },
    { "job-complete", id_args, qmp_job_complete, 0,
      "complete a READY job (mirror: switch over)" },
    { "job-dismiss", id_args, qmp_job_dismiss, 0,
      "remove a concluded job" },
    { "job-finalize", id_args, qmp_job_finalize, 0,
      "finalize a pending job's transaction" },
    { "query-jobs", NULL, qmp_query_jobs, QMP_CMD_WHILE_WAITING,
      "list the jobs" },
    { "block-job-cancel", block_job_cancel_args, qmp_block_job_cancel, 0,
      "cancel a block job" },
    { "block-job-complete", device_args, qmp_block_job_complete, 0,
      "complete a READY block job" },
    { "block-job-pause", device_args, qmp_block_job_pause, 0,
      "pause a block job" },
    { "block-job-resume", device_args, qmp_block_job_resume, 0,
      "resume a paused block job" },
    { "block-job-finalize", id_args, qmp_block_job_finalize, 0,
      "finalize a pending block job's transaction" },
    { "block-job-dismiss", id_args, qmp_block_job_dismiss, 0,
      "remove a concluded block job" },
    { "block-job-set-speed", set_speed_args, qmp_block_job_set_speed, 0,
      "change a block job's rate limit" },
    { "query-block-jobs", NULL, qmp_query_block_jobs, QMP_CMD_WHILE_WAITING,
      "list the block jobs" },
    { NULL }
};

void qmp_job_init(void)
{
    GLOBAL_STATE_CODE();
    qmp_register_commands(job_commands);
}
