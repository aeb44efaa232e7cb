/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands of the NBD server and block exports, in QEMU's form
 * (qapi/block-export.json): nbd-server-start takes the legacy
 * SocketAddressLegacy ({"type": "unix", "data": {"path": P}} or
 * {"type": "inet", "data": {"host": H, "port": "N"}}), block-export-add
 * the flat BlockExportOptions, block-export-del an id and a mode.  The
 * command line's --nbd-server and --export arrive here through
 * qmp_run_command() (daemon/steps.c turns the flat addr.* form into the
 * legacy one).
 *
 * nbd-server-start checks the address's "data" member itself, against the
 * schema of its type, with the strictness the dispatcher used for the
 * rest (QMP: JSON types; command line: keyval strings converted).
 * Options blockd does not implement (TLS, fd and vsock addresses,
 * allocation-depth) are refused with a message that says so, not ignored.
 *
 * Every handler either succeeds or changes nothing.  Main-loop code
 * throughout (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/export.h"
#include "block/nbd.h"
#include "qmp/export.h"
#include "qmp/qmp.h"
#include "util/main-loop.h"

/* --- nbd-server-start ---------------------------------------------------- */

static const char *const socket_addr_types[] = {
    "unix", "inet", "fd", "vsock", NULL
};

static const OptDesc socket_addr_opts[] = {
    { "type", OPT_ENUM, .required = true, .enum_values = socket_addr_types,
      .help = "'unix' or 'inet' ('fd' and 'vsock' are not supported)" },
    { "data", OPT_ANY, .required = true,
      .help = "the address: {\"path\"} (unix) or {\"host\", \"port\"} "
              "(inet)" },
    { NULL }
};

static const OptDesc unix_addr_opts[] = {
    { "path", OPT_STRING, .required = true, .help = "socket file" },
    { NULL }
};

static const OptDesc inet_addr_opts[] = {
    { "host", OPT_STRING, .required = true, .help = "host name or address" },
    { "port", OPT_STRING, .required = true, .help = "port number or name" },
    { "numeric", OPT_BOOL, .help = "host and port are numeric (accepted)" },
    { "ipv4", OPT_BOOL, .help = "use IPv4" },
    { "ipv6", OPT_BOOL, .help = "use IPv6" },
    { NULL }
};

static const OptDesc nbd_server_start_args[] = {
    { "addr", OPT_OBJECT, .required = true, .nested = socket_addr_opts,
      .help = "address to listen on (SocketAddressLegacy)" },
    { "tls-creds", OPT_STRING, .help = "not supported" },
    { "tls-authz", OPT_STRING, .help = "not supported" },
    { "max-connections", OPT_INT,
      .def = G_STRINGIFY(NBD_DEFAULT_MAX_CONNECTIONS),
      .min = 0, .max = UINT32_MAX,
      .help = "most clients at once (0: unlimited; 1: no multi-conn)" },
    { "handshake-max-seconds", OPT_INT,
      .def = G_STRINGIFY(NBD_DEFAULT_HANDSHAKE_SECONDS),
      .min = 0, .max = UINT32_MAX,
      .help = "drop clients that have not finished the handshake by then "
              "(0: no limit)" },
    { NULL }
};

/* Check addr.data against @schema and return it, or NULL with @errp. */
static struct json_object *nbd_addr_data(struct json_object *addr,
                                         const OptDesc *schema, Error **errp)
    TSA_REQUIRES(bql)
{
    const OptDesc *const schemas[] = { schema, NULL };
    struct json_object *data = NULL;

    json_object_object_get_ex(addr, "data", &data);
    if (!json_object_is_type(data, json_type_object)) {
        error_setg(errp, "'addr.data': expected object");
        return NULL;
    }
    if (!opts_check(data, schemas, "addr.data", qmp_current_opts_flags(),
                    errp)) {
        return NULL;
    }
    return data;
}

static void qmp_nbd_server_start(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    struct json_object *addr = NULL, *data;
    NbdServerOptions opts = {
        .max_connections = opts_get_int(args, "max-connections",
                                        NBD_DEFAULT_MAX_CONNECTIONS),
        .handshake_max_seconds = opts_get_int(args, "handshake-max-seconds",
                                              NBD_DEFAULT_HANDSHAKE_SECONDS),
    };
    const char *type;

    GLOBAL_STATE_CODE();
    if (opts_get_str(args, "tls-creds") || opts_get_str(args, "tls-authz")) {
        error_setg(errp, "TLS is not supported by blockd: 'tls-creds' and "
                   "'tls-authz' cannot be used");
        return;
    }
    json_object_object_get_ex(args, "addr", &addr);
    type = opts_get_str(addr, "type");
    if (!strcmp(type, "unix")) {
        data = nbd_addr_data(addr, unix_addr_opts, errp);
        if (!data) {
            return;
        }
        opts.unix_path = (char *)opts_get_str(data, "path");
    } else if (!strcmp(type, "inet")) {
        bool v4, v6;

        data = nbd_addr_data(addr, inet_addr_opts, errp);
        if (!data) {
            return;
        }
        opts.host = (char *)opts_get_str(data, "host");
        opts.port = (char *)opts_get_str(data, "port");
        /* QEMU's reading: asking for one family alone restricts to it. */
        v4 = opts_get_bool(data, "ipv4", false);
        v6 = opts_get_bool(data, "ipv6", false);
        opts.ipv4_only = v4 && !v6;
        opts.ipv6_only = v6 && !v4;
    } else {
        error_setg(errp, "Parameter 'addr.type': socket address type '%s' "
                   "is not supported by blockd (use 'unix' or 'inet')", type);
        return;
    }
    nbd_server_start(&opts, errp);
}

/* --- nbd-server-stop ----------------------------------------------------- */

static void qmp_nbd_server_stop(struct json_object *args,
                                struct json_object **ret, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!nbd_server_is_running()) {
        error_setg(errp, "NBD server not running");
        return;
    }
    nbd_server_stop();
}

