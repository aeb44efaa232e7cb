/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The graph rwlock: protects the topology of the block graph, i.e. every
 * BlockDriverState's children and parents lists and every BdrvChild's bs.
 *
 * One writer: the main loop under the BQL, in bdrv_graph_wrlock().
 * Readers: I/O coroutines in any AioContext, in bdrv_graph_co_rdlock(); and
 * the main loop itself, which needs no lock to read (it is the only
 * writer) but says that it reads with bdrv_graph_rdlock_main_loop(), so
 * that clang's analysis accepts its calls to GRAPH_RDLOCK functions.
 *
 * Reading is cheap: each AioContext counts its own readers (no shared
 * cache line on the fast path).  A coroutine may take the lock in one
 * context and release it in another, so a context's count may go
 * negative; only the sum matters.  A context being destroyed hands its
 * count to a global orphan count.  A reader increments its count, issues
 * a full barrier and checks has_writer; if a writer is active it undoes
 * the increment, kicks the writer and waits on a CoQueue.  The writer
 * quiesces all nodes (without polling), clears has_writer while it polls
 * for readers to leave (so callbacks it runs can still read), then sets
 * has_writer with a barrier and re-checks.
 *
 * Rules: never poll or drain while holding the lock, in either mode
 * (drain first, then lock); I/O paths take the read lock only after a
 * drained BlockBackend has let their requests through.
 *
 * Annotations (clang -Wthread-safety): GRAPH_RDLOCK / GRAPH_WRLOCK on
 * functions that need the lock, GRAPH_UNLOCKED on functions that must be
 * called without it (they lock or poll), GRAPH_RDLOCK_PTR / GRAPH_WRLOCK_PTR
 * on function pointers.
 */
#ifndef BLOCK_GRAPH_LOCK_H
#define BLOCK_GRAPH_LOCK_H

#include "util/osdep.h"
#include "util/aio.h"
#include "util/main-loop.h"

typedef struct TSA_CAPABILITY("graph-lock") BdrvGraphLock {
    int unused;
} BdrvGraphLock;

extern BdrvGraphLock graph_lock;

#define GRAPH_RDLOCK        TSA_REQUIRES_SHARED(graph_lock)
#define GRAPH_WRLOCK        TSA_REQUIRES(graph_lock)
#define GRAPH_UNLOCKED      TSA_EXCLUDES(graph_lock)
#define GRAPH_RDLOCK_PTR    TSA_GUARDED_BY(graph_lock)
#define GRAPH_WRLOCK_PTR    TSA_GUARDED_BY(graph_lock)
#define GRAPH_UNLOCKED_PTR

/* Register the per-AioContext reader counts; main thread, at start-up. */
void bdrv_graph_init(void) TSA_REQUIRES(bql);

/*
 * The lock and unlock functions below are TSA_NO_TSA: their bodies
 * implement the capability with counters and assertions that the analysis
 * does not know.  The main-loop ones also require the BQL, so that no
 * iothread code can take the write lock or claim to be the main loop.
 */

/*
 * Take the write lock: quiesce every node (no polling), wait for all
 * readers to leave, keep new ones out.  Main loop, BQL, not in a
 * coroutine, not holding the lock.
 */
void bdrv_graph_wrlock(void) TSA_ACQUIRE(graph_lock) TSA_REQUIRES(bql)
    TSA_NO_TSA;
void bdrv_graph_wrunlock(void) TSA_RELEASE(graph_lock) TSA_REQUIRES(bql)
    TSA_NO_TSA;

/*
 * Like bdrv_graph_wrlock(), but the caller has drained everything
 * (bdrv_drain_all_begin()) and keeps it drained across the write section,
 * for changes that must not see any I/O at all.
 */
void bdrv_graph_wrlock_drained(void) TSA_ACQUIRE(graph_lock)
    TSA_REQUIRES(bql) TSA_NO_TSA;

/* Read lock for coroutines in any AioContext. */
void coroutine_fn bdrv_graph_co_rdlock(void)
    TSA_ACQUIRE_SHARED(graph_lock) TSA_NO_TSA;
void coroutine_fn bdrv_graph_co_rdunlock(void)
    TSA_RELEASE_SHARED(graph_lock) TSA_NO_TSA;

