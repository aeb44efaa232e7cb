/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD server: its listeners, the life cycle of connections, and the
 * "nbd" export type.  The handshake is in nbd-handshake.c, the
 * transmission phase in nbd-conn.c.
 *
 * Everything here runs in the main loop under the BQL.  A connection is
 * one coroutine (see nbd-int.h): it runs the handshake, hands over to
 * nbd-conn.c for the transmission phase, and when that returns (in the
 * main loop again) schedules a bottom half that closes the socket and
 * frees the connection.  The bottom half is the only place a connection
 * is freed, so nothing that found it in the server's list (stop, export
 * shutdown, the handshake timer) can see it freed under it.
 *
 * The handshake timer and nbd_server_stop() end a handshake by shutting
 * its socket down, which fails the receive or send it waits for.
 * max-connections counts every connection, handshakes included; one more
 * is accepted and closed at once, so that the client sees a clean EOF
 * rather than a hanging connect.
 */
#include "util/osdep.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "block/block-backend.h"
#include "block/export/nbd/nbd-int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/sockets.h"
#include "util/main-loop.h"

typedef struct NbdListener {
    NbdServer *server;          /* immutable */
    int fd;                     /* immutable */
} NbdListener;

struct NbdServer {
    NbdServerOptions opts;      /* immutable (strings owned) */
    NbdListener *listeners;     /* immutable */
    unsigned nlisteners;        /* immutable */
    AioTimer *accept_retry;     /* immutable: re-listen after EMFILE */
    struct stat unix_st;        /* immutable: the socket file we created */
    /* Every connection, any phase. */
    QLIST_HEAD(, NbdConn TSA_GUARDED_BY(bql)) conns;
    unsigned nconns TSA_GUARDED_BY(bql);
    bool stopping TSA_GUARDED_BY(bql);  /* nbd_server_stop() is waiting */
};

static NbdServer *nbd_server TSA_GUARDED_BY(bql);

static const BlockExportDriver nbd_export_driver;

/* --- Exports clients can choose ------------------------------------------ */

NbdExport *nbd_export_next(NbdExport *exp)
{
    BlockExport *e = exp ? &exp->common : NULL;

    GLOBAL_STATE_CODE();
    while ((e = blk_exp_next(e))) {
        if (e->drv == &nbd_export_driver && !e->shutting_down) {
            return container_of(e, NbdExport, common);
        }
    }
    return NULL;
}

NbdExport *nbd_export_find(const char *name)
{
    NbdExport *exp, *found = NULL;
    unsigned live = 0;

    for (exp = nbd_export_next(NULL); exp; exp = nbd_export_next(exp)) {
        if (!strcmp(exp->name, name)) {
            return exp;
        }
        live++;
        found = exp;
    }
    return !*name && live == 1 ? found : NULL;
}

/* --- Connections --------------------------------------------------------- */

static void nbd_hs_timeout(void *opaque)
{
    NbdConn *conn = opaque;

    GLOBAL_STATE_CODE();
    conn->timed_out = true;
    /* The pending receive or send fails; the handshake ends with it. */
    blk_exp_transport_shutdown(conn->client.transport);
}

static void nbd_hs_timer_stop(NbdConn *conn) TSA_REQUIRES(bql)
{
    if (conn->handshake_timer) {
        aio_timer_del(conn->handshake_timer);
        aio_timer_free(conn->handshake_timer);
        conn->handshake_timer = NULL;
    }
}

/* The last step of every connection: a main-loop bottom half. */
static void nbd_conn_free_bh(void *opaque)
{
    NbdConn *conn = opaque;
    NbdServer *server = conn->server;

    GLOBAL_STATE_CODE();
    assert(!conn->exp && !conn->handshake_timer);
    blk_exp_client_destroy(&conn->client);
    QLIST_REMOVE(conn, server_link);
    server->nconns--;
    blk_exp_transport_destroy(conn->client.transport);
    debug_report("nbd: %s: connection closed", conn->peer);
    g_free(conn->meta_export);
    g_free(conn->peer);
    g_free(conn);
    /* nbd_server_stop() waits for the count to drop. */
    aio_wait_kick();
}

