/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for the daemon's --config parser (daemon/config.c and
 * the step preparation of daemon/steps.c and daemon/chardev.c).  Each
 * input is the content of a config file: it is put in a memfd and loaded
 * with config_load() through /proc/self/fd/N, exactly as the daemon reads
 * a file, and every step it produces for a QMP command (object,
 * blockdev, nbd-server, export) has its arguments checked against that
 * command's real schema with OPTS_STRICT_TYPES, as steps_apply() would
 * before running it; nothing is ever applied.  Invariants: a refused file
 * has a message that starts with "--config PATH: "; an accepted one has
 * steps in the documented order (object, blockdev, nbd-server, export,
 * chardev, monitor) and an absolute pidfile path if any.
 */
#include "util/osdep.h"

#include <sys/mman.h>

#include "block/block-global-state.h"
#include "daemon/daemon.h"
#include "qmp/block.h"
#include "qmp/control.h"
#include "qmp/export.h"
#include "qmp/objects.h"
#include "qmp/qmp.h"
#include "util/main-loop.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_fd = -1;
static char *fuzz_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    main_loop_init();
    bdrv_init();
    qmp_control_init();
    qmp_objects_init();
    qmp_block_init();
    qmp_export_init();
    fuzz_fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    assert(fuzz_fd >= 0);
    fuzz_path = g_strdup_printf("/proc/self/fd/%d", fuzz_fd);
    return 0;
}

/* The QMP command a step runs, or NULL for chardev and monitor steps. */
static const char *step_command(DaemonStepKind kind)
{
    switch (kind) {
    case DAEMON_STEP_OBJECT:
        return "object-add";
    case DAEMON_STEP_BLOCKDEV:
        return "blockdev-add";
    case DAEMON_STEP_NBD_SERVER:
        return "nbd-server-start";
    case DAEMON_STEP_EXPORT:
        return "block-export-add";
    default:
        return NULL;
    }
}

static void check_step(const DaemonStep *step)
{
    const char *name = step_command(step->kind);
    const QmpCommand *cmd = name ? qmp_find_command(name) : NULL;
    const OptDesc *schemas[2] = { NULL, NULL };
    struct json_object *copy = NULL;
    Error *err = NULL;

    if (!json_object_is_type(step->args, json_type_object) || !step->where ||
        step->opts_flags != OPTS_STRICT_TYPES) {
        abort();
    }
    if (!cmd || !cmd->args) {
        return;
    }
    schemas[0] = cmd->args;
    if (json_object_deep_copy(step->args, &copy, NULL) < 0) {
        abort();
    }
    if (!opts_check(copy, schemas, "", OPTS_STRICT_TYPES, &err)) {
        if (!err || !*error_get_pretty(err)) {
            abort();
        }
        error_free(err);
    }
    json_object_put(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *prefix = g_strdup_printf("--config %s: ", fuzz_path);
    DaemonConfig cfg;
    Error *err = NULL;

    if (ftruncate(fuzz_fd, 0) < 0 ||
        pwrite(fuzz_fd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    daemon_config_init(&cfg);
    if (!config_load(fuzz_path, &cfg, &err)) {
        if (!err || !g_str_has_prefix(error_get_pretty(err), prefix)) {
            abort();
        }
        error_free(err);
    } else {
        DaemonStepKind last = DAEMON_STEP_OBJECT;

        for (guint i = 0; i < cfg.steps->len; i++) {
            const DaemonStep *step = g_ptr_array_index(cfg.steps, i);

            if (step->kind < last) {
                abort();        /* steps out of the documented order */
            }
            last = step->kind;
            check_step(step);
        }
        if (cfg.pidfile && !g_path_is_absolute(cfg.pidfile)) {
            abort();
        }
    }
    daemon_config_free(&cfg);
    return 0;
}
