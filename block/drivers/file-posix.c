/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The "file" driver: a node backed by a regular file or a block device.
 *
 * Requests go to the kernel in one of three ways, chosen per node with
 * aio=: io_uring SQEs on the ring of the thread that runs the request
 * (aio_co_submit_sqe(), the default), libaio with one io_context_t per
 * AioContext (aio=native, O_DIRECT only: linux-aio.c), or blocking calls
 * on the thread pool (aio=threads).  Whatever the mode, reads and writes
 * go through one loop (file_co_rw) that resubmits short transfers,
 * zero-fills reads that hit the end of the file, and bounces vectors that
 * O_DIRECT cannot take.  Flushes and fallocate() use the ring in io_uring
 * mode and the thread pool otherwise; ftruncate() and BLKDISCARD always
 * run on the thread pool.
 *
 * Image locking (OFD byte-range locks, compatible with QEMU's) is the
 * driver's permission callbacks, in file-lock.c; file-posix-int.h holds
 * what the three files share.
 *
 * Invariants:
 *  - The fd and everything probed at open are immutable until close.
 *  - I/O functions return -errno and never allocate an Error.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "block/block_int.h"
#include "block/drivers/drivers.h"
#include "block/drivers/file-posix-int.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/main-loop.h"
#include "util/thread-pool.h"

static const char *const file_aio_names[] = {
    "threads", "native", "io_uring", NULL
};

typedef enum FileLocking {
    FILE_LOCKING_AUTO,
    FILE_LOCKING_ON,
    FILE_LOCKING_OFF,
} FileLocking;

static const char *const file_locking_names[] = { "auto", "on", "off", NULL };

/* --- One kernel operation, in any of the three modes ------------------- */

/* Blocking form, for the thread pool: returns bytes or 0, or -errno. */
static int file_worker(void *opaque)
{
    FileIo *io = opaque;
    ssize_t ret;

    do {
        switch (io->op) {
        case FILE_OP_READ:
            ret = preadv2(io->fd, io->iov, io->niov, io->offset,
                          io->rw_flags);
            break;
        case FILE_OP_WRITE:
            ret = pwritev2(io->fd, io->iov, io->niov, io->offset,
                           io->rw_flags);
            break;
        case FILE_OP_FLUSH:
            ret = fdatasync(io->fd);
            break;
        case FILE_OP_FALLOCATE:
            ret = fallocate(io->fd, io->mode, io->offset, io->len);
            break;
        case FILE_OP_BLKDISCARD: {
            uint64_t range[2] = { io->offset, io->len };

            ret = ioctl(io->fd, BLKDISCARD, range);
            break;
        }
        case FILE_OP_TRUNCATE:
            ret = ftruncate(io->fd, io->offset);
            break;
        default:
            g_assert_not_reached();
        }
    } while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : (int)ret;
}

static void file_prep_sqe(struct io_uring_sqe *sqe, void *opaque)
{
    FileIo *io = opaque;

    switch (io->op) {
    case FILE_OP_READ:
        io_uring_prep_readv(sqe, io->fd, io->iov, io->niov, io->offset);
        sqe->rw_flags = io->rw_flags;
        break;
    case FILE_OP_WRITE:
        io_uring_prep_writev(sqe, io->fd, io->iov, io->niov, io->offset);
        sqe->rw_flags = io->rw_flags;
        break;
    case FILE_OP_FLUSH:
        io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
        break;
    case FILE_OP_FALLOCATE:
        io_uring_prep_fallocate(sqe, io->fd, io->mode, io->offset, io->len);
        break;
    default:
        g_assert_not_reached();
    }
}

/* --- Dispatch ------------------------------------------------------------- */

/* Run @io in @s's mode; the result of the system call, or -errno. */
static int coroutine_fn file_co_submit(BDRVFileState *s, FileIo *io)
{
    bool rw = io->op == FILE_OP_READ || io->op == FILE_OP_WRITE;

    io->fd = s->fd;
    switch (s->aio) {
    case FILE_AIO_IO_URING:
        if (io->op != FILE_OP_BLKDISCARD && io->op != FILE_OP_TRUNCATE) {
            return aio_co_submit_sqe(file_prep_sqe, io, NULL);
        }
        break;
    case FILE_AIO_NATIVE:
        if (rw) {
            return laio_co_submit(io);
        }
        break;
    case FILE_AIO_THREADS:
        break;
    }
    return thread_pool_submit_co(file_worker, io);
}

/* --- Reads and writes ------------------------------------------------------ */

/*
 * Transfer @bytes at @offset from/to @qiov (whose buffers O_DIRECT can
 * take), resubmitting the rest after a short transfer.  A read that
 * reaches the end of the file zero-fills the rest; a write that makes no
 * progress fails with -ENOSPC.
 */
static int coroutine_fn file_co_rw_aligned(BDRVFileState *s, bool write,
                                           int64_t offset, int64_t bytes,
                                           IOVec *qiov, int rw_flags)
{
    IOVec rest = { 0 };
    bool have_rest = false;
    struct iovec *iov = qiov->iov;
    int niov = qiov->niov;
    int64_t done = 0;
    int ret;

    if ((int64_t)qiov->size != bytes) {
        iovec_init(&rest, qiov->niov);
        iovec_concat(&rest, qiov, 0, bytes);
        have_rest = true;
        iov = rest.iov;
        niov = rest.niov;
    }
    for (;;) {
        FileIo io = {
            .op = write ? FILE_OP_WRITE : FILE_OP_READ,
            .offset = offset + done,
            .rw_flags = rw_flags,
            .iov = iov,
            .niov = MIN(niov, IOV_MAX),   /* the rest comes as a short one */
        };

        ret = file_co_submit(s, &io);
        if (ret == -EINTR) {
            continue;
        }
        if (ret < 0) {
            break;
        }
        if (ret == 0) {
            if (write) {
                ret = -ENOSPC;
            } else {
                /* End of file: what lies beyond reads as zeroes. */
                iovec_memset(qiov, done, 0, bytes - done);
            }
            break;
        }
        done += ret;
        if (done >= bytes) {
            ret = 0;
            break;
        }
        if (!write && s->use_direct && !IS_ALIGNED(done, s->req_align)) {
            /* O_DIRECT stops short only at the end of the file. */
            iovec_memset(qiov, done, 0, bytes - done);
            ret = 0;
            break;
        }
        /* Short transfer: go on with what is left. */
        if (have_rest) {
            iovec_destroy(&rest);
        }
        iovec_init(&rest, niov);
        iovec_concat(&rest, qiov, done, bytes - done);
        have_rest = true;
        iov = rest.iov;
        niov = rest.niov;
    }
    if (have_rest) {
        iovec_destroy(&rest);
    }
    return ret;
}

/*
 * True if O_DIRECT cannot use @qiov's buffers as they are.  The generic
 * layer already hands us buffers aligned to min_mem_alignment; what it
 * cannot know is that one system call takes at most IOV_MAX elements,
 * and splitting a longer vector there could leave an unaligned remainder.
 */
static bool file_needs_bounce(BDRVFileState *s, IOVec *qiov)
{
    return s->use_direct &&
           (qiov->niov > IOV_MAX || !iovec_is_aligned(qiov, s->buf_align));
}

static int coroutine_fn file_co_rw(BlockDriverState *bs, bool write,
                                   int64_t offset, int64_t bytes,
                                   IOVec *qiov, BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int rw_flags = (write && (flags & BDRV_REQ_FUA)) ? RWF_DSYNC : 0;
    IOVec bounce;
    void *buf;
    int ret;

    IO_CODE();
    assert((int64_t)qiov->size >= bytes);
    if (!file_needs_bounce(s, qiov)) {
        return file_co_rw_aligned(s, write, offset, bytes, qiov, rw_flags);
    }

    buf = blockd_memalign(MAX(s->buf_align, s->req_align), bytes);
    if (write) {
        iovec_to_buf(qiov, 0, buf, bytes);
    }
    iovec_init_buf(&bounce, buf, bytes);
    ret = file_co_rw_aligned(s, write, offset, bytes, &bounce, rw_flags);
    if (!write && ret == 0) {
        iovec_from_buf(qiov, 0, buf, bytes);
    }
    blockd_vfree(buf);
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
file_co_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
               IOVec *qiov, BdrvRequestFlags flags)
{
    return file_co_rw(bs, false, offset, bytes, qiov, flags);
}

static int coroutine_fn GRAPH_RDLOCK
file_co_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                IOVec *qiov, BdrvRequestFlags flags)
{
    return file_co_rw(bs, true, offset, bytes, qiov, flags);
}

