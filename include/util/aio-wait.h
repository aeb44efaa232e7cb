/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AIO_WAIT_WHILE: wait for a condition by running the event loop.
 *
 * AIO_WAIT_WHILE(ctx, cond) runs nested aio_poll() iterations until @cond
 * is false.  Called from the main loop, it polls the main context: work in
 * an iothread that changes @cond must call aio_wait_kick() afterwards to
 * wake the main loop.  Called from @ctx's own home thread, it polls @ctx
 * and is woken by @ctx's own events.  An iothread never waits for another
 * iothread.
 *
 * The barrier pairing, which is the whole point:
 *   waiter:  num_waiters++;  smp_mb();  read cond ... block in aio_poll()
 *   kicker:  write cond;     smp_mb();  read num_waiters, wake if non-zero
 * Either the waiter sees the new value of cond, or the kicker sees the
 * waiter and wakes it.  Without the kicker's barrier the load of
 * num_waiters can be ordered before the store to cond and the wake-up is
 * lost (the waiter then sleeps forever).
 *
 * Variables read in @cond that other threads write must be read with
 * qatomic_read() (or under a lock).
 */
#ifndef UTIL_AIO_WAIT_H
#define UTIL_AIO_WAIT_H

#include "util/aio.h"
#include "util/atomic.h"
#include "util/main-loop.h"

typedef struct AioWait {
    /* Number of AIO_WAIT_WHILE()s waiting in the main loop.  atomic */
    unsigned num_waiters;
} AioWait;

extern AioWait global_aio_wait;

#define AIO_WAIT_WHILE(ctx, cond) ({                                        \
    bool waited_ = false;                                                   \
    AioContext *wait_ctx_ = (ctx);                                          \
    AioWait *wait_ = &global_aio_wait;                                      \
    /* Pairs with smp_mb() in aio_wait_kick(). */                           \
    qatomic_inc(&wait_->num_waiters);                                       \
    smp_mb();                                                               \
    if (wait_ctx_ && in_aio_context_home_thread(wait_ctx_)) {               \
        while ((cond)) {                                                    \
            aio_poll(wait_ctx_, true);                                      \
            waited_ = true;                                                 \
        }                                                                   \
    } else {                                                                \
        assert(in_main_thread());                                           \
        while ((cond)) {                                                    \
            aio_poll(main_context(), true);                                 \
            waited_ = true;                                                 \
        }                                                                   \
    }                                                                       \
    qatomic_dec(&wait_->num_waiters);                                       \
    waited_;                                                                \
})

/* Set up / tear down the wake-up bottom half; main_loop_init/cleanup. */
void aio_wait_init(AioContext *main_ctx);
void aio_wait_cleanup(void);

/*
 * Wake the main loop if an AIO_WAIT_WHILE() is waiting there.  Call after
 * every change to a condition someone may wait for.  Any thread.
 */
void aio_wait_kick(void);

#endif /* UTIL_AIO_WAIT_H */
