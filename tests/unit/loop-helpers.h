/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the unit tests that drive event loops: how many rounds a
 * stress test runs, running the main loop dry, and waiting until an
 * iothread has run everything scheduled there so far.
 *
 * Everything here is called from the test's main thread, which runs the
 * main loop; waits are AIO_WAIT_WHILE() on atomics, never sleeps.
 */
#ifndef TESTS_UNIT_LOOP_HELPERS_H
#define TESTS_UNIT_LOOP_HELPERS_H

#include "util/aio.h"

/* STRESS_ITERATIONS from the environment (meson -Dstress_iterations),
 * at least 1; 1 when unset. */
int stress_iterations(void);

/* Run the main loop, without blocking, until no callback is left to run. */
void settle(void);

/*
 * Return once a bottom half scheduled now has run in @ctx, checking that
 * it ran in @ctx's home thread: everything scheduled there before it
 * (coroutines entered from here, and what they did until they yielded)
 * has run too.
 */
void ctx_sync(AioContext *ctx);

#endif /* TESTS_UNIT_LOOP_HELPERS_H */
