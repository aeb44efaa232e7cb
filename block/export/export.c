/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The generic export layer: the registry of exports, block-export-add's
 * common arguments, the BlockBackend each export does its I/O through,
 * reference counting and deletion, and query-block-exports.  Export types
 * (NBD: nbd-server.c) plug in through BlockExportDriver.
 *
 * Invariants:
 *  - An export is listed from the moment blk_exp_add() succeeds until its
 *    deletion bottom half runs; ids are unique among listed exports.
 *  - refcount counts the registry (until blk_exp_request_shutdown()) and
 *    every client; the deletion runs in a main-loop bottom half after the
 *    last reference is dropped, so that no caller of blk_exp_unref() ever
 *    sees the export freed under it.
 *  - The export's BlockBackend lives in the node's AioContext and follows
 *    it on moves unless the export is fixed-iothread (then moves are
 *    refused).  Its dev ops are ours: drains go to the driver, which stops
 *    its clients; request queuing is disabled, because the drain waits for
 *    the driver's own coroutines, which must not be parked.
 *  - An export with several iothreads holds a use reference on each
 *    (qmp/objects.h), so that object-del cannot destroy an event loop its
 *    connections run in.  A single iothread needs none: the node (and the
 *    BlockBackend) living there already keeps it in use.
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/export.h"
#include "block/export/client.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/event.h"
#include "util/id.h"
#include "util/log.h"
#include "util/main-loop.h"

/* Registered export types.  BQL */
static GPtrArray *blk_exp_drivers TSA_GUARDED_BY(bql);

/* Every listed export, newest last.  BQL */
static QTAILQ_HEAD(, BlockExport TSA_GUARDED_BY(bql)) block_exports =
    QTAILQ_HEAD_INITIALIZER(block_exports);

/* --- Types and the argument schema --------------------------------------- */

void blk_exp_register_driver(const BlockExportDriver *drv)
{
    bql_assert_held();
    assert(drv->instance_size >= sizeof(BlockExport));
    if (!blk_exp_drivers) {
        blk_exp_drivers = g_ptr_array_new();
    }
    g_ptr_array_add(blk_exp_drivers, (gpointer)drv);
}

static const BlockExportDriver *blk_exp_find_driver(const char *type)
{
    bql_assert_held();
    for (guint i = 0; blk_exp_drivers && i < blk_exp_drivers->len; i++) {
        const BlockExportDriver *drv = blk_exp_drivers->pdata[i];

        if (!strcmp(drv->type, type)) {
            return drv;
        }
    }
    return NULL;
}

/*
 * QEMU's BlockExportOptions common members.  "type" gets its values from
 * the registered types; "iothread" is a string in QEMU, and blockd also
 * takes a list (multiqueue: connections spread over the iothreads).
 */
static const OptDesc blk_exp_common_opts[] = {
    { "type", OPT_ENUM, .required = true,
      .help = "export type: 'nbd'" },
    { "id", OPT_STRING, .required = true,
      .help = "name of the export (block-export-del, events)" },
    { "node-name", OPT_STRING, .required = true,
      .help = "the node to export" },
    { "writable", OPT_BOOL, .def = "off",
      .help = "allow clients to write" },
    { "writethrough", OPT_BOOL, .def = "off",
      .help = "flush every write before completing it" },
    { "iothread", OPT_STR_OR_LIST,
      .help = "iothread (or list of iothreads) to run the clients in" },
    { "fixed-iothread", OPT_BOOL, .def = "off",
      .help = "fail instead of following the node to another iothread" },
    { NULL }
};

const OptDesc *blk_exp_add_schema(void)
{
    static OptDesc *schema;
    static const char **types;
    GArray *a;

    bql_assert_held();
    if (schema) {
        return schema;
    }
    assert(blk_exp_drivers && blk_exp_drivers->len);
    types = g_new0(const char *, blk_exp_drivers->len + 1);
    a = g_array_new(true, true, sizeof(OptDesc));
    g_array_append_vals(a, blk_exp_common_opts,
                        G_N_ELEMENTS(blk_exp_common_opts) - 1);
    g_array_index(a, OptDesc, 0).enum_values = types;
    for (guint i = 0; i < blk_exp_drivers->len; i++) {
        const BlockExportDriver *drv = blk_exp_drivers->pdata[i];

        types[i] = drv->type;
        for (const OptDesc *d = drv->opts; d && d->name; d++) {
            g_array_append_val(a, *d);
        }
    }
    schema = (OptDesc *)g_array_free(a, false);
    return schema;
}

/* --- The BlockBackend's dev ops: drains and moves ------------------------ */

