/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block graph: drivers, the node registry, opening nodes from blockdev
 * definitions, edges (BdrvChild), node replacement.  Permissions are in
 * block/graph/permission.c, moving subtrees between AioContexts in
 * block/graph/aio-context.c, queries in block/graph/query.c.
 *
 * Everything here is main-loop code (GLOBAL_STATE_CODE).  Topology changes
 * happen only under the graph write lock (bdrv_child_set_bs() asserts it),
 * and every edge added or moved has its permissions checked for the whole
 * subtree below it before anything is committed.
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/graph/drain.h"
#include "block/drivers/drivers.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/id.h"
#include "util/coroutine.h"
#include "util/log.h"
#include "util/main-loop.h"

static QLIST_HEAD(, BlockDriverState TSA_GUARDED_BY(bql)) all_nodes =
    QLIST_HEAD_INITIALIZER;
static GPtrArray *drivers;          /* BQL; registered at start-up */
static unsigned implicit_node_index;    /* BQL */

const char *const bdrv_detect_zeroes_names[] = { "off", "on", "unmap", NULL };
static const char *const discard_names[] = { "ignore", "unmap", NULL };

static const OptDesc cache_opts[] = {
    { "direct", OPT_BOOL, .def = "off",
      .help = "bypass the host page cache (O_DIRECT)" },
    { "no-flush", OPT_BOOL, .def = "off",
      .help = "ignore flush requests (unsafe)" },
    { NULL }
};

const OptDesc bdrv_common_opts[] = {
    { "driver", OPT_STRING, .required = true, .help = "block driver" },
    { "node-name", OPT_STRING, .help = "name of the node" },
    { "read-only", OPT_BOOL, .def = "off", .help = "open read-only" },
    { "auto-read-only", OPT_BOOL, .def = "off",
      .help = "fall back to read-only if read-write is refused" },
    { "discard", OPT_ENUM, .enum_values = discard_names, .def = "ignore",
      .help = "pass discard requests down (unmap) or ignore them" },
    { "cache", OPT_OBJECT, .nested = cache_opts, .help = "cache modes" },
    { "detect-zeroes", OPT_ENUM, .enum_values = bdrv_detect_zeroes_names,
      .def = "off", .help = "turn writes of zeroes into write-zeroes" },
    { "force-share", OPT_BOOL, .def = "off",
      .help = "share all permissions (read-only nodes only)" },
    { NULL }
};

/* --- Drivers ------------------------------------------------------------- */

void bdrv_register(const BlockDriver *drv)
{
    GLOBAL_STATE_CODE();
    if (!drivers) {
        drivers = g_ptr_array_new();
    }
    g_ptr_array_add(drivers, (gpointer)drv);
}

const BlockDriver *bdrv_find_driver(const char *name)
{
    for (guint i = 0; drivers && i < drivers->len; i++) {
        const BlockDriver *drv = g_ptr_array_index(drivers, i);

        if (!strcmp(drv->format_name, name)) {
            return drv;
        }
    }
    return NULL;
}

const OptDesc *bdrv_driver_opts(const char *name)
{
    const BlockDriver *drv;

    if (!name) {
        return bdrv_common_opts;
    }
    drv = bdrv_find_driver(name);
    return drv ? drv->opts : NULL;
}

const OptDesc *bdrv_driver_create_opts(const char *name)
{
    const BlockDriver *drv = bdrv_find_driver(name);

    return drv && drv->bdrv_co_create ? drv->create_opts : NULL;
}

const char *const *bdrv_driver_names(void)
{
    static const char **names;

    GLOBAL_STATE_CODE();
    if (!names) {
        guint n = 0;

        names = g_new0(const char *, drivers->len + 1);
        for (guint i = 0; i < drivers->len; i++) {
            const BlockDriver *drv = drivers->pdata[i];

            if (!drv->internal) {
                names[n++] = drv->format_name;
            }
        }
    }
    return names;
}

void bdrv_init(void)
{
    static bool done;

    GLOBAL_STATE_CODE();
    if (done) {
        return;
    }
    done = true;
    bdrv_graph_init();
    bdrv_file_init();
    bdrv_register(&bdrv_file);
    bdrv_register(&bdrv_raw);
    bdrv_register(&bdrv_null_co);
    bdrv_register(&bdrv_blkdebug);
    bdrv_register(&bdrv_mirror_top);
    bdrv_register(&bdrv_copy_before_write);
}

