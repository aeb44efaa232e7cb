/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CoMutex: a fair mutex for coroutines in any thread.
 *
 * State is {holder, FIFO of waiters} under a small internal BdMutex, held
 * for a few instructions and never across a yield.  Ownership is handed
 * over, not competed for: co_mutex_unlock() makes the oldest waiter the
 * holder before waking it, so nobody can take the lock between the release
 * and the waiter's resumption, and the waiter never has to retry.
 *
 * Invariants (under m->lock):
 *  - holder == NULL implies waiters is empty;
 *  - a coroutine on waiters is suspended in co_mutex_lock(), or about to
 *    yield there (then its wake-up, a bottom half in its own thread, runs
 *    only after the yield);
 *  - holder is the only coroutine that may call co_mutex_unlock().
 */
#include "util/osdep.h"

#include "util/aio.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine-int.h"

void co_mutex_init(CoMutex *m)
{
    bd_mutex_init(&m->lock);
    m->holder = NULL;
    co_queue_init(&m->waiters);
}

void co_mutex_destroy(CoMutex *m)
{
    bd_mutex_lock(&m->lock);
    if (m->holder || !co_queue_empty(&m->waiters)) {
        fprintf(stderr, "co_mutex_destroy: CoMutex %p is still %s\n",
                (void *)m, m->holder ? "locked" : "waited for");
        abort();
    }
    bd_mutex_unlock(&m->lock);
    bd_mutex_destroy(&m->lock);
}

/* The analysis cannot tie @m to the holder field: it trusts the header. */
void coroutine_fn co_mutex_lock(CoMutex *m) TSA_NO_TSA
{
    Coroutine *self = co_self();

    assert(self);
    bd_mutex_lock(&m->lock);
    if (!m->holder) {
        qatomic_set(&m->holder, self);
        bd_mutex_unlock(&m->lock);
    } else {
        if (m->holder == self) {
            fprintf(stderr, "co_mutex_lock: coroutine %p locks CoMutex %p "
                    "twice\n", (void *)self, (void *)m);
            abort();
        }
        co_queue_push_locked(&m->waiters, self);
        bd_mutex_unlock(&m->lock);
        co_yield();
        /*
         * co_mutex_unlock() made us the holder before waking us; the wake
         * (scheduling a coroutine) orders its write before this read.
         */
        assert(qatomic_read(&m->holder) == self);
    }
    self->locks_held++;
}

void coroutine_fn co_mutex_unlock(CoMutex *m) TSA_NO_TSA
{
    Coroutine *self = co_self();
    Coroutine *next;

    assert(self);
    bd_mutex_lock(&m->lock);
    if (m->holder != self) {
        fprintf(stderr, "co_mutex_unlock: coroutine %p does not hold "
                "CoMutex %p\n", (void *)self, (void *)m);
        abort();
    }
    next = co_queue_pop_locked(&m->waiters);
    qatomic_set(&m->holder, next);
    bd_mutex_unlock(&m->lock);
    self->locks_held--;

    if (next) {
        /* Unlocks run in coroutines, so this never enters @next here. */
        aio_co_wake(next);
    }
}

void coroutine_fn co_mutex_assert_locked(CoMutex *m)
{
    assert(co_self() && qatomic_read(&m->holder) == co_self());
}
