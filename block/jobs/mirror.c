/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The mirror block job (QEMU's blockdev-mirror; see docs/jobs.md).
 *
 * Set-up (main loop): a mirror_top filter (mirror-top.c) is inserted above
 * the source in a drained section, with the job's dirty bitmap created in
 * the same section, so every write that completes afterwards is recorded.
 * The job reads the source through the filter (its main BlockBackend) and
 * writes the target through a second BlockBackend.
 *
 * The job's coroutine (the source's AioContext): sync=full/top marks the
 * whole bitmap dirty; then it loops, taking the next dirty extent after a
 * cursor, resetting its bits and copying it in a coroutine of its own
 * (block status first: zero extents become write-zeroes on the target,
 * skipped where the target already reads as zeroes),
 * with up to buf-size bytes in flight and every copy a MirrorOp, so no
 * region is copied twice at once.  A failed copy marks its range dirty
 * again and applies on-source-error / on-target-error.  When the bitmap is
 * clean and nothing is in flight the job is READY, and stays so, copying
 * new writes, until job-complete or a cancel.  An idle READY job waits
 * with no timer: a write through the filter wakes it (mirror_kick()).
 *
 * Completion (main loop, JobDriver.prepare): with the filter, the source
 * and the target drained, copy what is left, flush the target, then (job-complete) make
 * the target replace the source (or the 'replaces' node) in all its
 * parents and take the filter out, all in that drained section; graph
 * changes take the write lock inside bdrv_replace_node().  A soft cancel
 * of a READY job does the same without the switch: the target is a
 * consistent copy of the source at that point.  A forced cancel or an
 * error (JobDriver.abort) only takes the filter out.
 */
#include "util/osdep.h"

#include "block/block-io.h"
#include "block/block_int.h"
#include "block/jobs/mirror-int.h"
#include "util/atomic.h"
#include "util/coroutine.h"

#define MIRROR_MAX_IN_FLIGHT    16
#define MIRROR_MAX_IO_BYTES     (1 << 20)
#define MIRROR_DEFAULT_BUF_SIZE (MIRROR_MAX_IN_FLIGHT * MIRROR_MAX_IO_BYTES)
#define MIRROR_DEFAULT_GRANULARITY  (64 * 1024)

const char *const mirror_sync_mode_names[] = {
    "top", "full", "none", "incremental", "bitmap", NULL,
};
const char *const mirror_copy_mode_names[] = {
    "background", "write-blocking", NULL,
};

/* --- Operations -------------------------------------------------------------- */

static bool ops_overlap(const MirrorOp *op, int64_t offset, int64_t bytes)
{
    return op->offset < offset + bytes && offset < op->offset + op->bytes;
}

void coroutine_fn mirror_op_begin(MirrorBlockJob *s, MirrorOp *op,
                                  int64_t offset, int64_t bytes,
                                  bool is_active_write)
{
    MirrorOp *other;

    bd_mutex_lock(&s->ops_lock);
retry:
    QLIST_FOREACH(other, &s->ops, next) {
        if (ops_overlap(other, offset, bytes)) {
            co_queue_wait_bd(&other->waiters, &s->ops_lock);
            goto retry;     /* @other may be gone: look again */
        }
    }
    op->offset = offset;
    op->bytes = bytes;
    op->is_active_write = is_active_write;
    co_queue_init(&op->waiters);
    QLIST_INSERT_HEAD(&s->ops, op, next);
    if (!is_active_write) {
        s->bytes_in_flight += bytes;
        s->ops_in_flight++;
    }
    bd_mutex_unlock(&s->ops_lock);
}

void coroutine_fn mirror_op_end(MirrorBlockJob *s, MirrorOp *op)
{
    bd_mutex_lock(&s->ops_lock);
    QLIST_REMOVE(op, next);
    if (!op->is_active_write) {
        s->bytes_in_flight -= op->bytes;
        s->ops_in_flight--;
    }
    co_queue_restart_all(&op->waiters);
    co_queue_restart_all(&s->op_done);
    bd_mutex_unlock(&s->ops_lock);
}

