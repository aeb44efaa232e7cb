/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AioContext: blockd's event loop.  One per thread that runs I/O (the main
 * loop and each iothread), each with its own io_uring ring that carries
 * everything the loop waits for: fd readiness (one-shot POLL_ADD, re-armed
 * while the handler stays registered, so handlers see level-triggered
 * semantics), block and socket I/O submitted as SQEs, and the eventfd that
 * other threads write to wake the loop.  Timers are the deadline of the
 * ring wait itself.  SQEs queued during an iteration go to the kernel in
 * one io_uring_enter(), together with the wait for the next completion.
 *
 * If io_uring cannot be set up (old kernel, seccomp), contexts fall back to
 * epoll, chosen once at run time and logged once; SQEs are then emulated
 * (file operations on the thread pool, socket operations on readiness), so
 * callers never need to know.  BLOCKD_AIO_BACKEND=epoll forces the
 * fallback, for tests.
 *
 * Calling contexts:
 *  - "home thread": the thread that runs the context (calls aio_poll); the
 *    main thread for the main context, the iothread for an iothread's.
 *  - Functions marked "any thread" are safe to call concurrently from any
 *    thread.  Everything else must be called in the home thread.
 */
#ifndef UTIL_AIO_H
#define UTIL_AIO_H

#include <liburing.h>

#include "util/osdep.h"
#include "util/error.h"
#include "util/coroutine.h"

typedef struct AioContext AioContext;
typedef struct AioBH AioBH;
typedef struct AioTimer AioTimer;

typedef void AioBHFunc(void *opaque);
typedef void AioFdHandler(void *opaque);
typedef void AioTimerFunc(void *opaque);

/*
 * Completion of an SQE: embed an AioCqeHandler in the request, pass it to
 * aio_get_sqe(), and @cb runs in the home thread with the CQE's result and
 * flags.
 */
typedef struct AioCqeHandler AioCqeHandler;
typedef void AioCqeFunc(AioCqeHandler *handler, int res, uint32_t cqe_flags);
struct AioCqeHandler {
    AioCqeFunc *cb;
};

/* --- Life cycle ------------------------------------------------------- */

/*
 * Create a context named @name (used in messages).  The calling thread
 * becomes its home thread: it must make it current with
 * aio_context_set_current() and run it with aio_poll().  (The io_uring
 * ring accepts submissions from one thread only.)
 */
AioContext *aio_context_new(const char *name, Error **errp);

/*
 * Destroy @ctx in its home thread, while it is the current context.  Every
 * bottom half must have been deleted and every fd handler and timer
 * removed: anything left aborts, naming it.
 */
void aio_context_destroy(AioContext *ctx);

const char *aio_context_name(AioContext *ctx);

/*
 * Per-context state of higher layers: the graph lock's reader count, the
 * file driver's libaio context.  Hooks registered here run in the context's
 * home thread right after it is created and right before it is destroyed
 * (in reverse order of registration).  Register before creating any
 * context; main thread.  Each user owns one slot; a slot is read and
 * written only in the context's home thread, or while the context cannot
 * run (creation, destruction).
 */
typedef struct AioContextHooks {
    void (*created)(AioContext *ctx);       /* may be NULL */
    void (*destroying)(AioContext *ctx);    /* may be NULL */
} AioContextHooks;
void aio_context_add_hooks(const AioContextHooks *hooks);

typedef enum AioContextSlot {
    AIO_SLOT_GRAPH_LOCK,
    AIO_SLOT_LINUX_AIO,
    AIO_SLOT_MAX,
} AioContextSlot;
void *aio_context_get_slot(AioContext *ctx, AioContextSlot slot);
void aio_context_set_slot(AioContext *ctx, AioContextSlot slot, void *state);
/* "io_uring" or "epoll". */
const char *aio_context_backend_name(AioContext *ctx);
bool aio_context_uses_io_uring(AioContext *ctx);

/* Make @ctx the current context of the calling thread (NULL to clear). */
void aio_context_set_current(AioContext *ctx);
/* The calling thread's context (never inlined: see CO_TLS). */
AioContext *aio_get_current_context(void);
bool in_aio_context_home_thread(AioContext *ctx);

