/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The structures of the block graph and the driver interface, for block/
 * and its drivers.  Users of the block layer (exports, jobs, QMP) use the
 * functions of block-global-state.h, block-io.h and block-backend.h.
 *
 * Who owns what (see docs/locking.md):
 *  - Topology (children, parents, file, BdrvChild.bs and the list links):
 *    the graph lock; written only under bdrv_graph_wrlock() by the main
 *    loop.  GRAPH_RDLOCK_PTR on each, so clang's analysis checks every
 *    access (the main loop reads with bdrv_graph_rdlock_main_loop()).
 *  - Everything TSA_GUARDED_BY(bql) (or tagged BQL): main loop only.
 *  - in_flight, quiesce_counter reads, write_gen, size: atomics, any thread.
 *  - Tracked requests (serialisation of read-modify-write): reqs_lock.
 *  - Flushes reaching the driver: flush_lock (a CoMutex).
 *  - Dirty bitmaps and their list: dirty_bitmap_mutex.
 *
 * Lock order (docs/locking.md has the whole table): BQL -> graph write
 * lock -> reqs_lock; dirty_bitmap_mutex is a leaf.  Coroutine locks: graph
 * read lock -> parent's flush_lock -> child's flush_lock.  No BdMutex is
 * held across a yield, and nothing polls or drains holding the graph lock
 * in either mode.
 */
#ifndef BLOCK_INT_H
#define BLOCK_INT_H

#include "block/block-common.h"
#include "block/dirty-bitmap.h"
#include "util/co-lock.h"
#include "util/opts.h"
#include "util/queue.h"
#include "util/thread.h"

/* --- Children and their parents ----------------------------------------- */

/*
 * What a parent is: a node (child_of_bds), a BlockBackend (child_root), or
 * a job.  Called in the main loop unless said otherwise.
 */
struct BdrvChildClass {
    bool parent_is_bds;

    /* "node 'disk0'", "export 'exp0'", "job 'job0'": for messages. */
    char *(*get_parent_desc)(BdrvChild *c) BQL_PTR;

    /*
     * Drain, propagated up from the child: drained_begin stops the parent
     * from issuing new requests (it must not poll); drained_poll returns
     * true while the parent still has requests in flight on @c's node;
     * drained_end lets it go on (it must not poll either).
     */
    void (*drained_begin)(BdrvChild *c) GRAPH_RDLOCK_PTR BQL_PTR;
    bool (*drained_poll)(BdrvChild *c) GRAPH_RDLOCK_PTR BQL_PTR;
    void (*drained_end)(BdrvChild *c) GRAPH_RDLOCK_PTR BQL_PTR;

    /*
     * The child's node changed size (any thread's truncate, BQL here,
     * with the graph read lock held).
     */
    void (*resize)(BdrvChild *c) GRAPH_RDLOCK_PTR BQL_PTR;

    /*
     * Moving to another AioContext: can_set_aio_ctx checks whether the
     * parent can follow the child to @ctx (false with @errp set if not,
     * e.g. an export with fixed-iothread); set_aio_ctx makes it follow.
     * Called drained; can_set_aio_ctx while the component is collected,
     * under the graph read lock, set_aio_ctx under the write lock.
     */
    bool (*can_set_aio_ctx)(BdrvChild *c, AioContext *ctx, GHashTable *visited,
                            Error **errp) GRAPH_RDLOCK_PTR BQL_PTR;
    void (*set_aio_ctx)(BdrvChild *c, AioContext *ctx, GHashTable *visited)
        GRAPH_WRLOCK_PTR BQL_PTR;
    AioContext *(*get_parent_aio_context)(BdrvChild *c);

    /* Attached to / detached from the child's node; graph write lock. */
    void (*attach)(BdrvChild *c) GRAPH_WRLOCK_PTR BQL_PTR;
    void (*detach)(BdrvChild *c) GRAPH_WRLOCK_PTR BQL_PTR;
};

extern const BdrvChildClass child_of_bds;

