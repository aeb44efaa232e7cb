/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for the NBD transmission phase: the real server
 * (block/export/nbd/nbd-conn.c's receive loop, nbd-cmd.c's request parser,
 * checks and commands, the send queue) serving one in-process client per
 * input over a socketpair (nbd_server_add_client()), against the null-co
 * exports of fuzz-nbd.h, in the main loop.
 *
 * The handshake is a valid one the harness sends first, chosen by the
 * input's first byte: bit 0 structured replies, bit 1 also the
 * base:allocation context (with structured replies only), bit 2 the
 * read-only export "ro" (otherwise the writable "disk").  The second byte
 * sets the size of the pieces the client writes (1..256 bytes), so that
 * headers and payloads arrive split everywhere.  The rest is the request
 * stream: headers, WRITE payloads, garbage.  The client then half-closes
 * and reads until the server closes.
 *
 * The harness decodes the stream itself, as the protocol says: a request
 * is 28 bytes with the request magic; a WRITE's payload follows, refused
 * or not; NBD_CMD_DISC, a bad magic or the end of the input end it.
 * Invariants, beyond "no crash, no leak, no UB, no hang":
 *   - every request read whole gets exactly one reply (structured: chunks
 *     up to one with DONE), with its cookie; no reply for NBD_CMD_DISC,
 *     for anything after it or after a bad magic, or for a request cut
 *     short; no reply with a cookie nobody sent;
 *   - the reply's error is the one the spec table (docs/nbd.md) gives:
 *     EINVAL for unknown commands, flags the command does not take,
 *     READ/WRITE over 32 MiB, ranges past the end (ENOSPC for writes),
 *     BLOCK_STATUS without context or of length 0; EPERM for writes to
 *     the read-only export; success otherwise (null-co does not fail);
 *   - simple replies only without structured replies or for non-READ
 *     successes; a simple READ reply carries exactly the length asked;
 *     structured READ chunks cover the range in order, DATA or HOLE;
 *     BLOCK_STATUS has context id 1, one extent with REQ_ONE, extents
 *     within the range; reads of "disk" return zeroes.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sys/socket.h>

#include "block/nbd.h"
#include "fuzz-nbd.h"
#include "util/main-loop.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "fuzz-nbd-request: %s:%d: %s\n", __FILE__, __LINE__, \
            #cond); abort(); } } while (0)

/* Loop iterations without progress before the exchange counts as hung. */
#define FUZZ_MAX_IDLE_ITERATIONS 200000
/* Reads past this (in range) make the input too slow to be worth it. */
#define FUZZ_MAX_READ_BYTES     (4 * 1024 * 1024)

typedef struct Expect {
    NbdRequestHdr hdr;
    uint32_t error;             /* the reply's NBD error, by the spec */
    bool done;                  /* its last reply (chunk) has arrived */
    uint64_t covered;           /* structured READ: bytes in chunks so far */
} Expect;

typedef struct Session {
    bool structured, base_allocation, ro;
    uint64_t size;
    GArray *expect;             /* of Expect, in request order */
} Session;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_nbd_setup();
    return 0;
}

/* --- The client's side of the protocol ----------------------------------- */

static void put_option(GByteArray *b, uint32_t opt, const void *data,
                       uint32_t len)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];

    nbd_put64(hdr, NBD_OPTS_MAGIC);
    nbd_put32(hdr + 8, opt);
    nbd_put32(hdr + 12, len);
    g_byte_array_append(b, hdr, sizeof(hdr));
    g_byte_array_append(b, data, len);
}