/* --- Flush, zeroes, discard ------------------------------------------------ */

static int coroutine_fn GRAPH_RDLOCK
file_co_flush_to_disk(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    FileIo io = { .op = FILE_OP_FLUSH };
    int ret;

    IO_CODE();
    if (qatomic_read(&s->flush_failed)) {
        return -EIO;
    }
    ret = file_co_submit(s, &io);
    if (ret < 0 && !qatomic_xchg(&s->flush_failed, true)) {
        error_report("Flushing '%s' failed (%s): the page cache may have "
                     "lost writes; every later flush fails", s->filename,
                     strerror(-ret));
    }
    return ret < 0 ? ret : 0;
}

static bool file_errno_unsupported(int ret)
{
    return ret == -EOPNOTSUPP || ret == -ENOSYS || ret == -ENOTTY;
}

/* fallocate(@mode) on the range; -ENOTSUP if the file system cannot. */
static int coroutine_fn file_co_fallocate(BDRVFileState *s, int mode,
                                          int64_t offset, int64_t bytes)
{
    FileIo io = {
        .op = FILE_OP_FALLOCATE, .mode = mode, .offset = offset, .len = bytes,
    };
    int ret = file_co_submit(s, &io);

    return file_errno_unsupported(ret) ? -ENOTSUP : ret;
}

