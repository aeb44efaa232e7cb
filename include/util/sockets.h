/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * UNIX listening sockets, as the QMP monitor and the NBD server create
 * them: one piece of code so that both refuse and clean up the same way.
 *
 * Thread-safe (no shared state); main loop in practice.
 */
#ifndef UTIL_SOCKETS_H
#define UTIL_SOCKETS_H

#include <sys/stat.h>

#include "util/error.h"

/*
 * Listen on a UNIX stream socket at @path (non-blocking, close-on-exec).
 * A live server at @path, or a file that is not a socket, is refused; a
 * stale socket (nobody accepts on it) is removed.  With @mode non-zero the
 * socket file gets exactly @mode and never anything wider, even briefly;
 * with 0 it gets what the umask gives.  @what names the socket in messages
 * ("QMP socket", "NBD socket").  On success returns the fd and fills @st
 * with the socket file's identity (to check, before unlinking it later,
 * that it is still ours); on failure returns -1 with @errp set and leaves
 * nothing behind.
 */
int unix_listen_path(const char *path, mode_t mode, int backlog,
                     const char *what, struct stat *st, Error **errp);

#endif /* UTIL_SOCKETS_H */
