/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Set-ups shared by the block layer's unit tests: see block-helpers.h.
 */
#include "util/osdep.h"

#include "block-helpers.h"

/* --- Nodes and backends ------------------------------------------------- */

BlockDriverState *open_node(Error **errp, const char *fmt, ...)
{
    g_autofree char *json = NULL;
    struct json_object *options;
    BlockDriverState *bs;
    va_list ap;

    va_start(ap, fmt);
    json = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    options = json_tokener_parse(json);
    g_assert_nonnull(options);
    bs = bdrv_open(options, true, errp);
    json_object_put(options);
    return bs;
}

BlockBackend *new_backend(const char *name, AioContext *ctx, uint64_t perm,
                          BlockDriverState *bs)
{
    BlockBackend *blk = blk_new(name, ctx, perm, BLK_PERM_ALL);

    g_assert_cmpint(blk_insert_bs(blk, bs, &error_abort), ==, 0);
    return blk;
}

/* --- Image files -------------------------------------------------------- */

char *make_temp_image(const char *tmpl, int64_t size, const void *data,
                      size_t len)
{
    char *path = NULL;
    int fd = g_file_open_tmp(tmpl, &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    if (data) {
        g_assert_cmpint(pwrite(fd, data, len, 0), ==, (ssize_t)len);
    }
    close(fd);
    return path;
}

/* --- Jobs --------------------------------------------------------------- */

void user_pause(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_pause_locked(job, errp);
}

void user_resume(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_resume_locked(job, errp);
}

void user_cancel(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_cancel_locked(job, true, errp);
}

void soft_cancel(Job *job, Error **errp) TSA_NO_TSA
{
    job_user_cancel_locked(job, false, errp);
}

void complete(Job *job, Error **errp) TSA_NO_TSA
{
    job_complete_locked(job, errp);
}

void finalize(Job *job, Error **errp) TSA_NO_TSA
{
    job_finalize_locked(job, errp);
}

void dismiss(Job *job, Error **errp) TSA_NO_TSA
{
    job_dismiss_locked(&job, errp);
}

int finish_job(const char *id, void (*finish)(Job *, Error **))
{
    Job *job;
    int ret;

    job_lock();
    job = job_get_locked(id);
    g_assert_nonnull(job);
    ret = job_finish_sync_locked(job, finish, &error_abort);
    job_unlock();
    return ret;
}
