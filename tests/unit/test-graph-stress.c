/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Graph changes under I/O: coroutines in two iothreads write and read back
 * random data through BlockBackends on a file node and on a null-co node,
 * while the main loop keeps inserting and removing a filter node above them
 * and moving them between iothreads.  Every byte is verified, during the
 * run and against the file at the end.
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "block-helpers.h"
#include "block/block-backend.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"

#define WORKERS_PER_THREAD  4
#define NUM_WORKERS         (2 * WORKERS_PER_THREAD)
#define STRIPE_BYTES        (64 * 1024)
#define BLOCK_BYTES         4096
#define BLOCKS_PER_STRIPE   (STRIPE_BYTES / BLOCK_BYTES)

/* --- A pass-through filter --------------------------------------------- */

static const OptDesc filter_opts[] = {
    { "file", OPT_NODE, .required = true },
    { NULL }
};

static int filter_open(BlockDriverState *bs, struct json_object *options,
                       int flags, Error **errp)
{
    GLOBAL_STATE_CODE();
    if (!bdrv_open_child(options, "file", bs,
                         BDRV_CHILD_FILTERED | BDRV_CHILD_PRIMARY,
                         false, errp)) {
        return -EINVAL;
    }
    /* Read the new edge; the main loop is the graph's only writer. */
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    bs->total_bytes = bdrv_get_total_bytes(bs->file->bs);
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK
filter_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
              IOVec *qiov, BdrvRequestFlags flags)
{
    return bdrv_co_preadv(bs->file, offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
filter_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
               IOVec *qiov, BdrvRequestFlags flags)
{
    return bdrv_co_pwritev(bs->file, offset, bytes, qiov, flags);
}

static const BlockDriver filter_driver = {
    .format_name = "test-filter",
    .opts = filter_opts,
    .is_filter = true,
    .bdrv_open = filter_open,
    .bdrv_co_preadv = filter_preadv,
    .bdrv_co_pwritev = filter_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
};

/* --- Workers ----------------------------------------------------------- */

typedef struct Target {
    const char *name;           /* node name */
    BlockBackend *blk;
    bool stores_data;           /* false: null-co, reads are zeroes */
    uint8_t *shadow;            /* expected content; each worker its stripe */
} Target;

typedef struct Worker {
    Target *target;
    int index;                  /* stripe */
    int ops;
    uint32_t seed;
    int errors;                 /* atomic */
    int done;                   /* atomic */
} Worker;

static uint32_t next_rand(uint32_t *seed)
{
    *seed = *seed * 1103515245 + 12345;
    return *seed >> 8;
}

static void coroutine_fn worker_entry(void *opaque)
{
    Worker *w = opaque;
    Target *t = w->target;
    uint8_t *buf = blockd_memalign(4096, BLOCK_BYTES);
    uint8_t *check = blockd_memalign(4096, BLOCK_BYTES);
    int64_t stripe = (int64_t)w->index * STRIPE_BYTES;

    for (int i = 0; i < w->ops; i++) {
        int64_t off = stripe +
                      (next_rand(&w->seed) % BLOCKS_PER_STRIPE) * BLOCK_BYTES;
        uint8_t *expect = t->shadow + off;
        int ret;

        if (next_rand(&w->seed) % 3) {
            memset(buf, (w->index << 4) ^ i, BLOCK_BYTES);
            buf[0] = i;
            ret = blk_co_pwrite(t->blk, off, BLOCK_BYTES, buf, 0);
            if (ret < 0) {
                qatomic_inc(&w->errors);
                continue;
            }
            if (t->stores_data) {
                memcpy(expect, buf, BLOCK_BYTES);
            }
        }
        ret = blk_co_pread(t->blk, off, BLOCK_BYTES, check, 0);
        if (ret < 0 ||
            (t->stores_data && memcmp(check, expect, BLOCK_BYTES)) ||
            (!t->stores_data && check[0] != 0)) {
            qatomic_inc(&w->errors);
        }
    }
    blockd_vfree(buf);
    blockd_vfree(check);
    qatomic_set(&w->done, 1);
    aio_wait_kick();
}

static void start_worker_bh(void *opaque)
{
    co_enter(co_create(worker_entry, opaque));
}

/* --- Graph changes ------------------------------------------------------ */

static void insert_and_remove_filter(const char *node_name)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *base = bdrv_find_node(node_name);
    BlockDriverState *filter = open_node(&error_abort,
        "{\"driver\": \"test-filter\", \"node-name\": \"flt-%s\", "
        "\"file\": \"%s\"}", node_name, node_name);

    g_assert_true(bdrv_get_aio_context(filter) == bdrv_get_aio_context(base));
    g_assert_cmpint(bdrv_replace_node(base, filter, &error_abort), ==, 0);
    g_assert_cmpint(bdrv_replace_node(filter, base, &error_abort), ==, 0);
    bdrv_unref(filter);
}