/* --- Node registry ------------------------------------------------------- */

BlockDriverState *bdrv_find_node(const char *node_name)
{
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    QLIST_FOREACH(bs, &all_nodes, node_list) {
        /* A node being closed (its close waits) is gone for users. */
        if (bs->refcnt > 0 && !strcmp(bs->node_name, node_name)) {
            return bs;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_next_node_all(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    return bs ? QLIST_NEXT(bs, node_list) : QLIST_FIRST(&all_nodes);
}

BlockDriverState *bdrv_next_node(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    do {
        bs = bdrv_next_node_all(bs);
    } while (bs && bs->refcnt == 0);
    return bs;
}

BlockDriverState *bdrv_lookup_bs(const char *device, const char *node_name,
                                 Error **errp)
{
    BlockDriverState *bs = NULL;

    GLOBAL_STATE_CODE();
    if (device) {
        bs = bdrv_find_node(device);
    }
    if (!bs && node_name) {
        bs = bdrv_find_node(node_name);
    }
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   device ? device : "", node_name ? node_name : "");
    }
    return bs;
}

bool bdrv_is_root_node(BlockDriverState *bs)
{
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    bdrv_graph_rdlock_main_loop();
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        if (c->klass->parent_is_bds) {
            bdrv_graph_rdunlock_main_loop();
            return false;
        }
    }
    bdrv_graph_rdunlock_main_loop();
    return true;
}

bool bdrv_is_monitor_owned(BlockDriverState *bs)
{
    return bs->monitor_owned;
}

void bdrv_set_monitor_owned(BlockDriverState *bs, bool owned)
{
    GLOBAL_STATE_CODE();
    bs->monitor_owned = owned;
}

bool bdrv_has_parents(BlockDriverState *bs)
{
    return !QLIST_EMPTY(&bs->parents);
}

bool bdrv_is_read_only(BlockDriverState *bs)
{
    return bs->read_only;
}

const char *bdrv_get_node_name(BlockDriverState *bs)
{
    return bs->node_name;
}

AioContext *bdrv_get_aio_context(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    return bs->aio_context;
}

/*
 * Node names follow id_wellformed(); their length (at most
 * BDRV_NODE_NAME_MAX) is checked apart, after duplicates, for QEMU's
 * "Node name too long".
 */
#define BDRV_NODE_NAME_MAX 31

/* --- Edges ---------------------------------------------------------------- */

/*
 * Point @c at @new_bs (either may be NULL), keeping the drain invariant:
 * a parent is quiesced exactly while its child is drained.
 */
static void bdrv_child_set_bs(BdrvChild *c, BlockDriverState *new_bs)
    GRAPH_WRLOCK TSA_REQUIRES(bql)
{
    BlockDriverState *old_bs = c->bs;

    assert_bdrv_graph_writable();
    if (old_bs) {
        if (c->klass->detach) {
            c->klass->detach(c);
        }
        QLIST_REMOVE(c, next_parent);
        if (qatomic_read(&old_bs->quiesce_counter) &&
            !(new_bs && qatomic_read(&new_bs->quiesce_counter))) {
            bdrv_parent_drained_end_single(c);
        }
    }
    c->bs = new_bs;
    if (new_bs) {
        QLIST_INSERT_HEAD(&new_bs->parents, c, next_parent);
        if (qatomic_read(&new_bs->quiesce_counter)) {
            bdrv_parent_drained_begin_single(c);
        }
        if (c->klass->attach) {
            c->klass->attach(c);
        }
    }
}

BdrvChild *bdrv_root_attach_child(BlockDriverState *child_bs,
                                  const char *child_name,
                                  const BdrvChildClass *child_class,
                                  BdrvChildRole role, uint64_t perm,
                                  uint64_t shared_perm, void *opaque,
                                  Error **errp)
{
    BdrvChild *c = g_new0(BdrvChild, 1);

    GLOBAL_STATE_CODE();
    c->name = g_strdup(child_name);
    c->klass = child_class;
    c->role = role;
    c->opaque = opaque;

    /* Check with the edge in place but no permissions, then take them. */
    bdrv_child_set_bs(c, child_bs);
    if (bdrv_refresh_perms(child_bs, c, perm, shared_perm, errp) < 0) {
        bdrv_child_set_bs(c, NULL);
        g_free(c->name);
        g_free(c);
        return NULL;
    }
    bdrv_ref(child_bs);
    return c;
}

