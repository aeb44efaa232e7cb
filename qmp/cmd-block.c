/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands on block nodes: blockdev-add, blockdev-del,
 * query-named-block-nodes, x-blockdev-set-iothread, block_resize and
 * query-blockstats, with QEMU's argument names, error classes and, where
 * clients match on them, QEMU's messages.  Also the hidden
 * x-query-command-args, which lists every command's argument schema so
 * that a test can keep docs/qmp.md in step with the tables.
 *
 * Ownership: blockdev-add's node belongs to the monitor (one reference,
 * bdrv_set_monitor_owned()); blockdev-del gives it back, refusing nodes it
 * does not own and nodes that anything else still uses, so that deleting
 * never pulls a node from under a parent.  Implicit children of nested
 * definitions are owned by their parent's edges and vanish with it.
 *
 * blockdev-add's arguments are a blockdev definition that bdrv_open()
 * checks itself (driver, common and driver options, nested children).
 * The command's schema is built at start-up as the union of the common
 * options and every driver's, without defaults: the dispatcher's check
 * then refuses keys no driver knows and converts keyval strings at the top
 * level, and bdrv_open() does the exact per-driver check, with the
 * strictness the arguments were checked with (qmp_current_opts_flags():
 * strict types for QMP JSON, string conversions for command-line keyval),
 * which it applies to nested definitions as well.
 *
 * Every handler either succeeds or changes nothing.  Main-loop code
 * throughout (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/create.h"
#include "qmp/block.h"
#include "qmp/objects.h"
#include "qmp/qmp.h"
#include "util/main-loop.h"

/* --- Helpers ------------------------------------------------------------- */

static void add_int(struct json_object *o, const char *key, int64_t v)
{
    json_object_object_add(o, key, json_object_new_int64(v));
}

/* --- blockdev-add -------------------------------------------------------- */

/*
 * The union of the common options and every driver's options, with only
 * "driver" required and no top-level defaults: those belong to one driver
 * (null-co's "size"), and bdrv_open() applies them with the driver's own
 * schema.  (Defaults inside a present object, such as "cache", are the
 * same for everyone and may be filled in here.)  A key that two drivers
 * declare differently is OPT_ANY here.  Built once by qmp_block_init();
 * lives as long as the process.
 */
static OptDesc *blockdev_add_args;

static bool opt_desc_same(const OptDesc *a, const OptDesc *b)
{
    return a->type == b->type && a->enum_values == b->enum_values &&
           a->nested == b->nested && a->min == b->min && a->max == b->max;
}

static void blockdev_add_schema_merge(GArray *schema, const OptDesc *opts)
{
    for (const OptDesc *d = opts; d && d->name; d++) {
        OptDesc copy = *d;
        guint i;

        for (i = 0; i < schema->len; i++) {
            OptDesc *have = &g_array_index(schema, OptDesc, i);

            if (!strcmp(have->name, d->name)) {
                if (!opt_desc_same(have, d)) {
                    *have = (OptDesc) {
                        .name = d->name, .type = OPT_ANY,
                        .help = "driver-specific (see the driver)",
                    };
                }
                break;
            }
        }
        if (i < schema->len) {
            continue;
        }
        copy.def = NULL;
        copy.required = !strcmp(d->name, "driver");
        g_array_append_val(schema, copy);
    }
}

static OptDesc *blockdev_add_schema_build(void) TSA_REQUIRES(bql)
{
    GArray *schema = g_array_new(true, true, sizeof(OptDesc));

    blockdev_add_schema_merge(schema, bdrv_driver_opts(NULL));
    for (const char *const *name = bdrv_driver_names(); *name; name++) {
        blockdev_add_schema_merge(schema, bdrv_driver_opts(*name));
    }
    return (OptDesc *)g_array_free(schema, false);
}

static void qmp_blockdev_add(struct json_object *args,
                             struct json_object **ret, Error **errp)
{
    BlockDriverState *bs;
    bool strict;

    GLOBAL_STATE_CODE();
    /* Nested definitions are typed like the top level the dispatcher saw. */
    strict = qmp_current_opts_flags() & OPTS_STRICT_TYPES;
    bs = bdrv_open(args, strict, errp);
    if (!bs) {
        return;
    }
    bdrv_set_monitor_owned(bs, true);
}

/* --- blockdev-del -------------------------------------------------------- */

static const OptDesc blockdev_del_args[] = {
    { "node-name", OPT_STRING, .required = true,
      .help = "the node to delete" },
    { NULL }
};

static void qmp_blockdev_del(struct json_object *args,
                             struct json_object **ret, Error **errp)
{
    const char *node_name = opts_get_str(args, "node-name");
    g_autofree char *users = NULL;
    BlockDriverState *bs;
    int refcnt;

    GLOBAL_STATE_CODE();
    bs = bdrv_find_node(node_name);
    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'",
                   node_name);
        return;
    }
    if (!bdrv_is_monitor_owned(bs)) {
        error_setg(errp, "Node '%s' is not owned by the monitor",
                   node_name);
        return;
    }
    bdrv_graph_rdlock_main_loop();
    users = bdrv_parents_desc(bs, false);
    bdrv_graph_rdunlock_main_loop();
    if (users) {
        error_setg(errp, "Node '%s' is busy: used by %s", node_name, users);
        return;
    }
    /* Edges hold references too; any other one is a user without an edge. */
    refcnt = bdrv_get_refcnt(bs);
    if (refcnt > 1) {
        error_setg(errp, "Node '%s' is busy: held by %d other reference%s",
                   node_name, refcnt - 1, refcnt > 2 ? "s" : "");
        return;
    }
    bdrv_set_monitor_owned(bs, false);
    bdrv_unref(bs);
}

