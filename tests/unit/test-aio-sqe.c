/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SQEs through aio_co_submit_sqe() and aio_get_sqe(): file and socket I/O,
 * links, errors, cancellation, many requests in flight, and submission
 * from an iothread.  Runs once per AioContext backend, so the epoll
 * backend's emulation is held to io_uring's results.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/iothread.h"
#include "util/main-loop.h"
#include "util/thread-pool.h"
#include "util/thread.h"

static AioContext *ctx;

/* A temporary file, already unlinked. */
static int open_tmp_file(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp("blockd-aio-sqe-XXXXXX", &path, &err);

    g_assert_no_error(err);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(unlink(path), ==, 0);
    return fd;
}

static off_t file_size(int fd)
{
    struct stat st;

    g_assert_cmpint(fstat(fd, &st), ==, 0);
    return st.st_size;
}

/* A file descriptor number that is certainly not open. */
static int closed_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    return fd;
}

/* --- Preparing SQEs ------------------------------------------------------ */

typedef struct Op {
    unsigned opcode;
    int fd;
    void *addr;             /* buffer, iovec array or msghdr */
    unsigned len;           /* bytes, iovec count, or fallocate mode */
    uint64_t off;           /* file offset */
    uint64_t len64;         /* fallocate length */
    unsigned flags;         /* msg_flags, fsync_flags, poll mask */
    uint64_t target;        /* ASYNC_CANCEL: user_data to cancel */
} Op;

static void op_prep(struct io_uring_sqe *sqe, void *opaque)
{
    Op *op = opaque;

    switch (op->opcode) {
    case IORING_OP_NOP:
        io_uring_prep_nop(sqe);
        break;
    case IORING_OP_READ:
        io_uring_prep_read(sqe, op->fd, op->addr, op->len, op->off);
        break;
    case IORING_OP_WRITE:
        io_uring_prep_write(sqe, op->fd, op->addr, op->len, op->off);
        break;
    case IORING_OP_READV:
        io_uring_prep_readv(sqe, op->fd, op->addr, op->len, op->off);
        break;
    case IORING_OP_WRITEV:
        io_uring_prep_writev(sqe, op->fd, op->addr, op->len, op->off);
        break;
    case IORING_OP_FSYNC:
        io_uring_prep_fsync(sqe, op->fd, op->flags);
        break;
    case IORING_OP_FALLOCATE:
        io_uring_prep_fallocate(sqe, op->fd, (int)op->len, (off_t)op->off,
                                (off_t)op->len64);
        break;
    case IORING_OP_RECV:
        io_uring_prep_recv(sqe, op->fd, op->addr, op->len, (int)op->flags);
        break;
    case IORING_OP_SEND:
        io_uring_prep_send(sqe, op->fd, op->addr, op->len, (int)op->flags);
        break;
    case IORING_OP_RECVMSG:
        io_uring_prep_recvmsg(sqe, op->fd, op->addr, op->flags);
        break;
    case IORING_OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, op->addr, op->flags);
        break;
    case IORING_OP_POLL_ADD:
        io_uring_prep_poll_add(sqe, op->fd, op->flags);
        break;
    case IORING_OP_ASYNC_CANCEL:
        io_uring_prep_cancel64(sqe, op->target, 0);
        break;
    default:
        g_assert_not_reached();
    }
}

static int coroutine_fn co_op(Op op)
{
    return aio_co_submit_sqe(op_prep, &op, NULL);
}

/*
 * Without a coroutine: a handler that records its result and the order in
 * which completions arrived.
 */
typedef struct Cqe {
    AioCqeHandler handler;
    int res;
    int seq;                /* 0 until completed */
} Cqe;

static int cqe_seq;

static void cqe_record(AioCqeHandler *handler, int res, uint32_t flags)
{
    Cqe *c = container_of(handler, Cqe, handler);

    g_assert_cmpint(c->seq, ==, 0);
    c->res = res;
    c->seq = ++cqe_seq;
}

static struct io_uring_sqe *get_sqe(Cqe *c, Op op)
{
    struct io_uring_sqe *sqe;

    *c = (Cqe) { .handler.cb = cqe_record };
    sqe = aio_get_sqe(ctx, &c->handler);
    op_prep(sqe, &op);
    return sqe;
}