/*
 * These may run before the driver's create() (a node that is drained when
 * the BlockBackend attaches quiesces it at once): on the zeroed export,
 * with no client yet.
 */
static void blk_exp_drained_begin(void *opaque)
{
    GLOBAL_STATE_CODE();
    blk_exp_clients_drained_begin(opaque);
}

static bool blk_exp_drained_poll(void *opaque)
{
    GLOBAL_STATE_CODE();
    return blk_exp_clients_drained_poll(opaque);
}

static void blk_exp_drained_end(void *opaque)
{
    GLOBAL_STATE_CODE();
    blk_exp_clients_drained_end(opaque);
}

static bool blk_exp_can_change_aio_context(void *opaque, AioContext *ctx,
                                           Error **errp)
{
    BlockExport *exp = opaque;

    GLOBAL_STATE_CODE();
    if (exp->fixed_iothread) {
        error_setg(errp, "Cannot change iothread of active block export "
                   "'%s' (it has fixed-iothread=on)", exp->id);
        return false;
    }
    return true;
}

static void blk_exp_aio_context_changed(void *opaque, AioContext *ctx)
{
    BlockExport *exp = opaque;

    GLOBAL_STATE_CODE();
    assert(!exp->fixed_iothread);
    blk_exp_clients_aio_context_changed(exp, ctx);
}

static const BlockDevOps blk_exp_dev_ops = {
    .drained_begin = blk_exp_drained_begin,
    .drained_poll = blk_exp_drained_poll,
    .drained_end = blk_exp_drained_end,
    .can_change_aio_context = blk_exp_can_change_aio_context,
    .aio_context_changed = blk_exp_aio_context_changed,
};

/* --- block-export-add ---------------------------------------------------- */

/*
 * The IOThreads named by the "iothread" argument (a string or a list of
 * strings), in order; an empty array if absent.  NULL with @errp set if
 * one does not exist.
 */
static GPtrArray *blk_exp_parse_iothreads(struct json_object *args,
                                          Error **errp) TSA_REQUIRES(bql)
{
    GPtrArray *iothreads = g_ptr_array_new();
    struct json_object *val;
    size_t n;

    if (!json_object_object_get_ex(args, "iothread", &val) || !val) {
        return iothreads;
    }
    n = json_object_is_type(val, json_type_array) ?
        json_object_array_length(val) : 1;
    if (n == 0) {
        error_setg(errp, "Parameter 'iothread' expects at least one "
                   "iothread");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct json_object *elem = json_object_is_type(val, json_type_array) ?
            json_object_array_get_idx(val, i) : val;
        const char *name = json_object_get_string(elem);
        IOThread *iothread = iothread_find(name);

        if (!iothread) {
            error_setg(errp, "iothread \"%s\" not found", name);
            goto fail;
        }
        g_ptr_array_add(iothreads, iothread);
    }
    return iothreads;

fail:
    g_ptr_array_free(iothreads, true);
    return NULL;
}

/*
 * Move @bs to the first iothread of @exp, as QEMU does; a refusal is an
 * error only for fixed-iothread exports (the others run where the node
 * is).  Sets *@moved_from to the old context if the node moved.
 */
static bool blk_exp_move_node(BlockExport *exp, BlockDriverState *bs,
                              AioContext **moved_from, Error **errp)
    TSA_REQUIRES(bql)
{
    AioContext *old_ctx = bdrv_get_aio_context(bs);
    AioContext *new_ctx;
    Error *local_err = NULL;

    *moved_from = NULL;
    if (!exp->iothreads->len) {
        return true;
    }
    new_ctx = iothread_get_aio_context(exp->iothreads->pdata[0]);
    if (new_ctx == old_ctx) {
        return true;
    }
    if (bdrv_try_change_aio_context(bs, new_ctx, NULL, &local_err) == 0) {
        *moved_from = old_ctx;
        return true;
    }
    if (exp->fixed_iothread) {
        error_propagate(errp, local_err);
        return false;
    }
    warn_report("export '%s': node '%s' stays in '%s': %s", exp->id,
                bdrv_get_node_name(bs), aio_context_name(old_ctx),
                error_get_pretty(local_err));
    error_free(local_err);
    return true;
}

static void blk_exp_free(BlockExport *exp)
{
    g_free(exp->id);
    if (exp->iothreads) {
        g_ptr_array_free(exp->iothreads, true);
    }
    g_free(exp);
}

/* Whether @exp holds use references on its iothreads (see the top). */
static bool blk_exp_uses_iothreads(BlockExport *exp)
{
    return exp->iothreads->len > 1;
}

