/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The option-schema checker (see include/util/opts.h): validates a json-c
 * object against one or more OptDesc arrays and normalises it in place.
 *
 * Checking runs in a fixed order so that the first error reported for a
 * given input never depends on hash order: first every schema entry in
 * declaration order (a missing required key, a badly typed value, or an
 * absent key that gets its default), then the object's keys in their order
 * for keys no schema declares.  Each OptType has one checker function that
 * either accepts a value as it is, or accepts it and hands back a converted
 * replacement (keyval strings to booleans and integers), or refuses it
 * naming the full dotted key path.  Nested objects and lists of objects are
 * checked by the same code, recursively, with the path extended.
 *
 * A failed check may leave @obj partly normalised: callers discard the
 * object on error.  Defaults are written in keyval form and run through the
 * keyval conversions, whatever the flags; a default that does not fit its
 * own declaration is a bug and aborts.
 */
#include "util/osdep.h"

#include "util/keyval.h"
#include "util/opts.h"

/*
 * Checks @val (the value of the key named @key, a full dotted path) against
 * @desc.  Returns false with @errp set if it does not fit.  On success
 * *@repl is NULL if @val stays as it is, or a new value to store in its
 * place, owned by the caller.
 */
typedef bool OptsCheckFn(struct json_object *val, const OptDesc *desc,
                         const char *key, unsigned flags,
                         struct json_object **repl, Error **errp);

static bool opts_check_members(struct json_object *obj,
                               const OptDesc *const *schemas,
                               const char *path, unsigned flags,
                               Error **errp);

/* "path.key", or "key" at top level.  Returns a string to g_free(). */
static char *opts_key_path(const char *path, const char *key)
{
    return *path ? g_strdup_printf("%s.%s", path, key) : g_strdup(key);
}

/* Whether a string in @val may be converted (keyval input). */
static bool opts_is_keyval_string(struct json_object *val, unsigned flags)
{
    return !(flags & OPTS_STRICT_TYPES) &&
           json_object_is_type(val, json_type_string);
}

static bool opts_parse_bool(const char *str, bool *val)
{
    static const char *const yes[] = { "on", "true", "yes", NULL };
    static const char *const no[] = { "off", "false", "no", NULL };

    if (g_strv_contains(yes, str)) {
        *val = true;
        return true;
    }
    if (g_strv_contains(no, str)) {
        *val = false;
        return true;
    }
    return false;
}

/* A decimal int64 with an optional sign, nothing before or after it. */
static bool opts_parse_int(const char *str, int64_t *val)
{
    const char *digits = str + (*str == '-' || *str == '+');
    char *end;

    if (!g_ascii_isdigit(*digits)) {
        return false;
    }
    errno = 0;
    *val = g_ascii_strtoll(str, &end, 10);
    return errno == 0 && *end == '\0';
}

/* log2 of the multiplier of size suffix @c ('\0': none), or -1. */
static int opts_size_shift(char c)
{
    static const char suffixes[] = "KMGTPE";
    const char *s;

    if (c == '\0') {
        return 0;
    }
    s = strchr(suffixes, g_ascii_toupper(c));
    return s ? 10 * (int)(s - suffixes + 1) : -1;
}

/*
 * Decimal digits and an optional suffix letter, k, M, G, T, P or E for
 * powers of 1024 (either case, as QEMU).  Returns false for anything else
 * or a value beyond UINT64_MAX.
 */
bool opts_parse_size(const char *str, uint64_t *bytes)
{
    const char *p = str;
    uint64_t val = 0;
    int shift;

    if (!g_ascii_isdigit(*p)) {
        return false;
    }
    for (; g_ascii_isdigit(*p); p++) {
        unsigned digit = *p - '0';

        if (val > (UINT64_MAX - digit) / 10) {
            return false;
        }
        val = val * 10 + digit;
    }
    shift = opts_size_shift(*p);
    if (shift < 0 || (*p && p[1]) || val > UINT64_MAX >> shift) {
        return false;
    }
    *bytes = val << shift;
    return true;
}

/*
 * The value of JSON integer @val as int64.  json-c keeps integers above
 * INT64_MAX as uint64 and clamps them when read as int64: refuse those.
 */
static bool opts_json_int64(struct json_object *val, int64_t *n)
{
    if (!json_object_is_type(val, json_type_int)) {
        return false;
    }
    *n = json_object_get_int64(val);
    return *n != INT64_MAX || json_object_get_uint64(val) == INT64_MAX;
}

