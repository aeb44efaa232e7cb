/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The export client life cycle (see client.h for the protocol and who
 * owns what): attach and detach, the receive loop's checkpoint (park,
 * move, close), cancellable receives, request counting, and the drain and
 * move callbacks of an export's clients.
 *
 * The receive loop at its checkpoint:
 *
 *   closing? ----------------------> stop (the caller ends the loop)
 *   quiesced? ---------------------> park until drained_end or a close
 *   target_ctx elsewhere? ---------> wait for no request in flight, move
 *   otherwise ---------------------> go on
 */
#include "util/osdep.h"

#include "block/export/client.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/main-loop.h"

void blk_exp_client_init(BlkExpClient *c, const char *name, Coroutine *co,
                         BlkExpTransport *transport)
{
    GLOBAL_STATE_CODE();
    *c = (BlkExpClient) {
        .name = name,
        .co = co,
        .transport = transport,
    };
    bd_mutex_init(&c->lock);
}

void blk_exp_client_destroy(BlkExpClient *c)
{
    GLOBAL_STATE_CODE();
    assert(!c->exp);
    /*
     * Cancel bottom halves that drains scheduled in the client's old
     * context may still point to @c.  Pairs with aio_wait_kick() after
     * their decrement; the acquire orders their last use before the free.
     */
    AIO_WAIT_WHILE(NULL, qatomic_load_acquire(&c->bh_refs) > 0);
    bd_mutex_destroy(&c->lock);
}

/* --- Attaching and detaching (main loop) --------------------------------- */

void blk_exp_client_attach(BlkExpClient *c, BlockExport *exp)
{
    GLOBAL_STATE_CODE();
    c->exp = exp;
    exp->clients++;
    QLIST_INSERT_HEAD(&exp->client_list, c, link);
    bd_mutex_lock(&c->lock);
    /* A drain in effect covers us from now on. */
    qatomic_set(&c->quiesced, exp->quiesced);
    qatomic_set(&c->target_ctx, blk_exp_next_aio_context(exp));
    bd_mutex_unlock(&c->lock);
    debug_report("%s: %s: runs in '%s'", exp->drv->type, c->name,
                 aio_context_name(c->target_ctx));
}

void blk_exp_client_detach(BlkExpClient *c)
{
    BlockExport *exp;

    GLOBAL_STATE_CODE();
    exp = c->exp;
    assert(!qatomic_read(&c->in_flight));
    QLIST_REMOVE(c, link);
    exp->clients--;
    c->exp = NULL;
    blk_exp_unref(exp);
}

/* --- Requests (home) ------------------------------------------------------ */

void blk_exp_client_request_start(BlkExpClient *c)
{
    /*
     * No barrier needed against a drain that begins meanwhile:
     * drained_poll counts the receive loop busy until it has parked or
     * waits for room, which it does only after this.
     */
    qatomic_inc(&c->in_flight);
    qatomic_inc(&c->io_in_flight);
}

void blk_exp_client_io_done(BlkExpClient *c)
{
    /*
     * Our block I/O is done: a drain no longer waits for us, however long
     * the peer takes over the reply.  Pairs with the load-acquire in
     * blk_exp_clients_drained_poll(), and with AIO_WAIT_WHILE() through
     * the smp_mb() in aio_wait_kick().
     */
    qatomic_store_release(&c->io_in_flight, c->io_in_flight - 1);
    aio_wait_kick();
}

void blk_exp_client_request_end(BlkExpClient *c)
{
    Coroutine *co = c->idle_waiter;

    /* Runs after we yield, in this thread: it then sees the new count. */
    if (co) {
        c->idle_waiter = NULL;
        aio_co_wake(co);
    }
    qatomic_dec(&c->in_flight);
    /* blk_exp_client_finish() and teardown may wait for the count. */
    aio_wait_kick();
}

void coroutine_fn blk_exp_client_wait_room(BlkExpClient *c,
                                           BlkExpClientRoomFn *has_room,
                                           void *opaque)
{
    for (;;) {
        bool room = has_room ? has_room(c, opaque)
                             : !qatomic_read(&c->in_flight);

        if (room) {
            return;
        }
        bd_mutex_lock(&c->lock);
        c->waiting_room = true;
        bd_mutex_unlock(&c->lock);
        /* drained_poll() may be waiting for us to be idle. */
        aio_wait_kick();
        c->idle_waiter = co_self();
        co_yield();             /* blk_exp_client_request_end() wakes us */
        bd_mutex_lock(&c->lock);
        c->waiting_room = false;
        bd_mutex_unlock(&c->lock);
    }
}

