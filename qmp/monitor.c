/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP monitors: listening UNIX sockets and stdio, and the connections
 * (clients) they serve, each speaking QEMU's wire protocol.
 *
 * This file owns the sockets and the clients' fds, their life cycle, the
 * output queues, events and running one request at a time.  The bytes a
 * client sends are cut into JSON messages by qmp/monitor-json.c; what the
 * two share is in qmp/monitor-int.h.
 *
 * Output is never written with a blocking call: replies and events go to a
 * per-client queue that is flushed at once as far as the socket takes it,
 * and then from a write handler.  A client whose queue would grow beyond
 * QMP_MAX_OUTPUT_BYTES has stopped reading and is dropped, so neither the
 * main loop nor other clients ever wait for it.
 *
 * Running requests.  A command, or any other main-loop callback (a job's
 * completion draining its nodes), may wait in nested event-loop iterations
 * (AIO_WAIT_WHILE).  Clients are served inside a *command's* waits, so
 * that a command that waits for a drain or a job does not stop everybody
 * else, but only with commands flagged QMP_CMD_WHILE_WAITING: queries,
 * quit and block-export-del, which neither wait nor change the graph
 * themselves.  Any other command waits, queued, until no command runs
 * (monitor_busy) and the loop is at its outermost iteration: found inside
 * a wait, a job-cancel would free the job the waiting code is using.
 * Inside the waits of other callbacks (deferred work: a job's completion,
 * an export's deletion, which are short because drains never wait for a
 * network peer) nothing runs, so that a client that reads an event and
 * then queries sees the state after the change, as with QEMU.  Each client's
 * requests run one at a time and in order (a client whose command waits
 * gets nothing else answered meanwhile); errors about bad input queue
 * behind them; and a client with requests queued is not read, so the
 * queue holds at most one read's worth.  Output keeps flowing throughout.
 *
 * Lifetimes: a client is on monitor_clients, which holds one reference,
 * until monitor_client_close(); whoever calls out to code that may close
 * it (the read path, around command dispatch) holds another, so a closed
 * client's memory stays valid until the last caller is done with it.  fd
 * handlers are removed before their fd is closed.
 *
 * Main-loop code: everything here runs in the main thread under the BQL,
 * including every callback.  Entry points open with GLOBAL_STATE_CODE()
 * or bql_assert_held(): the same assertion, for the analysis as well.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "qmp/control.h"
#include "qmp/monitor-int.h"
#include "qmp/qmp.h"
#include "util/aio.h"
#include "util/log.h"
#include "util/sockets.h"
#include "util/main-loop.h"
#include "util/queue.h"

/* Bytes read from a client per callback: one read per call, for fairness. */
#define MONITOR_READ_CHUNK      (32 * 1024)
#define MONITOR_BACKLOG         64
/* Connections accepted per listener callback. */
#define MONITOR_ACCEPT_BATCH    16
/* How long a listener rests after accept() fails (EMFILE and the like). */
#define MONITOR_ACCEPT_RETRY_NS (1000LL * 1000 * 1000)
/* A queue that held more than this gets a fresh buffer once it empties. */
#define MONITOR_OUT_SHRINK      (256 * 1024)

typedef struct MonitorListener MonitorListener;

struct MonitorListener {
    int fd;                         /* BQL */
    char *path;                     /* immutable */
    dev_t dev;                      /* immutable: the socket file we made, */
    ino_t ino;                      /* so we never unlink someone else's */
    AioTimer *retry_timer;          /* BQL: re-arms accept after a failure */
    unsigned next_client;           /* BQL: numbers clients in log messages */
    /* On monitor_listeners. */
    QLIST_ENTRY(MonitorListener TSA_GUARDED_BY(bql)) link;
};

static QLIST_HEAD(, MonitorClient TSA_GUARDED_BY(bql)) monitor_clients =
    QLIST_HEAD_INITIALIZER;
