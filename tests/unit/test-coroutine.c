/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutines: enter/yield, nesting, the pool, wake-up order, migration
 * between iothreads, and the aborts that catch misuse.
 */
#include "util/osdep.h"

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

/* --- Basics -------------------------------------------------------------- */

static void coroutine_fn yield_twice(void *opaque)
{
    GString *log = opaque;

    g_string_append(log, "a");
    co_yield();
    g_string_append(log, "b");
    co_yield();
    g_string_append(log, "c");
}

static void test_enter_yield_enter(void)
{
    GString *log = g_string_new("");
    Coroutine *co = co_create(yield_twice, log);

    g_assert_false(in_coroutine());
    co_enter(co);
    g_assert_cmpstr(log->str, ==, "a");
    g_assert_true(co_entered(co) == false);
    co_enter(co);
    g_assert_cmpstr(log->str, ==, "ab");
    co_enter(co);       /* terminates and goes back to the pool */
    g_assert_cmpstr(log->str, ==, "abc");
    g_string_free(log, true);
}

static void coroutine_fn check_self(void *opaque)
{
    Coroutine **out = opaque;

    g_assert_true(in_coroutine());
    *out = co_self();
    g_assert_true(co_entered(co_self()));
    g_assert_true(co_get_ctx(co_self()) == main_context());
}

static void test_self_and_in_coroutine(void)
{
    Coroutine *seen = NULL;
    Coroutine *co = co_create(check_self, &seen);

    co_enter(co);
    g_assert_true(seen == co);
    g_assert_null(co_self());
}

typedef struct Nest {
    GString *log;
    Coroutine *inner;
} Nest;

static void coroutine_fn nest_inner(void *opaque)
{
    Nest *n = opaque;

    g_string_append(n->log, "i1");
    co_yield();         /* back to the outer coroutine */
    g_string_append(n->log, "i2");
}

static void coroutine_fn nest_outer(void *opaque)
{
    Nest *n = opaque;

    g_string_append(n->log, "o1");
    n->inner = co_create(nest_inner, n);
    co_enter(n->inner);
    g_string_append(n->log, "o2");
    co_yield();
    co_enter(n->inner);
    g_string_append(n->log, "o3");
}

static void test_nested(void)
{
    Nest n = { .log = g_string_new("") };
    Coroutine *co = co_create(nest_outer, &n);

    co_enter(co);
    g_assert_cmpstr(n.log->str, ==, "o1i1o2");
    co_enter(co);
    g_assert_cmpstr(n.log->str, ==, "o1i1o2i2o3");
    g_string_free(n.log, true);
}

static void coroutine_fn noop_entry(void *opaque)
{
    (*(int *)opaque)++;
}

static void test_pool_reuse(void)
{
    CoroutineStats before, after;
    int runs = 0;
    int i;

    co_enter(co_create(noop_entry, &runs));     /* warm the pool */
    co_get_stats(&before);
    for (i = 0; i < 10000; i++) {
        co_enter(co_create(noop_entry, &runs));
    }
    co_get_stats(&after);
    g_assert_cmpint(runs, ==, 10001);
    g_assert_cmpuint(after.created - before.created, ==, 10000);
    /* Every one of them reused the stack of the one before. */
    g_assert_cmpuint(after.allocated - before.allocated, ==, 0);
}

static void coroutine_fn park_forever(void *opaque)
{
    Coroutine **slot = opaque;

    *slot = co_self();
    co_yield();
    *slot = NULL;
}

static void test_many_suspended(void)
{
    int n = 2000;
    Coroutine **slots = g_new0(Coroutine *, n);
    int i;

    for (i = 0; i < n; i++) {
        co_enter(co_create(park_forever, &slots[i]));
        g_assert_nonnull(slots[i]);
    }
    for (i = 0; i < n; i++) {
        co_enter(slots[i]);
        g_assert_null(slots[i]);
    }
    g_free(slots);
}

/* --- Wake-up order ------------------------------------------------------- */

typedef struct WakeOrder {
    GString *log;
    Coroutine *b, *c;
} WakeOrder;

static void coroutine_fn wake_sleeper(void *opaque)
{
    char **arg = opaque;
    GString *log = (GString *)arg[0];

    co_yield();
    g_string_append(log, arg[1]);
}

