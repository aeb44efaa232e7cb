/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AioContext: bottom halves, timers, fd handlers, cross-thread wake-ups,
 * AIO_WAIT_WHILE, on the backend BLOCKD_AIO_BACKEND selects.  iothreads
 * are test-iothread.c.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sys/socket.h>

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

static AioContext *ctx;

/* --- Bottom halves ------------------------------------------------------- */

typedef struct Trace {
    GString *log;
    AioBH *bh[4];
} Trace;

static void trace_cb(void *opaque)
{
    char **arg = opaque;
    GString *log = (GString *)arg[0];

    g_string_append(log, arg[1]);
}

static void test_backend_selected(void)
{
    const char *want = getenv("BLOCKD_AIO_BACKEND");

    if (want && *want) {
        g_assert_cmpstr(aio_context_backend_name(ctx), ==, want);
    }
}

static void test_bh_runs_once_per_schedule(void)
{
    GString *log = g_string_new("");
    char *arg[2] = { (char *)log, "x" };
    AioBH *bh = aio_bh_new(ctx, trace_cb, arg);

    aio_bh_schedule(bh);
    aio_bh_schedule(bh);        /* already scheduled: no second run */
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "x");
    g_assert_false(aio_poll(ctx, false));
    aio_bh_schedule(bh);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpstr(log->str, ==, "xx");
    aio_bh_delete(bh);
    settle();
    g_string_free(log, true);
}

static void test_bh_fifo_order(void)
{
    GString *log = g_string_new("");
    char *a[2] = { (char *)log, "a" }, *b[2] = { (char *)log, "b" };
    char *c[2] = { (char *)log, "c" };

    aio_bh_schedule_oneshot(ctx, trace_cb, a);
    aio_bh_schedule_oneshot(ctx, trace_cb, b);
    aio_bh_schedule_oneshot(ctx, trace_cb, c);
    settle();
    g_assert_cmpstr(log->str, ==, "abc");
    g_string_free(log, true);
}

static GString *nested_log;

static void nested_leaf_cb(void *opaque)
{
    g_string_append(nested_log, opaque);
}

static void nested_outer_cb(void *opaque)
{
    g_string_append(nested_log, "1");
    /* Scheduled now, so it must run after 2 and 3, queued before us. */
    aio_bh_schedule_oneshot(ctx, nested_leaf_cb, "4");
    while (aio_poll(ctx, false)) {
        /* nested loop */
    }
    g_string_append(nested_log, ")");
}

static void test_bh_fifo_under_nested_poll(void)
{
    nested_log = g_string_new("");
    aio_bh_schedule_oneshot(ctx, nested_outer_cb, NULL);
    aio_bh_schedule_oneshot(ctx, nested_leaf_cb, "2");
    aio_bh_schedule_oneshot(ctx, nested_leaf_cb, "3");
    settle();
    g_assert_cmpstr(nested_log->str, ==, "1234)");
    g_string_free(nested_log, true);
}

static void test_bh_cancel(void)
{
    GString *log = g_string_new("");
    char *arg[2] = { (char *)log, "x" };
    AioBH *bh = aio_bh_new(ctx, trace_cb, arg);

    aio_bh_schedule(bh);
    aio_bh_cancel(bh);
    settle();
    g_assert_cmpstr(log->str, ==, "");
    aio_bh_delete(bh);
    settle();
    g_string_free(log, true);
}

static int self_delete_runs;

static void self_delete_cb(void *opaque)
{
    AioBH **bh = opaque;

    self_delete_runs++;
    aio_bh_schedule(*bh);       /* scheduled again ... */
    aio_bh_delete(*bh);         /* ... but deleted: must not run again */
}

static void test_bh_delete_from_callback(void)
{
    AioBH *bh = aio_bh_new(ctx, self_delete_cb, &bh);

    self_delete_runs = 0;
    aio_bh_schedule(bh);
    settle();
    g_assert_cmpint(self_delete_runs, ==, 1);
}

/*
 * A non-oneshot bottom half that deletes itself and then runs a nested
 * loop: the nested aio_poll() frees it, so the outer aio_poll() must not
 * read it after the callback (under ASan: heap-use-after-free).
 */