static QLIST_HEAD(, MonitorListener TSA_GUARDED_BY(bql)) monitor_listeners =
    QLIST_HEAD_INITIALIZER;
/* Commands running right now (nested loops may make it 1 deep).  BQL */
static unsigned monitor_busy TSA_GUARDED_BY(bql);
/* One request read and not yet answered (MonitorClient.pending).  BQL */
typedef struct MonitorPending {
    struct json_object *req;        /* a request (NULL: the text "null") */
    struct json_object *reply;      /* or, instead, a reply ready to go */
} MonitorPending;

/* Shutting down: no further command is read from anyone.  BQL */
static bool monitor_input_stopped TSA_GUARDED_BY(bql);
/* stdin/stdout serve at most one monitor in the life of the process.  BQL */
static bool monitor_stdio_used TSA_GUARDED_BY(bql);
/* Whether monitor_event_observer() is registered with qmp_dispatch.  BQL */
static bool monitor_observing TSA_GUARDED_BY(bql);

static void client_update_handlers(MonitorClient *c) TSA_REQUIRES(bql);

/* Requests of @c still to run or running. */
static bool client_has_requests(MonitorClient *c) TSA_REQUIRES(bql)
{
    return c->running || !g_queue_is_empty(&c->pending);
}

/* --- Output --------------------------------------------------------------- */

static size_t client_out_pending(MonitorClient *c) TSA_REQUIRES(bql)
{
    return c->out->len - c->out_head;
}

/*
 * Write as much queued output as the fd takes without blocking.  May close
 * @c (on a write error, or at the end of a half-closed client's output),
 * which frees it unless the caller holds a reference.
 */
static void client_flush(MonitorClient *c) TSA_REQUIRES(bql)
{
    while (client_out_pending(c) > 0) {
        const guint8 *p = c->out->data + c->out_head;
        size_t len = client_out_pending(c);
        ssize_t n;

        n = c->is_socket ? send(c->out_fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT)
                         : write(c->out_fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            monitor_client_close(c, LOG_LEVEL_DEBUG, "write failed: %s",
                                 n < 0 ? g_strerror(errno) : "wrote nothing");
            return;
        }
        c->out_head += n;
    }
    if (client_out_pending(c) == 0) {
        if (c->out->len > MONITOR_OUT_SHRINK) {
            g_byte_array_unref(c->out);
            c->out = g_byte_array_new();
        } else {
            g_byte_array_set_size(c->out, 0);
        }
        c->out_head = 0;
        if (c->input_done && !client_has_requests(c)) {
            monitor_client_close(c, LOG_LEVEL_DEBUG, "disconnected");
            return;
        }
    }
    client_update_handlers(c);
}

/*
 * Queue one message (@text, without line end) and start writing it.  A
 * client that has not taken what was queued before and would go over
 * QMP_MAX_OUTPUT_BYTES is dropped.  A single message larger than the limit
 * still goes to a client that has kept up.  May close @c.
 */
static void client_send_text(MonitorClient *c, const char *text, size_t len)
    TSA_REQUIRES(bql)
{
    size_t pending = client_out_pending(c);

    if (c->closed) {
        return;
    }
    if (pending > 0 && pending + len + 2 > QMP_MAX_OUTPUT_BYTES) {
        monitor_client_close(c, LOG_LEVEL_WARNING,
                             "not reading its output (%zu bytes queued); "
                             "dropping it", pending);
        return;
    }
    /* Drop what was written once it is most of the buffer. */
    if (c->out_head > 64 * 1024 && c->out_head * 2 > c->out->len) {
        g_byte_array_remove_range(c->out, 0, c->out_head);
        c->out_head = 0;
    }
    g_byte_array_append(c->out, (const guint8 *)text, len);
    /* QEMU ends every message with CR LF. */
    g_byte_array_append(c->out, (const guint8 *)"\r\n", 2);
    client_flush(c);
}