static char *child_of_bds_desc(BdrvChild *c)
{
    BlockDriverState *parent = c->opaque;

    return g_strdup_printf("node '%s'", parent->node_name);
}

static void GRAPH_RDLOCK child_of_bds_drained_begin(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    bdrv_do_drained_begin_quiesce(c->opaque);
}

static bool GRAPH_RDLOCK child_of_bds_drained_poll(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    return bdrv_drain_poll(c->opaque);
}

static void GRAPH_RDLOCK child_of_bds_drained_end(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    bdrv_do_drained_end(c->opaque);
}

/* The child's size changed: the parent may follow, and tell its parents. */
static void GRAPH_RDLOCK child_of_bds_resize(BdrvChild *c)
{
    BlockDriverState *parent = c->opaque;
    int64_t old_size = bdrv_get_total_bytes(parent);
    BdrvChild *p;

    GLOBAL_STATE_CODE();
    if (!parent->drv->bdrv_child_resized) {
        return;
    }
    parent->drv->bdrv_child_resized(parent, c);
    if (bdrv_get_total_bytes(parent) == old_size) {
        return;
    }
    bdrv_dirty_bitmap_truncate(parent, bdrv_get_total_bytes(parent));
    QLIST_FOREACH(p, &parent->parents, next_parent) {
        if (p->klass->resize) {
            p->klass->resize(p);
        }
    }
}

static AioContext *child_of_bds_get_parent_ctx(BdrvChild *c)
{
    BlockDriverState *parent = c->opaque;

    return parent->aio_context;
}

const BdrvChildClass child_of_bds = {
    .parent_is_bds = true,
    .get_parent_desc = child_of_bds_desc,
    .drained_begin = child_of_bds_drained_begin,
    .drained_poll = child_of_bds_drained_poll,
    .drained_end = child_of_bds_drained_end,
    .resize = child_of_bds_resize,
    .get_parent_aio_context = child_of_bds_get_parent_ctx,
};

BdrvChild *bdrv_attach_child(BlockDriverState *parent_bs,
                             BlockDriverState *child_bs,
                             const char *child_name, BdrvChildRole role,
                             Error **errp)
{
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    if (child_bs->aio_context != parent_bs->aio_context) {
        /*
         * A parent still being opened (no users yet, so no I/O can reach
         * it) simply joins its child's iothread, as when a filter is
         * opened on top of a node that runs in an iothread.
         */
        if (!QLIST_EMPTY(&parent_bs->parents) || parent_bs->refcnt > 1) {
            error_setg(errp, "Cannot attach node '%s' to node '%s': they "
                       "are in different iothreads", child_bs->node_name,
                       parent_bs->node_name);
            return NULL;
        }
        if (parent_bs->drv->bdrv_detach_aio_context) {
            parent_bs->drv->bdrv_detach_aio_context(parent_bs);
        }
        qatomic_set(&parent_bs->aio_context, child_bs->aio_context);
        if (parent_bs->drv->bdrv_attach_aio_context) {
            parent_bs->drv->bdrv_attach_aio_context(parent_bs,
                                                    child_bs->aio_context);
        }
    }
    /*
     * Attach taking nothing, then let the parent's driver say what the
     * edge needs, given the parent's own users.
     */
    c = bdrv_root_attach_child(child_bs, child_name, &child_of_bds, role,
                               0, BLK_PERM_ALL, parent_bs, errp);
    if (!c) {
        return NULL;
    }
    QLIST_INSERT_HEAD(&parent_bs->children, c, next);
    if (bdrv_refresh_perms(parent_bs, NULL, 0, 0, errp) < 0) {
        QLIST_REMOVE(c, next);
        bdrv_root_unref_child(c);
        return NULL;
    }
    if (role & BDRV_CHILD_PRIMARY) {
        /* Topology: set here, under the write lock, as it is cleared. */
        assert(!parent_bs->file);
        parent_bs->file = c;
    }
    return c;
}

void bdrv_root_unref_child(BdrvChild *c)
{
    BlockDriverState *bs = c->bs;

    GLOBAL_STATE_CODE();
    bdrv_child_set_bs(c, NULL);
    if (bs) {
        Error *local_err = NULL;

        /* Dropping permissions only releases locks: it should not fail. */
        if (bdrv_refresh_perms(bs, NULL, 0, 0, &local_err) < 0) {
            warn_report_err(local_err);
        }
    }
    g_free(c->name);
    g_free(c);
    /* Closing the node would take the write lock we hold: defer. */
    bdrv_schedule_unref(bs);
}

