/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD handshake: fixed newstyle, from the greeting to the option
 * that chooses an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME).  It runs in
 * the connection's coroutine in the main loop, under the BQL; docs/nbd.md
 * lists what each option does.
 *
 * The handshake is a state machine over bytes (NbdHsState, nbd-int.h),
 * with no I/O of its own: nbd_hs_want() says how many bytes it needs
 * next, nbd_hs_input() takes exactly those and appends the replies to
 * hs->out.  nbd_handshake() is its driver on the socket; the fuzz harness
 * (tests/fuzz/fuzz-nbd-handshake.c) drives the same code from memory.
 *
 *   (greeting queued) --> CLIENT_FLAGS --> OPTION_HEADER --+
 *                                              ^           |
 *         OPTION_DATA (handle, reply) ---------+-----------+
 *         OPTION_SKIP (too long: drop, refuse) +           |
 *                                                          +--> GO
 *                                                          +--> CLOSE
 *
 * GO: EXPORT_NAME, or GO acknowledged.  CLOSE: ABORT, a protocol
 * violation, or (set by the driver) an I/O error.
 *
 * Blocking rules: the driver does whole-message receives and sends through
 * the connection's transport, in the main loop, and yields only there; an option's handler builds all
 * of its replies without yielding, so what it looked up (an export)
 * cannot go away while it does.  The handshake timer and
 * nbd_server_stop() end a handshake by shutting the transport down, which
 * fails the pending receive or send.
 *
 * Limits: option data up to NBD_MAX_OPTION_SIZE is read and handled;
 * longer options (up to NBD_MAX_BUFFER) are skipped and refused with
 * NBD_REP_ERR_TOO_BIG, and anything longer hangs up, as does an export
 * name over NBD_MAX_STRING in NBD_OPT_EXPORT_NAME (which cannot be
 * refused otherwise).  Strings inside options are bounded at
 * NBD_MAX_STRING bytes.
 */
#include "util/osdep.h"

#include <sys/socket.h>

#include "block/block-backend.h"
#include "block/export/nbd/nbd-int.h"
#include "util/log.h"
#include "util/main-loop.h"

/* Option data we read and parse; longer options are skipped. */
#define NBD_MAX_OPTION_SIZE     (64 * 1024)

/* --- I/O for the handshake ------------------------------------------------ */

static int coroutine_fn nbd_co_recv_all(NbdConn *conn, void *buf, size_t len)
{
    return blk_exp_transport_recv_all(conn->client.transport, buf, len);
}

static int coroutine_fn nbd_co_send_all(NbdConn *conn, const void *buf,
                                        size_t len)
{
    return blk_exp_transport_send_all(conn->client.transport, buf, len);
}

/* --- The handshake ------------------------------------------------------- */