static const char *monitor_to_json(struct json_object *obj, size_t *len)
{
    return json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

/* May close @c. */
static void client_send(MonitorClient *c, struct json_object *obj)
    TSA_REQUIRES(bql)
{
    size_t len;
    const char *text = monitor_to_json(obj, &len);

    client_send_text(c, text, len);
}

void monitor_client_send_error(MonitorClient *c, const char *fmt, ...)
{
    struct json_object *rsp = json_object_new_object();
    struct json_object *error = json_object_new_object();
    g_autofree char *desc = NULL;
    va_list ap;

    va_start(ap, fmt);
    desc = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    json_object_object_add(error, "class", json_object_new_string(
                               error_class_name(ERROR_CLASS_GENERIC_ERROR)));
    json_object_object_add(error, "desc", json_object_new_string(desc));
    json_object_object_add(rsp, "error", error);
    if (client_has_requests(c)) {
        /* Behind the requests read before the bad input. */
        MonitorPending *p = g_new0(MonitorPending, 1);

        p->reply = rsp;
        g_queue_push_tail(&c->pending, p);
        return;
    }
    client_send(c, rsp);
    json_object_put(rsp);
}

/* --- Life cycle of a client ----------------------------------------------- */

static void client_ref(MonitorClient *c) TSA_REQUIRES(bql)
{
    c->refcnt++;
}

static void monitor_pending_free(gpointer data)
{
    MonitorPending *p = data;

    json_object_put(p->req);
    json_object_put(p->reply);
    g_free(p);
}

static void client_unref(MonitorClient *c) TSA_REQUIRES(bql)
{
    assert(c->refcnt > 0);
    if (--c->refcnt > 0) {
        return;
    }
    assert(c->closed);
    g_queue_clear_full(&c->pending, monitor_pending_free);
    monitor_input_free(c);
    g_byte_array_unref(c->out);
    g_free(c->name);
    g_free(c);
}

static bool client_wants_read(MonitorClient *c) TSA_REQUIRES(bql)
{
    return !c->closed && !c->input_done && !monitor_input_stopped &&
           !client_has_requests(c);
}

static bool client_wants_write(MonitorClient *c) TSA_REQUIRES(bql)
{
    return !c->closed && client_out_pending(c) > 0;
}

static void client_read(void *opaque);
static void client_write(void *opaque);

/*
 * Make the fd handlers (or the pump, for fds epoll cannot watch) match
 * what the client wants now.  Only changes are passed to the loop.
 */
static void client_update_handlers(MonitorClient *c)
{
    AioContext *ctx = main_context();
    bool want_read = client_wants_read(c) && c->in_pollable;
    bool want_write = client_wants_write(c) && c->out_pollable;

    if (c->in_fd >= 0 && c->in_fd == c->out_fd) {
        if (want_read != c->read_armed || want_write != c->write_armed) {
            aio_set_fd_handler_full(ctx, c->in_fd,
                                    want_read ? client_read : NULL,
                                    want_write ? client_write : NULL,
                                    c, "qmp-client");
        }
    } else {
        if (c->in_fd >= 0 && want_read != c->read_armed) {
            aio_set_fd_handler_full(ctx, c->in_fd,
                                    want_read ? client_read : NULL, NULL,
                                    c, "qmp-stdin");
        }
        if (c->out_fd >= 0 && want_write != c->write_armed) {
            aio_set_fd_handler_full(ctx, c->out_fd, NULL,
                                    want_write ? client_write : NULL,
                                    c, "qmp-stdout");
        }
    }
    c->read_armed = want_read;
    c->write_armed = want_write;
    if (c->pump_bh &&
        ((client_wants_read(c) && !c->in_pollable) ||
         (client_wants_write(c) && !c->out_pollable))) {
        aio_bh_schedule(c->pump_bh);
    }
}

void monitor_client_close(MonitorClient *c, LogLevel level, const char *fmt,
                          ...)
{
    if (c->closed) {
        return;
    }
    if (fmt && log_enabled(level)) {
        g_autofree char *why = NULL;
        va_list ap;

        va_start(ap, fmt);
        why = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        log_msg(level, "%s: %s", c->name, why);
    }
    c->closed = true;
    client_update_handlers(c);      /* removes both handlers */
    if (c->pump_bh) {
        aio_bh_delete(c->pump_bh);
        c->pump_bh = NULL;
    }
    if (c->is_stdio) {
        /* Never close 0 and 1: the next open() would get them. */
        fcntl(c->in_fd, F_SETFL, c->saved_in_flags);
        fcntl(c->out_fd, F_SETFL, c->saved_out_flags);
    } else {
        close(c->in_fd);
    }
    c->in_fd = c->out_fd = -1;
    QLIST_REMOVE(c, link);
    client_unref(c);
}

/* --- Reading, and running requests -------------------------------------- */

/*
 * Whether any command may run now: none runs, and the loop is at its
 * outermost iteration (not inside some callback's wait).
 */
static bool monitor_at_outermost(void) TSA_REQUIRES(bql)
{
    return !monitor_busy && aio_poll_depth(main_context()) <= 1;
}

/*
 * Whether @req may run inside a wait: a command flagged
 * QMP_CMD_WHILE_WAITING, or a request qmp_dispatch() refuses before
 * running anything (malformed, unknown command).
 */
static bool request_runs_while_waiting(struct json_object *req)
    TSA_REQUIRES(bql)
{
    struct json_object *name;
    const QmpCommand *cmd;

    if (!req || !json_object_is_type(req, json_type_object) ||
        !json_object_object_get_ex(req, "execute", &name) ||
        !json_object_is_type(name, json_type_string)) {
        return true;
    }
    cmd = qmp_find_command(json_object_get_string(name));
    return !cmd || (cmd->flags & QMP_CMD_WHILE_WAITING);
}

static void monitor_run_all_pending(void) TSA_REQUIRES(bql);

static void monitor_resume_after_nesting(void *opaque)
{
    bql_assert_held();
    monitor_run_all_pending();
}

/* Run @req for @c and queue its reply.  May close @c. */
static void client_run_request(MonitorClient *c, struct json_object *req)
    TSA_REQUIRES(bql)
{
    struct json_object *rsp;

    c->running = true;
    monitor_busy++;
    rsp = qmp_dispatch(req, &c->negotiated);
    monitor_busy--;
    c->running = false;
    client_send(c, rsp);
    json_object_put(rsp);
}

/*
 * Answer @c's queued messages in order, as far as their turn has come;
 * then read its input again if the queue is empty.  May close @c.
 */
static void client_run_pending(MonitorClient *c) TSA_REQUIRES(bql)
{
    MonitorPending *p;
    bool ran = false;

    if (c->pumping) {
        return;     /* the frame further out goes on after its command */
    }
    client_ref(c);
    c->pumping = true;
    while (!c->closed && !c->running &&
           (p = g_queue_peek_head(&c->pending))) {
        /*
         * Inside a command's wait, commands that neither wait nor change
         * anything may run.  Inside any other callback's wait (a job's
         * completion, an export's deletion) nothing runs: a query there
         * would see a graph change half done, which QEMU's clients,
         * reading the state after an event, do not expect.
         */
        if (!p->reply && !monitor_at_outermost() &&
            (!monitor_busy || !request_runs_while_waiting(p->req))) {
            if (!monitor_busy) {
                /* Some callback's wait: try again when it is over. */
                aio_poll_at_outermost_exit(main_context(),
                                           monitor_resume_after_nesting,
                                           NULL);
            }
            break;
        }
        g_queue_pop_head(&c->pending);
        if (p->reply) {
            client_send(c, p->reply);
        } else {
            client_run_request(c, p->req);
            ran = true;
        }
        monitor_pending_free(p);
    }
    c->pumping = false;
    if (!c->closed) {
        if (c->input_done && !client_has_requests(c) &&
            client_out_pending(c) == 0) {
            monitor_client_close(c, LOG_LEVEL_DEBUG, "disconnected");
        } else {
            client_update_handlers(c);
        }
    }
    client_unref(c);
    /* A command of ours that waited held everybody else's back. */
    if (ran && !monitor_busy) {
        monitor_run_all_pending();
    }
}

/* Give every client's queue its turn (a waiting command is over). */
static void monitor_run_all_pending(void)
{
    g_autoptr(GPtrArray) clients = g_ptr_array_new();
    MonitorClient *c;

    if (monitor_input_stopped) {
        return;
    }
    /* Commands may close clients, any of them: hold them all first. */
    QLIST_FOREACH(c, &monitor_clients, link) {
        if (!g_queue_is_empty(&c->pending)) {
            client_ref(c);
            g_ptr_array_add(clients, c);
        }
    }
    for (guint i = 0; i < clients->len; i++) {
        c = clients->pdata[i];
        client_run_pending(c);
        client_unref(c);
    }
}

void monitor_client_handle_request(MonitorClient *c, struct json_object *req)
{
    MonitorPending *p = g_new0(MonitorPending, 1);

    p->req = json_object_get(req);
    g_queue_push_tail(&c->pending, p);
    client_run_pending(c);
}

static void client_input_eof(MonitorClient *c) TSA_REQUIRES(bql)
{
    if (c->msg_bytes > 0 && !c->discarding) {
        debug_report("%s: input ended in the middle of a message", c->name);
    }
    c->input_done = true;
    if (client_out_pending(c) == 0 && !client_has_requests(c)) {
        monitor_client_close(c, LOG_LEVEL_DEBUG, "disconnected");
    } else {
        /* A half-closed socket still reads: answer and send first. */
        client_update_handlers(c);
    }
}

static void client_read(void *opaque)
{
    MonitorClient *c = opaque;
    char buf[sizeof(c->utf8_tail) + MONITOR_READ_CHUNK];
    size_t len, hold;
    ssize_t n;

    bql_assert_held();
    if (!client_wants_read(c)) {
        /* Shutting down, or requests wait (a stale readiness). */
        client_update_handlers(c);
        return;
    }
    memcpy(buf, c->utf8_tail, c->utf8_tail_len);
    n = read(c->in_fd, buf + c->utf8_tail_len, MONITOR_READ_CHUNK);
    if (n < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            monitor_client_close(c, LOG_LEVEL_DEBUG, "read failed: %s",
                                 g_strerror(errno));
        }
        return;
    }
    if (n == 0) {
        client_input_eof(c);
        return;
    }
    len = c->utf8_tail_len + n;
    hold = monitor_utf8_incomplete_tail(buf, len);
    memcpy(c->utf8_tail, buf + len - hold, hold);
    c->utf8_tail_len = hold;
    client_ref(c);
    monitor_input_feed(c, buf, len - hold);
    if (!c->closed) {
        client_update_handlers(c);
    }
    client_unref(c);
}

