/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The graph rwlock (see include/block/graph-lock.h for the protocol).
 *
 * State:
 *  - has_writer (atomic): a writer holds or is taking the lock.
 *  - one BdrvGraphRWlock per AioContext, in the context's
 *    AIO_SLOT_GRAPH_LOCK slot: reader_count, written only by coroutines
 *    running in that context's home thread (atomic stores, so the writer
 *    can sum them from the main thread); all of them on a list under
 *    aio_context_list_lock.
 *  - orphaned_reader_count: the counts of destroyed contexts (under
 *    aio_context_list_lock).
 *  - reader_queue: readers that found a writer, waiting for it to finish
 *    (under aio_context_list_lock).
 *
 * The reader's fast path touches only its own context's counter and reads
 * has_writer: no shared cache line is written.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine.h"
#include "util/log.h"
#include "util/main-loop.h"
#include "util/queue.h"

BdrvGraphLock graph_lock;

/* Guards the list of contexts' reader counts and the orphan count. */
static BdMutex aio_context_list_lock;

typedef struct BdrvGraphRWlock {
    /* Readers that locked in this context minus those that unlocked
     * here: may be negative.  Home thread writes; atomic. */
    int reader_count;
    AioContext *ctx;                        /* immutable */
    QLIST_ENTRY(BdrvGraphRWlock TSA_GUARDED_BY(aio_context_list_lock))
        next_aio;
} BdrvGraphRWlock;

static QLIST_HEAD(, BdrvGraphRWlock TSA_GUARDED_BY(aio_context_list_lock))
    aio_context_list = QLIST_HEAD_INITIALIZER;
static int orphaned_reader_count TSA_GUARDED_BY(aio_context_list_lock);
static CoQueue reader_queue;        /* aio_context_list_lock */
static int waiting_readers;         /* in reader_queue; atomic for tests */

static int has_writer;              /* atomic */
/*
 * A write section is in progress: from the start of bdrv_graph_wrlock()
 * (which polls, with has_writer clear, while readers leave) to the end of
 * bdrv_graph_wrunlock().  There is one writer at a time by construction:
 * the main-loop callbacks that change the graph are deferred work
 * (util/aio-wait.h), which never runs inside the writer's wait.  This
 * catches a violation at once instead of as a use-after-free later.  BQL
 */
static bool writer_active;

static void graph_writer_begin(void)
{
    GLOBAL_STATE_CODE();
    assert(!in_coroutine());
    if (writer_active) {
        error_report("graph write lock taken inside another write section "
                     "(a graph change ran inside a writer's wait: it must be "
                     "deferred work)");
        abort();
    }
    assert(!qatomic_read(&has_writer));
    writer_active = true;
}

/* bdrv_graph_set_reader_count_hook(): tests only.  atomic */
static BdrvGraphReaderCountHook *reader_count_hook;
static void *reader_count_hook_opaque;

static void graph_ctx_created(AioContext *ctx)
{
    BdrvGraphRWlock *g = g_new0(BdrvGraphRWlock, 1);

    g->ctx = ctx;
    aio_context_set_slot(ctx, AIO_SLOT_GRAPH_LOCK, g);
    bd_mutex_lock(&aio_context_list_lock);
    QLIST_INSERT_HEAD(&aio_context_list, g, next_aio);
    bd_mutex_unlock(&aio_context_list_lock);
}

static void graph_ctx_destroying(AioContext *ctx)
{
    BdrvGraphRWlock *g = aio_context_get_slot(ctx, AIO_SLOT_GRAPH_LOCK);

    if (!g) {
        return;     /* created before bdrv_graph_init() */
    }
    bd_mutex_lock(&aio_context_list_lock);
    /* A coroutine may have locked here and unlocked elsewhere (or the
     * reverse): keep its count so that the sum stays right. */
    orphaned_reader_count += qatomic_read(&g->reader_count);
    QLIST_REMOVE(g, next_aio);
    bd_mutex_unlock(&aio_context_list_lock);
    aio_context_set_slot(ctx, AIO_SLOT_GRAPH_LOCK, NULL);
    g_free(g);
}

static const AioContextHooks graph_lock_hooks = {
    .created = graph_ctx_created,
    .destroying = graph_ctx_destroying,
};

void bdrv_graph_init(void)
{
    AioContext *main_ctx = main_context();

    GLOBAL_STATE_CODE();
    bd_mutex_init(&aio_context_list_lock);
    co_queue_init(&reader_queue);
    aio_context_add_hooks(&graph_lock_hooks);
    /* The main context predates the hooks. */
    if (main_ctx && !aio_context_get_slot(main_ctx, AIO_SLOT_GRAPH_LOCK)) {
        graph_ctx_created(main_ctx);
    }
}