/* --- query-named-block-nodes --------------------------------------------- */

static const OptDesc query_named_block_nodes_args[] = {
    { "flat", OPT_BOOL, .def = "off",
      .help = "accepted; blockd's image info has no backing chain" },
    { NULL }
};

static void qmp_query_named_block_nodes(struct json_object *args,
                                        struct json_object **ret,
                                        Error **errp)
{
    struct json_object *list = json_object_new_array();
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    for (bs = bdrv_next_node(NULL); bs; bs = bdrv_next_node(bs)) {
        json_object_array_add(list, bdrv_query_info(bs));
    }
    *ret = list;
}

/* --- x-blockdev-set-iothread --------------------------------------------- */

static const OptDesc set_iothread_args[] = {
    { "node-name", OPT_STRING, .required = true,
      .help = "the node to move, with everything connected to it" },
    { "iothread", OPT_ANY, .required = true,
      .help = "id of the iothread, or null for the main loop" },
    { "force", OPT_BOOL, .def = "off",
      .help = "move even if a BlockBackend uses the node" },
    { NULL }
};

static void qmp_x_blockdev_set_iothread(struct json_object *args,
                                        struct json_object **ret,
                                        Error **errp)
{
    const char *node_name = opts_get_str(args, "node-name");
    bool force = opts_get_bool(args, "force", false);
    struct json_object *iothread_arg = NULL;
    g_autofree char *users = NULL;
    BlockDriverState *bs;
    AioContext *ctx;

    GLOBAL_STATE_CODE();
    json_object_object_get_ex(args, "iothread", &iothread_arg);
    if (iothread_arg && !json_object_is_type(iothread_arg, json_type_string)) {
        error_setg(errp, "'iothread': expected string or null");
        return;
    }
    bs = bdrv_find_node(node_name);
    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'",
                   node_name);
        return;
    }
    /*
     * QEMU's guard against accidents: a node that a BlockBackend uses
     * directly (an export's) moves only with force.  Parent nodes move
     * along either way, and the BlockBackends of the whole subtree may
     * still refuse (an export with fixed-iothread).
     */
    if (!force) {
        bdrv_graph_rdlock_main_loop();
        users = bdrv_parents_desc(bs, true);
        bdrv_graph_rdunlock_main_loop();
        if (users) {
            error_setg(errp, "Node '%s' is associated with a BlockBackend "
                       "(%s) and could be in use (use force=true to "
                       "override this check)", node_name, users);
            return;
        }
    }
    if (iothread_arg) {
        const char *id = json_object_get_string(iothread_arg);
        IOThread *iothread = iothread_find(id);

        if (!iothread) {
            error_setg(errp, "Cannot find iothread %s", id);
            return;
        }
        ctx = iothread_get_aio_context(iothread);
    } else {
        ctx = main_context();
    }
    bdrv_try_change_aio_context(bs, ctx, NULL, errp);
}