static void client_write(void *opaque)
{
    MonitorClient *c = opaque;

    bql_assert_held();
    client_flush(c);
}

/* Reads and writes on fds that epoll cannot watch (regular files). */
static void client_pump(void *opaque)
{
    MonitorClient *c = opaque;

    bql_assert_held();
    client_ref(c);
    if (!c->in_pollable && client_wants_read(c)) {
        client_read(c);
    }
    if (!c->out_pollable && client_wants_write(c)) {
        client_flush(c);
    }
    if (!c->closed) {
        client_update_handlers(c);  /* reschedules while there is work */
    }
    client_unref(c);
}

/* --- Events --------------------------------------------------------------- */

static void monitor_event_observer(const char *event, struct json_object *msg,
                                   void *opaque)
{
    MonitorClient *c, *next;
    const char *text = NULL;
    size_t len = 0;

    bql_assert_held();
    QLIST_FOREACH_SAFE(c, &monitor_clients, link, next) {
        if (!c->negotiated) {
            continue;
        }
        if (!text) {
            text = monitor_to_json(msg, &len);
        }
        client_send_text(c, text, len);
    }
}

static void monitor_observe_events(void) TSA_REQUIRES(bql)
{
    if (!monitor_observing) {
        qmp_add_event_observer(monitor_event_observer, NULL);
        monitor_observing = true;
    }
}

