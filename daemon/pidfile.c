/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The pid file (--pidfile, or the config file's "pidfile").
 *
 * The file is opened and write-locked (an OFD lock on the whole file)
 * before start-up creates anything, and stays locked for the life of the
 * daemon: a second blockd given the same pid file refuses to start, while
 * a file left behind by a daemon that died is simply taken over (the lock
 * died with it).  It stays empty during start-up and gets our pid, one
 * decimal line, once every listener is up, so that a reader who finds a
 * pid there knows the daemon is ready.  At exit, and after a failed
 * start-up, it is removed while still locked.
 *
 * Between our open() and our lock, an exiting daemon may remove the file:
 * we would then hold a lock on a file nobody can see.  After locking we
 * check that the path still names the inode we locked, and start over if
 * not.
 *
 * Main thread; the state below is written only at start-up and exit.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "daemon/daemon.h"
#include "util/log.h"

static int pidfile_fd = -1;
static char *pidfile_path;

/* Give up on a path that is replaced this often while we lock it. */
#define PIDFILE_MAX_ATTEMPTS 100

/* The pid written in the file @fd by its holder, or 0 if none. */
static long pidfile_read_pid(int fd)
{
    char buf[32] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    char *end;
    long pid;

    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    pid = strtol(buf, &end, 10);
    return pid > 0 && (*end == '\n' || *end == '\0') ? pid : 0;
}

static bool pidfile_lock(int fd, Error **errp)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = 0,
        .l_len = 0,             /* the whole file */
    };
    long pid;

    if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
        return true;
    }
    if (errno != EAGAIN && errno != EACCES) {
        error_setg_errno(errp, errno, "could not lock the pid file");
        return false;
    }
    pid = pidfile_read_pid(fd);
    if (pid) {
        error_setg(errp, "the pid file is locked by another blockd "
                   "(pid %ld)", pid);
    } else {
        error_setg(errp, "the pid file is locked by another process");
    }
    return false;
}

/* True if @path still names the file open as @fd. */
static bool pidfile_is_current(int fd, const char *path)
{
    struct stat fd_st, path_st;

    return fstat(fd, &fd_st) == 0 && stat(path, &path_st) == 0 &&
           fd_st.st_dev == path_st.st_dev && fd_st.st_ino == path_st.st_ino;
}

bool pidfile_acquire(const char *path, Error **errp)
{
    assert(pidfile_fd < 0);
    for (int attempt = 0; attempt < PIDFILE_MAX_ATTEMPTS; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

        if (fd < 0) {
            error_setg_errno(errp, errno, "could not open the pid file");
            return false;
        }
        if (!pidfile_lock(fd, errp)) {
            close(fd);
            return false;
        }
        if (!pidfile_is_current(fd, path)) {
            close(fd);          /* removed by its last holder: retry */
            continue;
        }
        if (ftruncate(fd, 0) < 0) {
            error_setg_errno(errp, errno, "could not truncate the pid file");
            unlink(path);
            close(fd);
            return false;
        }
        pidfile_fd = fd;
        pidfile_path = g_strdup(path);
        return true;
    }
    error_setg(errp, "the pid file keeps being replaced");
    return false;
}

bool pidfile_write(Error **errp)
{
    g_autofree char *text = NULL;
    size_t len;
    ssize_t n;

    if (pidfile_fd < 0) {
        return true;
    }
    text = g_strdup_printf("%ld\n", (long)getpid());
    len = strlen(text);
    do {
        n = pwrite(pidfile_fd, text, len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        error_setg_errno(errp, errno, "could not write the pid file");
        return false;
    }
    if ((size_t)n != len) {
        error_setg(errp, "could not write the pid file: short write");
        return false;
    }
    return true;
}

void pidfile_remove(void)
{
    if (pidfile_fd < 0) {
        return;
    }
    /* Unlink first: the lock keeps a newcomer off until we close. */
    if (unlink(pidfile_path) < 0 && errno != ENOENT) {
        warn_report("could not remove the pid file %s: %s", pidfile_path,
                    strerror(errno));
    }
    close(pidfile_fd);
    pidfile_fd = -1;
    g_clear_pointer(&pidfile_path, g_free);
}