/* --- block_resize -------------------------------------------------------- */

static const OptDesc block_resize_args[] = {
    { "device", OPT_STRING,
      .help = "not supported: blockd has no devices (use node-name)" },
    { "node-name", OPT_STRING, .help = "the node to resize" },
    { "size", OPT_INT, .required = true, .help = "new size in bytes" },
    { NULL }
};

static void qmp_block_resize(struct json_object *args,
                             struct json_object **ret, Error **errp)
{
    const char *device = opts_get_str(args, "device");
    const char *node_name = opts_get_str(args, "node-name");
    int64_t size = opts_get_int(args, "size", 0);
    Error *local_err = NULL;
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    /*
     * QEMU looks up a device by name first, then the node; blockd's
     * BlockBackends have no device names, so only node-name can match.
     */
    if (!node_name) {
        error_setg(errp, "Cannot find device='%s' nor node-name=''%s",
                   device ? device : "",
                   device ? ": blockd has no devices, use 'node-name'" : "");
        return;
    }
    bs = bdrv_find_node(node_name);
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   device ? device : "", node_name);
        return;
    }
    if (size < 0) {
        error_setg(errp, "Parameter 'size' expects a >0 size");
        return;
    }
    if (bdrv_truncate(bs, size, &local_err) < 0) {
        if (!local_err) {
            error_setg(&local_err, "Could not resize node '%s'", node_name);
        }
        error_propagate(errp, local_err);
    }
}

/* --- query-blockstats ---------------------------------------------------- */

static const OptDesc query_blockstats_args[] = {
    { "query-nodes", OPT_BOOL, .def = "off",
      .help = "one entry per node instead of per BlockBackend" },
    { NULL }
};

/*
 * QEMU's BlockDeviceStats from a backend's counters (@accounting: they
 * are counted; false for nodes, which count nothing).  Write-zeroes count
 * as writes (as QEMU's device models account them); blockd has no
 * separate invalid counters for discards (they count as invalid writes),
 * does not merge requests and does not track the highest written offset.
 */
static struct json_object *blockstats_json(const BlockAcctStats *st,
                                           bool accounting)
{
    struct json_object *o = json_object_new_object();

    add_int(o, "rd_bytes", st->rd_bytes);
    add_int(o, "wr_bytes", st->wr_bytes + st->zero_bytes);
    add_int(o, "unmap_bytes", st->unmap_bytes);
    add_int(o, "rd_operations", st->rd_ops);
    add_int(o, "wr_operations", st->wr_ops + st->zero_ops);
    add_int(o, "flush_operations", st->flush_ops);
    add_int(o, "unmap_operations", st->unmap_ops);
    add_int(o, "rd_total_time_ns", st->rd_total_time_ns);
    add_int(o, "wr_total_time_ns",
            st->wr_total_time_ns + st->zero_total_time_ns);
    add_int(o, "flush_total_time_ns", st->flush_total_time_ns);
    add_int(o, "unmap_total_time_ns", st->unmap_total_time_ns);
    add_int(o, "wr_highest_offset", 0);
    add_int(o, "rd_merged", 0);
    add_int(o, "wr_merged", 0);
    add_int(o, "unmap_merged", 0);
    if (st->last_access_time_ns > 0) {
        add_int(o, "idle_time_ns", get_clock_ns() - st->last_access_time_ns);
    }
    add_int(o, "failed_rd_operations", st->failed_rd_ops);
    add_int(o, "failed_wr_operations",
            st->failed_wr_ops + st->failed_zero_ops);
    add_int(o, "failed_flush_operations", st->failed_flush_ops);
    add_int(o, "failed_unmap_operations", st->failed_unmap_ops);
    add_int(o, "invalid_rd_operations", st->invalid_rd_ops);
    add_int(o, "invalid_wr_operations", st->invalid_wr_ops);
    add_int(o, "invalid_flush_operations", st->invalid_flush_ops);
    add_int(o, "invalid_unmap_operations", 0);
    json_object_object_add(o, "account_invalid",
                           json_object_new_boolean(accounting));
    json_object_object_add(o, "account_failed",
                           json_object_new_boolean(accounting));
    json_object_object_add(o, "timed_stats", json_object_new_array());
    return o;
}