static int delete_then_nest_runs;

static void delete_then_nest_cb(void *opaque)
{
    AioBH **bh = opaque;

    delete_then_nest_runs++;
    aio_bh_delete(*bh);
    *bh = NULL;
    while (aio_poll(ctx, false)) {
        /* nested loop: frees the deleted bottom half */
    }
}

static void test_bh_delete_then_nested_poll(void)
{
    AioBH *bh = aio_bh_new(ctx, delete_then_nest_cb, &bh);

    delete_then_nest_runs = 0;
    aio_bh_schedule(bh);
    settle();
    g_assert_cmpint(delete_then_nest_runs, ==, 1);
    g_assert_null(bh);
}

typedef struct CrossThread {
    int n;
    int seen;           /* main thread only */
    int expected_next;  /* FIFO check for the single producer */
    bool in_order;
} CrossThread;

typedef struct CrossItem {
    CrossThread *ct;
    int seq;
} CrossItem;

static void cross_cb(void *opaque)
{
    CrossItem *item = opaque;

    if (item->seq != item->ct->expected_next) {
        item->ct->in_order = false;
    }
    item->ct->expected_next = item->seq + 1;
    qatomic_set(&item->ct->seen, item->ct->seen + 1);
    g_free(item);
}

static void *cross_producer(void *opaque)
{
    CrossThread *ct = opaque;
    int i;

    for (i = 0; i < ct->n; i++) {
        CrossItem *item = g_new(CrossItem, 1);

        item->ct = ct;
        item->seq = i;
        aio_bh_schedule_oneshot(ctx, cross_cb, item);
    }
    return NULL;
}

static void test_bh_cross_thread_fifo(void)
{
    CrossThread ct = { .n = 20000 * stress_iterations(), .in_order = true };
    pthread_t t;

    bd_thread_create(&t, "producer", cross_producer, &ct, &error_abort);
    AIO_WAIT_WHILE(NULL, qatomic_read(&ct.seen) < ct.n);
    bd_thread_join(t);
    g_assert_cmpint(ct.seen, ==, ct.n);
    g_assert_true(ct.in_order);
}

/* Two iothreads each schedule bottom halves on the other and on main. */
typedef struct PingPong {
    IOThread *io[2];
    int count[2];       /* incremented in iothread i; atomic */
    int main_count;     /* main only, read atomically by nobody else */
    int n;
} PingPong;

typedef struct PingArg {
    PingPong *pp;
    int target;
} PingArg;

static void ping_count_cb(void *opaque)
{
    PingArg *arg = opaque;

    qatomic_inc(&arg->pp->count[arg->target]);
    aio_wait_kick();
    g_free(arg);
}

static void ping_main_cb(void *opaque)
{
    PingPong *pp = opaque;

    pp->main_count++;
}

static void ping_sender_bh(void *opaque)
{
    PingArg *start = opaque;
    PingPong *pp = start->pp;
    int other = !start->target;
    int i;

    for (i = 0; i < pp->n; i++) {
        PingArg *arg = g_new(PingArg, 1);

        arg->pp = pp;
        arg->target = other;
        aio_bh_schedule_oneshot(iothread_get_aio_context(pp->io[other]),
                                ping_count_cb, arg);
        aio_bh_schedule_oneshot(main_context(), ping_main_cb, pp);
    }
    g_free(start);
}

static void test_bh_two_iothreads_stress(void)
{
    PingPong pp = { .n = 5000 * stress_iterations() };
    int i;

    GLOBAL_STATE_CODE();
    pp.io[0] = iothread_create("io0", 0, &error_abort);
    pp.io[1] = iothread_create("io1", IOTHREAD_POLL_MAX_NS_DEFAULT,
                               &error_abort);
    for (i = 0; i < 2; i++) {
        PingArg *arg = g_new(PingArg, 1);

        arg->pp = &pp;
        arg->target = i;
        aio_bh_schedule_oneshot(iothread_get_aio_context(pp.io[i]),
                                ping_sender_bh, arg);
    }
    AIO_WAIT_WHILE(NULL, qatomic_read(&pp.count[0]) < pp.n ||
                         qatomic_read(&pp.count[1]) < pp.n ||
                         pp.main_count < 2 * pp.n);
    iothread_destroy(pp.io[0]);
    iothread_destroy(pp.io[1]);
    g_assert_cmpint(pp.count[0], ==, pp.n);
    g_assert_cmpint(pp.count[1], ==, pp.n);
    g_assert_cmpint(pp.main_count, ==, 2 * pp.n);
}

