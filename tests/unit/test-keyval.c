/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * keyval_parse(): QSD-style option strings to json objects, and its errors.
 */
#include "util/osdep.h"

#include <json-c/json.h>

#include "util/error.h"
#include "util/keyval.h"

/* Parse @params, which must succeed, and compare the plain JSON text. */
static void check_parse(const char *params, const char *implied_key,
                        const char *expected)
{
    Error *err = NULL;
    struct json_object *obj = keyval_parse(params, implied_key, &err);

    g_assert_null(err);
    g_assert_nonnull(obj);
    g_assert_cmpstr(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN),
                    ==, expected);
    json_object_put(obj);
}

/* Parse @params, which must fail, and compare the error message. */
static void check_error(const char *params, const char *implied_key,
                        const char *expected)
{
    Error *err = NULL;
    struct json_object *obj = keyval_parse(params, implied_key, &err);

    g_assert_null(obj);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
}

static void test_empty_string(void)
{
    check_parse("", NULL, "{}");
    check_parse("", "driver", "{}");
}

static void test_flat_keys(void)
{
    check_parse("driver=file,node-name=file0,filename=disk.raw", NULL,
                "{\"driver\":\"file\",\"node-name\":\"file0\","
                "\"filename\":\"disk.raw\"}");
}

static void test_dotted_keys_nest(void)
{
    check_parse("cache.direct=on,cache.no-flush=off,x=1", NULL,
                "{\"cache\":{\"direct\":\"on\",\"no-flush\":\"off\"},"
                "\"x\":\"1\"}");
    check_parse("a.b.c=1", NULL, "{\"a\":{\"b\":{\"c\":\"1\"}}}");
}

static void test_implied_key(void)
{
    check_parse("file,filename=disk.raw", "driver",
                "{\"driver\":\"file\",\"filename\":\"disk.raw\"}");
    check_parse("iothread", "qom-type", "{\"qom-type\":\"iothread\"}");
}

static void test_implied_key_not_needed(void)
{
    check_parse("driver=raw,file=f0", "driver",
                "{\"driver\":\"raw\",\"file\":\"f0\"}");
}

static void test_implied_key_value_is_raw(void)
{
    /* A bare first parameter is all value: no key syntax applies. */
    check_parse("/dev/sda,,1,x=y", "driver",
                "{\"driver\":\"\\/dev\\/sda,1\",\"x\":\"y\"}");
}

static void test_implied_key_only_first(void)
{
    check_error("id=io0,iothread", "qom-type",
                "Expected '=' after parameter 'iothread'");
}

static void test_bare_without_implied_key(void)
{
    check_error("foo", NULL, "Expected '=' after parameter 'foo'");
    check_error("foo,a=b", NULL, "Expected '=' after parameter 'foo'");
}

static void test_comma_escape(void)
{
    check_parse("filename=a,,b,x=1", NULL,
                "{\"filename\":\"a,b\",\"x\":\"1\"}");
    check_parse("filename=a,,,x=1", NULL, "{\"filename\":\"a,\",\"x\":\"1\"}");
    check_parse("filename=,,,,", NULL, "{\"filename\":\",,\"}");
}

static void test_empty_value(void)
{
    check_parse("a=,b=", NULL, "{\"a\":\"\",\"b\":\"\"}");
}

static void test_value_may_hold_equals(void)
{
    check_parse("a=b=c", NULL, "{\"a\":\"b=c\"}");
}

static void test_trailing_comma(void)
{
    check_parse("a=1,", NULL, "{\"a\":\"1\"}");
}

static void test_repeated_key_last_wins(void)
{
    check_parse("a=1,b=2,a=3", NULL, "{\"a\":\"3\",\"b\":\"2\"}");
    check_parse("x.y=1,x.y=2", NULL, "{\"x\":{\"y\":\"2\"}}");
    check_parse("file,driver=raw", "driver", "{\"driver\":\"raw\"}");
}

static void test_list(void)
{
    check_parse("iothread.0=io0,iothread.1=io1", NULL,
                "{\"iothread\":[\"io0\",\"io1\"]}");
}

static void test_list_out_of_order(void)
{
    check_parse("a.2=z,a.0=x,a.1=y", NULL, "{\"a\":[\"x\",\"y\",\"z\"]}");
}

static void test_list_of_objects(void)
{
    check_parse("s.0.host=h0,s.0.port=1,s.1.host=h1", NULL,
                "{\"s\":[{\"host\":\"h0\",\"port\":\"1\"},{\"host\":\"h1\"}]}");
}

static void test_list_nested(void)
{
    check_parse("m.1.0=c,m.0.0=a,m.0.1=b", NULL,
                "{\"m\":[[\"a\",\"b\"],[\"c\"]]}");
}

static void test_top_level_stays_object(void)
{
    check_parse("0=a,1=b", NULL, "{\"0\":\"a\",\"1\":\"b\"}");
}

static void test_list_gap_rejected(void)
{
    check_error("iothread.0=io0,iothread.2=io2", NULL,
                "Parameter 'iothread.1' missing");
}

static void test_list_without_zero_rejected(void)
{
    check_error("a.1=x", NULL, "Parameter 'a.0' missing");
}

static void test_list_huge_index_rejected(void)
{
    check_error("a.0=x,a.99999999999999999999999=y", NULL,
                "Parameter 'a.1' missing");
}

static void test_list_gap_names_full_key(void)
{
    check_error("x.y.0=a,x.y.3=b", NULL, "Parameter 'x.y.1' missing");
}

static void test_list_leading_zero_rejected(void)
{
    check_error("a.01=x", NULL, "Invalid parameter 'a.01'");
}

