/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for keyval_parse(), the parser of QSD-style option
 * strings (--blockdev, --object, --export, --nbd-server).  Each input is
 * parsed twice, without an implied key and with "driver" as implied key.
 * On success the result must be a JSON object whose leaves are all
 * strings, whose lists came from keys 0..n-1 (so hold strings, objects or
 * lists, never gaps), and whose keys are never empty; it must also
 * serialise and re-parse to an equal object.  On failure the error must
 * carry a non-empty message.  Anything else (a crash, a leak, undefined
 * behaviour, a failed invariant) is a finding.
 */
#include "util/osdep.h"

#include "util/error.h"
#include "util/keyval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(struct json_object *val, int depth);

static void check_object(struct json_object *obj, int depth)
{
    json_object_object_foreach(obj, key, val) {
        if (!*key) {
            abort();            /* empty keys are refused by the grammar */
        }
        check_value(val, depth + 1);
    }
}

static void check_value(struct json_object *val, int depth)
{
    if (depth > 10000) {
        abort();
    }
    switch (json_object_get_type(val)) {
    case json_type_string:
        return;
    case json_type_object:
        check_object(val, depth);
        return;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(val); i++) {
            struct json_object *elem = json_object_array_get_idx(val, i);

            if (!elem) {
                abort();        /* a hole: keys were not 0..n-1 */
            }
            check_value(elem, depth + 1);
        }
        return;
    default:
        abort();                /* keyval produces only strings */
    }
}

/* Serialise and parse again: keyval's output must be plain, valid JSON. */
static void check_roundtrip(struct json_object *obj, size_t input_len)
{
    size_t len;
    const char *out = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN, &len);
    /* Nesting is bounded by the input: at most one level per two bytes. */
    struct json_tokener *tok = json_tokener_new_ex(input_len + 2);
    struct json_object *again = json_tokener_parse_ex(tok, out, len);

    if (!again || !json_object_equal(obj, again)) {
        abort();
    }
    json_object_put(again);
    json_tokener_free(tok);
}

static void parse_one(const char *text, const char *implied_key)
{
    Error *err = NULL;
    struct json_object *obj = keyval_parse(text, implied_key, &err);

    if (!obj) {
        if (!err || !*error_get_pretty(err)) {
            abort();
        }
        error_free(err);
        return;
    }
    if (err || !json_object_is_type(obj, json_type_object)) {
        abort();
    }
    check_object(obj, 0);
    check_roundtrip(obj, strlen(text));
    json_object_put(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = g_strndup((const char *)data, size);

    parse_one(text, NULL);
    parse_one(text, "driver");
    return 0;
}