/*
 * Punching a hole or zeroing a range both leave the range reading as
 * zeroes, in files and (since Linux 4.9) block devices alike; without
 * either, -ENOTSUP lets the generic layer write zeroes instead.  On a
 * block device, ZERO_RANGE may have the kernel write the zeroes itself,
 * which BDRV_REQ_NO_FALLBACK callers do not want; punching a hole there
 * never falls back.
 */
static int coroutine_fn GRAPH_RDLOCK
file_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int ret;

    IO_CODE();
    if ((flags & BDRV_REQ_MAY_UNMAP) && !qatomic_read(&s->no_punch_hole)) {
        ret = file_co_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                offset, bytes);
        if (ret != -ENOTSUP) {
            return ret;
        }
        qatomic_set(&s->no_punch_hole, true);
    }
    if (s->is_blockdev && (flags & BDRV_REQ_NO_FALLBACK)) {
        return -ENOTSUP;
    }
    if (!qatomic_read(&s->no_zero_range)) {
        ret = file_co_fallocate(s, FALLOC_FL_ZERO_RANGE, offset, bytes);
        if (ret != -ENOTSUP) {
            return ret;
        }
        qatomic_set(&s->no_zero_range, true);
    }
    return -ENOTSUP;
}

static int coroutine_fn GRAPH_RDLOCK
file_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVFileState *s = bs->opaque;
    FileIo io = { .op = FILE_OP_BLKDISCARD, .offset = offset, .len = bytes };
    int ret;

    IO_CODE();
    if (!s->is_blockdev) {
        return file_co_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 offset, bytes);
    }
    ret = file_co_submit(s, &io);
    return file_errno_unsupported(ret) ? -ENOTSUP : ret;
}

/* --- Block status ------------------------------------------------------------ */

/*
 * Holes are whatever SEEK_DATA/SEEK_HOLE report.  File systems report
 * them in blocks, but the end of the file need not be aligned: under
 * O_DIRECT the answer is widened to request_alignment, erring towards
 * data (never claim zeroes that are not).
 */
static int coroutine_fn GRAPH_RDLOCK
file_co_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                     int64_t bytes, int64_t *pnum, int64_t *map,
                     BlockDriverState **file)
{
    BDRVFileState *s = bs->opaque;
    int ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    off_t data, hole;

    IO_CODE();
    *pnum = bytes;
    *map = offset;
    *file = bs;
    if (!want_zero) {
        return ret;
    }

    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* No data from here to the end of the file. */
            ret = BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
        }
        /* Otherwise SEEK_DATA is unsupported: all data. */
    } else if (data > offset) {
        ret = BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
        *pnum = MIN(bytes, data - offset);
    } else {
        hole = lseek(s->fd, offset, SEEK_HOLE);
        if (hole > offset) {
            *pnum = MIN(bytes, hole - offset);
        }
    }

    if (*pnum < bytes && !IS_ALIGNED(offset + *pnum, s->req_align)) {
        if (ret & BDRV_BLOCK_ZERO) {
            int64_t end = ROUND_DOWN(offset + *pnum, (int64_t)s->req_align);

            if (end > offset) {
                *pnum = end - offset;
            } else {
                ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
                *pnum = MIN(bytes, ROUND_UP(offset + 1, (int64_t)s->req_align)
                                   - offset);
            }
        } else {
            *pnum = MIN(bytes, ROUND_UP(offset + *pnum, (int64_t)s->req_align)
                               - offset);
        }
    }
    return ret;
}

/* --- Size ---------------------------------------------------------------- */

static int64_t file_get_size(BDRVFileState *s)
{
    struct stat st;

    if (s->is_blockdev) {
        uint64_t size;

        if (ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
            return -errno;
        }
        return size;
    }
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return st.st_size;
}

