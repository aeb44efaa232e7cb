/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server: listeners (a UNIX socket, or every address an inet host
 * resolves to), connections whose handshake runs in the main loop and
 * whose transmission phase runs in an export's iothread, and the "nbd"
 * export type.  The protocol's constants are in
 * block/export/nbd/nbd-protocol.h; docs/nbd.md describes what is supported.
 *
 * Main loop (BQL) throughout.
 */
#ifndef BLOCK_NBD_H
#define BLOCK_NBD_H

#include "block/export.h"

#define NBD_DEFAULT_MAX_CONNECTIONS     100
#define NBD_DEFAULT_HANDSHAKE_SECONDS   10
/* Requests a connection keeps in flight before it stops reading. */
#define NBD_DEFAULT_MAX_IN_FLIGHT       16
#define NBD_MAX_IN_FLIGHT_LIMIT         1024
/* Longest string (export name, description, query) the protocol allows. */
#define NBD_MAX_STRING                  4096
/* Largest READ or WRITE payload; longer requests fail with EINVAL. */
#define NBD_MAX_BUFFER                  (32 * 1024 * 1024)
/*
 * Request data (WRITE payloads, READ replies) one connection holds in
 * memory before it stops reading new requests: so a client that does not
 * read its replies pins at most this much.  A request longer than the
 * budget still runs, alone.
 */
/* Keep the schema default ("32M" in nbd-server.c) in step. */
#define NBD_DEFAULT_BUFFER_BUDGET       (32 * 1024 * 1024)
#define NBD_MIN_BUFFER_BUDGET           (64 * 1024)

typedef struct NbdServerOptions {
    /* Exactly one of: a UNIX path, or host + port. */
    char *unix_path;
    char *host;
    char *port;
    /* inet: restrict to one family (both false: whatever host resolves to) */
    bool ipv4_only;
    bool ipv6_only;
    uint32_t max_connections;       /* 0: unlimited */
    uint32_t handshake_max_seconds; /* 0: no limit */
} NbdServerOptions;

/* nbd-server-start: listen.  Fails if a server is already running. */
bool nbd_server_start(const NbdServerOptions *opts, Error **errp)
    TSA_REQUIRES(bql);

/*
 * nbd-server-stop: stop listening, shut down every NBD export (as QEMU
 * does) and close every connection, half-done handshakes included, and
 * wait (running the main loop) until all of them are gone.  Does nothing
 * if no server runs.
 */
void nbd_server_stop(void) TSA_REQUIRES(bql) GRAPH_UNLOCKED;
bool nbd_server_is_running(void) TSA_REQUIRES(bql);

/*
 * Serve @fd, a connected stream socket, as a client of the running
 * server, as if it had been accepted (the server owns @fd from now on and
 * closes it when the connection ends).  For clients in process: the fuzz
 * harness of the transmission phase.
 */
void nbd_server_add_client(int fd) TSA_REQUIRES(bql);

/* Register the "nbd" export type; once, at start-up. */
void nbd_export_init(void) TSA_REQUIRES(bql);

#endif /* BLOCK_NBD_H */
