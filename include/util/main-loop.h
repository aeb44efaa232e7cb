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
 * loop under the BQL; it asserts.  IO_CODE() opens functions that may run in
 * any thread; it documents and checks nothing.
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

#define GLOBAL_STATE_CODE()  assert(bql_locked())
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
