/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutine locks: CoQueue, CoMutex, CoRwlock, and co_sleep_ns().
 *
 * Who may call what:
 *  - Everything that waits (co_queue_wait*, co_mutex_lock, co_rwlock_*lock,
 *    co_rwlock_upgrade, co_sleep_ns) is coroutine_fn: it runs in a
 *    coroutine, which may be in any thread.  A coroutine that waits is
 *    resumed in the AioContext it last ran in.
 *  - CoMutex and CoRwlock work across threads: coroutines in different
 *    iothreads may contend for one lock, and a coroutine may take a lock in
 *    one AioContext, move (aio_co_reschedule_self()) and release it in
 *    another.  They are fair: waiters are served in arrival order, and a
 *    release hands the lock straight to the oldest waiter, so a coroutine
 *    that releases and re-locks at once queues behind it.
 *  - A CoQueue has no lock of its own: it is protected by the lock its
 *    waiters pass to co_queue_wait() / co_queue_wait_bd(), and whoever
 *    calls co_queue_next(), co_queue_restart_all() or co_queue_empty() must
 *    hold that same lock.  Those three may be called from coroutine or
 *    plain context in any thread.
 *  - Waking never runs the woken coroutine before the waker returns: from
 *    a coroutine in the waiter's context it runs after the waker yields;
 *    otherwise a bottom half in the waiter's context enters it.  So wakers
 *    may hold the queue's lock (even a BdMutex) while they wake.
 *  - A coroutine never holds a BdMutex across a yield: co_queue_wait_bd()
 *    drops it while the coroutine sleeps.
 *
 * Every CoMutex and CoRwlock acquisition counts in the holder's
 * locks_held; a coroutine that terminates holding one aborts.
 */
#ifndef UTIL_CO_LOCK_H
#define UTIL_CO_LOCK_H

#include "util/osdep.h"
#include "util/coroutine.h"
#include "util/thread.h"

/* --- CoQueue ---------------------------------------------------------- */

/*
 * A FIFO of suspended coroutines, linked through Coroutine.queue_next.
 * Both fields are protected by the lock the users of the queue agree on
 * (see above); a queue used by one thread only needs none.
 */
typedef struct CoQueue {
    Coroutine *head;
    Coroutine **tail;
} CoQueue;

#define CO_QUEUE_INITIALIZER(q) { .head = NULL, .tail = &(q).head }

void co_queue_init(CoQueue *q);

typedef struct CoMutex CoMutex;

/*
 * Append the calling coroutine to @q and sleep until co_queue_next() or
 * co_queue_restart_all() wakes it.  If @m is not NULL, the caller holds it:
 * it is released while the coroutine sleeps and re-acquired before this
 * returns.  With @m NULL, every user of @q runs in one thread (clang's
 * analysis lets a NULL capability through).  Whoever woke the coroutine
 * may have been overtaken by then: wait in a loop that re-checks the
 * condition.
 */
void coroutine_fn co_queue_wait(CoQueue *q, CoMutex *m) TSA_REQUIRES(m);

/*
 * The same with a BdMutex, which the caller holds: the coroutine queues
 * itself, unlocks @m, sleeps, and locks @m again once woken.
 */
void coroutine_fn co_queue_wait_bd(CoQueue *q, BdMutex *m) TSA_REQUIRES(m);

/*
 * Wake the oldest waiter of @q.  Returns false if @q was empty.  The
 * caller holds @q's lock.
 */
bool coroutine_mixed_fn co_queue_next(CoQueue *q);

/* Wake every waiter of @q, oldest first.  The caller holds @q's lock. */
void coroutine_mixed_fn co_queue_restart_all(CoQueue *q);

/* True if nobody waits on @q.  The caller holds @q's lock. */
bool co_queue_empty(CoQueue *q);

/*
 * For the lock implementations in util/: add @co at the tail of @q, and
 * remove the head of @q (NULL if empty) without waking it.  The caller
 * holds @q's lock.
 */
void co_queue_push_locked(CoQueue *q, Coroutine *co);
Coroutine *co_queue_pop_locked(CoQueue *q);

