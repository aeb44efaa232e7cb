/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine locks: CoQueue wake order and lock hand-off, CoMutex mutual
 * exclusion and fairness across iothreads, CoRwlock sharing, exclusion and
 * writer priority, co_sleep_ns() deadlines.
 *
 * Deterministic tests run every coroutine in the main context and drive
 * it by hand (settle() runs the loop until nothing is left to do), so each
 * step's outcome is exact.  Cross-thread tests synchronize only through
 * AIO_WAIT_WHILE() on atomic counters; the stress tests scale with
 * STRESS_ITERATIONS.
 */
#include "util/osdep.h"

#include <sched.h>

#include "loop-helpers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread.h"

#define N_ELEMS(a) ((int)G_N_ELEMENTS(a))

/* Go back to the event loop once, staying in the same context. */
static void coroutine_fn yield_to_loop(void)
{
    aio_co_schedule(aio_get_current_context(), co_self());
    co_yield();
}

/* Start a new coroutine in @ctx (at once if @ctx is the main context). */
static void start_in(AioContext *ctx, CoroutineEntry *entry, void *opaque)
{
    aio_co_enter(ctx, co_create(entry, opaque));
}

static void sync_bh(void *opaque)
{
    qatomic_inc((int *)opaque);
    aio_wait_kick();
}

/*
 * Destroy @n iothreads, once each has finished what it was doing.  A
 * thread that moves or wakes a coroutine into another context writes that
 * context's eventfd after the coroutine may already have run there, so a
 * finished test can still have such a write in flight: a bottom half run
 * by every iothread orders all of them before any context goes away
 * (its qatomic_inc pairs with the load-acquire here).
 */
static void destroy_iothreads(IOThread **io, int n)
{
    int synced = 0;
    int i;

    GLOBAL_STATE_CODE();
    for (i = 0; i < n; i++) {
        aio_bh_schedule_oneshot(iothread_get_aio_context(io[i]), sync_bh,
                                &synced);
    }
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&synced) < n);
    for (i = 0; i < n; i++) {
        iothread_destroy(io[i]);
    }
}

/* The main context and two iothreads, for coroutines that roam. */
#define N_CONTEXTS 3
#define WORKERS_PER_CONTEXT 4

typedef struct Contexts {
    IOThread *io[N_CONTEXTS - 1];
    AioContext *ctx[N_CONTEXTS];    /* [0] is the main context */
} Contexts;

static void contexts_start(Contexts *c)
{
    int i;

    GLOBAL_STATE_CODE();
    c->ctx[0] = main_context();
    for (i = 0; i < N_CONTEXTS - 1; i++) {
        g_autofree char *id = g_strdup_printf("io%d", i);

        c->io[i] = iothread_create(id, 0, &error_abort);
        c->ctx[i + 1] = iothread_get_aio_context(c->io[i]);
    }
}

static void contexts_stop(Contexts *c)
{
    destroy_iothreads(c->io, N_CONTEXTS - 1);
}