/* --- Timers -------------------------------------------------------------- */

static void timer_trace_cb(void *opaque)
{
    char **arg = opaque;

    g_string_append((GString *)arg[0], arg[1]);
}

static void test_timer_fires_after_deadline(void)
{
    GString *log = g_string_new("");
    char *arg[2] = { (char *)log, "t" };
    AioTimer *t = aio_timer_new(ctx, timer_trace_cb, arg);
    int64_t start = get_clock_ns();
    int64_t delay = 5 * 1000 * 1000;

    aio_timer_mod_ns(t, start + delay);
    g_assert_true(aio_timer_pending(t));
    while (!log->len) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(get_clock_ns() - start, >=, delay);
    g_assert_false(aio_timer_pending(t));
    aio_timer_free(t);
    g_string_free(log, true);
}

static void test_timer_deadline_order(void)
{
    GString *log = g_string_new("");
    char *a[2] = { (char *)log, "a" }, *b[2] = { (char *)log, "b" };
    char *c[2] = { (char *)log, "c" };
    AioTimer *ta = aio_timer_new(ctx, timer_trace_cb, a);
    AioTimer *tb = aio_timer_new(ctx, timer_trace_cb, b);
    AioTimer *tc = aio_timer_new(ctx, timer_trace_cb, c);
    int64_t now = get_clock_ns();

    aio_timer_mod_ns(tc, now + 3000000);
    aio_timer_mod_ns(ta, now + 1000000);
    aio_timer_mod_ns(tb, now + 2000000);
    while (log->len < 3) {
        aio_poll(ctx, true);
    }
    g_assert_cmpstr(log->str, ==, "abc");
    aio_timer_free(ta);
    aio_timer_free(tb);
    aio_timer_free(tc);
    g_string_free(log, true);
}

static void test_timer_del_prevents_fire(void)
{
    GString *log = g_string_new("");
    char *a[2] = { (char *)log, "a" }, *b[2] = { (char *)log, "b" };
    AioTimer *ta = aio_timer_new(ctx, timer_trace_cb, a);
    AioTimer *tb = aio_timer_new(ctx, timer_trace_cb, b);
    int64_t now = get_clock_ns();

    aio_timer_mod_ns(ta, now + 1000000);
    aio_timer_mod_ns(tb, now + 2000000);
    aio_timer_del(ta);
    while (!log->len) {
        aio_poll(ctx, true);
    }
    g_assert_cmpstr(log->str, ==, "b");
    aio_timer_free(ta);
    aio_timer_free(tb);
    g_string_free(log, true);
}

/* --- fd handlers --------------------------------------------------------- */

typedef struct FdState {
    int fd;
    int reads;
    int writes;
    int bytes;
    bool remove_on_read;
} FdState;

static void fd_read_one_cb(void *opaque)
{
    FdState *s = opaque;
    char c;

    /* Consume one byte only: level-triggering must call us again. */
    if (read(s->fd, &c, 1) == 1) {
        s->bytes++;
    }
    s->reads++;
    if (s->remove_on_read) {
        aio_set_fd_handler(ctx, s->fd, NULL, NULL, NULL);
    }
}

static void fd_write_cb(void *opaque)
{
    FdState *s = opaque;

    s->writes++;
    aio_set_fd_handler(ctx, s->fd, NULL, NULL, NULL);
}