/* Client flags, options, GO: what the server is sent before the input. */
static void build_handshake(const Session *s, GByteArray *b)
{
    const char *name = s->ro ? "ro" : "disk";
    size_t namelen = strlen(name);
    size_t ctxlen = strlen(NBD_META_BASE_ALLOCATION);
    uint8_t buf[64];

    nbd_put32(buf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    g_byte_array_append(b, buf, 4);
    if (s->structured) {
        put_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    }
    if (s->base_allocation) {
        nbd_put32(buf, namelen);
        memcpy(buf + 4, name, namelen);
        nbd_put32(buf + 4 + namelen, 1);
        nbd_put32(buf + 8 + namelen, ctxlen);
        memcpy(buf + 12 + namelen, NBD_META_BASE_ALLOCATION, ctxlen);
        put_option(b, NBD_OPT_SET_META_CONTEXT, buf, 12 + namelen + ctxlen);
    }
    nbd_put32(buf, namelen);
    memcpy(buf + 4, name, namelen);
    nbd_put16(buf + 4 + namelen, 0);
    put_option(b, NBD_OPT_GO, buf, 6 + namelen);
}

/* The spec's answer to @h (docs/nbd.md's table), written out again. */
static uint32_t spec_error(const Session *s, const NbdRequestHdr *h)
{
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    bool writes = false, ranged = true, capped = false;

    switch (h->type) {
    case NBD_CMD_READ:
        allowed |= s->structured ? NBD_CMD_FLAG_DF : 0;
        capped = true;
        break;
    case NBD_CMD_WRITE:
        writes = capped = true;
        break;
    case NBD_CMD_FLUSH:
        ranged = false;
        break;
    case NBD_CMD_TRIM:
        writes = true;
        break;
    case NBD_CMD_CACHE:
        break;
    case NBD_CMD_WRITE_ZEROES:
        writes = true;
        allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        return NBD_EINVAL;
    }
    if (h->flags & ~allowed) {
        return NBD_EINVAL;
    }
    if (writes && s->ro) {
        return NBD_EPERM;
    }
    if (!ranged) {
        return 0;
    }
    if (capped && h->len > NBD_MAX_BUFFER) {
        return NBD_EINVAL;
    }
    if (h->offset + h->len < h->offset || h->offset + h->len > s->size) {
        return h->type == NBD_CMD_WRITE || h->type == NBD_CMD_WRITE_ZEROES ?
               NBD_ENOSPC : NBD_EINVAL;
    }
    if (h->type == NBD_CMD_BLOCK_STATUS &&
        (!s->base_allocation || h->len == 0)) {
        return NBD_EINVAL;
    }
    return 0;
}

/*
 * The requests of @p that the server reads whole, with the replies they
 * are owed.  False if the input asks for more data than is worth it.
 */
static bool decode_stream(Session *s, const uint8_t *p, size_t n)
{
    uint64_t read_bytes = 0;

    while (n >= NBD_REQUEST_SIZE) {
        Expect e = { 0 };

        if (!nbd_request_decode(p, &e.hdr) || e.hdr.type == NBD_CMD_DISC) {
            break;
        }
        p += NBD_REQUEST_SIZE;
        n -= NBD_REQUEST_SIZE;
        if (e.hdr.type == NBD_CMD_WRITE) {
            if (n < e.hdr.len) {
                break;              /* cut short: no reply owed */
            }
            p += e.hdr.len;
            n -= e.hdr.len;
        }
        e.error = spec_error(s, &e.hdr);
        if (e.hdr.type == NBD_CMD_READ && !e.error) {
            read_bytes += e.hdr.len;
        }
        g_array_append_val(s->expect, e);
    }
    return read_bytes <= FUZZ_MAX_READ_BYTES;
}

/* --- Checking the replies ------------------------------------------------ */

/* The first request with cookie @handle still owed a reply. */
static Expect *find_expect(Session *s, uint64_t handle)
{
    for (guint i = 0; i < s->expect->len; i++) {
        Expect *e = &g_array_index(s->expect, Expect, i);

        if (!e->done && e->hdr.handle == handle) {
            return e;
        }
    }
    CHECK(!"reply with a cookie no pending request has");
    return NULL;
}

static void check_zeroes(const Session *s, const uint8_t *p, size_t n)
{
    if (!s->ro) {
        for (size_t i = 0; i < n; i++) {
            CHECK(p[i] == 0);
        }
    }
}

/* A simple reply at @p (@n bytes available); its length, or 0 if short. */
static size_t check_simple(Session *s, const uint8_t *p, size_t n)
{
    Expect *e;
    size_t need = NBD_SIMPLE_REPLY_SIZE;

    if (n < need) {
        return 0;
    }
    e = find_expect(s, nbd_get64(p + 8));
    CHECK(nbd_get32(p + 4) == e->error);
    CHECK(!s->structured ||
          (e->hdr.type != NBD_CMD_READ && e->hdr.type != NBD_CMD_BLOCK_STATUS
           && !e->error));
    if (e->hdr.type == NBD_CMD_READ && !e->error) {
        need += e->hdr.len;
        if (n < need) {
            return 0;
        }
        check_zeroes(s, p + NBD_SIMPLE_REPLY_SIZE, e->hdr.len);
    }
    e->done = true;
    return need;
}

static void check_chunk(Session *s, Expect *e, uint16_t flags, uint16_t type,
                        const uint8_t *pl, uint32_t len)
{
    const NbdRequestHdr *h = &e->hdr;

    switch (type) {
    case NBD_REPLY_TYPE_NONE:
        CHECK(len == 0 && (flags & NBD_REPLY_FLAG_DONE));
        CHECK(!e->error);
        break;
    case NBD_REPLY_TYPE_ERROR:
        CHECK(flags & NBD_REPLY_FLAG_DONE);
        CHECK(len >= NBD_ERROR_SIZE);
        CHECK(e->error && nbd_get32(pl) == e->error);
        CHECK(nbd_get16(pl + 4) == len - NBD_ERROR_SIZE);
        return;
    case NBD_REPLY_TYPE_OFFSET_DATA:
    case NBD_REPLY_TYPE_OFFSET_HOLE: {
        uint64_t size;

        CHECK(h->type == NBD_CMD_READ && !e->error);
        if (type == NBD_REPLY_TYPE_OFFSET_DATA) {
            CHECK(len > NBD_OFFSET_DATA_SIZE);
            size = len - NBD_OFFSET_DATA_SIZE;
            check_zeroes(s, pl + NBD_OFFSET_DATA_SIZE, size);
        } else {
            CHECK(len == NBD_OFFSET_HOLE_SIZE);
            size = nbd_get32(pl + 8);
            CHECK(size > 0);
        }
        /* blockd sends the pieces in order, back to back. */
        CHECK(nbd_get64(pl) == h->offset + e->covered);
        CHECK(size <= h->len - e->covered);
        e->covered += size;
        break;
    }
    case NBD_REPLY_TYPE_BLOCK_STATUS: {
        uint32_t n = (len - NBD_BLOCK_STATUS_SIZE) / NBD_EXTENT_SIZE;
        uint64_t sum = 0;

        CHECK(h->type == NBD_CMD_BLOCK_STATUS && !e->error);
        CHECK(flags & NBD_REPLY_FLAG_DONE);
        CHECK(len >= NBD_BLOCK_STATUS_SIZE + NBD_EXTENT_SIZE);
        CHECK((len - NBD_BLOCK_STATUS_SIZE) % NBD_EXTENT_SIZE == 0);
        CHECK(nbd_get32(pl) == NBD_META_ID_BASE_ALLOCATION);
        CHECK(!(h->flags & NBD_CMD_FLAG_REQ_ONE) || n == 1);
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *x = pl + 4 + 8 * i;

            CHECK(nbd_get32(x) > 0);
            CHECK(!(nbd_get32(x + 4) & ~(NBD_STATE_HOLE | NBD_STATE_ZERO)));
            sum += nbd_get32(x);
        }
        CHECK(sum <= h->len);
        break;
    }
    default:
        CHECK(!"unknown structured reply type");
    }
    if (flags & NBD_REPLY_FLAG_DONE && h->type == NBD_CMD_READ) {
        CHECK(e->covered == h->len);
    }
}

