/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals of the file driver shared by its files: file-posix.c (the
 * driver: open, I/O, size, block status), linux-aio.c (aio=native) and
 * file-lock.c (OFD image locking).  Private to block/.
 */
#ifndef BLOCK_FILE_POSIX_INT_H
#define BLOCK_FILE_POSIX_INT_H

#include <sys/uio.h>

#include "block/block_int.h"

typedef enum FileAioMode {
    FILE_AIO_THREADS,
    FILE_AIO_NATIVE,
    FILE_AIO_IO_URING,
} FileAioMode;

typedef struct BDRVFileState {
    int fd;                     /* immutable */
    char *filename;             /* immutable */
    FileAioMode aio;            /* immutable */
    bool is_blockdev;           /* immutable */
    bool use_direct;            /* immutable: opened with O_DIRECT */
    uint32_t req_align;         /* immutable: O_DIRECT offset/length unit */
    uint32_t buf_align;         /* immutable: O_DIRECT memory alignment */

    /* Image locking.  BQL */
    bool use_lock;              /* immutable */
    uint64_t perm;              /* committed permissions */
    uint64_t shared_perm;       /* committed shared mask */

    /* Features found missing at run time.  atomic, any thread */
    bool no_zero_range;         /* FALLOC_FL_ZERO_RANGE unsupported */
    bool no_punch_hole;         /* FALLOC_FL_PUNCH_HOLE unsupported */
    /*
     * A flush failed: the kernel may have dropped dirty pages that it
     * could not write, so a later successful fdatasync() would prove
     * nothing.  Every later flush fails.  atomic
     */
    bool flush_failed;
} BDRVFileState;

/* --- One kernel operation, in any of the three modes ------------------- */

typedef enum FileOp {
    FILE_OP_READ,
    FILE_OP_WRITE,
    FILE_OP_FLUSH,
    FILE_OP_FALLOCATE,
    FILE_OP_BLKDISCARD,
    FILE_OP_TRUNCATE,
} FileOp;

/* One operation; lives on the stack of the coroutine that waits for it. */
typedef struct FileIo {
    FileOp op;
    int fd;
    int64_t offset;
    int64_t len;                /* fallocate, discard, truncate */
    int mode;                   /* fallocate mode */
    int rw_flags;               /* RWF_* for reads and writes */
    struct iovec *iov;
    int niov;
} FileIo;

/* --- aio=native (linux-aio.c) -------------------------------------------- */

typedef struct LaioState LaioState;

/*
 * The libaio state of @ctx, created if need be.  0 or -errno.  @ctx's
 * home thread.
 */
int laio_get(AioContext *ctx, LaioState **out);
/*
 * Run the read or write @io through the calling thread's libaio state and
 * wait for it.  The number of bytes moved, or -errno.
 */
int coroutine_fn laio_co_submit(FileIo *io);

/* --- Image locking (file-lock.c): the driver's permission callbacks ------ */

int GRAPH_RDLOCK file_check_perm(BlockDriverState *bs, uint64_t perm,
                                 uint64_t shared, Error **errp);
void GRAPH_RDLOCK file_set_perm(BlockDriverState *bs, uint64_t perm,
                                uint64_t shared);
void GRAPH_RDLOCK file_abort_perm_update(BlockDriverState *bs);
/* blockdev-create (file-create.c): QEMU's BlockdevCreateOptionsFile. */
extern const OptDesc file_create_opts[];
int coroutine_fn file_co_create(struct json_object *options, Error **errp);

/*
 * Lock the image @fd being created for write and resize, as QEMU does,
 * and fail if another process uses it ("Failed to get ... lock").  The
 * locks go with the fd.  0 or -errno with @errp set.
 */
int file_lock_for_create(int fd, const char *filename, Error **errp);
/* True if the file system supports OFD locks on @fd. */
bool file_ofd_locks_work(int fd);

#endif /* BLOCK_FILE_POSIX_INT_H */
