/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * NBD commands: checking a request against the protocol and the export,
 * running it on the export's BlockBackend, and building its reply (simple
 * or structured) as iovecs over the request's own header space and data
 * buffer, which nbd-conn.c then sends without copying.
 *
 * This is the checking layer between the wire and the block layer: a
 * request reaches blk_co_*() only with a known command, flags that
 * command takes, a range inside the export, a payload of at most
 * NBD_MAX_BUFFER and, for writes, a writable export.  Everything else is
 * answered with the error the spec names (docs/nbd.md has the table) and
 * the connection goes on.
 *
 * Everything here runs in request coroutines, in the thread the
 * connection runs in ("home" in nbd-int.h); a request's fields belong to
 * its coroutine until its reply is queued.
 */
#include "util/osdep.h"

#include "block/block-backend.h"
#include "block/export/nbd/nbd-int.h"
#include "util/main-loop.h"

typedef struct NbdExtent {
    uint32_t len;
    uint32_t flags;                 /* NBD_STATE_*; reads: HOLE = zeroes */
} NbdExtent;

/* --- Building replies ---------------------------------------------------- */

/* Reserve @len header bytes in @req's reply, in order. */
static uint8_t *nbd_reply_hdr(NbdRequest *req, size_t len)
{
    uint8_t *p = req->hdr + req->hdr_used;
    struct iovec *last = req->niov ? &req->iov[req->niov - 1] : NULL;

    assert(req->hdr_used + len <= sizeof(req->hdr));
    req->hdr_used += len;
    if (last && (uint8_t *)last->iov_base + last->iov_len == p) {
        last->iov_len += len;
    } else {
        assert(req->niov < NBD_REQ_IOV_MAX);
        req->iov[req->niov++] = (struct iovec) { p, len };
    }
    return p;
}

/* Append @len bytes at @data (not copied) to @req's reply. */
static void nbd_reply_data(NbdRequest *req, const void *data, size_t len)
{
    if (len) {
        assert(req->niov < NBD_REQ_IOV_MAX);
        /* sendmsg() only reads it. */
        req->iov[req->niov++] = (struct iovec) { (void *)data, len };
    }
}

