/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pthread wrappers: held-mutex counting, condition variables, thread start.
 */
#include "util/osdep.h"

#include <signal.h>
#include <sys/resource.h>

#include "util/thread.h"

static pthread_t start(const char *name, void *(*fn)(void *), void *arg)
{
    pthread_t thread;

    bd_thread_create(&thread, name, fn, arg, &error_abort);
    return thread;
}

static void test_held_count_tracks_locks(void)
{
    BdMutex a, b;

    bd_mutex_init(&a);
    bd_mutex_init(&b);
    g_assert_cmpint(bd_mutex_held_count(), ==, 0);
    bd_mutex_lock(&a);
    g_assert_cmpint(bd_mutex_held_count(), ==, 1);
    if (!bd_mutex_trylock(&b)) {
        g_assert_not_reached();
    }
    g_assert_cmpint(bd_mutex_held_count(), ==, 2);
    bd_mutex_unlock(&a);
    g_assert_cmpint(bd_mutex_held_count(), ==, 1);
    bd_mutex_unlock(&b);
    g_assert_cmpint(bd_mutex_held_count(), ==, 0);
    bd_mutex_destroy(&a);
    bd_mutex_destroy(&b);
}

typedef struct Holder {
    BdMutex *target;        /* locked by the holder thread */
    BdMutex lock;           /* protects the two flags */
    BdCond cond;
    bool holding;
    bool release;
} Holder;

/* Takes h->target, reports, and keeps it until told to let go. */
static void *holder_thread(void *opaque)
{
    Holder *h = opaque;

    bd_mutex_lock(h->target);
    bd_mutex_lock(&h->lock);
    h->holding = true;
    bd_cond_broadcast(&h->cond);
    while (!h->release) {
        bd_cond_wait(&h->cond, &h->lock);
    }
    bd_mutex_unlock(&h->lock);
    bd_mutex_unlock(h->target);
    return NULL;
}

static void test_trylock_busy_returns_false(void)
{
    BdMutex target;
    Holder h = { .target = &target };
    pthread_t thread;

    bd_mutex_init(&target);
    bd_mutex_init(&h.lock);
    bd_cond_init(&h.cond);
    bd_thread_create(&thread, "holder", holder_thread, &h, &error_abort);

    bd_mutex_lock(&h.lock);
    while (!h.holding) {
        bd_cond_wait(&h.cond, &h.lock);
    }
    bd_mutex_unlock(&h.lock);

    if (bd_mutex_trylock(&target)) {
        bd_mutex_unlock(&target);
        g_assert_not_reached();
    }
    g_assert_cmpint(bd_mutex_held_count(), ==, 0);

    bd_mutex_lock(&h.lock);
    h.release = true;
    bd_cond_broadcast(&h.cond);
    bd_mutex_unlock(&h.lock);
    bd_thread_join(thread);

    bd_cond_destroy(&h.cond);
    bd_mutex_destroy(&h.lock);
    bd_mutex_destroy(&target);
}

static void *count_thread(void *opaque)
{
    return GINT_TO_POINTER(bd_mutex_held_count());
}

static void test_held_count_is_per_thread(void)
{
    BdMutex m;
    pthread_t thread;

    bd_mutex_init(&m);
    bd_mutex_lock(&m);
    bd_thread_create(&thread, "counter", count_thread, NULL, &error_abort);
    g_assert_cmpint(GPOINTER_TO_INT(bd_thread_join(thread)), ==, 0);
    g_assert_cmpint(bd_mutex_held_count(), ==, 1);
    bd_mutex_unlock(&m);
    bd_mutex_destroy(&m);
}

static void test_assert_none_held_passes(void)
{
    bd_mutex_assert_none_held("idle test");
}

/*
 * Returns holding a lock on purpose: the analysis would object.  The lock
 * is taken three lines below held_line's definition.
 */
static const int held_line = __LINE__ + 3;
static void lock_for_report(BdMutex *m) TSA_NO_TSA
{
    bd_mutex_lock(m);
}

