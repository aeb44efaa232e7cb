/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blockdev-create: creating an image (a file, a qcow2 image on a node) as
 * a job of type "create", as QEMU does.  The options are checked against
 * the driver's create schema (BlockDriver.create_opts) before the job
 * exists; the job runs the driver's bdrv_co_create in a coroutine in the
 * main loop and concludes, waiting for job-dismiss (QEMU's creation jobs
 * are not dismissed automatically), with the driver's error if any.
 *
 * Main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef BLOCK_CREATE_H
#define BLOCK_CREATE_H

#include "block/block-common.h"
#include "util/opts.h"

/*
 * The argument schema of blockdev-create's "options": the common key
 * "driver" and the create options of every driver that can create.
 * Built on first use; lives as long as the process.
 */
const OptDesc *bdrv_create_schema(void) TSA_REQUIRES(bql);

/*
 * Start job @job_id creating what @options (checked against the schema)
 * describe.  False with @errp set, and no job, if the driver cannot
 * create or the options are wrong for it.
 */
bool blockdev_create(const char *job_id, struct json_object *options,
                     Error **errp) TSA_REQUIRES(bql);

#endif /* BLOCK_CREATE_H */