/* --- Starting a client ---------------------------------------------------- */

static struct json_object *monitor_greeting(void) TSA_REQUIRES(bql)
{
    struct json_object *qmp = json_object_new_object();
    struct json_object *greeting = json_object_new_object();

    json_object_object_add(qmp, "version", qmp_version_info());
    /* QEMU offers "oob"; blockd offers nothing to negotiate. */
    json_object_object_add(qmp, "capabilities", json_object_new_array());
    json_object_object_add(greeting, "QMP", qmp);
    return greeting;
}

/* Whether epoll can watch @fd (it cannot watch regular files, /dev/null). */
static bool monitor_fd_pollable(int fd)
{
    struct epoll_event ev = { .events = EPOLLIN };
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    bool pollable;

    if (epfd < 0) {
        return true;
    }
    pollable = epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 || errno != EPERM;
    close(epfd);
    return pollable;
}

static MonitorClient *client_new(int in_fd, int out_fd, char *name)
    TSA_REQUIRES(bql)
{
    MonitorClient *c = g_new0(MonitorClient, 1);

    c->refcnt = 1;                  /* monitor_clients' */
    c->name = name;
    c->in_fd = in_fd;
    c->out_fd = out_fd;
    c->is_socket = in_fd == out_fd;
    c->in_pollable = c->out_pollable = true;
    monitor_input_init(c);
    c->out = g_byte_array_new();
    return c;
}