/* --- The receive loop ----------------------------------------------------- */

int coroutine_fn blk_exp_client_recv(BlkExpClient *c, void *buf, size_t len)
{
    int res;

    IO_CODE();
    bd_mutex_lock(&c->lock);
    if (c->closing) {
        bd_mutex_unlock(&c->lock);
        return -ESHUTDOWN;
    }
    if (c->quiesced) {
        bd_mutex_unlock(&c->lock);
        return 0;
    }
    /* From here drained_begin cancels us (client_cancel_recv_bh()). */
    c->recv_ctx = aio_get_current_context();
    bd_mutex_unlock(&c->lock);

    res = blk_exp_transport_recv(c->transport, buf, len);

    bd_mutex_lock(&c->lock);
    c->recv_ctx = NULL;
    bd_mutex_unlock(&c->lock);

    if (res == -ECANCELED) {
        return 0;
    }
    return res == 0 ? -ECONNRESET : res;
}

/* A drain began: cancel the receive pending in this context, if any. */
static void client_cancel_recv_bh(void *opaque)
{
    BlkExpClient *c = opaque;
    bool cancel;

    IO_CODE();
    bd_mutex_lock(&c->lock);
    cancel = c->quiesced && c->recv_ctx == aio_get_current_context();
    bd_mutex_unlock(&c->lock);
    /*
     * Outside the lock: the transport prepares an SQE, which must not
     * happen under a BdMutex (util/aio.h).  The decision holds: nothing
     * else runs in this thread between the unlock and the cancel, so the
     * receive we saw is the one we cancel (or it completed, and the cancel
     * finds nothing); bh_refs keeps @c and its transport alive.
     */
    if (cancel) {
        blk_exp_transport_cancel_recv(c->transport);
    }
    /*
     * @c may be freed once the count drops.  Pairs with AIO_WAIT_WHILE()
     * in blk_exp_client_destroy(), through the smp_mb() in
     * aio_wait_kick().
     */
    qatomic_dec(&c->bh_refs);
    aio_wait_kick();
}

/*
 * Runs after the receive loop yielded to park: make the park visible, or
 * resume the loop if the drain is already over.
 */
static void client_park_bh(void *opaque)
{
    BlkExpClient *c = opaque;
    Coroutine *co = c->co;

    IO_CODE();
    bd_mutex_lock(&c->lock);
    if (c->quiesced && !c->closing) {
        /* From now on only drained_end or a close resumes us, here. */
        c->parked = true;
        c->park_ctx = aio_get_current_context();
        bd_mutex_unlock(&c->lock);
        /* drained_poll() may wait for the park; @c is not ours now. */
        aio_wait_kick();
        return;
    }
    bd_mutex_unlock(&c->lock);
    co_enter(co);
}

bool coroutine_fn blk_exp_client_checkpoint(BlkExpClient *c)
{
    IO_CODE();
    /*
     * Fast path, lock-free: nothing asks us to stop, park or move (the
     * receive loop passes here two or three times per request).  A stale
     * read is the same as the close or drain beginning just after a locked
     * check: the next checkpoint sees it, blk_exp_client_recv() checks
     * again under the lock before it waits, and drained_poll() counts us
     * busy until we have parked.
     */
    if (!qatomic_read(&c->closing) && !qatomic_read(&c->quiesced) &&
        qatomic_read(&c->target_ctx) == aio_get_current_context()) {
        return true;
    }
    for (;;) {
        AioContext *target;

        bd_mutex_lock(&c->lock);
        if (c->closing) {
            bd_mutex_unlock(&c->lock);
            return false;
        }
        if (c->quiesced) {
            bd_mutex_unlock(&c->lock);
            aio_bh_schedule_oneshot(aio_get_current_context(),
                                    client_park_bh, c);
            co_yield();
            continue;
        }
        target = c->target_ctx;
        bd_mutex_unlock(&c->lock);
        if (target == aio_get_current_context()) {
            return true;
        }
        /*
         * Requests run in our context: none may be left behind.  Their
         * block I/O is done (the node moved in a drained section), but
         * replies may still be on their way to a slow peer.
         */
        blk_exp_client_wait_room(c, NULL, NULL);
        aio_co_reschedule_self(target);
    }
}