/* The value of JSON integer @val as uint64; false if it is negative. */
static bool opts_json_uint64(struct json_object *val, uint64_t *n)
{
    if (!json_object_is_type(val, json_type_int) ||
        json_object_get_int64(val) < 0) {
        return false;
    }
    *n = json_object_get_uint64(val);
    return true;
}

static bool opts_check_range(const OptDesc *desc, const char *key,
                             int64_t n, bool too_big, Error **errp)
{
    if (desc->max > desc->min && (too_big || n < desc->min || n > desc->max)) {
        error_setg(errp, "'%s': must be between %" PRId64 " and %" PRId64,
                   key, desc->min, desc->max);
        return false;
    }
    return true;
}

static bool opts_check_string(struct json_object *val, const OptDesc *desc,
                              const char *key, unsigned flags,
                              struct json_object **repl, Error **errp)
{
    if (!json_object_is_type(val, json_type_string)) {
        error_setg(errp, "'%s': expected string", key);
        return false;
    }
    return true;
}

static bool opts_check_bool(struct json_object *val, const OptDesc *desc,
                            const char *key, unsigned flags,
                            struct json_object **repl, Error **errp)
{
    bool b;

    if (json_object_is_type(val, json_type_boolean)) {
        return true;
    }
    if (opts_is_keyval_string(val, flags) &&
        opts_parse_bool(json_object_get_string(val), &b)) {
        *repl = json_object_new_boolean(b);
        return true;
    }
    error_setg(errp, "'%s': expected boolean", key);
    return false;
}

static bool opts_check_int(struct json_object *val, const OptDesc *desc,
                           const char *key, unsigned flags,
                           struct json_object **repl, Error **errp)
{
    bool convert = opts_is_keyval_string(val, flags);
    int64_t n;

    if (convert ? !opts_parse_int(json_object_get_string(val), &n)
                : !opts_json_int64(val, &n)) {
        error_setg(errp, "'%s': expected integer", key);
        return false;
    }
    if (!opts_check_range(desc, key, n, false, errp)) {
        return false;
    }
    if (convert) {
        *repl = json_object_new_int64(n);
    }
    return true;
}

static bool opts_check_size(struct json_object *val, const OptDesc *desc,
                            const char *key, unsigned flags,
                            struct json_object **repl, Error **errp)
{
    bool convert = opts_is_keyval_string(val, flags);
    uint64_t n;

    if (convert ? !opts_parse_size(json_object_get_string(val), &n)
                : !opts_json_uint64(val, &n)) {
        error_setg(errp, "'%s': expected size", key);
        return false;
    }
    if (!opts_check_range(desc, key, (int64_t)MIN(n, (uint64_t)INT64_MAX),
                          n > INT64_MAX, errp)) {
        return false;
    }
    if (convert) {
        *repl = n > INT64_MAX ? json_object_new_uint64(n)
                              : json_object_new_int64((int64_t)n);
    }
    return true;
}

static bool opts_check_enum(struct json_object *val, const OptDesc *desc,
                            const char *key, unsigned flags,
                            struct json_object **repl, Error **errp)
{
    g_autoptr(GString) msg = NULL;

    if (json_object_is_type(val, json_type_string) &&
        g_strv_contains(desc->enum_values, json_object_get_string(val))) {
        return true;
    }
    msg = g_string_new(NULL);
    for (const char *const *v = desc->enum_values; *v; v++) {
        g_string_append_printf(msg, "%s'%s'",
                               v == desc->enum_values ? "" : ", ", *v);
    }
    error_setg(errp, "'%s': expected one of %s", key, msg->str);
    return false;
}

static bool opts_check_object(struct json_object *val, const OptDesc *desc,
                              const char *key, unsigned flags,
                              struct json_object **repl, Error **errp)
{
    const OptDesc *const schemas[] = { desc->nested, NULL };

    if (!json_object_is_type(val, json_type_object)) {
        error_setg(errp, "'%s': expected object", key);
        return false;
    }
    return opts_check_members(val, schemas, key, flags, errp);
}

/* Every element an object checked against @desc->nested, as 'key.N'. */
static bool opts_check_list(struct json_object *val, const OptDesc *desc,
                            const char *key, unsigned flags,
                            struct json_object **repl, Error **errp)
{
    const OptDesc *const schemas[] = { desc->nested, NULL };
    size_t len;

