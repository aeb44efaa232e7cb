/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP control commands: qmp_capabilities, query-version, query-commands and
 * quit, as QEMU's (qapi/control.json, qapi/misc.json).
 *
 * qmp_capabilities only validates its "enable" list here: the negotiation
 * state belongs to the client, and qmp_dispatch() flips it when this
 * command succeeds (and refuses the command once negotiation is over).
 * blockd offers no capabilities, so any capability named in "enable" is
 * refused, as QEMU refuses "oob" on a monitor that does not offer it.
 *
 * quit only asks the daemon to shut down, through the hook it installed:
 * the reply must still reach the client, which happens when the command
 * returns and again (best effort) in monitor_cleanup().
 *
 * Main-loop code: every handler runs under the BQL.
 */
#include "util/osdep.h"

#include "qmp/control.h"
#include "qmp/qmp.h"
#include "util/main-loop.h"

/* Installed by the daemon at start-up.  BQL */
static void (*quit_handler)(void);

void qmp_set_quit_handler(void (*fn)(void))
{
    GLOBAL_STATE_CODE();
    quit_handler = fn;
}

struct json_object *qmp_version_info(void)
{
    struct json_object *qemu = json_object_new_object();
    struct json_object *info = json_object_new_object();

    json_object_object_add(qemu, "major",
                           json_object_new_int(QMP_COMPAT_QEMU_MAJOR));
    json_object_object_add(qemu, "minor",
                           json_object_new_int(QMP_COMPAT_QEMU_MINOR));
    json_object_object_add(qemu, "micro",
                           json_object_new_int(QMP_COMPAT_QEMU_MICRO));
    json_object_object_add(info, "qemu", qemu);
    json_object_object_add(info, "package",
                           json_object_new_string("blockd " BLOCKD_VERSION));
    return info;
}

static const OptDesc qmp_capabilities_args[] = {
    { "enable", OPT_ANY,
      .help = "list of capabilities to enable (blockd offers none)" },
    { NULL }
};

/* "enable" must be a list of strings; none of them is offered. */
static void qmp_qmp_capabilities(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    struct json_object *enable;
    size_t len;

    GLOBAL_STATE_CODE();
    if (!json_object_object_get_ex(args, "enable", &enable)) {
        return;
    }
    if (!json_object_is_type(enable, json_type_array)) {
        error_setg(errp, "'enable': expected list");
        return;
    }
    len = json_object_array_length(enable);
    for (size_t i = 0; i < len; i++) {
        struct json_object *cap = json_object_array_get_idx(enable, i);

        if (!json_object_is_type(cap, json_type_string)) {
            error_setg(errp, "'enable.%zu': expected string", i);
            return;
        }
    }
    if (len > 0) {
        error_setg(errp, "Capability '%s' not available",
                   json_object_get_string(json_object_array_get_idx(enable,
                                                                    0)));
    }
}

static void qmp_query_version(struct json_object *args,
                              struct json_object **ret, Error **errp)
{
    GLOBAL_STATE_CODE();
    *ret = qmp_version_info();
}

/* Every command query-commands may show, in registration order. */
static void qmp_query_commands(struct json_object *args,
                               struct json_object **ret, Error **errp)
{
    struct json_object *list = json_object_new_array();

    GLOBAL_STATE_CODE();
    for (const QmpCommand **cmd = qmp_list_commands(); *cmd; cmd++) {
        struct json_object *info;

        if ((*cmd)->flags & QMP_CMD_HIDDEN) {
            continue;
        }
        info = json_object_new_object();
        json_object_object_add(info, "name",
                               json_object_new_string((*cmd)->name));
        json_object_array_add(list, info);
    }
    *ret = list;
}

static void qmp_quit(struct json_object *args, struct json_object **ret,
                     Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!quit_handler) {
        error_setg(errp, "quit is not available: no shutdown handler is "
                   "installed");
        return;
    }
    quit_handler();
}

static const QmpCommand control_commands[] = {
    { "qmp_capabilities", qmp_capabilities_args, qmp_qmp_capabilities,
      QMP_CMD_BEFORE_NEGOTIATION | QMP_CMD_WHILE_WAITING,
      "end capabilities negotiation (must be the first command)" },
    { "query-version", NULL, qmp_query_version, QMP_CMD_WHILE_WAITING,
      "the QEMU version blockd is compatible with, and blockd's own" },
    { "query-commands", NULL, qmp_query_commands, QMP_CMD_WHILE_WAITING,
      "the names of the commands this server accepts" },
    { "quit", NULL, qmp_quit, QMP_CMD_WHILE_WAITING,
      "shut the daemon down (after this reply is sent)" },
    { NULL }
};

void qmp_control_init(void)
{
    GLOBAL_STATE_CODE();
    qmp_register_commands(control_commands);
}