/* Sleep until some background copy ends, if any is in flight. */
static void coroutine_fn mirror_wait_for_any_op(MirrorBlockJob *s)
{
    bd_mutex_lock(&s->ops_lock);
    if (s->ops_in_flight > 0) {
        co_queue_wait_bd(&s->op_done, &s->ops_lock);
    }
    bd_mutex_unlock(&s->ops_lock);
}

static int64_t mirror_bytes_in_flight(MirrorBlockJob *s)
{
    int64_t n;

    bd_mutex_lock(&s->ops_lock);
    n = s->bytes_in_flight;
    bd_mutex_unlock(&s->ops_lock);
    return n;
}

static int mirror_get_ret(MirrorBlockJob *s)
{
    int ret;

    bd_mutex_lock(&s->ops_lock);
    ret = s->ret;
    bd_mutex_unlock(&s->ops_lock);
    return ret;
}

BlockErrorAction mirror_report_error(MirrorBlockJob *s, bool is_read,
                                     int error)
{
    BlockErrorAction action;

    IO_CODE();
    action = block_job_error_action(&s->common,
                                    is_read ? s->on_source_error
                                            : s->on_target_error,
                                    is_read, error);
    if (action == BLOCK_ERROR_ACTION_REPORT) {
        bd_mutex_lock(&s->ops_lock);
        if (!s->ret) {
            s->ret = -error;
        }
        bd_mutex_unlock(&s->ops_lock);
    }
    return action;
}

/* --- Copying ----------------------------------------------------------------- */

/*
 * Make [offset, offset + bytes) of the target read as zeroes: nothing to
 * do where the target's block status already says it does (a hole of a
 * sparse file, a null-co node with read-zeroes), write-zeroes with unmap
 * elsewhere.  Asking is right at any time, not only at the start: the job
 * is the only writer of the target (its backend shares no write
 * permission), and its op on the range keeps the filter's write-blocking
 * writes out of it.  A status that is unknown means: write.
 */
static int coroutine_fn mirror_zero_target(MirrorBlockJob *s, int64_t offset,
                                           int64_t bytes)
{
    int64_t end = offset + bytes;

    while (offset < end) {
        int64_t pnum = end - offset;
        int status = 0;

        if (blk_co_block_status(s->target_blk, offset, pnum, &pnum,
                                &status) < 0 || pnum <= 0) {
            pnum = end - offset;
            status = 0;
        }
        if (!(status & BDRV_BLOCK_ZERO)) {
            int ret = blk_co_pwrite_zeroes(s->target_blk, offset, pnum,
                                           BDRV_REQ_MAY_UNMAP);
            if (ret < 0) {
                return ret;
            }
        }
        offset += pnum;
    }
    return 0;
}

/*
 * Copy [offset, offset + bytes) from source to target: zero extents (by
 * the source's block status) with mirror_zero_target(), the rest as read
 * + write.  Returns 0 or -errno with *@is_read saying which side failed.
 */
static int coroutine_fn mirror_copy_range(MirrorBlockJob *s, int64_t offset,
                                          int64_t bytes, bool *is_read)
{
    int64_t end = offset + bytes;
    void *buf = NULL;
    int ret = 0;

    while (ret == 0 && offset < end) {
        int64_t pnum = end - offset;
        int status = 0;

        if (blk_co_block_status(s->common.blk, offset, pnum, &pnum,
                                &status) < 0 || pnum <= 0) {
            pnum = end - offset;
            status = BDRV_BLOCK_DATA;       /* unknown: copy it */
        }
        if (status & BDRV_BLOCK_ZERO) {
            *is_read = false;
            ret = mirror_zero_target(s, offset, pnum);
        } else {
            if (!buf) {
                buf = blockd_memalign(4096, bytes);
            }
            *is_read = true;
            ret = blk_co_pread(s->common.blk, offset, pnum, buf, 0);
            if (ret == 0) {
                *is_read = false;
                ret = blk_co_pwrite(s->target_blk, offset, pnum, buf, 0);
            }
        }
        offset += pnum;
    }
    blockd_vfree(buf);
    return ret < 0 ? ret : 0;
}

