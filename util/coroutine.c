/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Coroutines on mmap()ed stacks, switched by co_switch_stack() (assembly,
 * coroutine-switch-*.S), pooled per thread.
 *
 * Each thread that enters coroutines has a "leader": a Coroutine structure
 * without a stack of its own that stands for the thread's own stack, so
 * that co_yield() always has somewhere to switch to.
 *
 * A new coroutine's stack is laid out so that the first switch to it
 * "returns" into co_trampoline(), which runs entries in a loop: when an
 * entry returns, the coroutine switches back to its caller for the last
 * time and co_enter() puts it in the pool, where the same stack waits,
 * parked in the trampoline, for its next entry.
 *
 * Invariants:
 *  - co->caller is non-NULL exactly while the coroutine is running or is
 *    suspended in a nested co_enter(): entering it again then aborts.
 *  - The thread-locals (current coroutine, leader, pool) are read through
 *    CO_TLS accessors, never cached across a switch.
 *  - Under AddressSanitizer and ThreadSanitizer every switch is announced
 *    (fiber APIs), so both follow the coroutine onto its stack.
 */
#include "util/osdep.h"

#include <pthread.h>
#include <sys/mman.h>

#include "util/aio.h"
#include "util/atomic.h"
#include "util/coroutine-int.h"
#include "util/log.h"
#include "util/thread.h"

#ifdef CONFIG_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef CONFIG_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define POOL_LOCAL_MAX  64
#define POOL_GLOBAL_MAX 512

CO_TLS(Coroutine *, current_co)
CO_TLS(Coroutine *, leader)
CO_TLS(Coroutine *, local_pool)
CO_TLS(unsigned, local_pool_size)

/* Pool shared by every thread, refilled when thread pools overflow. */
static BdMutex global_pool_lock;
static Coroutine *global_pool TSA_GUARDED_BY(global_pool_lock);
static unsigned global_pool_size;  /* written under the lock; atomic reads */
static pthread_key_t thread_exit_key;
static pthread_once_t co_init_once = PTHREAD_ONCE_INIT;

static CoroutineStats stats;        /* atomic */

static void thread_exit_cb(void *unused);

static void co_global_init(void)
{
    bd_mutex_init(&global_pool_lock);
    if (pthread_key_create(&thread_exit_key, thread_exit_cb)) {
        abort();
    }
}

/* --- Switching ----------------------------------------------------------- */

static NORETURN void co_trampoline(void);

static void co_switch(Coroutine *from, Coroutine *to, bool from_done)
{
#ifdef CONFIG_ASAN
    __sanitizer_start_switch_fiber(from_done ? NULL : &from->asan_fake_stack,
                                   to->stack, to->stack_size);
#endif
#ifdef CONFIG_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    co_switch_stack(&from->sp, to->sp);
#ifdef CONFIG_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake_stack, NULL, NULL);
#endif
}

/* Prepare a fresh stack so that switching to it enters co_trampoline(). */
static void co_stack_init(Coroutine *co)
{
    uintptr_t top = ((uintptr_t)co->stack + co->stack_size) & ~(uintptr_t)15;
    uintptr_t *sp;

#if defined(__x86_64__)
    uint32_t mxcsr;
    uint16_t fpucw;

    /*
     * From co->sp up: MXCSR and the x87 control word, r15 r14 r13 r12 rbx
     * rbp (zero), the "return address" co_trampoline, then a zero return
     * address for co_trampoline itself.  After the ret, rsp % 16 == 8 as at
     * any function entry.  The coroutine starts with the control words of
     * the thread that allocated its stack (status flags cleared), as a
     * function called from there would.
     */
    __asm__ __volatile__("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
    sp = (uintptr_t *)(top - 16);
    sp[0] = (uintptr_t)co_trampoline;
    sp[1] = 0;
    sp -= 7;
    memset(sp, 0, 7 * sizeof(*sp));
    sp[0] = (mxcsr & ~(uint32_t)0x3f) | (uint64_t)fpucw << 32;
#elif defined(__aarch64__)
    /* A zeroed 176-byte frame whose x30 slot (offset 88) is the entry. */
    sp = (uintptr_t *)(top - 176);
    memset(sp, 0, 176);
    sp[11] = (uintptr_t)co_trampoline;
#else
#error "no coroutine switch for this architecture"
#endif
    co->sp = sp;
}

static Coroutine *get_leader_init(void)
{
    Coroutine *leader = get_leader();
    pthread_attr_t attr;

    if (leader) {
        return leader;
    }
    leader = g_new0(Coroutine, 1);
    /* The thread's own stack, for the sanitizers' bookkeeping. */
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &leader->stack, &leader->stack_size);
        pthread_attr_destroy(&attr);
    }
