/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Deferred main-loop work and safe points (util/aio-wait.h): deferred work
 * never runs inside AIO_WAIT_WHILE(), runs as soon as the last such wait
 * ends, runs inside AIO_WAIT_WHILE_RUNNING_DEFERRED(), keeps its order
 * (also when deferred from an iothread), and a RUNNING_DEFERRED wait
 * inside a wait that holds deferred work back aborts, loudly.
 */
#include "util/osdep.h"

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"

/* What ran, in order: "a b c". */
static GString *ran;

static void record_cb(void *opaque)
{
    g_assert_true(in_main_thread());
    g_string_append_printf(ran, "%s%s", ran->len ? " " : "",
                           (const char *)opaque);
}

/* A flag a bottom half sets, so that a wait has something to wait for. */
static int flag;                    /* atomic */

static void set_flag_bh(void *opaque)
{
    qatomic_set(&flag, 1);
    aio_wait_kick();
}

static void test_deferred_waits_for_plain_wait(void)
{
    g_string_truncate(ran, 0);
    qatomic_set(&flag, 0);
    g_assert_true(aio_wait_at_safe_point());

    /* Queued before the wait begins: its bottom half runs in the wait. */
    aio_wait_defer(record_cb, "deferred");
    aio_bh_schedule_oneshot(main_context(), set_flag_bh, NULL);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&flag));
    g_assert_cmpstr(ran->str, ==, "");

    /* The end of the wait lets it run at the next iteration. */
    g_assert_true(aio_wait_at_safe_point());
    settle();
    g_assert_cmpstr(ran->str, ==, "deferred");
}

/* A bottom half that waits itself: nested plain waits hold back too. */
static void nested_wait_bh(void *opaque)
{
    g_assert_false(aio_wait_at_safe_point());
    aio_wait_defer(record_cb, opaque);
    aio_bh_schedule_oneshot(main_context(), set_flag_bh, NULL);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&flag));
    g_assert_cmpstr(ran->str, ==, "");
}

static int outer_done;

static void outer_done_bh(void *opaque)
{
    outer_done = 1;
}

static void test_deferred_waits_for_nested_waits(void)
{
    g_string_truncate(ran, 0);
    qatomic_set(&flag, 0);
    outer_done = 0;
    aio_bh_schedule_oneshot(main_context(), nested_wait_bh, "inner");
    aio_bh_schedule_oneshot(main_context(), outer_done_bh, NULL);
    AIO_WAIT_WHILE(NULL, !outer_done);
    g_assert_cmpstr(ran->str, ==, "");
    settle();
    g_assert_cmpstr(ran->str, ==, "inner");
}

static void test_deferred_runs_in_running_deferred_wait(void)
{
    g_string_truncate(ran, 0);
    aio_wait_defer(record_cb, "a");
    aio_wait_defer(record_cb, "b");
    AIO_WAIT_WHILE_RUNNING_DEFERRED(strcmp(ran->str, "a b") != 0);
    g_assert_cmpstr(ran->str, ==, "a b");
}

/* Deferred work that waits with a plain wait holds the rest back. */
static void waiting_item_cb(void *opaque)
{
    g_assert_true(aio_wait_at_safe_point());
    record_cb("first");
    aio_bh_schedule_oneshot(main_context(), set_flag_bh, NULL);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&flag));
    g_assert_cmpstr(ran->str, ==, "first");
    record_cb("first-done");
}

static void test_deferred_item_waits_alone(void)
{
    g_string_truncate(ran, 0);
    qatomic_set(&flag, 0);
    aio_wait_defer(waiting_item_cb, NULL);
    aio_wait_defer(record_cb, "second");
    AIO_WAIT_WHILE_RUNNING_DEFERRED(!strstr(ran->str, "second"));
    g_assert_cmpstr(ran->str, ==, "first first-done second");
}

typedef struct FromThread {
    int done;                       /* atomic */
} FromThread;

static void defer_from_iothread_bh(void *opaque)
{
    FromThread *f = opaque;

    g_assert_false(in_main_thread());
    aio_wait_defer(record_cb, "t1");
    aio_wait_defer(record_cb, "t2");
    aio_wait_defer(record_cb, "t3");
    qatomic_set(&f->done, 1);
    aio_wait_kick();
}

static void test_deferred_from_iothread_keeps_order(void)
{
    GLOBAL_STATE_CODE();
    IOThread *io = iothread_create("io0", 0, &error_abort);
    FromThread f = { 0 };

    g_string_truncate(ran, 0);
    aio_bh_schedule_oneshot(iothread_get_aio_context(io),
                            defer_from_iothread_bh, &f);
    /* Plain wait: the items arrive meanwhile but must not run. */
    AIO_WAIT_WHILE(NULL, !qatomic_read(&f.done));
    g_assert_cmpstr(ran->str, ==, "");
    AIO_WAIT_WHILE_RUNNING_DEFERRED(strcmp(ran->str, "t1 t2 t3") != 0);
    iothread_destroy(io);
}

static void running_deferred_inside_plain_bh(void *opaque)
{
    AIO_WAIT_WHILE_RUNNING_DEFERRED(false);
    outer_done = 1;
}

static void test_running_deferred_inside_plain_wait_aborts(void)
{
    if (g_test_subprocess()) {
        aio_bh_schedule_oneshot(main_context(),
                                running_deferred_inside_plain_bh, NULL);
        AIO_WAIT_WHILE(NULL, !outer_done);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*AIO_WAIT_WHILE_RUNNING_DEFERRED() inside 1 "
                              "wait(s) that hold deferred work back*");
}

static void test_teardown_with_deferred_work_aborts(void)
{
    if (g_test_subprocess()) {
        aio_bh_schedule_oneshot(main_context(), set_flag_bh, NULL);
        AIO_WAIT_WHILE(NULL, (aio_wait_defer(record_cb, "left"),
                              !qatomic_read(&flag)));
        /* Never polled again: the item is still queued at teardown. */
        main_loop_cleanup();
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*deferred work pending: record_cb*");
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    ran = g_string_new(NULL);
    g_test_add_func("/aio-wait/deferred/waits-for-plain-wait",
                    test_deferred_waits_for_plain_wait);
    g_test_add_func("/aio-wait/deferred/waits-for-nested-waits",
                    test_deferred_waits_for_nested_waits);
    g_test_add_func("/aio-wait/deferred/runs-in-running-deferred-wait",
                    test_deferred_runs_in_running_deferred_wait);
    g_test_add_func("/aio-wait/deferred/item-waits-alone",
                    test_deferred_item_waits_alone);
    g_test_add_func("/aio-wait/deferred/from-iothread-keeps-order",
                    test_deferred_from_iothread_keeps_order);
    g_test_add_func("/aio-wait/deferred/running-deferred-inside-plain-aborts",
                    test_running_deferred_inside_plain_wait_aborts);
    g_test_add_func("/aio-wait/deferred/teardown-with-work-aborts",
                    test_teardown_with_deferred_work_aborts);
    ret = g_test_run();
    settle();
    g_string_free(ran, true);
    main_loop_cleanup();
    return ret;
}
