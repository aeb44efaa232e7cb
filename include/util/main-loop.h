/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The main loop and the big lock (BQL).
 *
 * The main thread holds the BQL for as long as it runs: it owns the block
 * graph, the monitors, the NBD listeners and handshakes, object creation and
 * job completion.  iothreads never take the BQL.  The lock is real (a
 * BdMutex) so that a helper thread that must run main-loop code could take
 * it, but in practice it is the capability that clang's thread-safety
 * analysis uses to check that main-loop-only functions are called from the
 * main loop.
 *
 * GLOBAL_STATE_CODE() opens every function that may only run in the main
 * loop under the BQL: it asserts that the caller holds the BQL, and it is
 * the analysis's assertion too (bql_assert_held()), so that from there on
 * the function may touch TSA_GUARDED_BY(bql) data and call
 * TSA_REQUIRES(bql) functions.  Entry points the analysis cannot see being
 * called from the main loop (bottom halves, fd handlers, callbacks through
 * function pointers, test cases) open with it; functions whose callers the
 * analysis sees are declared TSA_REQUIRES(bql) instead.  IO_CODE() opens
 * functions that may run in any thread; it documents and checks nothing.
 */
#ifndef UTIL_MAIN_LOOP_H
#define UTIL_MAIN_LOOP_H

#include "util/osdep.h"
#include "util/thread.h"

typedef struct AioContext AioContext;

/* The BQL as a capability for clang's analysis. */
typedef struct TSA_CAPABILITY("mutex") BqlCapability BqlCapability;
extern BqlCapability bql;

void bql_lock(void) TSA_ACQUIRE(bql);
void bql_unlock(void) TSA_RELEASE(bql);
/* True in the thread that holds the BQL. */
bool bql_locked(void);
/* Tell the analysis (and assert) that the caller holds the BQL. */
void bql_assert_held(void) TSA_ASSERT(bql);

#define GLOBAL_STATE_CODE()  bql_assert_held()

/*
 * On a callback that only the main loop may call (a driver's global-state
 * callback): reading the pointer needs the BQL, so the analysis reports a
 * call from code that does not hold it.  The callback itself opens with
 * GLOBAL_STATE_CODE(): the analysis does not follow calls through
 * pointers.
 */
#define BQL_PTR              TSA_GUARDED_BY(bql)
#define IO_CODE()            do { } while (0)

/*
 * Create the main AioContext and take the BQL in the calling thread, which
 * becomes the main thread.  Idempotent.
 */
void main_loop_init(void);
/* Tear down what main_loop_init() set up; releases the BQL. */
void main_loop_cleanup(void);
AioContext *main_context(void);
/* True in the thread that called main_loop_init(). */
bool in_main_thread(void);

#endif /* UTIL_MAIN_LOOP_H */