/* A small deterministic generator per coroutine (no shared state). */
static uint32_t next_rand(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

/*
 * Let other coroutines run: go back to the loop, and now and then move to
 * another context (maybe while holding a lock: that must work too).
 */
static void coroutine_fn wander(Contexts *c, uint32_t *rnd)
{
    if (next_rand(rnd) % 4 == 0) {
        aio_co_reschedule_self(c->ctx[next_rand(rnd) % N_CONTEXTS]);
    } else {
        yield_to_loop();
    }
}

/* --- CoQueue ------------------------------------------------------------- */

typedef struct QueueTest {
    CoQueue q;              /* main thread only: waiters pass no lock */
    int order[8];
    int n_woken;
} QueueTest;

typedef struct QueueWaiter {
    QueueTest *t;
    int id;
} QueueWaiter;

static void coroutine_fn queue_waiter(void *opaque)
{
    QueueWaiter *w = opaque;

    co_queue_wait(&w->t->q, NULL);
    w->t->order[w->t->n_woken++] = w->id;
}

static void queue_start_waiters(QueueTest *t, QueueWaiter *w, int n)
{
    int i;

    co_queue_init(&t->q);
    for (i = 0; i < n; i++) {
        w[i] = (QueueWaiter) { .t = t, .id = i };
        start_in(main_context(), queue_waiter, &w[i]);
    }
    g_assert_false(co_queue_empty(&t->q));
}

static void test_queue_fifo_wake_order(void)
{
    QueueTest t = { 0 };
    QueueWaiter w[5];
    int i;

    queue_start_waiters(&t, w, 5);
    for (i = 0; i < 5; i++) {
        g_assert_true(co_queue_next(&t.q));
        settle();
        g_assert_cmpint(t.n_woken, ==, i + 1);
        g_assert_cmpint(t.order[i], ==, i);
    }
    g_assert_true(co_queue_empty(&t.q));
    g_assert_false(co_queue_next(&t.q));
}

static void test_queue_restart_all(void)
{
    QueueTest t = { 0 };
    QueueWaiter w[5];
    int i;

    queue_start_waiters(&t, w, 5);
    co_queue_restart_all(&t.q);
    g_assert_true(co_queue_empty(&t.q));
    settle();
    g_assert_cmpint(t.n_woken, ==, 5);
    for (i = 0; i < 5; i++) {
        g_assert_cmpint(t.order[i], ==, i);
    }
    co_queue_restart_all(&t.q);         /* empty: nothing happens */
    g_assert_true(co_queue_empty(&t.q));
}

typedef struct DeferTest {
    QueueTest t;
    bool waker_done;
    int woken_before_waker_done;
} DeferTest;

static void coroutine_fn defer_waker(void *opaque)
{
    DeferTest *d = opaque;

    g_assert_true(co_queue_next(&d->t.q));
    d->woken_before_waker_done = d->t.n_woken;
    yield_to_loop();
    d->waker_done = true;
}

/*
 * A waiter never runs inside co_queue_next(): from plain code it runs from
 * a bottom half, from a coroutine only after the waker yields.
 */
static void test_queue_next_defers_wakeup(void)
{
    DeferTest d = { 0 };
    QueueWaiter w[2];

    queue_start_waiters(&d.t, w, 2);
    g_assert_true(co_queue_next(&d.t.q));
    g_assert_cmpint(d.t.n_woken, ==, 0);
    settle();
    g_assert_cmpint(d.t.n_woken, ==, 1);

    start_in(main_context(), defer_waker, &d);
    g_assert_cmpint(d.woken_before_waker_done, ==, 1);
    settle();
    g_assert_cmpint(d.t.n_woken, ==, 2);
    g_assert_true(d.waker_done);
}

typedef struct Handover {
    IOThread *io;
    CoQueue q;              /* under m (or bm) */
    CoMutex m;
    BdMutex bm;
    bool ready;             /* under m (or bm) */
    int value;              /* under m (or bm) */
    int got;                /* written before done is set */
    int waiting;            /* atomic: the consumer is about to wait */
    int done;               /* atomic */
} Handover;

static void coroutine_fn handover_consumer(void *opaque)
{
    Handover *h = opaque;

    co_mutex_lock(&h->m);
    while (!h->ready) {
        qatomic_set(&h->waiting, 1);
        aio_wait_kick();
        co_queue_wait(&h->q, &h->m);
        co_mutex_assert_locked(&h->m);
    }
    h->got = h->value;
    co_mutex_unlock(&h->m);
    qatomic_store_release(&h->done, 1);
    aio_wait_kick();
}

static void coroutine_fn handover_producer(void *opaque)
{
    Handover *h = opaque;

    /* Succeeds only because co_queue_wait() released the mutex. */
    co_mutex_lock(&h->m);
    h->value = 42;
    h->ready = true;
    g_assert_true(co_queue_next(&h->q));
    co_mutex_unlock(&h->m);
}

/* co_queue_wait() drops the CoMutex while asleep and holds it on return. */
static void test_queue_wait_releases_comutex(void)
{
    Handover h = { 0 };

    GLOBAL_STATE_CODE();
    h.io = iothread_create("consumer", 0, &error_abort);
    co_queue_init(&h.q);
    co_mutex_init(&h.m);
    start_in(iothread_get_aio_context(h.io), handover_consumer, &h);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&h.waiting));
    start_in(main_context(), handover_producer, &h);
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&h.done));
    g_assert_cmpint(h.got, ==, 42);
    destroy_iothreads(&h.io, 1);
    co_mutex_destroy(&h.m);
}

static void coroutine_fn handover_bd_consumer(void *opaque)
{
    Handover *h = opaque;

    bd_mutex_lock(&h->bm);
    while (!h->ready) {
        qatomic_set(&h->waiting, 1);
        aio_wait_kick();
        co_queue_wait_bd(&h->q, &h->bm);
    }
    h->got = h->value;
    bd_mutex_unlock(&h->bm);
    qatomic_store_release(&h->done, 1);
    aio_wait_kick();
}

/*
 * co_queue_wait_bd(): a coroutine in an iothread sleeps without holding the
 * BdMutex, and plain code in the main thread wakes it while holding it.
 */
static void test_queue_wait_bd_cross_thread(void)
{
    Handover h = { 0 };

    GLOBAL_STATE_CODE();
    h.io = iothread_create("consumer", 0, &error_abort);
    co_queue_init(&h.q);
    bd_mutex_init(&h.bm);
    start_in(iothread_get_aio_context(h.io), handover_bd_consumer, &h);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&h.waiting));

    bd_mutex_lock(&h.bm);
    h.value = 42;
    h.ready = true;
    g_assert_true(co_queue_next(&h.q));
    bd_mutex_unlock(&h.bm);

    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&h.done));
    g_assert_cmpint(h.got, ==, 42);
    destroy_iothreads(&h.io, 1);
    bd_mutex_destroy(&h.bm);
}

