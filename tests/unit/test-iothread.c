/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iothreads and their properties: start and stop, and QEMU's poll-max-ns,
 * poll-grow, poll-shrink and aio-max-batch put into effect in the
 * iothread's AioContext, on the backend BLOCKD_AIO_BACKEND selects; and
 * the teardown of an iothread's context and of the main loop, which runs
 * what is still queued.
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"

typedef struct WaitFlag {
    IOThread *io;
    int done;       /* atomic */
} WaitFlag;

/* --- iothreads ----------------------------------------------------------- */

static void test_iothread_start_stop_loop(void)
{
    int i;

    GLOBAL_STATE_CODE();
    for (i = 0; i < 100; i++) {
        IOThread *io = iothread_create(
            "loop", i % 2 ? IOTHREAD_POLL_MAX_NS_DEFAULT : 0, &error_abort);

        g_assert_cmpint(iothread_get_thread_id(io), >, 0);
        g_assert_cmpstr(iothread_get_id(io), ==, "loop");
        ctx_sync(iothread_get_aio_context(io));
        iothread_destroy(io);
    }
}

static void test_iothread_poll_max_ns(void)
{
    IOThread *io;

    GLOBAL_STATE_CODE();
    io = iothread_create("poll", IOTHREAD_POLL_MAX_NS_DEFAULT, &error_abort);
    g_assert_cmpint(iothread_get_poll_max_ns(io), ==,
                    IOTHREAD_POLL_MAX_NS_DEFAULT);
    iothread_set_poll_max_ns(io, 100000);
    g_assert_cmpint(iothread_get_poll_max_ns(io), ==, 100000);
    /* Still serves bottom halves with busy polling on. */
    ctx_sync(iothread_get_aio_context(io));
    iothread_destroy(io);
}

/* The iothread's context has the properties set on the iothread. */
typedef struct ParamsCheck {
    WaitFlag w;
    int64_t max_ns, grow, shrink;   /* read in the iothread */
} ParamsCheck;

static void read_params_bh(void *opaque)
{
    ParamsCheck *c = opaque;

    aio_context_get_poll_params(aio_get_current_context(), &c->max_ns,
                                &c->grow, &c->shrink);
    qatomic_set(&c->w.done, 1);
    aio_wait_kick();
}

static void test_iothread_params_applied(void)
{
    IOThreadParams set = { 50000, 3, 5, 8 }, got;
    ParamsCheck c = { 0 };

    GLOBAL_STATE_CODE();
    c.w.io = iothread_create("params", 0, &error_abort);
    iothread_set_params(c.w.io, &set);
    iothread_get_params(c.w.io, &got);
    g_assert_cmpmem(&got, sizeof(got), &set, sizeof(set));
    /* After the applying bottom half (FIFO). */
    aio_bh_schedule_oneshot(iothread_get_aio_context(c.w.io), read_params_bh,
                            &c);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&c.w.done));
    g_assert_cmpint(c.max_ns, ==, 50000);
    g_assert_cmpint(c.grow, ==, 3);
    g_assert_cmpint(c.shrink, ==, 5);

    /* 0 means QEMU's defaults: reported as 0, applied as 2. */
    set = (IOThreadParams) { 0 };
    iothread_set_params(c.w.io, &set);
    c.w.done = 0;
    aio_bh_schedule_oneshot(iothread_get_aio_context(c.w.io), read_params_bh,
                            &c);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&c.w.done));
    g_assert_cmpint(c.max_ns, ==, 0);
    g_assert_cmpint(c.grow, ==, 2);
    g_assert_cmpint(c.shrink, ==, 2);
    iothread_destroy(c.w.io);
}

typedef struct PipeWrite {
    AioCqeHandler handler;
    int res;
} PipeWrite;

static void pipe_write_done(AioCqeHandler *handler, int res, uint32_t flags)
{
    container_of(handler, PipeWrite, handler)->res = res;
}

/* Queue one-byte writes to @fd; how many have reached the pipe before
 * the loop runs. */
static int writes_before_loop(AioContext *ctx, int fds[2], int n)
{
    PipeWrite w[8] = { 0 };
    char buf[8];
    int seen;

    g_assert_cmpint(n, <=, G_N_ELEMENTS(w));
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *sqe;

        w[i].handler.cb = pipe_write_done;
        w[i].res = INT_MIN;
        sqe = aio_get_sqe(ctx, &w[i].handler);
        io_uring_prep_write(sqe, fds[1], "x", 1, 0);
    }
    /* A write to a pipe with room completes as it is submitted. */
    seen = read(fds[0], buf, sizeof(buf));
    seen = MAX(seen, 0);
    for (int i = 0; i < n; i++) {
        while (w[i].res == INT_MIN) {
            aio_poll(ctx, true);
        }
        g_assert_cmpint(w[i].res, ==, 1);
    }
    while (read(fds[0], buf, sizeof(buf)) > 0) {
        /* drain */
    }
    return seen;
}