void coroutine_fn blk_exp_client_finish(BlkExpClient *c)
{
    /* Drains stop waiting for our receive loop; only requests count. */
    bd_mutex_lock(&c->lock);
    c->done = true;
    bd_mutex_unlock(&c->lock);
    blk_exp_client_wait_room(c, NULL, NULL);
    aio_co_reschedule_self(main_context());
}

void blk_exp_client_request_close(BlkExpClient *c)
{
    AioContext *wake = NULL;

    GLOBAL_STATE_CODE();
    bd_mutex_lock(&c->lock);
    qatomic_set(&c->closing, true);
    if (c->parked) {
        c->parked = false;
        wake = c->park_ctx;
    }
    bd_mutex_unlock(&c->lock);
    if (c->transport) {
        blk_exp_transport_shutdown(c->transport);
    }
    if (wake) {
        /*
         * Parked: fully suspended (client_park_bh()), so any thread may
         * resume it; in the context it parked in, where its requests (if
         * any) run, it finds closing set and ends.
         */
        aio_co_schedule(wake, c->co);
    }
}

/* --- The export's drain and move callbacks (main loop) ------------------- */

void blk_exp_clients_drained_begin(BlockExport *exp)
{
    BlkExpClient *c;

    GLOBAL_STATE_CODE();
    exp->quiesced = true;
    QLIST_FOREACH(c, &exp->client_list, link) {
        AioContext *ctx;

        bd_mutex_lock(&c->lock);
        qatomic_set(&c->quiesced, true);
        /*
         * A receive set up before it saw quiesced must be cancelled; one
         * set up later never starts (blk_exp_client_recv() checks under
         * the lock).
         */
        ctx = c->recv_ctx;
        if (ctx) {
            /* Dropped by the bottom half; blk_exp_client_destroy() waits. */
            qatomic_inc(&c->bh_refs);
        }
        bd_mutex_unlock(&c->lock);
        if (ctx) {
            aio_bh_schedule_oneshot(ctx, client_cancel_recv_bh, c);
        }
    }
}

bool blk_exp_clients_drained_poll(BlockExport *exp)
{
    BlkExpClient *c;

    GLOBAL_STATE_CODE();
    QLIST_FOREACH(c, &exp->client_list, link) {
        bool idle;

        /*
         * Pairs with the store-release in blk_exp_client_io_done(): seeing
         * the count at zero, we also see that every request is done with
         * the node (replies may still be on their way: they touch only the
         * client, which moves only once in_flight is zero).
         */
        if (qatomic_load_acquire(&c->io_in_flight)) {
            return true;
        }
        bd_mutex_lock(&c->lock);
        idle = c->parked || c->done || c->waiting_room;
        bd_mutex_unlock(&c->lock);
        if (!idle) {
            return true;
        }
    }
    return false;
}

void blk_exp_clients_drained_end(BlockExport *exp)
{
    BlkExpClient *c;

    GLOBAL_STATE_CODE();
    exp->quiesced = false;
    QLIST_FOREACH(c, &exp->client_list, link) {
        AioContext *ctx = NULL;

        bd_mutex_lock(&c->lock);
        qatomic_set(&c->quiesced, false);
        if (c->parked) {
            c->parked = false;
            ctx = c->park_ctx;
        }
        bd_mutex_unlock(&c->lock);
        if (ctx) {
            /*
             * Where it parked, beside its requests still sending replies;
             * if the node moved, it follows at its checkpoint.
             */
            aio_co_schedule(ctx, c->co);
        }
    }
}

void blk_exp_clients_aio_context_changed(BlockExport *exp, AioContext *ctx)
{
    BlkExpClient *c;

    GLOBAL_STATE_CODE();
    /* Multiqueue clients stay on their iothreads. */
    if (exp->iothreads->len > 1) {
        return;
    }
    /* Every client is parked, done or waiting: this drain was polled. */
    QLIST_FOREACH(c, &exp->client_list, link) {
        bd_mutex_lock(&c->lock);
        qatomic_set(&c->target_ctx, ctx);
        bd_mutex_unlock(&c->lock);
    }
}

void blk_exp_clients_close_all(BlockExport *exp)
{
    BlkExpClient *c;

    GLOBAL_STATE_CODE();
    QLIST_FOREACH(c, &exp->client_list, link) {
        blk_exp_client_request_close(c);
    }
}