/*
 * A bounded buffer between producers and consumers spread over the main
 * context and two iothreads, guarded by a CoMutex or by a BdMutex: both
 * forms of co_queue_wait() under contention, and wake-ups that race with
 * the waiter dropping the lock.
 */
#define BUF_SIZE 4

typedef struct Buffer {
    bool use_bd;            /* immutable: which lock guards the buffer */
    CoMutex m;
    BdMutex bm;
    CoQueue not_empty;      /* the buffer's lock */
    CoQueue not_full;       /* the buffer's lock */
    uint64_t items[BUF_SIZE];  /* the buffer's lock */
    int head, count;        /* the buffer's lock */
    Contexts c;
    int per_worker;         /* immutable: items each worker moves */
    uint64_t consumed_sum;  /* atomic */
    int done;               /* atomic */
} Buffer;

typedef struct BufWorker {
    Buffer *b;
    int id;
} BufWorker;

/* The lock is chosen at run time: beyond the analysis. */
static void coroutine_fn buf_lock(Buffer *b) TSA_NO_TSA
{
    if (b->use_bd) {
        bd_mutex_lock(&b->bm);
    } else {
        co_mutex_lock(&b->m);
    }
}

static void coroutine_fn buf_unlock(Buffer *b) TSA_NO_TSA
{
    if (b->use_bd) {
        bd_mutex_unlock(&b->bm);
    } else {
        co_mutex_unlock(&b->m);
    }
}

static void coroutine_fn buf_wait(Buffer *b, CoQueue *q) TSA_NO_TSA
{
    if (b->use_bd) {
        co_queue_wait_bd(q, &b->bm);
    } else {
        co_queue_wait(q, &b->m);
    }
}

static uint64_t buf_item(int worker, int i)
{
    return (uint64_t)worker << 32 | (uint64_t)i;
}

static void coroutine_fn buf_producer(void *opaque)
{
    BufWorker *w = opaque;
    Buffer *b = w->b;
    uint32_t rnd = w->id;
    int i;

    for (i = 0; i < b->per_worker; i++) {
        buf_lock(b);
        while (b->count == BUF_SIZE) {
            buf_wait(b, &b->not_full);
        }
        b->items[(b->head + b->count++) % BUF_SIZE] = buf_item(w->id, i);
        co_queue_next(&b->not_empty);
        buf_unlock(b);
        wander(&b->c, &rnd);
    }
    qatomic_inc(&b->done);
    aio_wait_kick();
}

static void coroutine_fn buf_consumer(void *opaque)
{
    BufWorker *w = opaque;
    Buffer *b = w->b;
    uint32_t rnd = w->id;
    uint64_t sum = 0;
    int i;

    for (i = 0; i < b->per_worker; i++) {
        buf_lock(b);
        while (b->count == 0) {
            buf_wait(b, &b->not_empty);
        }
        sum += b->items[b->head];
        b->head = (b->head + 1) % BUF_SIZE;
        b->count--;
        co_queue_next(&b->not_full);
        buf_unlock(b);
        wander(&b->c, &rnd);
    }
    qatomic_add(&b->consumed_sum, sum);
    qatomic_inc(&b->done);
    aio_wait_kick();
}

static void test_queue_producer_consumer(bool use_bd)
{
    BufWorker w[2 * N_CONTEXTS * 2];
    Buffer b = { .use_bd = use_bd, .per_worker = 300 * stress_iterations() };
    uint64_t expected = 0;
    int i, j;

    co_mutex_init(&b.m);
    bd_mutex_init(&b.bm);
    co_queue_init(&b.not_empty);
    co_queue_init(&b.not_full);
    contexts_start(&b.c);
    /* Even ids produce, odd ids consume: as many of each. */
    for (i = 0; i < N_ELEMS(w); i++) {
        w[i] = (BufWorker) { .b = &b, .id = i };
        start_in(b.c.ctx[i % N_CONTEXTS],
                 i % 2 ? buf_consumer : buf_producer, &w[i]);
        for (j = 0; i % 2 == 0 && j < b.per_worker; j++) {
            expected += buf_item(i, j);
        }
    }
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&b.done) < N_ELEMS(w));
    g_assert_cmpuint(qatomic_read(&b.consumed_sum), ==, expected);
    g_assert_cmpint(b.count, ==, 0);
    g_assert_true(co_queue_empty(&b.not_empty));
    g_assert_true(co_queue_empty(&b.not_full));
    contexts_stop(&b.c);
    bd_mutex_destroy(&b.bm);
    co_mutex_destroy(&b.m);
}