/*
 * The sum of the per-context counts and the orphans.  It is read one
 * context at a time, not at one instant, and a reader may lock in one
 * context and unlock in another (multiqueue exports move requests, and a
 * coroutine may reschedule itself), so the sum is exact only when no
 * reader locks or unlocks while it is taken.  Take a reader R that locks
 * in context A (A's count +1) and unlocks in context B (B's count -1),
 * and a writer W that reads A's count and, later, B's:
 *
 * Case 1: W reads A after R's lock and B before R's unlock.  R counts +1:
 *   right while R holds the lock, and harmless if R has left since (the
 *   writer polls again and the next sample drops it).
 *
 * Case 2: W reads A and B both before R's lock, or both after R's
 *   unlock.  R counts 0, and rightly so.
 *
 * Case 3: W reads A before R's lock and B after R's unlock.  R counts -1:
 *   R came and went between the two reads.  The sum is too low by one;
 *   it can be negative, and it can be 0 while another reader S holds the
 *   lock (S's +1 and R's -1 cancel out).
 *
 * Case 3 needs a reader that takes the lock after W has read its
 * context.  When that can happen depends on has_writer:
 *
 * Case 3a: has_writer is clear.  The writer clears it while it polls
 *   (graph_wait_for_readers()), so that callbacks run by the poll can
 *   take read locks.  Readers come and go freely, and the sum is only a
 *   hint: negative, or 0 with readers inside.  The poll treats anything
 *   but 0 as "not done" (a negative sum comes from an unlock, and every
 *   unlock kicks the writer, so it samples again), and never trusts a 0
 *   from here: it goes on to the re-check of case 3b.
 *
 * Case 3b: has_writer is set and the writer has issued its smp_mb()
 *   after setting it.  A reader R that locks in A after W read A:
 *
 *      R:  A's count++;  smp_mb();  read has_writer
 *      W:  has_writer = 1;  smp_mb();  read A's count
 *
 *   W did not see R's increment, so R sees has_writer == 1 (the two
 *   barriers pair): R undoes its increment, in A, and waits for the
 *   writer without touching the graph.  It never unlocks in B: both of
 *   its changes are in A, and W sees none, the +1 alone, or both.  So
 *   every reader that is inside the lock while W sums locked before W
 *   read its lock context, and W sees its +1; its -1 W may or may not
 *   see.  Hence the sum is at least the number of readers inside, and
 *   it is never negative: a negative sum there is a bug, and 0 means
 *   that no reader is inside.
 *
 * The orphans cannot move while we sum: a dying context hands its count
 * over under aio_context_list_lock, which we hold.
 */
static int reader_count_locked(void) TSA_REQUIRES(aio_context_list_lock)
{
    BdrvGraphReaderCountHook *hook = qatomic_read(&reader_count_hook);
    BdrvGraphRWlock *g;
    int rd = orphaned_reader_count;

    QLIST_FOREACH(g, &aio_context_list, next_aio) {
        /*
         * Acquire: pairs with the store-release in bdrv_graph_co_rdunlock(),
         * so that a reader's accesses happen before the writer's changes.
         */
        rd += qatomic_load_acquire(&g->reader_count);
        if (unlikely(hook)) {
            hook(g->ctx, reader_count_hook_opaque);
        }
    }
    return rd;
}

void bdrv_graph_set_reader_count_hook(BdrvGraphReaderCountHook *fn,
                                      void *opaque)
{
    GLOBAL_STATE_CODE();
    reader_count_hook_opaque = opaque;
    qatomic_set(&reader_count_hook, fn);
}

int bdrv_graph_waiting_readers(void)
{
    return qatomic_read(&waiting_readers);
}

int bdrv_graph_reader_count(void)
{
    int rd;

    bd_mutex_lock(&aio_context_list_lock);
    rd = reader_count_locked();
    bd_mutex_unlock(&aio_context_list_lock);
    return rd;
}

static void graph_wait_for_readers(void)
{
    int rd;

    do {
        /*
         * Let callbacks that run while we poll take read locks (they may
         * be what the readers we wait for are waiting on), then keep new
         * readers out and look again.  While has_writer is clear the sum
         * is a hint (case 3a above): negative means "not zero yet".
         */
        qatomic_set(&has_writer, 0);
        AIO_WAIT_WHILE(NULL, bdrv_graph_reader_count() != 0);
        qatomic_set(&has_writer, 1);
        /*
         * Pairs with smp_mb() in bdrv_graph_co_rdlock(): either a reader
         * sees has_writer and backs off, or we see its count.  From here
         * the sum is reliable (case 3b above).
         */
        smp_mb();
        rd = bdrv_graph_reader_count();
        assert(rd >= 0);
    } while (rd > 0);
}