/*
 * References dropped under the graph write lock, released by
 * bdrv_graph_wrunlock() once the lock is free.  BQL
 */
static GPtrArray *pending_unrefs;

void bdrv_schedule_unref(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    if (!bs) {
        return;
    }
    if (!pending_unrefs) {
        pending_unrefs = g_ptr_array_new();
    }
    g_ptr_array_add(pending_unrefs, bs);
}

void bdrv_run_pending_unrefs(void)
{
    GLOBAL_STATE_CODE();
    while (pending_unrefs && pending_unrefs->len) {
        BlockDriverState *bs = g_ptr_array_steal_index(pending_unrefs, 0);

        bdrv_unref(bs);
    }
}

void bdrv_unref_child(BlockDriverState *parent, BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    if (parent->file == c) {
        parent->file = NULL;
    }
    QLIST_REMOVE(c, next);
    bdrv_root_unref_child(c);
}

/* --- Opening -------------------------------------------------------------- */

static BlockDriverState *bdrv_open_internal(struct json_object *options,
                                            const char *path, bool strict,
                                            bool is_root, Error **errp);

/*
 * A nested definition takes the parent's read-only, auto-read-only,
 * discard and cache settings unless it says otherwise, as in QEMU: a raw
 * node opened with cache.direct=on wants its file opened with O_DIRECT.
 */
static void inherit_options(struct json_object *parent_opts,
                            struct json_object *child_opts)
{
    static const char *const inherited[] = {
        "read-only", "auto-read-only", "discard",
    };
    struct json_object *val, *pcache, *ccache;

    for (size_t i = 0; i < G_N_ELEMENTS(inherited); i++) {
        if (!json_object_object_get_ex(child_opts, inherited[i], NULL) &&
            json_object_object_get_ex(parent_opts, inherited[i], &val)) {
            json_object_object_add(child_opts, inherited[i],
                                   json_object_get(val));
        }
    }
    if (!json_object_object_get_ex(parent_opts, "cache", &pcache) ||
        !json_object_is_type(pcache, json_type_object)) {
        return;
    }
    if (!json_object_object_get_ex(child_opts, "cache", &ccache)) {
        json_object_object_add(child_opts, "cache",
                               json_object_get(pcache));
        return;
    }
    if (!json_object_is_type(ccache, json_type_object)) {
        return;     /* the child's own check reports the type error */
    }
    json_object_object_foreach(pcache, key, pval) {
        if (!json_object_object_get_ex(ccache, key, NULL)) {
            json_object_object_add(ccache, key, json_object_get(pval));
        }
    }
}

BdrvChild *bdrv_open_child(struct json_object *options, const char *name,
                           BlockDriverState *parent, BdrvChildRole role,
                           bool allow_none, Error **errp)
{
    struct json_object *ref = NULL;
    BlockDriverState *child_bs;
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    if (!json_object_object_get_ex(options, name, &ref) || !ref) {
        if (!allow_none) {
            error_setg(errp, "'%s': missing required parameter", name);
        }
        return NULL;
    }
    if (json_object_is_type(ref, json_type_string)) {
        const char *node_name = json_object_get_string(ref);

        child_bs = bdrv_find_node(node_name);
        if (!child_bs) {
            error_setg(errp, "'%s': no node named '%s'", name, node_name);
            return NULL;
        }
        bdrv_ref(child_bs);
    } else if (json_object_is_type(ref, json_type_object)) {
        inherit_options(parent->options, ref);
        /* Checked as strictly as its parent, named by its key path. */
        g_autofree char *path = parent->open_path && *parent->open_path ?
            g_strdup_printf("%s.%s", parent->open_path, name) :
            g_strdup(name);

        child_bs = bdrv_open_internal(ref, path, parent->open_strict_types,
                                      false, errp);
        if (!child_bs) {
            return NULL;
        }
    } else {
        error_setg(errp, "'%s': expected node name or object", name);
        return NULL;
    }

    bdrv_graph_wrlock();
    c = bdrv_attach_child(parent, child_bs, name, role, errp);
    bdrv_graph_wrunlock();
    /* The edge holds its own reference; drop the one from above. */
    bdrv_unref(child_bs);
    if (c && (role & BDRV_CHILD_PRIMARY)) {
        g_strlcpy(parent->filename, child_bs->filename,
                  sizeof(parent->filename));
    }
    return c;
}

