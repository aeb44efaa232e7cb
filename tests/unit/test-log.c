/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging: level names, line format, the BLOCKD_LOG threshold, log_once.
 */
#include "util/osdep.h"

#include "util/log.h"

/*
 * Each test that logs runs in a subprocess, so that the threshold, which is
 * read from the environment once per process, starts unset there.
 */
static bool in_subprocess(void)
{
    if (g_test_subprocess()) {
        return true;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    return false;
}

static void test_parse_level(void)
{
    LogLevel level = LOG_LEVEL_INFO;

    g_assert_true(log_parse_level("error", &level));
    g_assert_cmpint(level, ==, LOG_LEVEL_ERROR);
    g_assert_true(log_parse_level("warning", &level));
    g_assert_cmpint(level, ==, LOG_LEVEL_WARNING);
    g_assert_true(log_parse_level("info", &level));
    g_assert_cmpint(level, ==, LOG_LEVEL_INFO);
    g_assert_true(log_parse_level("debug", &level));
    g_assert_cmpint(level, ==, LOG_LEVEL_DEBUG);
}

static void test_parse_level_rejects_unknown(void)
{
    LogLevel level = LOG_LEVEL_INFO;

    g_assert_false(log_parse_level("verbose", &level));
    g_assert_false(log_parse_level("", &level));
    g_assert_false(log_parse_level("ERROR", &level));
    g_assert_cmpint(level, ==, LOG_LEVEL_INFO);
}

static void test_line_format(void)
{
    if (in_subprocess()) {
        error_report("node '%s': %d", "disk0", 5);
        warn_report("slow");
        info_report("ready");
        return;
    }
    g_test_trap_assert_stderr("blockd: error: node 'disk0': 5\n"
                              "blockd: warning: slow\n"
                              "blockd: info: ready\n");
}

static void test_default_level_is_info(void)
{
    if (in_subprocess()) {
        g_assert_true(log_enabled(LOG_LEVEL_INFO));
        g_assert_false(log_enabled(LOG_LEVEL_DEBUG));
        debug_report("hidden");
        info_report("shown");
        return;
    }
    g_test_trap_assert_stderr("blockd: info: shown\n");
}

static void test_env_sets_level(void)
{
    if (in_subprocess()) {
        g_setenv("BLOCKD_LOG", "debug", TRUE);
        g_assert_true(log_enabled(LOG_LEVEL_DEBUG));
        debug_report("details");
        return;
    }
    g_test_trap_assert_stderr("blockd: debug: details\n");
}

static void test_env_error_hides_warnings(void)
{
    if (in_subprocess()) {
        g_setenv("BLOCKD_LOG", "error", TRUE);
        warn_report("hidden");
        error_report("shown");
        return;
    }
    g_test_trap_assert_stderr("blockd: error: shown\n");
}

static void test_env_read_once(void)
{
    if (in_subprocess()) {
        g_setenv("BLOCKD_LOG", "error", TRUE);
        g_assert_false(log_enabled(LOG_LEVEL_WARNING));
        g_setenv("BLOCKD_LOG", "debug", TRUE);
        g_assert_false(log_enabled(LOG_LEVEL_WARNING));
        return;
    }
    g_test_trap_assert_stderr("");
}

static void test_env_bad_value_warns(void)
{
    if (in_subprocess()) {
        g_setenv("BLOCKD_LOG", "loud", TRUE);
        g_assert_true(log_enabled(LOG_LEVEL_INFO));
        g_assert_false(log_enabled(LOG_LEVEL_DEBUG));
        return;
    }
    g_test_trap_assert_stderr("blockd: warning: BLOCKD_LOG=loud is not error, "
                              "warning, info or debug; using info\n");
}

static void test_set_level_overrides_env(void)
{
    if (in_subprocess()) {
        g_setenv("BLOCKD_LOG", "debug", TRUE);
        log_set_level(LOG_LEVEL_ERROR);
        g_assert_false(log_enabled(LOG_LEVEL_WARNING));
        log_set_level(LOG_LEVEL_DEBUG);
        g_assert_true(log_enabled(LOG_LEVEL_DEBUG));
        return;
    }
    g_test_trap_assert_stderr("");
}

static void test_program_name(void)
{
    if (in_subprocess()) {
        log_set_program_name("blockd-test");
        error_report("one");
        log_set_program_name("other");
        error_report("two");
        return;
    }
    g_test_trap_assert_stderr("blockd-test: error: one\nother: error: two\n");
}

static void test_preserves_errno(void)
{
    if (in_subprocess()) {
        errno = ENOSPC;
        error_report("out of space");
        g_assert_cmpint(errno, ==, ENOSPC);
        return;
    }
    g_test_trap_assert_stderr("blockd: error: out of space\n");
}

static void test_once_logs_once(void)
{
    if (in_subprocess()) {
        for (int i = 0; i < 3; i++) {
            bool first = warn_report_once("deprecated %d", i);

            g_assert_true(first == (i == 0));
        }
        return;
    }
    g_test_trap_assert_stderr("blockd: warning: deprecated 0\n");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* The subprocesses set it themselves where they need it. */
    g_unsetenv("BLOCKD_LOG");

    g_test_add_func("/log/parse-level", test_parse_level);
    g_test_add_func("/log/parse-level-rejects-unknown",
                    test_parse_level_rejects_unknown);
    g_test_add_func("/log/line-format", test_line_format);
    g_test_add_func("/log/default-level-is-info", test_default_level_is_info);
    g_test_add_func("/log/env-sets-level", test_env_sets_level);
    g_test_add_func("/log/env-error-hides-warnings",
                    test_env_error_hides_warnings);
    g_test_add_func("/log/env-read-once", test_env_read_once);
    g_test_add_func("/log/env-bad-value-warns", test_env_bad_value_warns);
    g_test_add_func("/log/set-level-overrides-env",
                    test_set_level_overrides_env);
    g_test_add_func("/log/program-name", test_program_name);
    g_test_add_func("/log/preserves-errno", test_preserves_errno);
    g_test_add_func("/log/once-logs-once", test_once_logs_once);
    return g_test_run();
}
