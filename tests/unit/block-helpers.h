/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Set-ups shared by the block layer's unit tests: nodes opened from JSON
 * text, a BlockBackend on a node, image files, and the monitor verbs
 * applied to a job.
 *
 * Everything here is main-loop code (the test's main thread, which holds
 * the BQL); failures of a set-up step abort the test (error_abort,
 * g_assert), except where an Error ** lets the test check the failure.
 */
#ifndef TESTS_UNIT_BLOCK_HELPERS_H
#define TESTS_UNIT_BLOCK_HELPERS_H

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/job-monitor.h"
#include "loop-helpers.h"

/* --- Nodes and backends ---------------------------------------------- */

/*
 * Open a node from the JSON text @fmt makes, typed as QMP input is
 * (strict types).  The text must parse.  Returns the new node (one
 * reference, the caller's), or NULL with @errp set.
 */
BlockDriverState *open_node(Error **errp, const char *fmt, ...)
    PRINTF_FMT(2, 3);

/*
 * A backend @name in @ctx on @bs, taking @perm and sharing everything.
 * Returns it with the caller's reference.
 */
BlockBackend *new_backend(const char *name, AioContext *ctx, uint64_t perm,
                          BlockDriverState *bs);

/* --- Image files ----------------------------------------------------- */

/*
 * A sparse file of @size bytes in the temporary directory, named after
 * @tmpl (g_file_open_tmp()'s "name-XXXXXX"), holding @len bytes of @data
 * at offset 0 unless @data is NULL.  Returns its path: the caller unlinks
 * the file and g_free()s the path.
 */
char *make_temp_image(const char *tmpl, int64_t size, const void *data,
                      size_t len);

/* --- Jobs ------------------------------------------------------------ */

/* The monitor verbs, as the job commands apply them; called with
 * job_mutex held (verb() in job-helpers.h, finish_job()). */
void user_pause(Job *job, Error **errp);
void user_resume(Job *job, Error **errp);
void user_cancel(Job *job, Error **errp);       /* forced: job-cancel */
void soft_cancel(Job *job, Error **errp);       /* block-job-cancel */
void complete(Job *job, Error **errp);
void finalize(Job *job, Error **errp);
void dismiss(Job *job, Error **errp);

/*
 * Apply @finish to job @id, which must exist, and run the main loop until
 * the job is over (job_finish_sync_locked()).  Returns the job's result.
 */
int finish_job(const char *id, void (*finish)(Job *, Error **));

#endif /* TESTS_UNIT_BLOCK_HELPERS_H */
