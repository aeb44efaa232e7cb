/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A pool of worker threads for calls that block: aio=threads file I/O,
 * open(), fstat(), fallocate() where the ring cannot do them, and the SQE
 * emulation of the epoll fallback.
 *
 * One process-wide pool.  Workers start on demand up to a maximum (64 by
 * default) and exit after 10 seconds idle.  A request runs @func(opaque) on
 * a worker; its completion comes back to the AioContext that submitted it,
 * in that context's home thread.
 *
 * Thread-safety: submission functions may be called from any thread that
 * runs an AioContext (the completion goes to that context).
 */
#ifndef UTIL_THREAD_POOL_H
#define UTIL_THREAD_POOL_H

#include "util/aio.h"

/* Runs in a worker thread; returns a result (by convention -errno). */
typedef int ThreadPoolFunc(void *opaque);
typedef void ThreadPoolDone(void *opaque, int ret);

/*
 * Run @func(opaque) in a worker, yield, and return its result when the
 * calling coroutine is resumed in its own context.
 */
int coroutine_fn thread_pool_submit_co(ThreadPoolFunc *func, void *opaque);

/*
 * Run @func(opaque) in a worker, then @done(opaque, ret) in @ctx's home
 * thread.  Must be called from @ctx's home thread.
 */
void thread_pool_submit(AioContext *ctx, ThreadPoolFunc *func, void *opaque,
                        ThreadPoolDone *done);

/* Maximum number of workers (default 64); main thread, at start-up. */
void thread_pool_set_max_workers(int max);

/*
 * Stop every worker and wait for them.  Every submitted request must have
 * completed.  Main thread, at exit.
 */
void thread_pool_shutdown(void);

#endif /* UTIL_THREAD_POOL_H */
