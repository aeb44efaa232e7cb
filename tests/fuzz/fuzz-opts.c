/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for the argument checker (util/opts.c) over the real
 * QMP command schemas.  The first input byte picks a command among those
 * registered by qmp_control_init(), qmp_objects_init(), qmp_block_init()
 * and qmp_export_init() that take arguments; the rest is parsed as JSON
 * and, if it is an object, checked against the command's schema with
 * OPTS_STRICT_TYPES (QMP) and without (the command line's typing); the
 * rest is also parsed as a keyval string and checked without strict
 * types, as --blockdev/--object/--export are.  No handler ever runs.
 * Invariants: a failed check sets a non-empty error; a successful check
 * leaves an object that passes the same check again (normalisation is
 * idempotent) and, once normalised, also passes the strict check.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "qmp/block.h"
#include "qmp/control.h"
#include "qmp/export.h"
#include "qmp/objects.h"
#include "qmp/qmp.h"
#include "util/keyval.h"
#include "util/main-loop.h"

/* JSON nesting accepted, as the monitor's. */
#define FUZZ_JSON_DEPTH 128

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const QmpCommand **fuzz_commands;
static size_t fuzz_n_commands;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const QmpCommand **all;

    main_loop_init();
    bdrv_init();
    qmp_control_init();
    qmp_objects_init();
    qmp_block_init();
    qmp_export_init();

    all = qmp_list_commands();
    fuzz_commands = g_new0(const QmpCommand *, 256);
    for (size_t i = 0; all[i]; i++) {
        if (all[i]->args && fuzz_n_commands < 256) {
            fuzz_commands[fuzz_n_commands++] = all[i];
        }
    }
    assert(fuzz_n_commands > 0);
    return 0;
}

/* Check a copy of @obj; returns the normalised copy, or NULL. */
static struct json_object *check_copy(struct json_object *obj,
                                      const OptDesc *const *schemas,
                                      unsigned flags)
{
    struct json_object *copy = NULL;
    Error *err = NULL;

    if (json_object_deep_copy(obj, &copy, NULL) < 0) {
        abort();
    }
    if (!opts_check(copy, schemas, "", flags, &err)) {
        if (!err || !*error_get_pretty(err)) {
            abort();
        }
        error_free(err);
        json_object_put(copy);
        return NULL;
    }
    if (err) {
        abort();
    }
    return copy;
}

/* Check @obj with @flags; if it passes, its normal form must pass again. */
static void check_args(struct json_object *obj,
                       const OptDesc *const *schemas, unsigned flags)
{
    struct json_object *norm = check_copy(obj, schemas, flags);
    struct json_object *again;

    if (!norm) {
        return;
    }
    again = check_copy(norm, schemas, flags);
    if (!again) {
        abort();                /* normalisation is not idempotent */
    }
    json_object_put(again);
    again = check_copy(norm, schemas, OPTS_STRICT_TYPES);
    if (!again) {
        abort();                /* normalised values have the wrong type */
    }
    json_object_put(again);
    json_object_put(norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const QmpCommand *cmd;
    const OptDesc *schemas[2] = { NULL, NULL };
    g_autofree char *text = NULL;
    struct json_tokener *tok;
    struct json_object *obj;

    if (size < 1) {
        return 0;
    }
    cmd = fuzz_commands[data[0] % fuzz_n_commands];
    schemas[0] = cmd->args;
    text = g_strndup((const char *)data + 1, size - 1);

    tok = json_tokener_new_ex(FUZZ_JSON_DEPTH);
    obj = json_tokener_parse_ex(tok, text, strlen(text) + 1);
    if (obj && json_object_is_type(obj, json_type_object)) {
        check_args(obj, schemas, OPTS_STRICT_TYPES);
        check_args(obj, schemas, 0);
    }
    json_object_put(obj);
    json_tokener_free(tok);

    obj = keyval_parse(text, NULL, NULL);
    if (obj) {
        check_args(obj, schemas, 0);
        json_object_put(obj);
    }
    return 0;
}
