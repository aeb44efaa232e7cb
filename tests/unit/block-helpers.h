/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Set-ups shared by the block layer's unit tests: nodes opened from JSON
 * text, a BlockBackend on a node, image files, the bytes of memory-backed
 * test drivers, and the monitor verbs applied to a job.
 *
 * Everything here is main-loop code (the test's main thread, which holds
 * the BQL) except the MemStore functions, which any thread may call.
 * The functions that call main-loop-only APIs are TSA_REQUIRES(bql): a
 * test function says GLOBAL_STATE_CODE() before its first call of them.
 * Failures of a set-up step abort the test (error_abort, g_assert),
 * except where an Error ** lets the test check the failure.
 */
#ifndef TESTS_UNIT_BLOCK_HELPERS_H
#define TESTS_UNIT_BLOCK_HELPERS_H

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/job-monitor.h"
#include "loop-helpers.h"
#include "util/iov.h"
#include "util/thread.h"

/* --- Nodes and backends ---------------------------------------------- */

/*
 * Open a node from the JSON text @fmt makes, typed as QMP input is
 * (strict types).  The text must parse.  Returns the new node (one
 * reference, the caller's), or NULL with @errp set.
 */
BlockDriverState *open_node(Error **errp, const char *fmt, ...)
    PRINTF_FMT(2, 3) TSA_REQUIRES(bql);

/*
 * A backend @name in @ctx on @bs, taking @perm and sharing everything.
 * Returns it with the caller's reference.
 */
BlockBackend *new_backend(const char *name, AioContext *ctx, uint64_t perm,
                          BlockDriverState *bs) TSA_REQUIRES(bql);

/* --- Image files ----------------------------------------------------- */

/*
 * A sparse file of @size bytes in the temporary directory, named after
 * @tmpl (g_file_open_tmp()'s "name-XXXXXX"), holding @len bytes of @data
 * at offset 0 unless @data is NULL.  Returns its path: the caller unlinks
 * the file and g_free()s the path.
 */
char *make_temp_image(const char *tmpl, int64_t size, const void *data,
                      size_t len);

/* --- Memory-backed test drivers -------------------------------------- */

/*
 * The bytes of a memory-backed test driver's node, behind one mutex.
 * The driver's callbacks use them from whatever thread runs the request;
 * what else the driver keeps (counters, gates) is its own.
 */
typedef struct MemStore {
    BdMutex lock;
    uint8_t *data;          /* lock */
    int64_t size;           /* lock */
} MemStore;

/* @size bytes of zeroes, and the mutex. */
void mem_store_init(MemStore *m, int64_t size);
void mem_store_destroy(MemStore *m);

/* Copy @bytes at @offset into / out of @qiov; the caller holds m->lock
 * and has checked the range. */
void mem_store_read_locked(MemStore *m, int64_t offset, int64_t bytes,
                           IOVec *qiov) TSA_REQUIRES(&m->lock);
void mem_store_write_locked(MemStore *m, int64_t offset, int64_t bytes,
                            IOVec *qiov) TSA_REQUIRES(&m->lock);
/* The same, taking m->lock. */
void mem_store_read(MemStore *m, int64_t offset, int64_t bytes,
                    IOVec *qiov);
void mem_store_write(MemStore *m, int64_t offset, int64_t bytes,
                     IOVec *qiov);

/* Resize to @size bytes; the new ones read as zeroes. */
void mem_store_truncate(MemStore *m, int64_t size);
/* A copy of all the bytes (the caller g_free()s it). */
uint8_t *mem_store_copy(MemStore *m);

/* --- Jobs ------------------------------------------------------------ */

/* The monitor verbs, as the job commands apply them; called with
 * job_mutex held (verb() in job-helpers.h, finish_job()). */
void user_pause(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void user_resume(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
/* forced: job-cancel */
void user_cancel(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
/* block-job-cancel */
void soft_cancel(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void complete(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void finalize(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);
void dismiss(Job *job, Error **errp) TSA_REQUIRES(bql, job_mutex);

/*
 * Apply @finish to job @id, which must exist, and run the main loop until
 * the job is over (job_finish_sync_locked()).  Returns the job's result.
 */
int finish_job(const char *id, void (*finish)(Job *, Error **))
    TSA_REQUIRES(bql) GRAPH_UNLOCKED;

#endif /* TESTS_UNIT_BLOCK_HELPERS_H */