struct BdrvChild {
    BlockDriverState * GRAPH_RDLOCK_PTR bs;
    char *name;                     /* immutable: "file", "root", ... */
    const BdrvChildClass *klass;    /* immutable */
    BdrvChildRole role;             /* immutable */
    void *opaque;                   /* immutable: the parent object */

    uint64_t perm TSA_GUARDED_BY(bql);
    uint64_t shared_perm TSA_GUARDED_BY(bql);

    /*
     * This edge has called klass->drained_begin on the parent for the
     * child's current quiesce; drained_end must be called once.
     */
    bool quiesced_parent TSA_GUARDED_BY(bql);

    /* In the parent's children and in bs->parents. */
    QLIST_ENTRY(BdrvChild GRAPH_RDLOCK_PTR) next;
    QLIST_ENTRY(BdrvChild GRAPH_RDLOCK_PTR) next_parent;
};

/* --- Nodes ---------------------------------------------------------------- */

/* A request in flight that others may have to wait for. */
typedef struct BdrvTrackedRequest {
    BlockDriverState *bs;
    int64_t offset;
    int64_t bytes;
    bool serialising;               /* read-modify-write: excludes overlaps */
    bool untracked_write;           /* counted in bs->writes_untracked */
    int64_t overlap_offset;         /* range rounded to request_alignment */
    int64_t overlap_bytes;
    Coroutine *co;
    CoQueue wait_queue;             /* requests waiting for this one */
    QLIST_ENTRY(BdrvTrackedRequest) list;
} BdrvTrackedRequest;

struct BlockDriverState {
    /* Immutable after bdrv_open() returns. */
    const BlockDriver *drv;
    void *opaque;                   /* drv->instance_size bytes */
    char node_name[128];
    char filename[4096];            /* the file's name, for query output */
    bool implicit_name;             /* node_name was generated */
    /* Options came as QMP JSON. */
    bool open_strict_types TSA_GUARDED_BY(bql);
    const char *open_path TSA_GUARDED_BY(bql);  /* key path while opening */

    /* Options as given (normalised), for query-named-block-nodes. */
    struct json_object *options TSA_GUARDED_BY(bql);

    /*
     * BDRV_O_* and read-only: set while opening (the driver may switch to
     * read-only), immutable once bdrv_open() returns; the I/O path reads
     * them in any thread.
     */
    int open_flags;
    bool read_only;
    bool force_share;               /* immutable */
    BlockdevDetectZeroes detect_zeroes; /* immutable */
    BlockLimits bl;                 /* BQL, drained */

    /*
     * Size in bytes.  Written by open and truncate (I/O path, serialised
     * by the truncate's request); read with qatomic_read anywhere.
     */
    int64_t total_bytes;

    /* Home AioContext.  Written drained under the graph write lock, BQL;
     * read with qatomic_read by I/O code. */
    AioContext *aio_context;

    int refcnt TSA_GUARDED_BY(bql);
    bool monitor_owned TSA_GUARDED_BY(bql);     /* blockdev-add's reference */

    /* Topology: graph lock. */
    QLIST_HEAD(, BdrvChild GRAPH_RDLOCK_PTR) children;
    QLIST_HEAD(, BdrvChild GRAPH_RDLOCK_PTR) parents;
    /*
     * The BDRV_CHILD_PRIMARY child or NULL.  Set by bdrv_attach_child()
     * and cleared by bdrv_unref_child(), both under the write lock, like
     * the lists above.
     */
    BdrvChild * GRAPH_RDLOCK_PTR file;

    /* Cumulative permissions taken on this node by its parents. */
    uint64_t total_perm TSA_GUARDED_BY(bql);
    uint64_t total_shared TSA_GUARDED_BY(bql);

    /* Requests in flight in any thread.  atomic; decrement kicks waiters. */
    unsigned in_flight;
    /* Drained sections on this node.  Written in the main loop; atomic. */
    int quiesce_counter;