typedef struct MirrorCopy {
    MirrorBlockJob *s;
    MirrorOp op;
} MirrorCopy;

static void coroutine_fn mirror_co_copy(void *opaque)
{
    MirrorCopy *c = opaque;
    MirrorBlockJob *s = c->s;
    bool is_read = false;
    int ret;

    ret = mirror_copy_range(s, c->op.offset, c->op.bytes, &is_read);
    if (ret < 0) {
        /* Copy it again later (report ends the job before that). */
        bdrv_set_dirty_bitmap(s->dirty_bitmap, c->op.offset, c->op.bytes);
        mirror_report_error(s, is_read, -ret);
    } else {
        job_progress_update(&s->common.job, c->op.bytes);
    }
    mirror_op_end(s, &c->op);
    g_free(c);
}

/* Start copying the next dirty extent after the cursor, if there is one. */
static void coroutine_fn mirror_iteration(MirrorBlockJob *s)
{
    int64_t size = bdrv_dirty_bitmap_size(s->dirty_bitmap);
    int64_t start, count;
    MirrorCopy *c;

    if (!bdrv_dirty_bitmap_next_dirty_area(s->dirty_bitmap, s->cursor, size,
                                           s->max_op_bytes, &start, &count)) {
        s->cursor = 0;
        if (!bdrv_dirty_bitmap_next_dirty_area(s->dirty_bitmap, 0, size,
                                               s->max_op_bytes, &start,
                                               &count)) {
            return;
        }
    }
    /* Within buf-size (one op may always run, however large). */
    bd_mutex_lock(&s->ops_lock);
    while (s->bytes_in_flight > 0 &&
           s->bytes_in_flight + count > s->buf_size) {
        co_queue_wait_bd(&s->op_done, &s->ops_lock);
    }
    bd_mutex_unlock(&s->ops_lock);
    job_ratelimit_wait(&s->common.job, count);

    c = g_new0(MirrorCopy, 1);
    c->s = s;
    /* Registered first: then the extent is ours, and writes after the
     * reset mark it dirty again. */
    mirror_op_begin(s, &c->op, start, count, false);
    bdrv_reset_dirty_bitmap(s->dirty_bitmap, start, count);
    s->cursor = start + count >= size ? 0 : start + count;
    /* Runs once this coroutine yields. */
    aio_co_enter(job_get_aio_context(&s->common.job),
                 co_create(mirror_co_copy, c));
}

/* Copy every dirty extent, one after the other.  Nothing else runs. */
static int coroutine_fn mirror_copy_all(MirrorBlockJob *s, bool *is_read)
{
    int64_t size = bdrv_dirty_bitmap_size(s->dirty_bitmap);
    int64_t start, count;
    int ret;

    while (bdrv_dirty_bitmap_next_dirty_area(s->dirty_bitmap, 0, size,
                                             s->max_op_bytes, &start,
                                             &count)) {
        bdrv_reset_dirty_bitmap(s->dirty_bitmap, start, count);
        ret = mirror_copy_range(s, start, count, is_read);
        if (ret < 0) {
            bdrv_set_dirty_bitmap(s->dirty_bitmap, start, count);
            return ret;
        }
        job_progress_update(&s->common.job, count);
    }
    *is_read = false;
    return blk_co_flush(s->target_blk);
}

/* --- Waiting for writes -------------------------------------------------------- */

void mirror_kick(MirrorBlockJob *s)
{
    IO_CODE();
    /*
     * Our write's dirty bits are set (before the request completed).
     * Pairs with smp_mb() in mirror_wait_for_writes(): either we see the
     * job waiting, or it sees the bits.
     */
    smp_mb();
    if (qatomic_read(&s->waiting_for_writes) &&
        qatomic_xchg(&s->waiting_for_writes, false)) {
        job_enter(&s->common.job);
    }
}