static int coroutine_fn GRAPH_RDLOCK
file_co_truncate(BlockDriverState *bs, int64_t offset, bool exact,
                 Error **errp)
{
    BDRVFileState *s = bs->opaque;
    FileIo io = { .op = FILE_OP_TRUNCATE, .offset = offset };
    int64_t cur;
    int ret;

    IO_CODE();
    if (s->is_blockdev) {
        cur = file_get_size(s);
        if (cur < 0) {
            error_setg_errno(errp, -cur, "Could not get the size of '%s'",
                             s->filename);
            return cur;
        }
        if (offset > cur || (exact && offset != cur)) {
            error_setg(errp, "Cannot resize block device '%s' to %" PRId64
                       " bytes: its size is %" PRId64, s->filename, offset,
                       cur);
            return -ENOTSUP;
        }
        qatomic_set(&bs->total_bytes, cur);
        return 0;
    }
    ret = file_co_submit(s, &io);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize '%s' to %" PRId64
                         " bytes", s->filename, offset);
        return ret;
    }
    qatomic_set(&bs->total_bytes, offset);
    return 0;
}

static int64_t coroutine_fn GRAPH_RDLOCK
file_co_getlength(BlockDriverState *bs)
{
    return file_get_size(bs->opaque);
}

static int64_t GRAPH_RDLOCK file_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

/* --- Open and limits -------------------------------------------------------- */

/*
 * Find out what O_DIRECT requires: statx() says so on Linux 6.1+; block
 * devices know their logical block size; otherwise try reads of growing
 * size and alignment until the kernel stops refusing them.  When nothing
 * can be learnt (a file too short to read from), assume 4096, which is
 * safe everywhere: over-alignment only costs padding.
 */