static void coroutine_fn nbd_conn_co(void *opaque)
{
    NbdConn *conn = opaque;

    GLOBAL_STATE_CODE();
    if (nbd_handshake(conn)) {
        nbd_hs_timer_stop(conn);
        nbd_conn_transmission(conn);
    } else if (conn->timed_out) {
        info_report("nbd: %s: handshake not finished within %" PRIu32
                    " s: disconnected", conn->peer,
                    conn->server->opts.handshake_max_seconds);
    }
    nbd_hs_timer_stop(conn);
    /* Free once this coroutine is gone (no use of @conn after this). */
    aio_bh_schedule_oneshot(main_context(), nbd_conn_free_bh, conn);
}

/* "addr:port" for inet peers, "unix" for UNIX sockets. */
static char *nbd_peer_name(const struct sockaddr_storage *ss, socklen_t len)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6) {
        return g_strdup("unix");
    }
    if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host),
                    serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV)) {
        return g_strdup("inet");
    }
    return g_strdup_printf(ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
                           host, serv);
}

static void nbd_conn_start(NbdServer *server, int fd,
                           const struct sockaddr_storage *ss, socklen_t len)
{
    NbdConn *conn = g_new0(NbdConn, 1);
    int one = 1;

    bql_assert_held();
    if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) {
        /* Replies are written whole: do not wait for ACKs (the spec). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    conn->server = server;
    conn->peer = nbd_peer_name(ss, len);
    blk_exp_client_init(&conn->client, conn->peer,
                        co_create(nbd_conn_co, conn),
                        blk_exp_socket_transport_new(fd));
    QLIST_INSERT_HEAD(&server->conns, conn, server_link);
    server->nconns++;
    debug_report("nbd: %s: connected", conn->peer);

    if (server->opts.handshake_max_seconds) {
        conn->handshake_timer = aio_timer_new(main_context(), nbd_hs_timeout,
                                              conn);
        aio_timer_mod_ns(conn->handshake_timer, get_clock_ns() +
                         server->opts.handshake_max_seconds * 1000000000LL);
    }
    aio_co_enter(main_context(), conn->client.co);
}

static void nbd_accept(void *opaque);

/* Watch (or stop watching) the listening sockets. */
static void nbd_server_listen(NbdServer *server, bool on)
{
    for (unsigned i = 0; i < server->nlisteners; i++) {
        aio_set_fd_handler(main_context(), server->listeners[i].fd,
                           on ? nbd_accept : NULL, NULL,
                           &server->listeners[i]);
    }
}

static void nbd_accept_retry(void *opaque)
{
    GLOBAL_STATE_CODE();
    nbd_server_listen(opaque, true);
}

/* The listener's fd handler: accept every pending connection. */
static void nbd_accept(void *opaque)
{
    NbdListener *l = opaque;
    NbdServer *server = l->server;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        /* Blocking: the ring waits for the socket, never a thread. */
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            /*
             * Out of descriptors or memory: the pending connection would
             * make the (level-triggered) handler spin.  Pause a moment.
             */
            warn_report_once("nbd: accept: %s (retrying every 100 ms)",
                             strerror(errno));
            nbd_server_listen(server, false);
            aio_timer_mod_ns(server->accept_retry,
                             get_clock_ns() + 100 * 1000000LL);
            return;
        }
        if (server->opts.max_connections &&
            server->nconns >= server->opts.max_connections) {
            debug_report("nbd: refusing a connection: %u clients already "
                         "(max-connections)", server->nconns);
            close(fd);
            continue;
        }
        nbd_conn_start(server, fd, &ss, len);
    }
}

/* --- Listeners ----------------------------------------------------------- */

static void nbd_add_listener(NbdServer *server, int fd)
{
    server->listeners = g_renew(NbdListener, server->listeners,
                                server->nlisteners + 1);
    server->listeners[server->nlisteners++] = (NbdListener) {
        .server = server, .fd = fd,
    };
}

static bool nbd_listen_unix(NbdServer *server, const char *path, Error **errp)
{
    /* Mode 0: the umask decides who may connect, as with QEMU's server. */
    int fd = unix_listen_path(path, 0, SOMAXCONN, "NBD socket",
                              &server->unix_st, errp);

    if (fd < 0) {
        return false;
    }
    nbd_add_listener(server, fd);
    return true;
}

/* One listening socket for @ai; -errno on failure. */
static int nbd_listen_addr(const struct addrinfo *ai, bool v6only)
{
    int one = 1;
    int fd, ret;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0) {
        return -errno;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6 && v6only) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    return fd;
}

/*
 * Listen on every address @host:@port resolves to (e.g. both ::1 and
 * 127.0.0.1 for "localhost"); fails only if none can be bound.
 */