/* The transmission flags the connection gets for @exp (docs/nbd.md). */
static uint16_t nbd_tx_flags(NbdHandshake *hs, NbdExport *exp)
{
    NbdConn *conn = hs->conn;

    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                     NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;

    if (exp->common.writable) {
        flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                 NBD_FLAG_SEND_FAST_ZERO;
    } else {
        flags |= NBD_FLAG_READ_ONLY;
    }
    if (conn->structured) {
        flags |= NBD_FLAG_SEND_DF;
    }
    if (hs->multi_conn) {
        flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    return flags;
}

/* Queue an option reply of @type with @len bytes of @payload. */
static void nbd_hs_reply(NbdHandshake *hs, uint32_t type,
                         const void *payload, uint32_t len)
{
    uint8_t hdr[NBD_OPTION_REPLY_SIZE];

    nbd_put64(hdr, NBD_REP_MAGIC);
    nbd_put32(hdr + 8, hs->opt);
    nbd_put32(hdr + 12, type);
    nbd_put32(hdr + 16, len);
    g_byte_array_append(hs->out, hdr, sizeof(hdr));
    if (len) {
        g_byte_array_append(hs->out, payload, len);
    }
}

/* Queue an error reply with a message for the user; handshake goes on. */
static NbdHsState PRINTF_FMT(3, 4)
nbd_hs_error(NbdHandshake *hs, uint32_t type, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (strlen(msg) > NBD_MAX_STRING) {
        msg[NBD_MAX_STRING] = '\0';
    }
    debug_report("nbd: %s: option %" PRIu32 " refused: %s",
                 hs->conn->peer, hs->opt, msg);
    nbd_hs_reply(hs, type, msg, strlen(msg));
    return NBD_HS_OPTION_HEADER;
}

/* Queue an NBD_REP_INFO of type @info with @len bytes of @payload. */
static void nbd_hs_info(NbdHandshake *hs, uint16_t info, const void *payload,
                        size_t len)
{
    g_autofree uint8_t *buf = g_malloc(2 + len);

    nbd_put16(buf, info);
    memcpy(buf + 2, payload, len);
    nbd_hs_reply(hs, NBD_REP_INFO, buf, 2 + len);
}

/*
 * A string of @len bytes at @p, or NULL if it contains a NUL (strings on
 * the wire must not).
 */
static char *nbd_hs_string(const uint8_t *p, uint32_t len)
{
    if (memchr(p, '\0', len)) {
        return NULL;
    }
    return g_strndup((const char *)p, len);
}

static NbdHsState nbd_hs_client_flags(NbdHandshake *hs, const uint8_t *buf)
{
    uint32_t flags = nbd_get32(buf);

    /*
     * Unknown flags: the spec says hang up.  A client without
     * FIXED_NEWSTYLE still gets fixed-newstyle replies (the spec allows
     * it; such clients only send EXPORT_NAME anyway).
     */
    if (flags & ~NBD_FLAG_C_MASK) {
        debug_report("nbd: %s: unknown client flags 0x%" PRIx32,
                     hs->conn->peer, flags);
        return NBD_HS_CLOSE;
    }
    hs->conn->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return NBD_HS_OPTION_HEADER;
}

/* --- Options: each builds its replies without yielding ------------------- */

static NbdHsState nbd_opt_export_name(NbdHandshake *hs) TSA_REQUIRES(bql)
{
    NbdConn *conn = hs->conn;
    g_autofree char *name = nbd_hs_string(hs->data, hs->len);
    uint8_t buf[NBD_EXPORT_NAME_REPLY_SIZE + NBD_EXPORT_NAME_ZEROES] = { 0 };
    NbdExport *exp = name ? nbd_export_find(name) : NULL;

    /* This option cannot fail politely: the spec says hang up. */
    if (!exp) {
        debug_report("nbd: %s: NBD_OPT_EXPORT_NAME: no export '%s'",
                     conn->peer, name ? name : "(invalid name)");
        return NBD_HS_CLOSE;
    }
    conn->tx_flags = nbd_tx_flags(hs, exp);
    nbd_put64(buf, exp->size);
    nbd_put16(buf + 8, conn->tx_flags);
    g_byte_array_append(hs->out, buf, conn->no_zeroes ?
                        NBD_EXPORT_NAME_REPLY_SIZE : sizeof(buf));
    blk_exp_ref(&exp->common);
    hs->chosen = exp;
    return NBD_HS_GO;
}

static NbdHsState nbd_opt_abort(NbdHandshake *hs)
{
    /* Data is to be ignored; the reply is best effort (flushed). */
    nbd_hs_reply(hs, NBD_REP_ACK, NULL, 0);
    return NBD_HS_CLOSE;
}

static NbdHsState nbd_opt_list(NbdHandshake *hs) TSA_REQUIRES(bql)
{
    if (hs->len) {
        return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "NBD_OPT_LIST must not have data");
    }
    for (NbdExport *exp = nbd_export_next(NULL); exp;
         exp = nbd_export_next(exp)) {
        size_t namelen = strlen(exp->name);
        size_t desclen = exp->description ? strlen(exp->description) : 0;
        g_autofree uint8_t *buf = g_malloc(4 + namelen + desclen);

        nbd_put32(buf, namelen);
        memcpy(buf + 4, exp->name, namelen);
        if (desclen) {
            memcpy(buf + 4 + namelen, exp->description, desclen);
        }
        nbd_hs_reply(hs, NBD_REP_SERVER, buf, 4 + namelen + desclen);
    }
    nbd_hs_reply(hs, NBD_REP_ACK, NULL, 0);
    return NBD_HS_OPTION_HEADER;
}

