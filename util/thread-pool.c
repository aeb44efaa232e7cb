/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The process-wide worker pool behind include/util/thread-pool.h.
 *
 * Requests wait in one FIFO under pool_lock.  A submitter starts a new
 * worker ("pool-worker") when there are more queued requests than idle
 * workers and fewer workers than the maximum; a worker that has found
 * nothing to do for WORKER_IDLE_NS exits.  Workers are joinable, and every
 * one that exits is joined by the next one to exit (see worker_exit_locked),
 * so at most one finished thread waits to be joined at any time and
 * thread_pool_shutdown() can join them all by joining the last.
 *
 * Completions go home without a lock:
 *  - thread_pool_submit(): the worker schedules a one-shot bottom half on
 *    the submitter's context, which calls done(opaque, ret) there.  One
 *    allocation for the request, one for the bottom half.
 *  - thread_pool_submit_co(): the request lives on the coroutine's stack and
 *    the worker calls aio_co_wake() itself, which schedules the coroutine
 *    through its context's persistent bottom half: no allocation at all.
 *    The coroutine cannot be entered before it has yielded, because the
 *    wake-up runs in its home thread, which is busy running it until then.
 *
 * Invariants:
 *  - A request is on the queue, or being run by exactly one worker, or on
 *    its way home; only the holder of that stage touches it.  The hand-over
 *    home ends with the worker's store to req->released, and the home side
 *    waits for it before it runs the completion (pool_wait_released()),
 *    because the completion may free the request or destroy the context
 *    while the worker is still inside the call that scheduled it.
 *  - pool_running counts requests from submission until their worker has
 *    handed them home, which is before their completion can be seen there;
 *    thread_pool_shutdown() requires it to be zero.
 *  - pool_workers counts started workers that have not yet reached their
 *    exit path; pool_idle counts those waiting on pool_work_cond.
 */
#include "util/osdep.h"

#include <sched.h>

#include "util/aio.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/thread-pool.h"
#include "util/thread.h"

#define WORKER_IDLE_NS      (10 * 1000000000LL)
#define MAX_WORKERS_DEFAULT 64

typedef struct ThreadPoolRequest ThreadPoolRequest;
struct ThreadPoolRequest {
    /* Set by the submitter before queueing; read by the worker. */
    ThreadPoolFunc *func;
    void *opaque;
    ThreadPoolDone *done;       /* NULL for coroutine requests */
    AioContext *ctx;            /* where done() runs */
    Coroutine *co;              /* coroutine requests: the waiter */

    /*
     * Written by the worker before it hands the request home (bottom half
     * or aio_co_wake(), whose atomics order it); read at home afterwards.
     */
    int ret;

    /*
     * Set by the worker as its last access to the request, once it has
     * finished handing it home; see pool_wait_released().  atomic
     */
    int released;

    ThreadPoolRequest *next;    /* queue link; pool_lock */
};

static BdMutex pool_lock;
/* Signalled when a request is queued, broadcast at shutdown. */
static BdCond pool_work_cond;
/* Broadcast when the last worker reaches its exit path. */
static BdCond pool_exit_cond;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static ThreadPoolRequest *pool_queue TSA_GUARDED_BY(pool_lock);
static ThreadPoolRequest **pool_queue_tail TSA_GUARDED_BY(pool_lock) =
    &pool_queue;
static unsigned pool_queued TSA_GUARDED_BY(pool_lock);
static unsigned pool_running;       /* atomic */
static unsigned pool_workers TSA_GUARDED_BY(pool_lock);
static unsigned pool_idle TSA_GUARDED_BY(pool_lock);
static unsigned pool_max_workers TSA_GUARDED_BY(pool_lock) =
    MAX_WORKERS_DEFAULT;
static bool pool_stopping TSA_GUARDED_BY(pool_lock);
/* The last worker to exit, not yet joined. */
static pthread_t pool_last_exited TSA_GUARDED_BY(pool_lock);
static bool pool_have_last_exited TSA_GUARDED_BY(pool_lock);

static void pool_init(void)
{
    bd_mutex_init(&pool_lock);
    bd_cond_init(&pool_work_cond);
    bd_cond_init(&pool_exit_cond);
}

