/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP blockdev-mirror: looks the nodes up, turns the arguments into a
 * MirrorArgs and starts the job (block/jobs/mirror.c), which checks the rest
 * (granularity, buf-size, replaces, sizes) with QEMU's messages.  Either
 * the job runs or nothing changed.
 *
 * Main-loop code (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/mirror.h"
#include "qmp/mirror.h"
#include "qmp/qmp.h"

static const OptDesc blockdev_mirror_args[] = {
    { "job-id", OPT_STRING, .help = "the job's id (default: device)" },
    { "device", OPT_STRING, .required = true,
      .help = "node name of the source" },
    { "target", OPT_STRING, .required = true,
      .help = "node name of the target" },
    { "replaces", OPT_STRING,
      .help = "node the target replaces on completion (default: device)" },
    { "sync", OPT_ENUM, .required = true,
      .enum_values = mirror_sync_mode_names,
      .help = "full, top (as full: no backing chains) or none" },
    { "speed", OPT_INT, .def = "0", .help = "bytes per second, 0: unlimited" },
    { "granularity", OPT_INT, .def = "0",
      .help = "dirty bitmap granularity, a power of 2 in [512, 64M]" },
    { "buf-size", OPT_INT, .def = "0",
      .help = "bytes of copies in flight (default 16M)" },
    { "on-source-error", OPT_ENUM, .enum_values = blockdev_on_error_names,
      .def = "report", .help = "report, ignore, enospc, stop or auto" },
    { "on-target-error", OPT_ENUM, .enum_values = blockdev_on_error_names,
      .def = "report", .help = "report, ignore, enospc, stop or auto" },
    { "filter-node-name", OPT_STRING,
      .help = "node name of the mirror_top filter" },
    { "copy-mode", OPT_ENUM, .enum_values = mirror_copy_mode_names,
      .def = "background", .help = "background or write-blocking" },
    { "auto-finalize", OPT_BOOL, .def = "true",
      .help = "finalize without job-finalize" },
    { "auto-dismiss", OPT_BOOL, .def = "true",
      .help = "dismiss without job-dismiss" },
    { NULL }
};

static void qmp_blockdev_mirror(struct json_object *args,
                                struct json_object **ret, Error **errp)
{
    MirrorArgs a = {
        .job_id = opts_get_str(args, "job-id"),
        .replaces = opts_get_str(args, "replaces"),
        .sync = opts_get_enum(args, "sync", mirror_sync_mode_names, 0),
        .speed = opts_get_int(args, "speed", 0),
        .buf_size = opts_get_int(args, "buf-size", 0),
        .on_source_error = opts_get_enum(args, "on-source-error",
                                         blockdev_on_error_names, 0),
        .on_target_error = opts_get_enum(args, "on-target-error",
                                         blockdev_on_error_names, 0),
        .filter_node_name = opts_get_str(args, "filter-node-name"),
        .copy_mode = opts_get_enum(args, "copy-mode", mirror_copy_mode_names,
                                   0),
        .auto_finalize = opts_get_bool(args, "auto-finalize", true),
        .auto_dismiss = opts_get_bool(args, "auto-dismiss", true),
    };
    int64_t granularity = opts_get_int(args, "granularity", 0);
    const char *device = opts_get_str(args, "device");
    const char *target = opts_get_str(args, "target");

    GLOBAL_STATE_CODE();
    a.source = bdrv_lookup_bs(device, device, errp);
    if (!a.source) {
        return;
    }
    if (!mirror_check_source(a.source, errp)) {
        return;
    }
    a.target = bdrv_lookup_bs(target, target, errp);
    if (!a.target) {
        return;
    }
    if (granularity < 0 || granularity > UINT32_MAX) {
        error_setg(errp, "Parameter 'granularity' expects a value in range "
                   "[512B, 64MB]");
        return;
    }
    a.granularity = granularity;
    mirror_start(&a, errp);
}

static const QmpCommand mirror_commands[] = {
    { "blockdev-mirror", blockdev_mirror_args, qmp_blockdev_mirror, 0,
      "start a mirror job from one node to another" },
    { NULL }
};

void qmp_mirror_init(void)
{
    GLOBAL_STATE_CODE();
    qmp_register_commands(mirror_commands);
}