static void test_io_under_graph_changes(void)
{
    int64_t size = (int64_t)NUM_WORKERS * STRIPE_BYTES;
    g_autofree char *path = make_temp_image("blockd-stress-XXXXXX", size,
                                            NULL, 0);
    IOThread *io[2];
    AioContext *ctxs[3];
    Target targets[2] = {
        { .name = "file0", .stores_data = true },
        { .name = "null0", .stores_data = false },
    };
    Worker workers[2][NUM_WORKERS];
    int ops = 300 * stress_iterations();
    int round = 0;
    BlockDriverState *nodes[2];
    bool all_done;

    GLOBAL_STATE_CODE();
    nodes[0] = open_node(&error_abort, "{\"driver\": \"file\", \"node-name\": "
                         "\"file0\", \"filename\": \"%s\"}", path);
    nodes[1] = open_node(&error_abort, "{\"driver\": \"null-co\", "
                         "\"node-name\": \"null0\", \"size\": 524288, "
                         "\"read-zeroes\": true}");
    g_assert_cmpint(bdrv_get_total_bytes(nodes[1]), ==, size);

    io[0] = iothread_create("stress0", 0, &error_abort);
    io[1] = iothread_create("stress1", IOTHREAD_POLL_MAX_NS_DEFAULT,
                            &error_abort);
    ctxs[0] = main_context();
    ctxs[1] = iothread_get_aio_context(io[0]);
    ctxs[2] = iothread_get_aio_context(io[1]);

    for (int t = 0; t < 2; t++) {
        targets[t].shadow = g_malloc0(size);
        targets[t].blk = new_backend(targets[t].name, main_context(),
                                     BLK_PERM_CONSISTENT_READ |
                                     BLK_PERM_WRITE, nodes[t]);
        blk_set_allow_aio_context_change(targets[t].blk, true);
        for (int i = 0; i < NUM_WORKERS; i++) {
            workers[t][i] = (Worker) {
                .target = &targets[t], .index = i, .ops = ops,
                .seed = 7919 * (i + 1) + t,
            };
            aio_bh_schedule_oneshot(ctxs[1 + i % 2], start_worker_bh,
                                    &workers[t][i]);
        }
    }

    /* Change the graph until every worker has finished. */
    do {
        for (int t = 0; t < 2; t++) {
            insert_and_remove_filter(targets[t].name);
            g_assert_cmpint(bdrv_try_change_aio_context(
                                nodes[t], ctxs[(round + t) % 3], NULL,
                                &error_abort), ==, 0);
            g_assert_true(blk_get_aio_context(targets[t].blk) ==
                          ctxs[(round + t) % 3]);
        }
        round++;
        all_done = true;
        for (int t = 0; t < 2; t++) {
            for (int i = 0; i < NUM_WORKERS; i++) {
                all_done &= qatomic_read(&workers[t][i].done);
            }
        }
        /* Let the workers run between changes. */
        aio_poll(main_context(), false);
    } while (!all_done);
    g_test_message("%d rounds of graph changes under I/O", round);
    g_assert_cmpint(round, >, 1);

    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < NUM_WORKERS; i++) {
            g_assert_cmpint(workers[t][i].errors, ==, 0);
        }
    }

    /* The file holds exactly what the workers last wrote. */
    for (int t = 0; t < 2; t++) {
        g_assert_cmpint(bdrv_try_change_aio_context(nodes[t], main_context(),
                                                    NULL, &error_abort), ==, 0);
    }
    g_assert_cmpint(blk_flush(targets[0].blk), ==, 0);
    {
        uint8_t *disk = g_malloc(size);
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(pread(fd, disk, size, 0), ==, size);
        g_assert_true(memcmp(disk, targets[0].shadow, size) == 0);
        close(fd);
        g_free(disk);
    }

    for (int t = 0; t < 2; t++) {
        blk_unref(targets[t].blk);
        bdrv_unref(nodes[t]);
        g_free(targets[t].shadow);
    }
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);
    unlink(path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    bdrv_register(&filter_driver);
    g_test_add_func("/graph-stress/io-under-filter-insertion-and-moves",
                    test_io_under_graph_changes);
    return g_test_run();
}
