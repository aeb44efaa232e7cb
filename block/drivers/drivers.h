/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The built-in block drivers, registered by bdrv_init().  Private to
 * block/.
 */
#ifndef BLOCK_DRIVERS_H
#define BLOCK_DRIVERS_H

#include "block/block_int.h"

extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_raw;
extern const BlockDriver bdrv_null_co;
extern const BlockDriver bdrv_blkdebug;
extern const BlockDriver bdrv_mirror_top;   /* internal, mirror-top.c */
extern const BlockDriver bdrv_copy_before_write;

/*
 * Register the file driver's per-AioContext hooks (the libaio state of
 * aio=native).  Main thread, once, before any iothread exists.
 */
void bdrv_file_init(void);

#endif /* BLOCK_DRIVERS_H */