static NbdHsState nbd_opt_starttls(NbdHandshake *hs)
{
    return nbd_hs_error(hs, NBD_REP_ERR_POLICY,
                        "TLS is not configured on this server");
}

/*
 * NBD_OPT_INFO and NBD_OPT_GO: name length (4), name, number of
 * information requests (2), requests (2 each).
 */
/* What NBD_OPT_INFO / NBD_OPT_GO asks for. */
typedef struct NbdInfoRequest {
    char *name;                 /* the export's name (owned) */
    bool want_name;             /* NBD_INFO_NAME requested */
    bool want_desc;             /* NBD_INFO_DESCRIPTION requested */
} NbdInfoRequest;

/*
 * Parse the option data of NBD_OPT_INFO / NBD_OPT_GO into @r.  True, or
 * false with *@err set to the state after the error reply.
 */
static bool nbd_info_parse(NbdHandshake *hs, NbdInfoRequest *r,
                           NbdHsState *err)
{
    uint32_t namelen;
    uint16_t nreq;

    if (hs->len < 6) {
        *err = nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "option data too short (%" PRIu32 " bytes)",
                            hs->len);
        return false;
    }
    namelen = nbd_get32(hs->data);
    if (namelen > hs->len - 6) {
        *err = nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "export name length %" PRIu32 " exceeds the "
                            "option data", namelen);
        return false;
    }
    if (namelen > NBD_MAX_STRING) {
        *err = nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "export name longer than %d bytes",
                            NBD_MAX_STRING);
        return false;
    }
    nreq = nbd_get16(hs->data + 4 + namelen);
    if (hs->len != 4 + namelen + 2 + 2 * (uint32_t)nreq) {
        *err = nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "option length does not match its %u "
                            "information requests", nreq);
        return false;
    }
    for (unsigned i = 0; i < nreq; i++) {
        switch (nbd_get16(hs->data + 4 + namelen + 2 + 2 * i)) {
        case NBD_INFO_NAME:
            r->want_name = true;
            break;
        case NBD_INFO_DESCRIPTION:
            r->want_desc = true;
            break;
        default:
            break;      /* BLOCK_SIZE is always sent; others ignored */
        }
    }
    r->name = nbd_hs_string(hs->data + 4, namelen);
    if (!r->name) {
        *err = nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "export name contains a NUL byte");
        return false;
    }
    return true;
}

/* The NBD_REP_INFO replies about @exp that @r asks for, and the ACK. */
static void nbd_info_reply(NbdHandshake *hs, NbdExport *exp,
                           const NbdInfoRequest *r)
{
    uint8_t buf[12];

    if (r->want_name) {
        nbd_hs_info(hs, NBD_INFO_NAME, exp->name, strlen(exp->name));
    }
    if (r->want_desc && exp->description) {
        nbd_hs_info(hs, NBD_INFO_DESCRIPTION, exp->description,
                    strlen(exp->description));
    }
    /*
     * Block sizes, always sent (whether asked for or not, as the spec
     * allows).  The minimum is 1: the block layer pads unaligned requests
     * (read-modify-write), so no client is ever refused for alignment,
     * as with QEMU; the node's alignment is the preferred size, which is
     * what aligning clients go by.
     */
    nbd_put32(buf, 1);
    nbd_put32(buf + 4, exp->pref_block);
    nbd_put32(buf + 8, NBD_MAX_BUFFER);
    nbd_hs_info(hs, NBD_INFO_BLOCK_SIZE, buf, 12);

    hs->conn->tx_flags = nbd_tx_flags(hs, exp);
    nbd_put64(buf, exp->size);
    nbd_put16(buf + 8, hs->conn->tx_flags);
    nbd_hs_info(hs, NBD_INFO_EXPORT, buf, 10);
    nbd_hs_reply(hs, NBD_REP_ACK, NULL, 0);
}