    /* Serialisation of overlapping read-modify-write requests. */
    BdMutex reqs_lock;
    QLIST_HEAD(, BdrvTrackedRequest) tracked_requests;  /* reqs_lock */
    int serialising_in_flight;      /* atomic; fast path skips the list */
    /*
     * Aligned writes running off the list (block/io/tracked-requests.c):
     * atomic, paired with serialising_in_flight; serialising requests
     * wait on untracked_drained (reqs_lock) until it is 0.
     */
    unsigned writes_untracked;
    CoQueue untracked_drained;      /* reqs_lock */

    /*
     * Flush bookkeeping: write_gen counts completed writes; a flush that
     * started at generation g makes flushed_gen >= g.  A flush that finds
     * write_gen == flushed_gen at its start has nothing to do.  atomic;
     * flushed_gen is written only under flush_lock.
     */
    unsigned write_gen;
    unsigned flushed_gen;
    /*
     * Flushes of this node reach the driver one at a time (block/io/io.c
     * says why).  Held across the driver's flush and the children's, so
     * taken parent before child.
     */
    CoMutex flush_lock;

    /*
     * Dirty bitmaps (block/io/dirty-bitmap.c).  dirty_bitmap_mutex guards the
     * list and every bitmap's bits and size; the list changes only in the
     * main loop.  A leaf lock, never held across a yield.
     * dirty_bitmap_count mirrors the list's length (written under the
     * mutex, read with qatomic_read) so that writes skip the mutex when
     * there is no bitmap.
     */
    BdMutex dirty_bitmap_mutex;
    QLIST_HEAD(, BdrvDirtyBitmap) dirty_bitmaps;    /* dirty_bitmap_mutex */
    int dirty_bitmap_count;                         /* atomic */

    /* In the list of all nodes. */
    QLIST_ENTRY(BlockDriverState TSA_GUARDED_BY(bql)) node_list;
};

/* --- Drivers -------------------------------------------------------------- */

struct BlockDriver {
    /* ---- Immutable description ---- */
    const char *format_name;
    size_t instance_size;
    /* Driver options, beyond the common ones (see bdrv_common_opts). */
    const OptDesc *opts;
    /* Driver has a "file" child that holds its data. */
    bool has_file_child;
    bool is_filter;
    /* Used by the block layer itself: not listed, not for blockdev-add. */
    bool internal;

    /* ---- Global state: main loop, BQL ---- */

    /*
     * Open @bs from checked @options.  Drivers with a file child attach it
     * with bdrv_open_child() (role BDRV_CHILD_PRIMARY), which sets
     * bs->file.  Fails with @errp set; on failure the generic code
     * detaches whatever children were attached.
     */
    int (*bdrv_open)(BlockDriverState *bs, struct json_object *options,
                     int flags, Error **errp) GRAPH_UNLOCKED_PTR BQL_PTR;
    void (*bdrv_close)(BlockDriverState *bs) GRAPH_UNLOCKED_PTR BQL_PTR;

    /*
     * blockdev-create (block/jobs/create.c): the options beyond "driver"
     * (QEMU's BlockdevCreateOptions<driver>), and the creation, in a
     * coroutine in the main loop.  0, or -errno with @errp set.
     */
    const OptDesc *create_opts;
    int coroutine_fn (*bdrv_co_create)(struct json_object *options,
                                       Error **errp)
        GRAPH_UNLOCKED_PTR BQL_PTR;

    /* Permissions this node needs on @c, given what its parents take. */
    void (*bdrv_child_perm)(BlockDriverState *bs, BdrvChild *c,
                            BdrvChildRole role, uint64_t parent_perm,
                            uint64_t parent_shared, uint64_t *nperm,
                            uint64_t *nshared) GRAPH_RDLOCK_PTR BQL_PTR;
    /*
     * Permission update in two phases: check (may take locks, e.g. OFD
     * image locks; fail with @errp), then set or abort.
     */
    int (*bdrv_check_perm)(BlockDriverState *bs, uint64_t perm,
                           uint64_t shared, Error **errp)
        GRAPH_RDLOCK_PTR BQL_PTR;
    void (*bdrv_set_perm)(BlockDriverState *bs, uint64_t perm,
                          uint64_t shared) GRAPH_RDLOCK_PTR BQL_PTR;
    void (*bdrv_abort_perm_update)(BlockDriverState *bs)
        GRAPH_RDLOCK_PTR BQL_PTR;