static void test_aio_max_batch(void)
{
    AioContext *ctx = main_context();
    int fds[2];

    if (!aio_context_uses_io_uring(ctx)) {
        g_test_skip("aio-max-batch is for the io_uring backend");
        return;
    }
    g_assert_cmpint(pipe2(fds, O_NONBLOCK | O_CLOEXEC), ==, 0);
    /* Default: nothing goes to the kernel before the loop runs. */
    g_assert_cmpint(writes_before_loop(ctx, fds, 5), ==, 0);
    /* Batches of 2: the 3rd and 5th SQE submit the 2 before them. */
    aio_context_set_aio_params(ctx, 2);
    g_assert_cmpint(writes_before_loop(ctx, fds, 5), ==, 4);
    aio_context_set_aio_params(ctx, 0);
    g_assert_cmpint(writes_before_loop(ctx, fds, 5), ==, 0);
    close(fds[0]);
    close(fds[1]);
}

/* --- Teardown ------------------------------------------------------------ */

/*
 * A chain of coroutines, each scheduling the next one on @ctx: work that
 * an iteration of the loop that only enters coroutines leaves behind.
 */
typedef struct Chain {
    AioContext *ctx;
    int hops_left;          /* the context's home thread */
    int done;               /* atomic */
    int gate_entered;       /* atomic */
} Chain;

static void coroutine_fn chain_entry(void *opaque)
{
    Chain *c = opaque;

    if (--c->hops_left > 0) {
        aio_co_schedule(c->ctx, co_create(chain_entry, c));
    } else {
        qatomic_set(&c->done, 1);
    }
}

/*
 * In the iothread: wait (nested) for the next callback, which is the stop
 * bottom half, then start the chain.  The iothread's loop ends with this
 * iteration, so the whole chain runs in its teardown.
 */
static void start_chain_after_stop_bh(void *opaque)
{
    Chain *c = opaque;

    qatomic_set(&c->gate_entered, 1);
    aio_wait_kick();
    /* Nothing but iothread_destroy()'s stop is scheduled here. */
    while (!aio_poll(c->ctx, true)) {
        /* woken without a callback: wait on */
    }
    aio_co_schedule(c->ctx, co_create(chain_entry, c));
}

static void test_iothread_teardown_runs_scheduled_coroutines(void)
{
    GLOBAL_STATE_CODE();
    IOThread *io = iothread_create("chain", 0, &error_abort);
    Chain c = { .ctx = iothread_get_aio_context(io), .hops_left = 3 };

    aio_bh_schedule_oneshot(c.ctx, start_chain_after_stop_bh, &c);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&c.gate_entered));
    iothread_destroy(io);
    /* The join orders the iothread's writes before our reads. */
    g_assert_cmpint(c.hops_left, ==, 0);
    g_assert_cmpint(qatomic_read(&c.done), ==, 1);
}

/* The same for the main loop, in a subprocess: it ends the main loop. */
static void test_main_loop_cleanup_runs_scheduled_coroutines(void)
{
    if (g_test_subprocess()) {
        Chain c = { .ctx = main_context(), .hops_left = 3 };

        aio_co_schedule(c.ctx, co_create(chain_entry, &c));
        main_loop_cleanup();
        g_assert_cmpint(c.hops_left, ==, 0);
        g_assert_cmpint(c.done, ==, 1);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_passed();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();

    g_test_add_func("/iothread/start-stop-loop", test_iothread_start_stop_loop);
    g_test_add_func("/iothread/poll-max-ns", test_iothread_poll_max_ns);
    g_test_add_func("/iothread/params-applied", test_iothread_params_applied);
    g_test_add_func("/iothread/aio-max-batch", test_aio_max_batch);
    g_test_add_func("/iothread/teardown-runs-scheduled-coroutines",
                    test_iothread_teardown_runs_scheduled_coroutines);
    g_test_add_func("/main-loop/cleanup-runs-scheduled-coroutines",
                    test_main_loop_cleanup_runs_scheduled_coroutines);
    return g_test_run();
}
