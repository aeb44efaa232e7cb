/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Types and constants of the block layer that every part of it shares:
 * request flags, permissions, child roles, block-status flags.  No
 * functions: those are in block-global-state.h (main loop) and block-io.h
 * (any thread).
 */
#ifndef BLOCK_COMMON_H
#define BLOCK_COMMON_H

#include <json-c/json.h>

#include "util/osdep.h"
#include "util/aio.h"
#include "util/error.h"
#include "util/iov.h"
#include "block/graph-lock.h"
#include "util/main-loop.h"

typedef struct BlockDriver BlockDriver;
typedef struct BlockDriverState BlockDriverState;
typedef struct BdrvChild BdrvChild;
typedef struct BdrvChildClass BdrvChildClass;
typedef struct BlockBackend BlockBackend;

#define BDRV_SECTOR_BITS   9
#define BDRV_SECTOR_SIZE   (1ULL << BDRV_SECTOR_BITS)

/* Largest request the block layer accepts, in bytes (as QEMU). */
#define BDRV_REQUEST_MAX_BYTES  (INT32_MAX & ~(int64_t)(BDRV_SECTOR_SIZE - 1))
/* Largest image size. */
#define BDRV_MAX_LENGTH         (INT64_MAX & ~(int64_t)(BDRV_SECTOR_SIZE - 1))

/* Flags of I/O requests. */
typedef enum BdrvRequestFlags {
    BDRV_REQ_FUA            = 1 << 0,   /* write through to stable storage */
    BDRV_REQ_MAY_UNMAP      = 1 << 1,   /* zeroes may deallocate */
    BDRV_REQ_NO_FALLBACK    = 1 << 2,   /* zeroes: fail fast rather than
                                           write explicit zeroes */
    BDRV_REQ_SERIALISING    = 1 << 3,   /* internal: read-modify-write */
    BDRV_REQ_ZERO_WRITE     = 1 << 4,   /* internal: write of zeroes */
    BDRV_REQ_MASK           = (1 << 5) - 1,
} BdrvRequestFlags;

/* Open flags of nodes (bs->open_flags). */
enum {
    BDRV_O_RDWR         = 1 << 0,
    BDRV_O_NOCACHE      = 1 << 1,   /* cache.direct: O_DIRECT */
    BDRV_O_NO_FLUSH     = 1 << 2,   /* cache.no-flush: flushes do nothing */
    BDRV_O_UNMAP        = 1 << 3,   /* discard=unmap */
    BDRV_O_AUTO_RDONLY  = 1 << 4,   /* auto-read-only */
};

/*
 * Permissions, as QEMU's: what a parent does with a child (perm) and what
 * it lets other parents of the same child do (shared).
 */
enum {
    BLK_PERM_CONSISTENT_READ    = 1 << 0,
    BLK_PERM_WRITE              = 1 << 1,
    BLK_PERM_WRITE_UNCHANGED    = 1 << 2,
    BLK_PERM_RESIZE             = 1 << 3,
    BLK_PERM_ALL                = (1 << 4) - 1,
    BLK_PERM_COUNT              = 4,
};

/* "consistent read", "write", "write unchanged", "resize" */
const char *bdrv_perm_name(uint64_t single_perm);
/* Comma-separated names of the bits in @perm (g_free the result). */
char *bdrv_perm_names(uint64_t perm);

/* Role of a child edge: what the parent uses the child for. */
typedef enum BdrvChildRole {
    BDRV_CHILD_DATA       = 1 << 0,   /* guest-visible data */
    BDRV_CHILD_METADATA   = 1 << 1,   /* format metadata */
    BDRV_CHILD_FILTERED   = 1 << 2,   /* the filtered child of a filter */
    BDRV_CHILD_COW        = 1 << 3,   /* backing file */
    BDRV_CHILD_PRIMARY    = 1 << 4,   /* the child ("file") whose data and
                                         metadata make up the node */
    BDRV_CHILD_IMAGE      = BDRV_CHILD_DATA | BDRV_CHILD_METADATA,
} BdrvChildRole;

/* Block status flags (bdrv_co_block_status). */
enum {
    BDRV_BLOCK_DATA         = 1 << 0,   /* data is read from the node */
    BDRV_BLOCK_ZERO         = 1 << 1,   /* reads as zero */
    BDRV_BLOCK_OFFSET_VALID = 1 << 2,   /* *map is valid */
    BDRV_BLOCK_ALLOCATED    = 1 << 3,   /* allocated in this layer */
    BDRV_BLOCK_RECURSE      = 1 << 4,   /* ask the file child */
};

typedef enum BlockdevDetectZeroes {
    BDRV_DETECT_ZEROES_OFF,
    BDRV_DETECT_ZEROES_ON,
    BDRV_DETECT_ZEROES_UNMAP,
} BlockdevDetectZeroes;

extern const char *const bdrv_detect_zeroes_names[];   /* off, on, unmap */

/* Limits of a node, set at open and by refresh_limits.  BQL (drained). */
typedef struct BlockLimits {
    uint32_t request_alignment;     /* bytes; reads/writes are padded */
    uint32_t min_mem_alignment;     /* buffer alignment for O_DIRECT */
    uint64_t max_transfer;          /* 0: no limit beyond the global one */
    uint64_t opt_transfer;
    uint32_t pwrite_zeroes_alignment;
    uint32_t pdiscard_alignment;
    uint64_t max_pwrite_zeroes;
    uint64_t max_pdiscard;
} BlockLimits;

#endif /* BLOCK_COMMON_H */