/* Run a coroutine on the main context until it sets *done. */
static void run_co(CoroutineEntry *entry, void *opaque, const bool *done)
{
    co_enter(co_create(entry, opaque));
    while (!*done) {
        aio_poll(ctx, true);
    }
}

/* A few non-blocking iterations: enough for anything already possible. */
static void spin(void)
{
    int i;

    for (i = 0; i < 10; i++) {
        aio_poll(ctx, false);
    }
}

/* --- Tests --------------------------------------------------------------- */

static void test_backend_selected(void)
{
    const char *want = getenv("BLOCKD_AIO_BACKEND");

    if (want && *want) {
        g_assert_cmpstr(aio_context_backend_name(ctx), ==, want);
    }
}

typedef struct FileIo {
    int fd;
    bool done;
} FileIo;

static void coroutine_fn file_io_entry(void *opaque)
{
    FileIo *f = opaque;
    char a[4096], b[4096], ra[4096], rb[4096], small[100], head[512];
    struct iovec wiov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
    struct iovec riov[2] = { { ra, sizeof(ra) }, { rb, sizeof(rb) } };

    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    g_assert_cmpint(co_op((Op) { IORING_OP_WRITEV, f->fd, wiov, 2, 4096 }),
                    ==, 8192);
    g_assert_cmpint(co_op((Op) { IORING_OP_FSYNC, f->fd }), ==, 0);
    g_assert_cmpint(co_op((Op) { .opcode = IORING_OP_FSYNC, .fd = f->fd,
                                 .flags = IORING_FSYNC_DATASYNC }), ==, 0);

    g_assert_cmpint(co_op((Op) { IORING_OP_READV, f->fd, riov, 2, 4096 }),
                    ==, 8192);
    g_assert_cmpmem(ra, sizeof(ra), a, sizeof(a));
    g_assert_cmpmem(rb, sizeof(rb), b, sizeof(b));

    /* A read across the boundary of the two buffers written. */
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, f->fd, small, sizeof(small),
                                 8192 - 50 }), ==, sizeof(small));
    g_assert_cmpmem(small, 50, a, 50);
    g_assert_cmpmem(small + 50, 50, b, 50);

    /* The hole before offset 4096 reads as zeros; a single-buffer write. */
    memset(head, 'h', sizeof(head));
    g_assert_cmpint(co_op((Op) { IORING_OP_WRITE, f->fd, head, sizeof(head),
                                 0 }), ==, sizeof(head));
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, f->fd, ra, sizeof(ra), 0 }),
                    ==, sizeof(ra));
    g_assert_cmpmem(ra, sizeof(head), head, sizeof(head));
    g_assert_cmpint(ra[sizeof(head)], ==, 0);
    g_assert_cmpint(ra[sizeof(ra) - 1], ==, 0);

    /* At the end of the file: short, then nothing. */
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, f->fd, ra, sizeof(ra),
                                 3 * 4096 - 10 }), ==, 10);
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, f->fd, ra, sizeof(ra),
                                 3 * 4096 }), ==, 0);
    f->done = true;
}

static void test_file_write_read_fsync(void)
{
    FileIo f = { .fd = open_tmp_file() };

    run_co(file_io_entry, &f, &f.done);
    g_assert_cmpint(file_size(f.fd), ==, 3 * 4096);
    close(f.fd);
}

#define PUNCH_FILE  (64 * 1024)
#define PUNCH_START (16 * 1024)
#define PUNCH_LEN   (16 * 1024)

typedef struct Punch {
    int fd;
    int punch_ret;
    bool done;
} Punch;