static void bdrv_detach_children(BlockDriverState *bs) TSA_REQUIRES(bql)
{
    BdrvChild *c, *next;

    bdrv_graph_wrlock();
    QLIST_FOREACH_SAFE(c, &bs->children, next, next) {
        bdrv_unref_child(bs, c);
    }
    bdrv_graph_wrunlock();
}

static void bdrv_free(BlockDriverState *bs) TSA_REQUIRES(bql)
{
    bdrv_release_all_dirty_bitmaps(bs);
    bd_mutex_destroy(&bs->dirty_bitmap_mutex);
    bd_mutex_destroy(&bs->reqs_lock);
    co_mutex_destroy(&bs->flush_lock);
    json_object_put(bs->options);
    g_free(bs->opaque);
    g_free(bs);
}

static BlockDriverState *bdrv_open_internal(struct json_object *options,
                                            const char *path, bool strict,
                                            bool is_root, Error **errp)
{
    const OptDesc *schemas[3] = { bdrv_common_opts, NULL, NULL };
    const BlockDriver *drv;
    struct json_object *val, *cache;
    const char *driver, *node_name;
    BlockDriverState *bs;
    Error *local_err = NULL;
    int flags = 0;
    int ret;

    GLOBAL_STATE_CODE();
    if (!json_object_object_get_ex(options, "driver", &val) ||
        !json_object_is_type(val, json_type_string)) {
        error_setg(errp, "'%s%sdriver': missing required parameter",
                   path, *path ? "." : "");
        return NULL;
    }
    driver = json_object_get_string(val);
    drv = bdrv_find_driver(driver);
    if (!drv) {
        g_autofree char *names = g_strjoinv("', '",
                                            (char **)bdrv_driver_names());

        error_setg(errp, "'%s%sdriver': expected one of '%s'", path,
                   *path ? "." : "", names);
        return NULL;
    }
    schemas[1] = drv->opts;
    if (!opts_check(options, schemas, path, strict ? OPTS_STRICT_TYPES : 0,
                    errp)) {
        return NULL;
    }

    node_name = opts_get_str(options, "node-name");
    if (!node_name && is_root) {
        error_setg(errp, "'node-name' must be specified for the root node");
        return NULL;
    }
    if (node_name && !id_wellformed(node_name)) {
        error_setg(errp, "Invalid node-name: '%s'", node_name);
        return NULL;
    }
    if (node_name && bdrv_find_node(node_name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", node_name);
        return NULL;
    }
    if (node_name && strlen(node_name) > BDRV_NODE_NAME_MAX) {
        error_setg(errp, "Node name too long");
        return NULL;
    }

    bs = g_new0(BlockDriverState, 1);
    bs->drv = drv;
    bs->opaque = g_malloc0(MAX(drv->instance_size, 1));
    bs->refcnt = 1;
    bs->aio_context = main_context();
    bs->quiesce_counter = bdrv_drain_all_count;
    bs->bl.request_alignment = 1;
    bd_mutex_init(&bs->reqs_lock);
    bd_mutex_init(&bs->dirty_bitmap_mutex);
    QLIST_INIT(&bs->dirty_bitmaps);
    co_mutex_init(&bs->flush_lock);
    /* children and parents: empty from g_new0(), not written unlocked. */
    QLIST_INIT(&bs->tracked_requests);
    co_queue_init(&bs->untracked_drained);
    bs->options = json_object_get(options);
    if (node_name) {
        g_strlcpy(bs->node_name, node_name, sizeof(bs->node_name));
    } else {
        snprintf(bs->node_name, sizeof(bs->node_name), "#block%03u",
                 implicit_node_index++);
        bs->implicit_name = true;
    }

    bs->read_only = opts_get_bool(options, "read-only", false);
    if (!bs->read_only) {
        flags |= BDRV_O_RDWR;
    }
    if (opts_get_bool(options, "auto-read-only", false)) {
        flags |= BDRV_O_AUTO_RDONLY;
    }
    if (opts_get_enum(options, "discard", discard_names, 0) == 1) {
        flags |= BDRV_O_UNMAP;
    }
    if (json_object_object_get_ex(options, "cache", &cache)) {
        if (opts_get_bool(cache, "direct", false)) {
            flags |= BDRV_O_NOCACHE;
        }
        if (opts_get_bool(cache, "no-flush", false)) {
            flags |= BDRV_O_NO_FLUSH;
        }
    }
    bs->detect_zeroes = opts_get_enum(options, "detect-zeroes",
                                      bdrv_detect_zeroes_names,
                                      BDRV_DETECT_ZEROES_OFF);
    if (bs->detect_zeroes == BDRV_DETECT_ZEROES_UNMAP &&
        !(flags & BDRV_O_UNMAP)) {
        error_setg(errp, "setting detect-zeroes to unmap is not allowed "
                   "without setting discard operation to unmap");
        goto fail;
    }
    bs->force_share = opts_get_bool(options, "force-share", false);
    if (bs->force_share && !bs->read_only) {
        error_setg(errp, "force-share=on can only be used with "
                   "read-only images");
        goto fail;
    }
    bs->open_flags = flags;

    bs->open_strict_types = strict;
    bs->open_path = path;
    ret = drv->bdrv_open(bs, options, flags, &local_err);
    bs->open_path = NULL;
    if (ret < 0) {
        error_propagate(errp, local_err);
        bdrv_detach_children(bs);
        goto fail;
    }
    /* The driver may have switched to read-only (auto-read-only). */
    bs->open_flags = (bs->open_flags & ~BDRV_O_RDWR) |
                     (bs->read_only ? 0 : BDRV_O_RDWR);

    bdrv_graph_rdlock_main_loop();
    if (drv->bdrv_refresh_limits) {
        drv->bdrv_refresh_limits(bs, &local_err);
    }
    bdrv_graph_rdunlock_main_loop();
    if (local_err) {
        error_propagate(errp, local_err);
        if (drv->bdrv_close) {
            drv->bdrv_close(bs);
        }
        bdrv_detach_children(bs);
        goto fail;
    }
    QLIST_INSERT_HEAD(&all_nodes, bs, node_list);
    return bs;

fail:
    bdrv_free(bs);
    return NULL;
}

BlockDriverState *bdrv_open(struct json_object *options, bool strict_types,
                            Error **errp)
{
    GLOBAL_STATE_CODE();
    return bdrv_open_internal(options, "", strict_types, true, errp);
}

BlockDriverState *bdrv_open_implicit(struct json_object *options,
                                     Error **errp)
{
    GLOBAL_STATE_CODE();
    return bdrv_open_internal(options, "", true, false, errp);
}

void bdrv_ref(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    bs->refcnt++;
}

static void bdrv_close(BlockDriverState *bs) TSA_REQUIRES(bql)
{
    bdrv_graph_rdlock_main_loop();
    assert(QLIST_EMPTY(&bs->parents));
    bdrv_graph_rdunlock_main_loop();
    bdrv_drained_begin(bs);
    if (bs->drv->bdrv_close) {
        bs->drv->bdrv_close(bs);
    }
    bdrv_drained_end(bs);
    bdrv_detach_children(bs);
}

void bdrv_unref(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    if (!bs) {
        return;
    }
    assert(bs->refcnt > 0);
    if (--bs->refcnt > 0) {
        return;
    }
    /*
     * Whoever waits in the main loop finds its nodes alive afterwards
     * because the work that frees nodes is deferred to safe points
     * (util/aio-wait.h).  A node freed inside someone's wait is the bug
     * the rule exists for: say so here, not as a use-after-free later.
     */
    if (!aio_wait_at_safe_point()) {
        error_report("node '%s' freed inside a main-loop wait: the work that "
                     "dropped it must be deferred", bs->node_name);
        abort();
    }
    bdrv_close(bs);
    QLIST_REMOVE(bs, node_list);
    assert(!qatomic_read(&bs->in_flight));
    bdrv_free(bs);
}

/* --- Replacing a node ----------------------------------------------------- */

int bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                      Error **errp)
{
    g_autoptr(GPtrArray) moved = g_ptr_array_new();
    BdrvChild *c, *next;
    int ret = 0;

    GLOBAL_STATE_CODE();
    if (from->aio_context != to->aio_context) {
        error_setg(errp, "Cannot replace node '%s' by '%s': they are in "
                   "different iothreads", from->node_name, to->node_name);
        return -EINVAL;
    }
    bdrv_ref(from);
    bdrv_drained_begin(from);
    bdrv_drained_begin(to);
    bdrv_graph_wrlock();

    /*
     * Move every parent edge except those of @to itself (a filter
     * inserted above @from keeps its child).
     */
    QLIST_FOREACH_SAFE(c, &from->parents, next_parent, next) {
        if (c->klass->parent_is_bds && c->opaque == to) {
            continue;
        }
        bdrv_child_set_bs(c, to);
        g_ptr_array_add(moved, c);
    }
    ret = bdrv_refresh_perms(to, NULL, 0, 0, errp);
    if (ret < 0) {
        for (guint i = 0; i < moved->len; i++) {
            bdrv_child_set_bs(moved->pdata[i], from);
        }
    } else {
        /* Edges hold references to their nodes. */
        for (guint i = 0; i < moved->len; i++) {
            bdrv_ref(to);
        }
        Error *local_err = NULL;

        if (bdrv_refresh_perms(from, NULL, 0, 0, &local_err) < 0) {
            warn_report_err(local_err);
        }
    }

    bdrv_graph_wrunlock();
    bdrv_drained_end(to);
    bdrv_drained_end(from);
    if (ret == 0) {
        for (guint i = 0; i < moved->len; i++) {
            bdrv_unref(from);
        }
    }
    bdrv_unref(from);
    return ret;
}