/*
 * Called with job_mutex held, a leaf lock: atomics only.  A writer that
 * took waiting_for_writes has dirtied the bitmap and is calling (or has
 * called) job_enter().
 */
static bool mirror_has_work(void *opaque)
{
    MirrorBlockJob *s = opaque;

    return !qatomic_read(&s->waiting_for_writes) ||
           qatomic_read(&s->should_complete);
}

/*
 * READY and idle: wait until a write dirties the bitmap, job-complete, a
 * cancel or a pause.  Either a writer sees the flag set, or we see its
 * dirty bits below; a writer that takes the flag and calls job_enter()
 * before we yielded is seen by mirror_has_work(), under job_mutex like
 * its job_enter().
 */
static void coroutine_fn mirror_wait_for_writes(MirrorBlockJob *s)
{
    qatomic_set(&s->waiting_for_writes, true);
    /* Pairs with smp_mb() in mirror_kick(). */
    smp_mb();
    if (bdrv_get_dirty_count(s->dirty_bitmap) == 0) {
        job_yield_unless(&s->common.job, mirror_has_work, s);
    }
    qatomic_set(&s->waiting_for_writes, false);
}

/* --- The job's coroutine ----------------------------------------------------- */

static int coroutine_fn mirror_run(Job *job, Error **errp)
{
    MirrorBlockJob *s = container_of(job, MirrorBlockJob, common.job);
    int ret;

    /* Checked here, not at start, so that the job fails as QEMU's does. */
    if (blk_getlength(s->common.blk) != blk_getlength(s->target_blk)) {
        error_setg(errp, "Source and target image have different sizes");
        return -EINVAL;
    }
    if (s->sync != MIRROR_SYNC_MODE_NONE) {
        bdrv_set_dirty_bitmap(s->dirty_bitmap, 0, INT64_MAX);
    }
    for (;;) {
        int64_t cnt, in_flight;

        job_pause_point(job);
        if (job_is_cancelled(job) || mirror_get_ret(s) < 0) {
            break;
        }
        cnt = bdrv_get_dirty_count(s->dirty_bitmap);
        in_flight = mirror_bytes_in_flight(s);
        job_progress_set_remaining(job, cnt + in_flight);

        if (cnt > 0 && in_flight < s->buf_size) {
            mirror_iteration(s);
            continue;
        }
        if (cnt == 0 && in_flight == 0) {
            if (!job_is_ready(job)) {
                ret = blk_co_flush(s->target_blk);
                if (ret < 0) {
                    mirror_report_error(s, false, -ret);
                    continue;
                }
                job_transition_to_ready(job);
            }
            /* A soft cancel of a READY job completes without pivot. */
            if (qatomic_read(&s->should_complete) ||
                job_cancel_requested(job)) {
                break;
            }
            mirror_wait_for_writes(s);
            continue;
        }
        mirror_wait_for_any_op(s);
    }

    /* No copy may outlive the loop: they use the job. */
    while (mirror_bytes_in_flight(s) > 0) {
        mirror_wait_for_any_op(s);
    }
    ret = mirror_get_ret(s);
    if (ret == 0 && job_is_cancelled(job)) {
        ret = -ECANCELED;
    }
    return ret;
}

/* --- Main loop: verbs and the end of the job ----------------------------------- */

static void mirror_complete(Job *job, Error **errp)
{
    MirrorBlockJob *s = container_of(job, MirrorBlockJob, common.job);

    GLOBAL_STATE_CODE();
    qatomic_set(&s->should_complete, true);
    job_enter(job);
}

static bool mirror_cancel(Job *job, bool force)
{
    /* Before READY there is nothing to finish gracefully. */
    return force || !job_is_ready(job);
}

typedef struct MirrorFinish {
    MirrorBlockJob *s;
    int ret;
} MirrorFinish;

static void coroutine_fn mirror_co_finish(void *opaque)
{
    MirrorFinish *f = opaque;
    bool is_read;

    f->ret = mirror_copy_all(f->s, &is_read);
}

