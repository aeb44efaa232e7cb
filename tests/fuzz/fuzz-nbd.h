/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Set-up shared by the NBD fuzz harnesses: the block layer, an NBD server
 * (listening on a UNIX socket nobody connects to: exports need a running
 * server) and two null-co exports, created once per process:
 *
 *   "disk"  writable, FUZZ_NBD_DISK_SIZE bytes, reads return zeroes, with
 *           a description
 *   "ro"    read-only, FUZZ_NBD_RO_SIZE bytes (over NBD_MAX_BUFFER, so
 *           that a READ can be in range and still too large)
 */
#ifndef TESTS_FUZZ_FUZZ_NBD_H
#define TESTS_FUZZ_FUZZ_NBD_H

#include "block/export/nbd/nbd-int.h"

#define FUZZ_NBD_DISK_SIZE      (1024 * 1024 + 512)
#define FUZZ_NBD_RO_SIZE        (48 * 1024 * 1024)
#define FUZZ_NBD_DESCRIPTION    "fuzz target"

void fuzz_nbd_setup(void);

#endif /* TESTS_FUZZ_FUZZ_NBD_H */