/* Put @c on the list, start reading, greet.  May close @c. */
static void client_start(MonitorClient *c) TSA_REQUIRES(bql)
{
    struct json_object *greeting = monitor_greeting();

    QLIST_INSERT_HEAD(&monitor_clients, c, link);
    debug_report("%s: connected", c->name);
    client_update_handlers(c);
    client_send(c, greeting);
    json_object_put(greeting);
}

/* --- UNIX socket listeners ------------------------------------------------ */

static void listener_accept(void *opaque);

static void listener_set_handler(MonitorListener *l, bool on)
{
    aio_set_fd_handler_full(main_context(), l->fd, on ? listener_accept : NULL,
                            NULL, l, "qmp-listener");
}

static void listener_retry(void *opaque)
{
    MonitorListener *l = opaque;

    GLOBAL_STATE_CODE();
    listener_set_handler(l, true);
}

static void listener_accept(void *opaque)
{
    MonitorListener *l = opaque;

    bql_assert_held();
    for (int i = 0; i < MONITOR_ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* Out of fds or memory: a level-triggered retry would spin. */
                warn_report("QMP socket '%s': accept failed: %s; pausing for "
                            "a second", l->path, g_strerror(errno));
                listener_set_handler(l, false);
                aio_timer_mod_ns(l->retry_timer,
                                 get_clock_ns() + MONITOR_ACCEPT_RETRY_NS);
            }
            return;
        }
        client_start(client_new(fd, fd, g_strdup_printf(
            "QMP client #%u on '%s'", ++l->next_client, l->path)));
    }
}

