/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The worker pool: results come back to the coroutine or the context that
 * submitted, in that context's home thread; many requests from several
 * iothreads at once; the worker cap; shutdown joins every worker.
 * Runs once per AioContext backend.
 */
#include "util/osdep.h"

#include <dirent.h>

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread-pool.h"
#include "util/thread.h"

/* Small, so that the cap is reached and checked. */
#define TEST_MAX_WORKERS 8

static AioContext *ctx;

/* Threads of this process whose name is @name (from /proc/self/task). */
static int count_threads_named(const char *name)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *de;
    int count = 0;

    g_assert_nonnull(dir);
    while ((de = readdir(dir))) {
        g_autofree char *path = NULL;
        g_autofree char *comm = NULL;

        if (de->d_name[0] == '.') {
            continue;
        }
        path = g_strdup_printf("/proc/self/task/%s/comm", de->d_name);
        /* The thread may have exited since readdir(): skip it. */
        if (g_file_get_contents(path, &comm, NULL, NULL) &&
            !strcmp(g_strchomp(comm), name)) {
            count++;
        }
    }
    closedir(dir);
    return count;
}

/* --- Worker functions ---------------------------------------------------- */

typedef struct Work {
    int value;
    pid_t worker_tid;       /* written by the worker */
} Work;

static int double_it(void *opaque)
{
    Work *w = opaque;

    w->worker_tid = gettid();
    g_assert_null(aio_get_current_context());
    return w->value * 2;
}

static int fail_eio(void *opaque)
{
    return -EIO;
}

/* --- Coroutine submission ------------------------------------------------ */

typedef struct CoSubmit {
    Work work;
    int ret;
    int err;
    AioContext *resumed_in;
    bool done;
} CoSubmit;

static void coroutine_fn submit_co_entry(void *opaque)
{
    CoSubmit *s = opaque;

    s->ret = thread_pool_submit_co(double_it, &s->work);
    s->err = thread_pool_submit_co(fail_eio, NULL);
    s->resumed_in = aio_get_current_context();
    s->done = true;
}

static void test_submit_co_returns_result(void)
{
    CoSubmit s = { .work.value = 21 };

    co_enter(co_create(submit_co_entry, &s));
    while (!s.done) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(s.ret, ==, 42);
    g_assert_cmpint(s.err, ==, -EIO);
    g_assert_true(s.resumed_in == ctx);
    /* It ran in a worker, not here. */
    g_assert_cmpint(s.work.worker_tid, >, 0);
    g_assert_cmpint(s.work.worker_tid, !=, gettid());
}

/* --- Callback submission ------------------------------------------------- */

typedef struct CbSubmit {
    Work work;              /* first: double_it() gets the CbSubmit */
    IOThread *io;
    int ret;                /* written in the iothread */
    AioContext *done_ctx;   /* written in the iothread */
    pid_t done_tid;         /* written in the iothread */
    int done;               /* atomic */
} CbSubmit;

static void cb_done(void *opaque, int ret)
{
    CbSubmit *s = opaque;

    s->ret = ret;
    s->done_ctx = aio_get_current_context();
    s->done_tid = gettid();
    /*
     * Pairs with the load-acquire in the test's AIO_WAIT_WHILE() condition:
     * the fields above are visible once done is.  aio_wait_kick() then
     * orders the store before its check for waiters.
     */
    qatomic_store_release(&s->done, 1);
    aio_wait_kick();
}

static void cb_submit_bh(void *opaque)
{
    CbSubmit *s = opaque;

    thread_pool_submit(iothread_get_aio_context(s->io), double_it, s,
                       cb_done);
}

static void test_callback_runs_in_submitting_context(void)
{
    CbSubmit s = { .work.value = 5 };

    GLOBAL_STATE_CODE();
    s.io = iothread_create("pool-cb", 0, &error_abort);
    aio_bh_schedule_oneshot(iothread_get_aio_context(s.io), cb_submit_bh, &s);
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&s.done));

    g_assert_cmpint(s.ret, ==, 10);
    g_assert_true(s.done_ctx == iothread_get_aio_context(s.io));
    g_assert_cmpint(s.done_tid, ==, iothread_get_thread_id(s.io));
    g_assert_cmpint(s.work.worker_tid, !=, s.done_tid);
    iothread_destroy(s.io);
}

/* --- Many requests from two iothreads ------------------------------------ */

#define MANY_COROUTINES 16

typedef struct Many Many;

typedef struct ManyThread {
    Many *many;
    IOThread *io;
    AioContext *io_ctx;     /* immutable once created */
    int n;                  /* requests to submit, half of them by callback */
    int64_t sum;            /* iothread only */
    int wrong_ctx;          /* iothread only */
    int completed;          /* written in the iothread; atomic */
} ManyThread;

struct Many {
    ManyThread t[2];
    /* Worker thread ids seen, for the cap; under lock. */
    BdMutex lock;
    GHashTable *workers;
};

typedef struct ManyReq {
    ManyThread *mt;
    int value;
} ManyReq;

static int many_work(void *opaque)
{
    ManyReq *r = opaque;
    Many *many = r->mt->many;

    bd_mutex_lock(&many->lock);
    g_hash_table_add(many->workers, GINT_TO_POINTER(gettid()));
    bd_mutex_unlock(&many->lock);
    /* Make requests overlap, so that workers pile up to the cap. */
    if (r->value % 64 == 0) {
        g_usleep(1000);
    }
    return r->value;
}

