/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Tracked requests: the serialisation layer of the generic request path
 * (block/io/io.c).  A read-modify-write of an unaligned write, or a truncate,
 * excludes every request that overlaps it; the comment below says which
 * requests are tracked, who waits for whom, and why waits cannot deadlock.
 *
 * Invariants: a request that changes data is on bs->tracked_requests
 * (reqs_lock), newest first, or counted in bs->writes_untracked, from
 * before it may touch data until it has finished; while a serialising
 * request is in flight no write starts untracked; a request only ever
 * waits for older conflicting requests, and a serialising one also for
 * the untracked writes; reqs_lock is a leaf, dropped by co_queue_wait_bd()
 * while a request waits.  Coroutine code in any AioContext.
 */
#include "util/osdep.h"

#include "block/block_int.h"
#include "block/io/io-int.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/coroutine.h"

/*
 * Why: a write that is not aligned to request_alignment reads its head and
 * tail blocks, merges its data and writes whole blocks back.  If another
 * write to the same blocks completed between that read and that write,
 * the merge would put old data back over it: a lost write.  So such a
 * read-modify-write is a "serialising" request: it must not run alongside
 * any request on its aligned range.
 *
 * What is tracked: a request is on bs->tracked_requests (reqs_lock) from
 * before it may touch data until it has finished.  Its range for conflicts
 * is its own rounded out to request_alignment (overlap_offset/bytes).
 *  - Serialising requests (padded writes and write-zeroes, truncate) are
 *    always tracked, and count in bs->serialising_in_flight.
 *  - Every other request that changes data (aligned writes, write-zeroes,
 *    discard) must be found by a read-modify-write that starts while it
 *    is in flight.  It is found either on the list or through the counter
 *    bs->writes_untracked, which it increments instead of taking
 *    reqs_lock when no serialising request is in flight (the hot path:
 *    no lock, no list).  The two counters pair Dekker-style: a write
 *    increments writes_untracked, then (smp_mb) reads
 *    serialising_in_flight; a serialising request increments
 *    serialising_in_flight, then (smp_mb) reads writes_untracked.  At
 *    least one of them sees the other's increment: the write then backs
 *    out of the counter and takes the tracked path (where it waits for
 *    the serialising requests it overlaps), or the serialising request
 *    waits on bs->untracked_drained until writes_untracked is 0.  No write
 *    starts untracked while serialising_in_flight is non-zero, so that
 *    wait ends.  It is coarser than the list (it waits for every
 *    untracked write, overlapping or not), which costs nothing that
 *    matters: serialising requests are rare (unaligned writes, truncate).
 *    An untracked write that ends decrements writes_untracked, then
 *    (smp_mb) reads serialising_in_flight and, if non-zero, wakes the
 *    waiters under reqs_lock; a waiter checks the counter under reqs_lock
 *    before it sleeps, so the wake-up cannot be lost.  The write reads
 *    serialising_in_flight with acquire, so a write that saw a shrinking
 *    truncate end sees the new size when it checks its range again.
 *  - Reads change nothing a read-modify-write could lose (the merge
 *    writes back the very bytes it read outside its own range), so a
 *    serialising request never needs to wait for a read.  A read is
 *    tracked only if serialising_in_flight was non-zero when it started,
 *    so that it waits for the read-modify-writes it overlaps; otherwise it
 *    takes no lock at all.  That read of the counter is relaxed and has
 *    no partner barrier on purpose: a read that misses a serialising
 *    request starting at the same time is concurrent with it, which
 *    allows either order; a read issued after the serialising request
 *    began (the caller saw it begin) sees the increment by coherence.
 *    The same holds against a truncate: a read that started before it
 *    shrank the node may read zeroes past the new end, as a read racing
 *    with a truncate may.  Writes, write-zeroes and discards cannot be
 *    that lax: one that waited behind a shrinking truncate checks its
 *    range again once tracked and fails with -EIO rather than reach the
 *    driver past the new end (bdrv_check_range_tracked()).
 *
 * Who waits for whom: two tracked requests conflict if their ranges
 * overlap and at least one of them is serialising.  A request waits, when
 * it starts, for every conflicting request that started before it, and
 * for no other.  New requests go to the head of the list under reqs_lock,
 * so "started before" is exactly "further down the list", and a request
 * only ever scans the part of the list behind itself.  Every conflicting
 * pair is thus ordered (the younger waits for the older), and every wait
 * goes from a younger to an older request: the waits-for graph has no
 * cycle, so there is no deadlock, and a request is never overtaken by one
 * that started after it.  Waiting requests count in in_flight (they are
 * requests); what they wait for needs no drain to finish.
 *
 * A request waits on the wait_queue of the request it conflicts with,
 * with co_queue_wait_bd(), which drops reqs_lock while it sleeps.  The
 * finishing request takes itself off the list and wakes all its waiters
 * under reqs_lock; each rescans from its own place, because the next
 * older conflict may still be running.
 */