static NbdHsState nbd_opt_info_go(NbdHandshake *hs) TSA_REQUIRES(bql)
{
    NbdInfoRequest r = { 0 };
    NbdHsState state;
    NbdExport *exp;

    if (!nbd_info_parse(hs, &r, &state)) {
        g_free(r.name);
        return state;
    }
    exp = nbd_export_find(r.name);
    if (!exp) {
        state = nbd_hs_error(hs, NBD_REP_ERR_UNKNOWN,
                             "export '%s' not present", r.name);
        g_free(r.name);
        return state;
    }
    g_free(r.name);
    nbd_info_reply(hs, exp, &r);
    if (hs->opt != NBD_OPT_GO) {
        return NBD_HS_OPTION_HEADER;
    }
    blk_exp_ref(&exp->common);
    hs->chosen = exp;
    return NBD_HS_GO;
}

static NbdHsState nbd_opt_structured_reply(NbdHandshake *hs)
{
    if (hs->len) {
        return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "NBD_OPT_STRUCTURED_REPLY must not have data");
    }
    if (hs->conn->structured) {
        return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "structured replies are already negotiated");
    }
    hs->conn->structured = true;
    nbd_hs_reply(hs, NBD_REP_ACK, NULL, 0);
    return NBD_HS_OPTION_HEADER;
}

/* A cursor over option data, for the variable-length options. */
typedef struct NbdCursor {
    const uint8_t *p;
    uint32_t left;
} NbdCursor;

static bool nbd_cursor_u32(NbdCursor *c, uint32_t *v)
{
    if (c->left < 4) {
        return false;
    }
    *v = nbd_get32(c->p);
    c->p += 4;
    c->left -= 4;
    return true;
}

/* A string of @len bytes (at most NBD_MAX_STRING); NULL if invalid. */
static char *nbd_cursor_string(NbdCursor *c, uint32_t len)
{
    char *s;

    if (len > c->left || len > NBD_MAX_STRING) {
        return NULL;
    }
    s = nbd_hs_string(c->p, len);
    c->p += len;
    c->left -= len;
    return s;
}

/*
 * NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: export name
 * length (4), name, number of queries (4), queries (length (4), string).
 * blockd knows one context, base:allocation.
 */
