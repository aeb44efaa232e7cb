/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Set-ups shared by the block layer's unit tests: nodes opened from JSON
 * text, a BlockBackend on a node, and image files.
 *
 * Everything here is main-loop code (the test's main thread, which holds
 * the BQL); failures of a set-up step abort the test (error_abort,
 * g_assert), except where an Error ** lets the test check the failure.
 */
#ifndef TESTS_UNIT_BLOCK_HELPERS_H
#define TESTS_UNIT_BLOCK_HELPERS_H

#include "block/block-backend.h"
#include "block/block-global-state.h"
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

#endif /* TESTS_UNIT_BLOCK_HELPERS_H */