static void pool_ensure_init(void)
{
    pthread_once(&pool_once, pool_init);
}

/* --- Workers ------------------------------------------------------------- */

static ThreadPoolRequest *pool_pop_locked(void) TSA_REQUIRES(pool_lock)
{
    ThreadPoolRequest *req = pool_queue;

    pool_queue = req->next;
    if (!pool_queue) {
        pool_queue_tail = &pool_queue;
    }
    pool_queued--;
    req->next = NULL;
    return req;
}

/*
 * Wait for a request.  Returns NULL when the worker should exit: the pool
 * is stopping, or nothing came for WORKER_IDLE_NS.
 */
static ThreadPoolRequest *worker_next_locked(void) TSA_REQUIRES(pool_lock)
{
    int64_t deadline = get_clock_ns() + WORKER_IDLE_NS;

    while (!pool_queue && !pool_stopping) {
        bool signalled;

        pool_idle++;
        signalled = bd_cond_timedwait_ns(&pool_work_cond, &pool_lock,
                                         deadline);
        pool_idle--;
        if (!signalled && !pool_queue) {
            return NULL;
        }
    }
    return pool_queue ? pool_pop_locked() : NULL;
}

/*
 * At home, before anything that could free the request or destroy the
 * context: wait until the worker has let go of both.  Scheduling publishes
 * the completion before the scheduling call returns, and that call goes on
 * reading the context: aio-context.c makes aio_context_destroy() wait for
 * bottom-half schedulers still in aio_notify(), but aio_co_schedule() reads
 * ctx->co_schedule_bh after it has pushed the coroutine and before it is
 * counted, so a coroutine entered by an earlier scheduler's bottom half
 * could finish and destroy its context under the worker.  The wait is a
 * few instructions long unless the worker is preempted.
 */
static void pool_wait_released(ThreadPoolRequest *req)
{
    /* Pairs with qatomic_store_release() in worker_thread(). */
    while (!qatomic_load_acquire(&req->released)) {
        sched_yield();
    }
}

static void pool_complete_bh(void *opaque)
{
    ThreadPoolRequest *req = opaque;

    pool_wait_released(req);
    req->done(req->opaque, req->ret);
    g_free(req);
}

/* Hand a finished request back to its context.  Worker thread. */
static void worker_send_home(ThreadPoolRequest *req)
{
    if (req->co) {
        /*
         * req is on the coroutine's stack, which stays until the coroutine
         * has seen req->released.  The CAS that queues the coroutine
         * (release) pairs with the xchg of the scheduled list in its home
         * thread, which orders our write of req->ret before its read.
         */
        aio_co_wake(req->co);
    } else {
        /*
         * Same pairing, through the bottom-half stack: the CAS in
         * bh_enqueue() (release) and the xchg in bh_take_incoming().
         */
        aio_bh_schedule_oneshot(req->ctx, pool_complete_bh, req);
    }
}

/*
 * Leave the pool.  The caller holds pool_lock, which is released here; the
 * previous worker to exit is joined outside the lock, and this one becomes
 * the thread that the next exiting worker, or thread_pool_shutdown(), joins.
 */
static void worker_exit_locked(void) TSA_RELEASE(pool_lock)
{
    pthread_t prev = pool_last_exited;
    bool have_prev = pool_have_last_exited;

    pool_last_exited = pthread_self();
    pool_have_last_exited = true;
    if (--pool_workers == 0) {
        bd_cond_broadcast(&pool_exit_cond);
    }
    bd_mutex_unlock(&pool_lock);

    /* prev has left the lock for good; it is at most a few instructions
     * from returning. */
    if (have_prev) {
        bd_thread_join(prev);
    }
}

static void *worker_thread(void *unused)
{
    ThreadPoolRequest *req;

    bd_mutex_lock(&pool_lock);
    while ((req = worker_next_locked())) {
        bd_mutex_unlock(&pool_lock);

        req->ret = req->func(req->opaque);
        bd_mutex_assert_none_held("thread pool function");
        worker_send_home(req);
        /*
         * Before req->released, which the completion waits for: whoever
         * has seen every completion finds pool_running at zero in
         * thread_pool_shutdown().
         */
        qatomic_dec(&pool_running);
        /* Pairs with qatomic_load_acquire() in pool_wait_released(). */
        qatomic_store_release(&req->released, 1);
        /* req belongs to its home context now: do not touch it again. */

        bd_mutex_lock(&pool_lock);
    }
    worker_exit_locked();
    return NULL;
}

