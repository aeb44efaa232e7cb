/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Signals, quit, and the orderly shutdown of everything start-up created.
 *
 * SIGTERM, SIGINT and SIGHUP are blocked in main() before any thread
 * exists (threads started later block them too: bd_thread_create()), and
 * arrive through a signalfd that the main context watches like any other
 * fd.  So a signal never interrupts anything: it becomes a shutdown
 * request, handled between two main-loop iterations, exactly like QMP's
 * quit (whose reply is queued before the request is looked at).
 *
 * daemon_teardown() runs the shutdown proper, after a request or after a
 * failed start-up.  The order matters:
 *   1. stop accepting: no new monitor client or NBD connection, and no
 *      further command from the connected monitor clients;
 *   2. cancel jobs, so that nothing new is written;
 *   3. drain every node and flush it: what clients were told is written
 *      is on disk before anything goes away;
 *   4. close exports and drop the monitor's nodes (their children go with
 *      them), then the objects (iothreads) the nodes ran in;
 *   5. tell the clients (SHUTDOWN), then close the monitors, flushing
 *      what they still have to send;
 *   6. stop the thread pool and the main loop.
 * The caller removes the pid file last.
 *
 * Main thread (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include <signal.h>
#include <sys/signalfd.h>

#include "block/block-global-state.h"
#include "daemon/daemon.h"
#include "qmp/block.h"
#include "qmp/export.h"
#include "qmp/job.h"
#include "qmp/objects.h"
#include "qmp/qmp.h"
#include "util/aio.h"
#include "util/log.h"
#include "util/main-loop.h"
#include "util/thread-pool.h"

static int shutdown_signal_fd = -1;
/* QMP ShutdownCause of the first request; NULL while running.  Main loop */
static const char *shutdown_reason;

static void shutdown_signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

void shutdown_block_signals(void)
{
    sigset_t set;

    shutdown_signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* A client that goes away must not kill us: writes get EPIPE. */
    signal(SIGPIPE, SIG_IGN);
}

static void shutdown_signal_read(void *opaque)
{
    struct signalfd_siginfo si;
    ssize_t n;

    GLOBAL_STATE_CODE();
    while ((n = read(shutdown_signal_fd, &si, sizeof(si))) == sizeof(si)) {
        info_report("terminating on signal %u (%s) from pid %u",
                    si.ssi_signo, strsignal((int)si.ssi_signo), si.ssi_pid);
        shutdown_request("host-signal");
    }
}

bool shutdown_signals_init(Error **errp)
{
    sigset_t set;

    GLOBAL_STATE_CODE();
    shutdown_signal_set(&set);
    shutdown_signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (shutdown_signal_fd < 0) {
        error_setg_errno(errp, errno, "signalfd");
        return false;
    }
    aio_set_fd_handler(main_context(), shutdown_signal_fd,
                       shutdown_signal_read, NULL, NULL);
    return true;
}

/* Pending signals stay blocked and are dropped with the process. */
static void shutdown_signals_cleanup(void)
{
    if (shutdown_signal_fd < 0) {
        return;
    }
    aio_set_fd_handler(main_context(), shutdown_signal_fd, NULL, NULL, NULL);
    close(shutdown_signal_fd);
    shutdown_signal_fd = -1;
}

void shutdown_request(const char *reason)
{
    GLOBAL_STATE_CODE();
    if (!shutdown_reason) {
        shutdown_reason = reason;
    }
    aio_notify(main_context());
}

const char *shutdown_requested(void)
{
    return shutdown_reason;
}

void shutdown_quit_handler(void)
{
    shutdown_request("host-qmp-quit");
}

/*
 * Stop the NBD server and remove every export, waiting until their
 * connections are gone: before the nodes are drained and closed.
 */
static void shutdown_stop_nbd_server(void) TSA_REQUIRES(bql)
{
    qmp_export_cleanup();
}

/*
 * Cancel every job and wait for each to finish: before the exports and
 * nodes they use go away.
 */
static void shutdown_cancel_jobs(void) TSA_REQUIRES(bql)
{
    job_cancel_sync_all();
}

/* Drop the monitor's nodes; anything left is somebody's leak. */
static void shutdown_close_nodes(void) TSA_REQUIRES(bql)
{
    BlockDriverState *bs;

    qmp_block_cleanup();
    bs = bdrv_next_node(NULL);
    if (bs) {
        warn_report("shutdown: node '%s' is still in use",
                    bdrv_get_node_name(bs));
    }
}

static void shutdown_emit_event(const char *reason) TSA_REQUIRES(bql)
{
    struct json_object *data = json_object_new_object();

    json_object_object_add(data, "guest", json_object_new_boolean(false));
    json_object_object_add(data, "reason", json_object_new_string(reason));
    qmp_event_emit("SHUTDOWN", data);
}

void daemon_teardown(const char *reason)
{
    int ret;

    GLOBAL_STATE_CODE();
    shutdown_signals_cleanup();

    monitor_stop_listening();
    /*
     * No command runs while jobs are cancelled and nodes drained and
     * closed below: those waits are the outermost loop, where a command
     * would otherwise be read and run against a graph being torn down.
     */
    monitor_stop_input();
    shutdown_cancel_jobs();
    shutdown_stop_nbd_server();

    bdrv_drain_all_begin();
    ret = bdrv_flush_all();
    if (ret < 0) {
        error_report("shutdown: flushing the block nodes failed: %s",
                     strerror(-ret));
    }
    shutdown_close_nodes();
    bdrv_drain_all_end();
    objects_cleanup();

    if (reason) {
        shutdown_emit_event(reason);
    }
    monitor_cleanup();
    chardev_cleanup();
    thread_pool_shutdown();
    main_loop_cleanup();
}