static void nbd_reply_simple(NbdRequest *req, uint32_t error)
{
    uint8_t *p = nbd_reply_hdr(req, NBD_SIMPLE_REPLY_SIZE);

    nbd_put32(p, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put32(p + 4, error);
    nbd_put64(p + 8, req->handle);
}

/*
 * A structured chunk header for @payload bytes, plus @extra bytes of the
 * payload reserved right after it (returned).
 */
static uint8_t *nbd_reply_chunk(NbdRequest *req, uint16_t flags,
                                uint16_t type, uint32_t payload, size_t extra)
{
    uint8_t *p = nbd_reply_hdr(req, NBD_CHUNK_HEADER_SIZE + extra);

    nbd_put32(p, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put16(p + 4, flags);
    nbd_put16(p + 6, type);
    nbd_put64(p + 8, req->handle);
    nbd_put32(p + 16, payload);
    return p + NBD_CHUNK_HEADER_SIZE;
}

/* A successful reply without data. */
static void nbd_reply_ok(NbdConn *conn, NbdRequest *req)
{
    if (conn->structured && req->type == NBD_CMD_READ) {
        nbd_reply_chunk(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0, 0);
    } else {
        nbd_reply_simple(req, NBD_SUCCESS);
    }
}

static void nbd_reply_error(NbdConn *conn, NbdRequest *req)
{
    const char *msg = req->error_msg ? req->error_msg : "";
    size_t len = strlen(msg);
    uint8_t *p;

    /* Drop whatever success reply was started. */
    req->niov = 0;
    req->hdr_used = 0;
    if (!conn->structured) {
        nbd_reply_simple(req, req->error);
        return;
    }
    p = nbd_reply_chunk(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                        NBD_ERROR_SIZE + len, NBD_ERROR_SIZE);
    nbd_put32(p, req->error);
    nbd_put16(p + 4, len);
    nbd_reply_data(req, msg, len);
}

static void nbd_req_fail(NbdRequest *req, uint32_t error, const char *msg)
{
    req->error = error;
    req->error_msg = msg;
}

/* The protocol's error for -@errno_value (other errors become EIO). */
static uint32_t nbd_errno(int errno_value)
{
    switch (-errno_value) {
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

/* --- Commands (request coroutines, home) --------------------------------- */

/*
 * Split [offset, offset + len) into data and hole extents for a sparse
 * READ reply (at most NBD_READ_MAX_CHUNKS; the rest is sent as data).
 * Ranges reported as data are remembered: sending real data as data is
 * always right, so the memory can never be wrong, and a fully allocated
 * image costs one block-status lookup per connection.  *@any_data tells
 * whether anything must be read.
 */
static int coroutine_fn nbd_read_extents(NbdConn *conn, NbdRequest *req,
                                         NbdExtent *ext, bool *any_data)
{
    BlockBackend *blk = conn->exp->common.blk;
    int64_t off = req->offset, end = off + req->len;
    int n = 0;

    *any_data = false;
    while (off < end) {
        int64_t next, pnum;
        uint32_t hole;
        int status;

        if (off >= conn->data_start && off < conn->data_end) {
            hole = 0;
            next = conn->data_end;
        } else if (blk_co_block_status(blk, off, conn->exp->size - off,
                                       &pnum, &status) < 0 || pnum <= 0) {
            hole = 0;
            next = end;
        } else {
            hole = (status & BDRV_BLOCK_ZERO) ? NBD_STATE_HOLE : 0;
            next = off + pnum;
            if (!hole) {
                conn->data_start = off;
                conn->data_end = next;
            }
        }
        next = MIN(next, end);
        if (n && ext[n - 1].flags == hole) {
            ext[n - 1].len += next - off;
        } else {
            if (n == NBD_READ_MAX_CHUNKS - 1) {
                hole = 0;
                next = end;
            }
            ext[n++] = (NbdExtent) { next - off, hole };
        }
        *any_data |= !hole;
        off = next;
    }
    return n;
}

static void coroutine_fn nbd_cmd_read(NbdConn *conn, NbdRequest *req)
{
    NbdExtent ext[NBD_READ_MAX_CHUNKS] = { { req->len, 0 } };
    uint64_t off = req->offset;
    bool any_data = true;
    int n = 1;

    if (!req->len) {
        nbd_reply_ok(conn, req);
        return;
    }
    /* Holes as OFFSET_HOLE, unless the client asked for one chunk. */
    if (conn->structured && !(req->flags & NBD_CMD_FLAG_DF)) {
        n = nbd_read_extents(conn, req, ext, &any_data);
    }
    if (any_data) {
        int ret;

        req->buf = nbd_buf_get(conn, req->len, &req->buf_size);
        ret = blk_co_pread(conn->exp->common.blk, req->offset, req->len,
                           req->buf, 0);
        if (ret < 0) {
            nbd_req_fail(req, nbd_errno(ret), "read failed");
            return;
        }
    }
    req->bytes_read = req->len;

    if (!conn->structured) {
        nbd_reply_simple(req, NBD_SUCCESS);
        nbd_reply_data(req, req->buf, req->len);
        return;
    }
    /* Everything is read: the last chunk can say DONE. */
    for (int i = 0; i < n; i++) {
        uint16_t flags = i == n - 1 ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t *p;

        if (ext[i].flags & NBD_STATE_HOLE) {
            p = nbd_reply_chunk(req, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                                NBD_OFFSET_HOLE_SIZE, NBD_OFFSET_HOLE_SIZE);
            nbd_put64(p, off);
            nbd_put32(p + 8, ext[i].len);
        } else {
            p = nbd_reply_chunk(req, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                                NBD_OFFSET_DATA_SIZE + ext[i].len,
                                NBD_OFFSET_DATA_SIZE);
            nbd_put64(p, off);
            nbd_reply_data(req, req->buf + (off - req->offset), ext[i].len);
        }
        off += ext[i].len;
    }
}

/* FUA, as asked or because the export is writethrough. */
static BdrvRequestFlags nbd_fua(NbdConn *conn, NbdRequest *req)
{
    return (req->flags & NBD_CMD_FLAG_FUA) || conn->exp->common.writethrough ?
           BDRV_REQ_FUA : 0;
}

static void coroutine_fn nbd_cmd_write(NbdConn *conn, NbdRequest *req)
{
    int ret = blk_co_pwrite(conn->exp->common.blk, req->offset, req->len,
                            req->buf, nbd_fua(conn, req));

    if (ret < 0) {
        nbd_req_fail(req, nbd_errno(ret), "write failed");
        return;
    }
    req->bytes_written = req->len;
    nbd_reply_ok(conn, req);
}

static void coroutine_fn nbd_cmd_flush(NbdConn *conn, NbdRequest *req)
{
    int ret = blk_co_flush(conn->exp->common.blk);

    if (ret < 0) {
        nbd_req_fail(req, nbd_errno(ret), "flush failed");
        return;
    }
    nbd_reply_ok(conn, req);
}

static void coroutine_fn nbd_cmd_trim(NbdConn *conn, NbdRequest *req)
{
    BlockBackend *blk = conn->exp->common.blk;
    int ret = blk_co_pdiscard(blk, req->offset, req->len);

    /* A trim is a hint: a node that cannot discard has done its part. */
    if (ret == -ENOTSUP) {
        ret = 0;
    }
    if (ret == 0 && nbd_fua(conn, req)) {
        ret = blk_co_flush(blk);
    }
    if (ret < 0) {
        nbd_req_fail(req, nbd_errno(ret), "trim failed");
        return;
    }
    conn->data_start = conn->data_end = 0;
    nbd_reply_ok(conn, req);
}

static void coroutine_fn nbd_cmd_write_zeroes(NbdConn *conn, NbdRequest *req)
{
    BdrvRequestFlags flags = nbd_fua(conn, req);
    int ret;

    if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
        flags |= BDRV_REQ_NO_FALLBACK;
    }
    ret = blk_co_pwrite_zeroes(conn->exp->common.blk, req->offset, req->len,
                               flags);
    if (ret < 0) {
        nbd_req_fail(req, nbd_errno(ret),
                     ret == -ENOTSUP ? "fast zeroing is not possible here"
                                     : "write zeroes failed");
        return;
    }
    conn->data_start = conn->data_end = 0;
    nbd_reply_ok(conn, req);
}

/* base:allocation extents of the request's range. */
static void coroutine_fn nbd_cmd_block_status(NbdConn *conn, NbdRequest *req)
{
    BlockBackend *blk = conn->exp->common.blk;
    int max = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_MAX_EXTENTS;
    int64_t off = req->offset, end = off + req->len;
    NbdExtent ext[NBD_MAX_EXTENTS];
    uint8_t *p;
    int n = 0;

    while (off < end && n < max) {
        int64_t pnum;
        uint32_t flags;
        int status;
        int ret = blk_co_block_status(blk, off, end - off, &pnum, &status);

        if (ret < 0 || pnum <= 0) {
            if (!n) {
                nbd_req_fail(req, ret < 0 ? nbd_errno(ret) : NBD_EIO,
                             "block status failed");
                return;
            }
            break;
        }
        flags = (status & BDRV_BLOCK_DATA ? 0 : NBD_STATE_HOLE) |
                (status & BDRV_BLOCK_ZERO ? NBD_STATE_ZERO : 0);
        if (n && ext[n - 1].flags == flags) {
            ext[n - 1].len += pnum;
        } else {
            ext[n++] = (NbdExtent) { pnum, flags };
        }
        off += pnum;
    }
    p = nbd_reply_chunk(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
                        NBD_BLOCK_STATUS_SIZE + n * NBD_EXTENT_SIZE,
                        NBD_BLOCK_STATUS_SIZE + n * NBD_EXTENT_SIZE);
    nbd_put32(p, NBD_META_ID_BASE_ALLOCATION);
    for (int i = 0; i < n; i++) {
        nbd_put32(p + 4 + 8 * i, ext[i].len);
        nbd_put32(p + 8 + 8 * i, ext[i].flags);
    }
}

/* --- Parsing and checking requests (pure) -------------------------------- */

bool nbd_request_decode(const uint8_t *buf, NbdRequestHdr *hdr)
{
    if (nbd_get32(buf) != NBD_REQUEST_MAGIC) {
        return false;
    }
    hdr->flags = nbd_get16(buf + 4);
    hdr->type = nbd_get16(buf + 6);
    hdr->handle = nbd_get64(buf + 8);
    hdr->offset = nbd_get64(buf + 16);
    hdr->len = nbd_get32(buf + 24);
    return true;
}

/* Command flags each command accepts (FUA is valid on every one). */
static uint16_t nbd_valid_flags(const NbdReqLimits *lim, uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA | (lim->structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
        return NBD_CMD_FLAG_FUA;
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
               NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return 0;
    }
}

static uint32_t nbd_refuse(const char **msg, uint32_t error, const char *why)
{
    *msg = why;
    return error;
}

uint32_t nbd_request_check(const NbdReqLimits *lim, const NbdRequestHdr *hdr,
                           const char **msg)
{
    bool writes = hdr->type == NBD_CMD_WRITE || hdr->type == NBD_CMD_TRIM ||
                  hdr->type == NBD_CMD_WRITE_ZEROES;

    *msg = NULL;
    switch (hdr->type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE:
    case NBD_CMD_WRITE_ZEROES:
    case NBD_CMD_BLOCK_STATUS:
        break;
    default:
        return nbd_refuse(msg, NBD_EINVAL, "unknown command");
    }
    if (hdr->flags & ~nbd_valid_flags(lim, hdr->type)) {
        return nbd_refuse(msg, NBD_EINVAL, "invalid command flags");
    }
    if (writes && !lim->writable) {
        return nbd_refuse(msg, NBD_EPERM, "export is read-only");
    }
    if (hdr->type == NBD_CMD_FLUSH) {
        return 0;   /* offset and length are reserved */
    }
    if ((hdr->type == NBD_CMD_READ || hdr->type == NBD_CMD_WRITE) &&
        hdr->len > NBD_MAX_BUFFER) {
        return nbd_refuse(msg, NBD_EINVAL, "request larger than 32 MiB");
    }
    if (hdr->offset > lim->size || hdr->len > lim->size - hdr->offset) {
        bool enospc = hdr->type == NBD_CMD_WRITE ||
                      hdr->type == NBD_CMD_WRITE_ZEROES;

        return nbd_refuse(msg, enospc ? NBD_ENOSPC : NBD_EINVAL,
                          "request past the end of the export");
    }
    if (hdr->type == NBD_CMD_BLOCK_STATUS) {
        if (!lim->base_allocation) {
            return nbd_refuse(msg, NBD_EINVAL,
                              "no metadata context was negotiated");
        }
        if (!hdr->len) {
            return nbd_refuse(msg, NBD_EINVAL, "empty block status request");
        }
    }
    return 0;
}

/* --- Commands: checking and running -------------------------------------- */

void nbd_req_check(NbdConn *conn, NbdRequest *req)
{
    NbdExport *exp = conn->exp;
    NbdReqLimits lim = {
        .size = exp->size,
        .writable = exp->common.writable,
        .structured = conn->structured,
        .base_allocation = conn->base_allocation,
    };
    NbdRequestHdr hdr = {
        .flags = req->flags,
        .type = req->type,
        .handle = req->handle,
        .offset = req->offset,
        .len = req->len,
    };

    IO_CODE();
    req->error = nbd_request_check(&lim, &hdr, &req->error_msg);
}

void coroutine_fn nbd_req_execute(NbdConn *conn, NbdRequest *req)
{
    IO_CODE();
    if (!req->error) {
        switch (req->type) {
        case NBD_CMD_READ:
            nbd_cmd_read(conn, req);
            break;
        case NBD_CMD_WRITE:
            nbd_cmd_write(conn, req);
            break;
        case NBD_CMD_FLUSH:
            nbd_cmd_flush(conn, req);
            break;
        case NBD_CMD_TRIM:
            nbd_cmd_trim(conn, req);
            break;
        case NBD_CMD_CACHE:
            /* Advisory; the page cache or the disk does the caching. */
            nbd_reply_ok(conn, req);
            break;
        case NBD_CMD_WRITE_ZEROES:
            nbd_cmd_write_zeroes(conn, req);
            break;
        case NBD_CMD_BLOCK_STATUS:
            nbd_cmd_block_status(conn, req);
            break;
        default:
            g_assert_not_reached();     /* nbd_req_check() refused it */
        }
    }
    if (req->error) {
        nbd_reply_error(conn, req);
    }
}