/* --- Submission ---------------------------------------------------------- */

/*
 * Start a worker, counted in pool_workers by the caller.  If the system
 * refuses a thread, the workers already running serve the queue, more
 * slowly;
 * with none at all, nothing ever would, and that is fatal.
 */
static void pool_spawn_worker(void)
{
    Error *err = NULL;
    pthread_t thread;
    unsigned workers;

    /* Joined by the next worker to exit, or by thread_pool_shutdown(). */
    if (bd_thread_create(&thread, "pool-worker", worker_thread, NULL,
                         &err)) {
        return;
    }
    bd_mutex_lock(&pool_lock);
    workers = --pool_workers;
    bd_mutex_unlock(&pool_lock);
    if (!workers) {
        log_msg(LOG_LEVEL_ERROR, "thread pool: no worker: %s",
                error_get_pretty(err));
        abort();
    }
    log_msg(LOG_LEVEL_WARNING, "thread pool: %s; %u workers go on",
            error_get_pretty(err), workers);
    error_free(err);
}

/* Queue @req and start a worker if none is free to take it.  Any thread. */
static void pool_queue_request(ThreadPoolRequest *req)
{
    bool spawn = false;

    pool_ensure_init();
    bd_mutex_lock(&pool_lock);
    assert(!pool_stopping);
    *pool_queue_tail = req;
    pool_queue_tail = &req->next;
    pool_queued++;
    qatomic_inc(&pool_running);
    /*
     * Signalled workers stay counted in pool_idle until they take the
     * lock, so a burst of requests starts new workers instead of piling
     * onto one that has not woken up yet.
     */
    if (pool_queued > pool_idle && pool_workers < pool_max_workers) {
        pool_workers++;
        spawn = true;
    }
    bd_cond_signal(&pool_work_cond);
    bd_mutex_unlock(&pool_lock);

    if (spawn) {
        pool_spawn_worker();
    }
}

void thread_pool_submit(AioContext *ctx, ThreadPoolFunc *func, void *opaque,
                        ThreadPoolDone *done)
{
    ThreadPoolRequest *req = g_new0(ThreadPoolRequest, 1);

    assert(in_aio_context_home_thread(ctx));
    assert(done);
    req->func = func;
    req->opaque = opaque;
    req->done = done;
    req->ctx = ctx;
    pool_queue_request(req);
}

int coroutine_fn thread_pool_submit_co(ThreadPoolFunc *func, void *opaque)
{
    ThreadPoolRequest req = {
        .func = func,
        .opaque = opaque,
        .ctx = aio_get_current_context(),
        .co = co_self(),
    };

    assert(req.ctx && req.co);
    pool_queue_request(&req);
    co_yield();
    /* Resumed by worker_send_home() through the context's scheduler. */
    pool_wait_released(&req);
    assert(aio_get_current_context() == req.ctx);
    return req.ret;
}

void thread_pool_set_max_workers(int max)
{
    assert(max > 0);
    pool_ensure_init();
    bd_mutex_lock(&pool_lock);
    pool_max_workers = (unsigned)max;
    bd_mutex_unlock(&pool_lock);
}

void thread_pool_shutdown(void)
{
    pthread_t last;
    bool have_last;

    pool_ensure_init();
    bd_mutex_lock(&pool_lock);
    if (qatomic_read(&pool_running)) {
        error_report("thread_pool_shutdown: %u request(s) still running",
                     qatomic_read(&pool_running));
        abort();
    }
    pool_stopping = true;
    bd_cond_broadcast(&pool_work_cond);
    while (pool_workers) {
        bd_cond_wait(&pool_exit_cond, &pool_lock);
    }
    last = pool_last_exited;
    have_last = pool_have_last_exited;
    pool_have_last_exited = false;
    /* The pool may be used again: workers start on demand. */
    pool_stopping = false;
    bd_mutex_unlock(&pool_lock);

    /* Joining the last one joins them all: each joined its predecessor. */
    if (have_last) {
        bd_thread_join(last);
    }
}