/* --- block-export-add / block-export-del / query-block-exports ----------- */

static void qmp_block_export_add(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    GLOBAL_STATE_CODE();
    blk_exp_add(args, errp);
}

static const char *const export_remove_modes[] = { "safe", "hard", NULL };

static const OptDesc block_export_del_args[] = {
    { "id", OPT_STRING, .required = true, .help = "the export to remove" },
    { "mode", OPT_ENUM, .enum_values = export_remove_modes, .def = "safe",
      .help = "'safe': refuse while clients are connected; 'hard': "
              "disconnect them" },
    { NULL }
};

static void qmp_block_export_del(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    const char *id = opts_get_str(args, "id");
    bool hard = opts_get_enum(args, "mode", export_remove_modes, 0) == 1;
    BlockExport *exp;

    GLOBAL_STATE_CODE();
    exp = blk_exp_find(id);
    if (!exp) {
        error_setg(errp, "Export '%s' is not found", id);
        return;
    }
    if (exp->shutting_down) {
        error_setg(errp, "Export '%s' is already shutting down", id);
        return;
    }
    if (!hard && exp->clients) {
        error_setg(errp, "export '%s' still in use", id);
        return;
    }
    blk_exp_request_shutdown(exp);
}

static void qmp_query_block_exports(struct json_object *args,
                                    struct json_object **ret, Error **errp)
{
    GLOBAL_STATE_CODE();
    *ret = blk_exp_query_all();
}

/* --- Registration -------------------------------------------------------- */

/* block-export-add's schema is filled in by qmp_export_init(). */
static QmpCommand export_commands[] = {
    { "block-export-add", NULL, qmp_block_export_add, 0,
      "export a node (type 'nbd')" },
    { "block-export-del", block_export_del_args, qmp_block_export_del,
      QMP_CMD_WHILE_WAITING,
      "remove an export" },
    { "query-block-exports", NULL, qmp_query_block_exports,
      QMP_CMD_WHILE_WAITING,
      "list the exports" },
    { "nbd-server-start", nbd_server_start_args, qmp_nbd_server_start, 0,
      "start the NBD server" },
    { "nbd-server-stop", NULL, qmp_nbd_server_stop, 0,
      "stop the NBD server and remove its exports" },
    { NULL }
};

void qmp_export_init(void)
{
    GLOBAL_STATE_CODE();
    nbd_export_init();
    assert(!strcmp(export_commands[0].name, "block-export-add"));
    export_commands[0].args = blk_exp_add_schema();
    qmp_register_commands(export_commands);
}

void qmp_export_cleanup(void)
{
    GLOBAL_STATE_CODE();
    nbd_server_stop();
    blk_exp_close_all();
}