static void many_account(ManyThread *mt, int ret)
{
    if (aio_get_current_context() != mt->io_ctx) {
        mt->wrong_ctx++;
    }
    mt->sum += ret;
    /* Pairs with the load-acquire in test_many_concurrent(); see cb_done(). */
    qatomic_store_release(&mt->completed, mt->completed + 1);
    aio_wait_kick();
}

static void many_cb_done(void *opaque, int ret)
{
    ManyReq *r = opaque;

    many_account(r->mt, ret);
    g_free(r);
}

typedef struct ManyCo {
    ManyThread *mt;
    int first, count;
} ManyCo;

static void coroutine_fn many_co_entry(void *opaque)
{
    ManyCo *mc = opaque;
    int i;

    for (i = 0; i < mc->count; i++) {
        ManyReq r = { .mt = mc->mt, .value = mc->first + i };

        many_account(mc->mt, thread_pool_submit_co(many_work, &r));
    }
    g_free(mc);
}

static void many_start_bh(void *opaque)
{
    ManyThread *mt = opaque;
    int half = mt->n / 2;
    int per_co = half / MANY_COROUTINES;
    int i;

    /* Callback requests: values 0 .. n-half-1, all in flight at once. */
    for (i = 0; i < mt->n - half; i++) {
        ManyReq *r = g_new(ManyReq, 1);

        r->mt = mt;
        r->value = i;
        thread_pool_submit(mt->io_ctx, many_work, r, many_cb_done);
    }
    /* Coroutine requests: values n-half .. n-1, in sequence per coroutine. */
    for (i = 0; i < MANY_COROUTINES; i++) {
        ManyCo *mc = g_new(ManyCo, 1);

        mc->mt = mt;
        mc->first = mt->n - half + i * per_co;
        mc->count = i == MANY_COROUTINES - 1 ? half - i * per_co : per_co;
        co_enter(co_create(many_co_entry, mc));
    }
}

static void test_many_concurrent(void)
{
    Many many = { 0 };
    int n = 1000 * stress_iterations();
    int64_t expected_sum = (int64_t)n * (n - 1) / 2;
    int i;

    GLOBAL_STATE_CODE();
    bd_mutex_init(&many.lock);
    many.workers = g_hash_table_new(NULL, NULL);
    for (i = 0; i < 2; i++) {
        ManyThread *mt = &many.t[i];

        mt->many = &many;
        mt->n = n;
        mt->io = iothread_create(i ? "pool-many1" : "pool-many0",
                                 i ? IOTHREAD_POLL_MAX_NS_DEFAULT : 0,
                                 &error_abort);
        mt->io_ctx = iothread_get_aio_context(mt->io);
    }
    for (i = 0; i < 2; i++) {
        aio_bh_schedule_oneshot(many.t[i].io_ctx, many_start_bh, &many.t[i]);
    }
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&many.t[0].completed) < n ||
                         qatomic_load_acquire(&many.t[1].completed) < n);
    for (i = 0; i < 2; i++) {
        iothread_destroy(many.t[i].io);
        g_assert_cmpint(many.t[i].completed, ==, n);
        g_assert_cmpint(many.t[i].wrong_ctx, ==, 0);
        g_assert_cmpint(many.t[i].sum, ==, expected_sum);
    }
    g_assert_cmpuint(g_hash_table_size(many.workers), >=, 1);
    g_assert_cmpuint(g_hash_table_size(many.workers), <=, TEST_MAX_WORKERS);
    g_hash_table_destroy(many.workers);
    bd_mutex_destroy(&many.lock);
}

/* --- Shutdown ------------------------------------------------------------ */

typedef struct Sleepy {
    int remaining;          /* main thread only */
} Sleepy;

static int sleep_a_bit(void *opaque)
{
    g_usleep(20 * 1000);
    return 0;
}

static void sleepy_done(void *opaque, int ret)
{
    Sleepy *s = opaque;

    g_assert_cmpint(ret, ==, 0);
    s->remaining--;
}

static void run_sleepy_batch(int n)
{
    Sleepy s = { .remaining = n };
    int i;

    for (i = 0; i < n; i++) {
        thread_pool_submit(ctx, sleep_a_bit, &s, sleepy_done);
    }
    while (s.remaining) {
        aio_poll(ctx, true);
    }
}

static void test_shutdown_joins(void)
{
    /* Overlapping requests start several workers; idle, they stay. */
    run_sleepy_batch(4 * TEST_MAX_WORKERS);
    g_assert_cmpint(count_threads_named("pool-worker"), >, 1);

    thread_pool_shutdown();
    /* Joined threads are gone from /proc at once. */
    g_assert_cmpint(count_threads_named("pool-worker"), ==, 0);

    /* The pool starts again on demand, and shuts down again. */
    run_sleepy_batch(2);
    g_assert_cmpint(count_threads_named("pool-worker"), >=, 1);
    thread_pool_shutdown();
    g_assert_cmpint(count_threads_named("pool-worker"), ==, 0);

    /* Shutting down an idle pool is harmless. */
    thread_pool_shutdown();
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    ctx = main_context();
    thread_pool_set_max_workers(TEST_MAX_WORKERS);

    g_test_add_func("/thread-pool/submit-co-returns-result",
                    test_submit_co_returns_result);
    g_test_add_func("/thread-pool/callback-runs-in-submitting-context",
                    test_callback_runs_in_submitting_context);
    g_test_add_func("/thread-pool/many-concurrent", test_many_concurrent);
    g_test_add_func("/thread-pool/shutdown-joins", test_shutdown_joins);

    ret = g_test_run();
    thread_pool_shutdown();
    return ret;
}
