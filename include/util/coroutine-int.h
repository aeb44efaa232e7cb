/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Coroutine structure, for the runtime's own files (coroutine.c,
 * async.c and the coroutine locks).  Nothing outside util/ includes this,
 * but for tests/unit/test-co-switch.c, which drives co_switch_stack()
 * directly to check its ABI contract.
 */
#ifndef UTIL_COROUTINE_INT_H
#define UTIL_COROUTINE_INT_H

#include "util/coroutine.h"

struct Coroutine {
    /* Set by co_create(); owned by whoever enters the coroutine. */
    CoroutineEntry *entry;
    void *entry_arg;

    /*
     * The coroutine (or thread, when NULL) that entered us and that
     * co_yield() returns to.  Written by co_enter() in the entering thread
     * before the switch; read by this coroutine after it.
     */
    Coroutine *caller;

    /*
     * AioContext the coroutine last ran in.  Written by co_enter() in the
     * entering thread; read with qatomic_read by aio_co_wake() in any
     * thread (the waker learned of the coroutine through a lock or atomic
     * that orders this read after the write).
     */
    AioContext *ctx;

    /*
     * Name of the function that scheduled the coroutine, or NULL.  Set with
     * cmpxchg by aio_co_schedule() in any thread, cleared by the scheduled
     * coroutine BH in the target context just before entering.
     */
    const char *scheduled;

    /* Link in an AioContext's scheduled list (lock-free stack). */
    Coroutine *sched_next;

    /*
     * Link in a CoQueue, a wakeup list, or the pool.  Protected by whatever
     * owns the list the coroutine is on: the CoQueue's lock, the running
     * coroutine's thread for wakeup lists, the pool's owner.
     */
    Coroutine *queue_next;

    /*
     * Coroutines woken by this one while it ran, entered by co_enter()
     * after it yields.  Touched only by the thread running this coroutine.
     */
    Coroutine *wakeup_head;
    Coroutine **wakeup_tail;

    /* Number of CoMutex/CoRwlock locks held; checked at termination. */
    int locks_held;

    /*
     * BdMutexes the entering thread held when it entered us (they are its
     * own, not ours): at a yield, or when the coroutine ends, the thread
     * must hold no more than that.  Written by co_enter() in the entering
     * thread, read by this coroutine in the same thread.
     */
    int bd_held_base;

    /* Stack and saved stack pointer; private to coroutine.c. */
    void *stack;            /* lowest usable address, above the guard */
    size_t stack_size;
    void *sp;
    bool terminated;
#ifdef CONFIG_TSAN
    void *tsan_fiber;
    void *tsan_caller_fiber;
#endif
#ifdef CONFIG_ASAN
    void *asan_fake_stack;
#endif
};

/*
 * In coroutine-switch-<arch>.S: save the callee-saved registers on the
 * current stack and its stack pointer in *save_sp, then load the stack
 * pointer new_sp and restore the registers saved there.  new_sp is what an
 * earlier call stored, or a frame built by co_stack_init() in coroutine.c.
 */
void co_switch_stack(void **save_sp, void *new_sp);

/* Append @co to the current coroutine's wakeup list (see co_enter()). */
void co_wakeup_later(Coroutine *co);

#endif /* UTIL_COROUTINE_INT_H */