static void test_queue_producer_consumer_comutex(void)
{
    test_queue_producer_consumer(false);
}

static void test_queue_producer_consumer_bdmutex(void)
{
    test_queue_producer_consumer(true);
}

/* --- CoMutex ------------------------------------------------------------- */

typedef struct MxStress {
    CoMutex m;
    unsigned long counter;  /* m; deliberately not atomic */
    Contexts c;
    int iterations;
    int done;               /* atomic: finished workers */
} MxStress;

typedef struct MxWorker {
    MxStress *s;
    int id;
} MxWorker;

static void coroutine_fn mx_worker(void *opaque)
{
    MxWorker *w = opaque;
    MxStress *s = w->s;
    uint32_t rnd = w->id;
    int i;

    for (i = 0; i < s->iterations; i++) {
        unsigned long v;

        co_mutex_lock(&s->m);
        v = s->counter;
        /* Let others run (and try the lock) between the read and write. */
        wander(&s->c, &rnd);
        s->counter = v + 1;
        co_mutex_unlock(&s->m);
        if (next_rand(&rnd) % 2) {
            yield_to_loop();
        }
    }
    qatomic_inc(&s->done);
    aio_wait_kick();
}

/*
 * Coroutines in the main context and two iothreads, wandering between them
 * while they hold the lock, never lose an increment.
 */
static void test_mutex_mutual_exclusion(void)
{
    MxWorker w[N_CONTEXTS * WORKERS_PER_CONTEXT];
    MxStress s = { .iterations = 1000 * stress_iterations() };
    int i;

    co_mutex_init(&s.m);
    contexts_start(&s.c);
    for (i = 0; i < N_ELEMS(w); i++) {
        w[i] = (MxWorker) { .s = &s, .id = i };
        start_in(s.c.ctx[i % N_CONTEXTS], mx_worker, &w[i]);
    }
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&s.done) < N_ELEMS(w));
    g_assert_cmpuint(s.counter, ==,
                     (unsigned long)N_ELEMS(w) * s.iterations);
    contexts_stop(&s.c);
    co_mutex_destroy(&s.m);
}

typedef struct Fairness {
    CoMutex m;
    CoQueue release;        /* main thread only */
    bool released;          /* main thread only */
    int order[16];          /* m */
    int n_acquired;         /* m */
    int done;               /* atomic */
} Fairness;

typedef struct FairWaiter {
    Fairness *f;
    int id;
} FairWaiter;

static void coroutine_fn fair_holder(void *opaque)
{
    Fairness *f = opaque;

    co_mutex_lock(&f->m);
    while (!f->released) {
        co_queue_wait(&f->release, NULL);
    }
    co_mutex_unlock(&f->m);
}

static void coroutine_fn fair_waiter(void *opaque)
{
    FairWaiter *w = opaque;
    Fairness *f = w->f;

    co_mutex_lock(&f->m);
    f->order[f->n_acquired++] = w->id;
    /* Holding the lock across a trip to the loop changes nothing. */
    yield_to_loop();
    co_mutex_unlock(&f->m);
    qatomic_inc(&f->done);
    aio_wait_kick();
}

static void fair_release_holder(Fairness *f)
{
    f->released = true;
    g_assert_true(co_queue_next(&f->release));
}

/* The lock goes to its waiters in the order they asked for it. */
static void test_mutex_fifo_fairness(void)
{
    Fairness f = { 0 };
    FairWaiter w[8];
    int i;

    co_mutex_init(&f.m);
    co_queue_init(&f.release);
    start_in(main_context(), fair_holder, &f);
    for (i = 0; i < N_ELEMS(w); i++) {
        w[i] = (FairWaiter) { .f = &f, .id = i };
        start_in(main_context(), fair_waiter, &w[i]);
    }
    settle();
    g_assert_cmpint(f.n_acquired, ==, 0);
    fair_release_holder(&f);
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&f.done) < N_ELEMS(w));
    for (i = 0; i < N_ELEMS(w); i++) {
        g_assert_cmpint(f.order[i], ==, i);
    }
    co_mutex_destroy(&f.m);
}

/*
 * The tail of the wait queue moves each time a coroutine queues up: read
 * it under the CoMutex's internal lock to tell that a waiter has arrived.
 */
static Coroutine **mutex_queue_tail(CoMutex *m)
{
    Coroutine **tail;

    bd_mutex_lock(&m->lock);
    tail = m->waiters.tail;
    bd_mutex_unlock(&m->lock);
    return tail;
}

/*
 * Fairness holds across threads: waiters queued one after the other from
 * the main context and two iothreads get the lock in that order.
 */
