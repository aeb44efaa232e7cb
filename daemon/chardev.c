/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Character devices and QMP monitors (--chardev, --monitor, and the config
 * file's "chardev" and "monitor" entries).
 *
 * blockd's chardevs exist only to carry monitors, so it supports the two
 * QSD uses for that: a listening UNIX socket
 * ("socket,id=ID,path=P,server=on,wait=off") and stdio ("stdio,id=ID").
 * Everything else QEMU's chardevs can do (TCP, client sockets, pty, file,
 * telnet, waiting for a client at start-up) is refused with a message that
 * says what is supported, rather than half-accepted.
 *
 * A chardev is a definition: nothing listens until a monitor uses it, and
 * the monitor's socket is created by monitor_add_unix() then.  A chardev
 * carries at most one monitor; a config file's monitor may also name its
 * socket path directly ({"path": P}).
 *
 * Arguments are checked (and keyval strings converted) while parsing, by
 * chardev_check_args() and monitor_check_args(); references between them
 * (a monitor's chardev) are resolved when the steps run, in order, as in
 * QSD.  Main-loop code.
 */
#include "util/osdep.h"

#include "daemon/daemon.h"
#include "qmp/qmp.h"
#include "util/id.h"
#include "util/main-loop.h"
#include "util/opts.h"

typedef struct Chardev {
    char *id;
    char *path;                 /* socket path; NULL for stdio */
    bool in_use;                /* carries a monitor */
} Chardev;

/* id -> Chardev; main loop */
static GHashTable *chardevs;

static const OptDesc chardev_socket_opts[] = {
    { "backend", OPT_STRING, .required = true },
    { "id", OPT_STRING, .required = true },
    { "path", OPT_STRING, .required = true },
    { "server", OPT_BOOL },
    { "wait", OPT_BOOL },
    { NULL }
};

static const OptDesc chardev_stdio_opts[] = {
    { "backend", OPT_STRING, .required = true },
    { "id", OPT_STRING, .required = true },
    { NULL }
};

static const char *const monitor_modes[] = { "control", "readline", NULL };

static const OptDesc monitor_opts[] = {
    { "chardev", OPT_STRING },
    { "id", OPT_STRING },
    { "mode", OPT_ENUM, .enum_values = monitor_modes },
    { "pretty", OPT_BOOL },
    { NULL }
};

/* The config file's monitors may give a socket path instead. */
static const OptDesc monitor_config_opts[] = {
    { "path", OPT_STRING },
    { NULL }
};

static bool chardev_check_socket(struct json_object *args, unsigned flags,
                                 Error **errp)
{
    static const OptDesc *const schemas[] = { chardev_socket_opts, NULL };
    static const char *const not_unix[] = { "host", "port", "fd", NULL };

    for (size_t i = 0; not_unix[i]; i++) {
        if (json_object_object_get_ex(args, not_unix[i], NULL)) {
            error_setg(errp, "'%s': only UNIX domain sockets are supported "
                       "(give 'path')", not_unix[i]);
            return false;
        }
    }
    if (!opts_check(args, schemas, "", flags, errp)) {
        return false;
    }
    if (!opts_get_bool(args, "server", false)) {
        error_setg(errp, "'server': only listening sockets are supported "
                   "(server=on)");
        return false;
    }
    if (opts_get_bool(args, "wait", false)) {
        error_setg(errp, "'wait': waiting for a client at start-up is not "
                   "supported (wait=off)");
        return false;
    }
    return true;
}

bool chardev_check_args(struct json_object *args, unsigned opts_flags,
                        Error **errp)
{
    static const OptDesc *const stdio_schemas[] = { chardev_stdio_opts, NULL };
    struct json_object *val;
    const char *backend, *id;

    if (!json_object_object_get_ex(args, "backend", &val)) {
        error_setg(errp, "'backend': missing required parameter");
        return false;
    }
    if (!json_object_is_type(val, json_type_string)) {
        error_setg(errp, "'backend': expected string");
        return false;
    }
    backend = json_object_get_string(val);
    if (!strcmp(backend, "socket")) {
        if (!chardev_check_socket(args, opts_flags, errp)) {
            return false;
        }
    } else if (!strcmp(backend, "stdio")) {
        if (!opts_check(args, stdio_schemas, "", opts_flags, errp)) {
            return false;
        }
    } else {
        error_setg(errp, "'backend': chardev backend '%s' is not supported "
                   "(only 'socket' and 'stdio')", backend);
        return false;
    }
    id = opts_get_str(args, "id");
    if (!id_wellformed(id)) {
        error_setg(errp, "'id': '%s' is not a valid identifier (a letter, "
                   "then letters, digits, '-', '.' or '_')", id);
        return false;
    }
    return true;
}

bool chardev_args_is_stdio(struct json_object *args)
{
    return !strcmp(opts_get_str(args, "backend"), "stdio");
}

bool monitor_check_args(struct json_object *args, unsigned opts_flags,
                        bool from_config, Error **errp)
{
    static const OptDesc *const cli_schemas[] = { monitor_opts, NULL };
    static const OptDesc *const config_schemas[] = {
        monitor_opts, monitor_config_opts, NULL
    };
    bool has_chardev, has_path;

    if (!opts_check(args, from_config ? config_schemas : cli_schemas, "",
                    opts_flags, errp)) {
        return false;
    }
    if (opts_get_enum(args, "mode", monitor_modes, 0) != 0) {
        error_setg(errp, "'mode': only mode=control (QMP) is supported");
        return false;
    }
    if (opts_get_bool(args, "pretty", false)) {
        error_setg(errp, "'pretty': pretty-printed output is not supported");
        return false;
    }
    has_chardev = opts_get_str(args, "chardev") != NULL;
    has_path = from_config && opts_get_str(args, "path") != NULL;
    if (has_chardev && has_path) {
        error_setg(errp, "'path': cannot be used together with 'chardev'");
        return false;
    }
    if (!has_chardev && !has_path) {
        error_setg(errp, from_config
                   ? "'chardev' or 'path': missing required parameter"
                   : "'chardev': missing required parameter");
        return false;
    }
    return true;
}

static void chardev_free(Chardev *chr)
{
    g_free(chr->id);
    g_free(chr->path);
    g_free(chr);
}

bool chardev_add(struct json_object *args, Error **errp)
{
    const char *id = opts_get_str(args, "id");
    Chardev *chr;

    GLOBAL_STATE_CODE();
    if (!chardevs) {
        chardevs = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                         (GDestroyNotify)chardev_free);
    }
    if (g_hash_table_contains(chardevs, id)) {
        error_setg(errp, "'id': a chardev named '%s' already exists", id);
        return false;
    }
    if (chardev_args_is_stdio(args)) {
        GHashTableIter iter;
        gpointer value;

        g_hash_table_iter_init(&iter, chardevs);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            Chardev *other = value;

            if (!other->path) {
                error_setg(errp, "stdio is already used by chardev '%s'",
                           other->id);
                return false;
            }
        }
    }
    chr = g_new0(Chardev, 1);
    chr->id = g_strdup(id);
    chr->path = g_strdup(opts_get_str(args, "path"));
    g_hash_table_insert(chardevs, chr->id, chr);
    return true;
}

bool monitor_add(struct json_object *args, Error **errp)
{
    const char *id = opts_get_str(args, "chardev");
    const char *path = opts_get_str(args, "path");
    Chardev *chr;

    GLOBAL_STATE_CODE();
    if (path) {
        return monitor_add_unix(path, 0, errp);
    }
    chr = chardevs ? g_hash_table_lookup(chardevs, id) : NULL;
    if (!chr) {
        error_setg(errp, "'chardev': chardev '%s' not found", id);
        return false;
    }
    if (chr->in_use) {
        error_setg(errp, "'chardev': chardev '%s' is already used by a "
                   "monitor", id);
        return false;
    }
    if (chr->path ? !monitor_add_unix(chr->path, 0, errp)
                  : !monitor_add_stdio(errp)) {
        return false;
    }
    chr->in_use = true;
    return true;
}

void chardev_cleanup(void)
{
    GLOBAL_STATE_CODE();
    g_clear_pointer(&chardevs, g_hash_table_destroy);
}
