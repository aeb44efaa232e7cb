/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blockdev-create (see include/block/create.h): a job of type "create"
 * that runs a driver's bdrv_co_create.
 *
 * As QEMU: the job runs in the main loop (creating an image is control
 * path work: a few small writes through a node of the caller's choosing,
 * or a file of its own), reports progress 0/1 then 1/1, cannot be paused
 * in the middle of the driver's work, and is not dismissed until the
 * user says so.  A cancel before it runs is honoured; one while the
 * driver runs lets it finish (an image half written is worse than one
 * too many).
 */
#include "util/osdep.h"

#include "block/block-global-state.h"
#include "block/block_int.h"
#include "block/create.h"
#include "block/job-driver.h"
#include "util/main-loop.h"

typedef struct BlockdevCreateJob {
    Job common;                     /* first */
    const BlockDriver *drv;         /* immutable */
    struct json_object *opts;       /* immutable: checked options */
} BlockdevCreateJob;

static int coroutine_fn blockdev_create_run(Job *job, Error **errp)
{
    BlockdevCreateJob *s = container_of(job, BlockdevCreateJob, common);
    int ret;

    GLOBAL_STATE_CODE();        /* the job runs in the main context */
    job_progress_set_remaining(job, 1);
    ret = s->drv->bdrv_co_create(s->opts, errp);
    if (ret == 0) {
        job_progress_update(job, 1);
    }
    return ret;
}

static void blockdev_create_free(Job *job)
{
    BlockdevCreateJob *s = container_of(job, BlockdevCreateJob, common);

    json_object_put(s->opts);
}

static const JobDriver blockdev_create_job_driver = {
    .instance_size = sizeof(BlockdevCreateJob),
    .job_type = "create",
    .run = blockdev_create_run,
    .free = blockdev_create_free,
};

/* "driver" is the only key every driver's create options share. */
static const OptDesc create_common_opts[] = {
    { "driver", OPT_STRING, .required = true, .help = "block driver" },
    { NULL }
};

const OptDesc *bdrv_create_schema(void)
{
    static OptDesc *schema;
    GArray *a;

    GLOBAL_STATE_CODE();
    if (schema) {
        return schema;
    }
    a = g_array_new(true, true, sizeof(OptDesc));
    g_array_append_val(a, create_common_opts[0]);
    for (const char *const *name = bdrv_driver_names(); *name; name++) {
        const BlockDriver *drv = bdrv_find_driver(*name);

        for (const OptDesc *d = drv->create_opts; d && d->name; d++) {
            bool have = false;

            for (guint i = 0; i < a->len; i++) {
                have |= !strcmp(g_array_index(a, OptDesc, i).name, d->name);
            }
            if (!have) {
                OptDesc any = {
                    .name = d->name, .type = OPT_ANY,
                    .help = "driver-specific (see the driver)",
                };

                g_array_append_val(a, any);
            }
        }
    }
    schema = (OptDesc *)g_array_free(a, false);
    return schema;
}

bool blockdev_create(const char *job_id, struct json_object *options,
                     Error **errp)
{
    const OptDesc *schemas[3] = { create_common_opts, NULL, NULL };
    struct json_object *opts = NULL;
    const BlockDriver *drv;
    BlockdevCreateJob *s;
    const char *driver;

    GLOBAL_STATE_CODE();
    if (!json_object_is_type(options, json_type_object)) {
        error_setg(errp, "'options': expected object");
        return false;
    }
    /* A private copy: the checker normalises what it checks. */
    if (json_object_deep_copy(options, &opts, NULL) < 0) {
        error_setg(errp, "Cannot copy the options");
        return false;
    }
    driver = json_object_get_string(json_object_object_get(opts, "driver"));
    drv = driver ? bdrv_find_driver(driver) : NULL;
    if (drv && (drv->internal || !drv->bdrv_co_create)) {
        error_setg(errp, "Driver does not support blockdev-create");
        goto fail;
    }
    schemas[1] = drv ? drv->create_opts : NULL;
    if (!opts_check(opts, schemas, "options", OPTS_STRICT_TYPES, errp)) {
        goto fail;
    }
    if (!drv) {
        error_setg(errp, "'options.driver': unknown driver '%s'", driver);
        goto fail;
    }
    s = (BlockdevCreateJob *)job_create(job_id, &blockdev_create_job_driver,
                                        NULL, main_context(),
                                        JOB_DEFAULT | JOB_MANUAL_DISMISS,
                                        NULL, NULL, errp);
    if (!s) {
        goto fail;
    }
    s->drv = drv;
    s->opts = opts;
    job_start(&s->common);
    return true;

fail:
    json_object_put(opts);
    return false;
}
