/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Permissions of the block graph, as QEMU's: each edge carries what its
 * parent does with the child (perm) and what it lets the child's other
 * parents do (shared).  A node's cumulative permissions are the union of
 * its parents' perms and the intersection of their shared masks.
 *
 * bdrv_refresh_perms() recomputes a node and its whole subtree from the
 * parents' edges, all or nothing: for each node, parents before children,
 * it checks conflicts between the node's parents (naming both users), that
 * a read-only node is not asked to write, and the driver's check_perm
 * (which takes OFD image locks); then it commits every edge and calls
 * set_perm, or calls abort_perm_update on every node it checked, leaving
 * everything as it was.
 *
 * Main loop; callers hold the graph lock (reading is enough: the edges'
 * permission fields are BQL-protected).
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block_int.h"
#include "util/main-loop.h"

const char *bdrv_perm_name(uint64_t perm)
{
    switch (perm) {
    case BLK_PERM_CONSISTENT_READ:  return "consistent read";
    case BLK_PERM_WRITE:            return "write";
    case BLK_PERM_WRITE_UNCHANGED:  return "write unchanged";
    case BLK_PERM_RESIZE:           return "resize";
    default:                        return "?";
    }
}

char *bdrv_perm_names(uint64_t perm)
{
    GString *s = g_string_new("");

    for (uint64_t bit = 1; bit & BLK_PERM_ALL; bit <<= 1) {
        if (perm & bit) {
            g_string_append_printf(s, "%s%s", s->len ? ", " : "",
                                   bdrv_perm_name(bit));
        }
    }
    return g_string_free(s, false);
}

char *bdrv_child_user_desc(BdrvChild *c)
{
    return c->klass->get_parent_desc ? c->klass->get_parent_desc(c)
                                     : g_strdup("another user");
}

/* Tentative perms of an edge during a refresh. */
typedef struct EdgePerm {
    uint64_t perm, shared;
} EdgePerm;

typedef struct PermUpdate {
    GHashTable *edges;              /* BdrvChild * -> EdgePerm * */
    GPtrArray *checked;             /* nodes whose check_perm succeeded */
} PermUpdate;

static void edge_perm(PermUpdate *u, BdrvChild *c, uint64_t *perm,
                      uint64_t *shared) TSA_REQUIRES(bql)
{
    EdgePerm *e = g_hash_table_lookup(u->edges, c);

    *perm = e ? e->perm : c->perm;
    *shared = e ? e->shared : c->shared_perm;
}

static void cumulative_perm(PermUpdate *u, BlockDriverState *bs,
                            uint64_t *perm, uint64_t *shared)
    GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    BdrvChild *c;

    *perm = 0;
    *shared = BLK_PERM_ALL;
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        uint64_t p, s;

        edge_perm(u, c, &p, &s);
        *perm |= p;
        *shared &= s;
    }
}

/* Refuse if a parent takes what another parent of @bs does not share. */
static bool check_parent_conflicts(PermUpdate *u, BlockDriverState *bs,
                                   Error **errp) GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    BdrvChild *a, *b;

    QLIST_FOREACH(a, &bs->parents, next_parent) {
        uint64_t a_perm, a_shared;

        edge_perm(u, a, &a_perm, &a_shared);
        QLIST_FOREACH(b, &bs->parents, next_parent) {
            uint64_t b_perm, b_shared, conflict;

            if (a == b) {
                continue;
            }
            edge_perm(u, b, &b_perm, &b_shared);
            conflict = a_perm & ~b_shared;
            if (conflict) {
                g_autofree char *user = bdrv_child_user_desc(b);
                uint64_t bit = conflict & -conflict;

                error_setg(errp, "Conflicts with use by %s as '%s', which "
                           "does not allow '%s' on %s", user, b->name,
                           bdrv_perm_name(bit), bs->node_name);
                return false;
            }
        }
    }
    return true;
}

/* @bs and its descendants, each after all of its parents in the list. */
static void collect_subtree(BlockDriverState *bs, GPtrArray *order,
                            GHashTable *seen) GRAPH_RDLOCK
{
    BdrvChild *c;

    if (!g_hash_table_add(seen, bs)) {
        /* Already listed: move it behind this new parent's position. */
        g_ptr_array_remove(order, bs);
    }
    g_ptr_array_add(order, bs);
    QLIST_FOREACH(c, &bs->children, next) {
        collect_subtree(c->bs, order, seen);
    }
}

static void perm_update_abort(PermUpdate *u) GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    for (guint i = u->checked->len; i-- > 0;) {
        BlockDriverState *bs = u->checked->pdata[i];

        if (bs->drv->bdrv_abort_perm_update) {
            bs->drv->bdrv_abort_perm_update(bs);
        }
    }
}

