/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * BlockJob: jobs as parents in the block graph, their events and their
 * error policy.
 *
 * A block job holds one BlockBackend per node it uses, with request
 * queuing disabled and dev ops pointing at the job:
 * - drained_begin pauses the job (a counted, internal pause);
 * - drained_poll reports busy while the job's coroutine runs outside a
 *   pause point (yielded jobs are idle: their requests are counted by the
 *   backend), so a drain never waits for a job that itself waits for
 *   something the drain holds back;
 * - drained_end resumes it.
 * Every drained_begin a backend reports is matched by one drained_end
 * (block-backend.c guarantees it), so the pause counts balance.
 *
 * Events are built under job_mutex from the job's fields and queued with
 * the job core's events, so they reach QMP clients in order.
 */
#include "util/osdep.h"

#include "block/blockjob.h"

const char *const blockdev_on_error_names[] = {
    "report", "ignore", "enospc", "stop", "auto", NULL,
};

static const char *const error_action_names[] = {
    [BLOCK_ERROR_ACTION_IGNORE] = "ignore",
    [BLOCK_ERROR_ACTION_REPORT] = "report",
    [BLOCK_ERROR_ACTION_STOP] = "stop",
};

/* --- Events ------------------------------------------------------------ */

/*
 * What BLOCK_JOB_* events and query-block-jobs start with, in QEMU's
 * order: type, device, len, offset.  A new object.
 */
static struct json_object *block_job_info_locked(Job *job)
    TSA_REQUIRES(job_mutex)
{
    struct json_object *data = json_object_new_object();

    json_object_object_add(data, "type",
                           json_object_new_string(job_type_name(job)));
    json_object_object_add(data, "device", json_object_new_string(job->id));
    json_object_object_add(data, "len",
                           json_object_new_int64(job->progress_total));
    json_object_object_add(data, "offset",
                           json_object_new_int64(job->progress_current));
    return data;
}

/* Add the job's error message as "error", if it failed. */
static void block_job_add_error_locked(Job *job, struct json_object *data)
    TSA_REQUIRES(job_mutex)
{
    if (job->ret < 0) {
        json_object_object_add(data, "error", json_object_new_string(
            job->err ? error_get_pretty(job->err) : strerror(-job->ret)));
    }
}

static struct json_object *block_job_event_data_locked(BlockJob *bjob)
    TSA_REQUIRES(job_mutex)
{
    struct json_object *data = block_job_info_locked(&bjob->job);

    json_object_object_add(data, "speed",
                           json_object_new_int64(bjob->job.speed));
    return data;
}

/* Job.event_hook of block jobs; job_mutex held. */
static void block_job_event_hook(Job *job, JobEvent ev)
    TSA_REQUIRES(job_mutex)
{
    BlockJob *bjob = (BlockJob *)job;
    struct json_object *data;

    switch (ev) {
    case JOB_EVENT_READY:
        job_event_queue_locked("BLOCK_JOB_READY",
                               block_job_event_data_locked(bjob));
        break;
    case JOB_EVENT_CANCELLED:
        job_event_queue_locked("BLOCK_JOB_CANCELLED",
                               block_job_event_data_locked(bjob));
        break;
    case JOB_EVENT_COMPLETED:
        data = block_job_event_data_locked(bjob);
        block_job_add_error_locked(job, data);
        job_event_queue_locked("BLOCK_JOB_COMPLETED", data);
        break;
    case JOB_EVENT_PENDING:
        data = json_object_new_object();
        json_object_object_add(data, "type",
                               json_object_new_string(job_type_name(job)));
        json_object_object_add(data, "id", json_object_new_string(job->id));
        job_event_queue_locked("BLOCK_JOB_PENDING", data);
        break;
    case JOB_EVENT_USER_RESUMED:
        /* QEMU's block_job_iostatus_reset(): resuming clears the error. */
        bjob->iostatus_failed = false;
        bjob->iostatus_nospace = false;
        break;
    }
}

BlockJob *block_job_from_job(Job *job)
{
    return job->driver->free == block_job_free ? (BlockJob *)job : NULL;
}

BlockJob *block_job_get_locked(const char *id)
{
    Job *job = job_get_locked(id);

    return job ? block_job_from_job(job) : NULL;
}

/* --- Dev ops: drains pause the job -------------------------------------- */

