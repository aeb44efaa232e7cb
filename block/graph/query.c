/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the monitor asks of a node: query-named-block-nodes (the fields of
 * QEMU's BlockDeviceInfo that apply to blockd; no throttling, encryption
 * or backing chains yet: those report QEMU's neutral values so that
 * clients parsing them keep working), and who uses it (its parents and
 * references, for blockdev-del and x-blockdev-set-iothread), so that the
 * QMP commands need not read BlockDriverState's fields.
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/main-loop.h"

static int64_t allocated_size(BlockDriverState *bs)
    GRAPH_RDLOCK TSA_REQUIRES(bql)
{
    if (bs->drv->bdrv_get_allocated_file_size) {
        return bs->drv->bdrv_get_allocated_file_size(bs);
    }
    if (bs->file) {
        return allocated_size(bs->file->bs);
    }
    return -ENOTSUP;
}

static void add_int(struct json_object *o, const char *key, int64_t v)
{
    json_object_object_add(o, key, json_object_new_int64(v));
}

static void add_bool(struct json_object *o, const char *key, bool v)
{
    json_object_object_add(o, key, json_object_new_boolean(v));
}

static void add_str(struct json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, json_object_new_string(v));
}

struct json_object *bdrv_query_info(BlockDriverState *bs)
{
    struct json_object *info = json_object_new_object();
    struct json_object *image = json_object_new_object();
    struct json_object *cache = json_object_new_object();
    static const char *const throttle_keys[] = {
        "bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr",
    };
    int64_t actual;

    GLOBAL_STATE_CODE();
    add_str(info, "node-name", bs->node_name);
    add_str(info, "drv", bs->drv->format_name);
    add_bool(info, "ro", bs->read_only);
    add_bool(info, "encrypted", false);
    add_str(info, "file", bs->filename);
    add_int(info, "backing_file_depth", 0);
    add_str(info, "detect_zeroes", bdrv_detect_zeroes_names[bs->detect_zeroes]);
    for (size_t i = 0; i < G_N_ELEMENTS(throttle_keys); i++) {
        add_int(info, throttle_keys[i], 0);
    }
    add_int(info, "write_threshold", 0);

    add_bool(cache, "writeback", true);
    add_bool(cache, "direct", bs->open_flags & BDRV_O_NOCACHE);
    add_bool(cache, "no-flush", bs->open_flags & BDRV_O_NO_FLUSH);
    json_object_object_add(info, "cache", cache);

    add_str(image, "filename", bs->filename);
    add_str(image, "format", bs->drv->format_name);
    add_int(image, "virtual-size", bdrv_get_total_bytes(bs));
    actual = allocated_size(bs);
    if (actual >= 0) {
        add_int(image, "actual-size", actual);
    }
    add_bool(image, "dirty-flag", false);
    json_object_object_add(info, "image", image);

    if (bs->drv->bdrv_query_info) {
        bs->drv->bdrv_query_info(bs, info);
    }
    return info;
}

int bdrv_get_refcnt(BlockDriverState *bs)
{
    GLOBAL_STATE_CODE();
    return bs->refcnt;
}

BlockDriverState *bdrv_file_bs(BlockDriverState *bs)
{
    return bs->file ? bs->file->bs : NULL;
}

char *bdrv_parents_desc(BlockDriverState *bs, bool backends_only)
{
    GString *s;
    BdrvChild *c;

    if (!bdrv_has_parents(bs)) {
        return NULL;
    }
    s = g_string_new(NULL);
    QLIST_FOREACH(c, &bs->parents, next_parent) {
        g_autofree char *user = NULL;

        if (backends_only && c->klass->parent_is_bds) {
            continue;
        }
        user = bdrv_child_user_desc(c);
        g_string_append_printf(s, "%s%s as '%s'", s->len ? ", " : "",
                               user, c->name);
    }
    if (!s->len) {
        g_string_free(s, true);
        return NULL;
    }
    return g_string_free(s, false);
}