static void test_mutex_fifo_fairness_cross_thread(void)
{
    Fairness f = { 0 };
    FairWaiter w[3 * N_CONTEXTS];
    Contexts c;
    int i;

    co_mutex_init(&f.m);
    co_queue_init(&f.release);
    contexts_start(&c);

    start_in(main_context(), fair_holder, &f);
    for (i = 0; i < N_ELEMS(w); i++) {
        Coroutine **tail = mutex_queue_tail(&f.m);

        w[i] = (FairWaiter) { .f = &f, .id = i };
        start_in(c.ctx[(i + 1) % N_CONTEXTS], fair_waiter, &w[i]);
        /* No kick comes when the waiter queues: poll without blocking. */
        while (mutex_queue_tail(&f.m) == tail) {
            aio_poll(main_context(), false);
            sched_yield();
        }
    }
    fair_release_holder(&f);
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&f.done) < N_ELEMS(w));
    for (i = 0; i < N_ELEMS(w); i++) {
        g_assert_cmpint(f.order[i], ==, i);
    }
    contexts_stop(&c);
    co_mutex_destroy(&f.m);
}

typedef struct Barging {
    CoMutex m;
    GString *log;
    CoQueue release;
    bool released;
} Barging;

static void coroutine_fn barging_waiter(void *opaque)
{
    Barging *b = opaque;

    co_mutex_lock(&b->m);
    g_string_append(b->log, "W");
    co_mutex_unlock(&b->m);
}

static void coroutine_fn barging_holder(void *opaque)
{
    Barging *b = opaque;

    co_mutex_lock(&b->m);
    g_string_append(b->log, "H");
    while (!b->released) {
        co_queue_wait(&b->release, NULL);
    }
    /* Unlock and relock without yielding: the waiters come first. */
    co_mutex_unlock(&b->m);
    co_mutex_lock(&b->m);
    g_string_append(b->log, "H");
    co_mutex_unlock(&b->m);
}

/* Unlock hands the lock to the oldest waiter: the unlocker cannot barge. */
static void test_mutex_handoff_no_barging(void)
{
    Barging b = { .log = g_string_new("") };

    co_mutex_init(&b.m);
    co_queue_init(&b.release);
    start_in(main_context(), barging_holder, &b);
    start_in(main_context(), barging_waiter, &b);
    start_in(main_context(), barging_waiter, &b);
    settle();
    g_assert_cmpstr(b.log->str, ==, "H");
    b.released = true;
    co_queue_next(&b.release);
    settle();
    g_assert_cmpstr(b.log->str, ==, "HWWH");
    g_string_free(b.log, true);
    co_mutex_destroy(&b.m);
}

static void coroutine_fn lock_and_return(void *opaque)
    TSA_NO_TSA      /* returns holding the lock, on purpose */
{
    co_mutex_lock(opaque);
}