static NbdHsState nbd_opt_meta_context(NbdHandshake *hs) TSA_REQUIRES(bql)
{
    NbdConn *conn = hs->conn;
    bool set = hs->opt == NBD_OPT_SET_META_CONTEXT;
    NbdCursor c = { hs->data, hs->len };
    g_autofree char *name = NULL;
    uint32_t len, nqueries;
    bool match = false;
    NbdExport *exp;

    if (set) {
        /* A SET replaces the previous selection, even when it fails. */
        g_clear_pointer(&conn->meta_export, g_free);
    }
    if (!conn->structured) {
        return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "structured replies are not negotiated");
    }
    if (!nbd_cursor_u32(&c, &len) || !(name = nbd_cursor_string(&c, len)) ||
        !nbd_cursor_u32(&c, &nqueries)) {
        return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "malformed export name or query count");
    }
    for (uint32_t i = 0; i < nqueries; i++) {
        g_autofree char *query = NULL;

        if (!nbd_cursor_u32(&c, &len) ||
            !(query = nbd_cursor_string(&c, len))) {
            return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                                "malformed query %" PRIu32, i);
        }
        /* Queries of unknown namespaces are ignored, as the spec says. */
        if (!strcmp(query, NBD_META_BASE_ALLOCATION) ||
            (!set && !strcmp(query, NBD_META_NS_BASE))) {
            match = true;
        }
    }
    if (c.left) {
        return nbd_hs_error(hs, NBD_REP_ERR_INVALID,
                            "%" PRIu32 " bytes of trailing data", c.left);
    }
    exp = nbd_export_find(name);
    if (!exp) {
        return nbd_hs_error(hs, NBD_REP_ERR_UNKNOWN,
                            "export '%s' not present", name);
    }
    if (!set && nqueries == 0) {
        match = true;       /* list everything */
    }
    if (match) {
        size_t ctxlen = strlen(NBD_META_BASE_ALLOCATION);
        uint8_t buf[4 + sizeof(NBD_META_BASE_ALLOCATION)];

        /* LIST replies carry id 0 (reserved); SET assigns the real one. */
        nbd_put32(buf, set ? NBD_META_ID_BASE_ALLOCATION : 0);
        memcpy(buf + 4, NBD_META_BASE_ALLOCATION, ctxlen);
        nbd_hs_reply(hs, NBD_REP_META_CONTEXT, buf, 4 + ctxlen);
        if (set) {
            conn->meta_export = g_strdup(exp->name);
        }
    }
    nbd_hs_reply(hs, NBD_REP_ACK, NULL, 0);
    return NBD_HS_OPTION_HEADER;
}

/* Handle the option whose data is at hs->data; queue its replies. */
static NbdHsState nbd_hs_option(NbdHandshake *hs) TSA_REQUIRES(bql)
{
    switch (hs->opt) {
    case NBD_OPT_EXPORT_NAME:
        return nbd_opt_export_name(hs);
    case NBD_OPT_ABORT:
        return nbd_opt_abort(hs);
    case NBD_OPT_LIST:
        return nbd_opt_list(hs);
    case NBD_OPT_STARTTLS:
        return nbd_opt_starttls(hs);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return nbd_opt_info_go(hs);
    case NBD_OPT_STRUCTURED_REPLY:
        return nbd_opt_structured_reply(hs);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return nbd_opt_meta_context(hs);
    default:
        return nbd_hs_error(hs, NBD_REP_ERR_UNSUP,
                            "option %" PRIu32 " is not supported", hs->opt);
    }
}

static NbdHsState nbd_hs_handle(NbdHandshake *hs, const uint8_t *data)
    TSA_REQUIRES(bql)
{
    NbdHsState next;

    hs->data = data;
    next = nbd_hs_option(hs);
    hs->data = NULL;
    return next;
}

static NbdHsState nbd_hs_option_header(NbdHandshake *hs, const uint8_t *hdr)
    TSA_REQUIRES(bql)
{
    /* Option handlers get a valid pointer even without data. */
    static const uint8_t no_data[1];

    if (nbd_get64(hdr) != NBD_OPTS_MAGIC) {
        debug_report("nbd: %s: bad option magic", hs->conn->peer);
        return NBD_HS_CLOSE;
    }
    hs->opt = nbd_get32(hdr + 8);
    hs->len = nbd_get32(hdr + 12);

    if (hs->len > NBD_MAX_OPTION_SIZE ||
        (hs->opt == NBD_OPT_EXPORT_NAME && hs->len > NBD_MAX_STRING)) {
        if (hs->opt == NBD_OPT_EXPORT_NAME || hs->len > NBD_MAX_BUFFER) {
            debug_report("nbd: %s: option %" PRIu32 " too long (%" PRIu32
                         " bytes)", hs->conn->peer, hs->opt, hs->len);
            return NBD_HS_CLOSE;
        }
        hs->skip = hs->len;
        return NBD_HS_OPTION_SKIP;
    }
    return hs->len ? NBD_HS_OPTION_DATA : nbd_hs_handle(hs, no_data);
}