/*
 * Adaptive busy polling.  Before blocking, the loop spins for up to poll_ns
 * checking for completions and bottom halves.  poll_ns starts at 0 and
 * grows (times @grow, from 4 us) while blocking waits end sooner than
 * @max_ns, and shrinks (divided by @shrink) when they take longer.
 * max_ns = 0 disables polling (the main loop's default).  grow/shrink 0
 * mean the defaults (2).  A poll that was preempted (it got the CPU for
 * less than half its duration) stops polling for a while: on an
 * oversubscribed machine spinning takes the CPU from whoever would send
 * the work.  Home thread.
 */
void aio_context_set_poll_params(AioContext *ctx, int64_t max_ns,
                                 int64_t grow, int64_t shrink);
int64_t aio_context_get_poll_max_ns(AioContext *ctx);
/* The parameters in effect (grow and shrink after defaults).  Home
 * thread. */
void aio_context_get_poll_params(AioContext *ctx, int64_t *max_ns,
                                 int64_t *grow, int64_t *shrink);

/*
 * QEMU's aio-max-batch: submit SQEs to the kernel as soon as @max_batch are
 * queued instead of once per loop iteration, so that a long burst starts
 * sooner.  0 (the default) waits for the iteration.  io_uring backend only
 * (the epoll fallback runs each SQE as it comes).  Home thread.
 */
void aio_context_set_aio_params(AioContext *ctx, int64_t max_batch);

/*
 * Run one iteration of the loop: completions, fd handlers, expired timers
 * and bottom halves.  With @blocking, wait until at least one of them has
 * something to do or aio_notify() is called.  Returns true if any callback
 * ran; a wake-up by aio_notify() alone is not progress.  May be nested (a
 * callback may call aio_poll() on its own context).  Home thread.
 */
bool aio_poll(AioContext *ctx, bool blocking);

/*
 * Run non-blocking iterations of @ctx until nothing is queued: no bottom
 * half pending, no coroutine scheduled (aio_co_schedule()), and the last
 * iteration ran no callback.  For teardown, before aio_context_destroy(),
 * which aborts on work left behind: an iteration that only entered
 * scheduled coroutines is not progress for aio_poll(), though they may
 * have scheduled more.  Completions still in the kernel are not waited
 * for.  Home thread.
 */
void aio_poll_until_idle(AioContext *ctx);

/*
 * How deeply aio_poll() of @ctx is nested right now: 0 outside it, 1 in a
 * callback of the outermost iteration, more in a callback of a nested one
 * (a bottom half waiting with AIO_WAIT_WHILE()).  Home thread.
 */
int aio_poll_depth(AioContext *ctx);

/*
 * Run @fn(@opaque) once, in the home thread, when the outermost aio_poll()
 * of @ctx running now returns (there must be one).  One hook per context:
 * setting it again before it ran must pass the same @fn and @opaque.  For
 * callers that must not act inside a nested loop and wait for its end.
 */
void aio_poll_at_outermost_exit(AioContext *ctx, void (*fn)(void *opaque),
                                void *opaque);

/*
 * Wake @ctx if it is blocked in aio_poll(), or make its next blocking
 * aio_poll() return at once.  Any thread.
 */
void aio_notify(AioContext *ctx);

/* --- Bottom halves ---------------------------------------------------- */

/*
 * A bottom half runs @cb(opaque) once in @ctx's home thread each time it is
 * scheduled, in FIFO order with respect to other bottom halves of @ctx,
 * also when a callback runs a nested aio_poll().  Scheduling an already
 * scheduled bottom half does nothing.
 */
AioBH *aio_bh_new_full(AioContext *ctx, AioBHFunc *cb, void *opaque,
                       const char *name);
#define aio_bh_new(ctx, cb, opaque) aio_bh_new_full(ctx, cb, opaque, #cb)

/* Any thread. */
void aio_bh_schedule(AioBH *bh);
/* Unschedule @bh if it has not started running.  Any thread. */
void aio_bh_cancel(AioBH *bh);
/* Delete @bh; it will not run again.  Any thread. */
void aio_bh_delete(AioBH *bh);

/* Run @cb(opaque) once in @ctx's home thread.  Any thread. */
void aio_bh_schedule_oneshot_full(AioContext *ctx, AioBHFunc *cb,
                                  void *opaque, const char *name);