static void coroutine_fn punch_entry(void *opaque)
{
    Punch *p = opaque;
    g_autofree char *buf = g_malloc(PUNCH_FILE);
    int i;

    memset(buf, 0xaa, PUNCH_FILE);
    g_assert_cmpint(co_op((Op) { IORING_OP_WRITE, p->fd, buf, PUNCH_FILE, 0 }),
                    ==, PUNCH_FILE);
    p->punch_ret = co_op((Op) { .opcode = IORING_OP_FALLOCATE, .fd = p->fd,
                                .len = FALLOC_FL_PUNCH_HOLE |
                                       FALLOC_FL_KEEP_SIZE,
                                .off = PUNCH_START, .len64 = PUNCH_LEN });
    if (p->punch_ret == -EOPNOTSUPP) {
        p->done = true;
        return;
    }
    g_assert_cmpint(p->punch_ret, ==, 0);
    memset(buf, 0x55, PUNCH_FILE);
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, p->fd, buf, PUNCH_FILE, 0 }),
                    ==, PUNCH_FILE);
    for (i = 0; i < PUNCH_FILE; i++) {
        bool in_hole = i >= PUNCH_START && i < PUNCH_START + PUNCH_LEN;

        if ((uint8_t)buf[i] != (in_hole ? 0 : 0xaa)) {
            g_error("byte %d is 0x%02x", i, (uint8_t)buf[i]);
        }
    }
    /* Mode 0 allocates and extends: offset and length go where they must. */
    g_assert_cmpint(co_op((Op) { .opcode = IORING_OP_FALLOCATE, .fd = p->fd,
                                 .len = 0, .off = PUNCH_FILE,
                                 .len64 = PUNCH_FILE }), ==, 0);
    p->done = true;
}

static void test_fallocate_punch_hole(void)
{
    Punch p = { .fd = open_tmp_file() };

    run_co(punch_entry, &p, &p.done);
    if (p.punch_ret == -EOPNOTSUPP) {
        g_test_skip("the temporary directory cannot punch holes");
    } else {
        g_assert_cmpint(file_size(p.fd), ==, 2 * PUNCH_FILE);
    }
    close(p.fd);
}

/* --- Sockets ------------------------------------------------------------- */

typedef struct SockOp {
    Op op;
    char buf[64];
    int res;
    bool done;
} SockOp;

static void coroutine_fn sock_op_entry(void *opaque)
{
    SockOp *s = opaque;

    s->op.addr = s->buf;
    s->res = co_op(s->op);
    s->done = true;
}

static void start_sock_op(SockOp *s)
{
    co_enter(co_create(sock_op_entry, s));
}

static void wait_sock_op(SockOp *s)
{
    while (!s->done) {
        aio_poll(ctx, true);
    }
}

static void *late_sender(void *opaque)
{
    int fd = *(int *)opaque;

    g_usleep(20 * 1000);
    g_assert_cmpint(send(fd, "late", 4, 0), ==, 4);
    return NULL;
}

typedef struct MsgIo {
    int fd[2];
    bool done;
} MsgIo;

static void coroutine_fn msg_io_entry(void *opaque)
{
    MsgIo *m = opaque;
    char part1[] = "vec", part2[] = "tored", in1[3], in2[5];
    struct iovec out[2] = { { part1, 3 }, { part2, 5 } };
    struct iovec in[2] = { { in1, 3 }, { in2, 5 } };
    struct msghdr smsg = { .msg_iov = out, .msg_iovlen = 2 };
    struct msghdr rmsg = { .msg_iov = in, .msg_iovlen = 2 };
    char word[8];

    g_assert_cmpint(co_op((Op) { .opcode = IORING_OP_SENDMSG, .fd = m->fd[1],
                                 .addr = &smsg }), ==, 8);
    g_assert_cmpint(co_op((Op) { .opcode = IORING_OP_RECVMSG, .fd = m->fd[0],
                                 .addr = &rmsg }), ==, 8);
    g_assert_cmpmem(in1, 3, "vec", 3);
    g_assert_cmpmem(in2, 5, "tored", 5);

    /* Plain READ and WRITE work on sockets too. */
    g_assert_cmpint(co_op((Op) { IORING_OP_WRITE, m->fd[1], "word", 4, 0 }),
                    ==, 4);
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, m->fd[0], word,
                                 sizeof(word), 0 }), ==, 4);
    g_assert_cmpmem(word, 4, "word", 4);
    m->done = true;
}