/* A structured chunk at @p; its length, or 0 if short. */
static size_t check_structured(Session *s, const uint8_t *p, size_t n)
{
    uint32_t len;
    uint16_t flags;
    Expect *e;

    if (n < NBD_CHUNK_HEADER_SIZE) {
        return 0;
    }
    len = nbd_get32(p + 16);
    if (n - NBD_CHUNK_HEADER_SIZE < len) {
        return 0;
    }
    CHECK(s->structured);
    flags = nbd_get16(p + 4);
    CHECK(!(flags & ~NBD_REPLY_FLAG_DONE));
    e = find_expect(s, nbd_get64(p + 8));
    check_chunk(s, e, flags, nbd_get16(p + 6), p + NBD_CHUNK_HEADER_SIZE,
                len);
    e->done = flags & NBD_REPLY_FLAG_DONE;
    return NBD_CHUNK_HEADER_SIZE + len;
}

/* Everything the server sent after the handshake. */
static void check_replies(Session *s, const uint8_t *p, size_t n)
{
    while (n) {
        size_t used;

        CHECK(n >= 4);
        if (nbd_get32(p) == NBD_SIMPLE_REPLY_MAGIC) {
            used = check_simple(s, p, n);
        } else {
            CHECK(nbd_get32(p) == NBD_STRUCTURED_REPLY_MAGIC);
            used = check_structured(s, p, n);
        }
        CHECK(used);            /* no reply is cut short */
        p += used;
        n -= used;
    }
    for (guint i = 0; i < s->expect->len; i++) {
        CHECK(g_array_index(s->expect, Expect, i).done);
    }
}

