/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP control commands (qmp/cmd-control.c): qmp_capabilities,
 * query-version, query-commands and quit, and the hooks the daemon needs to
 * wire them up.
 *
 * Everything here is main-loop code: call it under the BQL
 * (GLOBAL_STATE_CODE).
 */
#ifndef QMP_CONTROL_H
#define QMP_CONTROL_H

#include <json-c/json.h>

#include "util/main-loop.h"

/* Register the control command table.  Start-up, once. */
void qmp_control_init(void) TSA_REQUIRES(bql);

/*
 * Called by the quit command after it has succeeded, before its reply is
 * sent.  The handler must only *request* shutdown (set a flag, kick the
 * main loop): the reply goes out when the command returns, and the daemon
 * then closes the monitors with monitor_cleanup(), which flushes it.
 * Without a handler, quit fails.  NULL removes the handler.
 */
void qmp_set_quit_handler(void (*fn)(void)) TSA_REQUIRES(bql);

/*
 * QEMU's VersionInfo as blockd reports it, for query-version and the QMP
 * greeting: {"qemu": {"major", "minor", "micro"}, "package": "blockd X.Y.Z"}.
 * Returns a new reference.
 */
struct json_object *qmp_version_info(void) TSA_REQUIRES(bql);

#endif /* QMP_CONTROL_H */
