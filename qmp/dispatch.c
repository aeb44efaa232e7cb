/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP command registry, dispatch and events.
 *
 * The registry holds every command table registered at start-up; names are
 * unique (registering one twice aborts).  qmp_run_command() is the one way
 * a command runs, from a monitor or from the command line: it checks the
 * arguments against the command's schema (on a private copy, so that the
 * caller's object is never normalised behind its back), calls the handler
 * and enforces its contract (an error and a return value never both).
 *
 * qmp_dispatch() adds QEMU's wire protocol on top: the shape of a request,
 * the id echoed verbatim in every reply that has one, and capabilities
 * negotiation.  The order of the checks is QEMU's, so that a client sees
 * the same error for the same mistake: the request's shape first (a
 * GenericError, with the id if there is one), then the command's lookup
 * (before negotiation every lookup failure reads "Expecting capabilities
 * negotiation..."), then the arguments, then the handler.
 *
 * Events are built here (with a realtime timestamp) and handed to the
 * observers in registration order; the monitors are one observer
 * (qmp/monitor.c registers itself with its first monitor).
 *
 * Main-loop code: everything here runs under the BQL.  Entry points open
 * with GLOBAL_STATE_CODE() or bql_assert_held(): the same assertion, which
 * clang's thread-safety analysis also understands, so either lets them
 * touch the BQL-guarded globals below.
 */
#include "util/osdep.h"

#include "qmp/control.h"
#include "qmp/qmp.h"
#include "util/event.h"
#include "util/main-loop.h"

/* Registered commands in registration order, NULL-terminated.  BQL */
static GPtrArray *qmp_commands TSA_GUARDED_BY(bql);
/* Name -> QmpCommand, for lookups.  BQL */
static GHashTable *qmp_command_index TSA_GUARDED_BY(bql);

typedef struct QmpObserver {
    QmpEventObserver *fn;
    void *opaque;
} QmpObserver;

/* opts flags of the running command (the innermost if nested).  BQL */
static unsigned qmp_running_opts_flags TSA_GUARDED_BY(bql);

/* QmpObserver, in registration order.  BQL */
static GArray *qmp_observers TSA_GUARDED_BY(bql);

/* Schema of commands declared with args == NULL: no keys at all. */
static const OptDesc qmp_no_args[] = { { NULL } };

/* --- Registry -------------------------------------------------------------- */

void qmp_register_commands(const QmpCommand *table)
{
    bql_assert_held();
    if (!qmp_commands) {
        qmp_commands = g_ptr_array_new();
        g_ptr_array_add(qmp_commands, NULL);
        qmp_command_index = g_hash_table_new(g_str_hash, g_str_equal);
    }
    for (const QmpCommand *cmd = table; cmd->name; cmd++) {
        if (g_hash_table_contains(qmp_command_index, cmd->name)) {
            g_error("QMP command '%s' is registered twice", cmd->name);
        }
        g_assert(cmd->handler);
        g_hash_table_insert(qmp_command_index, (gpointer)cmd->name,
                            (gpointer)cmd);
        /* Keep the array NULL-terminated: the new entry replaces the NULL. */
        qmp_commands->pdata[qmp_commands->len - 1] = (gpointer)cmd;
        g_ptr_array_add(qmp_commands, NULL);
    }
}

const QmpCommand *qmp_find_command(const char *name)
{
    bql_assert_held();
    return qmp_command_index ? g_hash_table_lookup(qmp_command_index, name)
                             : NULL;
}

/*
 * The array belongs to the registry and stays valid until the next
 * qmp_register_commands().
 */
const QmpCommand **qmp_list_commands(void)
{
    static const QmpCommand *none[] = { NULL };

    bql_assert_held();
    return qmp_commands ? (const QmpCommand **)qmp_commands->pdata : none;
}

/* --- Running a command ----------------------------------------------------- */

unsigned qmp_current_opts_flags(void)
{
    bql_assert_held();
    return qmp_running_opts_flags;
}

static struct json_object *qmp_call_handler(const QmpCommand *cmd,
                                            struct json_object *args,
                                            unsigned opts_flags, Error **errp)
    TSA_REQUIRES(bql)
{
    unsigned outer_flags = qmp_running_opts_flags;
    struct json_object *ret = NULL;
    Error *local_err = NULL;

    /* A handler may run another command (nested): restore, not clear. */
    qmp_running_opts_flags = opts_flags;
    cmd->handler(args, &ret, &local_err);
    qmp_running_opts_flags = outer_flags;
    if (local_err) {
        /* A handler that fails returns nothing: a bug in the handler. */
        g_assert(!ret);
        error_propagate(errp, local_err);
        return NULL;
    }
    return ret ? ret : json_object_new_object();
}

struct json_object *qmp_run_command(const char *name, struct json_object *args,
                                    unsigned opts_flags, Error **errp)
{
    const QmpCommand *cmd;
    const OptDesc *schemas[2] = { NULL, NULL };
    struct json_object *checked = NULL;     /* deep_copy() wants NULL */
    struct json_object *ret;

    bql_assert_held();
    cmd = qmp_find_command(name);
    if (!cmd) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "The command %s has not been found", name);
        return NULL;
    }
    schemas[0] = cmd->args ? cmd->args : qmp_no_args;
    /* Check and normalise a copy: the caller's object stays as it was. */
    if (!args) {
        checked = json_object_new_object();
    } else if (json_object_deep_copy(args, &checked, NULL) < 0) {
        error_setg(errp, "Cannot copy the arguments of %s", name);
        return NULL;
    }
    if (!opts_check(checked, schemas, "", opts_flags, errp)) {
        json_object_put(checked);
        return NULL;
    }
    ret = qmp_call_handler(cmd, checked, opts_flags, errp);
    json_object_put(checked);
    return ret;
}

