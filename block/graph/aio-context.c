/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Moving a subtree of the graph to another AioContext (iothread).
 *
 * Everything connected to the node through edges must live in one
 * context, so the whole connected component moves: the nodes, and the
 * parents that are not nodes (BlockBackends of exports and jobs), each of
 * which is asked first and may refuse (an export with fixed-iothread, a
 * backend that was not told it may move).  The move itself runs with every
 * node drained and under the graph write lock, so that no request is in
 * flight and no coroutine reads the graph while nodes change context.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block_int.h"
#include "util/atomic.h"
#include "util/main-loop.h"

typedef struct ContextMove {
    AioContext *ctx;
    BdrvChild *ignore;
    GHashTable *visited;        /* nodes and non-node parent edges */
    GPtrArray *nodes;
    GPtrArray *root_edges;      /* edges whose parent is not a node */
} ContextMove;

static bool collect_component(ContextMove *m, BlockDriverState *bs,
                              Error **errp) GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    BdrvChild *c;

    if (!g_hash_table_add(m->visited, bs)) {
        return true;
    }
    g_ptr_array_add(m->nodes, bs);

    QLIST_FOREACH(c, &bs->parents, next_parent) {
        if (c == m->ignore) {
            continue;
        }
        if (c->klass->parent_is_bds) {
            if (!collect_component(m, c->opaque, errp)) {
                return false;
            }
            continue;
        }
        if (!g_hash_table_add(m->visited, c)) {
            continue;
        }
        if (!c->klass->can_set_aio_ctx) {
            g_autofree char *user = bdrv_child_user_desc(c);

            error_setg(errp, "Cannot move node '%s' to another iothread: "
                       "used by %s", bs->node_name, user);
            return false;
        }
        if (!c->klass->can_set_aio_ctx(c, m->ctx, m->visited, errp)) {
            return false;
        }
        g_ptr_array_add(m->root_edges, c);
    }
    QLIST_FOREACH(c, &bs->children, next) {
        if (c != m->ignore && !collect_component(m, c->bs, errp)) {
            return false;
        }
    }
    return true;
}

int bdrv_try_change_aio_context(BlockDriverState *bs, AioContext *ctx,
                                BdrvChild *ignore_child, Error **errp)
{
    ContextMove m = {
        .ctx = ctx,
        .ignore = ignore_child,
        .visited = g_hash_table_new(NULL, NULL),
        .nodes = g_ptr_array_new(),
        .root_edges = g_ptr_array_new(),
    };
    bool ok;

    GLOBAL_STATE_CODE();
    if (bs->aio_context == ctx) {
        ok = true;
        goto out;
    }

    bdrv_drain_all_begin();
    bdrv_graph_rdlock_main_loop();
    ok = collect_component(&m, bs, errp);
    bdrv_graph_rdunlock_main_loop();
    if (ok) {
        GHashTable *visited = g_hash_table_new(NULL, NULL);

        bdrv_graph_wrlock_drained();
        for (guint i = 0; i < m.nodes->len; i++) {
            BlockDriverState *node = m.nodes->pdata[i];

            if (node->drv->bdrv_detach_aio_context) {
                node->drv->bdrv_detach_aio_context(node);
            }
        }
        for (guint i = 0; i < m.nodes->len; i++) {
            BlockDriverState *node = m.nodes->pdata[i];

            qatomic_set(&node->aio_context, ctx);
            if (node->drv->bdrv_attach_aio_context) {
                node->drv->bdrv_attach_aio_context(node, ctx);
            }
        }
        for (guint i = 0; i < m.root_edges->len; i++) {
            BdrvChild *c = m.root_edges->pdata[i];

            if (c->klass->set_aio_ctx) {
                c->klass->set_aio_ctx(c, ctx, visited);
            }
        }
        bdrv_graph_wrunlock();
        g_hash_table_destroy(visited);
    }
    bdrv_drain_all_end();

out:
    g_hash_table_destroy(m.visited);
    g_ptr_array_free(m.nodes, true);
    g_ptr_array_free(m.root_edges, true);
    return ok ? 0 : -EPERM;
}
