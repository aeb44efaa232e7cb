/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Events (JOB_STATUS_CHANGE, BLOCK_EXPORT_DELETED, SHUTDOWN, ...) from
 * the layers below the monitor.  The block layer and the daemon emit them
 * here; whoever delivers events (the QMP layer, which adds QEMU's
 * timestamp and hands them to every negotiated monitor) registers itself
 * as the sink.  So block/ never includes a header of the QMP layer, and a
 * program that links the block layer without it (most unit tests) simply
 * drops its events.
 *
 * Main-loop code (BQL): events are emitted and delivered in the main
 * loop, in the order they are emitted.
 */
#ifndef UTIL_EVENT_H
#define UTIL_EVENT_H

#include <json-c/json.h>

#include "util/main-loop.h"

/* Deliver event @name with @data (a reference the sink takes; may be NULL). */
typedef void EventSink(const char *name, struct json_object *data);

/* Set the sink (NULL: drop events).  Start-up. */
void event_set_sink(EventSink *sink) TSA_REQUIRES(bql);

/*
 * Emit event @name.  @data (may be NULL) is taken: the sink gets it, or
 * it is dropped with the event when there is no sink.
 */
void event_emit(const char *name, struct json_object *data) TSA_REQUIRES(bql);

#endif /* UTIL_EVENT_H */