/* --- The wire protocol ----------------------------------------------------- */

/*
 * Check the members of request object @req, as QEMU does.  Returns the
 * command name (owned by @req) or NULL with @errp set.
 */
static const char *qmp_check_request(struct json_object *req, Error **errp)
{
    const char *name = NULL;

    json_object_object_foreach(req, key, val) {
        if (!strcmp(key, "execute")) {
            if (!json_object_is_type(val, json_type_string)) {
                error_setg(errp, "QMP input member 'execute' must be a string");
                return NULL;
            }
            name = json_object_get_string(val);
        } else if (!strcmp(key, "arguments")) {
            if (!json_object_is_type(val, json_type_object)) {
                error_setg(errp,
                           "QMP input member 'arguments' must be an object");
                return NULL;
            }
        } else if (strcmp(key, "id") != 0) {
            /* Includes exec-oob: blockd offers no out-of-band execution. */
            error_setg(errp, "QMP input member '%s' is unexpected", key);
            return NULL;
        }
    }
    if (!name) {
        error_setg(errp, "QMP input lacks member 'execute'");
        return NULL;
    }
    return name;
}

/* Find @name as the negotiation state allows; CommandNotFound otherwise. */
static const QmpCommand *qmp_lookup_for_client(const char *name,
                                               bool negotiated, Error **errp)
    TSA_REQUIRES(bql)
{
    const QmpCommand *cmd = qmp_find_command(name);

    if (!negotiated) {
        if (!cmd || !(cmd->flags & QMP_CMD_BEFORE_NEGOTIATION)) {
            error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                      "Expecting capabilities negotiation with "
                      "'qmp_capabilities'");
            return NULL;
        }
        return cmd;
    }
    if (!cmd) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "The command %s has not been found", name);
        return NULL;
    }
    if (!strcmp(name, "qmp_capabilities")) {
        error_set(errp, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Capabilities negotiation is already complete, command "
                  "ignored");
        return NULL;
    }
    return cmd;
}