BlockExport *blk_exp_add(struct json_object *args, Error **errp)
{
    const char *type = opts_get_str(args, "type");
    const char *id = opts_get_str(args, "id");
    const char *node_name = opts_get_str(args, "node-name");
    const BlockExportDriver *drv;
    BlockDriverState *bs;
    AioContext *moved_from = NULL;
    BlockExport *exp;
    uint64_t perm;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    drv = blk_exp_find_driver(type);
    if (!drv) {
        error_setg(errp, "Export type '%s' is not supported", type);
        return NULL;
    }
    if (!id_wellformed(id)) {
        error_setg(errp, "Invalid block export id '%s' (letters, digits, "
                   "'-', '.', '_', starting with a letter)", id);
        return NULL;
    }
    if (blk_exp_find(id)) {
        error_setg(errp, "Block export id '%s' is already in use", id);
        return NULL;
    }
    bs = bdrv_lookup_bs(NULL, node_name, errp);
    if (!bs) {
        return NULL;
    }

    exp = g_malloc0(drv->instance_size);
    exp->drv = drv;
    QLIST_INIT(&exp->client_list);
    exp->id = g_strdup(id);
    exp->writable = opts_get_bool(args, "writable", false);
    exp->writethrough = opts_get_bool(args, "writethrough", false);
    exp->fixed_iothread = opts_get_bool(args, "fixed-iothread", false);
    exp->refcount = 1;
    exp->iothreads = blk_exp_parse_iothreads(args, errp);
    if (!exp->iothreads || !blk_exp_move_node(exp, bs, &moved_from, errp)) {
        blk_exp_free(exp);
        return NULL;
    }

    perm = BLK_PERM_CONSISTENT_READ | (exp->writable ? BLK_PERM_WRITE : 0);
    exp->blk = blk_new(id, bdrv_get_aio_context(bs), perm, BLK_PERM_ALL);
    blk_set_dev_ops(exp->blk, &blk_exp_dev_ops, exp);
    blk_set_disable_request_queuing(exp->blk, true);
    if (blk_insert_bs(exp->blk, bs, errp) < 0 ||
        drv->create(exp, args, errp) < 0) {
        blk_unref(exp->blk);
        if (moved_from) {
            /* Roll back the move; best effort, as the move was. */
            bdrv_try_change_aio_context(bs, moved_from, NULL, NULL);
        }
        blk_exp_free(exp);
        return NULL;
    }

    if (blk_exp_uses_iothreads(exp)) {
        for (guint i = 0; i < exp->iothreads->len; i++) {
            iothread_ref_use(exp->iothreads->pdata[i]);
        }
    }
    /* Append: query-block-exports lists exports in creation order. */
    QTAILQ_INSERT_TAIL(&block_exports, exp, next);
    return exp;
}

BlockExport *blk_exp_find(const char *id)
{
    BlockExport *exp;

    bql_assert_held();
    QTAILQ_FOREACH(exp, &block_exports, next) {
        if (!strcmp(exp->id, id)) {
            return exp;
        }
    }
    return NULL;
}

BlockExport *blk_exp_next(BlockExport *exp)
{
    bql_assert_held();
    return exp ? QTAILQ_NEXT(exp, next) : QTAILQ_FIRST(&block_exports);
}

/* --- References and deletion --------------------------------------------- */

void blk_exp_ref(BlockExport *exp)
{
    GLOBAL_STATE_CODE();
    assert(exp->refcount > 0);
    exp->refcount++;
}

static void blk_exp_delete_bh(void *opaque)
{
    BlockExport *exp = opaque;
    struct json_object *data;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    assert(exp->refcount == 0 && exp->shutting_down && !exp->clients);
    QTAILQ_REMOVE(&block_exports, exp, next);
    exp->drv->delete(exp);
    blk_set_dev_ops(exp->blk, NULL, NULL);
    blk_unref(exp->blk);
    if (blk_exp_uses_iothreads(exp)) {
        for (guint i = 0; i < exp->iothreads->len; i++) {
            iothread_unref_use(exp->iothreads->pdata[i]);
        }
    }

    data = json_object_new_object();
    json_object_object_add(data, "id", json_object_new_string(exp->id));
    event_emit("BLOCK_EXPORT_DELETED", data);
    blk_exp_free(exp);
    /* blk_exp_close_all_type() may be waiting for the list to shrink. */
    aio_wait_kick();
}