static void coroutine_fn wake_waker(void *opaque)
{
    WakeOrder *w = opaque;

    aio_co_wake(w->b);
    aio_co_wake(w->c);
    /* Woken coroutines run after we yield, not inside this call. */
    g_string_append(w->log, "A");
}

static void test_wake_runs_after_waker_yields(void)
{
    WakeOrder w = { .log = g_string_new("") };
    char *b[2] = { (char *)w.log, "B" }, *c[2] = { (char *)w.log, "C" };

    w.b = co_create(wake_sleeper, b);
    w.c = co_create(wake_sleeper, c);
    co_enter(w.b);
    co_enter(w.c);
    co_enter(co_create(wake_waker, &w));
    g_assert_cmpstr(w.log->str, ==, "ABC");
    g_string_free(w.log, true);
}

/* --- Across threads ------------------------------------------------------ */

typedef struct Hop {
    IOThread *io[2];
    int hops;
    int done;               /* atomic */
    bool ok;
} Hop;

static void coroutine_fn hop_entry(void *opaque)
{
    Hop *h = opaque;
    int i;

    for (i = 0; i < h->hops; i++) {
        AioContext *target = iothread_get_aio_context(h->io[i % 2]);

        aio_co_reschedule_self(target);
        /* The thread-local context must be re-read after the move. */
        if (aio_get_current_context() != target ||
            co_get_ctx(co_self()) != target) {
            h->ok = false;
        }
    }
    aio_co_reschedule_self(main_context());
    h->ok = h->ok && aio_get_current_context() == main_context();
    qatomic_set(&h->done, 1);
}

static void test_migrate_between_iothreads(void)
{
    Hop h = { .hops = 2000 * stress_iterations(), .ok = true };

    GLOBAL_STATE_CODE();
    h.io[0] = iothread_create("hop0", 0, &error_abort);
    h.io[1] = iothread_create("hop1", 0, &error_abort);
    co_enter(co_create(hop_entry, &h));
    AIO_WAIT_WHILE(NULL, !qatomic_read(&h.done));
    g_assert_true(h.ok);
    iothread_destroy(h.io[0]);
    iothread_destroy(h.io[1]);
}

typedef struct CrossWake {
    IOThread *io;
    Coroutine *co;          /* atomic: published once parked */
    int resumed;            /* atomic */
    AioContext *resumed_in;
} CrossWake;

static void coroutine_fn cross_sleeper(void *opaque)
{
    CrossWake *cw = opaque;

    qatomic_store_release(&cw->co, co_self());
    aio_wait_kick();
    co_yield();
    cw->resumed_in = aio_get_current_context();
    qatomic_store_release(&cw->resumed, 1);
    aio_wait_kick();
}

static void start_sleeper_bh(void *opaque)
{
    co_enter(co_create(cross_sleeper, opaque));
}

static void test_wake_from_other_thread(void)
{
    CrossWake cw = { 0 };
    int i;

    GLOBAL_STATE_CODE();
    cw.io = iothread_create("sleeper", 0, &error_abort);
    for (i = 0; i < 500 * stress_iterations(); i++) {
        qatomic_set(&cw.co, NULL);
        qatomic_set(&cw.resumed, 0);
        aio_bh_schedule_oneshot(iothread_get_aio_context(cw.io),
                                start_sleeper_bh, &cw);
        AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&cw.co));
        /* Main thread wakes a coroutine that parked in the iothread. */
        aio_co_wake(cw.co);
        AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&cw.resumed));
        g_assert_true(cw.resumed_in == iothread_get_aio_context(cw.io));
    }
    iothread_destroy(cw.io);
}

/* --- Misuse aborts ------------------------------------------------------- */

static void coroutine_fn parked(void *opaque)
{
    co_yield();
}

static void test_double_schedule_aborts(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = co_create(parked, NULL);

        co_enter(co);
        aio_co_schedule(main_context(), co);
        aio_co_schedule(main_context(), co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*already scheduled in "
                              "'test_double_schedule_aborts'*");
}

static void coroutine_fn enter_self(void *opaque)
{
    co_enter(co_self());
}