static void test_socket_send_recv(void)
{
    SockOp recv_op = { .op = { .opcode = IORING_OP_RECV, .len = 5 } };
    SockOp send_op = { .op = { .opcode = IORING_OP_SEND, .len = 5 } };
    SockOp waitall = { .op = { .opcode = IORING_OP_RECV, .len = 8,
                               .flags = MSG_WAITALL } };
    SockOp blocking = { .op = { .opcode = IORING_OP_RECV, .len = 64 } };
    MsgIo m;
    pthread_t t;
    int sv[2];

    /* Blocking sockets: the epoll emulation must never block on them. */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);

    /* A RECV posted before any data waits for it. */
    recv_op.op.fd = sv[0];
    start_sock_op(&recv_op);
    spin();
    g_assert_false(recv_op.done);
    send_op.op.fd = sv[1];
    memcpy(send_op.buf, "hello", 5);
    start_sock_op(&send_op);
    wait_sock_op(&send_op);
    wait_sock_op(&recv_op);
    g_assert_cmpint(send_op.res, ==, 5);
    g_assert_cmpint(recv_op.res, ==, 5);
    g_assert_cmpmem(recv_op.buf, 5, "hello", 5);

    /* MSG_WAITALL: half the data is not enough. */
    waitall.op.fd = sv[0];
    start_sock_op(&waitall);
    g_assert_cmpint(send(sv[1], "abcd", 4, 0), ==, 4);
    spin();
    g_assert_false(waitall.done);
    g_assert_cmpint(send(sv[1], "efgh", 4, 0), ==, 4);
    wait_sock_op(&waitall);
    g_assert_cmpint(waitall.res, ==, 8);
    g_assert_cmpmem(waitall.buf, 8, "abcdefgh", 8);

    /* A RECV that blocks the loop until another thread sends. */
    blocking.op.fd = sv[0];
    start_sock_op(&blocking);
    bd_thread_create(&t, "late-sender", late_sender, &sv[1], &error_abort);
    wait_sock_op(&blocking);
    bd_thread_join(t);
    g_assert_cmpint(blocking.res, ==, 4);
    g_assert_cmpmem(blocking.buf, 4, "late", 4);

    /* Vectored messages, and READ/WRITE on a socket. */
    m = (MsgIo) { .fd = { sv[0], sv[1] } };
    run_co(msg_io_entry, &m, &m.done);

    /* The peer is gone: RECV sees end of file. */
    close(sv[1]);
    recv_op = (SockOp) { .op = { .opcode = IORING_OP_RECV, .fd = sv[0],
                                 .len = 5 } };
    start_sock_op(&recv_op);
    wait_sock_op(&recv_op);
    g_assert_cmpint(recv_op.res, ==, 0);
    close(sv[0]);
}

typedef struct WriteReady {
    int fd;
    int calls;
} WriteReady;

static void write_ready_once(void *opaque)
{
    WriteReady *w = opaque;

    w->calls++;
    aio_set_fd_handler(ctx, w->fd, NULL, NULL, NULL);
}

/* An fd handler and a pending RECV share one fd without disturbing each
 * other. */
static void test_recv_beside_fd_handler(void)
{
    SockOp recv_op = { .op = { .opcode = IORING_OP_RECV, .len = 3 } };
    WriteReady w;
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    w = (WriteReady) { .fd = sv[0] };
    recv_op.op.fd = sv[0];
    start_sock_op(&recv_op);
    spin();
    g_assert_false(recv_op.done);

    /* Writable at once; removing the handler leaves the RECV waiting. */
    aio_set_fd_handler(ctx, sv[0], NULL, write_ready_once, &w);
    while (!w.calls) {
        aio_poll(ctx, true);
    }
    spin();
    g_assert_cmpint(w.calls, ==, 1);
    g_assert_false(recv_op.done);

    g_assert_cmpint(send(sv[1], "abc", 3, 0), ==, 3);
    wait_sock_op(&recv_op);
    g_assert_cmpint(recv_op.res, ==, 3);
    g_assert_cmpmem(recv_op.buf, 3, "abc", 3);
    close(sv[0]);
    close(sv[1]);
}

/* Two RECVs waiting on one socket take the data in submission order. */
static void test_recvs_complete_in_order(void)
{
    SockOp a = { .op = { .opcode = IORING_OP_RECV, .len = 4,
                         .flags = MSG_WAITALL } };
    SockOp b = a;
    int sv[2];

    if (aio_context_uses_io_uring(ctx)) {
        g_test_skip("io_uring does not promise an order to concurrent RECVs");
        return;
    }
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    a.op.fd = b.op.fd = sv[0];
    start_sock_op(&a);
    spin();
    start_sock_op(&b);
    spin();
    g_assert_cmpint(send(sv[1], "AAAABBBB", 8, 0), ==, 8);
    wait_sock_op(&a);
    wait_sock_op(&b);
    g_assert_cmpmem(a.buf, 4, "AAAA", 4);
    g_assert_cmpmem(b.buf, 4, "BBBB", 4);
    close(sv[0]);
    close(sv[1]);
}