static void test_assert_none_held_aborts(void)
{
    if (g_test_subprocess()) {
        BdMutex m;

        bd_mutex_init(&m);
        lock_for_report(&m);
        bd_mutex_assert_none_held("bh 'flush-cb'");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*bh 'flush-cb': returned holding 1 mutex*");
#ifndef NDEBUG
    /* Debug builds name the lock and where it was taken. */
    {
        g_autofree char *want = g_strdup_printf(
            "*'m' locked at *tests/unit/test-thread.c:%d in "
            "lock_for_report()*", held_line);

        g_test_trap_assert_stderr(want);
    }
#endif
}

/*
 * The held list follows unlocks in any order: after a, b, c and unlocking
 * b, the report names a and c, in the order taken.
 */
static void test_held_list_out_of_order_unlock(void) TSA_NO_TSA
{
#ifdef NDEBUG
    g_test_skip("the held list is a debug-build feature");
#else
    if (g_test_subprocess()) {
        BdMutex a, b, c;

        bd_mutex_init(&a);
        bd_mutex_init(&b);
        bd_mutex_init(&c);
        bd_mutex_lock(&a);
        bd_mutex_lock(&b);
        if (!bd_mutex_trylock(&c)) {
            g_assert_not_reached();
        }
        bd_mutex_unlock(&b);
        bd_mutex_assert_none_held("timer 'tick'");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*timer 'tick': returned holding 2 mutex(es): "
                              "'&a' locked at *test-thread.c:* in "
                              "test_held_list_out_of_order_unlock(); "
                              "'&c' locked at *test-thread.c:* in "
                              "test_held_list_out_of_order_unlock()*");
#endif
}

/*
 * More locks than the list records: the count stays right, and a lock
 * that was not recorded says so instead of naming a wrong site.
 */
static void test_held_list_beyond_capacity(void) TSA_NO_TSA
{
#ifdef NDEBUG
    g_test_skip("the held list is a debug-build feature");
#else
    enum { N = 17 };    /* one more than util/thread.c records */

    if (g_test_subprocess()) {
        BdMutex m[N];

        for (int i = 0; i < N; i++) {
            bd_mutex_init(&m[i]);
            bd_mutex_lock(&m[i]);
        }
        bd_mutex_unlock(&m[0]);
        g_assert_cmpint(bd_mutex_held_count(), ==, N - 1);
        bd_mutex_assert_held_at_most(N - 3, "deep", "returned");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*deep: returned holding 2 mutex(es): "
                              "'&m[i]' locked at *test-thread.c:* in "
                              "test_held_list_beyond_capacity(); "
                              "(site not recorded)*");
#endif
}

/* Takes a lock twice on purpose: the analysis would object. */
static void test_double_lock_aborts(void) TSA_NO_TSA
{
#ifdef NDEBUG
    g_test_skip("error-checking mutexes are a debug-build feature");
#else
    if (g_test_subprocess()) {
        BdMutex m;

        bd_mutex_init(&m);
        bd_mutex_lock(&m);
        bd_mutex_lock(&m);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*pthread_mutex_lock failed: *");
#endif
}

static void test_cond_timedwait_times_out(void)
{
    BdMutex m;
    BdCond c;
    int64_t deadline;

    bd_mutex_init(&m);
    bd_cond_init(&c);
    bd_mutex_lock(&m);
    deadline = get_clock_ns() + 10 * 1000 * 1000;
    /* A spurious wake-up may return true early: wait out the deadline. */
    while (bd_cond_timedwait_ns(&c, &m, deadline)) {
        g_assert_cmpint(get_clock_ns(), <, deadline);
    }
    g_assert_cmpint(get_clock_ns(), >=, deadline);
    bd_mutex_unlock(&m);
    bd_cond_destroy(&c);
    bd_mutex_destroy(&m);
}

static void test_cond_timedwait_past_deadline(void)
{
    BdMutex m;
    BdCond c;

    bd_mutex_init(&m);
    bd_cond_init(&c);
    bd_mutex_lock(&m);
    g_assert_false(bd_cond_timedwait_ns(&c, &m, 0));
    g_assert_false(bd_cond_timedwait_ns(&c, &m, -1));
    bd_mutex_unlock(&m);
    bd_cond_destroy(&c);
    bd_mutex_destroy(&m);
}

typedef struct Signaller {
    BdMutex lock;
    BdCond cond;
    bool done;
} Signaller;

static void *signaller_thread(void *opaque)
{
    Signaller *s = opaque;

    bd_mutex_lock(&s->lock);
    s->done = true;
    bd_cond_signal(&s->cond);
    bd_mutex_unlock(&s->lock);
    return NULL;
}

static void test_cond_signal_wakes(void)
{
    Signaller s = { .done = false };
    int64_t deadline;
    pthread_t thread;

    bd_mutex_init(&s.lock);
    bd_cond_init(&s.cond);
    bd_thread_create(&thread, "signaller", signaller_thread, &s,
                     &error_abort);
    /* Generous: the point is that the waiter wakes, not how fast. */
    deadline = get_clock_ns() + 60LL * 1000 * 1000 * 1000;
    bd_mutex_lock(&s.lock);
    while (!s.done) {
        g_assert_true(bd_cond_timedwait_ns(&s.cond, &s.lock, deadline));
    }
    bd_mutex_unlock(&s.lock);
    bd_thread_join(thread);
    bd_cond_destroy(&s.cond);
    bd_mutex_destroy(&s.lock);
}

static void *name_thread(void *opaque)
{
    char *name = g_malloc0(64);

    g_assert_cmpint(pthread_getname_np(pthread_self(), name, 64), ==, 0);
    return name;
}

static void test_create_names_thread(void)
{
    g_autofree char *name = NULL;

    name = bd_thread_join(start("short", name_thread, NULL));
    g_assert_cmpstr(name, ==, "short");
    g_free(name);
    name = bd_thread_join(start("iothread-io0-with-long-id", name_thread,
                                NULL));
    g_assert_cmpstr(name, ==, "iothread-io0-wi");
}

static void *mask_thread(void *opaque)
{
    sigset_t *mask = opaque;

    g_assert_cmpint(pthread_sigmask(SIG_BLOCK, NULL, mask), ==, 0);
    return NULL;
}

static void test_create_blocks_signals(void)
{
    sigset_t before, after, in_thread;

    g_assert_cmpint(pthread_sigmask(SIG_BLOCK, NULL, &before), ==, 0);
    g_assert_false(sigismember(&before, SIGTERM));
    bd_thread_join(start("masked", mask_thread, &in_thread));
    g_assert_true(sigismember(&in_thread, SIGINT));
    g_assert_true(sigismember(&in_thread, SIGTERM));
    g_assert_true(sigismember(&in_thread, SIGHUP));
    g_assert_true(sigismember(&in_thread, SIGUSR1));

    /* The creator's own mask is left as it was. */
    g_assert_cmpint(pthread_sigmask(SIG_BLOCK, NULL, &after), ==, 0);
    g_assert_false(sigismember(&after, SIGTERM));
    g_assert_false(sigismember(&after, SIGINT));
}

static void *double_thread(void *opaque)
{
    return GINT_TO_POINTER(GPOINTER_TO_INT(opaque) * 2);
}

static void test_join_returns_result(void)
{
    pthread_t thread = start("double", double_thread, GINT_TO_POINTER(21));

    g_assert_cmpint(GPOINTER_TO_INT(bd_thread_join(thread)), ==, 42);
}

/* The process's address space in bytes (first field of statm). */
static uint64_t vm_size(void)
{
    g_autofree char *statm = NULL;

    g_assert_true(g_file_get_contents("/proc/self/statm", &statm, NULL,
                                      NULL));
    return g_ascii_strtoull(statm, NULL, 10) * sysconf(_SC_PAGESIZE);
}

static void *return_arg_thread(void *opaque)
{
    return opaque;
}

/*
 * With no room for a thread's stack, bd_thread_create() fails with an
 * error naming the thread instead of aborting, and works again once there
 * is room.  In a subprocess, so that the limit stays there.  (Root is
 * not bound by RLIMIT_NPROC, but everyone is by RLIMIT_AS.)
 */
static void test_create_fails_cleanly(void)
{
#if defined(CONFIG_ASAN) || defined(CONFIG_TSAN)
    /* Their allocators reserve address space as they please. */
    g_test_skip("RLIMIT_AS under a sanitizer");
    return;
#endif
    if (g_test_subprocess()) {
        struct rlimit old, low;
        pthread_t thread;
        Error *err = NULL;

        g_assert_cmpint(getrlimit(RLIMIT_AS, &old), ==, 0);
        low = old;
        /* 1 MiB to spare: less than a default stack (8 MiB). */
        low.rlim_cur = vm_size() + (1 << 20);
        g_assert_cmpint(setrlimit(RLIMIT_AS, &low), ==, 0);
        g_assert_false(bd_thread_create(&thread, "nostack",
                                        return_arg_thread, NULL, &err));
        g_assert_cmpint(setrlimit(RLIMIT_AS, &old), ==, 0);
        g_assert_nonnull(err);
        g_assert_true(g_str_has_prefix(error_get_pretty(err),
                                       "Cannot create thread 'nostack': "));
        error_free(err);
        g_assert_cmpint(GPOINTER_TO_INT(bd_thread_join(
            start("roomy", return_arg_thread, GINT_TO_POINTER(7)))), ==, 7);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_passed();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/thread/create-fails-cleanly",
                    test_create_fails_cleanly);
    g_test_add_func("/thread/held-count-tracks-locks",
                    test_held_count_tracks_locks);
    g_test_add_func("/thread/trylock-busy-returns-false",
                    test_trylock_busy_returns_false);
    g_test_add_func("/thread/held-count-is-per-thread",
                    test_held_count_is_per_thread);
    g_test_add_func("/thread/assert-none-held-passes",
                    test_assert_none_held_passes);
    g_test_add_func("/thread/assert-none-held-aborts",
                    test_assert_none_held_aborts);
    g_test_add_func("/thread/held-list-out-of-order-unlock",
                    test_held_list_out_of_order_unlock);
    g_test_add_func("/thread/held-list-beyond-capacity",
                    test_held_list_beyond_capacity);
    g_test_add_func("/thread/double-lock-aborts", test_double_lock_aborts);
    g_test_add_func("/thread/cond-timedwait-times-out",
                    test_cond_timedwait_times_out);
    g_test_add_func("/thread/cond-timedwait-past-deadline",
                    test_cond_timedwait_past_deadline);
    g_test_add_func("/thread/cond-signal-wakes", test_cond_signal_wakes);
    g_test_add_func("/thread/create-names-thread", test_create_names_thread);
    g_test_add_func("/thread/create-blocks-signals",
                    test_create_blocks_signals);
    g_test_add_func("/thread/join-returns-result", test_join_returns_result);
    return g_test_run();
}
