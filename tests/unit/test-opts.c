/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * opts_check(): the option-schema checker, its keyval conversions, its
 * strict JSON typing, defaults, nesting, and its exact error messages.
 *
 * Inputs are written as they arrive in blockd: keyval strings go through
 * keyval_parse() (every leaf a string), QMP input through json-c's parser.
 * Each check compares the whole normalised object as plain JSON text, so
 * that a conversion that produces the wrong JSON type cannot pass.
 */
#include "util/osdep.h"

#include <json-c/json.h>

#include "util/error.h"
#include "util/keyval.h"
#include "util/opts.h"

static const char *const aio_values[] = {
    "threads", "native", "io_uring", NULL
};

static const OptDesc cache_opts[] = {
    { .name = "direct", .type = OPT_BOOL, .def = "off" },
    { .name = "no-flush", .type = OPT_BOOL },
    { NULL }
};

/* Something like the file driver's options. */
static const OptDesc file_opts[] = {
    { .name = "filename", .type = OPT_STRING, .required = true },
    { .name = "aio", .type = OPT_ENUM, .enum_values = aio_values },
    { .name = "cache", .type = OPT_OBJECT, .nested = cache_opts },
    { NULL }
};

/* Something like the options every node takes. */
static const OptDesc common_opts[] = {
    { .name = "driver", .type = OPT_STRING, .required = true },
    { .name = "node-name", .type = OPT_STRING },
    { .name = "read-only", .type = OPT_BOOL },
    { .name = "file", .type = OPT_NODE },
    { NULL }
};

/* One of each scalar type, none required. */
static const OptDesc scalar_opts[] = {
    { .name = "b", .type = OPT_BOOL },
    { .name = "i", .type = OPT_INT },
    { .name = "size", .type = OPT_SIZE },
    { .name = "s", .type = OPT_STRING },
    { .name = "max-connections", .type = OPT_INT, .min = 1, .max = 65535 },
    { .name = "buf-size", .type = OPT_SIZE, .min = 512, .max = 1 << 20 },
    { NULL }
};

static const OptDesc export_opts[] = {
    { .name = "name", .type = OPT_STRING, .required = true },
    { .name = "writable", .type = OPT_BOOL, .def = "off" },
    { NULL }
};

static const OptDesc container_opts[] = {
    { .name = "export", .type = OPT_LIST, .nested = export_opts },
    { .name = "iothread", .type = OPT_STR_OR_LIST },
    { .name = "any", .type = OPT_ANY },
    { NULL }
};

static const OptDesc *const file_schema[] = { file_opts, NULL };
static const OptDesc *const blockdev_schema[] = {
    common_opts, file_opts, NULL
};
static const OptDesc *const common_schema[] = { common_opts, NULL };
static const OptDesc *const scalar_schema[] = { scalar_opts, NULL };
static const OptDesc *const container_schema[] = { container_opts, NULL };

static struct json_object *parse_kv(const char *params)
{
    return keyval_parse(params, NULL, &error_abort);
}

static struct json_object *parse_json(const char *text)
{
    struct json_object *obj = json_tokener_parse(text);

    g_assert_nonnull(obj);
    return obj;
}

static const char *plain(struct json_object *obj)
{
    return json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
}

/* Check @obj, which must pass and normalise to @expected; frees @obj. */
static void assert_ok(struct json_object *obj, const OptDesc *const *schemas,
                      const char *path, unsigned flags, const char *expected)
{
    Error *err = NULL;

    opts_check(obj, schemas, path, flags, &err);
    g_assert_null(err);
    g_assert_cmpstr(plain(obj), ==, expected);
    json_object_put(obj);
}

