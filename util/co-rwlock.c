/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CoRwlock: a fair readers-writer lock for coroutines in any thread.
 *
 * One FIFO holds every waiter with its mode (a CoRwlockWaiter on the
 * waiting coroutine's stack).  As with CoMutex, the lock is handed over:
 * whoever frees it grants it to the waiters at the head (counting them in
 * readers or setting writer) before waking them, so a woken coroutine
 * already holds the lock and never retries.
 *
 * Invariants (under l->lock):
 *  - writer != NULL implies readers == 0;
 *  - if the queue is not empty, its head cannot be granted: either a
 *    writer holds the lock, or the head is a writer and readers > 0.  A
 *    newcomer therefore takes the fast path only when the queue is empty;
 *  - a CoRwlockWaiter is linked only while its coroutine is suspended (or
 *    about to yield) in this file; the granter copies its coroutine
 *    pointer before waking it, as the waiter's stack frame goes away once
 *    it runs.
 */
#include "util/osdep.h"

#include "util/aio.h"
#include "util/co-lock.h"
#include "util/coroutine-int.h"

struct CoRwlockWaiter {
    Coroutine *co;
    bool exclusive;
    CoRwlockWaiter *next;
};

void co_rwlock_init(CoRwlock *l)
{
    bd_mutex_init(&l->lock);
    l->readers = 0;
    l->writer = NULL;
    l->head = NULL;
    l->tail = &l->head;
}

void co_rwlock_destroy(CoRwlock *l)
{
    bd_mutex_lock(&l->lock);
    if (l->readers || l->writer || l->head) {
        fprintf(stderr, "co_rwlock_destroy: CoRwlock %p is still %s\n",
                (void *)l, l->head ? "waited for" : "locked");
        abort();
    }
    bd_mutex_unlock(&l->lock);
    bd_mutex_destroy(&l->lock);
}

/*
 * Grant the lock to the waiters at the head that can have it now: one
 * writer, or every reader up to the next writer.  Returns them linked
 * through queue_next, for co_rwlock_wake() once l->lock is dropped.
 */
static Coroutine *co_rwlock_grant_locked(CoRwlock *l)
{
    Coroutine *granted = NULL;
    Coroutine **tail = &granted;

    while (l->head && !l->writer) {
        CoRwlockWaiter *w = l->head;

        if (w->exclusive) {
            if (l->readers) {
                break;
            }
            l->writer = w->co;
        } else {
            l->readers++;
        }
        l->head = w->next;
        if (!l->head) {
            l->tail = &l->head;
        }
        w->co->queue_next = NULL;
        *tail = w->co;
        tail = &w->co->queue_next;
    }
    return granted;
}

/* Wake what co_rwlock_grant_locked() returned. */
static void co_rwlock_wake(Coroutine *granted)
{
    while (granted) {
        Coroutine *next = granted->queue_next;

        granted->queue_next = NULL;
        /* We run in a coroutine: this never enters @granted here. */
        aio_co_wake(granted);
        granted = next;
    }
}

/*
 * Queue the caller with @exclusive mode, drop l->lock (held by the
 * caller) and sleep until granted.
 */
static void coroutine_fn co_rwlock_wait(CoRwlock *l, bool exclusive)
    TSA_RELEASE(l->lock)
{
    CoRwlockWaiter w = {
        .co = co_self(),
        .exclusive = exclusive,
    };

    *l->tail = &w;
    l->tail = &w.next;
    bd_mutex_unlock(&l->lock);
    co_yield();
}

/* The analysis cannot tie @l to readers/writer: it trusts the header. */
void coroutine_fn co_rwlock_rdlock(CoRwlock *l) TSA_NO_TSA
{
    Coroutine *self = co_self();

    assert(self);
    bd_mutex_lock(&l->lock);
    if (!l->writer && !l->head) {
        l->readers++;
        bd_mutex_unlock(&l->lock);
    } else {
        co_rwlock_wait(l, false);
    }
    self->locks_held++;
}

void coroutine_fn co_rwlock_wrlock(CoRwlock *l) TSA_NO_TSA
{
    Coroutine *self = co_self();

    assert(self);
    bd_mutex_lock(&l->lock);
    if (!l->writer && !l->readers && !l->head) {
        l->writer = self;
        bd_mutex_unlock(&l->lock);
    } else {
        if (l->writer == self) {
            fprintf(stderr, "co_rwlock_wrlock: coroutine %p locks CoRwlock "
                    "%p twice\n", (void *)self, (void *)l);
            abort();
        }
        co_rwlock_wait(l, true);
    }
    self->locks_held++;
}

void coroutine_fn co_rwlock_unlock(CoRwlock *l) TSA_NO_TSA
{
    Coroutine *self = co_self();
    Coroutine *granted;

    assert(self);
    bd_mutex_lock(&l->lock);
    if (l->writer) {
        if (l->writer != self) {
            fprintf(stderr, "co_rwlock_unlock: coroutine %p unlocks "
                    "CoRwlock %p, write-locked by %p\n", (void *)self,
                    (void *)l, (void *)l->writer);
            abort();
        }
        l->writer = NULL;
    } else {
        assert(l->readers > 0);
        l->readers--;
    }
    granted = co_rwlock_grant_locked(l);
    bd_mutex_unlock(&l->lock);
    self->locks_held--;
    co_rwlock_wake(granted);
}

void coroutine_fn co_rwlock_upgrade(CoRwlock *l) TSA_NO_TSA
{
    Coroutine *self = co_self();

    assert(self);
    bd_mutex_lock(&l->lock);
    assert(!l->writer && l->readers > 0);
    if (l->readers == 1) {
        l->readers = 0;
        l->writer = self;
        bd_mutex_unlock(&l->lock);
        return;
    }
    /*
     * Other readers remain, so nothing at the head can be granted by our
     * leaving: just queue.
     */
    l->readers--;
    co_rwlock_wait(l, true);
}

void coroutine_fn co_rwlock_downgrade(CoRwlock *l) TSA_NO_TSA
{
    Coroutine *self = co_self();
    Coroutine *granted;

    assert(self);
    bd_mutex_lock(&l->lock);
    assert(l->writer == self);
    l->writer = NULL;
    l->readers = 1;
    granted = co_rwlock_grant_locked(l);
    bd_mutex_unlock(&l->lock);
    co_rwlock_wake(granted);
}