static void file_probe_alignment(BDRVFileState *s, int64_t size)
{
    enum { MAX_ALIGN = 4096 };
    void *buf;

    s->req_align = s->buf_align = 1;
    if (!s->use_direct) {
        return;
    }
#ifdef STATX_DIOALIGN
    {
        struct statx stx;

        if (statx(s->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
            (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
            s->req_align = stx.stx_dio_offset_align;
            s->buf_align = MAX(stx.stx_dio_mem_align, 1);
            return;
        }
    }
#endif
    if (s->is_blockdev) {
        int sector;

        if (ioctl(s->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
            s->req_align = s->buf_align = sector;
            return;
        }
    }
    s->req_align = s->buf_align = MAX_ALIGN;
    if (size < MAX_ALIGN) {
        return;
    }
    buf = blockd_memalign(MAX_ALIGN, 2 * MAX_ALIGN);
    for (uint32_t align = 512; align <= MAX_ALIGN; align *= 2) {
        if (pread(s->fd, buf, align, 0) >= 0) {
            s->req_align = align;
            break;
        }
    }
    for (uint32_t align = 512; align <= MAX_ALIGN; align *= 2) {
        if (pread(s->fd, (char *)buf + align, s->req_align, 0) >= 0) {
            s->buf_align = align;
            break;
        }
    }
    blockd_vfree(buf);
}

static int file_open_fd(const char *filename, int flags)
{
    int fd;

    do {
        fd = open(filename, flags);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

/*
 * Open @filename for @bs: read-write if asked, falling back to read-only
 * with auto-read-only (the node becomes read-only).  The fd or -errno,
 * with @errp set.
 */
static int file_open_image(BlockDriverState *bs, const char *filename,
                           int open_flags, int flags, Error **errp)
{
    int ret = file_open_fd(filename, open_flags |
                           ((flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY));

    if ((ret == -EACCES || ret == -EROFS || ret == -EPERM) &&
        (flags & BDRV_O_RDWR) && (flags & BDRV_O_AUTO_RDONLY)) {
        ret = file_open_fd(filename, open_flags | O_RDONLY);
        if (ret >= 0) {
            bs->read_only = true;
        }
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not open '%s'", filename);
    }
    return ret;
}

/* What the open fd is: a regular file or a block device, its size. */
static int file_inspect(BlockDriverState *bs, BDRVFileState *s,
                        const char *filename, Error **errp)
{
    struct stat st;
    int64_t size;

    if (fstat(s->fd, &st) < 0) {
        int err = errno;

        error_setg_errno(errp, err, "Could not stat '%s'", filename);
        return -err;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        error_setg(errp, "'%s' is not a regular file or a block device",
                   filename);
        return -EINVAL;
    }
    s->is_blockdev = S_ISBLK(st.st_mode);
    size = file_get_size(s);
    if (size < 0) {
        error_setg_errno(errp, -size, "Could not get the size of '%s'",
                         filename);
        return size;
    }
    qatomic_set(&bs->total_bytes, size);
    file_probe_alignment(s, size);
    return 0;
}

/* Whether OFD image locks are used (locking=auto|on|off). */
static int file_setup_locking(BlockDriverState *bs, BDRVFileState *s,
                              FileLocking locking, const char *filename,
                              Error **errp)
{
    s->perm = 0;
    s->shared_perm = BLK_PERM_ALL;
    if (locking == FILE_LOCKING_OFF || (bs->read_only && bs->force_share)) {
        return 0;
    }
    s->use_lock = file_ofd_locks_work(s->fd);
    if (!s->use_lock && locking == FILE_LOCKING_ON) {
        error_setg(errp, "locking=on: the file system of '%s' does not "
                   "support OFD locks", filename);
        return -ENOTSUP;
    }
    return 0;
}

static int file_open(BlockDriverState *bs, struct json_object *options,
                     int flags, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    const char *filename = opts_get_str(options, "filename");
    FileLocking locking;
    int open_flags = O_CLOEXEC;
    int ret;

    GLOBAL_STATE_CODE();
    s->fd = -1;
    s->aio = opts_get_enum(options, "aio", file_aio_names, FILE_AIO_IO_URING);
    locking = opts_get_enum(options, "locking", file_locking_names,
                            FILE_LOCKING_AUTO);
    s->use_direct = flags & BDRV_O_NOCACHE;
    if (s->aio == FILE_AIO_NATIVE && !s->use_direct) {
        /* io_submit() of buffered I/O blocks the event loop. */
        error_setg(errp, "aio=native needs cache.direct=on: libaio would "
                   "block on buffered I/O");
        return -EINVAL;
    }
    if (s->use_direct) {
        open_flags |= O_DIRECT;
    }

    ret = file_open_image(bs, filename, open_flags, flags, errp);
    if (ret < 0) {
        return ret;
    }
    s->fd = ret;
    s->filename = g_strdup(filename);

    ret = file_inspect(bs, s, filename, errp);
    if (ret < 0) {
        goto fail;
    }
    if (s->aio == FILE_AIO_NATIVE) {
        LaioState *laio;

        /* Fail here rather than on the first request (aio-max-nr). */
        ret = laio_get(aio_get_current_context(), &laio);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not set up libaio for '%s'",
                             filename);
            goto fail;
        }
    }
    ret = file_setup_locking(bs, s, locking, filename, errp);
    if (ret < 0) {
        goto fail;
    }

    g_strlcpy(bs->filename, filename, sizeof(bs->filename));
    return 0;

fail:
    close(s->fd);
    s->fd = -1;
    g_free(s->filename);
    s->filename = NULL;
    return ret;
}

static void file_close(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    if (s->fd >= 0) {
        close(s->fd);       /* releases the OFD locks */
        s->fd = -1;
    }
    g_free(s->filename);
    s->filename = NULL;
}

static void GRAPH_RDLOCK file_refresh_limits(BlockDriverState *bs,
                                             Error **errp)
{
    BDRVFileState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    bs->bl.request_alignment = s->req_align;
    bs->bl.min_mem_alignment = s->buf_align;
}

static const OptDesc file_opts[] = {
    { "filename", OPT_STRING, .required = true,
      .help = "path of the image file or block device" },
    { "aio", OPT_ENUM, .enum_values = file_aio_names, .def = "io_uring",
      .help = "how requests reach the kernel" },
    { "locking", OPT_ENUM, .enum_values = file_locking_names, .def = "auto",
      .help = "OFD image locking (auto: where the file system supports it)" },
    { NULL }
};

const BlockDriver bdrv_file = {
    .format_name = "file",
    .instance_size = sizeof(BDRVFileState),
    .opts = file_opts,

    .bdrv_open = file_open,
    .bdrv_close = file_close,
    .create_opts = file_create_opts,
    .bdrv_co_create = file_co_create,
    .bdrv_child_perm = NULL,        /* no children */
    .bdrv_check_perm = file_check_perm,
    .bdrv_set_perm = file_set_perm,
    .bdrv_abort_perm_update = file_abort_perm_update,
    .bdrv_refresh_limits = file_refresh_limits,
    .bdrv_get_allocated_file_size = file_get_allocated_file_size,

    .bdrv_co_preadv = file_co_preadv,
    .bdrv_co_pwritev = file_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .bdrv_co_pwrite_zeroes = file_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK,
    .bdrv_co_pdiscard = file_co_pdiscard,
    .bdrv_co_flush_to_disk = file_co_flush_to_disk,
    .bdrv_co_block_status = file_co_block_status,
    .bdrv_co_truncate = file_co_truncate,
    .bdrv_co_getlength = file_co_getlength,
};