static void test_list_mixed_with_names_rejected(void)
{
    check_error("a.0=x,a.b=y", NULL, "Parameters 'a.*' used inconsistently");
}

static void test_inconsistent_key(void)
{
    check_error("a=1,a.b=2", NULL, "Parameter 'a' used inconsistently");
}

static void test_inconsistent_key_object_first(void)
{
    check_error("a.b=1,a=2", NULL, "Parameter 'a' used inconsistently");
}

static void test_inconsistent_key_names_full_key(void)
{
    check_error("x.a.b=1,x.a.b.c=2", NULL,
                "Parameter 'x.a.b' used inconsistently");
    check_error("x.a.b.c=1,x.a.b=2", NULL,
                "Parameter 'x.a.b' used inconsistently");
}

static void test_empty_fragment_rejected(void)
{
    check_error("a..b=1", NULL, "Invalid parameter 'a..b'");
    check_error(".a=1", NULL, "Invalid parameter '.a'");
    check_error("a.=1", NULL, "Invalid parameter 'a.'");
}

static void test_empty_key_rejected(void)
{
    check_error("=1", NULL, "Invalid parameter ''");
    check_error("a=1,,,=2", NULL, "Invalid parameter ''");
}

static void test_invalid_key_char_rejected(void)
{
    check_error("a b=1", NULL, "Invalid parameter 'a b'");
    check_error("x=1,a/b=1", NULL, "Invalid parameter 'a/b'");
    check_error("x=1,/dev/sda", NULL, "Invalid parameter '/dev/sda'");
}

static void test_key_chars_accepted(void)
{
    check_parse("Node_name-2=x", NULL, "{\"Node_name-2\":\"x\"}");
}

static void test_deep_nesting_rejected(void)
{
    g_autoptr(GString) ok = g_string_new("a");
    g_autoptr(GString) deep = NULL;
    g_autofree char *msg = NULL;
    struct json_object *obj;

    /* 32 fragments is json-c's default depth limit, and keyval's. */
    for (int i = 1; i < 32; i++) {
        g_string_append(ok, ".a");
    }
    g_string_append(ok, "=x");
    obj = keyval_parse(ok->str, NULL, &error_abort);
    json_object_put(obj);

    deep = g_string_new("a.");
    g_string_append_len(deep, ok->str, ok->len - 2);
    msg = g_strdup_printf("Invalid parameter '%s'", deep->str);
    check_error(deep->str, NULL, msg);
}

static void test_errp_null(void)
{
    g_assert_null(keyval_parse("a..b=1", NULL, NULL));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/keyval/empty-string", test_empty_string);
    g_test_add_func("/keyval/flat-keys", test_flat_keys);
    g_test_add_func("/keyval/dotted-keys-nest", test_dotted_keys_nest);
    g_test_add_func("/keyval/implied-key", test_implied_key);
    g_test_add_func("/keyval/implied-key-not-needed",
                    test_implied_key_not_needed);
    g_test_add_func("/keyval/implied-key-value-is-raw",
                    test_implied_key_value_is_raw);
    g_test_add_func("/keyval/implied-key-only-first",
                    test_implied_key_only_first);
    g_test_add_func("/keyval/bare-without-implied-key",
                    test_bare_without_implied_key);
    g_test_add_func("/keyval/comma-escape", test_comma_escape);
    g_test_add_func("/keyval/empty-value", test_empty_value);
    g_test_add_func("/keyval/value-may-hold-equals",
                    test_value_may_hold_equals);
    g_test_add_func("/keyval/trailing-comma", test_trailing_comma);
    g_test_add_func("/keyval/repeated-key-last-wins",
                    test_repeated_key_last_wins);
    g_test_add_func("/keyval/list", test_list);
    g_test_add_func("/keyval/list-out-of-order", test_list_out_of_order);
    g_test_add_func("/keyval/list-of-objects", test_list_of_objects);
    g_test_add_func("/keyval/list-nested", test_list_nested);
    g_test_add_func("/keyval/top-level-stays-object",
                    test_top_level_stays_object);
    g_test_add_func("/keyval/list-gap-rejected", test_list_gap_rejected);
    g_test_add_func("/keyval/list-without-zero-rejected",
                    test_list_without_zero_rejected);
    g_test_add_func("/keyval/list-huge-index-rejected",
                    test_list_huge_index_rejected);
    g_test_add_func("/keyval/list-gap-names-full-key",
                    test_list_gap_names_full_key);
    g_test_add_func("/keyval/list-leading-zero-rejected",
                    test_list_leading_zero_rejected);
    g_test_add_func("/keyval/list-mixed-with-names-rejected",
                    test_list_mixed_with_names_rejected);
    g_test_add_func("/keyval/inconsistent-key", test_inconsistent_key);
    g_test_add_func("/keyval/inconsistent-key-object-first",
                    test_inconsistent_key_object_first);
    g_test_add_func("/keyval/inconsistent-key-names-full-key",
                    test_inconsistent_key_names_full_key);
    g_test_add_func("/keyval/empty-fragment-rejected",
                    test_empty_fragment_rejected);
    g_test_add_func("/keyval/empty-key-rejected", test_empty_key_rejected);
    g_test_add_func("/keyval/invalid-key-char-rejected",
                    test_invalid_key_char_rejected);
    g_test_add_func("/keyval/key-chars-accepted", test_key_chars_accepted);
    g_test_add_func("/keyval/deep-nesting-rejected",
                    test_deep_nesting_rejected);
    g_test_add_func("/keyval/errp-null", test_errp_null);
    return g_test_run();
}