void blk_exp_unref(BlockExport *exp)
{
    GLOBAL_STATE_CODE();
    assert(exp->refcount > 0);
    if (--exp->refcount == 0) {
        /* Deletion drops the node: at a safe point (util/aio-wait.h). */
        aio_wait_defer(blk_exp_delete_bh, exp);
    }
}

void blk_exp_request_shutdown(BlockExport *exp)
{
    GLOBAL_STATE_CODE();
    if (exp->shutting_down) {
        return;
    }
    exp->shutting_down = true;
    blk_exp_clients_close_all(exp);
    if (exp->drv->request_shutdown) {
        exp->drv->request_shutdown(exp);
    }
    /* The registry's reference: clients keep theirs until they are gone. */
    blk_exp_unref(exp);
}

static bool blk_exp_has_type(const char *type)
{
    BlockExport *exp;

    bql_assert_held();
    QTAILQ_FOREACH(exp, &block_exports, next) {
        if (!type || !strcmp(exp->drv->type, type)) {
            return true;
        }
    }
    return false;
}

void blk_exp_close_all_type(const char *type)
{
    BlockExport *exp;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    /* Deletion is a bottom half: the list does not change under us here. */
    QTAILQ_FOREACH(exp, &block_exports, next) {
        if (!type || !strcmp(exp->drv->type, type)) {
            blk_exp_request_shutdown(exp);
        }
    }
    /* Deletion is deferred work: let it run while we wait for it. */
    AIO_WAIT_WHILE_RUNNING_DEFERRED(blk_exp_has_type(type));
}

void blk_exp_close_all(void)
{
    blk_exp_close_all_type(NULL);
}

/* --- Placement and queries ----------------------------------------------- */

AioContext *blk_exp_next_aio_context(BlockExport *exp)
{
    IOThread *iothread;

    GLOBAL_STATE_CODE();
    if (exp->iothreads->len <= 1) {
        return blk_get_aio_context(exp->blk);
    }
    iothread = exp->iothreads->pdata[exp->next_iothread];
    exp->next_iothread = (exp->next_iothread + 1) % exp->iothreads->len;
    return iothread_get_aio_context(iothread);
}

/* The iothreads @exp's clients run in, as a list of ids. */
static struct json_object *blk_exp_query_iothreads(BlockExport *exp)
{
    struct json_object *list = json_object_new_array();
    AioContext *ctx;

    if (exp->iothreads->len > 1) {
        for (guint i = 0; i < exp->iothreads->len; i++) {
            IOThread *iothread = exp->iothreads->pdata[i];

            json_object_array_add(list, json_object_new_string(
                                      iothread_get_id(iothread)));
        }
        return list;
    }
    ctx = blk_get_aio_context(exp->blk);
    if (ctx != main_context()) {
        json_object_array_add(list, json_object_new_string(
                                  aio_context_name(ctx)));
    }
    return list;
}

static struct json_object *blk_exp_query(BlockExport *exp) TSA_REQUIRES(bql)
{
    struct json_object *info = json_object_new_object();
    BlockDriverState *bs = blk_bs(exp->blk);
    BlockExportStats stats = {
        .requests = qatomic_read(&exp->stats.requests),
        .bytes_read = qatomic_read(&exp->stats.bytes_read),
        .bytes_written = qatomic_read(&exp->stats.bytes_written),
    };

    if (exp->drv->get_stats) {
        exp->drv->get_stats(exp, &stats);
    }
    json_object_object_add(info, "id", json_object_new_string(exp->id));
    json_object_object_add(info, "type",
                           json_object_new_string(exp->drv->type));
    json_object_object_add(info, "node-name", json_object_new_string(
                               bs ? bdrv_get_node_name(bs) : ""));
    json_object_object_add(info, "shutting-down",
                           json_object_new_boolean(exp->shutting_down));
    json_object_object_add(info, "x-blockd-clients",
                           json_object_new_int64(exp->clients));
    json_object_object_add(info, "x-blockd-requests",
                           json_object_new_int64(stats.requests));
    json_object_object_add(info, "x-blockd-bytes-read",
                           json_object_new_int64(stats.bytes_read));
    json_object_object_add(info, "x-blockd-bytes-written",
                           json_object_new_int64(stats.bytes_written));
    json_object_object_add(info, "x-blockd-iothreads",
                           blk_exp_query_iothreads(exp));
    if (exp->drv->query) {
        exp->drv->query(exp, info);
    }
    return info;
}

struct json_object *blk_exp_query_all(void)
{
    struct json_object *list = json_object_new_array();
    BlockExport *exp;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    QTAILQ_FOREACH(exp, &block_exports, next) {
        json_object_array_add(list, blk_exp_query(exp));
    }
    return list;
}
