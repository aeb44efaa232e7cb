/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The event sink (see include/util/event.h).
 */
#include "util/osdep.h"

#include "util/event.h"
#include "util/main-loop.h"

static EventSink *event_sink TSA_GUARDED_BY(bql);

void event_set_sink(EventSink *sink)
{
    bql_assert_held();
    event_sink = sink;
}

void event_emit(const char *name, struct json_object *data)
{
    bql_assert_held();
    if (event_sink) {
        event_sink(name, data);
    } else {
        json_object_put(data);
    }
}
