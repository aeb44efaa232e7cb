/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pthread wrappers (see include/util/thread.h).
 *
 * A pthread call that fails here means memory corruption or a locking bug
 * (unlocking a mutex the thread does not own, destroying a busy one), so
 * every failure aborts with the call's name and strerror; except
 * pthread_create(), which fails when the process is out of threads or
 * memory, and whose caller gets an error.  Each thread counts
 * the BdMutexes it holds in a thread-local integer; the event loop checks
 * that the count is zero whenever a callback returns, and co_yield() that
 * it is back where it was when the coroutine was entered.  The count is
 * only meaningful because a coroutine never holds a BdMutex across a
 * yield, so a lock is always released by the thread that took it.  Debug
 * builds also keep, per thread, the list of held BdMutexes with where each
 * was taken (as SPDK's debug spinlocks do), which those checks print, and
 * use error-checking mutexes, which turn a double lock or a foreign unlock
 * into an abort instead of a deadlock or silent corruption.
 *
 * The BQL is a plain pthread mutex (util/main-loop.c), not counted here:
 * the main thread holds it for its whole life.
 *
 * Condition variables wait on CLOCK_MONOTONIC, the clock of get_clock_ns(),
 * so deadlines do not move when the wall clock is set.
 */
#include "util/osdep.h"

#include <signal.h>

#include "util/log.h"
#include "util/thread.h"

/*
 * The BdMutexes this thread holds: how many, and in debug builds the first
 * HELD_MAX of them, in the order taken, with where.  Thread-local: read
 * only by functions that do not yield, so a cached TLS address cannot go
 * stale (compare CO_TLS in util/coroutine.h).
 */
static __thread int mutex_held_count;

#ifndef NDEBUG
#define HELD_MAX 16

typedef struct HeldLock {
    const BdMutex *mutex;       /* NULL: not recorded (over HELD_MAX) */
    const char *name;           /* the lock as written at the call */
    const char *file;
    int line;
    const char *func;
} HeldLock;

static __thread HeldLock held_locks[HELD_MAX];

static void held_push(const BdMutex *mutex, const char *name,
                      const char *file, int line, const char *func)
{
    if (mutex_held_count < HELD_MAX) {
        held_locks[mutex_held_count] = (HeldLock) {
            mutex, name, file, line, func,
        };
    }
}

/* Forget @mutex; locks need not be released in the order taken. */
static void held_remove(const BdMutex *mutex)
{
    int n = MIN(mutex_held_count, HELD_MAX);
    int i;

    for (i = n - 1; i >= 0 && held_locks[i].mutex != mutex; i--) {
        /* search from the most recent */
    }
    if (i < 0) {
        return;     /* one of those not recorded */
    }
    memmove(&held_locks[i], &held_locks[i + 1],
            (n - 1 - i) * sizeof(held_locks[0]));
    /* A lock taken beyond HELD_MAX moves into the list, unrecorded. */
    held_locks[n - 1] = (HeldLock) { NULL };
}
#else
static void held_push(const BdMutex *mutex, const char *name,
                      const char *file, int line, const char *func)
{
}

static void held_remove(const BdMutex *mutex)
{
}
#endif

NORETURN static void thread_fail(const char *what, int err)
{
    log_msg(LOG_LEVEL_ERROR, "%s failed: %s", what, g_strerror(err));
    abort();
}

void bd_mutex_init(BdMutex *mutex)
{
    pthread_mutexattr_t attr;
    int ret;

    ret = pthread_mutexattr_init(&attr);
    if (ret) {
        thread_fail("pthread_mutexattr_init", ret);
    }
#ifndef NDEBUG
    ret = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    if (ret) {
        thread_fail("pthread_mutexattr_settype", ret);
    }
#endif
    ret = pthread_mutex_init(&mutex->m, &attr);
    if (ret) {
        thread_fail("pthread_mutex_init", ret);
    }
    pthread_mutexattr_destroy(&attr);
}

void bd_mutex_destroy(BdMutex *mutex)
{
    int ret = pthread_mutex_destroy(&mutex->m);

    if (ret) {
        thread_fail("pthread_mutex_destroy", ret);
    }
}

/* The analysis cannot see that pthread_mutex_lock() takes the capability. */
void bd_mutex_lock_at(BdMutex *mutex, const char *name, const char *file,
                      int line, const char *func) TSA_NO_TSA
{
    int ret = pthread_mutex_lock(&mutex->m);

    if (ret) {
        log_msg(LOG_LEVEL_ERROR, "%s:%d: %s(): locking '%s'", file, line,
                func, name);
        thread_fail("pthread_mutex_lock", ret);
    }
    held_push(mutex, name, file, line, func);
    mutex_held_count++;
}

void bd_mutex_unlock(BdMutex *mutex) TSA_NO_TSA
{
    int ret;

    assert(mutex_held_count > 0);
    ret = pthread_mutex_unlock(&mutex->m);
    if (ret) {
        thread_fail("pthread_mutex_unlock", ret);
    }
    held_remove(mutex);
    mutex_held_count--;
}

bool bd_mutex_trylock_at(BdMutex *mutex, const char *name, const char *file,
                         int line, const char *func) TSA_NO_TSA
{
    int ret = pthread_mutex_trylock(&mutex->m);

    if (ret == EBUSY) {
        return false;
    }
    if (ret) {
        /* Including EDEADLK: trying a lock the thread holds is a bug too. */
        log_msg(LOG_LEVEL_ERROR, "%s:%d: %s(): trying '%s'", file, line,
                func, name);
        thread_fail("pthread_mutex_trylock", ret);
    }
    held_push(mutex, name, file, line, func);
    mutex_held_count++;
    return true;
}

int bd_mutex_held_count(void)
{
    return mutex_held_count;
}

/* The locks held beyond the first @depth, with where they were taken. */
static void held_describe(GString *out, int depth)
{
#ifndef NDEBUG
    for (int i = depth; i < mutex_held_count; i++) {
        const HeldLock *h = i < HELD_MAX ? &held_locks[i] : NULL;

        g_string_append(out, i > depth ? "; " : ": ");
        if (h && h->mutex) {
            g_string_append_printf(out, "'%s' locked at %s:%d in %s()",
                                   h->name, h->file, h->line, h->func);
        } else {
            g_string_append(out, "(site not recorded)");
        }
    }
#endif
}

void bd_mutex_assert_held_at_most(int depth, const char *where,
                                  const char *event)
{
    g_autoptr(GString) msg = NULL;

    if (likely(mutex_held_count <= depth)) {
        return;
    }
    msg = g_string_new(NULL);
    g_string_printf(msg, "%s: %s holding %d mutex(es)", where, event,
                    mutex_held_count - depth);
    held_describe(msg, depth);
    log_msg(LOG_LEVEL_ERROR, "%s", msg->str);
    abort();
}

void bd_mutex_assert_none_held(const char *where)
{
    bd_mutex_assert_held_at_most(0, where, "returned");
}

void bd_cond_init(BdCond *cond)
{
    pthread_condattr_t attr;
    int ret;

    ret = pthread_condattr_init(&attr);
    if (ret) {
        thread_fail("pthread_condattr_init", ret);
    }
    ret = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (ret) {
        thread_fail("pthread_condattr_setclock", ret);
    }
    ret = pthread_cond_init(&cond->c, &attr);
    if (ret) {
        thread_fail("pthread_cond_init", ret);
    }
    pthread_condattr_destroy(&attr);
}

void bd_cond_destroy(BdCond *cond)
{
    int ret = pthread_cond_destroy(&cond->c);

    if (ret) {
        thread_fail("pthread_cond_destroy", ret);
    }
}

/* The mutex is released and retaken inside: the held count does not change. */
void bd_cond_wait(BdCond *cond, BdMutex *mutex)
{
    int ret = pthread_cond_wait(&cond->c, &mutex->m);

    if (ret) {
        thread_fail("pthread_cond_wait", ret);
    }
}

bool bd_cond_timedwait_ns(BdCond *cond, BdMutex *mutex, int64_t abs_ns)
{
    struct timespec ts;
    int ret;

    abs_ns = MAX(abs_ns, 0);
    ts.tv_sec = abs_ns / 1000000000LL;
    ts.tv_nsec = abs_ns % 1000000000LL;
    ret = pthread_cond_timedwait(&cond->c, &mutex->m, &ts);
    if (ret == ETIMEDOUT) {
        return false;
    }
    if (ret) {
        thread_fail("pthread_cond_timedwait", ret);
    }
    return true;
}

void bd_cond_signal(BdCond *cond)
{
    int ret = pthread_cond_signal(&cond->c);

    if (ret) {
        thread_fail("pthread_cond_signal", ret);
    }
}

void bd_cond_broadcast(BdCond *cond)
{
    int ret = pthread_cond_broadcast(&cond->c);

    if (ret) {
        thread_fail("pthread_cond_broadcast", ret);
    }
}

/* What the new thread needs before it runs the caller's function. */
typedef struct ThreadStart {
    char name[16];              /* the kernel's limit, with the NUL */
    void *(*fn)(void *);
    void *arg;
} ThreadStart;

/*
 * Naming the thread from inside cannot fail, whereas naming it from the
 * creator races with a thread that has already exited.
 */
static void *thread_start(void *opaque)
{
    ThreadStart *start = opaque;
    void *(*fn)(void *) = start->fn;
    void *arg = start->arg;

    pthread_setname_np(pthread_self(), start->name);
    g_free(start);
    return fn(arg);
}

bool bd_thread_create(pthread_t *thread, const char *name,
                      void *(*fn)(void *), void *arg, Error **errp)
{
    ThreadStart *start = g_new0(ThreadStart, 1);
    sigset_t all, old;
    int ret, create_ret;

    g_strlcpy(start->name, name, sizeof(start->name));
    start->fn = fn;
    start->arg = arg;

    /* The new thread inherits the mask: it never runs a signal handler. */
    sigfillset(&all);
    ret = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (ret) {
        thread_fail("pthread_sigmask", ret);
    }
    /* Unlike the calls above, this one fails for want of resources
     * (EAGAIN: RLIMIT_NPROC, memory for the stack): the caller decides. */
    create_ret = pthread_create(thread, NULL, thread_start, start);
    ret = pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret) {
        thread_fail("pthread_sigmask", ret);
    }
    if (create_ret) {
        g_free(start);
        error_setg_errno(errp, create_ret, "Cannot create thread '%s'",
                         name);
        return false;
    }
    return true;
}

void *bd_thread_join(pthread_t thread)
{
    void *result;
    int ret = pthread_join(thread, &result);

    if (ret) {
        thread_fail("pthread_join", ret);
    }
    return result;
}
