/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * UNIX listening sockets for the QMP monitor and the NBD server (see
 * include/util/sockets.h).  Invariant: on failure nothing is left at the
 * path that was not there before, except a stale socket removed on purpose.
 */
#include "util/osdep.h"

#include <sys/socket.h>
#include <sys/un.h>

#include "util/log.h"
#include "util/sockets.h"

/*
 * Make sure nothing lives at @path: refuse a live server or a file that is
 * not a socket; remove a stale socket (nobody accepts on it any more).
 */
static bool unix_clear_path(const char *path, const struct sockaddr_un *addr,
                            const char *what, Error **errp)
{
    struct stat st;
    int fd, ret;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) {
            return true;
        }
        error_setg_errno(errp, errno, "Cannot use %s '%s'", what, path);
        return false;
    }
    if (!S_ISSOCK(st.st_mode)) {
        error_setg(errp, "Cannot use %s '%s': the file exists and is not a "
                   "socket", what, path);
        return false;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot create a socket");
        return false;
    }
    ret = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
    if (ret < 0) {
        ret = -errno;
    }
    close(fd);
    /* EAGAIN: a live server whose backlog is full. */
    if (ret == 0 || ret == -EAGAIN) {
        error_setg(errp, "Cannot use %s '%s': it is in use by a running "
                   "server", what, path);
        return false;
    }
    if (ret != -ECONNREFUSED) {
        error_setg_errno(errp, -ret, "Cannot use %s '%s'", what, path);
        return false;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        error_setg_errno(errp, errno, "Cannot remove stale %s '%s'", what,
                         path);
        return false;
    }
    info_report("removed stale %s '%s'", what, path);
    return true;
}

/*
 * Bind @fd to @addr.  With @mode, the socket inode's mode is set before
 * bind (which applies the umask to it) and only afterwards widened to
 * exactly @mode if the umask took bits away: never wider at any time.
 */
static bool unix_bind(int fd, const struct sockaddr_un *addr, const char *path,
                      mode_t mode, const char *what, struct stat *st,
                      Error **errp)
{
    if (mode && fchmod(fd, mode) < 0) {
        error_setg_errno(errp, errno, "Cannot set the mode of %s '%s'", what,
                         path);
        return false;
    }
    if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
        if (errno == EADDRINUSE) {
            error_setg(errp, "Cannot use %s '%s': it is in use by a running "
                       "server", what, path);
        } else {
            error_setg_errno(errp, errno, "Cannot bind %s '%s'", what, path);
        }
        return false;
    }
    if (lstat(path, st) < 0) {
        error_setg_errno(errp, errno, "Cannot stat %s '%s'", what, path);
        goto fail_unlink;
    }
    if (mode && (st->st_mode & 07777) != mode && chmod(path, mode) < 0) {
        error_setg_errno(errp, errno, "Cannot set the mode of %s '%s'", what,
                         path);
        goto fail_unlink;
    }
    return true;

fail_unlink:
    unlink(path);
    return false;
}

int unix_listen_path(const char *path, mode_t mode, int backlog,
                     const char *what, struct stat *st, Error **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    int fd;

    if (len == 0 || len >= sizeof(addr.sun_path)) {
        error_setg(errp, "%s path '%s' is too long (at most %zu bytes)",
                   what, path, sizeof(addr.sun_path) - 1);
        return -1;
    }
    memcpy(addr.sun_path, path, len + 1);
    if (!unix_clear_path(path, &addr, what, errp)) {
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Cannot create a socket");
        return -1;
    }
    if (!unix_bind(fd, &addr, path, mode, what, st, errp)) {
        close(fd);
        return -1;
    }
    if (listen(fd, backlog) < 0) {
        error_setg_errno(errp, errno, "Cannot listen on %s '%s'", what, path);
        unlink(path);
        close(fd);
        return -1;
    }
    return fd;
}