static void test_fd_pipe_level_triggered(void)
{
    int fds[2];
    FdState s = { 0 };

    g_assert_cmpint(pipe2(fds, O_NONBLOCK | O_CLOEXEC), ==, 0);
    s.fd = fds[0];
    aio_set_fd_handler(ctx, fds[0], fd_read_one_cb, NULL, &s);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(write(fds[1], "abc", 3), ==, 3);
    while (s.bytes < 3) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(s.reads, ==, 3);
    aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL);
    settle();
    close(fds[0]);
    close(fds[1]);
}

static void test_fd_socket_write_then_read(void)
{
    int sv[2];
    FdState s = { 0 };

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
                    ==, 0);
    s.fd = sv[0];
    /* An empty socket buffer is writable at once. */
    aio_set_fd_handler(ctx, sv[0], NULL, fd_write_cb, &s);
    while (!s.writes) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(s.writes, ==, 1);

    /* Re-register for reading; the peer's write wakes us. */
    s.remove_on_read = true;
    aio_set_fd_handler(ctx, sv[0], fd_read_one_cb, NULL, &s);
    g_assert_cmpint(write(sv[1], "z", 1), ==, 1);
    while (!s.reads) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(s.bytes, ==, 1);
    settle();
    close(sv[0]);
    close(sv[1]);
}

static void fd_add_write_cb(void *opaque)
{
    FdState *s = opaque;
    char c;

    if (read(s->fd, &c, 1) == 1) {
        s->bytes++;
    }
    s->reads++;
    /* Change the mask from inside the callback. */
    aio_set_fd_handler(ctx, s->fd, NULL, fd_write_cb, s);
}

static void test_fd_change_mask_in_callback(void)
{
    int sv[2];
    FdState s = { 0 };

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv),
                    ==, 0);
    s.fd = sv[0];
    aio_set_fd_handler(ctx, sv[0], fd_add_write_cb, NULL, &s);
    g_assert_cmpint(write(sv[1], "q", 1), ==, 1);
    while (!s.writes) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(s.reads, ==, 1);
    g_assert_cmpint(s.writes, ==, 1);
    settle();
    close(sv[0]);
    close(sv[1]);
}

static void test_fd_reuse_after_remove(void)
{
    int i;

    /* Closing and reopening gives the same fd number: the old handler's
     * pending poll must not fire the new one, nor be confused with it. */
    for (i = 0; i < 50; i++) {
        int fds[2];
        FdState s = { 0 };

        g_assert_cmpint(pipe2(fds, O_NONBLOCK | O_CLOEXEC), ==, 0);
        s.fd = fds[0];
        aio_set_fd_handler(ctx, fds[0], fd_read_one_cb, NULL, &s);
        aio_poll(ctx, false);
        g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
        while (!s.bytes) {
            aio_poll(ctx, true);
        }
        aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL);
        close(fds[0]);
        close(fds[1]);
    }
    settle();
}

/* --- Wake-ups across threads -------------------------------------------- */

typedef struct WaitFlag {
    IOThread *io;
    int done;       /* atomic */
} WaitFlag;

static void test_aio_wait_while_kicked_from_iothread(void)
{
    IOThread *io;
    int i;

    GLOBAL_STATE_CODE();
    io = iothread_create("waiter", 0, &error_abort);
    for (i = 0; i < 1000 * stress_iterations(); i++) {
        ctx_sync(iothread_get_aio_context(io));
    }
    iothread_destroy(io);
}

static void own_timer_cb(void *opaque)
{
    *(bool *)opaque = true;
}

/* In the iothread: wait, polling our own context, for our own timer. */
static void wait_own_context_bh(void *opaque)
{
    WaitFlag *w = opaque;
    AioContext *io_ctx = iothread_get_aio_context(w->io);
    bool fired = false;
    AioTimer *t = aio_timer_new(io_ctx, own_timer_cb, &fired);

    aio_timer_mod_ns(t, get_clock_ns() + 1000000);
    AIO_WAIT_WHILE(io_ctx, !fired);
    aio_timer_free(t);
    qatomic_set(&w->done, 1);
    aio_wait_kick();
}

static void test_aio_wait_while_own_context(void)
{
    WaitFlag w = { 0 };

    GLOBAL_STATE_CODE();
    w.io = iothread_create("self", 0, &error_abort);
    aio_bh_schedule_oneshot(iothread_get_aio_context(w.io),
                            wait_own_context_bh, &w);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&w.done));
    iothread_destroy(w.io);
}