/* A coroutine that terminates holding a CoMutex aborts. */
static void test_mutex_terminate_holding_aborts(void)
{
    if (g_test_subprocess()) {
        CoMutex m;

        co_mutex_init(&m);
        co_enter(co_create(lock_and_return, &m));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*holding 1 coroutine lock*");
}

/* --- CoRwlock: deterministic scenarios ----------------------------------- */

/*
 * An actor takes the lock in its mode, then obeys commands one at a time;
 * every transition is appended to a shared log, so a test states the
 * exact history it expects.  Everything runs in the main context.
 */
typedef enum ActorCmd {
    ACT_NONE,
    ACT_UPGRADE,
    ACT_DOWNGRADE,
    ACT_UNLOCK,
} ActorCmd;

typedef struct Actor {
    const char *name;
    bool exclusive;
    CoRwlock *lock;
    GString *log;
    ActorCmd cmd;
    CoQueue wait;           /* main thread only */
} Actor;

static void coroutine_fn actor_entry(void *opaque)
    TSA_NO_TSA      /* the lock mode depends on data */
{
    Actor *a = opaque;

    if (a->exclusive) {
        co_rwlock_wrlock(a->lock);
    } else {
        co_rwlock_rdlock(a->lock);
    }
    g_string_append_printf(a->log, " +%s", a->name);
    for (;;) {
        ActorCmd cmd;

        while (a->cmd == ACT_NONE) {
            co_queue_wait(&a->wait, NULL);
        }
        cmd = a->cmd;
        a->cmd = ACT_NONE;
        if (cmd == ACT_UNLOCK) {
            break;
        } else if (cmd == ACT_UPGRADE) {
            co_rwlock_upgrade(a->lock);
            g_string_append_printf(a->log, " ^%s", a->name);
        } else {
            co_rwlock_downgrade(a->lock);
            g_string_append_printf(a->log, " v%s", a->name);
        }
    }
    co_rwlock_unlock(a->lock);
    g_string_append_printf(a->log, " -%s", a->name);
}

typedef struct Stage {
    CoRwlock lock;
    GString *log;
    Actor actors[6];
    int n_actors;
} Stage;

static void stage_init(Stage *s)
{
    co_rwlock_init(&s->lock);
    s->log = g_string_new("");
    s->n_actors = 0;
}

static Actor *stage_start(Stage *s, const char *name, bool exclusive)
{
    Actor *a = &s->actors[s->n_actors++];

    *a = (Actor) {
        .name = name, .exclusive = exclusive, .lock = &s->lock,
        .log = s->log,
    };
    co_queue_init(&a->wait);
    start_in(main_context(), actor_entry, a);
    settle();
    return a;
}

static void actor_send(Actor *a, ActorCmd cmd)
{
    a->cmd = cmd;
    co_queue_next(&a->wait);
    settle();
}

static void stage_expect(Stage *s, const char *log)
{
    g_assert_cmpstr(s->log->str, ==, log);
}

static void stage_finish(Stage *s)
{
    g_string_free(s->log, true);
    co_rwlock_destroy(&s->lock);
}

/* Readers hold the lock together. */
static void test_rwlock_readers_share(void)
{
    Stage s;
    Actor *r1, *r2, *r3;

    stage_init(&s);
    r1 = stage_start(&s, "R1", false);
    r2 = stage_start(&s, "R2", false);
    r3 = stage_start(&s, "R3", false);
    stage_expect(&s, " +R1 +R2 +R3");
    actor_send(r2, ACT_UNLOCK);
    actor_send(r1, ACT_UNLOCK);
    actor_send(r3, ACT_UNLOCK);
    stage_expect(&s, " +R1 +R2 +R3 -R2 -R1 -R3");
    stage_finish(&s);
}

/* A writer excludes readers and writers; they get the lock in order. */
static void test_rwlock_writer_excludes(void)
{
    Stage s;
    Actor *w1, *r1, *w2;

    stage_init(&s);
    w1 = stage_start(&s, "W1", true);
    r1 = stage_start(&s, "R1", false);
    w2 = stage_start(&s, "W2", true);
    stage_expect(&s, " +W1");
    actor_send(w1, ACT_UNLOCK);
    stage_expect(&s, " +W1 -W1 +R1");
    actor_send(r1, ACT_UNLOCK);
    stage_expect(&s, " +W1 -W1 +R1 -R1 +W2");
    actor_send(w2, ACT_UNLOCK);
    stage_finish(&s);
}

/*
 * A reader that arrives while a writer waits queues behind the writer,
 * even though only readers hold the lock.
 */
static void test_rwlock_no_writer_starvation(void)
{
    Stage s;
    Actor *r1, *w, *r2;

    stage_init(&s);
    r1 = stage_start(&s, "R1", false);
    w = stage_start(&s, "W", true);
    r2 = stage_start(&s, "R2", false);
    stage_expect(&s, " +R1");
    actor_send(r1, ACT_UNLOCK);
    stage_expect(&s, " +R1 -R1 +W");
    actor_send(w, ACT_UNLOCK);
    stage_expect(&s, " +R1 -R1 +W -W +R2");
    actor_send(r2, ACT_UNLOCK);
    stage_finish(&s);
}

/*
 * When a writer releases, every reader at the head of the queue gets the
 * lock at once; a reader queued behind the next writer does not.
 */
static void test_rwlock_wakes_consecutive_readers(void)
{
    Stage s;
    Actor *w1, *r1, *r2, *w2, *r3;

    stage_init(&s);
    w1 = stage_start(&s, "W1", true);
    r1 = stage_start(&s, "R1", false);
    r2 = stage_start(&s, "R2", false);
    w2 = stage_start(&s, "W2", true);
    r3 = stage_start(&s, "R3", false);
    actor_send(w1, ACT_UNLOCK);
    stage_expect(&s, " +W1 -W1 +R1 +R2");
    actor_send(r2, ACT_UNLOCK);
    stage_expect(&s, " +W1 -W1 +R1 +R2 -R2");
    actor_send(r1, ACT_UNLOCK);
    stage_expect(&s, " +W1 -W1 +R1 +R2 -R2 -R1 +W2");
    actor_send(w2, ACT_UNLOCK);
    stage_expect(&s, " +W1 -W1 +R1 +R2 -R2 -R1 +W2 -W2 +R3");
    actor_send(r3, ACT_UNLOCK);
    stage_finish(&s);
}

/* The only reader upgrades at once, ahead of a waiting writer. */
static void test_rwlock_upgrade_sole_reader(void)
{
    Stage s;
    Actor *r, *w;

    stage_init(&s);
    r = stage_start(&s, "R", false);
    w = stage_start(&s, "W", true);
    actor_send(r, ACT_UPGRADE);
    stage_expect(&s, " +R ^R");
    actor_send(r, ACT_UNLOCK);
    stage_expect(&s, " +R ^R -R +W");
    actor_send(w, ACT_UNLOCK);
    stage_finish(&s);
}

/* An upgrade waits for the other readers to leave. */
static void test_rwlock_upgrade_waits_for_readers(void)
{
    Stage s;
    Actor *r1, *r2;

    stage_init(&s);
    r1 = stage_start(&s, "R1", false);
    r2 = stage_start(&s, "R2", false);
    actor_send(r1, ACT_UPGRADE);
    stage_expect(&s, " +R1 +R2");
    actor_send(r2, ACT_UNLOCK);
    stage_expect(&s, " +R1 +R2 -R2 ^R1");
    actor_send(r1, ACT_UNLOCK);
    stage_finish(&s);
}

/*
 * A downgrade lets the readers at the head of the queue in at once, but
 * not the writer behind them.
 */
static void test_rwlock_downgrade(void)
{
    Stage s;
    Actor *w1, *r1, *r2, *w2;

    stage_init(&s);
    w1 = stage_start(&s, "W1", true);
    r1 = stage_start(&s, "R1", false);
    r2 = stage_start(&s, "R2", false);
    w2 = stage_start(&s, "W2", true);
    actor_send(w1, ACT_DOWNGRADE);
    stage_expect(&s, " +W1 vW1 +R1 +R2");
    actor_send(r1, ACT_UNLOCK);
    actor_send(w1, ACT_UNLOCK);
    stage_expect(&s, " +W1 vW1 +R1 +R2 -R1 -W1");
    actor_send(r2, ACT_UNLOCK);
    stage_expect(&s, " +W1 vW1 +R1 +R2 -R1 -W1 -R2 +W2");
    actor_send(w2, ACT_UNLOCK);
    stage_finish(&s);
}

/* --- CoRwlock: stress across threads ------------------------------------- */

typedef struct RwStress {
    CoRwlock lock;
    Contexts c;
    int iterations;
    /* Writers keep a == b; readers check it.  lock; not atomic. */
    unsigned long a, b;
    int readers_in;         /* atomic: coroutines inside as readers */
    int writers_in;         /* atomic: coroutines inside as writers */
    int writes;             /* atomic: completed write sections */
    int violations;         /* atomic */
    int done;               /* atomic */
} RwStress;

typedef struct RwWorker {
    RwStress *s;
    int id;
} RwWorker;

static void rw_check(RwStress *s, bool ok)
{
    if (!ok) {
        qatomic_inc(&s->violations);
    }
}

static void coroutine_fn rw_write_section(RwStress *s, uint32_t *rnd)
    TSA_REQUIRES(s->lock)
{
    unsigned long a;

    rw_check(s, qatomic_fetch_inc(&s->writers_in) == 0);
    rw_check(s, qatomic_read(&s->readers_in) == 0);
    a = s->a;
    s->a = a + 1;
    wander(&s->c, rnd);
    s->b++;
    rw_check(s, s->a == a + 1 && s->b == s->a);
    qatomic_dec(&s->writers_in);
    qatomic_inc(&s->writes);
}

static void coroutine_fn rw_read_section(RwStress *s, uint32_t *rnd)
    TSA_REQUIRES_SHARED(s->lock)
{
    unsigned long a;

    qatomic_inc(&s->readers_in);
    rw_check(s, qatomic_read(&s->writers_in) == 0);
    a = s->a;
    wander(&s->c, rnd);
    rw_check(s, s->a == a && s->b == a);
    qatomic_dec(&s->readers_in);
}

static void coroutine_fn rw_worker(void *opaque)
{
    RwWorker *w = opaque;
    RwStress *s = w->s;
    uint32_t rnd = w->id * 7919u;
    int i;

    for (i = 0; i < s->iterations; i++) {
        uint32_t dice = next_rand(&rnd) % 8;

        if (dice == 0) {
            co_rwlock_wrlock(&s->lock);
            rw_write_section(s, &rnd);
            co_rwlock_unlock(&s->lock);
        } else if (dice == 1) {
            co_rwlock_rdlock(&s->lock);
            rw_read_section(s, &rnd);
            co_rwlock_upgrade(&s->lock);
            rw_write_section(s, &rnd);
            co_rwlock_downgrade(&s->lock);
            rw_read_section(s, &rnd);
            co_rwlock_unlock(&s->lock);
        } else {
            co_rwlock_rdlock(&s->lock);
            rw_read_section(s, &rnd);
            co_rwlock_unlock(&s->lock);
        }
    }
    qatomic_inc(&s->done);
    aio_wait_kick();
}

/*
 * Readers and writers in the main context and two iothreads, moving
 * between them while they hold the lock: writers are alone, readers never
 * see a half-done write, no write is lost.
 */
static void test_rwlock_stress(void)
{
    RwWorker w[N_CONTEXTS * WORKERS_PER_CONTEXT];
    RwStress s = { .iterations = 1000 * stress_iterations() };
    int i;

    co_rwlock_init(&s.lock);
    contexts_start(&s.c);
    for (i = 0; i < N_ELEMS(w); i++) {
        w[i] = (RwWorker) { .s = &s, .id = i + 1 };
        start_in(s.c.ctx[i % N_CONTEXTS], rw_worker, &w[i]);
    }
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&s.done) < N_ELEMS(w));
    g_assert_cmpint(qatomic_read(&s.violations), ==, 0);
    g_assert_cmpint(qatomic_read(&s.writes), >, 0);
    g_assert_cmpuint(s.a, ==, (unsigned long)qatomic_read(&s.writes));
    g_assert_cmpuint(s.b, ==, s.a);
    contexts_stop(&s.c);
    co_rwlock_destroy(&s.lock);
}