/*
 * The end of the job, once: drained, copy what is left (unless @abort),
 * switch the graph (job-complete), take the filter out.  Returns 0 or
 * -errno (the copy or the switch failed).
 */
static int mirror_exit(MirrorBlockJob *s, bool abort)
{
    BlockDriverState *top = s->mirror_top_bs, *below;
    Error *err = NULL;
    int ret = 0;

    GLOBAL_STATE_CODE();
    if (s->exited || !top) {
        return 0;
    }
    s->exited = true;
    bdrv_ref(top);
    bdrv_drained_begin(top);
    /*
     * The source too: a parent attached to it after the job started (a
     * second export of the source node) writes beside the filter.  Its
     * writes are in the bitmap, but one landing after the last copy and
     * before the switch would be lost.  (The job's reference keeps it
     * alive after the switch takes the filter's edge off it.)
     */
    bdrv_drained_begin(s->source);
    bdrv_drained_begin(s->target);

    if (!abort) {
        MirrorFinish f = { .s = s };

        bdrv_run_co(bdrv_get_aio_context(top), mirror_co_finish, &f);
        ret = f.ret;
    }
    /* Drained: no guest write is in the filter now. */
    mirror_top_set_job(top, NULL);
    /* Let the target's new users write it. */
    if (s->target_blk) {
        blk_set_perm(s->target_blk, 0, BLK_PERM_ALL, &error_abort);
    }

    if (!abort && ret == 0 && qatomic_read(&s->should_complete)) {
        BlockDriverState *to_replace = s->to_replace ? s->to_replace
                                                     : s->source;

        if (bdrv_replace_node(to_replace, s->target, &err) < 0) {
            job_lock();
            error_propagate(&s->common.job.err, err);
            job_unlock();
            ret = -EPERM;
        }
    }
    bdrv_graph_rdlock_main_loop();
    below = top->file->bs;
    bdrv_graph_rdunlock_main_loop();
    if (bdrv_replace_node(top, below, &err) < 0) {
        warn_report_err(err);
    }
    bdrv_drained_end(s->target);
    bdrv_drained_end(s->source);
    bdrv_drained_end(top);
    bdrv_unref(top);
    return ret;
}

static int mirror_prepare(Job *job)
{
    return mirror_exit(container_of(job, MirrorBlockJob, common.job), false);
}

static void mirror_abort(Job *job)
{
    mirror_exit(container_of(job, MirrorBlockJob, common.job), true);
}

static void mirror_clean(Job *job)
{
    MirrorBlockJob *s = container_of(job, MirrorBlockJob, common.job);

    GLOBAL_STATE_CODE();
    if (s->dirty_bitmap) {
        bdrv_release_dirty_bitmap(s->dirty_bitmap);
        s->dirty_bitmap = NULL;
    }
    if (s->mirror_top_bs) {
        bdrv_unref(s->mirror_top_bs);       /* the job's reference */
        s->mirror_top_bs = NULL;
    }
    if (s->to_replace) {
        bdrv_unref(s->to_replace);
        s->to_replace = NULL;
    }
    /* Last: the bitmap above lived on it. */
    bdrv_unref(s->source);
    bd_mutex_destroy(&s->ops_lock);
}

static const JobDriver mirror_job_driver = {
    .instance_size = sizeof(MirrorBlockJob),
    .job_type = "mirror",
    .run = mirror_run,
    .complete = mirror_complete,
    .cancel = mirror_cancel,
    .prepare = mirror_prepare,
    .abort = mirror_abort,
    .clean = mirror_clean,
    .free = block_job_free,
};

/* --- Start ---------------------------------------------------------------------- */

/*
 * As QEMU: @to_replace must be @source or reached from it through filters
 * only, so that the switch cannot change what its users see.
 */
static bool mirror_can_replace(BlockDriverState *source,
                               BlockDriverState *to_replace)
    GRAPH_RDLOCK
{
    for (BlockDriverState *bs = source; bs; ) {
        if (bs == to_replace) {
            return true;
        }
        if (!bs->drv->is_filter || !bs->file) {
            return false;
        }
        bs = bs->file->bs;
    }
    return false;
}