void bdrv_graph_wrlock(void)
{
    graph_writer_begin();

    /*
     * Quiesce without polling, so that a stream of new requests cannot
     * keep the reader count from reaching zero; requests already inside
     * the lock finish while we poll.
     */
    bdrv_drain_all_begin_nopoll();
    graph_wait_for_readers();
    bdrv_drain_all_end();
}

void bdrv_graph_wrlock_drained(void)
{
    graph_writer_begin();
    graph_wait_for_readers();
}

void bdrv_graph_wrunlock(void)
{
    GLOBAL_STATE_CODE();
    assert(qatomic_read(&has_writer));

    bd_mutex_lock(&aio_context_list_lock);
    /*
     * Readers re-check has_writer under aio_context_list_lock before they
     * wait, so clearing it under the lock and restarting them cannot lose
     * a wake-up.
     */
    qatomic_store_release(&has_writer, 0);
    co_queue_restart_all(&reader_queue);
    bd_mutex_unlock(&aio_context_list_lock);
    writer_active = false;

    /* Close what lost its last reference while we held the lock. */
    bdrv_run_pending_unrefs();
}

static BdrvGraphRWlock *current_graph_rwlock(void)
{
    AioContext *ctx = aio_get_current_context();
    BdrvGraphRWlock *g;

    assert(ctx);
    g = aio_context_get_slot(ctx, AIO_SLOT_GRAPH_LOCK);
    assert(g);
    return g;
}

void coroutine_fn bdrv_graph_co_rdlock(void)
{
    BdrvGraphRWlock *g;

    assert(in_coroutine());
    for (;;) {
        /* Re-read after every wait: we may have moved to another thread. */
        g = current_graph_rwlock();
        qatomic_set(&g->reader_count, g->reader_count + 1);
        /* Pairs with smp_mb() in graph_wait_for_readers(). */
        smp_mb();
        /*
         * Acquire: pairs with the store-release in bdrv_graph_wrunlock(),
         * so that what the last writer changed is visible to us.  (The
         * fence above orders our count against has_writer; it does not
         * make us see the writer's graph changes.)
         */
        if (!qatomic_load_acquire(&has_writer)) {
            return;
        }

        /* A writer is active or waiting: back off and wait for it. */
        qatomic_set(&g->reader_count, g->reader_count - 1);
        bd_mutex_lock(&aio_context_list_lock);
        /* The writer may be polling for our count to drop. */
        aio_wait_kick();
        if (qatomic_read(&has_writer)) {
            qatomic_inc(&waiting_readers);
            co_queue_wait_bd(&reader_queue, &aio_context_list_lock);
            qatomic_dec(&waiting_readers);
        }
        bd_mutex_unlock(&aio_context_list_lock);
    }
}

void coroutine_fn bdrv_graph_co_rdunlock(void)
{
    BdrvGraphRWlock *g = current_graph_rwlock();

    assert(in_coroutine());
    qatomic_store_release(&g->reader_count, g->reader_count - 1);
    /*
     * A writer waiting for the count to drop polls the main loop: wake it.
     * Always, not only when has_writer is set: the writer clears has_writer
     * while it polls.  aio_wait_kick() has the full barrier that orders our
     * decrement before its read of num_waiters.
     */
    aio_wait_kick();
}

void bdrv_graph_rdlock_main_loop(void)
{
    GLOBAL_STATE_CODE();
    assert(!in_coroutine());
}

void bdrv_graph_rdunlock_main_loop(void)
{
    GLOBAL_STATE_CODE();
    assert(!in_coroutine());
}

void assert_bdrv_graph_readable(void)
{
#ifndef NDEBUG
    /* The main loop may always read; others must hold a read lock. */
    if (!in_main_thread()) {
        assert(in_coroutine());
        assert(qatomic_read(&current_graph_rwlock()->reader_count) != 0 ||
               bdrv_graph_reader_count() > 0);
    }
#endif
}

void assert_bdrv_graph_writable(void)
{
#ifndef NDEBUG
    assert(in_main_thread());
    assert(qatomic_read(&has_writer));
#endif
}

GraphLockable *graph_lockable_auto_lock(GraphLockable *x)
{
    bdrv_graph_co_rdlock();
    return x;
}

void graph_lockable_auto_unlock(GraphLockable **x)
{
    if (*x) {
        bdrv_graph_co_rdunlock();
    }
}

GraphLockable *graph_lockable_auto_lock_main_loop(GraphLockable *x)
{
    bdrv_graph_rdlock_main_loop();
    return x;
}

void graph_lockable_auto_unlock_main_loop(GraphLockable **x)
{
    if (*x) {
        bdrv_graph_rdunlock_main_loop();
    }
}
