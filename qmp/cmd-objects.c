/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP commands for user-created objects: object-add and object-del for
 * qom-type "iothread" (the only type blockd has), and query-iothreads.
 *
 * The iothreads live in util/iothread.h's registry, in creation order,
 * which is the order query-iothreads reports.  Invariants: ids are unique
 * among them;
 * an iothread leaves the list only when nothing runs in it, i.e. no node
 * and no BlockBackend has its AioContext as home and no user holds a use
 * reference (iothread_ref_use()).  QEMU lets object-del destroy an
 * iothread that a node still runs in; blockd refuses, because the node's
 * next request would be scheduled onto a dead event loop.
 *
 * poll-max-ns, poll-grow, poll-shrink and aio-max-batch are QEMU's and
 * are applied to the iothread's AioContext (util/iothread.c).
 *
 * Main-loop code throughout (GLOBAL_STATE_CODE).
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "qmp/objects.h"
#include "qmp/qmp.h"
#include "util/id.h"
#include "util/main-loop.h"

/*
 * Who runs in @iothread's context, for object-del's refusal; NULL if
 * nobody.  Returns a string to g_free().
 */
static char *iothread_user(IOThread *iothread) TSA_REQUIRES(bql)
{
    AioContext *ctx = iothread_get_aio_context(iothread);
    unsigned uses = iothread_uses(iothread);
    BlockDriverState *bs;
    BlockBackend *blk;

    for (bs = bdrv_next_node(NULL); bs; bs = bdrv_next_node(bs)) {
        if (bdrv_get_aio_context(bs) == ctx) {
            return g_strdup_printf("node '%s' runs in it",
                                   bdrv_get_node_name(bs));
        }
    }
    for (blk = blk_next(NULL); blk; blk = blk_next(blk)) {
        if (blk_get_aio_context(blk) == ctx) {
            return g_strdup_printf("block backend '%s' runs in it",
                                   blk_name(blk));
        }
    }
    if (uses) {
        return g_strdup_printf("%u user%s (exports or jobs) run%s in it",
                               uses, uses == 1 ? "" : "s",
                               uses == 1 ? "s" : "");
    }
    return NULL;
}

/* --- object-add ---------------------------------------------------------- */

static const OptDesc object_add_args[] = {
    { "qom-type", OPT_STRING, .required = true,
      .help = "type of the object: 'iothread'" },
    { "id", OPT_STRING, .required = true,
      .help = "name of the object" },
    { "poll-max-ns", OPT_INT, .def = G_STRINGIFY(IOTHREAD_POLL_MAX_NS_DEFAULT),
      .min = 0, .max = INT64_MAX,
      .help = "longest busy-poll before blocking, in ns (0: no polling)" },
    { "poll-grow", OPT_INT, .def = "0", .min = 0, .max = INT64_MAX,
      .help = "polling growth factor (accepted, not applied)" },
    { "poll-shrink", OPT_INT, .def = "0", .min = 0, .max = INT64_MAX,
      .help = "polling shrink divisor (accepted, not applied)" },
    { "aio-max-batch", OPT_INT, .def = "0", .min = 0, .max = INT64_MAX,
      .help = "largest submission batch (accepted, not applied)" },
    { NULL }
};

static void qmp_object_add(struct json_object *args, struct json_object **ret,
                           Error **errp)
{
    const char *type = opts_get_str(args, "qom-type");
    const char *id = opts_get_str(args, "id");
    IOThreadParams params;
    IOThread *iothread;

    GLOBAL_STATE_CODE();
    if (strcmp(type, "iothread")) {
        error_setg(errp, "Invalid parameter value for 'qom-type': '%s' is "
                   "not a supported object type (blockd supports "
                   "'iothread')", type);
        return;
    }
    if (!id_wellformed(id)) {
        /* QEMU's message (its hint says what an identifier is). */
        error_setg(errp, "Parameter 'id' expects an identifier");
        return;
    }
    if (iothread_find(id)) {
        error_setg(errp, "An object with id '%s' already exists", id);
        return;
    }

    params = (IOThreadParams) {
        .poll_max_ns = opts_get_int(args, "poll-max-ns", 0),
        .poll_grow = opts_get_int(args, "poll-grow", 0),
        .poll_shrink = opts_get_int(args, "poll-shrink", 0),
        .aio_max_batch = opts_get_int(args, "aio-max-batch", 0),
    };
    iothread = iothread_create(id, params.poll_max_ns, errp);
    if (!iothread) {
        return;
    }
    iothread_set_params(iothread, &params);
    iothread_register(iothread);
}

/* --- object-del ---------------------------------------------------------- */

static const OptDesc object_del_args[] = {
    { "id", OPT_STRING, .required = true, .help = "name of the object" },
    { NULL }
};

static void iothread_unregister_destroy(IOThread *iothread) TSA_REQUIRES(bql)
{
    iothread_unregister(iothread);
    iothread_destroy(iothread);
}

static void qmp_object_del(struct json_object *args, struct json_object **ret,
                           Error **errp)
{
    const char *id = opts_get_str(args, "id");
    g_autofree char *user = NULL;
    IOThread *iothread;

    GLOBAL_STATE_CODE();
    iothread = iothread_find(id);
    if (!iothread) {
        error_setg(errp, "object '%s' not found", id);
        return;
    }
    user = iothread_user(iothread);
    if (user) {
        error_setg(errp, "object '%s' is in use, can not be deleted: %s",
                   id, user);
        return;
    }
    iothread_unregister_destroy(iothread);
}

/* --- query-iothreads ----------------------------------------------------- */

static void qmp_query_iothreads(struct json_object *args,
                                struct json_object **ret, Error **errp)
{
    struct json_object *list = json_object_new_array();
    IOThread *io = NULL;

    GLOBAL_STATE_CODE();
    while ((io = iothread_next(io))) {
        struct json_object *info = json_object_new_object();
        IOThreadParams params;

        iothread_get_params(io, &params);
        json_object_object_add(info, "id", json_object_new_string(
                                   iothread_get_id(io)));
        json_object_object_add(info, "thread-id", json_object_new_int(
                                   iothread_get_thread_id(io)));
        json_object_object_add(info, "poll-max-ns",
                               json_object_new_int64(params.poll_max_ns));
        json_object_object_add(info, "poll-grow",
                               json_object_new_int64(params.poll_grow));
        json_object_object_add(info, "poll-shrink",
                               json_object_new_int64(params.poll_shrink));
        json_object_object_add(info, "aio-max-batch",
                               json_object_new_int64(params.aio_max_batch));
        json_object_array_add(list, info);
    }
    *ret = list;
}

/* --- Registration and shutdown ------------------------------------------- */

static const QmpCommand objects_commands[] = {
    { "object-add", object_add_args, qmp_object_add, 0,
      "create an object (an iothread)" },
    { "object-del", object_del_args, qmp_object_del, 0,
      "delete an object that nothing uses" },
    { "query-iothreads", NULL, qmp_query_iothreads, QMP_CMD_WHILE_WAITING,
      "list the iothreads" },
    { NULL }
};

void qmp_objects_init(void)
{
    GLOBAL_STATE_CODE();
    qmp_register_commands(objects_commands);
}

void objects_cleanup(void)
{
    g_autoptr(GPtrArray) all = g_ptr_array_new();
    IOThread *io = NULL;

    GLOBAL_STATE_CODE();
    while ((io = iothread_next(io))) {
        g_ptr_array_add(all, io);
    }
    /* Newest first: the reverse of creation. */
    for (guint i = all->len; i-- > 0;) {
        iothread_unregister_destroy(all->pdata[i]);
    }
}
