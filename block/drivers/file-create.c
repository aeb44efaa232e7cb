/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blockdev-create for the file driver: make (or empty) the file, lock it
 * as QEMU does, and give it its size, preallocated as asked.
 *
 * As QEMU's: an existing file is truncated to 0 first (its data is gone),
 * then grown to the size; "falloc" allocates the blocks with
 * posix_fallocate(), "full" writes zeroes and syncs; "metadata" means
 * nothing to a plain file and is refused with QEMU's words (before the
 * file is touched, where QEMU has already emptied it).  Everything
 * blocking runs in a thread-pool worker, so that a large "full"
 * preallocation does not stop the main loop.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "block/drivers/file-posix-int.h"
#include "util/thread-pool.h"

enum {
    PREALLOC_OFF,
    PREALLOC_METADATA,
    PREALLOC_FALLOC,
    PREALLOC_FULL,
};

static const char *const prealloc_names[] = {
    "off", "metadata", "falloc", "full", NULL,
};

const OptDesc file_create_opts[] = {
    { "filename", OPT_STRING, .required = true,
      .help = "the file to create (or empty)" },
    { "size", OPT_SIZE, .required = true, .min = 0, .max = BDRV_MAX_LENGTH,
      .help = "its size in bytes" },
    { "preallocation", OPT_ENUM, .enum_values = prealloc_names, .def = "off",
      .help = "off, falloc (allocate blocks) or full (write zeroes)" },
    { "nocow", OPT_BOOL, .def = "false",
      .help = "turn off copy-on-write (btrfs), where the file system can" },
    { "extent-size-hint", OPT_SIZE, .min = 0, .max = UINT32_MAX,
      .help = "extent size hint (XFS), where the file system takes one" },
    { NULL }
};

typedef struct FileCreate {
    const char *filename;
    int64_t size;
    int prealloc;
    bool nocow;
    int64_t extent_size_hint;       /* -1: not given */
    Error *err;
} FileCreate;

/* Write @len zeroes from @offset, in bounded pieces. */
static int file_write_zeroes(int fd, int64_t offset, int64_t len)
{
    const size_t chunk = 1024 * 1024;
    g_autofree void *buf = g_malloc0(chunk);

    while (len > 0) {
        ssize_t n = pwrite(fd, buf, MIN((int64_t)chunk, len), offset);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        offset += n;
        len -= n;
    }
    return fdatasync(fd) < 0 ? -errno : 0;
}

/* The file attributes QEMU sets where the file system takes them. */
static void file_create_attrs(int fd, const FileCreate *c)
{
    if (c->nocow) {
        int attr;

        /* Only effective on an empty file, hence before the size. */
        if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
            attr |= FS_NOCOW_FL;
            ioctl(fd, FS_IOC_SETFLAGS, &attr);
        }
    }
    if (c->extent_size_hint > 0) {
        struct fsxattr attr;

        if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) == 0) {
            attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
            attr.fsx_extsize = c->extent_size_hint;
            ioctl(fd, FS_IOC_FSSETXATTR, &attr);
        }
    }
}

/* Give the empty file @fd its size, preallocated as asked. */
static int file_create_size(int fd, const FileCreate *c, Error **errp)
{
    int ret = 0;

    switch (c->prealloc) {
    case PREALLOC_OFF:
        ret = ftruncate(fd, c->size) < 0 ? -errno : 0;
        break;
    case PREALLOC_FALLOC:
        ret = c->size ? -posix_fallocate(fd, 0, c->size) : 0;
        break;
    case PREALLOC_FULL:
        ret = file_write_zeroes(fd, 0, c->size);
        break;
    default:
        g_assert_not_reached();     /* metadata: refused before */
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize file");
    }
    return ret;
}

/* In a worker thread: everything that blocks. */
static int file_create_worker(void *opaque)
{
    FileCreate *c = opaque;
    int fd, ret;

    do {
        fd = open(c->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        ret = -errno;
        error_setg_errno(&c->err, -ret, "Could not create '%s'", c->filename);
        return ret;
    }
    ret = file_lock_for_create(fd, c->filename, &c->err);
    if (ret < 0) {
        goto out;
    }
    /* Clear the file first: what it held is not part of the new image. */
    if (ftruncate(fd, 0) < 0) {
        ret = -errno;
        error_setg_errno(&c->err, -ret, "Could not clear '%s'", c->filename);
        goto out;
    }
    file_create_attrs(fd, c);
    ret = file_create_size(fd, c, &c->err);

out:
    close(fd);
    return ret;
}

int coroutine_fn file_co_create(struct json_object *options, Error **errp)
{
    FileCreate c = {
        .filename = opts_get_str(options, "filename"),
        .size = opts_get_int(options, "size", 0),
        .prealloc = opts_get_enum(options, "preallocation", prealloc_names,
                                  PREALLOC_OFF),
        .nocow = opts_get_bool(options, "nocow", false),
        .extent_size_hint = opts_get_int(options, "extent-size-hint", -1),
    };
    int ret;

    if (c.prealloc == PREALLOC_METADATA) {
        /* Before the file is touched: nothing is lost for a bad mode. */
        error_setg(errp, "Unsupported preallocation mode: %s",
                   prealloc_names[c.prealloc]);
        return -ENOTSUP;
    }
    ret = thread_pool_submit_co(file_create_worker, &c);
    if (c.err) {
        error_propagate(errp, c.err);
    } else if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not create '%s'", c.filename);
    }
    return ret;
}
