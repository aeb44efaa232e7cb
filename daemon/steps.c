/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Start-up steps: what one --blockdev, --object, --nbd-server, --export,
 * --chardev or --monitor option (or one entry of a config file) asks for,
 * parsed into QMP arguments, and running them in order.
 *
 * A step that has a QMP counterpart runs through qmp_run_command() with
 * the same handler as the QMP command, so the command line accepts and
 * refuses exactly what QMP does, with the same messages: keyval arguments
 * with string leaves (opts_flags 0: the argument checker converts "on" and
 * "42"), JSON arguments with their JSON types (OPTS_STRICT_TYPES).  A
 * command that is not registered (nbd-server-start before the NBD server
 * exists) fails like an unknown QMP command.  Chardevs and monitors have
 * no QMP counterpart in blockd and run through chardev.c.
 *
 * Each step keeps the text that names it ("--blockdev driver=file,..."),
 * which prefixes every message about it.
 */
#include "util/osdep.h"

#include "daemon/daemon.h"
#include "qmp/qmp.h"
#include "util/keyval.h"
#include "util/main-loop.h"
#include "util/opts.h"

typedef struct StepKindInfo {
    const char *command;        /* QMP command; NULL for chardev.c's */
    const char *implied_key;    /* keyval key of a bare first value */
    bool cli_json;              /* the option also takes a JSON object */
} StepKindInfo;

/*
 * As QSD: --chardev is QemuOpts there (no JSON); the others go through
 * qobject_input_visitor_new_str(), which takes JSON when the argument
 * starts with '{'.  --nbd-server has no implied key.
 */
static const StepKindInfo step_kinds[] = {
    [DAEMON_STEP_OBJECT]     = { "object-add", "qom-type", true },
    [DAEMON_STEP_BLOCKDEV]   = { "blockdev-add", "driver", true },
    [DAEMON_STEP_NBD_SERVER] = { "nbd-server-start", NULL, true },
    [DAEMON_STEP_EXPORT]     = { "block-export-add", "type", true },
    [DAEMON_STEP_CHARDEV]    = { NULL, "backend", false },
    [DAEMON_STEP_MONITOR]    = { NULL, "chardev", true },
};