static bool mirror_check_args(const MirrorArgs *a, BlockDriverState **replaced,
                              Error **errp) TSA_REQUIRES(bql)
{
    BlockDriverState *source = a->source, *target = a->target;
    bool ok;

    if (a->sync == MIRROR_SYNC_MODE_INCREMENTAL ||
        a->sync == MIRROR_SYNC_MODE_BITMAP) {
        error_setg(errp, "Sync mode '%s' not supported",
                   mirror_sync_mode_names[a->sync]);
        return false;
    }
    if (source == target) {
        error_setg(errp, "Can't mirror node into itself");
        return false;
    }
    if (a->granularity &&
        (a->granularity < 512 || a->granularity > 64 * 1024 * 1024)) {
        error_setg(errp, "Parameter 'granularity' expects a value in range "
                   "[512B, 64MB]");
        return false;
    }
    if (a->granularity & (a->granularity - 1)) {
        error_setg(errp, "Parameter 'granularity' expects a power of 2");
        return false;
    }
    if (a->buf_size < 0) {
        error_setg(errp, "Invalid parameter 'buf-size'");
        return false;
    }
    *replaced = NULL;
    if (!a->replaces) {
        return true;
    }
    *replaced = bdrv_lookup_bs(a->replaces, a->replaces, errp);
    if (!*replaced) {
        return false;
    }
    bdrv_graph_rdlock_main_loop();
    ok = mirror_can_replace(source, *replaced);
    bdrv_graph_rdunlock_main_loop();
    if (!ok) {
        error_setg(errp, "Cannot replace '%s' by a node mirrored from '%s', "
                   "because it cannot be guaranteed that doing so would not "
                   "lead to an abrupt change of visible data",
                   a->replaces, source->node_name);
        return false;
    }
    return true;
}

/* Undo the filter's insertion (set-up failed before the job owned it). */
static void mirror_remove_filter(BlockDriverState *top,
                                 BlockDriverState *source) TSA_REQUIRES(bql)
{
    Error *err = NULL;

    if (bdrv_replace_node(top, source, &err) < 0) {
        warn_report_err(err);
    }
    bdrv_unref(top);
}

bool mirror_check_source(BlockDriverState *source, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!bdrv_is_root_node(source) || block_job_uses_node(source)) {
        error_setg(errp, "Need a root block node");
        return false;
    }
    return true;
}

/*
 * Insert the filter @top above @source with a dirty bitmap on @source,
 * both in one drained section, so that no write goes unseen.  The bitmap,
 * or NULL with @errp set and nothing changed (@top unreferenced).
 */
static BdrvDirtyBitmap *mirror_insert_filter(BlockDriverState *source,
                                             BlockDriverState *top,
                                             uint32_t granularity,
                                             Error **errp) TSA_REQUIRES(bql)
{
    BdrvDirtyBitmap *bitmap;

    bdrv_drained_begin(source);
    bitmap = bdrv_create_dirty_bitmap(source, granularity, NULL, errp);
    if (!bitmap || bdrv_replace_node(source, top, errp) < 0) {
        bdrv_drained_end(source);
        if (bitmap) {
            bdrv_release_dirty_bitmap(bitmap);
        }
        bdrv_unref(top);
        return NULL;
    }
    bdrv_drained_end(source);
    return bitmap;
}

