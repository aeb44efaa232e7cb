/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The main thread, its AioContext and the BQL.
 *
 * The BQL is a plain pthread mutex, not a BdMutex: the main thread holds it
 * for its whole life, and BdMutex's "no lock held when a callback returns"
 * check is about the small locks.
 */
#include "util/osdep.h"

#include "util/aio.h"
#include "util/aio-wait.h"
#include "util/coroutine.h"
#include "util/main-loop.h"

struct BqlCapability {
    pthread_mutex_t mutex;
};

BqlCapability bql = { PTHREAD_MUTEX_INITIALIZER };

CO_TLS(bool, bql_held)

static AioContext *main_ctx;        /* set once by main_loop_init() */
static pthread_t main_thread;
static bool main_thread_set;

void bql_lock(void) TSA_NO_TSA
{
    assert(!get_bql_held());
    pthread_mutex_lock(&bql.mutex);
    set_bql_held(true);
}

void bql_unlock(void) TSA_NO_TSA
{
    assert(get_bql_held());
    set_bql_held(false);
    pthread_mutex_unlock(&bql.mutex);
}

bool bql_locked(void)
{
    return get_bql_held();
}

void bql_assert_held(void)
{
    assert(get_bql_held());
}

/* Takes the BQL only the first time: beyond the analysis. */
void main_loop_init(void) TSA_NO_TSA
{
    if (main_ctx) {
        assert(in_main_thread());
        return;
    }
    main_thread = pthread_self();
    main_thread_set = true;
    bql_lock();
    main_ctx = aio_context_new("main", &error_fatal);
    aio_context_set_current(main_ctx);
    aio_wait_init(main_ctx);
}

void main_loop_cleanup(void) TSA_NO_TSA
{
    if (!main_ctx) {
        return;
    }
    assert(in_main_thread());
    aio_wait_cleanup();
    /*
     * Let pending bottom halves (e.g. final kicks) and scheduled
     * coroutines run, and deleted bottom halves be freed.
     */
    aio_poll_until_idle(main_ctx);
    aio_context_destroy(main_ctx);
    aio_context_set_current(NULL);
    main_ctx = NULL;
    bql_unlock();
}

AioContext *main_context(void)
{
    return main_ctx;
}

bool in_main_thread(void)
{
    return main_thread_set && pthread_equal(pthread_self(), main_thread);
}
