/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for the NBD handshake: the server's own state machine
 * (block/export/nbd/nbd-handshake.c: nbd_hs_init/want/input/finish, which
 * nbd_handshake() drives on the socket) fed from memory, against the two
 * null-co exports of fuzz-nbd.h.  No socket, no coroutine: each input is
 * one client.  Input: one configuration byte (bit 0: the server allows
 * multi-conn), then what the client sends after the greeting; running out
 * of input is the client hanging up.
 *
 * Invariants, beyond "no crash, no leak, no UB":
 *   - the greeting is NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES;
 *   - every option reply has the reply magic and names the option being
 *     handled; its length fits; an option's replies end with one ACK or
 *     one error, and only SERVER, INFO and META_CONTEXT come before it;
 *     nothing else is sent (EXPORT_NAME's reply aside);
 *   - error messages fit NBD_MAX_STRING; INFO_EXPORT gives an export's
 *     real size and flags that match it (read-only, DF only with
 *     structured replies, multi-conn as configured); INFO_BLOCK_SIZE is
 *     1 / a power of two / 32 MiB; an acknowledged INFO or GO sent
 *     exactly one INFO_EXPORT; META_CONTEXT is base:allocation with id 0
 *     for LIST and 1 for SET;
 *   - EXPORT_NAME enters transmission with 10 or 134 bytes (NO_ZEROES),
 *     or hangs up with nothing;
 *   - the handshake ends in GO exactly when an export was chosen, and
 *     base:allocation is usable only with structured replies.
 */
#include "util/osdep.h"

#include "fuzz-nbd.h"
#include "util/main-loop.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "fuzz-nbd-handshake: %s:%d: %s\n", __FILE__, __LINE__, \
            #cond); abort(); } } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_nbd_setup();
    return 0;
}

static bool is_pow2(uint32_t v)
{
    return v && !(v & (v - 1));
}