/* READ on pipes, non-blocking (readiness) and blocking (a worker waits). */
static void test_pipe_read(void)
{
    int flags[2] = { O_NONBLOCK, 0 };
    int i;

    for (i = 0; i < 2; i++) {
        SockOp rd = { .op = { .opcode = IORING_OP_READ, .len = 16 } };
        int fds[2];

        g_assert_cmpint(pipe2(fds, O_CLOEXEC | flags[i]), ==, 0);
        rd.op.fd = fds[0];
        start_sock_op(&rd);
        spin();
        g_assert_false(rd.done);
        g_assert_cmpint(write(fds[1], "pipe", 4), ==, 4);
        wait_sock_op(&rd);
        g_assert_cmpint(rd.res, ==, 4);
        g_assert_cmpmem(rd.buf, 4, "pipe", 4);
        close(fds[0]);
        close(fds[1]);
    }
}

static void test_poll_add(void)
{
    int fds[2];
    Cqe c;

    g_assert_cmpint(pipe2(fds, O_CLOEXEC), ==, 0);
    get_sqe(&c, (Op) { .opcode = IORING_OP_POLL_ADD, .fd = fds[0],
                       .flags = POLLIN });
    spin();
    g_assert_cmpint(c.seq, ==, 0);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    while (!c.seq) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(c.res & POLLIN, ==, POLLIN);
    close(fds[0]);
    close(fds[1]);
}

static void test_cancel_recv(void)
{
    Cqe recv_cqe, cancel_cqe, missing_cqe;
    char buf[8];
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    ==, 0);
    get_sqe(&recv_cqe, (Op) { IORING_OP_RECV, sv[0], buf, sizeof(buf) });
    spin();
    g_assert_cmpint(recv_cqe.seq, ==, 0);

    /* user_data of an SQE is its handler. */
    get_sqe(&cancel_cqe, (Op) { .opcode = IORING_OP_ASYNC_CANCEL,
                                .target = (uintptr_t)&recv_cqe.handler });
    while (!recv_cqe.seq || !cancel_cqe.seq) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(recv_cqe.res, ==, -ECANCELED);
    g_assert_cmpint(cancel_cqe.res, ==, 0);

    get_sqe(&missing_cqe, (Op) { .opcode = IORING_OP_ASYNC_CANCEL,
                                 .target = (uintptr_t)&recv_cqe.handler });
    while (!missing_cqe.seq) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(missing_cqe.res, ==, -ENOENT);
    close(sv[0]);
    close(sv[1]);
}

/* --- Links --------------------------------------------------------------- */

static void wait_cqes(Cqe *c, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        while (!c[i].seq) {
            aio_poll(ctx, true);
        }
    }
}

static void test_linked_write_fsync(void)
{
    int fd = open_tmp_file();
    char out[4096], in[4096];
    Cqe c[3];

    /* WRITE -> FSYNC -> READ: in order, each after the previous. */
    memset(out, 'w', sizeof(out));
    cqe_seq = 0;
    get_sqe(&c[0], (Op) { IORING_OP_WRITE, fd, out, sizeof(out), 0 })->flags
        |= IOSQE_IO_LINK;
    get_sqe(&c[1], (Op) { IORING_OP_FSYNC, fd })->flags |= IOSQE_IO_LINK;
    get_sqe(&c[2], (Op) { IORING_OP_READ, fd, in, sizeof(in), 0 });
    wait_cqes(c, 3);
    g_assert_cmpint(c[0].res, ==, sizeof(out));
    g_assert_cmpint(c[1].res, ==, 0);
    g_assert_cmpint(c[2].res, ==, sizeof(in));
    g_assert_cmpint(c[0].seq, ==, 1);
    g_assert_cmpint(c[1].seq, ==, 2);
    g_assert_cmpint(c[2].seq, ==, 3);
    g_assert_cmpmem(in, sizeof(in), out, sizeof(out));

    /* A failure cancels the rest of the chain. */
    get_sqe(&c[0], (Op) { IORING_OP_WRITE, closed_fd(), out, sizeof(out), 0 })
        ->flags |= IOSQE_IO_LINK;
    get_sqe(&c[1], (Op) { IORING_OP_FSYNC, fd })->flags |= IOSQE_IO_LINK;
    get_sqe(&c[2], (Op) { IORING_OP_NOP });
    wait_cqes(c, 3);
    g_assert_cmpint(c[0].res, ==, -EBADF);
    g_assert_cmpint(c[1].res, ==, -ECANCELED);
    g_assert_cmpint(c[2].res, ==, -ECANCELED);

    /* So does a short read. */
    get_sqe(&c[0], (Op) { IORING_OP_READ, fd, in, sizeof(in), 100 })->flags
        |= IOSQE_IO_LINK;
    get_sqe(&c[1], (Op) { IORING_OP_NOP });
    wait_cqes(c, 2);
    g_assert_cmpint(c[0].res, ==, sizeof(in) - 100);
    g_assert_cmpint(c[1].res, ==, -ECANCELED);

    /* A hard link carries on regardless. */
    get_sqe(&c[0], (Op) { IORING_OP_WRITE, closed_fd(), out, sizeof(out), 0 })
        ->flags |= IOSQE_IO_HARDLINK;
    get_sqe(&c[1], (Op) { IORING_OP_NOP });
    wait_cqes(c, 2);
    g_assert_cmpint(c[0].res, ==, -EBADF);
    g_assert_cmpint(c[1].res, ==, 0);
    close(fd);
}