/* --- Running coroutines from the main loop -------------------------------- */

typedef struct RunCo {
    CoroutineEntry *entry;      /* one of the two */
    BdrvCoFn *fn;
    void *opaque;
    int ret;                    /* @fn's result */
    int done;                   /* atomic: written last by the coroutine */
} RunCo;

static void coroutine_fn run_co_entry(void *opaque)
{
    RunCo *r = opaque;

    if (r->fn) {
        r->ret = r->fn(r->opaque);
    } else {
        r->entry(r->opaque);
    }
    /*
     * Pairs with the load-acquire in bdrv_run_co(): what @entry wrote
     * (results, an Error) is visible to the caller once it sees done.
     */
    qatomic_store_release(&r->done, 1);
    /* @r may be gone now: the waiter can return as soon as it sees done. */
    aio_wait_kick();
}

static void bdrv_run_co_wait(AioContext *ctx, RunCo *r)
{
    GLOBAL_STATE_CODE();
    aio_co_enter(ctx, co_create(run_co_entry, r));
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&r->done));
}

void bdrv_run_co(AioContext *ctx, CoroutineEntry *entry, void *opaque)
{
    RunCo r = { .entry = entry, .opaque = opaque };

    bdrv_run_co_wait(ctx, &r);
}

int bdrv_run_co_ret(AioContext *ctx, BdrvCoFn *fn, void *opaque)
{
    RunCo r = { .fn = fn, .opaque = opaque };

    bdrv_run_co_wait(ctx, &r);
    return r.ret;
}

