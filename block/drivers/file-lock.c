/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Image locking for the file driver: its permission callbacks.
 *
 * Image locking uses OFD byte-range locks on the image itself, on the same
 * bytes as QEMU's file driver, so that blockd and QEMU processes (and two
 * nodes of one process: OFD locks belong to the open file description)
 * see each other: a read lock on byte 100 + i means "I hold permission
 * 1 << i", one on byte 200 + i "I do not share permission 1 << i".  Only
 * read locks are ever taken; a conflict is detected by asking (F_OFD_GETLK)
 * whether a write lock could be taken.  Locks are taken before they are
 * tested, so of two racing processes at least one sees the other.
 *
 * Invariant: the lock bytes held on the fd are exactly those of (perm,
 * shared_perm) outside a permission update, and a superset of them during
 * one.  Main loop (BQL), like every permission callback.
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "block/drivers/file-posix-int.h"
#include "util/main-loop.h"

/* Lock bytes, shared with QEMU's file driver (see above). */
#define FILE_LOCK_PERM_BASE     100
#define FILE_LOCK_SHARED_BASE   200

static int file_lock_byte(int fd, int byte, short type)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = type,
    };

    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 if another open file description holds a lock on @byte, 0 if not. */
static int file_lock_byte_taken(int fd, int byte)
{
    struct flock fl = {
        .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = F_WRLCK,
    };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

/*
 * Take the lock bytes that say "holds @perm, does not share what @shared
 * lacks"; with @release, release every other byte too.
 */
static int file_apply_locks(BDRVFileState *s, uint64_t perm, uint64_t shared,
                            bool release, Error **errp)
{
    for (int i = 0; i < BLK_PERM_COUNT; i++) {
        uint64_t bit = 1ULL << i;
        struct { int byte; bool want; } bytes[2] = {
            { FILE_LOCK_PERM_BASE + i, perm & bit },
            { FILE_LOCK_SHARED_BASE + i, !(shared & bit) },
        };

        for (int j = 0; j < 2; j++) {
            int ret;

            if (!bytes[j].want && !release) {
                continue;
            }
            ret = file_lock_byte(s->fd, bytes[j].byte,
                                 bytes[j].want ? F_RDLCK : F_UNLCK);
            if (ret < 0) {
                error_setg_errno(errp, -ret, "Could not %s byte %d of '%s'",
                                 bytes[j].want ? "lock" : "unlock",
                                 bytes[j].byte, s->filename);
                return ret;
            }
        }
    }
    return 0;
}

/* Fail if another process keeps us from taking @perm or denying ~@shared. */
static int file_check_locks(BDRVFileState *s, uint64_t perm, uint64_t shared,
                            Error **errp)
{
    for (int i = 0; i < BLK_PERM_COUNT; i++) {
        uint64_t bit = 1ULL << i;
        int ret;

        if (perm & bit) {
            ret = file_lock_byte_taken(s->fd, FILE_LOCK_SHARED_BASE + i);
            if (ret != 0) {
                goto conflict;
            }
        }
        if (!(shared & bit)) {
            ret = file_lock_byte_taken(s->fd, FILE_LOCK_PERM_BASE + i);
            if (ret != 0) {
                goto conflict;
            }
        }
        continue;

conflict:
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not test the locks of '%s'",
                             s->filename);
            return ret;
        }
        error_setg(errp, "Failed to get %s\"%s\" lock on '%s': another "
                   "process holds a conflicting lock (is qemu-storage-daemon "
                   "or another blockd using the image?)",
                   (perm & bit) ? "" : "exclusive ", bdrv_perm_name(bit),
                   s->filename);
        return -EAGAIN;
    }
    return 0;
}

int GRAPH_RDLOCK file_check_perm(BlockDriverState *bs, uint64_t perm,
                                 uint64_t shared, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int ret;

    GLOBAL_STATE_CODE();
    if (!s->use_lock) {
        return 0;
    }
    /* Lock first, then test: see the head comment. */
    ret = file_apply_locks(s, s->perm | perm, s->shared_perm & shared, false,
                           errp);
    if (ret == 0) {
        ret = file_check_locks(s, perm, shared, errp);
    }
    if (ret < 0) {
        file_apply_locks(s, s->perm, s->shared_perm, true, NULL);
    }
    return ret;
}

void GRAPH_RDLOCK file_set_perm(BlockDriverState *bs, uint64_t perm,
                                uint64_t shared)
{
    BDRVFileState *s = bs->opaque;
    Error *local_err = NULL;

    GLOBAL_STATE_CODE();
    if (s->use_lock &&
        file_apply_locks(s, perm, shared, true, &local_err) < 0) {
        /* Only releases can fail here: we keep more locked than needed. */
        warn_report_err(local_err);
    }
    s->perm = perm;
    s->shared_perm = shared;
}

void GRAPH_RDLOCK file_abort_perm_update(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    GLOBAL_STATE_CODE();
    if (s->use_lock) {
        file_apply_locks(s, s->perm, s->shared_perm, true, NULL);
    }
}

int file_lock_for_create(int fd, const char *filename, Error **errp)
{
    /* As QEMU's creation: write and resize, sharing all but resize. */
    BDRVFileState s = { .fd = fd, .filename = (char *)filename };
    uint64_t perm = BLK_PERM_WRITE | BLK_PERM_RESIZE;
    uint64_t shared = BLK_PERM_ALL & ~BLK_PERM_RESIZE;
    int ret;

    if (!file_ofd_locks_work(fd)) {
        return 0;
    }
    ret = file_apply_locks(&s, perm, shared, false, errp);
    return ret < 0 ? ret : file_check_locks(&s, perm, shared, errp);
}

/* True if the file system supports OFD locks on @fd. */
bool file_ofd_locks_work(int fd)
{
    return file_lock_byte_taken(fd, FILE_LOCK_PERM_BASE) >= 0;
}