static void test_reenter_aborts(void)
{
    if (g_test_subprocess()) {
        co_enter(co_create(enter_self, NULL));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*re-entered recursively*");
}

/* Far deeper than any stack: the compiler cannot tell it never ends. */
static volatile long recursion_limit = G_MAXLONG;

static int coroutine_fn NOINLINE recurse(volatile char *prev, long depth)
{
    volatile char frame[4096];

    frame[0] = prev ? prev[0] + 1 : 0;
    if (depth >= recursion_limit) {
        return frame[0];
    }
    return recurse(frame, depth + 1) + frame[0];
}

static void coroutine_fn overflow_entry(void *opaque)
{
    recurse(NULL, 0);
}

static void test_stack_overflow_hits_guard(void)
{
    if (g_test_subprocess()) {
        co_enter(co_create(overflow_entry, NULL));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    /* SIGSEGV on the guard page (or the sanitizer's report of it). */
    g_test_trap_assert_failed();
}

/* --- No BdMutex across a yield ------------------------------------------ */

static BdMutex co_test_lock;

/* Takes co_test_lock three lines below locker_line; keep it there. */
static const int locker_line = __LINE__ + 3;
static void coroutine_fn lock_then(void *opaque) TSA_NO_TSA
{
    bd_mutex_lock(&co_test_lock);
    if (opaque) {
        co_yield();
    }
}

/* A bottom half that enters the coroutine, as an I/O completion would. */
static void enter_locker_bh(void *opaque)
{
    co_enter(co_create(lock_then, opaque));
}

static void run_locker_in_bh(bool yield)
{
    bd_mutex_init(&co_test_lock);
    aio_bh_schedule_oneshot(main_context(), enter_locker_bh,
                            yield ? "yield" : NULL);
    settle();           /* run it */
}

static void assert_names_locker(const char *event)
{
    g_autofree char *want = NULL;

#ifndef NDEBUG
    want = g_strdup_printf("*coroutine 0x*: %s holding 1 mutex(es): "
                           "'&co_test_lock' locked at "
                           "*tests/unit/test-coroutine.c:%d in lock_then()*",
                           event, locker_line);
#else
    want = g_strdup_printf("*coroutine 0x*: %s holding 1 mutex(es)*", event);
#endif
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(want);
}

/*
 * Caught at the yield, naming the lock, not later against the bottom half
 * that entered the coroutine.
 */
static void test_yield_holding_bd_mutex_aborts(void)
{
    if (g_test_subprocess()) {
        run_locker_in_bh(true);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    assert_names_locker("yielded");
}

static void test_terminate_holding_bd_mutex_aborts(void)
{
    if (g_test_subprocess()) {
        run_locker_in_bh(false);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    assert_names_locker("terminated");
}

/*
 * Locks that the entering thread holds are its own, not the coroutine's:
 * the coroutine may yield under them.
 */
static void test_yield_under_enterers_bd_mutex(void)
{
    GString *log = g_string_new("");
    Coroutine *co = co_create(yield_twice, log);
    BdMutex m;

    bd_mutex_init(&m);
    bd_mutex_lock(&m);
    co_enter(co);
    co_enter(co);
    bd_mutex_unlock(&m);
    co_enter(co);
    g_assert_cmpstr(log->str, ==, "abc");
    g_string_free(log, true);
    bd_mutex_destroy(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();

    g_test_add_func("/coroutine/enter-yield-enter", test_enter_yield_enter);
    g_test_add_func("/coroutine/self-and-in-coroutine",
                    test_self_and_in_coroutine);
    g_test_add_func("/coroutine/nested", test_nested);
    g_test_add_func("/coroutine/pool-reuse", test_pool_reuse);
    g_test_add_func("/coroutine/many-suspended", test_many_suspended);
    g_test_add_func("/coroutine/wake-runs-after-waker-yields",
                    test_wake_runs_after_waker_yields);
    g_test_add_func("/coroutine/migrate-between-iothreads",
                    test_migrate_between_iothreads);
    g_test_add_func("/coroutine/wake-from-other-thread",
                    test_wake_from_other_thread);
    g_test_add_func("/coroutine/double-schedule-aborts",
                    test_double_schedule_aborts);
    g_test_add_func("/coroutine/reenter-aborts", test_reenter_aborts);
    g_test_add_func("/coroutine/yield-holding-bd-mutex-aborts",
                    test_yield_holding_bd_mutex_aborts);
    g_test_add_func("/coroutine/terminate-holding-bd-mutex-aborts",
                    test_terminate_holding_bd_mutex_aborts);
    g_test_add_func("/coroutine/yield-under-enterers-bd-mutex",
                    test_yield_under_enterers_bd_mutex);
    g_test_add_func("/coroutine/stack-overflow-hits-guard",
                    test_stack_overflow_hits_guard);
    return g_test_run();
}