void nbd_hs_init(NbdHandshake *hs, NbdConn *conn, bool multi_conn)
{
    uint8_t buf[NBD_GREETING_SIZE];

    *hs = (NbdHandshake) {
        .conn = conn,
        .state = NBD_HS_CLIENT_FLAGS,
        .multi_conn = multi_conn,
        .out = g_byte_array_new(),
    };
    nbd_put64(buf, NBD_MAGIC);
    nbd_put64(buf + 8, NBD_OPTS_MAGIC);
    nbd_put16(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    g_byte_array_append(hs->out, buf, sizeof(buf));
}

size_t nbd_hs_want(const NbdHandshake *hs)
{
    switch (hs->state) {
    case NBD_HS_CLIENT_FLAGS:
        return 4;
    case NBD_HS_OPTION_HEADER:
        return NBD_OPTION_HEADER_SIZE;
    case NBD_HS_OPTION_DATA:
        return hs->len;
    case NBD_HS_OPTION_SKIP:
        return MIN(hs->skip, NBD_MAX_OPTION_SIZE);
    default:
        return 0;
    }
}

void nbd_hs_input(NbdHandshake *hs, const uint8_t *buf, size_t len)
{
    assert(len && len == nbd_hs_want(hs));
    switch (hs->state) {
    case NBD_HS_CLIENT_FLAGS:
        hs->state = nbd_hs_client_flags(hs, buf);
        break;
    case NBD_HS_OPTION_HEADER:
        hs->state = nbd_hs_option_header(hs, buf);
        break;
    case NBD_HS_OPTION_DATA:
        hs->state = nbd_hs_handle(hs, buf);
        break;
    case NBD_HS_OPTION_SKIP:
        hs->skip -= len;
        if (!hs->skip) {
            hs->state = nbd_hs_error(hs, NBD_REP_ERR_TOO_BIG,
                                     "option data too long (%" PRIu32
                                     " bytes)", hs->len);
        }
        break;
    default:
        g_assert_not_reached();
    }
}

bool nbd_hs_finish(NbdHandshake *hs)
{
    NbdConn *conn = hs->conn;

    assert(hs->state == NBD_HS_GO || hs->state == NBD_HS_CLOSE);
    g_byte_array_free(hs->out, true);
    hs->out = NULL;
    if (hs->state == NBD_HS_CLOSE && hs->chosen) {
        /* The reply that would have entered transmission failed. */
        blk_exp_unref(&hs->chosen->common);
        hs->chosen = NULL;
    }
    conn->exp = hs->chosen;
    if (conn->exp) {
        conn->base_allocation = conn->structured && conn->meta_export &&
                                !strcmp(conn->meta_export, conn->exp->name);
        debug_report("nbd: %s: serving export '%s'%s", conn->peer,
                     conn->exp->name,
                     conn->structured ? " (structured replies)" : "");
    }
    return conn->exp != NULL;
}

bool coroutine_fn nbd_handshake(NbdConn *conn)
{
    NbdHandshake hs;
    g_autofree uint8_t *buf = NULL;
    size_t cap = 0;

    nbd_hs_init(&hs, conn, nbd_server_allows_multi_conn(conn->server));
    for (;;) {
        size_t want;

        /* Replies go out before the next receive, and before GO / CLOSE. */
        if (hs.out->len) {
            if (nbd_co_send_all(conn, hs.out->data, hs.out->len) < 0) {
                hs.state = NBD_HS_CLOSE;
            }
            g_byte_array_set_size(hs.out, 0);
        }
        want = nbd_hs_want(&hs);
        if (!want) {
            break;
        }
        if (want > cap) {
            g_free(buf);
            buf = g_malloc(want);
            cap = want;
        }
        if (nbd_co_recv_all(conn, buf, want) < 0) {
            hs.state = NBD_HS_CLOSE;
            break;
        }
        nbd_hs_input(&hs, buf, want);
    }
    return nbd_hs_finish(&hs);
}