#ifdef CONFIG_TSAN
    leader->tsan_fiber = __tsan_get_current_fiber();
#endif
    set_leader(leader);
    pthread_once(&co_init_once, co_global_init);
    /* A non-NULL value makes thread_exit_cb() run when the thread exits. */
    pthread_setspecific(thread_exit_key, leader);
    return leader;
}

/* --- Allocation and the pool -------------------------------------------- */

static Coroutine *co_alloc(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    Coroutine *co = g_new0(Coroutine, 1);
    char *base;

    base = mmap(NULL, COROUTINE_STACK_SIZE + page, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                -1, 0);
    if (base == MAP_FAILED) {
        error_report("coroutine stack: mmap failed: %s", g_strerror(errno));
        abort();
    }
    /* Guard page: overflowing the stack faults instead of corrupting. */
    if (mprotect(base, page, PROT_NONE)) {
        error_report("coroutine stack: mprotect failed: %s",
                     g_strerror(errno));
        abort();
    }
    co->stack = base + page;
    co->stack_size = COROUTINE_STACK_SIZE;
    co_stack_init(co);
#ifdef CONFIG_TSAN
    co->tsan_fiber = __tsan_create_fiber(0);
#endif
    qatomic_inc(&stats.allocated);
    return co;
}

static void co_free(Coroutine *co)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

#ifdef CONFIG_TSAN
    __tsan_destroy_fiber(co->tsan_fiber);
#endif
    munmap((char *)co->stack - page, co->stack_size + page);
    g_free(co);
}

static Coroutine *pool_get(void)
{
    Coroutine *co = get_local_pool();

    if (!co && qatomic_read(&global_pool_size)) {
        /* Refill the thread's pool with a batch from the global one. */
        unsigned n = 0;

        bd_mutex_lock(&global_pool_lock);
        while (global_pool && n < POOL_LOCAL_MAX / 2) {
            Coroutine *c = global_pool;

            global_pool = c->queue_next;
            c->queue_next = co;
            co = c;
            n++;
        }
        qatomic_set(&global_pool_size, global_pool_size - n);
        bd_mutex_unlock(&global_pool_lock);
        set_local_pool_size(get_local_pool_size() + n);
    }
    if (co) {
        set_local_pool(co->queue_next);
        set_local_pool_size(get_local_pool_size() - 1);
        co->queue_next = NULL;
    }
    return co;
}

static void pool_put(Coroutine *co)
{
    if (get_local_pool_size() < POOL_LOCAL_MAX) {
        co->queue_next = get_local_pool();
        set_local_pool(co);
        set_local_pool_size(get_local_pool_size() + 1);
        return;
    }
    bd_mutex_lock(&global_pool_lock);
    if (global_pool_size < POOL_GLOBAL_MAX) {
        co->queue_next = global_pool;
        global_pool = co;
        qatomic_set(&global_pool_size, global_pool_size + 1);
        co = NULL;
    }
    bd_mutex_unlock(&global_pool_lock);
    if (co) {
        co_free(co);
    }
}

/* Thread exit: free the thread's pool and its leader. */
static void thread_exit_cb(void *leader)
{
    Coroutine *co;

    while ((co = get_local_pool())) {
        set_local_pool(co->queue_next);
        co_free(co);
    }
    set_local_pool_size(0);
    set_leader(NULL);
    g_free(leader);
}