/* 1-based line and column of byte @offset of @text. */
static void json_text_position(const char *text, size_t offset,
                               int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset && text[i]; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

struct json_object *daemon_json_parse(const char *text, Error **errp)
{
    struct json_tokener *tok = json_tokener_new();
    size_t len = strlen(text);
    struct json_object *obj;
    enum json_tokener_error jerr;
    int line, column;

    /*
     * Strict: no trailing commas or other extensions, and anything but
     * whitespace after the value is an error.  The terminating NUL is
     * passed too: it tells json-c that the input ends there.
     */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, text, (int)len + 1);
    jerr = json_tokener_get_error(tok);
    if (jerr != json_tokener_success) {
        json_text_position(text, json_tokener_get_parse_end(tok), &line,
                           &column);
        error_setg(errp, "invalid JSON at line %d, column %d: %s", line,
                   column, jerr == json_tokener_continue
                           ? "unexpected end of data"
                           : json_tokener_error_desc(jerr));
        json_tokener_free(tok);
        return NULL;
    }
    json_tokener_free(tok);
    if (!json_object_is_type(obj, json_type_object)) {
        /* json-c's JSON null is a NULL object */
        error_setg(errp, "expected a JSON object");
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

void nbd_server_args_to_legacy(struct json_object *args)
{
    struct json_object *addr, *legacy, *data;

    if (!json_object_object_get_ex(args, "addr", &addr) ||
        !json_object_is_type(addr, json_type_object) ||
        json_object_object_get_ex(addr, "data", NULL)) {
        return;     /* absent, wrong (QMP will say) or legacy already */
    }
    legacy = json_object_new_object();
    data = json_object_new_object();
    json_object_object_foreach(addr, key, val) {
        if (!strcmp(key, "type")) {
            json_object_object_add(legacy, key, json_object_get(val));
        } else if (!strcmp(key, "port") &&
                   json_object_is_type(val, json_type_int)) {
            /* InetSocketAddress's port is a string in QAPI. */
            json_object_object_add(data, key, json_object_new_string(
                                       json_object_get_string(val)));
        } else {
            json_object_object_add(data, key, json_object_get(val));
        }
    }
    json_object_object_add(legacy, "data", data);
    json_object_object_add(args, "addr", legacy);   /* drops the flat one */
}

/* Kind-specific checks and conversions, before anything runs. */
static bool step_prepare(DaemonStep *step, bool from_config, Error **errp)
{
    if (!json_object_is_type(step->args, json_type_object)) {
        error_setg(errp, "expected a JSON object");
        return false;
    }
    switch (step->kind) {
    case DAEMON_STEP_NBD_SERVER:
        nbd_server_args_to_legacy(step->args);
        return true;
    case DAEMON_STEP_CHARDEV:
        return chardev_check_args(step->args, step->opts_flags, errp);
    case DAEMON_STEP_MONITOR:
        return monitor_check_args(step->args, step->opts_flags, from_config,
                                  errp);
    default:
        return true;    /* the QMP command checks its own arguments */
    }
}

static DaemonStep *step_new(DaemonStepKind kind, struct json_object *args,
                            unsigned opts_flags, const char *where,
                            bool from_config, Error **errp)
{
    DaemonStep *step = g_new0(DaemonStep, 1);

    step->kind = kind;
    step->args = args;
    step->opts_flags = opts_flags;
    step->where = g_strdup(where);
    if (!step_prepare(step, from_config, errp)) {
        error_prepend(errp, "%s: ", where);
        step_free(step);
        return NULL;
    }
    return step;
}

DaemonStep *step_from_cli(DaemonStepKind kind, const char *arg,
                          const char *where, Error **errp)
{
    const StepKindInfo *info = &step_kinds[kind];
    struct json_object *args;
    unsigned flags;

    if (info->cli_json && arg[0] == '{') {
        args = daemon_json_parse(arg, errp);
        flags = OPTS_STRICT_TYPES;
    } else {
        args = keyval_parse(arg, info->implied_key, errp);
        flags = 0;
    }
    if (!args) {
        error_prepend(errp, "%s: ", where);
        return NULL;
    }
    return step_new(kind, args, flags, where, false, errp);
}

DaemonStep *step_from_json(DaemonStepKind kind, struct json_object *args,
                           const char *where, Error **errp)
{
    return step_new(kind, json_object_get(args), OPTS_STRICT_TYPES, where,
                    true, errp);
}

void step_free(DaemonStep *step)
{
    if (step) {
        json_object_put(step->args);
        g_free(step->where);
        g_free(step);
    }
}

static bool step_apply(DaemonStep *step, Error **errp) TSA_REQUIRES(bql)
{
    const StepKindInfo *info = &step_kinds[step->kind];
    Error *local_err = NULL;

    switch (step->kind) {
    case DAEMON_STEP_CHARDEV:
        return chardev_add(step->args, errp);
    case DAEMON_STEP_MONITOR:
        return monitor_add(step->args, errp);
    default:
        /* The return value ({} for these commands) is not needed. */
        json_object_put(qmp_run_command(info->command, step->args,
                                        step->opts_flags, &local_err));
        if (local_err) {
            error_propagate(errp, local_err);
            return false;
        }
        return true;
    }
}

bool steps_apply(DaemonConfig *cfg, Error **errp)
{
    GLOBAL_STATE_CODE();

    for (guint i = 0; i < cfg->steps->len; i++) {
        DaemonStep *step = cfg->steps->pdata[i];
        Error *local_err = NULL;

        if (!step_apply(step, &local_err)) {
            error_propagate_prepend(errp, local_err, "%s: ", step->where);
            return false;
        }
    }
    return true;
}