static void *notifier_thread(void *opaque)
{
    WaitFlag *w = opaque;

    qatomic_set(&w->done, 1);
    aio_wait_kick();
    return NULL;
}

static void test_aio_wait_while_kicked_from_plain_thread(void)
{
    int i;

    for (i = 0; i < 500 * stress_iterations(); i++) {
        WaitFlag w = { 0 };
        pthread_t t;

        bd_thread_create(&t, "notifier", notifier_thread, &w,
                         &error_abort);
        AIO_WAIT_WHILE(NULL, !qatomic_read(&w.done));
        bd_thread_join(t);
    }
}

/* --- Leaks are loud ------------------------------------------------------ */

static void leaked_bh_cb(void *opaque)
{
}

static void leaked_fd_cb(void *opaque)
{
}

static void test_destroy_with_bh_aborts(void)
{
    if (g_test_subprocess()) {
        AioContext *other = aio_context_new("leaky", &error_abort);

        aio_context_set_current(other);
        aio_bh_new(other, leaked_bh_cb, NULL);
        aio_context_destroy(other);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*'leaky'*bottom half 'leaked_bh_cb'*");
}

static void test_destroy_with_fd_handler_aborts(void)
{
    if (g_test_subprocess()) {
        AioContext *other = aio_context_new("leaky", &error_abort);
        int fds[2];

        g_assert_cmpint(pipe(fds), ==, 0);
        aio_context_set_current(other);
        aio_set_fd_handler(other, fds[0], leaked_fd_cb, NULL, NULL);
        aio_context_destroy(other);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*'leaky'*fd handler 'leaked_fd_cb'*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    ctx = main_context();

    g_test_add_func("/aio/backend-selected", test_backend_selected);
    g_test_add_func("/aio/bh/runs-once-per-schedule",
                    test_bh_runs_once_per_schedule);
    g_test_add_func("/aio/bh/fifo-order", test_bh_fifo_order);
    g_test_add_func("/aio/bh/fifo-under-nested-poll",
                    test_bh_fifo_under_nested_poll);
    g_test_add_func("/aio/bh/cancel", test_bh_cancel);
    g_test_add_func("/aio/bh/delete-from-callback",
                    test_bh_delete_from_callback);
    g_test_add_func("/aio/bh/delete-then-nested-poll",
                    test_bh_delete_then_nested_poll);
    g_test_add_func("/aio/bh/cross-thread-fifo", test_bh_cross_thread_fifo);
    g_test_add_func("/aio/bh/two-iothreads-stress",
                    test_bh_two_iothreads_stress);
    g_test_add_func("/aio/timer/fires-after-deadline",
                    test_timer_fires_after_deadline);
    g_test_add_func("/aio/timer/deadline-order", test_timer_deadline_order);
    g_test_add_func("/aio/timer/del-prevents-fire",
                    test_timer_del_prevents_fire);
    g_test_add_func("/aio/fd/pipe-level-triggered",
                    test_fd_pipe_level_triggered);
    g_test_add_func("/aio/fd/socket-write-then-read",
                    test_fd_socket_write_then_read);
    g_test_add_func("/aio/fd/change-mask-in-callback",
                    test_fd_change_mask_in_callback);
    g_test_add_func("/aio/fd/reuse-after-remove", test_fd_reuse_after_remove);
    g_test_add_func("/aio/wait/kicked-from-iothread",
                    test_aio_wait_while_kicked_from_iothread);
    g_test_add_func("/aio/wait/kicked-from-plain-thread",
                    test_aio_wait_while_kicked_from_plain_thread);
    g_test_add_func("/aio/wait/iothread-polls-own-context",
                    test_aio_wait_while_own_context);
    g_test_add_func("/aio/destroy/leaked-bh-aborts",
                    test_destroy_with_bh_aborts);
    g_test_add_func("/aio/destroy/leaked-fd-handler-aborts",
                    test_destroy_with_fd_handler_aborts);

    return g_test_run();
}
