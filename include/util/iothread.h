/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * iothreads: threads that each run one AioContext until stopped.
 *
 * iothread_create() starts the thread, which creates its own context (its
 * io_uring ring takes submissions from that thread only) and returns once
 * the context is running.  iothread_destroy() asks the thread to stop,
 * joins it and destroys the context in the thread before it exits: bottom
 * halves, fd handlers or timers still registered then abort with their
 * names.
 *
 * Create and destroy from the main loop (GLOBAL_STATE_CODE); the getters
 * are safe from any thread.
 */
#ifndef UTIL_IOTHREAD_H
#define UTIL_IOTHREAD_H

#include "util/aio.h"
#include "util/main-loop.h"

typedef struct IOThread IOThread;

/* Default poll-max-ns of iothreads, as QEMU's. */
#define IOTHREAD_POLL_MAX_NS_DEFAULT 32768

IOThread *iothread_create(const char *id, int64_t poll_max_ns, Error **errp)
    TSA_REQUIRES(bql);
void iothread_destroy(IOThread *iothread) TSA_REQUIRES(bql);

AioContext *iothread_get_aio_context(IOThread *iothread);
const char *iothread_get_id(IOThread *iothread);
/* The kernel thread id (for query-iothreads' thread-id). */
int iothread_get_thread_id(IOThread *iothread);
int64_t iothread_get_poll_max_ns(IOThread *iothread);
/* Change poll-max-ns; applied in the iothread. */
void iothread_set_poll_max_ns(IOThread *iothread, int64_t poll_max_ns)
    TSA_REQUIRES(bql);

/* QEMU's iothread properties (object-add, query-iothreads). */
typedef struct IOThreadParams {
    int64_t poll_max_ns;            /* longest busy-poll; 0: no polling */
    int64_t poll_grow;              /* poll time growth factor; 0: 2 */
    int64_t poll_shrink;            /* poll time shrink divisor; 0: 2 */
    int64_t aio_max_batch;          /* see aio_context_set_aio_params() */
} IOThreadParams;

/* The values as set (0 stays 0 for "default", as QEMU reports them). */
void iothread_get_params(IOThread *iothread, IOThreadParams *params);
/* Set them all; applied in the iothread by a bottom half.  Main loop. */
void iothread_set_params(IOThread *iothread, const IOThreadParams *params)
    TSA_REQUIRES(bql);

/*
 * The registry of user-created iothreads (object-add), in creation order,
 * through which exports and jobs find an iothread by id and mark that
 * they run in it: while use references are held, object-del refuses to
 * delete it.  Users whose work runs in an iothread without a node living
 * there (an export spreading connections over several iothreads, a job)
 * take such a reference.  Main loop (BQL).
 */
void iothread_register(IOThread *iothread) TSA_REQUIRES(bql);
/* Leave the registry: no use reference may be held. */
void iothread_unregister(IOThread *iothread) TSA_REQUIRES(bql);
/* The registered iothread @id, or NULL. */
IOThread *iothread_find(const char *id) TSA_REQUIRES(bql);
/* Iterate in creation order: io = iothread_next(NULL) ... */
IOThread *iothread_next(IOThread *prev) TSA_REQUIRES(bql);
/* Mark / unmark a use of registered @iothread; calls must balance. */
void iothread_ref_use(IOThread *iothread) TSA_REQUIRES(bql);
void iothread_unref_use(IOThread *iothread) TSA_REQUIRES(bql);
unsigned iothread_uses(IOThread *iothread) TSA_REQUIRES(bql);

#endif /* UTIL_IOTHREAD_H */