static bool nbd_listen_inet(NbdServer *server, const NbdServerOptions *opts,
                            Error **errp)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE,
        .ai_family = opts->ipv4_only ? AF_INET :
                     opts->ipv6_only ? AF_INET6 : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res, *ai;
    bool have_v4 = false;
    int ret, err = 0;

    ret = getaddrinfo(*opts->host ? opts->host : NULL, opts->port, &hints,
                      &res);
    if (ret) {
        error_setg(errp, "address resolution failed for %s:%s: %s",
                   opts->host, opts->port, gai_strerror(ret));
        return false;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        have_v4 |= ai->ai_family == AF_INET;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        /* "::" alone is dual-stack; next to an IPv4 address, IPv6 only. */
        int fd = nbd_listen_addr(ai, have_v4);

        if (fd < 0) {
            err = fd;
            continue;
        }
        nbd_add_listener(server, fd);
    }
    freeaddrinfo(res);
    if (!server->nlisteners) {
        error_setg_errno(errp, -err, "Failed to bind socket to %s:%s",
                         opts->host, opts->port);
        return false;
    }
    return true;
}

static void nbd_server_free(NbdServer *server)
{
    nbd_server_listen(server, false);
    for (unsigned i = 0; i < server->nlisteners; i++) {
        close(server->listeners[i].fd);
    }
    aio_timer_del(server->accept_retry);
    aio_timer_free(server->accept_retry);
    if (server->opts.unix_path && server->nlisteners) {
        struct stat st;

        /* Remove the socket file only if it is still ours. */
        if (lstat(server->opts.unix_path, &st) == 0 &&
            st.st_dev == server->unix_st.st_dev &&
            st.st_ino == server->unix_st.st_ino) {
            unlink(server->opts.unix_path);
        }
    }
    g_free(server->listeners);
    g_free(server->opts.unix_path);
    g_free(server->opts.host);
    g_free(server->opts.port);
    g_free(server);
}

/* --- Starting and stopping ----------------------------------------------- */

bool nbd_server_start(const NbdServerOptions *opts, Error **errp)
{
    NbdServer *server;
    bool ok;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    if (nbd_server) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    assert(!opts->unix_path != !(opts->host && opts->port));
    server = g_new0(NbdServer, 1);
    server->opts = *opts;
    server->opts.unix_path = g_strdup(opts->unix_path);
    server->opts.host = g_strdup(opts->host);
    server->opts.port = g_strdup(opts->port);
    server->accept_retry = aio_timer_new(main_context(), nbd_accept_retry,
                                         server);
    ok = opts->unix_path ? nbd_listen_unix(server, opts->unix_path, errp)
                         : nbd_listen_inet(server, opts, errp);
    if (!ok) {
        nbd_server_free(server);
        return false;
    }
    nbd_server_listen(server, true);
    nbd_server = server;
    return true;
}

void nbd_server_stop(void)
{
    NbdServer *server;
    NbdConn *conn;

    GLOBAL_STATE_CODE();
    bql_assert_held();
    server = nbd_server;
    if (!server || server->stopping) {
        return;
    }
    /*
     * The waits below run the main loop, and with it the monitors: until
     * we are done, the server counts as not running for new exports.
     */
    server->stopping = true;
    /* No new connections; then no new exports can be found by them. */
    nbd_server_listen(server, false);
    aio_timer_del(server->accept_retry);
    /*
     * Shut the exports down and close every connection before waiting for
     * anything: a handshake that holds an export (GO being answered)
     * would otherwise keep the export alive while we wait for it.
     */
    for (BlockExport *e = blk_exp_next(NULL); e; e = blk_exp_next(e)) {
        if (e->drv == &nbd_export_driver) {
            blk_exp_request_shutdown(e);
        }
    }
    QLIST_FOREACH(conn, &server->conns, server_link) {
        blk_exp_client_request_close(&conn->client);
    }
    blk_exp_close_all_type(nbd_export_driver.type);
    AIO_WAIT_WHILE(NULL, server->nconns > 0);
    nbd_server = NULL;
    nbd_server_free(server);
}

void nbd_server_add_client(int fd)
{
    struct sockaddr_storage ss = { .ss_family = AF_UNIX };

    bql_assert_held();
    assert(nbd_server);
    nbd_conn_start(nbd_server, fd, &ss, sizeof(ss.ss_family));
}

