/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CoQueue: a FIFO of suspended coroutines, linked through
 * Coroutine.queue_next, and the one place that decides how a queued
 * coroutine is woken.
 *
 * Invariants:
 *  - A coroutine is on at most one queue, and only while it is suspended
 *    in co_queue_wait*() (or in a CoMutex waiting for it); the queue's
 *    lock protects head, tail and the queue_next links.
 *  - A waiter is unlinked before it is woken, and its queue_next is read
 *    before waking it: once woken it may run in another thread at once,
 *    and the runtime reuses queue_next for its own wake-up lists.
 *  - Waking never enters the coroutine synchronously (co_queue_wake()), so
 *    a waker holding the queue's lock cannot deadlock against the woken
 *    coroutine re-taking it.
 *  - A waiter pushes itself, drops the lock and yields.  A waker in another
 *    thread can pop and wake it in between; that is safe because the wake
 *    is a bottom half in the waiter's own thread, which runs only after
 *    the waiter has yielded.
 */
#include "util/osdep.h"

#include "util/aio.h"
#include "util/co-lock.h"
#include "util/coroutine-int.h"

void co_queue_init(CoQueue *q)
{
    q->head = NULL;
    q->tail = &q->head;
}

void co_queue_push_locked(CoQueue *q, Coroutine *co)
{
    co->queue_next = NULL;
    *q->tail = co;
    q->tail = &co->queue_next;
}

Coroutine *co_queue_pop_locked(CoQueue *q)
{
    Coroutine *co = q->head;

    if (co) {
        q->head = co->queue_next;
        if (!q->head) {
            q->tail = &q->head;
        }
        co->queue_next = NULL;
    }
    return co;
}

bool co_queue_empty(CoQueue *q)
{
    return q->head == NULL;
}

/*
 * Resume @co later, in the context it last ran in.  From a coroutine,
 * aio_co_wake() already defers (after our yield, or through a bottom half
 * in another context).  From plain code it would enter @co on the spot if
 * @co lives here, so go through a bottom half instead.
 */
static void co_queue_wake(Coroutine *co)
{
    if (in_coroutine()) {
        aio_co_wake(co);
    } else {
        aio_co_schedule(co_get_ctx(co), co);
    }
}

/* Unlocks and relocks @m, which may be NULL: beyond the analysis. */
void coroutine_fn co_queue_wait(CoQueue *q, CoMutex *m) TSA_NO_TSA
{
    Coroutine *self = co_self();

    assert(self);
    co_queue_push_locked(q, self);
    if (m) {
        co_mutex_unlock(m);
    }
    co_yield();
    if (m) {
        co_mutex_lock(m);
    }
}

void coroutine_fn co_queue_wait_bd(CoQueue *q, BdMutex *m)
{
    Coroutine *self = co_self();

    assert(self);
    co_queue_push_locked(q, self);
    bd_mutex_unlock(m);
    co_yield();
    bd_mutex_lock(m);
}

bool coroutine_mixed_fn co_queue_next(CoQueue *q)
{
    Coroutine *co = co_queue_pop_locked(q);

    if (!co) {
        return false;
    }
    co_queue_wake(co);
    return true;
}

void coroutine_mixed_fn co_queue_restart_all(CoQueue *q)
{
    Coroutine *co = q->head;

    co_queue_init(q);
    while (co) {
        Coroutine *next = co->queue_next;

        co->queue_next = NULL;
        co_queue_wake(co);
        co = next;
    }
}