/* --- Errors -------------------------------------------------------------- */

typedef struct Errors {
    int file_fd;
    bool done;
} Errors;

static void coroutine_fn errors_entry(void *opaque)
{
    Errors *e = opaque;
    int bad = closed_fd();
    int rdonly;
    char buf[16];

    g_assert_cmpint(co_op((Op) { IORING_OP_READ, bad, buf, sizeof(buf), 0 }),
                    ==, -EBADF);
    g_assert_cmpint(co_op((Op) { IORING_OP_READ, -1, buf, sizeof(buf), 0 }),
                    ==, -EBADF);
    g_assert_cmpint(co_op((Op) { IORING_OP_FSYNC, bad }), ==, -EBADF);
    g_assert_cmpint(co_op((Op) { IORING_OP_RECV, bad, buf, sizeof(buf) }),
                    ==, -EBADF);
    /* Socket operations on a regular file. */
    g_assert_cmpint(co_op((Op) { IORING_OP_RECV, e->file_fd, buf,
                                 sizeof(buf) }), ==, -ENOTSOCK);
    /* Writing through a read-only descriptor. */
    rdonly = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(rdonly, >=, 0);
    g_assert_cmpint(co_op((Op) { IORING_OP_WRITE, rdonly, buf, sizeof(buf),
                                 0 }), ==, -EBADF);
    close(rdonly);
    e->done = true;
}

static void test_error_propagates(void)
{
    Errors e = { .file_fd = open_tmp_file() };

    run_co(errors_entry, &e, &e.done);
    close(e.file_fd);
}

/* --- Many requests in flight --------------------------------------------- */

/* More than the ring's 512 entries: submission must survive a full ring. */
#define MANY_READS  1024
#define MANY_BLOCKS 16
#define MANY_BS     4096

typedef struct ManyReads {
    int fd;
    int completed;
    int wrong;
} ManyReads;

typedef struct ManyRead {
    ManyReads *m;
    int index;
} ManyRead;

static void coroutine_fn many_read_entry(void *opaque)
{
    ManyRead *r = opaque;
    int block = r->index % MANY_BLOCKS;
    char buf[MANY_BS];
    int ret;

    ret = co_op((Op) { IORING_OP_READ, r->m->fd, buf, sizeof(buf),
                       (uint64_t)block * MANY_BS });
    if (ret != MANY_BS || buf[0] != 'A' + block ||
        buf[MANY_BS - 1] != 'A' + block) {
        r->m->wrong++;
    }
    r->m->completed++;
}

