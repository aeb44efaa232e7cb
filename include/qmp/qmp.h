/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP: command dispatch, events and monitors, with QEMU's wire protocol.
 *
 * Commands are declared in tables, one per command group (qmp/cmd-*.c):
 * name, argument schema (util/opts.h), handler, flags, help.  The same
 * table drives argument checking, query-commands, the documentation check
 * (docs/qmp.md is compared against it by a test) and the command line,
 * whose options (--blockdev, --object, ...) run the same handlers with
 * keyval-typed arguments.
 *
 * A handler runs in the main loop under the BQL.  It either fully succeeds
 * (and may set *ret to its return value: {} if it does not) or fails with
 * @errp set and leaves no trace of what it started.  Handlers never exit
 * the process.
 *
 * Everything here is main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef QMP_QMP_H
#define QMP_QMP_H

#include <json-c/json.h>

#include "util/error.h"
#include "util/main-loop.h"
#include "util/opts.h"

typedef void QmpHandler(struct json_object *args, struct json_object **ret,
                        Error **errp);

typedef enum QmpCommandFlags {
    /* May run before qmp_capabilities (only qmp_capabilities itself). */
    QMP_CMD_BEFORE_NEGOTIATION = 1 << 0,
    /* Not listed by query-commands (internal). */
    QMP_CMD_HIDDEN = 1 << 1,
    /*
     * Answered while another command waits (a drain, a job): it neither
     * waits nor changes the graph itself (queries; quit, which only asks;
     * block-export-del, whose deletion is deferred work).  Other commands
     * wait until the waiting one is done.  See qmp/monitor.c.
     */
    QMP_CMD_WHILE_WAITING = 1 << 2,
} QmpCommandFlags;

typedef struct QmpCommand {
    const char *name;
    const OptDesc *args;            /* NULL: takes no arguments */
    QmpHandler *handler;
    unsigned flags;                 /* QmpCommandFlags */
    const char *help;               /* one line, for docs/qmp.md */
} QmpCommand;

/* Register a table terminated by { NULL }.  Start-up. */
void qmp_register_commands(const QmpCommand *table) TSA_REQUIRES(bql);
const QmpCommand *qmp_find_command(const char *name) TSA_REQUIRES(bql);
/* All registered commands, in registration order (NULL-terminated). */
const QmpCommand **qmp_list_commands(void) TSA_REQUIRES(bql);

/*
 * Run command @name with @args (may be NULL: no arguments).  @opts_flags
 * are util/opts.h flags: OPTS_STRICT_TYPES for QMP JSON input, 0 for
 * keyval input from the command line.  Returns the command's return value
 * (a new reference), or NULL with @errp set.  Errors in the arguments name
 * the key ("'file.cache.direct': expected boolean").
 */
struct json_object *qmp_run_command(const char *name, struct json_object *args,
                                    unsigned opts_flags, Error **errp)
    TSA_REQUIRES(bql);

/*
 * The @opts_flags of the qmp_run_command() that is running, for handlers
 * that check nested parts of their arguments themselves (a nested
 * blockdev definition) and must type them the same way.  Only meaningful
 * inside a handler; 0 outside.
 */
unsigned qmp_current_opts_flags(void) TSA_REQUIRES(bql);

/*
 * Handle one request object from a monitor client: checks its shape
 * (execute, arguments, id), negotiation state, runs the command and builds
 * the response ({"return": ..., "id": ...} or {"error": {...}, "id": ...}).
 * *@negotiated is updated by qmp_capabilities.  Returns a new reference.
 */
struct json_object *qmp_dispatch(struct json_object *request,
                                 bool *negotiated) TSA_REQUIRES(bql);

/*
 * Send an event to every negotiated client of every monitor, with the
 * current time as its timestamp.  Takes ownership of @data (may be NULL).
 * The layers below emit through util/event.h's event_emit(), whose sink
 * this becomes with the first observer.
 */
void qmp_event_emit(const char *event, struct json_object *data)
    TSA_REQUIRES(bql);

/* Observers of events (tests, SHUTDOWN bookkeeping).  Start-up. */
typedef void QmpEventObserver(const char *event, struct json_object *msg,
                              void *opaque);
void qmp_add_event_observer(QmpEventObserver *fn, void *opaque)
    TSA_REQUIRES(bql);

/* --- Monitors (qmp/monitor.c, monitor-json.c) -------------------------- */

/*
 * Listen for QMP clients on a UNIX socket at @path, created with @mode
 * (0600 by default: pass 0).  Several clients may connect at once.
 * Refuses if @path exists and is in use; removes a stale socket file.
 */
bool monitor_add_unix(const char *path, unsigned mode, Error **errp)
    TSA_REQUIRES(bql);
/* Serve QMP on stdin/stdout (--chardev stdio). */
bool monitor_add_stdio(Error **errp) TSA_REQUIRES(bql);
/* Stop accepting: close listeners (and remove their socket files). */
void monitor_stop_listening(void) TSA_REQUIRES(bql);
/*
 * Read no further command from any client (shutdown): what they send is
 * left unread, while queued replies and events still go out.
 */
void monitor_stop_input(void) TSA_REQUIRES(bql);
/* Close every client and listener, flushing queued output first. */
void monitor_cleanup(void) TSA_REQUIRES(bql);

/* Limits, as documented in docs/qmp.md. */
#define QMP_MAX_MESSAGE_BYTES   (1024 * 1024)
#define QMP_MAX_OUTPUT_BYTES    (4 * 1024 * 1024)

/* --- Version ------------------------------------------------------------ */

/* The QEMU version blockd reports compatibility with (QMP greeting). */
#define QMP_COMPAT_QEMU_MAJOR 9
#define QMP_COMPAT_QEMU_MINOR 2
#define QMP_COMPAT_QEMU_MICRO 0

#endif /* QMP_QMP_H */