Coroutine *co_create(CoroutineEntry *entry, void *opaque)
{
    Coroutine *co = pool_get();

    if (!co) {
        co = co_alloc();
    }
    co->entry = entry;
    co->entry_arg = opaque;
    co->caller = NULL;
    co->ctx = NULL;
    co->scheduled = NULL;
    co->sched_next = NULL;
    co->queue_next = NULL;
    co->wakeup_head = NULL;
    co->wakeup_tail = &co->wakeup_head;
    co->locks_held = 0;
    co->terminated = false;
    qatomic_inc(&stats.created);
    return co;
}

void co_get_stats(CoroutineStats *out)
{
    out->created = qatomic_read(&stats.created);
    out->allocated = qatomic_read(&stats.allocated);
}

/* --- Entering and yielding ---------------------------------------------- */

/*
 * No BdMutex across a yield: a coroutine may resume in another thread,
 * which would then unlock a mutex it does not own.  Checked here, where it
 * happens, rather than after the callback that entered the coroutine
 * returns, so that the report names the lock and where it was taken.
 * Locks the entering thread held before it entered us are not ours.
 */
static void co_assert_no_bd_mutex(Coroutine *self, const char *event)
{
    if (unlikely(bd_mutex_held_count() > self->bd_held_base)) {
        char where[64];

        snprintf(where, sizeof(where), "coroutine %p", (void *)self);
        bd_mutex_assert_held_at_most(self->bd_held_base, where, event);
    }
}

static NORETURN void co_trampoline(void)
{
    Coroutine *self = get_current_co();

#ifdef CONFIG_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    for (;;) {
        self->entry(self->entry_arg);
        co_assert_no_bd_mutex(self, "terminated");
        self->terminated = true;
#ifdef CONFIG_ASAN
        self->asan_fake_stack = NULL;
#endif
        co_switch(self, self->caller, true);
        /* Back from the pool with a new entry. */
    }
}

void co_wakeup_later(Coroutine *co)
{
    Coroutine *self = get_current_co();

    assert(self);
    co->queue_next = NULL;
    *self->wakeup_tail = co;
    self->wakeup_tail = &co->queue_next;
}

void co_enter(Coroutine *co)
{
    Coroutine *self = get_current_co();
    Coroutine *from = self ? self : get_leader_init();
    Coroutine *pending = co;
    Coroutine **pending_tail = &co->queue_next;

    co->queue_next = NULL;
    while (pending) {
        Coroutine *to = pending;

        pending = to->queue_next;
        if (!pending) {
            pending_tail = &pending;
        }
        to->queue_next = NULL;
        if (to->caller) {
            fprintf(stderr, "co_enter: coroutine %p re-entered recursively\n",
                    (void *)to);
            abort();
        }
        to->caller = from;
        to->bd_held_base = bd_mutex_held_count();
        /* Pairs with qatomic_load_acquire() in aio_co_wake(). */
        qatomic_store_release(&to->ctx, aio_get_current_context());
        set_current_co(to);
        co_switch(from, to, false);
        set_current_co(self);

        /* @to yielded or finished: enter what it woke, in order. */
        if (to->wakeup_head) {
            *pending_tail = to->wakeup_head;
            pending_tail = to->wakeup_tail;
            to->wakeup_head = NULL;
            to->wakeup_tail = &to->wakeup_head;
        }
        if (to->terminated) {
            if (to->locks_held) {
                fprintf(stderr, "coroutine %p terminated holding %d "
                        "coroutine lock(s)\n", (void *)to, to->locks_held);
                abort();
            }
            to->caller = NULL;
            pool_put(to);
        }
    }
}

void coroutine_fn co_yield(void)
{
    Coroutine *self = get_current_co();
    Coroutine *to;

    if (!self) {
        fprintf(stderr, "co_yield called outside coroutine context\n");
        abort();
    }
    co_assert_no_bd_mutex(self, "yielded");
    to = self->caller;
    self->caller = NULL;
    co_switch(self, to, false);
}

Coroutine *co_self(void)
{
    return get_current_co();
}

bool in_coroutine(void)
{
    return get_current_co() != NULL;
}

bool co_entered(Coroutine *co)
{
    return co->caller != NULL;
}

AioContext *co_get_ctx(Coroutine *co)
{
    return qatomic_load_acquire(&co->ctx);
}