static void test_many_in_flight(void)
{
    ManyReads m = { .fd = open_tmp_file() };
    ManyRead *reads = g_new(ManyRead, MANY_READS);
    char block[MANY_BS];
    int i;

    for (i = 0; i < MANY_BLOCKS; i++) {
        memset(block, 'A' + i, sizeof(block));
        g_assert_cmpint(pwrite(m.fd, block, sizeof(block),
                               (off_t)i * MANY_BS), ==, MANY_BS);
    }
    /* Every read is queued before the loop runs once. */
    for (i = 0; i < MANY_READS; i++) {
        reads[i] = (ManyRead) { .m = &m, .index = i };
        co_enter(co_create(many_read_entry, &reads[i]));
    }
    while (m.completed < MANY_READS) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(m.wrong, ==, 0);
    g_free(reads);
    close(m.fd);
}

/* --- From an iothread ---------------------------------------------------- */

typedef struct FromIo {
    IOThread *io;
    AioContext *io_ctx;
    int file_fd;
    int sv[2];
    AioContext *after_file;     /* written in the iothread */
    AioContext *after_socket;   /* written in the iothread */
    int file_res, recv_res;     /* written in the iothread */
    int done;                   /* atomic */
} FromIo;

static void coroutine_fn from_io_entry(void *opaque)
{
    FromIo *f = opaque;
    char buf[16];

    f->file_res = co_op((Op) { IORING_OP_WRITE, f->file_fd, "iothread", 8,
                               0 });
    f->after_file = aio_get_current_context();
    g_assert_cmpint(send(f->sv[1], "ping", 4, 0), ==, 4);
    f->recv_res = co_op((Op) { IORING_OP_RECV, f->sv[0], buf, sizeof(buf) });
    f->after_socket = aio_get_current_context();
    /*
     * Pairs with the load-acquire in test_from_iothread(): the results are
     * visible once done is.  aio_wait_kick() wakes the waiting main loop.
     */
    qatomic_store_release(&f->done, 1);
    aio_wait_kick();
}

static void from_io_bh(void *opaque)
{
    co_enter(co_create(from_io_entry, opaque));
}

static void test_from_iothread(void)
{
    FromIo f = { .file_fd = open_tmp_file() };
    char buf[8];

    GLOBAL_STATE_CODE();
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f.sv),
                    ==, 0);
    f.io = iothread_create("sqe-io", 0, &error_abort);
    f.io_ctx = iothread_get_aio_context(f.io);
    aio_bh_schedule_oneshot(f.io_ctx, from_io_bh, &f);
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&f.done));
    iothread_destroy(f.io);

    g_assert_cmpint(f.file_res, ==, 8);
    g_assert_cmpint(f.recv_res, ==, 4);
    g_assert_true(f.after_file == f.io_ctx);
    g_assert_true(f.after_socket == f.io_ctx);
    g_assert_cmpint(pread(f.file_fd, buf, sizeof(buf), 0), ==, 8);
    g_assert_cmpmem(buf, 8, "iothread", 8);
    close(f.sv[0]);
    close(f.sv[1]);
    close(f.file_fd);
}

typedef struct Nop {
    int res;
    bool done;
} Nop;

static void coroutine_fn nop_entry(void *opaque)
{
    Nop *n = opaque;

    n->res = co_op((Op) { IORING_OP_NOP });
    n->done = true;
}

static void test_nop(void)
{
    Nop n = { .res = -1 };

    run_co(nop_entry, &n, &n.done);
    g_assert_cmpint(n.res, ==, 0);
}

/*
 * More NOPs than the submission and completion queues hold together, none
 * reaped while they are queued: the CQ ring overflows, and (with the test
 * hook on io_uring) submission fails with -EBUSY as on older kernels.  No
 * handler may run inside aio_get_sqe(); all run later, in order.
 */
typedef struct OverflowNop {
    AioCqeHandler handler;
    int index;
} OverflowNop;

static struct {
    bool in_get_sqe;
    int ran_inside;         /* handlers that ran inside aio_get_sqe() */
    int out_of_order;
    int next;               /* index of the next expected completion */
} overflow;

static void overflow_nop_done(AioCqeHandler *handler, int res,
                              uint32_t flags)
{
    OverflowNop *n = container_of(handler, OverflowNop, handler);

    g_assert_cmpint(res, ==, 0);
    if (overflow.in_get_sqe) {
        overflow.ran_inside++;
    }
    if (n->index != overflow.next) {
        overflow.out_of_order++;
    }
    overflow.next = n->index + 1;
}