bool nbd_server_is_running(void)
{
    bql_assert_held();
    return nbd_server && !nbd_server->stopping;
}

bool nbd_server_allows_multi_conn(NbdServer *server)
{
    return server->opts.max_connections != 1;
}

/* --- The "nbd" export type ----------------------------------------------- */

static const OptDesc nbd_export_opts[] = {
    { "name", OPT_STRING,
      .help = "name clients ask for (default: the node name)" },
    { "description", OPT_STRING,
      .help = "free-form description for clients (NBD_INFO_DESCRIPTION)" },
    { "allocation-depth", OPT_BOOL, .def = "off",
      .help = "qemu:allocation-depth context (not supported: must be off)" },
    { "x-blockd-max-in-flight", OPT_INT,
      .def = G_STRINGIFY(NBD_DEFAULT_MAX_IN_FLIGHT),
      .min = 1, .max = NBD_MAX_IN_FLIGHT_LIMIT,
      .help = "requests a connection keeps in flight before it stops "
              "reading (blockd)" },
    { "x-blockd-buffer-budget", OPT_SIZE,
      .def = "32M",
      .min = NBD_MIN_BUFFER_BUDGET, .max = INT64_MAX,
      .help = "bytes of request data (WRITE payloads, READ replies) a "
              "connection holds before it stops reading (blockd)" },
    { NULL }
};

static int nbd_export_create(BlockExport *common, struct json_object *args,
                             Error **errp)
{
    NbdExport *exp = container_of(common, NbdExport, common);
    const char *name = opts_get_str(args, "name");
    const char *desc = opts_get_str(args, "description");
    uint64_t perm, shared;
    NbdExport *other;
    uint32_t align;

    GLOBAL_STATE_CODE();
    if (!nbd_server_is_running()) {
        error_setg(errp, "NBD server not running");
        return -EINVAL;
    }
    if (!name) {
        name = opts_get_str(args, "node-name");
    }
    if (strlen(name) > NBD_MAX_STRING) {
        error_setg(errp, "export name '%s' too long", name);
        return -EINVAL;
    }
    if (desc && strlen(desc) > NBD_MAX_STRING) {
        error_setg(errp, "description '%s' too long", desc);
        return -EINVAL;
    }
    if (opts_get_bool(args, "allocation-depth", false)) {
        error_setg(errp, "allocation-depth is not supported by blockd");
        return -ENOTSUP;
    }
    other = nbd_export_find(name);
    if (other && !strcmp(other->name, name)) {
        error_setg(errp, "NBD server already has export named '%s'", name);
        return -EEXIST;
    }
    /* As QEMU: no resize while exported; anything else is shared. */
    blk_get_perm(common->blk, &perm, &shared);
    if (blk_set_perm(common->blk, perm, shared & ~BLK_PERM_RESIZE,
                     errp) < 0) {
        return -EPERM;
    }
    exp->size = blk_getlength(common->blk);
    if (exp->size < 0) {
        error_setg_errno(errp, -exp->size,
                         "Failed to determine the NBD export's length");
        return exp->size;
    }
    /* A power of two, at least 512 (the spec), 4 KiB by default. */
    align = blk_get_request_alignment(common->blk);
    exp->pref_block = MAX(4096, align && !(align & (align - 1)) ? align : 1);
    exp->name = g_strdup(name);
    exp->description = g_strdup(desc);
    exp->max_in_flight = opts_get_int(args, "x-blockd-max-in-flight",
                                      NBD_DEFAULT_MAX_IN_FLIGHT);
    exp->buffer_budget = opts_get_int(args, "x-blockd-buffer-budget",
                                      NBD_DEFAULT_BUFFER_BUDGET);
    return 0;
}

static void nbd_export_delete(BlockExport *common)
{
    NbdExport *exp = container_of(common, NbdExport, common);

    GLOBAL_STATE_CODE();
    assert(QLIST_EMPTY(&common->client_list));
    g_free(exp->name);
    g_free(exp->description);
}

static const BlockExportDriver nbd_export_driver = {
    .type = "nbd",
    .instance_size = sizeof(NbdExport),
    .opts = nbd_export_opts,
    .create = nbd_export_create,
    .delete = nbd_export_delete,
    .get_stats = nbd_export_get_stats,
};

void nbd_export_init(void)
{
    GLOBAL_STATE_CODE();
    blk_exp_register_driver(&nbd_export_driver);
}
