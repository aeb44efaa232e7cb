/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the two halves of the QMP monitor share and nobody else sees:
 *   qmp/monitor.c       listeners and stdio, the clients' fds and life
 *                       cycle, output queues, events, and running one
 *                       request at a time;
 *   qmp/monitor-json.c  the input stream: cutting the bytes a client sends
 *                       into JSON messages, resynchronising after bad
 *                       input, and the message size limit.
 * Everything here is main-loop code and requires the BQL.  Functions that
 * may close the client say so; their callers hold a reference to it.
 */
#ifndef QMP_MONITOR_INT_H
#define QMP_MONITOR_INT_H

#include "qmp/qmp.h"
#include "util/aio.h"
#include "util/log.h"
#include "util/main-loop.h"
#include "util/queue.h"

/*
 * What the scanner knows about the bytes of the current message: whether
 * it is inside a string (and which quote opened it: json-c also takes
 * single quotes, as QEMU does), and how many brackets are open.
 */
typedef struct JsonScan {
    unsigned depth;
    char quote;             /* '"' or '\'' inside a string, else 0 */
    bool escape;            /* the previous byte was a backslash in a string */
    bool line_start;        /* only blanks since the last newline */
} JsonScan;

typedef struct MonitorClient MonitorClient;

struct MonitorClient {
    unsigned refcnt TSA_GUARDED_BY(bql);
    char *name;                     /* immutable: for log messages */
    int in_fd TSA_GUARDED_BY(bql);     /* -1 once closed */
    int out_fd TSA_GUARDED_BY(bql);    /* -1 once closed */
    bool is_socket;                 /* immutable: in_fd == out_fd, send() */
    bool is_stdio;                  /* immutable */
    /* epoll cannot watch regular files: those run from pump_bh. */
    bool in_pollable, out_pollable; /* immutable */
    int saved_in_flags, saved_out_flags;  /* immutable: stdio's fcntl flags */
    AioBH *pump_bh TSA_GUARDED_BY(bql);    /* NULL if both are pollable */

    bool negotiated TSA_GUARDED_BY(bql);   /* qmp_capabilities succeeded */
    bool input_done TSA_GUARDED_BY(bql);   /* EOF; close once output drained */
    bool closed TSA_GUARDED_BY(bql);
    /*
     * Messages read and not yet answered, in order: requests waiting for
     * their turn, and error replies to bad input behind them (a
     * MonitorPending each).  Input is not read while it is not empty.  BQL
     */
    GQueue pending;
    bool running TSA_GUARDED_BY(bql);      /* one of our commands runs */
    bool pumping TSA_GUARDED_BY(bql);      /* client_run_pending() is on it */
    /* What the fd handlers watch. */
    bool read_armed TSA_GUARDED_BY(bql);
    bool write_armed TSA_GUARDED_BY(bql);

    /* Input: the tokener and the scanner follow the same bytes.  BQL */
    struct json_tokener *tok;
    JsonScan scan;
    bool discarding;                /* skipping the rest of a bad message */
    size_t msg_bytes;               /* bytes of the current message so far */
    /* An incomplete UTF-8 sequence held back from the tokener. */
    char utf8_tail[3];
    size_t utf8_tail_len;

    /* Output queue: bytes [out_head, out->len) are still to be written. */
    GByteArray *out TSA_GUARDED_BY(bql);
    size_t out_head TSA_GUARDED_BY(bql);

    /* On monitor_clients. */
    QLIST_ENTRY(MonitorClient TSA_GUARDED_BY(bql)) link;
};

/* --- qmp/monitor.c -------------------------------------------------------- */

/*
 * Disconnect @c: stop watching its fds, close them (stdio: give them back
 * as they were), and drop the list's reference.  @fmt says why, at @level;
 * NULL logs nothing.  Does nothing if @c is already closed.
 */
void monitor_client_close(MonitorClient *c, LogLevel level, const char *fmt,
                          ...) TSA_REQUIRES(bql) PRINTF_FMT(3, 4);

/*
 * Queue an error reply without id, for problems with the input stream.
 * May close @c (a client that does not read its output).
 */
void monitor_client_send_error(MonitorClient *c, const char *fmt, ...)
    TSA_REQUIRES(bql) PRINTF_FMT(2, 3);

/*
 * Take one request (NULL for the JSON text "null"; the caller keeps its
 * reference): it runs now, or when its turn comes (qmp/monitor.c says
 * when), and its reply is queued in order.  May close @c.
 */
void monitor_client_handle_request(MonitorClient *c, struct json_object *req)
    TSA_REQUIRES(bql);

/* --- qmp/monitor-json.c --------------------------------------------------- */

/* Set up and free the input state of a new (or last-referenced) client. */
void monitor_input_init(MonitorClient *c);
void monitor_input_free(MonitorClient *c);

/*
 * Consume @len bytes of input: complete messages go to
 * monitor_client_handle_request(), bad ones get an error reply.  @buf holds
 * whole UTF-8 sequences only (see monitor_utf8_incomplete_tail()).  May
 * close @c.
 */
void monitor_input_feed(MonitorClient *c, const char *buf, size_t len)
    TSA_REQUIRES(bql);

/*
 * How many bytes at the end of @buf are an incomplete UTF-8 sequence, to
 * be held back until the rest of it arrives.
 */
size_t monitor_utf8_incomplete_tail(const char *buf, size_t len);

#endif /* QMP_MONITOR_INT_H */