static void block_job_drained_begin(void *opaque)
{
    BlockJob *bjob = opaque;

    GLOBAL_STATE_CODE();
    job_lock();
    job_pause_locked(&bjob->job);
    job_unlock();
    if (bjob->job.driver->drain) {
        bjob->job.driver->drain(&bjob->job);
    }
}

static bool block_job_drained_poll(void *opaque)
{
    BlockJob *bjob = opaque;
    bool busy;

    GLOBAL_STATE_CODE();
    job_lock();
    /* Not busy: yielded at a pause point, in job_yield() or asleep; no
     * driver code runs before the next pause point, which pauses. */
    busy = job_is_busy_locked(&bjob->job);
    job_unlock();
    return busy;
}

static void block_job_drained_end(void *opaque)
{
    BlockJob *bjob = opaque;

    GLOBAL_STATE_CODE();
    job_lock();
    job_resume_locked(&bjob->job);
    job_unlock();
}

static bool block_job_can_change_aio_context(void *opaque, AioContext *ctx,
                                             Error **errp)
{
    BlockJob *bjob = opaque;

    error_setg(errp, "block job '%s' cannot move to another iothread",
               job_id(&bjob->job));
    return false;
}

static const BlockDevOps block_job_dev_ops = {
    .drained_begin = block_job_drained_begin,
    .drained_poll = block_job_drained_poll,
    .drained_end = block_job_drained_end,
    .can_change_aio_context = block_job_can_change_aio_context,
};

static BlockBackend *block_job_new_blk(BlockJob *bjob, const char *name,
                                       BlockDriverState *bs, uint64_t perm,
                                       uint64_t shared_perm, Error **errp)
    GRAPH_UNLOCKED TSA_REQUIRES(bql)
{
    BlockBackend *blk = blk_new(name, bdrv_get_aio_context(bs), perm,
                                shared_perm);

    if (blk_insert_bs(blk, bs, errp) < 0) {
        blk_unref(blk);
        return NULL;
    }
    blk_set_disable_request_queuing(blk, true);
    /* After insertion: a drained node's begin must reach a live job. */
    blk_set_dev_ops(blk, &block_job_dev_ops, bjob);
    return blk;
}

void block_job_block_node(BlockJob *bjob, BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    bdrv_ref(bs);
    bjob->blocked_nodes = g_slist_prepend(bjob->blocked_nodes, bs);
}

/* The job that uses @bs, or NULL. */
static Job *block_job_user_locked(BlockDriverState *bs)
    TSA_REQUIRES(bql, job_mutex)
{
    Job *job;

    for (job = job_next_locked(NULL); job; job = job_next_locked(job)) {
        BlockJob *bjob = block_job_from_job(job);

        if (bjob && g_slist_find(bjob->blocked_nodes, bs)) {
            return job;
        }
    }
    return NULL;
}

bool block_job_uses_node(BlockDriverState *bs)
{
    bool used;

    GLOBAL_STATE_CODE();
    job_lock();
    used = block_job_user_locked(bs) != NULL;
    job_unlock();
    return used;
}

bool block_job_check_node(BlockDriverState *bs, Error **errp)
{
    Job *job;

    GLOBAL_STATE_CODE();
    job_lock();
    job = block_job_user_locked(bs);
    if (job) {
        error_setg(errp, "Node '%s' is busy: block device is in use by "
                   "block job: %s", bdrv_get_node_name(bs),
                   job->driver->job_type);
    }
    job_unlock();
    return !job;
}

bool block_job_add_bdrv(BlockJob *bjob, const char *name,
                        BlockDriverState *bs, uint64_t perm,
                        uint64_t shared_perm, Error **errp)
{
    BlockBackend *blk;

    GLOBAL_STATE_CODE();
    blk = block_job_new_blk(bjob, name, bs, perm, shared_perm, errp);
    if (!blk) {
        return false;
    }
    bjob->extra_blks = g_slist_prepend(bjob->extra_blks, blk);
    block_job_block_node(bjob, bs);
    return true;
}