/* The replies to option @opt (one step's output), checked. */
static void check_replies(const NbdHandshake *hs, uint32_t opt,
                          const uint8_t *p, size_t n, bool multi_conn)
{
    bool finished = false;
    unsigned exports = 0;

    while (n) {
        uint32_t type, len;

        CHECK(!finished);                   /* nothing after ACK / error */
        CHECK(n >= NBD_OPTION_REPLY_SIZE);
        CHECK(nbd_get64(p) == NBD_REP_MAGIC);
        CHECK(nbd_get32(p + 8) == opt);
        type = nbd_get32(p + 12);
        len = nbd_get32(p + 16);
        CHECK(len <= n - NBD_OPTION_REPLY_SIZE);
        p += NBD_OPTION_REPLY_SIZE;
        n -= NBD_OPTION_REPLY_SIZE;

        if (type & (1U << 31)) {
            CHECK(len <= NBD_MAX_STRING);
            finished = true;
        } else if (type == NBD_REP_ACK) {
            CHECK(len == 0);
            if (opt == NBD_OPT_INFO || opt == NBD_OPT_GO) {
                CHECK(exports == 1);
            }
            finished = true;
        } else if (type == NBD_REP_SERVER) {
            CHECK(opt == NBD_OPT_LIST);
            CHECK(len >= 4 && nbd_get32(p) <= len - 4);
        } else if (type == NBD_REP_META_CONTEXT) {
            size_t ctxlen = strlen(NBD_META_BASE_ALLOCATION);

            CHECK(opt == NBD_OPT_LIST_META_CONTEXT ||
                  opt == NBD_OPT_SET_META_CONTEXT);
            CHECK(len == 4 + ctxlen);
            CHECK(nbd_get32(p) ==
                  (opt == NBD_OPT_SET_META_CONTEXT ?
                   NBD_META_ID_BASE_ALLOCATION : 0));
            CHECK(!memcmp(p + 4, NBD_META_BASE_ALLOCATION, ctxlen));
        } else if (type == NBD_REP_INFO) {
            CHECK(opt == NBD_OPT_INFO || opt == NBD_OPT_GO);
            CHECK(len >= 2);
            switch (nbd_get16(p)) {
            case NBD_INFO_EXPORT: {
                uint64_t size = nbd_get64(p + 2);
                uint16_t flags = nbd_get16(p + 10);
                bool ro = size == FUZZ_NBD_RO_SIZE;

                CHECK(len == 12);
                CHECK(size == FUZZ_NBD_DISK_SIZE || ro);
                CHECK(flags & NBD_FLAG_HAS_FLAGS);
                CHECK(!!(flags & NBD_FLAG_READ_ONLY) == ro);
                CHECK(!!(flags & NBD_FLAG_SEND_TRIM) == !ro);
                CHECK(!!(flags & NBD_FLAG_SEND_DF) == hs->conn->structured);
                CHECK(!!(flags & NBD_FLAG_CAN_MULTI_CONN) == multi_conn);
                exports++;
                break;
            }
            case NBD_INFO_BLOCK_SIZE:
                CHECK(len == 14);
                CHECK(nbd_get32(p + 2) == 1);
                CHECK(is_pow2(nbd_get32(p + 6)) && nbd_get32(p + 6) >= 512);
                CHECK(nbd_get32(p + 10) == NBD_MAX_BUFFER);
                break;
            case NBD_INFO_NAME:
                CHECK((len == 2 + strlen("disk") &&
                       !memcmp(p + 2, "disk", 4)) ||
                      (len == 2 + strlen("ro") && !memcmp(p + 2, "ro", 2)));
                break;
            case NBD_INFO_DESCRIPTION:
                CHECK(len == 2 + strlen(FUZZ_NBD_DESCRIPTION));
                CHECK(!memcmp(p + 2, FUZZ_NBD_DESCRIPTION, len - 2));
                break;
            default:
                CHECK(!"unknown NBD_INFO type sent");
            }
        } else {
            CHECK(!"unknown option reply type");
        }
        p += len;
        n -= len;
    }
    CHECK(finished);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    NbdConn *conn = g_new0(NbdConn, 1);
    NbdHandshake hs;
    bool multi_conn, go;
    size_t pos = 1, want;

    if (size < 1) {
        g_free(conn);
        return 0;
    }
    multi_conn = data[0] & 1;
    conn->peer = g_strdup("fuzz");
    nbd_hs_init(&hs, conn, multi_conn);
    CHECK(hs.out->len == NBD_GREETING_SIZE);
    CHECK(nbd_get64(hs.out->data) == NBD_MAGIC);
    CHECK(nbd_get64(hs.out->data + 8) == NBD_OPTS_MAGIC);
    CHECK(nbd_get16(hs.out->data + 16) ==
          (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
    g_byte_array_set_size(hs.out, 0);

    while ((want = nbd_hs_want(&hs))) {
        NbdHsState before = hs.state;
        uint32_t opt = hs.opt;
        bool handled;

        if (size - pos < want) {
            hs.state = NBD_HS_CLOSE;        /* the client hung up */
            break;
        }
        if (before == NBD_HS_OPTION_HEADER) {
            opt = nbd_get32(data + pos + 8);
        }
        nbd_hs_input(&hs, data + pos, want);
        pos += want;

        /* Did this step handle an option (and so owe its replies)? */
        handled = before == NBD_HS_OPTION_DATA ||
                  (before == NBD_HS_OPTION_SKIP &&
                   hs.state != NBD_HS_OPTION_SKIP) ||
                  (before == NBD_HS_OPTION_HEADER &&
                   nbd_get64(data + pos - want) == NBD_OPTS_MAGIC &&
                   hs.state != NBD_HS_OPTION_DATA &&
                   hs.state != NBD_HS_OPTION_SKIP &&
                   !(hs.state == NBD_HS_CLOSE && hs.len));
        if (!handled) {
            CHECK(hs.out->len == 0);
        } else if (opt == NBD_OPT_EXPORT_NAME) {
            CHECK(hs.state == NBD_HS_GO || hs.state == NBD_HS_CLOSE);
            if (hs.state == NBD_HS_GO) {
                CHECK(hs.out->len == (conn->no_zeroes ?
                                      NBD_EXPORT_NAME_REPLY_SIZE :
                                      NBD_EXPORT_NAME_REPLY_SIZE +
                                      NBD_EXPORT_NAME_ZEROES));
                CHECK(nbd_get16(hs.out->data + 8) == conn->tx_flags);
            } else {
                CHECK(hs.out->len == 0);
            }
        } else {
            check_replies(&hs, opt, hs.out->data, hs.out->len, multi_conn);
            CHECK(hs.state != NBD_HS_CLOSE || opt == NBD_OPT_ABORT);
            CHECK(hs.state != NBD_HS_GO || opt == NBD_OPT_GO);
        }
        g_byte_array_set_size(hs.out, 0);
    }
    CHECK(nbd_hs_want(&hs) == 0);

    go = nbd_hs_finish(&hs);
    CHECK(go == (conn->exp != NULL));
    CHECK(go == (hs.state == NBD_HS_GO));
    CHECK(!conn->base_allocation || conn->structured);
    if (conn->exp) {
        CHECK(conn->exp->size == FUZZ_NBD_DISK_SIZE ||
              conn->exp->size == FUZZ_NBD_RO_SIZE);
        blk_exp_unref(&conn->exp->common);
    }
    g_free(conn->meta_export);
    g_free(conn->peer);
    g_free(conn);
    return 0;
}
