/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Micro-benchmark of the runtime (not a test: it asserts nothing about
 * speed).  Prints the cost of the primitives everything else is built on:
 * a coroutine switch, a coroutine's whole life from the pool, a bottom
 * half in the same thread, a bottom half round trip between two threads,
 * and a coroutine hopping between two iothreads.
 *
 *   build/tests/bench/bench-runtime [ITERATIONS]
 */
#include "util/osdep.h"

#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"

static long iterations = 1000000;

static void report(const char *what, int64_t ns, long n)
{
    printf("| %-44s | %10.1f |\n", what, (double)ns / n);
}

static void coroutine_fn yield_loop(void *opaque)
{
    for (;;) {
        co_yield();
    }
}

static void bench_switch(void)
{
    Coroutine *co = co_create(yield_loop, NULL);
    int64_t start = get_clock_ns();
    long i;

    for (i = 0; i < iterations; i++) {
        co_enter(co);       /* switch in, and back out at the yield */
    }
    report("coroutine enter + yield (2 switches)", get_clock_ns() - start,
           iterations);
    /* The coroutine stays parked: it is never entered again. */
}

static void coroutine_fn empty_entry(void *opaque)
{
}

static void bench_create(void)
{
    int64_t start = get_clock_ns();
    long i;

    for (i = 0; i < iterations; i++) {
        co_enter(co_create(empty_entry, NULL));
    }
    report("coroutine create + run + free (pooled)", get_clock_ns() - start,
           iterations);
}

static void count_bh(void *opaque)
{
    (*(long *)opaque)++;
}

static void bench_bh_same_thread(void)
{
    long count = 0;
    AioBH *bh = aio_bh_new(main_context(), count_bh, &count);
    int64_t start = get_clock_ns();
    long i;

    for (i = 0; i < iterations; i++) {
        aio_bh_schedule(bh);
        aio_poll(main_context(), false);
    }
    report("bottom half schedule + run, same thread", get_clock_ns() - start,
           iterations);
    aio_bh_delete(bh);
    aio_poll(main_context(), false);
}

typedef struct PingPong {
    AioContext *a, *b;
    long left;
    int done;           /* atomic */
} PingPong;

static void pong_bh(void *opaque);

static void ping_bh(void *opaque)
{
    PingPong *pp = opaque;

    if (--pp->left == 0) {
        qatomic_set(&pp->done, 1);
        aio_wait_kick();
        return;
    }
    aio_bh_schedule_oneshot(pp->b, pong_bh, pp);
}

static void pong_bh(void *opaque)
{
    PingPong *pp = opaque;

    aio_bh_schedule_oneshot(pp->a, ping_bh, pp);
}

static void bench_bh_round_trip(int64_t poll_max_ns, const char *label)
{
    GLOBAL_STATE_CODE();
    IOThread *a = iothread_create("ping", poll_max_ns, &error_abort);
    IOThread *b = iothread_create("pong", poll_max_ns, &error_abort);
    long n = iterations / 10;
    PingPong pp = {
        .a = iothread_get_aio_context(a),
        .b = iothread_get_aio_context(b),
        .left = n,
    };
    int64_t start = get_clock_ns();

    aio_bh_schedule_oneshot(pp.a, ping_bh, &pp);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&pp.done));
    report(label, get_clock_ns() - start, n);
    iothread_destroy(a);
    iothread_destroy(b);
}

typedef struct Hop {
    AioContext *ctx[2];
    long n;
    int done;           /* atomic */
} Hop;

static void coroutine_fn hop_entry(void *opaque)
{
    Hop *h = opaque;
    long i;

    for (i = 0; i < h->n; i++) {
        aio_co_reschedule_self(h->ctx[i & 1]);
    }
    aio_co_reschedule_self(main_context());
    qatomic_set(&h->done, 1);
}

static void bench_coroutine_hop(void)
{
    GLOBAL_STATE_CODE();
    IOThread *a = iothread_create("hop0", IOTHREAD_POLL_MAX_NS_DEFAULT,
                                  &error_abort);
    IOThread *b = iothread_create("hop1", IOTHREAD_POLL_MAX_NS_DEFAULT,
                                  &error_abort);
    Hop h = {
        .ctx = { iothread_get_aio_context(a), iothread_get_aio_context(b) },
        .n = iterations / 10,
    };
    int64_t start = get_clock_ns();

    co_enter(co_create(hop_entry, &h));
    AIO_WAIT_WHILE(NULL, !qatomic_read(&h.done));
    report("coroutine hop between iothreads (polling)", get_clock_ns() - start,
           h.n);
    iothread_destroy(a);
    iothread_destroy(b);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        iterations = MAX(atol(argv[1]), 10);
    }
    main_loop_init();
    printf("backend: %s, %ld iterations\n\n",
           aio_context_backend_name(main_context()), iterations);
    printf("| %-44s | %10s |\n", "operation", "ns each");
    printf("|%s|%s|\n", "----------------------------------------------",
           "------------");
    bench_switch();
    bench_create();
    bench_bh_same_thread();
    bench_bh_round_trip(0, "bottom half round trip, 2 iothreads (wake)");
    bench_bh_round_trip(IOTHREAD_POLL_MAX_NS_DEFAULT,
                        "bottom half round trip, 2 iothreads (polling)");
    bench_coroutine_hop();
    return 0;
}
