/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block-copy: the copy engine of copy-before-write and backup (see
 * include/block/block-copy.h for the contract).
 *
 * Invariant, under s->lock: a cluster is in exactly one of three states:
 * dirty in the copy bitmap (nobody copies it), in exactly one task of
 * s->tasks (its owner copies it, the bit is clear), or done (clear, in no
 * task).  A task is created by taking a dirty extent out of the bitmap,
 * and ends by leaving the task list -- after setting its clusters dirty
 * again if its copy failed -- and waking its waiters; both happen in one
 * critical section, so a waiter that looks again sees either the clusters
 * done or dirty, never lost.
 *
 * Locking: s->lock (a BdMutex) guards the task list, each task's range
 * and wait queue, the memory accounting and its queue, and every change
 * of the copy bitmap (whose own mutex, taken inside, guards only its
 * bits: lock order s->lock -> the source's dirty_bitmap_mutex).  It is
 * never held across I/O or a yield: waits go through co_queue_wait_bd().
 * Progress is reported after dropping it (job_mutex is taken there).
 */
#include "util/osdep.h"

#include "block/block-copy.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/atomic.h"
#include "util/co-lock.h"
#include "util/iov.h"
#include "util/main-loop.h"
#include "util/thread.h"

/* Bounce buffers are aligned for O_DIRECT on either side. */
#define BLOCK_COPY_BUF_ALIGN 4096

typedef struct BlockCopyTask {
    int64_t offset;                 /* s->lock (immutable once listed) */
    int64_t bytes;                  /* s->lock (immutable once listed) */
    CoQueue wait_queue;             /* s->lock: callers needing these */
    QLIST_ENTRY(BlockCopyTask) next;    /* s->lock */
} BlockCopyTask;

struct BlockCopyState {
    /* Edges of the owner (the filter): their bs needs the graph lock. */
    BdrvChild *source;              /* immutable */
    BdrvChild *target;              /* immutable */
    BdrvDirtyBitmap *copy_bitmap;   /* immutable pointer; bits: see top */
    int64_t cluster_size;           /* immutable */
    int64_t len;                    /* immutable: bytes to consider */

    BdMutex lock;
    QLIST_HEAD(, BlockCopyTask) tasks;  /* lock */
    int n_tasks;                    /* lock, read atomically by getters */
    int64_t mem_in_flight;          /* lock: bounce bytes of live tasks */
    int64_t max_mem;                /* lock: the budget for mem_in_flight */
    CoQueue mem_queue;              /* lock: tasks waiting for memory */

    int target_is_zero;             /* atomic: skip zeroes on the target */

    BlockCopyProgressFunc *progress_fn; /* lock */
    void *progress_opaque;              /* lock */
};

BlockCopyState *block_copy_state_new(BdrvChild *source, BdrvChild *target,
                                     int64_t cluster_size, Error **errp)
{
    BlockCopyState *s;
    BdrvDirtyBitmap *bitmap;
    int64_t len = bdrv_get_total_bytes(source->bs);

    GLOBAL_STATE_CODE();
    assert(cluster_size >= (int64_t)BDRV_SECTOR_SIZE &&
           (cluster_size & (cluster_size - 1)) == 0);
    if (len < 0) {
        error_setg_errno(errp, -len, "Could not get the size of '%s'",
                         source->bs->node_name);
        return NULL;
    }
    bitmap = bdrv_create_dirty_bitmap(source->bs, cluster_size, NULL, errp);
    if (!bitmap) {
        return NULL;
    }
    /* Only block-copy changes it: guest writes must not dirty it. */
    bdrv_disable_dirty_bitmap(bitmap);

    s = g_new0(BlockCopyState, 1);
    s->source = source;
    s->target = target;
    s->copy_bitmap = bitmap;
    s->cluster_size = cluster_size;
    s->len = len;
    s->max_mem = BLOCK_COPY_MAX_MEM;
    bd_mutex_init(&s->lock);
    QLIST_INIT(&s->tasks);
    co_queue_init(&s->mem_queue);
    return s;
}

void block_copy_state_free(BlockCopyState *s)
{
    GLOBAL_STATE_CODE();
    if (!s) {
        return;
    }
    assert(QLIST_EMPTY(&s->tasks));
    assert(co_queue_empty(&s->mem_queue));
    bdrv_release_dirty_bitmap(s->copy_bitmap);
    bd_mutex_destroy(&s->lock);
    g_free(s);
}

void block_copy_set_progress_callback(BlockCopyState *s,
                                      BlockCopyProgressFunc *fn,
                                      void *opaque)
{
    GLOBAL_STATE_CODE();
    bd_mutex_lock(&s->lock);
    s->progress_fn = fn;
    s->progress_opaque = opaque;
    bd_mutex_unlock(&s->lock);
}

void block_copy_set_max_mem(BlockCopyState *s, int64_t bytes)
{
    GLOBAL_STATE_CODE();
    bd_mutex_lock(&s->lock);
    s->max_mem = bytes;
    bd_mutex_unlock(&s->lock);
}

BdrvDirtyBitmap *block_copy_dirty_bitmap(BlockCopyState *s)
{
    return s->copy_bitmap;
}

int64_t block_copy_cluster_size(BlockCopyState *s)
{
    return s->cluster_size;
}

int64_t block_copy_len(BlockCopyState *s)
{
    return s->len;
}

int block_copy_tasks_in_flight(BlockCopyState *s)
{
    return qatomic_read(&s->n_tasks);
}

void coroutine_fn block_copy_probe_target_zero(BlockCopyState *s)
{
    BlockDriverState *target = s->target->bs;
    int64_t offset = 0, pnum;
    int ret;

    IO_CODE();
    while (offset < s->len) {
        ret = bdrv_co_block_status(target, true, offset, s->len - offset,
                                   &pnum, NULL, NULL);
        if (ret < 0 || !(ret & BDRV_BLOCK_ZERO) || pnum <= 0) {
            qatomic_set(&s->target_is_zero, false);
            return;
        }
        offset += pnum;
    }
    qatomic_set(&s->target_is_zero, true);
}

/* --- Tasks ------------------------------------------------------------------ */

/*
 * Take the first dirty extent of [start, end) (at most a chunk) out of the
 * bitmap into @task, or return false if none is dirty.
 */
static bool block_copy_task_start_locked(BlockCopyState *s, int64_t start,
                                         int64_t end, BlockCopyTask *task)
    TSA_REQUIRES(&s->lock)
{
    int64_t dirty_start, dirty_count;

    if (!bdrv_dirty_bitmap_next_dirty_area(s->copy_bitmap, start, end,
                                           BLOCK_COPY_MAX_CHUNK,
                                           &dirty_start, &dirty_count)) {
        return false;
    }
    /* The bitmap rounds out to clusters; the image may end mid-cluster. */
    dirty_count = MIN(dirty_count, s->len - dirty_start);
    task->offset = dirty_start;
    task->bytes = dirty_count;
    co_queue_init(&task->wait_queue);
    bdrv_reset_dirty_bitmap(s->copy_bitmap, dirty_start, dirty_count);
    QLIST_INSERT_HEAD(&s->tasks, task, next);
    qatomic_set(&s->n_tasks, s->n_tasks + 1);
    return true;
}

/* End @task: failed clusters go back to the bitmap, waiters look again. */
static void block_copy_task_end_locked(BlockCopyState *s, BlockCopyTask *task,
                                       int ret)
    TSA_REQUIRES(&s->lock)
{
    if (ret < 0) {
        bdrv_set_dirty_bitmap(s->copy_bitmap, task->offset, task->bytes);
    }
    QLIST_REMOVE(task, next);
    qatomic_set(&s->n_tasks, s->n_tasks - 1);
    co_queue_restart_all(&task->wait_queue);
}

static BlockCopyTask *block_copy_find_task_locked(BlockCopyState *s,
                                                  int64_t start, int64_t end)
    TSA_REQUIRES(&s->lock)
{
    BlockCopyTask *task;

    QLIST_FOREACH(task, &s->tasks, next) {
        if (task->offset < end && start < task->offset + task->bytes) {
            return task;
        }
    }
    return NULL;
}

/*
 * Room for @bytes of bounce buffer.  A task alone always gets its room,
 * so one larger than the budget cannot wait forever.
 */
static void coroutine_fn block_copy_mem_get_locked(BlockCopyState *s,
                                                   int64_t bytes)
    TSA_REQUIRES(&s->lock)
{
    while (s->mem_in_flight > 0 && s->mem_in_flight + bytes > s->max_mem) {
        co_queue_wait_bd(&s->mem_queue, &s->lock);
    }
    s->mem_in_flight += bytes;
}

static void block_copy_mem_put_locked(BlockCopyState *s, int64_t bytes)
    TSA_REQUIRES(&s->lock)
{
    s->mem_in_flight -= bytes;
    co_queue_restart_all(&s->mem_queue);
}

/* --- Copying ---------------------------------------------------------------- */

/*
 * Copy [offset, offset + bytes) as the source's block status says: zero
 * ranges as zeroes (nothing if the target reads as zero), the rest
 * through @buf.  No lock held; the task owns the range.
 */
static int coroutine_fn block_copy_range(BlockCopyState *s, int64_t offset,
                                         int64_t bytes, uint8_t *buf,
                                         bool *error_is_read) GRAPH_RDLOCK
{
    while (bytes > 0) {
        int64_t pnum;
        int status = bdrv_co_block_status(s->source->bs, true, offset, bytes,
                                          &pnum, NULL, NULL);
        int ret;

        if (status < 0 || pnum <= 0) {
            /* Cannot tell: copy it as data. */
            status = BDRV_BLOCK_DATA;
            pnum = bytes;
        }
        if (status & BDRV_BLOCK_ZERO) {
            if (!qatomic_read(&s->target_is_zero)) {
                ret = bdrv_co_pwrite_zeroes(s->target, offset, pnum,
                                            BDRV_REQ_MAY_UNMAP);
                if (ret < 0) {
                    *error_is_read = false;
                    return ret;
                }
            }
        } else {
            IOVec qiov;

            iovec_init_buf(&qiov, buf, pnum);
            ret = bdrv_co_preadv(s->source, offset, pnum, &qiov, 0);
            if (ret < 0) {
                *error_is_read = true;
                return ret;
            }
            ret = bdrv_co_pwritev(s->target, offset, pnum, &qiov, 0);
            if (ret < 0) {
                *error_is_read = false;
                return ret;
            }
        }
        offset += pnum;
        bytes -= pnum;
    }
    return 0;
}

/* Copy the clusters of @task, which the caller owns. */
static int coroutine_fn block_copy_task_run(BlockCopyState *s,
                                            BlockCopyTask *task,
                                            bool *error_is_read)
    GRAPH_RDLOCK
{
    uint8_t *buf = blockd_memalign(BLOCK_COPY_BUF_ALIGN, task->bytes);
    int ret = block_copy_range(s, task->offset, task->bytes, buf,
                               error_is_read);

    blockd_vfree(buf);
    return ret;
}

int coroutine_fn block_copy(BlockCopyState *s, int64_t offset, int64_t bytes,
                            bool *error_is_read)
{
    int64_t start = ROUND_DOWN(offset, s->cluster_size);
    int64_t end = MIN(ROUND_UP(offset + bytes, s->cluster_size), s->len);
    bool is_read = false;
    int ret = 0;

    IO_CODE();
    while (start < end) {
        BlockCopyTask task, *other;
        BlockCopyProgressFunc *progress_fn;
        void *progress_opaque;

        bd_mutex_lock(&s->lock);
        if (block_copy_task_start_locked(s, start, end, &task)) {
            block_copy_mem_get_locked(s, task.bytes);
            bd_mutex_unlock(&s->lock);

            ret = block_copy_task_run(s, &task, &is_read);

            bd_mutex_lock(&s->lock);
            block_copy_mem_put_locked(s, task.bytes);
            block_copy_task_end_locked(s, &task, ret);
            progress_fn = s->progress_fn;
            progress_opaque = s->progress_opaque;
            bd_mutex_unlock(&s->lock);
            if (ret < 0) {
                break;
            }
            if (progress_fn) {
                progress_fn(progress_opaque, task.bytes);
            }
            continue;
        }
        other = block_copy_find_task_locked(s, start, end);
        if (!other) {
            /* Nothing dirty, nothing in flight: the range is on target. */
            bd_mutex_unlock(&s->lock);
            break;
        }
        /* Woken when it ends; then its clusters are done or dirty. */
        co_queue_wait_bd(&other->wait_queue, &s->lock);
        bd_mutex_unlock(&s->lock);
    }
    if (ret < 0 && error_is_read) {
        *error_is_read = is_read;
    }
    return ret;
}
