/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blockd's main(): start-up, the main loop, shutdown.
 *
 * Start-up order, and why:
 *   1. block the shutdown signals, before any thread can exist, so that
 *      only the main loop's signalfd ever sees them;
 *   2. parse the command line and config files completely: a bad option
 *      is refused before anything is created or forked;
 *   3. --daemonize forks here, while the process has one thread;
 *   4. lock the pid file, so that a second daemon on it stops before it
 *      touches any image or socket;
 *   5. logging, the main loop and BQL, the block layer, the QMP command
 *      tables, the signalfd;
 *   6. run the options in order, each through its QMP command;
 *   7. write the pid file (every listener is up now) and release the
 *      --daemonize parent.
 * A failure in 4-7 tears down what was created, removes the pid file and
 * exits 1 with one line on stderr (or through the --daemonize parent).
 *
 * Then the main loop runs until a signal or QMP quit asks for shutdown,
 * and daemon_teardown() undoes it all in order; exit status 0.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "daemon/daemon.h"
#include "qmp/backup.h"
#include "qmp/block.h"
#include "qmp/control.h"
#include "qmp/export.h"
#include "qmp/job.h"
#include "qmp/mirror.h"
#include "qmp/objects.h"
#include "qmp/qmp.h"
#include "util/aio.h"
#include "util/log.h"
#include "util/main-loop.h"

/* Report @err as the start-up failure and free it. */
static void main_report_error(Error *err)
{
    daemon_report_startup_error(error_get_pretty(err));
    error_free(err);
}

static void main_init_subsystems(void)
{
    log_set_program_name(DAEMON_PROGNAME);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    qmp_control_init();
    qmp_objects_init();
    qmp_block_init();
    qmp_export_init();
    qmp_job_init();
    qmp_mirror_init();
    qmp_backup_init();
    qmp_set_quit_handler(shutdown_quit_handler);
}

/* Steps 4-7 of start-up; false with @errp set on failure. */
static bool main_start(DaemonConfig *cfg, Error **errp)
{
    GLOBAL_STATE_CODE();

    if (!shutdown_signals_init(errp) || !steps_apply(cfg, errp)) {
        return false;
    }
    if (!pidfile_write(errp)) {
        error_prepend(errp, "%s: ", cfg->pidfile_where);
        return false;
    }
    return true;
}

static void main_loop_run(void)
{
    GLOBAL_STATE_CODE();
    while (!shutdown_requested()) {
        aio_poll(main_context(), true);
    }
}

int main(int argc, char **argv)
{
    DaemonConfig cfg;
    Error *err = NULL;

    shutdown_block_signals();

    daemon_config_init(&cfg);
    if (!cli_parse(argc, argv, &cfg, &err)) {
        main_report_error(err);
        daemon_config_free(&cfg);
        return EXIT_FAILURE;
    }

    if (cfg.daemonize) {
        daemonize_start();
    }
    if (cfg.pidfile && !pidfile_acquire(cfg.pidfile, &err)) {
        error_prepend(&err, "%s: ", cfg.pidfile_where);
        main_report_error(err);
        daemon_config_free(&cfg);
        return EXIT_FAILURE;
    }

    main_init_subsystems();
    if (!main_start(&cfg, &err)) {
        daemon_teardown(NULL);
        pidfile_remove();
        main_report_error(err);
        daemon_config_free(&cfg);
        return EXIT_FAILURE;
    }
    daemon_config_free(&cfg);
    daemonize_ready();

    main_loop_run();

    daemon_teardown(shutdown_requested());
    pidfile_remove();
    return EXIT_SUCCESS;
}