    void (*bdrv_refresh_limits)(BlockDriverState *bs, Error **errp)
        GRAPH_RDLOCK_PTR BQL_PTR;

    /*
     * The size of child @c changed: update bs->total_bytes if it follows
     * the child's (raw without a size).  The change then propagates to
     * @bs's own parents.  Main loop, graph read lock.
     */
    void (*bdrv_child_resized)(BlockDriverState *bs, BdrvChild *c)
        GRAPH_RDLOCK_PTR BQL_PTR;

    /* Moving between AioContexts (drained, write lock). */
    void (*bdrv_detach_aio_context)(BlockDriverState *bs)
        GRAPH_WRLOCK_PTR BQL_PTR;
    void (*bdrv_attach_aio_context)(BlockDriverState *bs, AioContext *ctx)
        GRAPH_WRLOCK_PTR BQL_PTR;

    /* Bytes the image occupies on its storage, or -errno. */
    int64_t (*bdrv_get_allocated_file_size)(BlockDriverState *bs)
        GRAPH_RDLOCK_PTR BQL_PTR;

    /* Driver-specific query fields (add to @info). */
    void (*bdrv_query_info)(BlockDriverState *bs, struct json_object *info)
        GRAPH_RDLOCK_PTR BQL_PTR;

    /* ---- I/O: coroutines in any AioContext; -errno on failure ---- */

