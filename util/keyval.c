/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * keyval: QSD-style "key=value,a.b=c" option strings to json-c objects (see
 * include/util/keyval.h for the syntax).
 *
 * Parsing runs in two passes.  The first reads the parameters left to right
 * and inserts each value into a tree of json objects, one level per key
 * fragment; a later value for the same key replaces the earlier one in place.
 * A key that names a string in one parameter and an object in another is
 * refused at once.  The second pass walks the finished tree depth first and
 * turns every object whose member names are all list indices into an array,
 * which needs the whole tree: "a.1=x,a.0=y" is a valid list only once both
 * parameters are seen.  The root stays an object whatever its keys: it holds
 * a command's arguments.
 *
 * List indices are "0" or a decimal number without leading zeros, so that an
 * index has one spelling; "a.01" is refused.  Keys nest at most
 * KEYVAL_MAX_DEPTH deep, the default depth limit of json-c's parser, so that
 * an option string cannot build a tree that the recursive walks here and in
 * json-c would overflow the stack on.
 */
#include "util/osdep.h"

#include "util/keyval.h"

#define KEYVAL_MAX_DEPTH 32

static bool keyval_is_key_char(char c)
{
    return g_ascii_isalnum(c) || c == '_' || c == '-';
}

/* A fragment made only of digits is a list index. */
static bool keyval_is_index(const char *frag, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isdigit(frag[i])) {
            return false;
        }
    }
    return len > 0;
}

/*
 * Whether @key (@len bytes) is a well-formed dotted key: non-empty
 * fragments of key characters, indices without leading zeros, and at most
 * KEYVAL_MAX_DEPTH fragments.
 */
static bool keyval_key_is_valid(const char *key, size_t len)
{
    size_t frag_start = 0;
    int depth = 1;

    for (size_t i = 0; i <= len; i++) {
        size_t frag_len = i - frag_start;

        if (i < len && key[i] != '.') {
            if (!keyval_is_key_char(key[i])) {
                return false;
            }
            continue;
        }
        if (frag_len == 0) {
            return false;
        }
        if (frag_len > 1 && key[frag_start] == '0' &&
            keyval_is_index(key + frag_start, frag_len)) {
            return false;
        }
        if (i < len && ++depth > KEYVAL_MAX_DEPTH) {
            return false;
        }
        frag_start = i + 1;
    }
    return true;
}

/*
 * Store @value under the dotted @key of @root, creating the objects on the
 * way.  Fails if a prefix of @key already holds a string, or @key itself an
 * object.
 */
static bool keyval_insert(struct json_object *root, const char *key,
                          const char *value, Error **errp)
{
    struct json_object *cur = root;
    struct json_object *child;
    const char *frag = key;
    const char *dot;

    while ((dot = strchr(frag, '.'))) {
        g_autofree char *name = g_strndup(frag, dot - frag);

        if (!json_object_object_get_ex(cur, name, &child)) {
            child = json_object_new_object();
            json_object_object_add(cur, name, child);
        } else if (!json_object_is_type(child, json_type_object)) {
            error_setg(errp, "Parameter '%.*s' used inconsistently",
                       (int)(dot - key), key);
            return false;
        }
        cur = child;
        frag = dot + 1;
    }

    if (json_object_object_get_ex(cur, frag, &child) &&
        json_object_is_type(child, json_type_object)) {
        error_setg(errp, "Parameter '%s' used inconsistently", key);
        return false;
    }
    json_object_object_add(cur, frag, json_object_new_string(value));
    return true;
}

/*
 * Read a value from @s up to the first single ',' (consumed) or the end of
 * the string, undoubling ",,".  Returns where the next parameter starts.
 */
static const char *keyval_read_value(const char *s, GString *value)
{
    while (*s) {
        if (*s == ',') {
            if (s[1] != ',') {
                return s + 1;
            }
            s++;
        }
        g_string_append_c(value, *s++);
    }
    return s;
}

/*
 * Parse the parameter at @s into @root.  @implied_key is non-NULL only for
 * the first parameter.  Returns where the next parameter starts, or NULL
 * with @errp set.
 */