static void test_full_cq_defers_handlers(void)
{
    /* 512 SQEs and 1024 CQEs per ring: this overflows the CQ ring. */
    enum { N = 4096 };
    OverflowNop *nops = g_new0(OverflowNop, N);
    bool hooked = aio_context_test_busy_on_cq_overflow(ctx, true);
    unsigned busy_before = aio_context_test_submit_busy_count(ctx);

    memset(&overflow, 0, sizeof(overflow));
    for (int i = 0; i < N; i++) {
        struct io_uring_sqe *sqe;

        nops[i].handler.cb = overflow_nop_done;
        nops[i].index = i;
        overflow.in_get_sqe = true;
        sqe = aio_get_sqe(ctx, &nops[i].handler);
        overflow.in_get_sqe = false;
        io_uring_prep_nop(sqe);
    }
    if (hooked) {
        /* The -EBUSY path was taken, and took completions off the ring. */
        g_assert_cmpuint(aio_context_test_submit_busy_count(ctx), >,
                         busy_before);
    }
    while (overflow.next < N) {
        aio_poll(ctx, true);
    }
    aio_context_test_busy_on_cq_overflow(ctx, false);
    g_assert_cmpint(overflow.ran_inside, ==, 0);
    g_assert_cmpint(overflow.out_of_order, ==, 0);
    g_assert_cmpint(overflow.next, ==, N);
    g_free(nops);
}

/*
 * A CQE handler that returns holding a BdMutex is caught after it returns,
 * and the report names the lock and where it was taken.  The lock is
 * taken three lines below cqe_locker_line; keep it there.
 */
static BdMutex cqe_test_lock;
static bool cqe_locker_ran;

static const int cqe_locker_line = __LINE__ + 3;
static void cqe_locker(AioCqeHandler *h, int res, uint32_t flags) TSA_NO_TSA
{
    bd_mutex_lock(&cqe_test_lock);
    cqe_locker_ran = true;
}

static void test_cqe_handler_holding_bd_mutex_aborts(void)
{
    if (g_test_subprocess()) {
        AioCqeHandler h = { .cb = cqe_locker };

        bd_mutex_init(&cqe_test_lock);
        io_uring_prep_nop(aio_get_sqe(ctx, &h));
        while (!cqe_locker_ran) {
            aio_poll(ctx, true);
        }
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
#ifndef NDEBUG
    {
        g_autofree char *want = g_strdup_printf(
            "*CQE handler 0x*: returned holding 1 mutex(es): "
            "'&cqe_test_lock' locked at *tests/unit/test-aio-sqe.c:%d in "
            "cqe_locker()*", cqe_locker_line);

        g_test_trap_assert_stderr(want);
    }
#else
    g_test_trap_assert_stderr("*CQE handler 0x*: returned holding 1*");
#endif
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    ctx = main_context();

    g_test_add_func("/aio-sqe/backend-selected", test_backend_selected);
    g_test_add_func("/aio-sqe/nop", test_nop);
    g_test_add_func("/aio-sqe/file-write-read-fsync",
                    test_file_write_read_fsync);
    g_test_add_func("/aio-sqe/fallocate-punch-hole",
                    test_fallocate_punch_hole);
    g_test_add_func("/aio-sqe/socket-send-recv", test_socket_send_recv);
    g_test_add_func("/aio-sqe/recv-beside-fd-handler",
                    test_recv_beside_fd_handler);
    g_test_add_func("/aio-sqe/recvs-complete-in-order",
                    test_recvs_complete_in_order);
    g_test_add_func("/aio-sqe/pipe-read", test_pipe_read);
    g_test_add_func("/aio-sqe/poll-add", test_poll_add);
    g_test_add_func("/aio-sqe/cancel-recv", test_cancel_recv);
    g_test_add_func("/aio-sqe/linked-write-fsync", test_linked_write_fsync);
    g_test_add_func("/aio-sqe/error-propagates", test_error_propagates);
    g_test_add_func("/aio-sqe/many-in-flight", test_many_in_flight);
    g_test_add_func("/aio-sqe/from-iothread", test_from_iothread);
    g_test_add_func("/aio-sqe/full-cq-defers-handlers",
                    test_full_cq_defers_handlers);
    g_test_add_func("/aio-sqe/cqe-handler-holding-bd-mutex-aborts",
                    test_cqe_handler_holding_bd_mutex_aborts);

    ret = g_test_run();
    thread_pool_shutdown();
    return ret;
}