bool monitor_add_unix(const char *path, unsigned mode, Error **errp)
{
    MonitorListener *l;
    struct stat st;
    int fd;

    bql_assert_held();
    mode = mode ? mode : 0600;
    if (mode & ~0777u) {
        error_setg(errp, "Invalid mode %#o for QMP socket '%s'", mode, path);
        return false;
    }
    fd = unix_listen_path(path, mode, MONITOR_BACKLOG, "QMP socket", &st,
                          errp);
    if (fd < 0) {
        return false;
    }
    l = g_new0(MonitorListener, 1);
    l->fd = fd;
    l->path = g_strdup(path);
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->retry_timer = aio_timer_new_full(main_context(), listener_retry, l,
                                        "qmp-listener-retry");
    QLIST_INSERT_HEAD(&monitor_listeners, l, link);
    listener_set_handler(l, true);
    monitor_observe_events();
    return true;
}

/* --- stdio ---------------------------------------------------------------- */

/* Make @fd non-blocking if the loop can watch it; returns its old flags. */
static bool monitor_prepare_stdio_fd(int fd, const char *what, bool *pollable,
                                     int *saved_flags, Error **errp)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0) {
        error_setg_errno(errp, errno, "Cannot use %s for QMP", what);
        return false;
    }
    *saved_flags = flags;
    *pollable = monitor_fd_pollable(fd);
    if (*pollable && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        error_setg_errno(errp, errno, "Cannot use %s for QMP", what);
        return false;
    }
    return true;
}

bool monitor_add_stdio(Error **errp)
{
    bool in_pollable, out_pollable;
    int in_flags, out_flags;
    MonitorClient *c;

    bql_assert_held();
    if (monitor_stdio_used) {
        error_setg(errp, "stdio is already used by a QMP monitor");
        return false;
    }
    if (!monitor_prepare_stdio_fd(STDIN_FILENO, "stdin", &in_pollable,
                                  &in_flags, errp)) {
        return false;
    }
    if (!monitor_prepare_stdio_fd(STDOUT_FILENO, "stdout", &out_pollable,
                                  &out_flags, errp)) {
        fcntl(STDIN_FILENO, F_SETFL, in_flags);
        return false;
    }
    monitor_stdio_used = true;
    c = client_new(STDIN_FILENO, STDOUT_FILENO, g_strdup("QMP on stdio"));
    c->is_socket = false;
    c->is_stdio = true;
    c->in_pollable = in_pollable;
    c->out_pollable = out_pollable;
    c->saved_in_flags = in_flags;
    c->saved_out_flags = out_flags;
    if (!in_pollable || !out_pollable) {
        c->pump_bh = aio_bh_new_full(main_context(), client_pump, c,
                                     "qmp-stdio-pump");
    }
    monitor_observe_events();
    client_start(c);
    return true;
}

/* --- Shutting down -------------------------------------------------------- */

void monitor_stop_listening(void)
{
    MonitorListener *l, *next;
    struct stat st;

    bql_assert_held();
    QLIST_FOREACH_SAFE(l, &monitor_listeners, link, next) {
        listener_set_handler(l, false);
        aio_timer_free(l->retry_timer);
        close(l->fd);
        /* Only our own socket: someone may have replaced it since. */
        if (lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
            st.st_ino == l->ino) {
            unlink(l->path);
        }
        QLIST_REMOVE(l, link);
        g_free(l->path);
        g_free(l);
    }
}

void monitor_stop_input(void)
{
    MonitorClient *c;

    bql_assert_held();
    monitor_input_stopped = true;
    QLIST_FOREACH(c, &monitor_clients, link) {
        client_update_handlers(c);
    }
}

void monitor_cleanup(void)
{
    MonitorClient *c, *next;

    bql_assert_held();
    monitor_stop_listening();
    QLIST_FOREACH_SAFE(c, &monitor_clients, link, next) {
        /* What the fd takes now; nobody waits for a slow reader. */
        client_ref(c);
        client_flush(c);
        monitor_client_close(c, LOG_LEVEL_DEBUG, "closed by the server");
        client_unref(c);
    }
    /* Everything is closed: a monitor added later starts afresh. */
    monitor_input_stopped = false;
}