/*
 * QEMU's BlockStats for @bs: with @st, a BlockBackend's entry ("device"
 * is empty: exports' backends have no device name, as in QSD); without,
 * a node's, with zero statistics since nodes keep none of their own (as
 * in QEMU).  "parent" describes the node's file child the same way.
 */
static struct json_object *blockstats_entry(BlockDriverState *bs,
                                            const BlockAcctStats *st)
    GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    static const BlockAcctStats none;
    struct json_object *s = json_object_new_object();
    BlockDriverState *file;

    if (st) {
        json_object_object_add(s, "device", json_object_new_string(""));
    }
    json_object_object_add(s, "node-name", json_object_new_string(
                               bdrv_get_node_name(bs)));
    json_object_object_add(s, "stats", blockstats_json(st ? st : &none,
                                                       st != NULL));
    file = bdrv_file_bs(bs);
    if (file) {
        json_object_object_add(s, "parent", blockstats_entry(file, NULL));
    }
    return s;
}

static void qmp_query_blockstats(struct json_object *args,
                                 struct json_object **ret, Error **errp)
{
    struct json_object *list = json_object_new_array();

    GLOBAL_STATE_CODE();
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    if (opts_get_bool(args, "query-nodes", false)) {
        for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
             bs = bdrv_next_node(bs)) {
            json_object_array_add(list, blockstats_entry(bs, NULL));
        }
    } else {
        for (BlockBackend *blk = blk_next(NULL); blk; blk = blk_next(blk)) {
            BlockDriverState *bs = blk_bs(blk);
            BlockAcctStats st;

            if (bs) {
                blk_get_stats(blk, &st);
                json_object_array_add(list, blockstats_entry(bs, &st));
            }
        }
    }
    *ret = list;
}

/* --- blockdev-create ------------------------------------------------------ */

static const OptDesc blockdev_create_args[] = {
    { "job-id", OPT_STRING, .required = true,
      .help = "the id of the creation job" },
    { "options", OPT_ANY, .required = true,
      .help = "what to create: 'driver' and its creation options" },
    { NULL }
};

static void qmp_blockdev_create(struct json_object *args,
                                struct json_object **ret, Error **errp)
{
    GLOBAL_STATE_CODE();
    blockdev_create(opts_get_str(args, "job-id"),
                    json_object_object_get(args, "options"), errp);
}

/* --- x-query-command-args ------------------------------------------------ */

static const char *const opt_type_names[] = {
    [OPT_STRING] = "string",
    [OPT_BOOL] = "bool",
    [OPT_INT] = "int",
    [OPT_SIZE] = "size",
    [OPT_ENUM] = "enum",
    [OPT_OBJECT] = "object",
    [OPT_NODE] = "node",
    [OPT_STR_OR_LIST] = "string-or-list",
    [OPT_LIST] = "list",
    [OPT_ANY] = "any",
};

static struct json_object *opts_schema_json(const OptDesc *opts)
{
    struct json_object *list = json_object_new_array();

    for (const OptDesc *d = opts; d && d->name; d++) {
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "name", json_object_new_string(d->name));
        json_object_object_add(o, "type", json_object_new_string(
                                   opt_type_names[d->type]));
        json_object_object_add(o, "required",
                               json_object_new_boolean(d->required));
        if (d->def) {
            json_object_object_add(o, "default",
                                   json_object_new_string(d->def));
        }
        if (d->enum_values) {
            struct json_object *values = json_object_new_array();

            for (const char *const *v = d->enum_values; *v; v++) {
                json_object_array_add(values, json_object_new_string(*v));
            }
            json_object_object_add(o, "values", values);
        }
        if (d->nested) {
            json_object_object_add(o, "members", opts_schema_json(d->nested));
        }
        json_object_array_add(list, o);
    }
    return list;
}

/*
 * blockdev-add's arguments are a union: "base" lists the options of every
 * node, "variants" each driver's own.
 */