    if (!json_object_is_type(val, json_type_array)) {
        error_setg(errp, "'%s': expected list", key);
        return false;
    }
    len = json_object_array_length(val);
    for (size_t i = 0; i < len; i++) {
        struct json_object *elem = json_object_array_get_idx(val, i);
        g_autofree char *elem_key = g_strdup_printf("%s.%zu", key, i);

        if (!json_object_is_type(elem, json_type_object)) {
            error_setg(errp, "'%s': expected object", elem_key);
            return false;
        }
        if (!opts_check_members(elem, schemas, elem_key, flags, errp)) {
            return false;
        }
    }
    return true;
}

/* A node name, or a nested definition that the caller checks. */
static bool opts_check_node(struct json_object *val, const OptDesc *desc,
                            const char *key, unsigned flags,
                            struct json_object **repl, Error **errp)
{
    if (!json_object_is_type(val, json_type_string) &&
        !json_object_is_type(val, json_type_object)) {
        error_setg(errp, "'%s': expected node name or object", key);
        return false;
    }
    return true;
}

static bool opts_is_list_of_strings(struct json_object *val)
{
    size_t len;

    if (!json_object_is_type(val, json_type_array)) {
        return false;
    }
    len = json_object_array_length(val);
    for (size_t i = 0; i < len; i++) {
        if (!json_object_is_type(json_object_array_get_idx(val, i),
                                 json_type_string)) {
            return false;
        }
    }
    return true;
}

static bool opts_check_str_or_list(struct json_object *val,
                                   const OptDesc *desc, const char *key,
                                   unsigned flags, struct json_object **repl,
                                   Error **errp)
{
    if (!json_object_is_type(val, json_type_string) &&
        !opts_is_list_of_strings(val)) {
        error_setg(errp, "'%s': expected string or list of strings", key);
        return false;
    }
    return true;
}

static bool opts_check_any(struct json_object *val, const OptDesc *desc,
                           const char *key, unsigned flags,
                           struct json_object **repl, Error **errp)
{
    return true;
}

static OptsCheckFn *const opts_checkers[] = {
    [OPT_STRING] = opts_check_string,
    [OPT_BOOL] = opts_check_bool,
    [OPT_INT] = opts_check_int,
    [OPT_SIZE] = opts_check_size,
    [OPT_ENUM] = opts_check_enum,
    [OPT_OBJECT] = opts_check_object,
    [OPT_NODE] = opts_check_node,
    [OPT_STR_OR_LIST] = opts_check_str_or_list,
    [OPT_LIST] = opts_check_list,
    [OPT_ANY] = opts_check_any,
};

/* Catch schema bugs before they turn into confusing messages. */
static void opts_assert_desc_valid(const OptDesc *desc)
{
    g_assert((unsigned)desc->type < G_N_ELEMENTS(opts_checkers));
    g_assert(desc->type != OPT_ENUM || desc->enum_values);
    g_assert((desc->type != OPT_OBJECT && desc->type != OPT_LIST) ||
             desc->nested);
    /* A default is keyval text; keyval cannot spell a list of objects. */
    g_assert(!desc->def || (!desc->required && desc->type != OPT_LIST));
}

/*
 * Check the value of @desc->name in @obj (present: json_object_object_get_ex
 * found it, possibly a JSON null), storing the replacement if the checker
 * converted it.
 */
static bool opts_check_present(struct json_object *obj, struct json_object *val,
                               const OptDesc *desc, const char *key,
                               unsigned flags, Error **errp)
{
    struct json_object *repl = NULL;

    if (!opts_checkers[desc->type](val, desc, key, flags, &repl, errp)) {
        g_assert(!repl);
        return false;
    }
    if (repl) {
        json_object_object_add(obj, desc->name, repl);
    }
    return true;
}

/* Store @desc's default, converted as keyval input, as @desc->name in @obj. */
static void opts_fill_default(struct json_object *obj, const OptDesc *desc,
                              const char *key, unsigned flags)
{
    struct json_object *def = desc->type == OPT_OBJECT
        ? keyval_parse(desc->def, NULL, &error_abort)
        : json_object_new_string(desc->def);

    json_object_object_add(obj, desc->name, def);
    opts_check_present(obj, def, desc, key, flags & ~OPTS_STRICT_TYPES,
                       &error_abort);
}