void *block_job_create(const char *job_id, const JobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, uint64_t perm,
                       uint64_t shared_perm, int64_t speed, int flags,
                       JobCompletionFunc *cb, void *opaque, Error **errp)
{
    BlockJob *bjob;
    Job *job;

    GLOBAL_STATE_CODE();
    assert(driver->free == block_job_free);
    if (!job_id && !(flags & JOB_INTERNAL)) {
        job_id = bdrv_get_node_name(bs);
    }
    job = job_create(job_id, driver, txn, bdrv_get_aio_context(bs), flags,
                     cb, opaque, errp);
    if (!job) {
        return NULL;
    }
    bjob = (BlockJob *)job;
    job_lock();
    job->event_hook = block_job_event_hook;
    job_unlock();

    bjob->blk = block_job_new_blk(bjob, job_id ? job_id : "job", bs, perm,
                                  shared_perm, errp);
    if (bjob->blk) {
        block_job_block_node(bjob, bs);
    }
    job_lock();
    if (!bjob->blk || !job_set_speed_locked(job, speed, errp)) {
        /* Never started: cancelling concludes and dismisses it. */
        job_cancel_locked(job, true);
        job_unlock();
        return NULL;
    }
    job_unlock();
    return bjob;
}

void block_job_free(Job *job)
{
    BlockJob *bjob = (BlockJob *)job;

    GLOBAL_STATE_CODE();
    for (GSList *l = bjob->extra_blks; l; l = l->next) {
        blk_unref(l->data);
    }
    g_slist_free(bjob->extra_blks);
    if (bjob->blk) {
        blk_unref(bjob->blk);
    }
    g_slist_free_full(bjob->blocked_nodes, (GDestroyNotify)bdrv_unref);
}

/* --- Errors ------------------------------------------------------------- */

BlockErrorAction block_job_error_action(BlockJob *bjob, BlockdevOnError on_err,
                                        bool is_read, int error)
{
    BlockErrorAction action;
    struct json_object *data;
    Job *job = &bjob->job;

    IO_CODE();
    switch (on_err) {
    case BLOCKDEV_ON_ERROR_IGNORE:
        action = BLOCK_ERROR_ACTION_IGNORE;
        break;
    case BLOCKDEV_ON_ERROR_STOP:
        action = BLOCK_ERROR_ACTION_STOP;
        break;
    case BLOCKDEV_ON_ERROR_ENOSPC:
    case BLOCKDEV_ON_ERROR_AUTO:
        /* A full disk can be grown and the job resumed. */
        action = error == ENOSPC ? BLOCK_ERROR_ACTION_STOP
                                 : BLOCK_ERROR_ACTION_REPORT;
        break;
    default:
        action = BLOCK_ERROR_ACTION_REPORT;
        break;
    }
    job_lock();
    if (job->id) {
        data = json_object_new_object();
        json_object_object_add(data, "device",
                               json_object_new_string(job->id));
        json_object_object_add(data, "operation", json_object_new_string(
                                   is_read ? "read" : "write"));
        json_object_object_add(data, "action", json_object_new_string(
                                   error_action_names[action]));
        job_event_queue_locked("BLOCK_JOB_ERROR", data);
    }
    if (action == BLOCK_ERROR_ACTION_STOP) {
        if (!job->user_paused) {
            /* Stopped as if by job-pause: job-resume goes on. */
            job->user_paused = true;
            job_pause_locked(job);
        }
        /* The first error of a stop is the one reported. */
        if (!bjob->iostatus_failed) {
            bjob->iostatus_failed = true;
            bjob->iostatus_nospace = error == ENOSPC;
        }
    }
    job_unlock();
    return action;
}

/* --- Query -------------------------------------------------------------- */

struct json_object *block_job_query_locked(BlockJob *bjob)
{
    Job *job = &bjob->job;
    struct json_object *info;

    GLOBAL_STATE_CODE();
    info = block_job_info_locked(job);
    json_object_object_add(info, "busy", json_object_new_boolean(job->busy));
    json_object_object_add(info, "paused",
                           json_object_new_boolean(job->pause_count > 0));
    json_object_object_add(info, "speed", json_object_new_int64(job->speed));
    json_object_object_add(info, "io-status", json_object_new_string(
                               !bjob->iostatus_failed ? "ok" :
                               bjob->iostatus_nospace ? "nospace" : "failed"));
    json_object_object_add(info, "ready",
                           json_object_new_boolean(job_is_ready_locked(job)));
    json_object_object_add(info, "status", json_object_new_string(
                               job_status_name(job->status)));
    json_object_object_add(info, "auto-finalize",
                           json_object_new_boolean(job->auto_finalize));
    json_object_object_add(info, "auto-dismiss",
                           json_object_new_boolean(job->auto_dismiss));
    block_job_add_error_locked(job, info);
    return info;
}