#define aio_bh_schedule_oneshot(ctx, cb, opaque) \
    aio_bh_schedule_oneshot_full(ctx, cb, opaque, #cb)

/* --- File descriptors ------------------------------------------------- */

/*
 * Call @io_read when @fd is readable and @io_write when it is writable, for
 * as long as the condition holds (level-triggered).  Passing NULL for both
 * removes the handler; changing either replaces it.  @name (default: the
 * read handler's name) appears in leak messages.  The caller may close @fd
 * as soon as the handler is removed.  Home thread.
 */
void aio_set_fd_handler_full(AioContext *ctx, int fd, AioFdHandler *io_read,
                             AioFdHandler *io_write, void *opaque,
                             const char *name);
#define aio_set_fd_handler(ctx, fd, io_read, io_write, opaque) \
    aio_set_fd_handler_full(ctx, fd, io_read, io_write, opaque, #io_read)

/* --- Timers (CLOCK_MONOTONIC nanoseconds, see get_clock_ns()) -------- */

AioTimer *aio_timer_new_full(AioContext *ctx, AioTimerFunc *cb, void *opaque,
                             const char *name);
#define aio_timer_new(ctx, cb, opaque) aio_timer_new_full(ctx, cb, opaque, #cb)
/* Fire once at @expire_ns (absolute); re-arming replaces. Home thread. */
void aio_timer_mod_ns(AioTimer *timer, int64_t expire_ns);
void aio_timer_del(AioTimer *timer);
bool aio_timer_pending(AioTimer *timer);
void aio_timer_free(AioTimer *timer);

/* --- SQEs ------------------------------------------------------------- */

/*
 * Reserve an SQE on @ctx's ring for the caller to fill with any
 * io_uring_prep_*() call.  Its user_data is set to @handler, whose callback
 * runs in the home thread with the result.  The SQE is submitted with the
 * next loop iteration's wait (or earlier if the ring fills up).  Home
 * thread only: I/O is always submitted on the ring of the thread that asks.
 * Never runs a completion callback (also not when the ring is full): the
 * caller's state cannot change under it.  Still, do not call it holding a
 * BdMutex (docs/locking.md).
 *
 * Do not change user_data.  Linked SQEs (IOSQE_IO_LINK) work on io_uring;
 * the epoll fallback runs linked operations in order.
 */
struct io_uring_sqe *aio_get_sqe(AioContext *ctx, AioCqeHandler *handler);

/*
 * Submit one SQE, prepared by @prep(sqe, opaque), on the current thread's
 * ring and yield until it completes.  Returns the CQE's result (-errno on
 * failure); its flags go to *@cqe_flags if not NULL.
 */
typedef void AioSqePrep(struct io_uring_sqe *sqe, void *opaque);
int coroutine_fn aio_co_submit_sqe(AioSqePrep *prep, void *opaque,
                                   uint32_t *cqe_flags);

/*
 * Tests only.  Make io_uring submission on @ctx fail with -EBUSY whenever
 * completions have overflowed the CQ ring (IORING_SQ_CQ_OVERFLOW), as
 * older kernels do (io_uring_enter(2): EBUSY), so that the path that
 * deals with it can be tested on kernels that buffer without failing.
 * Returns false, and does nothing, on the epoll backend.  Home thread.
 */
bool aio_context_test_busy_on_cq_overflow(AioContext *ctx, bool on);
/* Tests only: how often submission on @ctx has met -EBUSY or -EAGAIN. */
unsigned aio_context_test_submit_busy_count(AioContext *ctx);

/* --- Coroutines and contexts ----------------------------------------- */

/*
 * Enter @co in @ctx's home thread from a bottom half.  Any thread.
 * Aborts, naming the first scheduler, if @co is already scheduled.
 */
void aio_co_schedule(AioContext *ctx, Coroutine *co);
#define aio_co_schedule(ctx, co) aio_co_schedule_full(ctx, co, __func__)
void aio_co_schedule_full(AioContext *ctx, Coroutine *co, const char *who);

/*
 * Resume @co in the context it last ran in: at once if that is the calling
 * thread's context (after the current coroutine yields, if called from
 * one), else through aio_co_schedule().  Any thread.
 */
void aio_co_wake(Coroutine *co);

/* Like aio_co_wake() with an explicit context.  Any thread. */
void aio_co_enter(AioContext *ctx, Coroutine *co);

/* Move the calling coroutine to @new_ctx's home thread. */
void coroutine_fn aio_co_reschedule_self(AioContext *new_ctx);

#endif /* UTIL_AIO_H */