static const char *keyval_parse_one(struct json_object *root, const char *s,
                                    const char *implied_key, Error **errp)
{
    size_t key_len = strcspn(s, "=,");
    g_autofree char *key = NULL;
    g_autoptr(GString) value = g_string_new(NULL);
    const char *next;

    if (s[key_len] == '=') {
        key = g_strndup(s, key_len);
        if (!keyval_key_is_valid(key, key_len)) {
            error_setg(errp, "Invalid parameter '%s'", key);
            return NULL;
        }
        next = keyval_read_value(s + key_len + 1, value);
    } else if (implied_key) {
        /* A bare first parameter is all value, ",," included. */
        key = g_strdup(implied_key);
        next = keyval_read_value(s, value);
    } else {
        key = g_strndup(s, key_len);
        if (!keyval_key_is_valid(key, key_len)) {
            error_setg(errp, "Invalid parameter '%s'", key);
        } else {
            error_setg(errp, "Expected '=' after parameter '%s'", key);
        }
        return NULL;
    }

    if (!keyval_insert(root, key, value->str, errp)) {
        return NULL;
    }
    return next;
}

/*
 * If every member of @obj (the value of @path) is a list index, return a new
 * array of them and set *@array; leave it NULL if no member is.  Fails if
 * indices and names are mixed or the indices are not exactly 0..n-1.
 */
static bool keyval_to_array(struct json_object *obj, const GString *path,
                            struct json_object **array, Error **errp)
{
    size_t n = json_object_object_length(obj);
    size_t n_index = 0;
    struct json_object *arr;

    *array = NULL;
    json_object_object_foreach(obj, key, val) {
        n_index += keyval_is_index(key, strlen(key));
    }
    if (n_index == 0) {
        return true;
    }
    if (n_index != n) {
        error_setg(errp, "Parameters '%s.*' used inconsistently", path->str);
        return false;
    }

    arr = json_object_new_array_ext((int)n);
    json_object_object_foreach(obj, ikey, ival) {
        guint64 idx;

        /* An index >= n leaves a hole below n: reported just below. */
        if (g_ascii_string_to_unsigned(ikey, 10, 0, n - 1, &idx, NULL)) {
            json_object_array_put_idx(arr, idx, json_object_get(ival));
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!json_object_array_get_idx(arr, i)) {
            error_setg(errp, "Parameter '%s.%zu' missing", path->str, i);
            json_object_put(arr);
            return false;
        }
    }
    *array = arr;
    return true;
}

/*
 * Turn every index-keyed object below @obj into an array, deepest first.
 * @path holds the dotted key of @obj ("" for the root); it is extended while
 * descending and restored before returning.
 */
static bool keyval_listify(struct json_object *obj, GString *path,
                           Error **errp)
{
    size_t path_len = path->len;

    json_object_object_foreach(obj, key, val) {
        struct json_object *array;

        if (!json_object_is_type(val, json_type_object)) {
            continue;
        }
        if (path_len) {
            g_string_append_c(path, '.');
        }
        g_string_append(path, key);
        if (!keyval_listify(val, path, errp) ||
            !keyval_to_array(val, path, &array, errp)) {
            return false;
        }
        if (array) {
            /* Replaces the value in place: safe while iterating. */
            json_object_object_add(obj, key, array);
        }
        g_string_truncate(path, path_len);
    }
    return true;
}

struct json_object *keyval_parse(const char *params, const char *implied_key,
                                 Error **errp)
{
    struct json_object *root = json_object_new_object();
    g_autoptr(GString) path = g_string_new(NULL);
    const char *s = params;

    assert(!implied_key || keyval_key_is_valid(implied_key,
                                               strlen(implied_key)));
    while (*s) {
        s = keyval_parse_one(root, s, s == params ? implied_key : NULL, errp);
        if (!s) {
            json_object_put(root);
            return NULL;
        }
    }
    if (!keyval_listify(root, path, errp)) {
        json_object_put(root);
        return NULL;
    }
    return root;
}