/* The job's settings from @a, with the defaults filled in. */
static void mirror_job_setup(MirrorBlockJob *s, const MirrorArgs *a,
                             BlockDriverState *top, BdrvDirtyBitmap *bitmap,
                             BlockDriverState *replaced) TSA_REQUIRES(bql)
{
    uint32_t granularity = a->granularity ? a->granularity
                                          : MIRROR_DEFAULT_GRANULARITY;
    int64_t buf_size = a->buf_size ? a->buf_size : MIRROR_DEFAULT_BUF_SIZE;

    bd_mutex_init(&s->ops_lock);
    QLIST_INIT(&s->ops);
    co_queue_init(&s->op_done);
    s->mirror_top_bs = top;
    /*
     * Referenced until clean(): the bitmap lives on it, and the switch
     * takes its last parent from a source that nobody else holds (an
     * inline child of a format node), which would free it with the bitmap.
     */
    bdrv_ref(a->source);
    s->source = a->source;
    block_job_block_node(&s->common, a->source);
    s->target = a->target;
    s->dirty_bitmap = bitmap;
    s->sync = a->sync;
    s->copy_mode = a->copy_mode;
    s->on_source_error = a->on_source_error;
    s->on_target_error = a->on_target_error;
    s->granularity = granularity;
    s->buf_size = ROUND_UP(buf_size, (int64_t)granularity);
    s->max_op_bytes = ROUND_UP(MIN(MAX(s->buf_size / MIRROR_MAX_IN_FLIGHT,
                                       MIRROR_MAX_IO_BYTES), s->buf_size),
                               (int64_t)granularity);
    if (replaced) {
        bdrv_ref(replaced);
        s->to_replace = replaced;
    }
}

bool mirror_start(const MirrorArgs *a, Error **errp)
{
    BlockDriverState *source = a->source, *top, *replaced;
    BdrvDirtyBitmap *bitmap;
    MirrorBlockJob *s;
    int flags = JOB_DEFAULT;

    GLOBAL_STATE_CODE();
    if (!mirror_check_args(a, &replaced, errp) ||
        !block_job_check_node(source, errp) ||
        !block_job_check_node(a->target, errp)) {
        return false;
    }
    if (bdrv_get_aio_context(a->target) != bdrv_get_aio_context(source) &&
        bdrv_try_change_aio_context(a->target, bdrv_get_aio_context(source),
                                    NULL, errp) < 0) {
        return false;
    }
    top = mirror_top_open(source, a->filter_node_name, errp);
    if (!top) {
        return false;
    }
    bitmap = mirror_insert_filter(source, top,
                                  a->granularity ? a->granularity
                                                 : MIRROR_DEFAULT_GRANULARITY,
                                  errp);
    if (!bitmap) {
        return false;
    }

    flags |= a->auto_finalize ? 0 : JOB_MANUAL_FINALIZE;
    flags |= a->auto_dismiss ? 0 : JOB_MANUAL_DISMISS;
    s = block_job_create(a->job_id ? a->job_id : source->node_name,
                         &mirror_job_driver, NULL, top,
                         BLK_PERM_CONSISTENT_READ,
                         BLK_PERM_ALL & ~BLK_PERM_RESIZE, a->speed,
                         flags, NULL, NULL, errp);
    if (!s) {
        bdrv_release_dirty_bitmap(bitmap);
        mirror_remove_filter(top, source);
        return false;
    }
    /*
     * The job's backend on the filter refuses resizes of the source (the
     * target would not follow).  From here the job owns the filter and
     * the bitmap: abort and clean undo everything.
     */
    mirror_job_setup(s, a, top, bitmap, replaced);
    /* Named after the job, so that conflicts on the target name it. */
    if (!block_job_add_bdrv(&s->common, job_id(&s->common.job), a->target,
                            BLK_PERM_WRITE,
                            BLK_PERM_CONSISTENT_READ |
                            BLK_PERM_WRITE_UNCHANGED | BLK_PERM_RESIZE,
                            errp)) {
        job_lock();
        job_cancel_locked(&s->common.job, true);
        job_unlock();
        return false;
    }
    s->target_blk = s->common.extra_blks->data;

    bdrv_drained_begin(top);
    if (s->copy_mode == MIRROR_COPY_MODE_WRITE_BLOCKING) {
        /* The filter records writes itself (mirror-top.c). */
        bdrv_disable_dirty_bitmap(bitmap);
    }
    mirror_top_set_job(top, s);
    bdrv_drained_end(top);
    job_start(&s->common.job);
    return true;
}