/*
 * Main-loop readers: no locking, only assertions (BQL held, not in a
 * coroutine) and the capability for the analysis.
 */
void bdrv_graph_rdlock_main_loop(void)
    TSA_ACQUIRE_SHARED(graph_lock) TSA_REQUIRES(bql) TSA_NO_TSA;
void bdrv_graph_rdunlock_main_loop(void)
    TSA_RELEASE_SHARED(graph_lock) TSA_REQUIRES(bql) TSA_NO_TSA;

/*
 * Number of readers in all contexts (sum, including orphans).  Exact when
 * no reader locks or unlocks meanwhile; a snapshot taken while readers
 * move between contexts may be off, even negative (block/graph/graph-lock.c).
 */
int bdrv_graph_reader_count(void);
/* Readers parked behind a writer (for tests). */
int bdrv_graph_waiting_readers(void);

/*
 * Tests only: @fn(ctx, @opaque) runs each time the reader count has read
 * @ctx's count, inside the sum, with the lock of the context list held,
 * so a test can make readers lock and unlock between two reads.  NULL
 * removes it.  Main loop.
 */
typedef void BdrvGraphReaderCountHook(AioContext *ctx, void *opaque);
void bdrv_graph_set_reader_count_hook(BdrvGraphReaderCountHook *fn,
                                      void *opaque);

/* Assertions, active in debug builds. */
void assert_bdrv_graph_readable(void);
void assert_bdrv_graph_writable(void);

/*
 * Scoped read locks.  The analysis cannot follow cleanup attributes, so the
 * guard asserts the capability for the rest of the scope instead.
 */
typedef struct GraphLockable { int unused; } GraphLockable;

GraphLockable *graph_lockable_auto_lock(GraphLockable *x)
    TSA_ASSERT_SHARED(graph_lock) TSA_NO_TSA;
void graph_lockable_auto_unlock(GraphLockable **x) TSA_NO_TSA;
GraphLockable *graph_lockable_auto_lock_main_loop(GraphLockable *x)
    TSA_ASSERT_SHARED(graph_lock) TSA_REQUIRES(bql) TSA_NO_TSA;
void graph_lockable_auto_unlock_main_loop(GraphLockable **x) TSA_NO_TSA;

#define GRAPH_GLUE_(a, b) a##b
#define GRAPH_GLUE(a, b) GRAPH_GLUE_(a, b)

/* In a coroutine: read-lock until the end of the enclosing scope. */
#define GRAPH_RDLOCK_GUARD()                                            \
    GraphLockable GRAPH_GLUE(graph_lockable_, __LINE__);               \
    GraphLockable *GRAPH_GLUE(graph_lockable_p_, __LINE__)              \
        __attribute__((cleanup(graph_lockable_auto_unlock), unused)) =  \
        graph_lockable_auto_lock(&GRAPH_GLUE(graph_lockable_, __LINE__))

#define GRAPH_RDLOCK_GUARD_MAINLOOP()                                   \
    GraphLockable GRAPH_GLUE(graph_lockable_, __LINE__);               \
    GraphLockable *GRAPH_GLUE(graph_lockable_p_, __LINE__)              \
        __attribute__((cleanup(graph_lockable_auto_unlock_main_loop),   \
                       unused)) =                                       \
        graph_lockable_auto_lock_main_loop(                             \
            &GRAPH_GLUE(graph_lockable_, __LINE__))

/* In a coroutine: WITH_GRAPH_RDLOCK_GUARD() { ... } */
#define WITH_GRAPH_RDLOCK_GUARD()                                       \
    for (GraphLockable GRAPH_GLUE(graph_lockable_, __LINE__),           \
         *GRAPH_GLUE(graph_lockable_p_, __LINE__)                       \
             __attribute__((cleanup(graph_lockable_auto_unlock))) =     \
             graph_lockable_auto_lock(                                  \
                 &GRAPH_GLUE(graph_lockable_, __LINE__));               \
         GRAPH_GLUE(graph_lockable_p_, __LINE__);                       \
         graph_lockable_auto_unlock(&GRAPH_GLUE(graph_lockable_p_, __LINE__)), \
         GRAPH_GLUE(graph_lockable_p_, __LINE__) = NULL)

#endif /* BLOCK_GRAPH_LOCK_H */
