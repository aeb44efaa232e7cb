/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The NBD wire protocol, as NetworkBlockDevice/nbd doc/proto.md defines
 * it: magic numbers, handshake and transmission flags, options and their
 * replies, information types, commands, structured reply chunks and error
 * values, with the sizes of the fixed-size messages and big-endian
 * accessors to build and parse them.
 *
 * Everything on the wire is big-endian.  Messages are built and parsed
 * byte by byte with the helpers below (never by casting a packed struct
 * over a buffer), so that nothing here depends on the host's byte order
 * or alignment rules.  Pure definitions: no state, any thread.
 */
#ifndef BLOCK_EXPORT_NBD_PROTOCOL_H
#define BLOCK_EXPORT_NBD_PROTOCOL_H

#include "util/osdep.h"

/* --- Magic numbers ------------------------------------------------------- */

#define NBD_MAGIC                   0x4e42444d41474943ULL   /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC              0x49484156454f5054ULL   /* "IHAVEOPT" */
#define NBD_REP_MAGIC               0x0003e889045565a9ULL   /* option reply */
#define NBD_REQUEST_MAGIC           0x25609513U
#define NBD_SIMPLE_REPLY_MAGIC      0x67446698U
#define NBD_STRUCTURED_REPLY_MAGIC  0x668e33efU

/* --- Handshake ----------------------------------------------------------- */

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE     (1 << 0)
#define NBD_FLAG_NO_ZEROES          (1 << 1)

/* Client flags (32 bits); anything else makes the server hang up. */
#define NBD_FLAG_C_FIXED_NEWSTYLE   (1 << 0)
#define NBD_FLAG_C_NO_ZEROES        (1 << 1)
#define NBD_FLAG_C_MASK             (NBD_FLAG_C_FIXED_NEWSTYLE | \
                                     NBD_FLAG_C_NO_ZEROES)

/* Transmission flags (16 bits), sent with the export's size. */
#define NBD_FLAG_HAS_FLAGS          (1 << 0)
#define NBD_FLAG_READ_ONLY          (1 << 1)
#define NBD_FLAG_SEND_FLUSH         (1 << 2)
#define NBD_FLAG_SEND_FUA           (1 << 3)
#define NBD_FLAG_ROTATIONAL         (1 << 4)
#define NBD_FLAG_SEND_TRIM          (1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1 << 6)
#define NBD_FLAG_SEND_DF            (1 << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1 << 8)
#define NBD_FLAG_SEND_RESIZE        (1 << 9)
#define NBD_FLAG_SEND_CACHE         (1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1 << 11)

/* Options (client, during option haggling). */
#define NBD_OPT_EXPORT_NAME         1
#define NBD_OPT_ABORT               2
#define NBD_OPT_LIST                3
#define NBD_OPT_PEEK_EXPORT         4       /* withdrawn */
#define NBD_OPT_STARTTLS            5
#define NBD_OPT_INFO                6
#define NBD_OPT_GO                  7
#define NBD_OPT_STRUCTURED_REPLY    8
#define NBD_OPT_LIST_META_CONTEXT   9
#define NBD_OPT_SET_META_CONTEXT    10
#define NBD_OPT_EXTENDED_HEADERS    11      /* not supported (yet) */

/* Option reply types; errors have bit 31 set. */
#define NBD_REP_ACK                 1
#define NBD_REP_SERVER              2
#define NBD_REP_INFO                3
#define NBD_REP_META_CONTEXT        4
#define NBD_REP_ERR(n)              ((1U << 31) | (n))
#define NBD_REP_ERR_UNSUP           NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY          NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID         NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM        NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD        NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN         NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN        NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG         NBD_REP_ERR(9)

/* Information types (NBD_REP_INFO payloads and INFO/GO requests). */
#define NBD_INFO_EXPORT             0
#define NBD_INFO_NAME               1
#define NBD_INFO_DESCRIPTION        2
#define NBD_INFO_BLOCK_SIZE         3

/* The one metadata context blockd offers, and its status flags. */
#define NBD_META_NS_BASE            "base:"
#define NBD_META_BASE_ALLOCATION    "base:allocation"
#define NBD_STATE_HOLE              (1 << 0)
#define NBD_STATE_ZERO              (1 << 1)

/*
 * Sizes of the fixed parts of handshake messages:
 *   greeting: NBDMAGIC, IHAVEOPT, handshake flags
 *   option header: IHAVEOPT, option, length
 *   option reply header: magic, option, reply type, length
 *   EXPORT_NAME reply: size, transmission flags (+ 124 zero bytes)
 */
#define NBD_GREETING_SIZE           (8 + 8 + 2)
#define NBD_OPTION_HEADER_SIZE      (8 + 4 + 4)
#define NBD_OPTION_REPLY_SIZE       (8 + 4 + 4 + 4)
#define NBD_EXPORT_NAME_REPLY_SIZE  (8 + 2)
#define NBD_EXPORT_NAME_ZEROES      124

/* --- Transmission -------------------------------------------------------- */

/* Commands. */
#define NBD_CMD_READ                0
#define NBD_CMD_WRITE               1
#define NBD_CMD_DISC                2
#define NBD_CMD_FLUSH               3
#define NBD_CMD_TRIM                4
#define NBD_CMD_CACHE               5
#define NBD_CMD_WRITE_ZEROES        6
#define NBD_CMD_BLOCK_STATUS        7

/* Command flags. */
#define NBD_CMD_FLAG_FUA            (1 << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1 << 1)
#define NBD_CMD_FLAG_DF             (1 << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1 << 4)

/* Structured reply flags and chunk types; error chunks have bit 15 set. */
#define NBD_REPLY_FLAG_DONE         (1 << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1 << 15) | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1 << 15) | 2)

/* Error values of replies (not errno: the protocol fixes them). */
#define NBD_SUCCESS                 0
#define NBD_EPERM                   1
#define NBD_EIO                     5
#define NBD_ENOMEM                  12
#define NBD_EINVAL                  22
#define NBD_ENOSPC                  28
#define NBD_EOVERFLOW               75
#define NBD_ENOTSUP                 95
#define NBD_ESHUTDOWN               108

/*
 * Request: magic (4), command flags (2), type (2), handle (8), offset (8),
 * length (4); a WRITE's payload follows.
 */
#define NBD_REQUEST_SIZE            28
/* Simple reply: magic (4), error (4), handle (8); a READ's data follows. */
#define NBD_SIMPLE_REPLY_SIZE       16
/*
 * Structured reply chunk header: magic (4), flags (2), type (2),
 * handle (8), payload length (4).
 */
#define NBD_CHUNK_HEADER_SIZE       20
/* OFFSET_DATA payload before the data: offset (8). */
#define NBD_OFFSET_DATA_SIZE        8
/* OFFSET_HOLE payload: offset (8), hole size (4). */
#define NBD_OFFSET_HOLE_SIZE        12
/* ERROR payload before the message: error (4), message length (2). */
#define NBD_ERROR_SIZE              6
/* BLOCK_STATUS payload: context id (4), then extents of length+flags (8). */
#define NBD_BLOCK_STATUS_SIZE       4
#define NBD_EXTENT_SIZE             8

/* --- Big-endian accessors ------------------------------------------------ */

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint16_t nbd_get16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT16_FROM_BE(v);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_BE(v);
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_BE(v);
}

#endif /* BLOCK_EXPORT_NBD_PROTOCOL_H */