/* Skip the greeting and the option replies, up to GO's ACK. */
static size_t skip_handshake(const GByteArray *out)
{
    size_t pos = NBD_GREETING_SIZE;

    for (;;) {
        uint32_t opt, type;

        CHECK(out->len - pos >= NBD_OPTION_REPLY_SIZE);
        CHECK(nbd_get64(out->data + pos) == NBD_REP_MAGIC);
        opt = nbd_get32(out->data + pos + 8);
        type = nbd_get32(out->data + pos + 12);
        CHECK(!(type & (1U << 31)));    /* our handshake is valid */
        pos += NBD_OPTION_REPLY_SIZE + nbd_get32(out->data + pos + 16);
        if (opt == NBD_OPT_GO && type == NBD_REP_ACK) {
            return pos;
        }
    }
}

/* --- The exchange -------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GByteArray) in = g_byte_array_new();
    g_autoptr(GByteArray) out = g_byte_array_new();
    Session s = { 0 };
    size_t chunk, sent = 0;
    bool wr_closed = false;
    unsigned idle = 0;
    int sv[2];

    if (size < 2) {
        return 0;
    }
    s.structured = data[0] & 1;
    s.base_allocation = s.structured && (data[0] & 2);
    s.ro = data[0] & 4;
    s.size = s.ro ? FUZZ_NBD_RO_SIZE : FUZZ_NBD_DISK_SIZE;
    chunk = (size_t)data[1] + 1;
    data += 2;
    size -= 2;

    s.expect = g_array_new(false, true, sizeof(Expect));
    if (!decode_stream(&s, data, size)) {
        g_array_free(s.expect, true);
        return 0;
    }
    build_handshake(&s, in);
    g_byte_array_append(in, data, size);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    nbd_server_add_client(sv[1]);

    for (;;) {
        bool progress = false;
        uint8_t buf[65536];
        ssize_t n;

        if (sent < in->len) {
            n = send(sv[0], in->data + sent, MIN(chunk, in->len - sent),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                sent = in->len;     /* the server hung up (bad magic) */
            }
        }
        if (sent == in->len && !wr_closed) {
            shutdown(sv[0], SHUT_WR);
            wr_closed = true;
        }
        n = recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            break;
        }
        if (n > 0) {
            g_byte_array_append(out, buf, n);
            progress = true;
        }
        progress |= aio_poll(main_context(), false);
        idle = progress ? 0 : idle + 1;
        CHECK(idle <= FUZZ_MAX_IDLE_ITERATIONS);    /* the server hung */
    }
    close(sv[0]);
    /* Let the connection's last bottom halves run. */
    while (aio_poll(main_context(), false)) {
    }

    {
        size_t pos = skip_handshake(out);

        check_replies(&s, out->data + pos, out->len - pos);
    }
    g_array_free(s.expect, true);
    return 0;
}