/* --- co_sleep_ns --------------------------------------------------------- */

#define SLEEP_NS (20 * 1000 * 1000)

typedef struct Sleeper {
    AioContext *ctx;
    int64_t elapsed_ns;
    bool same_ctx;
    int done;               /* atomic */
} Sleeper;

static void coroutine_fn sleeper(void *opaque)
{
    Sleeper *s = opaque;
    int64_t start = get_clock_ns();

    co_sleep_ns(SLEEP_NS);
    s->elapsed_ns = get_clock_ns() - start;
    s->same_ctx = aio_get_current_context() == s->ctx;
    qatomic_store_release(&s->done, 1);
    aio_wait_kick();
}

/*
 * A sleep in the main context and one in an iothread each last at least
 * as long as asked (no upper bound: the machine may be slow), and resume
 * in their own context.
 */
static void test_sleep_wakes_after_deadline(void)
{
    GLOBAL_STATE_CODE();
    IOThread *io = iothread_create("sleep", 0, &error_abort);
    Sleeper s[2] = {
        { .ctx = main_context() },
        { .ctx = iothread_get_aio_context(io) },
    };
    int i;

    for (i = 0; i < 2; i++) {
        start_in(s[i].ctx, sleeper, &s[i]);
    }
    for (i = 0; i < 2; i++) {
        AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&s[i].done));
        g_assert_cmpint(s[i].elapsed_ns, >=, SLEEP_NS);
        g_assert_true(s[i].same_ctx);
    }
    destroy_iothreads(&io, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();

    g_test_add_func("/co-queue/fifo-wake-order", test_queue_fifo_wake_order);
    g_test_add_func("/co-queue/restart-all", test_queue_restart_all);
    g_test_add_func("/co-queue/next-defers-wakeup",
                    test_queue_next_defers_wakeup);
    g_test_add_func("/co-queue/wait-releases-comutex",
                    test_queue_wait_releases_comutex);
    g_test_add_func("/co-queue/wait-bd-cross-thread",
                    test_queue_wait_bd_cross_thread);
    g_test_add_func("/co-queue/producer-consumer-comutex",
                    test_queue_producer_consumer_comutex);
    g_test_add_func("/co-queue/producer-consumer-bdmutex",
                    test_queue_producer_consumer_bdmutex);
    g_test_add_func("/co-mutex/mutual-exclusion-2-iothreads",
                    test_mutex_mutual_exclusion);
    g_test_add_func("/co-mutex/fifo-fairness", test_mutex_fifo_fairness);
    g_test_add_func("/co-mutex/fifo-fairness-cross-thread",
                    test_mutex_fifo_fairness_cross_thread);
    g_test_add_func("/co-mutex/handoff-no-barging",
                    test_mutex_handoff_no_barging);
    g_test_add_func("/co-mutex/terminate-holding-aborts",
                    test_mutex_terminate_holding_aborts);
    g_test_add_func("/co-rwlock/readers-share", test_rwlock_readers_share);
    g_test_add_func("/co-rwlock/writer-excludes",
                    test_rwlock_writer_excludes);
    g_test_add_func("/co-rwlock/no-writer-starvation",
                    test_rwlock_no_writer_starvation);
    g_test_add_func("/co-rwlock/wakes-consecutive-readers",
                    test_rwlock_wakes_consecutive_readers);
    g_test_add_func("/co-rwlock/upgrade-sole-reader",
                    test_rwlock_upgrade_sole_reader);
    g_test_add_func("/co-rwlock/upgrade-waits-for-readers",
                    test_rwlock_upgrade_waits_for_readers);
    g_test_add_func("/co-rwlock/downgrade", test_rwlock_downgrade);
    g_test_add_func("/co-rwlock/stress-2-iothreads", test_rwlock_stress);
    g_test_add_func("/co-sleep/wakes-after-deadline",
                    test_sleep_wakes_after_deadline);
    return g_test_run();
}
