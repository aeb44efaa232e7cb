/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The daemon's own pieces, shared between the files of daemon/: the
 * command line (cli.c), the JSON config file (config.c), the start-up
 * steps they both produce and their application through QMP (steps.c),
 * character devices and monitors (chardev.c), the pid file (pidfile.c),
 * --daemonize (daemonize.c), and signals and shutdown (shutdown.c).
 *
 * Start-up runs in two phases.  Parsing (cli_parse, config_load) reads the
 * command line and every config file into a DaemonConfig: a list of steps
 * in the order they must run, each with its arguments already parsed and
 * the text that names it in messages.  Nothing is created while parsing,
 * so a syntax error anywhere is refused before anything starts.  Applying
 * (steps_apply) then runs the steps in order in the main loop, each
 * exactly like its QMP counterpart; the first failure stops start-up and
 * daemon_teardown() removes what the earlier steps created.
 *
 * Everything after parsing is main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef DAEMON_DAEMON_H
#define DAEMON_DAEMON_H

#include <json-c/json.h>

#include "util/error.h"

/* The name in front of every message on stderr. */
#define DAEMON_PROGNAME "blockd"

typedef enum DaemonStepKind {
    DAEMON_STEP_OBJECT,         /* object-add */
    DAEMON_STEP_BLOCKDEV,       /* blockdev-add */
    DAEMON_STEP_NBD_SERVER,     /* nbd-server-start (legacy addr form) */
    DAEMON_STEP_EXPORT,         /* block-export-add */
    DAEMON_STEP_CHARDEV,        /* a character device (chardev.c) */
    DAEMON_STEP_MONITOR,        /* a QMP monitor (chardev.c) */
} DaemonStepKind;

typedef struct DaemonStep {
    DaemonStepKind kind;
    struct json_object *args;   /* owned; QMP arguments of the step */
    unsigned opts_flags;        /* 0 (keyval) or OPTS_STRICT_TYPES (JSON) */
    char *where;                /* "--blockdev driver=..." or
                                   "--config F: blockdev[1]" */
} DaemonStep;

typedef struct DaemonConfig {
    GPtrArray *steps;           /* DaemonStep *, in order */
    char *pidfile;              /* absolute path, or NULL */
    char *pidfile_where;        /* names the option that set it */
    bool daemonize;
} DaemonConfig;

/* --- cli.c -------------------------------------------------------------- */

void daemon_config_init(DaemonConfig *cfg);
void daemon_config_free(DaemonConfig *cfg);

/*
 * Parse the command line into @cfg (reading any --config file).  -h and -V
 * print and exit(0) here.  On a bad option, returns false with @errp set
 * to a message that names the option ("--blockdev x=,: ...").
 */
bool cli_parse(int argc, char **argv, DaemonConfig *cfg, Error **errp);

/* --- config.c ----------------------------------------------------------- */

/*
 * Read the JSON config file @path and append its steps to @cfg in the
 * order object, blockdev, nbd-server, export, chardev, monitor (its
 * pidfile replaces any earlier one).  Messages start with "--config PATH: ".
 */
bool config_load(const char *path, DaemonConfig *cfg, Error **errp);

/* --- steps.c ------------------------------------------------------------ */

/*
 * Parse @text as exactly one JSON object (strict JSON, nothing but
 * whitespace after it).  Syntax errors give the line and column.
 */
struct json_object *daemon_json_parse(const char *text, Error **errp);

/*
 * Make a step of @kind from a command-line argument: keyval with the
 * option's implied key, or a JSON object if @arg starts with '{' (for the
 * options whose QSD counterpart accepts JSON).  @where names the option.
 */
DaemonStep *step_from_cli(DaemonStepKind kind, const char *arg,
                          const char *where, Error **errp);
/*
 * Make a step of @kind from a JSON value (a config file entry).  Takes a
 * new reference to @args.
 */
DaemonStep *step_from_json(DaemonStepKind kind, struct json_object *args,
                           const char *where, Error **errp);
void step_free(DaemonStep *step);

/*
 * Convert nbd-server options with a flat "addr" ({"type": "unix", "path":
 * P}) to the legacy form that QMP's nbd-server-start takes ({"type":
 * "unix", "data": {"path": P}}).  An addr already in legacy form (it has
 * "data") is left as it is.  Changes @args in place.
 */
void nbd_server_args_to_legacy(struct json_object *args);

/*
 * Run every step of @cfg in order.  On the first failure, returns false
 * with @errp set to "WHERE: REASON"; what earlier steps created stays for
 * daemon_teardown() to remove.
 */
bool steps_apply(DaemonConfig *cfg, Error **errp);

/* --- chardev.c ---------------------------------------------------------- */

/*
 * Check the arguments of a chardev or monitor step (shape, types, what is
 * supported) without creating anything; normalises @args in place.
 * @from_config allows the config file's monitor form {"path": P}.
 */
bool chardev_check_args(struct json_object *args, unsigned opts_flags,
                        Error **errp);
bool monitor_check_args(struct json_object *args, unsigned opts_flags,
                        bool from_config, Error **errp);
/* True if @args (checked) define a stdio chardev. */
bool chardev_args_is_stdio(struct json_object *args);

/* Define a chardev (checked arguments). */
bool chardev_add(struct json_object *args, Error **errp);
/* Start a QMP monitor on a chardev or a socket path (checked arguments). */
bool monitor_add(struct json_object *args, Error **errp);
/* Forget every chardev (after monitor_cleanup()). */
void chardev_cleanup(void);

/* --- pidfile.c ---------------------------------------------------------- */

/*
 * Open and lock the pid file @path (absolute) for the life of the
 * process; refused if another process holds the lock.  Its contents are
 * emptied until pidfile_write().
 */
bool pidfile_acquire(const char *path, Error **errp);
/* Write our pid into the locked pid file. */
bool pidfile_write(Error **errp);
/* Remove and unlock the pid file, if we hold one. */
void pidfile_remove(void);

/* --- daemonize.c -------------------------------------------------------- */

/*
 * Fork into the background.  Returns in the daemon process only; the
 * parent waits until daemonize_ready() or a start-up failure and exits
 * with the outcome.
 */
void daemonize_start(void);
/* Start-up finished: release the parent, detach stdio. */
void daemonize_ready(void);
/*
 * Report a start-up failure: to the waiting parent if daemonizing, else on
 * stderr, as one line "blockd: MESSAGE".
 */
void daemon_report_startup_error(const char *msg);

/* --- shutdown.c --------------------------------------------------------- */

/* Block the shutdown signals; first thing in main(), before any thread. */
void shutdown_block_signals(void);
/* Deliver those signals through a signalfd on the main context. */
bool shutdown_signals_init(Error **errp);
/* Ask for shutdown with a QMP ShutdownCause ("host-signal", ...). */
void shutdown_request(const char *reason);
/* The reason given to the first shutdown_request(), or NULL. */
const char *shutdown_requested(void);
/* QMP quit handler (qmp_set_quit_handler). */
void shutdown_quit_handler(void);

/*
 * Stop everything start-up created, in order: listeners, NBD server,
 * jobs, drain and flush, exports and nodes, objects, the SHUTDOWN event
 * (if @reason is not NULL), monitors, chardevs, the thread pool, the
 * main loop.  Used both at exit and after a failed start-up.
 */
void daemon_teardown(const char *reason);

#endif /* DAEMON_DAEMON_H */
