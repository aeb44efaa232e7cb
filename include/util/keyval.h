/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Parsing of QSD-style "keyval" option strings into json-c objects.
 *
 * Syntax, as qemu-storage-daemon's command line:
 *   params  = param { "," param }
 *   param   = key "=" value | value      (a bare value only first, when an
 *                                         implied key is given)
 *   key     = fragment { "." fragment }  (fragments: [A-Za-z0-9_-]+)
 *   value   = any characters; ",," stands for one ","
 *
 * Dotted keys build nested objects ("cache.direct=on" gives
 * {"cache": {"direct": "on"}}).  An object whose keys are all decimal
 * integers 0..n-1 becomes an array ("iothread.0=a,iothread.1=b" gives
 * {"iothread": ["a", "b"]}).  Every leaf is a string: converting "on" or
 * "42" to the type a command expects is the argument checker's job.
 * A repeated key takes the last value, as in QEMU.
 *
 * Thread-safe (no shared state).
 */
#ifndef UTIL_KEYVAL_H
#define UTIL_KEYVAL_H

#include <json-c/json.h>

#include "util/error.h"

/*
 * Parse @params.  @implied_key, if not NULL, names the key of a first
 * parameter that has no "=" (e.g. "driver" for --blockdev, "qom-type" for
 * --object).  Returns a new json object, or NULL with @errp set to a
 * message that names the offending parameter.
 */
struct json_object *keyval_parse(const char *params, const char *implied_key,
                                 Error **errp);

#endif /* UTIL_KEYVAL_H */
