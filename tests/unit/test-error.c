/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Error objects: setting, chaining, propagation, the abort/fatal sentinels.
 */
#include "util/osdep.h"

#include <sys/wait.h>

#include "util/error.h"

static void test_setg_message_and_class(void)
{
    Error *err = NULL;

    error_setg(&err, "node '%s' has %d parents", "disk0", 2);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "node 'disk0' has 2 parents");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
}

static void test_set_explicit_class(void)
{
    Error *err = NULL;

    error_set(&err, ERROR_CLASS_DEVICE_NOT_FOUND, "No node '%s'", "x");
    g_assert_cmpstr(error_get_pretty(err), ==, "No node 'x'");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_FOUND);
    error_free(err);
}

static void test_class_names(void)
{
    g_assert_cmpstr(error_class_name(ERROR_CLASS_GENERIC_ERROR), ==,
                    "GenericError");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_COMMAND_NOT_FOUND), ==,
                    "CommandNotFound");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_DEVICE_NOT_ACTIVE), ==,
                    "DeviceNotActive");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_DEVICE_NOT_FOUND), ==,
                    "DeviceNotFound");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_KVM_MISSING), ==,
                    "KVMMissing");
}

static void test_setg_errno_appends_strerror(void)
{
    g_autofree char *expected = g_strdup_printf("Could not open 'x': %s",
                                                g_strerror(ENOENT));
    Error *err = NULL;

    error_setg_errno(&err, ENOENT, "Could not open '%s'", "x");
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
}

static void test_setg_errno_accepts_negative(void)
{
    g_autofree char *expected = g_strdup_printf("read: %s", g_strerror(EIO));
    Error *err = NULL;

    error_setg_errno(&err, -EIO, "read");
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    error_free(err);
}

static void test_setg_preserves_errno(void)
{
    Error *err = NULL;

    errno = EBADF;
    error_setg_errno(&err, errno, "close");
    g_assert_cmpint(errno, ==, EBADF);
    error_prepend(&err, "fd 3: ");
    g_assert_cmpint(errno, ==, EBADF);
    error_free(err);
}

static void test_null_errp_ignored(void)
{
    error_setg(NULL, "nobody listens");
    error_setg_errno(NULL, EIO, "nobody listens");
    error_prepend(NULL, "still nobody: ");
}

static void test_prepend_chains(void)
{
    g_autofree char *expected =
        g_strdup_printf("blockdev-add: 'file0': Could not open 'x': %s",
                        g_strerror(ENOENT));
    Error *err = NULL;

    error_setg_errno(&err, ENOENT, "Could not open '%s'", "x");
    error_prepend(&err, "'%s': ", "file0");
    error_prepend(&err, "blockdev-add: ");
    g_assert_cmpstr(error_get_pretty(err), ==, expected);
    error_free(err);
}

static void test_prepend_without_error_is_noop(void)
{
    Error *err = NULL;

    error_prepend(&err, "context: ");
    g_assert_null(err);
}

static void test_propagate_moves(void)
{
    Error *local_err = NULL;
    Error *err = NULL;

    error_setg(&local_err, "inner");
    error_propagate(&err, local_err);
    g_assert_true(err == local_err);
    g_assert_cmpstr(error_get_pretty(err), ==, "inner");
    error_free(err);
}

static void test_propagate_null_is_noop(void)
{
    Error *err = NULL;

    error_propagate(&err, NULL);
    g_assert_null(err);
    error_propagate(&error_abort, NULL);
    error_propagate(&error_fatal, NULL);
}

/* Under LeakSanitizer this fails if the dropped error is not freed. */
static void test_propagate_to_null_frees(void)
{
    Error *local_err = NULL;

    error_setg(&local_err, "dropped");
    error_propagate(NULL, local_err);
}

static void test_propagate_keeps_first(void)
{
    Error *err = NULL;
    Error *second = NULL;

    error_setg(&err, "first");
    error_setg(&second, "second");
    error_propagate(&err, second);
    g_assert_cmpstr(error_get_pretty(err), ==, "first");
    error_free(err);
}

static void test_propagate_prepend(void)
{
    Error *local_err = NULL;
    Error *err = NULL;

    error_setg(&local_err, "eventfd failed");
    error_propagate_prepend(&err, local_err, "iothread '%s': ", "io0");
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "iothread 'io0': eventfd failed");
    error_free(err);

    local_err = NULL;
    error_setg(&local_err, "dropped");
    error_propagate_prepend(NULL, local_err, "context: ");
}

static void test_copy_is_deep(void)
{
    Error *err = NULL;
    Error *copy;

    error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND, "no such command");
    copy = error_copy(err);
    error_prepend(&err, "original: ");
    g_assert_cmpstr(error_get_pretty(copy), ==, "no such command");
    g_assert_cmpint(error_get_class(copy), ==, ERROR_CLASS_COMMAND_NOT_FOUND);
    error_free(err);
    error_free(copy);
}

static void test_free_null_is_noop(void)
{
    error_free(NULL);
}

static void test_free_or_abort_clears(void)
{
    Error *err = NULL;

    error_setg(&err, "expected failure");
    error_free_or_abort(&err);
    g_assert_null(err);
}