/* --- CoMutex ---------------------------------------------------------- */

/*
 * A mutual-exclusion lock for coroutines.  Waiting for it suspends the
 * coroutine, not the thread.  The internal BdMutex is held only for a few
 * instructions and never across a yield.
 */
struct TSA_CAPABILITY("mutex") CoMutex {
    BdMutex lock;           /* protects the two fields below */
    /*
     * The coroutine that owns the CoMutex, or NULL.  Written under @lock
     * with qatomic_set; co_mutex_assert_locked() reads it with
     * qatomic_read.
     */
    Coroutine *holder;
    CoQueue waiters;        /* @lock: coroutines waiting to own it */
};

void co_mutex_init(CoMutex *m);
/* @m must be unlocked, with no waiters. */
void co_mutex_destroy(CoMutex *m);

/* Acquire @m, sleeping behind older waiters while it is taken. */
void coroutine_fn co_mutex_lock(CoMutex *m) TSA_ACQUIRE(m);

/*
 * Release @m, which the calling coroutine holds; the oldest waiter, if
 * any, becomes the owner and is woken.
 */
void coroutine_fn co_mutex_unlock(CoMutex *m) TSA_RELEASE(m);

/* Abort unless the calling coroutine holds @m. */
void coroutine_fn co_mutex_assert_locked(CoMutex *m) TSA_ASSERT(m);

/* --- CoRwlock --------------------------------------------------------- */

typedef struct CoRwlockWaiter CoRwlockWaiter;

/*
 * A readers-writer lock for coroutines, fair: waiters form one FIFO, each
 * with its mode.  A reader that arrives while anyone waits queues too, so
 * a waiting writer is not starved by a stream of readers.  When the lock
 * becomes free, the waiter at the head gets it: a writer alone, or all the
 * readers up to the next waiting writer together.
 */
typedef struct TSA_CAPABILITY("mutex") CoRwlock {
    BdMutex lock;           /* protects every field below */
    int readers;            /* @lock: coroutines holding it shared */
    Coroutine *writer;      /* @lock: the exclusive holder, or NULL */
    /* @lock: FIFO of waiters, CoRwlockWaiters on their coroutines' stacks */
    CoRwlockWaiter *head;
    CoRwlockWaiter **tail;
} CoRwlock;

void co_rwlock_init(CoRwlock *l);
/* @l must be unlocked, with no waiters. */
void co_rwlock_destroy(CoRwlock *l);

void coroutine_fn co_rwlock_rdlock(CoRwlock *l) TSA_ACQUIRE_SHARED(l);
void coroutine_fn co_rwlock_wrlock(CoRwlock *l) TSA_ACQUIRE(l);

/* Release @l, held shared or exclusive by the calling coroutine. */
void coroutine_fn co_rwlock_unlock(CoRwlock *l) TSA_RELEASE_GENERIC(l);

/*
 * Turn a read lock into a write lock.  If the caller is the only reader
 * this happens at once, ahead of any waiter.  Otherwise the caller gives
 * up its read lock and waits as a writer at the tail of the queue: what it
 * read may have changed by the time this returns.
 */
void coroutine_fn co_rwlock_upgrade(CoRwlock *l)
    TSA_RELEASE_SHARED(l) TSA_ACQUIRE(l);

/*
 * Turn the caller's write lock into a read lock, at once; the readers at
 * the head of the queue share it with the caller.
 */
void coroutine_fn co_rwlock_downgrade(CoRwlock *l)
    TSA_RELEASE(l) TSA_ACQUIRE_SHARED(l);

/* --- Sleeping --------------------------------------------------------- */

/*
 * Sleep for at least @ns nanoseconds (CLOCK_MONOTONIC) on a timer of the
 * current AioContext; the coroutine resumes in that context.  Only the
 * timer wakes it: nobody else may aio_co_wake() a sleeping coroutine.
 */
void coroutine_fn co_sleep_ns(int64_t ns);

#endif /* UTIL_CO_LOCK_H */
