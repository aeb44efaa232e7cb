/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Internals of the epoll backend of AioContext shared by its two files:
 * aio-epoll.c (the loop, the per-fd records and the backend interface)
 * and aio-epoll-sqe.c (the emulation of SQEs).  Private to util/;
 * everything here belongs to the context's home thread, except what
 * EpollReq says of requests on the thread pool.
 */
#ifndef UTIL_AIO_EPOLL_INT_H
#define UTIL_AIO_EPOLL_INT_H

#include <sys/epoll.h>
#include <sys/uio.h>

#include "util/aio-internal.h"

#define EPOLL_MAX_EVENTS 128

/* Generation 0 tags the context's eventfd; records count from 1. */
#define NOTIFY_GEN 0

typedef struct EpollFd EpollFd;
typedef struct EpollReq EpollReq;

typedef enum EpollReqState {
    REQ_QUEUED,         /* on es->submit, not started */
    REQ_LINKED,         /* waits for the request before it in its chain */
    REQ_POOL,           /* running on the thread pool; on es->active */
    REQ_FD_WAIT,        /* waits for readiness; on es->active and fd list */
} EpollReqState;

/*
 * An emulated SQE.  Home thread, except while in REQ_POOL: then the worker
 * running req_pool_run() reads sqe, iov and stream (which nobody changes
 * meanwhile) and the home thread touches only the list links.
 */
struct EpollReq {
    struct io_uring_sqe sqe;    /* the caller fills it after get_sqe() */
    AioCqeHandler *handler;     /* immutable; NULL: no completion call */
    AioContext *ctx;            /* immutable */
    EpollReqState state;
    GList link;                 /* es->submit or es->active; data = req */
    GList fd_link;              /* efd->waiters in REQ_FD_WAIT; data = req */
    EpollReq *link_next;        /* next request of an IO_LINK chain */
    EpollFd *efd;               /* REQ_FD_WAIT: the fd's record */
    uint32_t wait_events;       /* REQ_FD_WAIT: POLLIN, POLLOUT, or a mask */
    bool is_socket;             /* READ/WRITE(V) on a socket */
    bool stream;                /* READ/WRITE(V) without an offset */
    bool check_short;           /* a result below @expected breaks links */
    size_t expected;            /* bytes a complete transfer moves */
    size_t done;                /* bytes moved so far (MSG_WAITALL) */
    struct iovec iov;           /* READ/WRITE's buffer as an iovec */
};

/* What we watch on one fd.  Home thread. */
struct EpollFd {
    int fd;
    uint32_t gen;               /* tags this record's epoll events */
    AioHandler *handler;        /* the fd handler, or NULL; never deleted */
    GQueue waiters;             /* EpollReqs in REQ_FD_WAIT, FIFO */
    bool in_epoll;              /* registered with epoll ... */
    uint32_t registered;        /* ... for these EPOLL* events */
};

/* ctx->epoll.  Home thread. */
typedef struct EpollState {
    int epfd;
    GHashTable *fds;            /* fd -> EpollFd */
    uint32_t next_gen;
    GQueue submit;              /* REQ_QUEUED, in get_sqe() order */
    GQueue active;              /* REQ_POOL and REQ_FD_WAIT */
    /* Events poll_ready() found, for the next wait() to dispatch. */
    struct epoll_event ready[EPOLL_MAX_EVENTS];
    int n_ready;
} EpollState;

/* --- Per-fd records (aio-epoll.c) ---------------------------------------- */

/* The record of @fd, or NULL. */
EpollFd *aio_epoll_fd_lookup(EpollState *es, int fd);
/* The record an epoll event tagged @key was for, if it still exists. */
EpollFd *aio_epoll_fd_lookup_key(EpollState *es, uint64_t key);
/* The record of @fd, created if need be. */
EpollFd *aio_epoll_fd_get(EpollState *es, int fd);
/*
 * Bring the epoll registration of @efd in line with its interest; free the
 * record once it has neither handler nor waiter.  Returns 0 or the -errno
 * of a failed registration.  @efd may be freed: callers look it up again.
 */
int aio_epoll_fd_sync(EpollState *es, EpollFd *efd);

/* --- SQE emulation (aio-epoll-sqe.c) ------------------------------------- */

/* The backend's get_sqe(): a zeroed SQE in a request the next wait starts. */
struct io_uring_sqe *aio_epoll_get_sqe(AioContext *ctx,
                                       AioCqeHandler *handler);
/*
 * Start the requests queued when called, in order, chains as a whole.
 * Returns true if a completion callback ran.
 */
bool aio_epoll_run_queue(EpollState *es);
/*
 * Readiness @revents for the record tagged @key: retry its waiting
 * requests in order.  Returns true if a completion callback ran.
 */
bool aio_epoll_run_waiters(EpollState *es, uint64_t key, uint32_t revents);
/* Abort, naming one, if requests are still queued or in flight. */
void aio_epoll_check_leaks(AioContext *ctx, EpollState *es);

#endif /* UTIL_AIO_EPOLL_INT_H */