/* Missing, typing and defaults for one schema entry. */
static bool opts_check_entry(struct json_object *obj, const OptDesc *desc,
                             const char *path, unsigned flags, Error **errp)
{
    g_autofree char *key = opts_key_path(path, desc->name);
    struct json_object *val;

    opts_assert_desc_valid(desc);
    if (json_object_object_get_ex(obj, desc->name, &val)) {
        return opts_check_present(obj, val, desc, key, flags, errp);
    }
    if (desc->required) {
        error_setg(errp, "'%s': missing required parameter", key);
        return false;
    }
    if (desc->def) {
        opts_fill_default(obj, desc, key, flags);
    }
    return true;
}

static bool opts_is_declared(const OptDesc *const *schemas, const char *name)
{
    for (const OptDesc *const *s = schemas; *s; s++) {
        for (const OptDesc *desc = *s; desc->name; desc++) {
            if (strcmp(desc->name, name) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* Check the members of object @obj, which @path names in messages. */
static bool opts_check_members(struct json_object *obj,
                               const OptDesc *const *schemas,
                               const char *path, unsigned flags,
                               Error **errp)
{
    for (const OptDesc *const *s = schemas; *s; s++) {
        for (const OptDesc *desc = *s; desc->name; desc++) {
            if (!opts_check_entry(obj, desc, path, flags, errp)) {
                return false;
            }
        }
    }
    if (flags & OPTS_ALLOW_UNKNOWN) {
        return true;
    }
    json_object_object_foreach(obj, name, val) {
        (void)val;
        if (!opts_is_declared(schemas, name)) {
            g_autofree char *key = opts_key_path(path, name);

            error_setg(errp, "'%s': unexpected parameter", key);
            return false;
        }
    }
    return true;
}

/*
 * OPTS_ALLOW_UNKNOWN applies at every level: a caller that checks the
 * common part of some options first leaves the rest, nested or not, for
 * the full check that follows.  Returns false with @errp set on the first
 * problem; @obj may then be partly normalised and is to be discarded.
 */
bool opts_check(struct json_object *obj, const OptDesc *const *schemas,
                const char *path, unsigned flags, Error **errp)
{
    g_assert(schemas);
    path = path ? path : "";
    if (!json_object_is_type(obj, json_type_object)) {
        if (*path) {
            error_setg(errp, "'%s': expected object", path);
        } else {
            error_setg(errp, "expected object");
        }
        return false;
    }
    return opts_check_members(obj, schemas, path, flags, errp);
}

/* The value of @key, or NULL if @obj is NULL or has no such key. */
static struct json_object *opts_lookup(struct json_object *obj,
                                       const char *key)
{
    struct json_object *val = NULL;

    if (obj) {
        json_object_object_get_ex(obj, key, &val);
    }
    return val;
}

/* Returns NULL if absent; the string belongs to @obj. */
const char *opts_get_str(struct json_object *obj, const char *key)
{
    struct json_object *val = opts_lookup(obj, key);

    if (!val) {
        return NULL;
    }
    g_assert(json_object_is_type(val, json_type_string));
    return json_object_get_string(val);
}

bool opts_get_bool(struct json_object *obj, const char *key, bool def)
{
    struct json_object *val = opts_lookup(obj, key);

    if (!val) {
        return def;
    }
    g_assert(json_object_is_type(val, json_type_boolean));
    return json_object_get_boolean(val);
}

/* Also reads OPT_SIZE values, which must then fit in an int64. */
int64_t opts_get_int(struct json_object *obj, const char *key, int64_t def)
{
    struct json_object *val = opts_lookup(obj, key);
    int64_t n;

    if (!val) {
        return def;
    }
    if (!opts_json_int64(val, &n)) {
        g_error("opts_get_int: '%s' is not an int64", key);
    }
    return n;
}

uint64_t opts_get_size(struct json_object *obj, const char *key,
                       uint64_t def)
{
    struct json_object *val = opts_lookup(obj, key);
    uint64_t n;

    if (!val) {
        return def;
    }
    if (!opts_json_uint64(val, &n)) {
        g_error("opts_get_size: '%s' is not a size", key);
    }
    return n;
}

int opts_get_enum(struct json_object *obj, const char *key,
                  const char *const *values, int def)
{
    const char *str = opts_get_str(obj, key);

    if (!str) {
        return def;
    }
    for (int i = 0; values[i]; i++) {
        if (strcmp(values[i], str) == 0) {
            return i;
        }
    }
    g_assert_not_reached();
}