/* {"return": ret} or {"error": {"class", "desc"}}, then "id" if given. */
static struct json_object *qmp_build_response(struct json_object *ret,
                                              Error *err,
                                              struct json_object *id)
{
    struct json_object *rsp = json_object_new_object();

    if (err) {
        struct json_object *error = json_object_new_object();

        json_object_object_add(error, "class", json_object_new_string(
                                   error_class_name(error_get_class(err))));
        json_object_object_add(error, "desc", json_object_new_string(
                                   error_get_pretty(err)));
        json_object_object_add(rsp, "error", error);
        error_free(err);
    } else {
        json_object_object_add(rsp, "return", ret);
    }
    if (id) {
        json_object_object_add(rsp, "id", json_object_get(id));
    }
    return rsp;
}

struct json_object *qmp_dispatch(struct json_object *request,
                                 bool *negotiated)
{
    struct json_object *id = NULL;
    struct json_object *args = NULL;
    struct json_object *ret = NULL;
    const QmpCommand *cmd;
    const char *name;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    if (!json_object_is_type(request, json_type_object)) {
        error_setg(&err, "QMP input must be a JSON object");
        return qmp_build_response(NULL, err, NULL);
    }
    /* Echoed verbatim, whatever its type (QEMU allows any JSON value). */
    json_object_object_get_ex(request, "id", &id);
    name = qmp_check_request(request, &err);
    if (!name) {
        return qmp_build_response(NULL, err, id);
    }
    cmd = qmp_lookup_for_client(name, *negotiated, &err);
    if (!cmd) {
        return qmp_build_response(NULL, err, id);
    }
    json_object_object_get_ex(request, "arguments", &args);
    ret = qmp_run_command(cmd->name, args, OPTS_STRICT_TYPES, &err);
    if (ret && !*negotiated && (cmd->flags & QMP_CMD_BEFORE_NEGOTIATION) &&
        !strcmp(cmd->name, "qmp_capabilities")) {
        *negotiated = true;
    }
    return qmp_build_response(ret, err, id);
}

/* --- Events ---------------------------------------------------------------- */

void qmp_add_event_observer(QmpEventObserver *fn, void *opaque)
{
    QmpObserver obs = { .fn = fn, .opaque = opaque };

    bql_assert_held();
    if (!qmp_observers) {
        qmp_observers = g_array_new(false, false, sizeof(QmpObserver));
        /* From now on the layers below deliver their events through us. */
        event_set_sink(qmp_event_emit);
    }
    g_array_append_val(qmp_observers, obs);
}

/* {"seconds", "microseconds"} of the realtime clock, as QEMU's events. */
static struct json_object *qmp_event_timestamp(void)
{
    struct json_object *ts = json_object_new_object();
    int64_t now_us = g_get_real_time();

    json_object_object_add(ts, "seconds",
                           json_object_new_int64(now_us / G_USEC_PER_SEC));
    json_object_object_add(ts, "microseconds",
                           json_object_new_int64(now_us % G_USEC_PER_SEC));
    return ts;
}

/*
 * Observers get the message borrowed: they take a reference to keep it
 * and must not change it (the next observer sees the same object).
 */
void qmp_event_emit(const char *event, struct json_object *data)
{
    struct json_object *msg = json_object_new_object();

    bql_assert_held();
    json_object_object_add(msg, "event", json_object_new_string(event));
    if (data) {
        json_object_object_add(msg, "data", data);
    }
    json_object_object_add(msg, "timestamp", qmp_event_timestamp());
    /* An observer may add another: index, do not cache the length. */
    for (guint i = 0; qmp_observers && i < qmp_observers->len; i++) {
        QmpObserver *obs = &g_array_index(qmp_observers, QmpObserver, i);

        obs->fn(event, msg, obs->opaque);
    }
    json_object_put(msg);
}
