/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Thin wrappers over pthread mutexes, condition variables and threads, so
 * that clang's thread-safety analysis knows them as capabilities and every
 * failure of the underlying call aborts loudly instead of being ignored.
 *
 * A coroutine never holds a BdMutex across a yield, and no callback of the
 * event loop returns holding one.  The wrappers count the mutexes each
 * thread holds, and in debug builds also remember, per thread, which ones
 * and where each was taken (file:line and function of the bd_mutex_lock()
 * call, and the lock as written there), so that a violation names the
 * culprit.  The event loop checks after every bottom half, fd handler,
 * timer and CQE handler (bd_mutex_assert_none_held()), and co_yield()
 * checks that the coroutine took none that it still holds.
 */
#ifndef UTIL_THREAD_H
#define UTIL_THREAD_H

#include <pthread.h>

#include "util/error.h"
#include "util/osdep.h"

typedef struct TSA_CAPABILITY("mutex") BdMutex {
    pthread_mutex_t m;
} BdMutex;

typedef struct BdCond {
    pthread_cond_t c;
} BdCond;

void bd_mutex_init(BdMutex *mutex);
void bd_mutex_destroy(BdMutex *mutex);
void bd_mutex_unlock(BdMutex *mutex) TSA_RELEASE(mutex);

/*
 * bd_mutex_lock(m) and bd_mutex_trylock(m) pass their call site along, for
 * the held-lock reports; the functions behind them carry the analysis's
 * annotations, which apply to the macros' callers as to any call.
 */
#define bd_mutex_lock(m) \
    bd_mutex_lock_at((m), #m, __FILE__, __LINE__, __func__)
#define bd_mutex_trylock(m) \
    bd_mutex_trylock_at((m), #m, __FILE__, __LINE__, __func__)
void bd_mutex_lock_at(BdMutex *mutex, const char *name, const char *file,
                      int line, const char *func) TSA_ACQUIRE(mutex);
bool bd_mutex_trylock_at(BdMutex *mutex, const char *name, const char *file,
                         int line, const char *func)
    TSA_TRY_ACQUIRE(true, mutex);

/* Number of BdMutexes the calling thread holds. */
int bd_mutex_held_count(void);
/*
 * Abort if the calling thread holds more than @depth BdMutexes: it took
 * one since it held @depth and still holds it.  The message is "@where:
 * @event holding N mutex(es): 'lock' locked at file:line in func()" for
 * each of those (sites in debug builds only).
 */
void bd_mutex_assert_held_at_most(int depth, const char *where,
                                  const char *event);
/* Abort if the calling thread holds any BdMutex; @where names the caller. */
void bd_mutex_assert_none_held(const char *where);

void bd_cond_init(BdCond *cond);
void bd_cond_destroy(BdCond *cond);
void bd_cond_wait(BdCond *cond, BdMutex *mutex) TSA_REQUIRES(mutex);
/* Returns false on timeout.  @abs_ns is on the CLOCK_MONOTONIC clock. */
bool bd_cond_timedwait_ns(BdCond *cond, BdMutex *mutex, int64_t abs_ns)
    TSA_REQUIRES(mutex);
void bd_cond_signal(BdCond *cond);
void bd_cond_broadcast(BdCond *cond);

/*
 * Scoped lock: BD_LOCK_GUARD(&m); unlocks at the end of the scope.  clang's
 * analysis cannot follow the cleanup attribute: functions that use it need
 * TSA_NO_TSA, so prefer explicit lock/unlock where the analysis matters.
 */
static inline BdMutex *bd_lock_guard_lock(BdMutex *m, const char *name,
                                          const char *file, int line,
                                          const char *func)
    TSA_ACQUIRE(m) TSA_NO_TSA
{
    bd_mutex_lock_at(m, name, file, line, func);
    return m;
}
static inline void bd_lock_guard_unlock(BdMutex **m) TSA_NO_TSA
{
    bd_mutex_unlock(*m);
}
#define BD_GLUE_(a, b) a##b
#define BD_GLUE(a, b) BD_GLUE_(a, b)
#define BD_LOCK_GUARD(m)                                                \
    BdMutex *BD_GLUE(bd_lock_guard_, __LINE__)                          \
        __attribute__((cleanup(bd_lock_guard_unlock), unused)) =        \
        bd_lock_guard_lock((m), #m, __FILE__, __LINE__, __func__)

/*
 * Start a joinable thread named @name (shown by ps/gdb, truncated to 15
 * characters) in *@thread.  Signals are blocked in the new thread: only the
 * main thread handles them.  Fails (sets @errp, "Cannot create thread
 * 'name': ...", and returns false) when the system refuses a thread: out
 * of memory for its stack, or RLIMIT_NPROC reached.
 */
bool bd_thread_create(pthread_t *thread, const char *name,
                      void *(*fn)(void *), void *arg, Error **errp);
void *bd_thread_join(pthread_t thread);

#endif /* UTIL_THREAD_H */
