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

/* --- Memory-backed test drivers ---------------------------------------- */

void mem_store_init(MemStore *m, int64_t size)
{
    bd_mutex_init(&m->lock);
    m->data = g_malloc0(size);
    m->size = size;
}

void mem_store_destroy(MemStore *m)
{
    bd_mutex_destroy(&m->lock);
    g_free(m->data);
}

void mem_store_read_locked(MemStore *m, int64_t offset, int64_t bytes,
                           IOVec *qiov)
{
    iovec_from_buf(qiov, 0, m->data + offset, bytes);
}

void mem_store_write_locked(MemStore *m, int64_t offset, int64_t bytes,
                            IOVec *qiov)
{
    iovec_to_buf(qiov, 0, m->data + offset, bytes);
}

void mem_store_read(MemStore *m, int64_t offset, int64_t bytes, IOVec *qiov)
{
    bd_mutex_lock(&m->lock);
    mem_store_read_locked(m, offset, bytes, qiov);
    bd_mutex_unlock(&m->lock);
}

void mem_store_write(MemStore *m, int64_t offset, int64_t bytes, IOVec *qiov)
{
    bd_mutex_lock(&m->lock);
    mem_store_write_locked(m, offset, bytes, qiov);
    bd_mutex_unlock(&m->lock);
}

void mem_store_truncate(MemStore *m, int64_t size)
{
    bd_mutex_lock(&m->lock);
    m->data = g_realloc(m->data, size);
    if (size > m->size) {
        memset(m->data + m->size, 0, size - m->size);
    }
    m->size = size;
    bd_mutex_unlock(&m->lock);
}

uint8_t *mem_store_copy(MemStore *m)
{
    uint8_t *copy;

    bd_mutex_lock(&m->lock);
    copy = g_memdup2(m->data, m->size);
    bd_mutex_unlock(&m->lock);
    return copy;
}

/* --- Jobs --------------------------------------------------------------- */

void user_pause(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_user_pause_locked(job, errp);
}

void user_resume(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_user_resume_locked(job, errp);
}

void user_cancel(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_user_cancel_locked(job, true, errp);
}

void soft_cancel(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_user_cancel_locked(job, false, errp);
}

void complete(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_complete_locked(job, errp);
}

void finalize(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
{
    job_finalize_locked(job, errp);
}

void dismiss(Job *job, Error **errp)
    TSA_REQUIRES(bql, job_mutex)
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