/* Check @obj, which must fail with exactly @msg; frees @obj. */
static void assert_error(struct json_object *obj,
                         const OptDesc *const *schemas, const char *path,
                         unsigned flags, const char *msg)
{
    Error *err = NULL;

    g_assert_false(opts_check(obj, schemas, path, flags, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
    json_object_put(obj);
}

static void test_keyval_bool_on_off(void)
{
    assert_ok(parse_kv("b=on"), scalar_schema, "", 0, "{\"b\":true}");
    assert_ok(parse_kv("b=off"), scalar_schema, "", 0, "{\"b\":false}");
    assert_ok(parse_kv("b=true"), scalar_schema, "", 0, "{\"b\":true}");
    assert_ok(parse_kv("b=false"), scalar_schema, "", 0, "{\"b\":false}");
    assert_ok(parse_kv("b=yes"), scalar_schema, "", 0, "{\"b\":true}");
    assert_ok(parse_kv("b=no"), scalar_schema, "", 0, "{\"b\":false}");
}

static void test_keyval_bool_rejects_other(void)
{
    static const char *const bad[] = { "b=ON", "b=1", "b=", "b=onn", "b=y" };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        assert_error(parse_kv(bad[i]), scalar_schema, "", 0,
                     "'b': expected boolean");
    }
}

static void test_keyval_int(void)
{
    assert_ok(parse_kv("i=42"), scalar_schema, "", 0, "{\"i\":42}");
    assert_ok(parse_kv("i=-7"), scalar_schema, "", 0, "{\"i\":-7}");
    assert_ok(parse_kv("i=+7"), scalar_schema, "", 0, "{\"i\":7}");
    assert_ok(parse_kv("i=-9223372036854775808"), scalar_schema, "", 0,
              "{\"i\":-9223372036854775808}");
}

static void test_keyval_int_rejects_garbage(void)
{
    static const char *const bad[] = {
        "i=", "i=12a", "i=0x10", "i= 1", "i=1 ", "i=-", "i=1.0", "i=1k",
        "i=9223372036854775808", "i=--1",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        assert_error(parse_kv(bad[i]), scalar_schema, "", 0,
                     "'i': expected integer");
    }
}

static void test_strict_rejects_string_bool(void)
{
    assert_error(parse_json("{\"b\": \"on\"}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'b': expected boolean");
    assert_error(parse_json("{\"b\": 1}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'b': expected boolean");
    assert_ok(parse_json("{\"b\": true}"), scalar_schema, "",
              OPTS_STRICT_TYPES, "{\"b\":true}");
}

static void test_strict_rejects_string_int(void)
{
    assert_error(parse_json("{\"i\": \"42\"}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'i': expected integer");
    assert_error(parse_json("{\"i\": 4.5}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'i': expected integer");
    assert_error(parse_json("{\"i\": 9223372036854775808}"), scalar_schema,
                 "", OPTS_STRICT_TYPES, "'i': expected integer");
    assert_ok(parse_json("{\"i\": -42}"), scalar_schema, "",
              OPTS_STRICT_TYPES, "{\"i\":-42}");
}

static void test_strict_size_accepts_integer(void)
{
    assert_ok(parse_json("{\"size\": 4096}"), scalar_schema, "",
              OPTS_STRICT_TYPES, "{\"size\":4096}");
    assert_ok(parse_json("{\"size\": 18446744073709551615}"), scalar_schema,
              "", OPTS_STRICT_TYPES, "{\"size\":18446744073709551615}");
    assert_error(parse_json("{\"size\": -1}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'size': expected size");
    assert_error(parse_json("{\"size\": \"4k\"}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'size': expected size");
}

static void test_keyval_accepts_json_types(void)
{
    /* Non-strict checking also takes typed JSON, so checking is
     * idempotent and --config files may use either form. */
    assert_ok(parse_json("{\"b\": false, \"i\": 3, \"size\": 512}"),
              scalar_schema, "", 0, "{\"b\":false,\"i\":3,\"size\":512}");
}

static void test_string_expected(void)
{
    assert_error(parse_json("{\"s\": 5}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, "'s': expected string");
    assert_error(parse_json("{\"s\": null}"), scalar_schema, "", 0,
                 "'s': expected string");
}

static void test_nested_path_in_message(void)
{
    struct json_object *obj = parse_kv("driver=raw,file.driver=file,"
                                       "file.filename=disk.raw,"
                                       "file.cache.direct=maybe");
    struct json_object *file = NULL;
    Error *err = NULL;

    /* The caller checks a nested definition with its key as the path. */
    g_assert_true(opts_check(obj, common_schema, "", 0, &error_abort));
    g_assert_true(json_object_object_get_ex(obj, "file", &file));
    g_assert_false(opts_check(file, blockdev_schema, "file", 0, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "'file.cache.direct': expected boolean");
    error_free(err);
    json_object_put(obj);
}

static void test_unknown_key(void)
{
    assert_error(parse_kv("filename=x,foo=1"), file_schema, "", 0,
                 "'foo': unexpected parameter");
    assert_error(parse_kv("filename=x,foo=1"), file_schema, "file", 0,
                 "'file.foo': unexpected parameter");
    assert_error(parse_kv("filename=x,cache.foo=1"), file_schema, "file", 0,
                 "'file.cache.foo': unexpected parameter");
}

static void test_allow_unknown(void)
{
    assert_ok(parse_kv("filename=x,foo=1,cache.bar=2"), file_schema, "",
              OPTS_ALLOW_UNKNOWN,
              "{\"filename\":\"x\",\"foo\":\"1\","
              "\"cache\":{\"bar\":\"2\",\"direct\":false}}");
}

static void test_missing_required(void)
{
    assert_error(parse_kv("aio=native"), file_schema, "", 0,
                 "'filename': missing required parameter");
    assert_error(parse_kv("aio=native"), file_schema, "file", 0,
                 "'file.filename': missing required parameter");
}

static void test_enum_message(void)
{
    assert_error(parse_kv("filename=x,aio=posix"), file_schema, "", 0,
                 "'aio': expected one of 'threads', 'native', 'io_uring'");
    assert_error(parse_json("{\"filename\": \"x\", \"aio\": 1}"), file_schema,
                 "", OPTS_STRICT_TYPES,
                 "'aio': expected one of 'threads', 'native', 'io_uring'");
    assert_ok(parse_kv("filename=x,aio=io_uring"), file_schema, "", 0,
              "{\"filename\":\"x\",\"aio\":\"io_uring\"}");
}

static void test_object_expected(void)
{
    assert_error(parse_kv("filename=x,cache=on"), file_schema, "", 0,
                 "'cache': expected object");
}

static void test_check_order(void)
{
    /* Schema entries first, in declaration order... */
    assert_error(parse_kv("zzz=1,aio=bad"), file_schema, "", 0,
                 "'filename': missing required parameter");
    assert_error(parse_kv("zzz=1,filename=x,cache.direct=bad,aio=bad"),
                 file_schema, "", 0, "'aio': expected one of 'threads', "
                 "'native', 'io_uring'");
    /* ...then unknown keys in the object's order. */
    assert_error(parse_kv("filename=x,zzz=1,aaa=2"), file_schema, "", 0,
                 "'zzz': unexpected parameter");
}

static void test_size_suffixes(void)
{
    static const struct {
        const char *str;
        uint64_t bytes;
    } cases[] = {
        { "0", 0 },
        { "512", 512 },
        { "64k", 64 * 1024 },
        { "64K", 64 * 1024 },
        { "2M", 2ULL << 20 },
        { "3G", 3ULL << 30 },
        { "4T", 4ULL << 40 },
        { "5P", 5ULL << 50 },
        { "6E", 6ULL << 60 },
        { "1g", 1ULL << 30 },
    };
    static const char *const bad[] = {
        "", "k", "1KB", "1.5G", "-1", "+1", " 1", "1 ", "1X", "0x10",
    };
    uint64_t bytes;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_assert_true(opts_parse_size(cases[i].str, &bytes));
        g_assert_cmpuint(bytes, ==, cases[i].bytes);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_false(opts_parse_size(bad[i], &bytes));
    }
    assert_ok(parse_kv("size=64k"), scalar_schema, "", 0,
              "{\"size\":65536}");
    assert_error(parse_kv("size=64q"), scalar_schema, "", 0,
                 "'size': expected size");
}

static void test_size_overflow_rejected(void)
{
    uint64_t bytes;

    g_assert_true(opts_parse_size("18446744073709551615", &bytes));
    g_assert_cmpuint(bytes, ==, UINT64_MAX);
    g_assert_false(opts_parse_size("18446744073709551616", &bytes));
    g_assert_false(opts_parse_size("99999999999999999999999", &bytes));
    g_assert_true(opts_parse_size("15E", &bytes));
    g_assert_cmpuint(bytes, ==, 15ULL << 60);
    g_assert_false(opts_parse_size("16E", &bytes));
    g_assert_false(opts_parse_size("17179869184G", &bytes));
    g_assert_true(opts_parse_size("17179869183G", &bytes));
    assert_error(parse_kv("size=16E"), scalar_schema, "", 0,
                 "'size': expected size");
}

static void test_size_above_int64(void)
{
    struct json_object *obj = parse_kv("size=9223372036854775808");

    g_assert_true(opts_check(obj, scalar_schema, "", 0, &error_abort));
    g_assert_cmpstr(plain(obj), ==, "{\"size\":9223372036854775808}");
    g_assert_cmpuint(opts_get_size(obj, "size", 0), ==, 1ULL << 63);
    json_object_put(obj);
}

static void test_int_range(void)
{
    static const char *const msg =
        "'max-connections': must be between 1 and 65535";

    assert_ok(parse_kv("max-connections=1"), scalar_schema, "", 0,
              "{\"max-connections\":1}");
    assert_ok(parse_kv("max-connections=65535"), scalar_schema, "", 0,
              "{\"max-connections\":65535}");
    assert_error(parse_kv("max-connections=0"), scalar_schema, "", 0, msg);
    assert_error(parse_kv("max-connections=65536"), scalar_schema, "", 0,
                 msg);
    assert_error(parse_json("{\"max-connections\": -1}"), scalar_schema, "",
                 OPTS_STRICT_TYPES, msg);
}

static void test_size_range(void)
{
    static const char *const msg =
        "'buf-size': must be between 512 and 1048576";

    assert_ok(parse_kv("buf-size=1M"), scalar_schema, "", 0,
              "{\"buf-size\":1048576}");
    assert_error(parse_kv("buf-size=511"), scalar_schema, "", 0, msg);
    assert_error(parse_kv("buf-size=2M"), scalar_schema, "", 0, msg);
    assert_error(parse_kv("buf-size=16383P"), scalar_schema, "", 0, msg);
}

static void test_default_filled(void)
{
    static const OptDesc opts[] = {
        { .name = "aio", .type = OPT_ENUM, .enum_values = aio_values,
          .def = "threads" },
        { .name = "b", .type = OPT_BOOL, .def = "on" },
        { .name = "i", .type = OPT_INT, .def = "-3" },
        { .name = "size", .type = OPT_SIZE, .def = "1M" },
        { .name = "s", .type = OPT_STRING, .def = "x" },
        { .name = "cache", .type = OPT_OBJECT, .nested = cache_opts,
          .def = "no-flush=on" },
        { NULL }
    };
    static const OptDesc *const schema[] = { opts, NULL };
    static const char *const expected =
        "{\"aio\":\"threads\",\"b\":true,\"i\":-3,\"size\":1048576,"
        "\"s\":\"x\",\"cache\":{\"no-flush\":true,\"direct\":false}}";

    /* Defaults are keyval text, converted even for strict input. */
    assert_ok(parse_kv(""), schema, "", 0, expected);
    assert_ok(parse_json("{}"), schema, "", OPTS_STRICT_TYPES, expected);
    /* A present key keeps its value; a nested default still applies. */
    assert_ok(parse_kv("b=off,cache.no-flush=off"), schema, "", 0,
              "{\"b\":false,\"cache\":{\"no-flush\":false,\"direct\":false},"
              "\"aio\":\"threads\",\"i\":-3,\"size\":1048576,\"s\":\"x\"}");
}

static void test_union_of_schemas(void)
{
    assert_ok(parse_kv("driver=file,node-name=f0,filename=disk.raw,"
                       "read-only=on,cache.direct=on"),
              blockdev_schema, "", 0,
              "{\"driver\":\"file\",\"node-name\":\"f0\","
              "\"filename\":\"disk.raw\",\"read-only\":true,"
              "\"cache\":{\"direct\":true}}");
    /* Known to neither. */
    assert_error(parse_kv("driver=file,filename=disk.raw,size=1"),
                 blockdev_schema, "", 0, "'size': unexpected parameter");
    /* Required in the second schema. */
    assert_error(parse_kv("driver=file"), blockdev_schema, "", 0,
                 "'filename': missing required parameter");
    /* One schema alone does not know the other's keys. */
    assert_error(parse_kv("driver=file,filename=disk.raw"), common_schema,
                 "", 0, "'filename': unexpected parameter");
}

static void test_node_string_or_object(void)
{
    assert_ok(parse_kv("driver=raw,file=f0"), common_schema, "", 0,
              "{\"driver\":\"raw\",\"file\":\"f0\"}");
    /* A nested definition is left for the caller, unknown keys and all. */
    assert_ok(parse_kv("driver=raw,file.driver=file,file.bogus=on"),
              common_schema, "", 0,
              "{\"driver\":\"raw\",\"file\":{\"driver\":\"file\","
              "\"bogus\":\"on\"}}");
    assert_error(parse_json("{\"driver\": \"raw\", \"file\": 5}"),
                 common_schema, "", OPTS_STRICT_TYPES,
                 "'file': expected node name or object");
    assert_error(parse_kv("driver=raw,file.0=a"), common_schema, "", 0,
                 "'file': expected node name or object");
}

static void test_list_of_objects(void)
{
    assert_ok(parse_kv("export.0.name=a,export.1.name=b,"
                       "export.1.writable=on"),
              container_schema, "", 0,
              "{\"export\":[{\"name\":\"a\",\"writable\":false},"
              "{\"name\":\"b\",\"writable\":true}]}");
    assert_error(parse_kv("export.0.name=a,export.1.writable=maybe"),
                 container_schema, "", 0,
                 "'export.1.name': missing required parameter");
    assert_error(parse_kv("export.0.name=a,export.1.name=b,"
                          "export.1.writable=maybe"),
                 container_schema, "", 0,
                 "'export.1.writable': expected boolean");
    assert_error(parse_kv("export.0.name=a,export.0.x=1"), container_schema,
                 "", 0, "'export.0.x': unexpected parameter");
    assert_error(parse_kv("export=a"), container_schema, "", 0,
                 "'export': expected list");
    assert_error(parse_kv("export.0=a"), container_schema, "", 0,
                 "'export.0': expected object");
}

static void test_str_or_list(void)
{
    static const char *const msg =
        "'iothread': expected string or list of strings";

    assert_ok(parse_kv("iothread=io0"), container_schema, "", 0,
              "{\"iothread\":\"io0\"}");
    assert_ok(parse_kv("iothread.0=io0,iothread.1=io1"), container_schema,
              "", 0, "{\"iothread\":[\"io0\",\"io1\"]}");
    assert_ok(parse_json("{\"iothread\": [\"io0\"]}"), container_schema, "",
              OPTS_STRICT_TYPES, "{\"iothread\":[\"io0\"]}");
    assert_error(parse_json("{\"iothread\": 5}"), container_schema, "",
                 OPTS_STRICT_TYPES, msg);
    assert_error(parse_json("{\"iothread\": [\"io0\", 1]}"),
                 container_schema, "", OPTS_STRICT_TYPES, msg);
    assert_error(parse_kv("iothread.x=io0"), container_schema, "", 0, msg);
}

static void test_any_accepts_anything(void)
{
    assert_ok(parse_json("{\"any\": null}"), container_schema, "",
              OPTS_STRICT_TYPES, "{\"any\":null}");
    assert_ok(parse_json("{\"any\": [1, {\"x\": 2.5}]}"), container_schema,
              "", OPTS_STRICT_TYPES, "{\"any\":[1,{\"x\":2.5}]}");
}

static void test_not_an_object(void)
{
    assert_error(parse_json("[1]"), file_schema, "", OPTS_STRICT_TYPES,
                 "expected object");
    assert_error(parse_json("\"x\""), file_schema, "file", OPTS_STRICT_TYPES,
                 "'file': expected object");
}

static void test_accessors(void)
{
    struct json_object *obj = parse_kv("filename=disk.raw,aio=native,"
                                       "cache.direct=on");
    struct json_object *cache = NULL;

    g_assert_true(opts_check(obj, file_schema, "", 0, &error_abort));
    g_assert_cmpstr(opts_get_str(obj, "filename"), ==, "disk.raw");
    g_assert_cmpint(opts_get_enum(obj, "aio", aio_values, 0), ==, 1);
    g_assert_true(json_object_object_get_ex(obj, "cache", &cache));
    g_assert_true(opts_get_bool(cache, "direct", false));
    g_assert_false(opts_get_bool(cache, "no-flush", false));
    json_object_put(obj);

    obj = parse_kv("i=-5,size=2k");
    g_assert_true(opts_check(obj, scalar_schema, "", 0, &error_abort));
    g_assert_cmpint(opts_get_int(obj, "i", 0), ==, -5);
    g_assert_cmpint(opts_get_int(obj, "size", 0), ==, 2048);
    g_assert_cmpuint(opts_get_size(obj, "size", 0), ==, 2048);
    g_assert_cmpint(opts_get_int(obj, "max-connections", 7), ==, 7);
    g_assert_null(opts_get_str(obj, "s"));
    json_object_put(obj);
}

static void test_accessors_absent_object(void)
{
    g_assert_null(opts_get_str(NULL, "x"));
    g_assert_true(opts_get_bool(NULL, "x", true));
    g_assert_cmpint(opts_get_int(NULL, "x", -1), ==, -1);
    g_assert_cmpuint(opts_get_size(NULL, "x", 9), ==, 9);
    g_assert_cmpint(opts_get_enum(NULL, "x", aio_values, 2), ==, 2);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/opts/keyval-bool-on-off", test_keyval_bool_on_off);
    g_test_add_func("/opts/keyval-bool-rejects-other",
                    test_keyval_bool_rejects_other);
    g_test_add_func("/opts/keyval-int", test_keyval_int);
    g_test_add_func("/opts/keyval-int-rejects-garbage",
                    test_keyval_int_rejects_garbage);
    g_test_add_func("/opts/strict-rejects-string-bool",
                    test_strict_rejects_string_bool);
    g_test_add_func("/opts/strict-rejects-string-int",
                    test_strict_rejects_string_int);
    g_test_add_func("/opts/strict-size-accepts-integer",
                    test_strict_size_accepts_integer);
    g_test_add_func("/opts/keyval-accepts-json-types",
                    test_keyval_accepts_json_types);
    g_test_add_func("/opts/string-expected", test_string_expected);
    g_test_add_func("/opts/nested-path-in-message",
                    test_nested_path_in_message);
    g_test_add_func("/opts/unknown-key", test_unknown_key);
    g_test_add_func("/opts/allow-unknown", test_allow_unknown);
    g_test_add_func("/opts/missing-required", test_missing_required);
    g_test_add_func("/opts/enum-message", test_enum_message);
    g_test_add_func("/opts/object-expected", test_object_expected);
    g_test_add_func("/opts/check-order", test_check_order);
    g_test_add_func("/opts/size-suffixes", test_size_suffixes);
    g_test_add_func("/opts/size-overflow-rejected",
                    test_size_overflow_rejected);
    g_test_add_func("/opts/size-above-int64", test_size_above_int64);
    g_test_add_func("/opts/int-range", test_int_range);
    g_test_add_func("/opts/size-range", test_size_range);
    g_test_add_func("/opts/default-filled", test_default_filled);
    g_test_add_func("/opts/union-of-schemas", test_union_of_schemas);
    g_test_add_func("/opts/node-string-or-object",
                    test_node_string_or_object);
    g_test_add_func("/opts/list-of-objects", test_list_of_objects);
    g_test_add_func("/opts/str-or-list", test_str_or_list);
    g_test_add_func("/opts/any-accepts-anything", test_any_accepts_anything);
    g_test_add_func("/opts/not-an-object", test_not_an_object);
    g_test_add_func("/opts/accessors", test_accessors);
    g_test_add_func("/opts/accessors-absent-object",
                    test_accessors_absent_object);
    return g_test_run();
}