static void add_blockdev_variants(struct json_object *o) TSA_REQUIRES(bql)
{
    struct json_object *variants = json_object_new_object();

    json_object_object_add(o, "base",
                           opts_schema_json(bdrv_driver_opts(NULL)));
    for (const char *const *name = bdrv_driver_names(); *name; name++) {
        json_object_object_add(variants, *name, opts_schema_json(
                                   bdrv_driver_opts(*name)));
    }
    json_object_object_add(o, "variants", variants);
}

/* blockdev-create's "options": each driver's creation options. */
static void add_create_variants(struct json_object *o) TSA_REQUIRES(bql)
{
    struct json_object *variants = json_object_new_object();

    for (const char *const *name = bdrv_driver_names(); *name; name++) {
        const OptDesc *opts = bdrv_driver_create_opts(*name);

        if (opts) {
            json_object_object_add(variants, *name, opts_schema_json(opts));
        }
    }
    json_object_object_add(o, "variants", variants);
}

static void qmp_x_query_command_args(struct json_object *args,
                                     struct json_object **ret, Error **errp)
{
    struct json_object *list = json_object_new_array();
    const QmpCommand **cmds;

    GLOBAL_STATE_CODE();
    cmds = qmp_list_commands();
    for (size_t i = 0; cmds[i]; i++) {
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "name",
                               json_object_new_string(cmds[i]->name));
        json_object_object_add(o, "hidden", json_object_new_boolean(
                                   cmds[i]->flags & QMP_CMD_HIDDEN));
        json_object_object_add(o, "arguments",
                               opts_schema_json(cmds[i]->args));
        if (cmds[i]->args && cmds[i]->args == blockdev_add_args) {
            add_blockdev_variants(o);
        }
        if (cmds[i]->handler == qmp_blockdev_create) {
            add_create_variants(o);
        }
        json_object_array_add(list, o);
    }
    *ret = list;
}

/* --- Registration and shutdown ------------------------------------------- */

/* blockdev-add's schema is filled in by qmp_block_init(). */
static QmpCommand block_commands[] = {
    { "blockdev-add", NULL, qmp_blockdev_add, 0,
      "open a node from a blockdev definition" },
    { "blockdev-del", blockdev_del_args, qmp_blockdev_del, 0,
      "close a node that blockdev-add opened" },
    { "blockdev-create", blockdev_create_args, qmp_blockdev_create, 0,
      "create an image (file, qcow2) in a job of type 'create'" },
    { "query-named-block-nodes", query_named_block_nodes_args,
      qmp_query_named_block_nodes, QMP_CMD_WHILE_WAITING,
      "describe every node" },
    { "x-blockdev-set-iothread", set_iothread_args,
      qmp_x_blockdev_set_iothread, 0,
      "move a node (and what is connected to it) to an iothread" },
    { "block_resize", block_resize_args, qmp_block_resize, 0,
      "resize a node" },
    { "query-blockstats", query_blockstats_args, qmp_query_blockstats,
      QMP_CMD_WHILE_WAITING,
      "I/O statistics of every BlockBackend (or node)" },
    { "x-query-command-args", NULL, qmp_x_query_command_args,
      QMP_CMD_HIDDEN | QMP_CMD_WHILE_WAITING,
      "argument schema of every command" },
    { NULL }
};

void qmp_block_init(void)
{
    GLOBAL_STATE_CODE();
    assert(!blockdev_add_args);
    blockdev_add_args = blockdev_add_schema_build();
    assert(!strcmp(block_commands[0].name, "blockdev-add"));
    block_commands[0].args = blockdev_add_args;
    qmp_register_commands(block_commands);
}

void qmp_block_cleanup(void)
{
    g_autoptr(GPtrArray) owned = g_ptr_array_new();

    GLOBAL_STATE_CODE();
    /*
     * Collect first: dropping a parent closes its implicit children.  Each
     * collected node stays alive until its own monitor reference goes.
     */
    for (BlockDriverState *bs = bdrv_next_node(NULL); bs;
         bs = bdrv_next_node(bs)) {
        if (bdrv_is_monitor_owned(bs)) {
            g_ptr_array_add(owned, bs);
        }
    }
    for (guint i = 0; i < owned->len; i++) {
        bdrv_set_monitor_owned(owned->pdata[i], false);
        bdrv_unref(owned->pdata[i]);
    }
}