static int coroutine_fn flush_co(void *opaque)
{
    int ret;

    bdrv_graph_co_rdlock();
    ret = bdrv_co_flush(opaque);
    bdrv_graph_co_rdunlock();
    return ret;
}

int bdrv_flush_all(void)
{
    BlockDriverState *bs = NULL;
    int result = 0;

    GLOBAL_STATE_CODE();
    while ((bs = bdrv_next_node_all(bs))) {
        int ret = bdrv_run_co_ret(bs->aio_context, flush_co, bs);

        if (ret < 0 && result == 0) {
            result = ret;
        }
    }
    return result;
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    return bdrv_get_total_bytes(bs);
}

typedef struct TruncateCo {
    BlockBackend *blk;
    int64_t offset;
    Error **errp;
} TruncateCo;

static int coroutine_fn truncate_co(void *opaque)
{
    TruncateCo *t = opaque;

    return blk_co_truncate(t->blk, t->offset, t->errp);
}

int bdrv_truncate(BlockDriverState *bs, int64_t offset, Error **errp)
{
    TruncateCo t = { .offset = offset, .errp = errp };
    int ret;

    GLOBAL_STATE_CODE();
    t.blk = blk_new("block_resize", bs->aio_context, BLK_PERM_RESIZE,
                    BLK_PERM_ALL);
    blk_set_allow_aio_context_change(t.blk, true);
    ret = blk_insert_bs(t.blk, bs, errp);
    if (ret == 0) {
        ret = bdrv_run_co_ret(bs->aio_context, truncate_co, &t);
    }
    blk_unref(t.blk);
    return ret;
}