static void test_free_or_abort_unset_aborts(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        error_free_or_abort(&err);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
}

static void test_autoptr_frees(void)
{
    g_autoptr(Error) err = NULL;

    error_setg(&err, "freed at the end of the scope");
}

static void test_set_twice_aborts(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        error_setg(&err, "first");
        error_setg(&err, "second");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
}

static void test_abort_aborts(void)
{
    if (g_test_subprocess()) {
        error_setg(&error_abort, "disk on %s", "fire");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("blockd: error: unexpected error at "
                              "*test-error.c:*: disk on fire\n");
}

static void test_propagate_to_abort_aborts(void)
{
    if (g_test_subprocess()) {
        Error *local_err = NULL;

        error_setg(&local_err, "late failure");
        error_propagate(&error_abort, local_err);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*test-error.c:*: late failure\n");
}

/*
 * Run @fn in a forked child with stderr captured, and return its wait
 * status.  GLib's trap API does not expose the exit code.
 */
static int run_captured(void (*fn)(void), GString *captured)
{
    int fds[2];
    char buf[256];
    ssize_t n;
    pid_t pid;
    int status;

    g_assert_no_errno(pipe(fds));
    /* The child's exit() must not flush the parent's buffered output. */
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        fn();
        _exit(99);
    }
    close(fds[1]);
    while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
        if (n < 0) {
            g_assert_cmpint(errno, ==, EINTR);
            continue;
        }
        g_string_append_len(captured, buf, n);
    }
    close(fds[0]);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return status;
}

static void set_fatal_error(void)
{
    error_setg(&error_fatal, "Could not open '%s'", "disk.raw");
}

static void test_fatal_exits_1(void)
{
    g_autoptr(GString) captured = g_string_new(NULL);
    int status = run_captured(set_fatal_error, captured);

    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_cmpstr(captured->str, ==,
                    "blockd: error: Could not open 'disk.raw'\n");
}

static void propagate_fatal_error(void)
{
    Error *local_err = NULL;

    error_setg(&local_err, "bad option");
    error_propagate_prepend(&error_fatal, local_err, "--blockdev: ");
}

static void test_propagate_to_fatal_exits_1(void)
{
    g_autoptr(GString) captured = g_string_new(NULL);
    int status = run_captured(propagate_fatal_error, captured);

    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_cmpstr(captured->str, ==,
                    "blockd: error: --blockdev: bad option\n");
}

static void test_report_err_logs_error(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        error_setg(&err, "export '%s' failed", "exp0");
        error_report_err(err);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("blockd: error: export 'exp0' failed\n");
}

static void test_warn_report_err_logs_warning(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        error_setg(&err, "io_uring unavailable");
        warn_report_err(err);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("blockd: warning: io_uring unavailable\n");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* The report tests expect warnings to be shown. */
    g_unsetenv("BLOCKD_LOG");

    g_test_add_func("/error/setg-message-and-class",
                    test_setg_message_and_class);
    g_test_add_func("/error/set-explicit-class", test_set_explicit_class);
    g_test_add_func("/error/class-names", test_class_names);
    g_test_add_func("/error/setg-errno-appends-strerror",
                    test_setg_errno_appends_strerror);
    g_test_add_func("/error/setg-errno-accepts-negative",
                    test_setg_errno_accepts_negative);
    g_test_add_func("/error/setg-preserves-errno", test_setg_preserves_errno);
    g_test_add_func("/error/null-errp-ignored", test_null_errp_ignored);
    g_test_add_func("/error/prepend-chains", test_prepend_chains);
    g_test_add_func("/error/prepend-without-error-is-noop",
                    test_prepend_without_error_is_noop);
    g_test_add_func("/error/propagate-moves", test_propagate_moves);
    g_test_add_func("/error/propagate-null-is-noop",
                    test_propagate_null_is_noop);
    g_test_add_func("/error/propagate-to-null-frees",
                    test_propagate_to_null_frees);
    g_test_add_func("/error/propagate-keeps-first",
                    test_propagate_keeps_first);
    g_test_add_func("/error/propagate-prepend", test_propagate_prepend);
    g_test_add_func("/error/copy-is-deep", test_copy_is_deep);
    g_test_add_func("/error/free-null-is-noop", test_free_null_is_noop);
    g_test_add_func("/error/free-or-abort-clears", test_free_or_abort_clears);
    g_test_add_func("/error/free-or-abort-unset-aborts",
                    test_free_or_abort_unset_aborts);
    g_test_add_func("/error/autoptr-frees", test_autoptr_frees);
    g_test_add_func("/error/set-twice-aborts", test_set_twice_aborts);
    g_test_add_func("/error/abort-aborts", test_abort_aborts);
    g_test_add_func("/error/propagate-to-abort-aborts",
                    test_propagate_to_abort_aborts);
    g_test_add_func("/error/fatal-exits-1", test_fatal_exits_1);
    g_test_add_func("/error/propagate-to-fatal-exits-1",
                    test_propagate_to_fatal_exits_1);
    g_test_add_func("/error/report-err-logs-error",
                    test_report_err_logs_error);
    g_test_add_func("/error/warn-report-err-logs-warning",
                    test_warn_report_err_logs_warning);
    return g_test_run();
}
