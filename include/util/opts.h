/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Declarative argument schemas over json-c objects: the one checker behind
 * QMP command arguments, --blockdev/--object/... options and block driver
 * options, so that all of them accept the same input and reject bad input
 * with the same messages, naming the full key path:
 *
 *   'file.cache.direct': expected boolean
 *   'file.foo': unexpected parameter
 *   'filename': missing required parameter
 *   'aio': expected one of 'threads', 'native', 'io_uring'
 *
 * opts_check() validates an object against a schema and normalises it in
 * place: values that came from the command line as strings (keyval) are
 * converted to the type the schema says ("on"/"off"/"true"/"false"/
 * "yes"/"no" to booleans; decimal numbers to integers; sizes with an
 * optional k/M/G/T/P/E suffix, powers of 1024, to integers), and defaults
 * are filled in.  With OPTS_STRICT_TYPES (QMP input) strings are not converted:
 * JSON must carry the right JSON type, as in QEMU.
 *
 * A schema is an array of OptDesc terminated by { NULL }.  Several arrays
 * may be checked together as one (common options + a driver's options).
 *
 * Thread-safe (no shared state).
 */
#ifndef UTIL_OPTS_H
#define UTIL_OPTS_H

#include <json-c/json.h>

#include "util/error.h"

typedef enum OptType {
    OPT_STRING,
    OPT_BOOL,
    OPT_INT,            /* int64, within [min, max] if max > min */
    OPT_SIZE,           /* uint64 byte count; suffixes in keyval form */
    OPT_ENUM,           /* a string among enum_values */
    OPT_OBJECT,         /* nested object checked against @nested */
    OPT_NODE,           /* string (a node name) or object (a nested
                           blockdev definition, checked by the caller) */
    OPT_STR_OR_LIST,    /* string, or a list of strings */
    OPT_LIST,           /* list of objects checked against @nested */
    OPT_ANY,            /* anything; the handler checks it */
} OptType;

typedef struct OptDesc {
    const char *name;
    OptType type;
    bool required;
    const char *const *enum_values;     /* OPT_ENUM: NULL-terminated */
    const struct OptDesc *nested;       /* OPT_OBJECT, OPT_LIST */
    const char *def;                    /* default, in keyval form */
    int64_t min, max;                   /* OPT_INT/OPT_SIZE range if max > min */
    const char *help;                   /* one line, for docs and -h */
} OptDesc;

typedef enum OptsFlags {
    OPTS_STRICT_TYPES = 1 << 0,  /* JSON input: no string conversion */
    OPTS_ALLOW_UNKNOWN = 1 << 1, /* leave unknown keys for someone else */
} OptsFlags;

/*
 * Check and normalise @obj against the union of the NULL-terminated list
 * of schemas @schemas.  @path names @obj in messages ("" at top level,
 * "file" for a nested definition: keys then read 'file.cache.direct').
 * Returns false with @errp set on the first problem.
 */
bool opts_check(struct json_object *obj, const OptDesc *const *schemas,
                const char *path, unsigned flags, Error **errp);

/*
 * Accessors for checked objects (they assert the type is right).  @obj may
 * be NULL, as if empty, so that an absent nested object reads as defaults.
 */
const char *opts_get_str(struct json_object *obj, const char *key);
bool opts_get_bool(struct json_object *obj, const char *key, bool def);
/* OPT_INT, or OPT_SIZE values that fit in an int64. */
int64_t opts_get_int(struct json_object *obj, const char *key, int64_t def);
/* OPT_SIZE: the whole uint64 range. */
uint64_t opts_get_size(struct json_object *obj, const char *key,
                       uint64_t def);
/* Index of the value of an OPT_ENUM key in @values, or @def if absent. */
int opts_get_enum(struct json_object *obj, const char *key,
                  const char *const *values, int def);

/* Parse a keyval size ("64k", "1G", "512") to bytes; false if invalid. */
bool opts_parse_size(const char *str, uint64_t *bytes);

#endif /* UTIL_OPTS_H */