/*
 * Recompute the permissions of @bs and its subtree from its parents' edges,
 * where @new_edge (may be NULL) asks for @perm/@shared instead of what it
 * holds.  All or nothing.
 */
/*
 * The check phase for @node, whose parents' edges are final in @u: no
 * conflict between its parents, no write on a read-only node, the
 * driver agrees (it may take locks, undone by perm_update_abort()); then
 * what @node asks of each of its children goes into @u.  0 or -errno.
 */
static int perm_check_node(PermUpdate *u, BlockDriverState *node,
                           Error **errp) GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    uint64_t cum_perm, cum_shared;
    BdrvChild *c;
    int ret;

    if (!check_parent_conflicts(u, node, errp)) {
        return -EPERM;
    }
    cumulative_perm(u, node, &cum_perm, &cum_shared);
    if ((cum_perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE)) && node->read_only) {
        g_autofree char *names = bdrv_perm_names(
            cum_perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE));

        error_setg(errp, "Block node '%s' is read-only: cannot take "
                   "permission '%s'", node->node_name, names);
        return -EPERM;
    }
    if (node->drv->bdrv_check_perm) {
        ret = node->drv->bdrv_check_perm(node, cum_perm, cum_shared, errp);
        if (ret < 0) {
            return ret;
        }
    }
    g_ptr_array_add(u->checked, node);

    QLIST_FOREACH(c, &node->children, next) {
        EdgePerm *e = g_new(EdgePerm, 1);

        if (node->drv->bdrv_child_perm) {
            node->drv->bdrv_child_perm(node, c, c->role, cum_perm,
                                       cum_shared, &e->perm, &e->shared);
        } else {
            bdrv_default_perms(node, c, c->role, cum_perm, cum_shared,
                               &e->perm, &e->shared);
        }
        g_hash_table_insert(u->edges, c, e);
    }
    return 0;
}

/* The commit phase: every edge and node of @order takes what @u says. */
static void perm_commit(PermUpdate *u, GPtrArray *order)
    GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, u->edges);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        BdrvChild *c = key;
        EdgePerm *e = value;

        c->perm = e->perm;
        c->shared_perm = e->shared;
    }
    for (guint i = 0; i < order->len; i++) {
        BlockDriverState *node = order->pdata[i];

        cumulative_perm(u, node, &node->total_perm, &node->total_shared);
        if (node->drv->bdrv_set_perm) {
            node->drv->bdrv_set_perm(node, node->total_perm,
                                     node->total_shared);
        }
    }
}

int bdrv_refresh_perms(BlockDriverState *bs, BdrvChild *new_edge,
                       uint64_t perm, uint64_t shared, Error **errp)
    GRAPH_RDLOCK
{
    PermUpdate u = {
        .edges = g_hash_table_new_full(NULL, NULL, NULL, g_free),
        .checked = g_ptr_array_new(),
    };
    g_autoptr(GPtrArray) order = g_ptr_array_new();
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    int ret = 0;

    if (new_edge) {
        EdgePerm *e = g_new(EdgePerm, 1);

        e->perm = perm;
        e->shared = shared;
        g_hash_table_insert(u.edges, new_edge, e);
    }
    collect_subtree(bs, order, seen);

    /* Check phase, parents before children; then commit, or undo. */
    for (guint i = 0; i < order->len && ret == 0; i++) {
        ret = perm_check_node(&u, order->pdata[i], errp);
    }
    if (ret == 0) {
        perm_commit(&u, order);
    } else {
        perm_update_abort(&u);
    }
    g_hash_table_destroy(u.edges);
    g_ptr_array_free(u.checked, true);
    return ret;
}

void bdrv_default_perms(BlockDriverState *bs, BdrvChild *c,
                        BdrvChildRole role, uint64_t parent_perm,
                        uint64_t parent_shared, uint64_t *nperm,
                        uint64_t *nshared)
{
    /* Pass the parents' needs through; metadata must always be readable
     * consistently and must not change under us. */
    *nperm = parent_perm;
    *nshared = parent_shared;
    if (role & BDRV_CHILD_METADATA) {
        *nperm |= BLK_PERM_CONSISTENT_READ;
        if (!bs->read_only) {
            *nperm |= BLK_PERM_WRITE;
        }
        *nshared &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    }
    if (bs->force_share) {
        *nshared = BLK_PERM_ALL;
    }
}

int bdrv_child_try_set_perm(BdrvChild *c, uint64_t perm, uint64_t shared,
                            Error **errp)
{
    GLOBAL_STATE_CODE();
    return bdrv_refresh_perms(c->bs, c, perm, shared, errp);
}
