/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The exports the NBD fuzz harnesses run against (see fuzz-nbd.h).
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/nbd.h"
#include "fuzz-nbd.h"
#include "util/main-loop.h"

static char *fuzz_dir;
static char *fuzz_sock;

static void fuzz_nbd_cleanup(void)
{
    unlink(fuzz_sock);
    rmdir(fuzz_dir);
}

static void add_node(const char *name, int64_t size, bool read_zeroes)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "driver", json_object_new_string("null-co"));
    json_object_object_add(o, "node-name", json_object_new_string(name));
    json_object_object_add(o, "size", json_object_new_int64(size));
    json_object_object_add(o, "read-zeroes",
                           json_object_new_boolean(read_zeroes));
    if (!bdrv_open(o, true, &error_abort)) {
        abort();
    }
    json_object_put(o);
}

static void add_export(const char *node, const char *name, bool writable,
                       const char *desc)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "type", json_object_new_string("nbd"));
    json_object_object_add(o, "id", json_object_new_string(name));
    json_object_object_add(o, "node-name", json_object_new_string(node));
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "writable", json_object_new_boolean(writable));
    if (desc) {
        json_object_object_add(o, "description",
                               json_object_new_string(desc));
    }
    if (!blk_exp_add(o, &error_abort)) {
        abort();
    }
    json_object_put(o);
}

void fuzz_nbd_setup(void)
{
    NbdServerOptions opts = { 0 };

    main_loop_init();
    bdrv_init();
    nbd_export_init();
    fuzz_dir = g_dir_make_tmp("fuzz-nbd-XXXXXX", NULL);
    assert(fuzz_dir);
    fuzz_sock = g_strdup_printf("%s/nbd.sock", fuzz_dir);
    opts.unix_path = fuzz_sock;
    if (!nbd_server_start(&opts, &error_abort)) {
        abort();
    }
    atexit(fuzz_nbd_cleanup);
    add_node("n-disk", FUZZ_NBD_DISK_SIZE, true);
    add_node("n-ro", FUZZ_NBD_RO_SIZE, false);
    add_export("n-disk", "disk", true, FUZZ_NBD_DESCRIPTION);
    add_export("n-ro", "ro", false, NULL);
}