static bool tracked_conflict(const BdrvTrackedRequest *a,
                             const BdrvTrackedRequest *b)
{
    if (!a->serialising && !b->serialising) {
        return false;
    }
    return a->overlap_offset < b->overlap_offset + b->overlap_bytes &&
           b->overlap_offset < a->overlap_offset + a->overlap_bytes;
}

/* A conflicting request older than @req (further down the list), or NULL. */
static BdrvTrackedRequest *tracked_find_older_conflict(BlockDriverState *bs,
                                                      BdrvTrackedRequest *req)
    TSA_REQUIRES(&bs->reqs_lock)
{
    BdrvTrackedRequest *other;

    for (other = QLIST_NEXT(req, list); other;
         other = QLIST_NEXT(other, list)) {
        if (tracked_conflict(req, other)) {
            return other;
        }
    }
    return NULL;
}

/*
 * An untracked write has finished (or backs out to be tracked): wake the
 * serialising requests waiting for untracked writes to drain.
 */
static void untracked_write_end(BlockDriverState *bs)
{
    qatomic_dec(&bs->writes_untracked);
    /* Pairs with the smp_mb() after serialising_in_flight++. */
    smp_mb();
    if (qatomic_read(&bs->serialising_in_flight)) {
        bd_mutex_lock(&bs->reqs_lock);
        co_queue_restart_all(&bs->untracked_drained);
        bd_mutex_unlock(&bs->reqs_lock);
    }
}

/*
 * Start tracking @req for [offset, offset + bytes) and wait for the older
 * requests it conflicts with.  @bytes may reach to INT64_MAX (truncate).
 * An untracked read leaves req->bs NULL.
 */
void coroutine_fn tracked_request_begin(BdrvTrackedRequest *req,
                                        BlockDriverState *bs,
                                        int64_t offset, int64_t bytes,
                                        BdrvTrackKind kind)
{
    uint32_t align = bdrv_req_align(bs);
    int64_t start = ROUND_DOWN(offset, align);
    int64_t end = bytes > INT64_MAX - offset - align ?
                  INT64_MAX : ROUND_UP(offset + bytes, align);
    BdrvTrackedRequest *other;

    *req = (BdrvTrackedRequest) {
        .offset = offset,
        .bytes = bytes,
        .serialising = kind == BDRV_TRACK_SERIALISING,
        .overlap_offset = start,
        .overlap_bytes = end - start,
        .co = co_self(),
    };
    /* See "What is tracked" above: no barrier needed here. */
    if (kind == BDRV_TRACK_READ &&
        !qatomic_read(&bs->serialising_in_flight)) {
        return;
    }
    req->bs = bs;
    if (kind == BDRV_TRACK_WRITE) {
        qatomic_inc(&bs->writes_untracked);
        /* Pairs with the smp_mb() after serialising_in_flight++ below. */
        smp_mb();
        if (!qatomic_load_acquire(&bs->serialising_in_flight)) {
            req->untracked_write = true;
            return;
        }
        untracked_write_end(bs);
    }
    co_queue_init(&req->wait_queue);

    bd_mutex_lock(&bs->reqs_lock);
    if (req->serialising) {
        qatomic_inc(&bs->serialising_in_flight);
        /* Pairs with the smp_mb() in the write path above. */
        smp_mb();
    }
    QLIST_INSERT_HEAD(&bs->tracked_requests, req, list);
    while ((other = tracked_find_older_conflict(bs, req))) {
        co_queue_wait_bd(&other->wait_queue, &bs->reqs_lock);
    }
    while (req->serialising && qatomic_read(&bs->writes_untracked)) {
        co_queue_wait_bd(&bs->untracked_drained, &bs->reqs_lock);
    }
    bd_mutex_unlock(&bs->reqs_lock);
}

void coroutine_fn tracked_request_end(BdrvTrackedRequest *req)
{
    BlockDriverState *bs = req->bs;

    if (!bs) {
        return;
    }
    if (req->untracked_write) {
        untracked_write_end(bs);
        return;
    }
    bd_mutex_lock(&bs->reqs_lock);
    QLIST_REMOVE(req, list);
    if (req->serialising) {
        qatomic_dec(&bs->serialising_in_flight);
    }
    /* Woken coroutines run only after we drop the lock and yield. */
    co_queue_restart_all(&req->wait_queue);
    bd_mutex_unlock(&bs->reqs_lock);
}