    int coroutine_fn (*bdrv_co_preadv)(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVec *qiov,
                                       BdrvRequestFlags flags)
        GRAPH_RDLOCK_PTR;
    int coroutine_fn (*bdrv_co_pwritev)(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, IOVec *qiov,
                                        BdrvRequestFlags flags)
        GRAPH_RDLOCK_PTR;
    /* Flags the driver handles itself in writes (e.g. BDRV_REQ_FUA). */
    BdrvRequestFlags supported_write_flags;
    int coroutine_fn (*bdrv_co_pwrite_zeroes)(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
        GRAPH_RDLOCK_PTR;
    BdrvRequestFlags supported_zero_flags;
    int coroutine_fn (*bdrv_co_pdiscard)(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes) GRAPH_RDLOCK_PTR;
    /* Flush the driver's own caches to the OS / the OS's to the disk. */
    int coroutine_fn (*bdrv_co_flush_to_os)(BlockDriverState *bs)
        GRAPH_RDLOCK_PTR;
    int coroutine_fn (*bdrv_co_flush_to_disk)(BlockDriverState *bs)
        GRAPH_RDLOCK_PTR;
    /*
     * Status of [offset, offset + bytes): BDRV_BLOCK_* flags; *pnum bytes
     * share it (at least 1, at most @bytes); *map and *file are set with
     * BDRV_BLOCK_OFFSET_VALID.
     */
    int coroutine_fn (*bdrv_co_block_status)(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
        GRAPH_RDLOCK_PTR;
    int coroutine_fn (*bdrv_co_truncate)(BlockDriverState *bs, int64_t offset,
                                         bool exact, Error **errp)
        GRAPH_RDLOCK_PTR;
    /* Current length, for drivers whose size can change underneath. */
    int64_t coroutine_fn (*bdrv_co_getlength)(BlockDriverState *bs)
        GRAPH_RDLOCK_PTR;
};

/* Register a driver; main thread, before any node is opened. */
void bdrv_register(const BlockDriver *drv) TSA_REQUIRES(bql);
const BlockDriver *bdrv_find_driver(const char *name) TSA_REQUIRES(bql);

/* Options every node takes (driver, node-name, read-only, cache, ...). */
extern const OptDesc bdrv_common_opts[];

/*
 * Open (or reference) the child @name of @parent from @options' value for
 * it: a node name (a new reference to that node) or an object (a nested
 * definition, opened now, owned by the edge).  A child with the role
 * BDRV_CHILD_PRIMARY becomes @parent->file (see bdrv_attach_child()).
 * Main loop.
 */
BdrvChild *bdrv_open_child(struct json_object *options, const char *name,
                           BlockDriverState *parent, BdrvChildRole role,
                           bool allow_none, Error **errp) GRAPH_UNLOCKED
    TSA_REQUIRES(bql);

/*
 * Recompute the permissions of @bs and its subtree from its parents' edges,
 * where @new_edge (may be NULL) asks for @perm/@shared instead of what it
 * holds.  All or nothing: on failure nothing changed.  Main loop.
 */
int bdrv_refresh_perms(BlockDriverState *bs, BdrvChild *new_edge,
                       uint64_t perm, uint64_t shared, Error **errp)
    GRAPH_RDLOCK TSA_REQUIRES(bql);

/*
 * bdrv_open() for nodes the block layer creates itself (a job's filter):
 * without "node-name" in @options the node gets an implicit name
 * ("#block123"), as QEMU's implicit nodes do.  Main loop.
 */
BlockDriverState *bdrv_open_implicit(struct json_object *options,
                                     Error **errp) GRAPH_UNLOCKED
    TSA_REQUIRES(bql);

/* Default permissions for the child of a node that passes I/O through. */
void bdrv_default_perms(BlockDriverState *bs, BdrvChild *c,
                        BdrvChildRole role, uint64_t parent_perm,
                        uint64_t parent_shared, uint64_t *nperm,
                        uint64_t *nshared) GRAPH_RDLOCK;

/*
 * Callbacks for filters, whose "file" child (bs->file) holds the data at
 * the same offsets (block/drivers/filter.c): limits copied from the child (the
 * _bytes variant with request_alignment 1, forwarding unaligned ranges
 * for the child to pad), reads forwarded, block status "ask my file",
 * the child's length.
 */
void bdrv_filter_refresh_limits(BlockDriverState *bs, Error **errp)
    GRAPH_RDLOCK;
void bdrv_filter_refresh_limits_bytes(BlockDriverState *bs, Error **errp)
    GRAPH_RDLOCK;
int coroutine_fn bdrv_filter_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, IOVec *qiov,
                                       BdrvRequestFlags flags) GRAPH_RDLOCK;
int coroutine_fn bdrv_filter_co_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
    GRAPH_RDLOCK;
int64_t coroutine_fn bdrv_filter_co_getlength(BlockDriverState *bs)
    GRAPH_RDLOCK;

/*
 * Drop a reference under the graph write lock: the unref runs when
 * bdrv_graph_wrunlock() releases the lock (which calls
 * bdrv_run_pending_unrefs()).  Main loop.
 */
void bdrv_schedule_unref(BlockDriverState *bs) TSA_REQUIRES(bql);
void bdrv_run_pending_unrefs(void) GRAPH_UNLOCKED TSA_REQUIRES(bql);

/*
 * Run @entry(opaque) in a coroutine in @ctx and wait for it, from the main
 * loop (a plain AIO_WAIT_WHILE: deferred work does not run meanwhile).
 * The coroutine takes whatever locks it needs.
 */
void bdrv_run_co(AioContext *ctx, CoroutineEntry *entry, void *opaque)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);
/* The same for a coroutine function with a result, which it returns. */
typedef int coroutine_fn BdrvCoFn(void *opaque);
int bdrv_run_co_ret(AioContext *ctx, BdrvCoFn *fn, void *opaque)
    GRAPH_UNLOCKED TSA_REQUIRES(bql);

/*
 * Iterate over every node, those being closed included: for drains and
 * flushes of everything.  Main loop.
 */
BlockDriverState *bdrv_next_node_all(BlockDriverState *bs) TSA_REQUIRES(bql);

/* Counting of requests (block/io/io.c); any thread. */
void bdrv_inc_in_flight(BlockDriverState *bs);
void bdrv_dec_in_flight(BlockDriverState *bs);

#endif /* BLOCK_INT_H */
