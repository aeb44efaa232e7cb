/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The input side of a QMP client: the stream of JSON texts it sends, cut
 * into messages, each handed to monitor_client_handle_request().
 *
 * The stream is parsed with json-c's incremental tokener.  Next to the
 * tokener, a small scanner follows the same bytes (string quoting and
 * bracket depth) so that, when the tokener rejects the input, the client
 * can be resynchronised at a sensible point instead of throwing away
 * whatever happened to share a read() with the bad bytes; the rules are in
 * client_discard() and docs/qmp-protocol.md.  A message larger than
 * QMP_MAX_MESSAGE_BYTES (counting skipped garbage) closes that connection
 * only.
 *
 * Main-loop code under the BQL, called from qmp/monitor.c's read path,
 * which holds a reference to the client: everything here may close it.
 */
#include "util/osdep.h"

#include "qmp/monitor-int.h"
#include "qmp/qmp.h"
#include "util/log.h"

/* JSON nesting limit; QMP arguments nest a handful of levels deep. */
#define MONITOR_JSON_DEPTH      128

/* --- The resynchronisation scanner ---------------------------------------- */

static bool json_is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/*
 * Bytes that no JSON text contains outside a string (ASCII control
 * characters other than blanks) or anywhere (0xff is never UTF-8): after a
 * parse error they reset the parser at once.  QEMU documents the same as
 * the way for a client to force its parser back into a known state.
 */
static bool json_is_reset_byte(unsigned char ch)
{
    return (ch < 0x20 && !json_is_space(ch)) || ch == 0xff;
}

static void json_scan_byte(JsonScan *s, unsigned char ch)
{
    if (ch == '\n') {
        s->line_start = true;
    } else if (!json_is_space(ch)) {
        s->line_start = false;
    }
    if (s->quote) {
        if (s->escape) {
            s->escape = false;
        } else if (ch == '\\') {
            s->escape = true;
        } else if (ch == (unsigned char)s->quote) {
            s->quote = 0;
        }
        return;
    }
    switch (ch) {
    case '"':
    case '\'':
        s->quote = ch;
        break;
    case '{':
    case '[':
        s->depth++;
        break;
    case '}':
    case ']':
        if (s->depth) {
            s->depth--;
        }
        break;
    }
}

static void json_scan_bytes(JsonScan *s, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        json_scan_byte(s, buf[i]);
    }
}

/* A new message starts: forget brackets and strings, keep line_start. */
static void json_scan_reset(JsonScan *s)
{
    s->depth = 0;
    s->quote = 0;
    s->escape = false;
}

/* --- Setting up and tearing down ------------------------------------------ */

void monitor_input_init(MonitorClient *c)
{
    c->tok = json_tokener_new_ex(MONITOR_JSON_DEPTH);
    json_tokener_set_flags(c->tok, JSON_TOKENER_VALIDATE_UTF8);
    c->scan.line_start = true;
}

void monitor_input_free(MonitorClient *c)
{
    json_tokener_free(c->tok);
}

/* --- Messages ------------------------------------------------------------- */

static void client_oversized(MonitorClient *c) TSA_REQUIRES(bql)
{
    /* One best-effort attempt to say why, then close. */
    monitor_client_send_error(c, "Message too large: over %d bytes; closing "
                              "the connection", QMP_MAX_MESSAGE_BYTES);
    monitor_client_close(c, LOG_LEVEL_WARNING,
                         "message larger than %d bytes; connection closed",
                         QMP_MAX_MESSAGE_BYTES);
}

/* The current message is over (parsed, or skipped). */
static void client_end_message(MonitorClient *c)
{
    json_tokener_reset(c->tok);
    json_scan_reset(&c->scan);
    c->discarding = false;
    c->msg_bytes = 0;
}

/*
 * Skip the rest of a malformed message.  Returns how many bytes of @buf
 * were skipped; if the message is over, c->discarding is false and parsing
 * resumes at buf[return value].  The message ends:
 *  - after a reset byte (see json_is_reset_byte()), at once;
 *  - at a '{' that begins a line: a human started over;
 *  - once the brackets it opened are closed (strings respected);
 *  - outside any bracket, at the end of the line or before the next '{'
 *    or '[' (garbage between messages costs one error, not one per word).
 */
static size_t client_discard(MonitorClient *c, const char *buf, size_t len)
{
    JsonScan *s = &c->scan;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char ch = buf[i];

        if (json_is_reset_byte(ch)) {
            client_end_message(c);
            return i + 1;
        }
        if (ch == '{' && s->line_start) {
            client_end_message(c);
            return i;
        }
        if (!s->depth && !s->quote) {
            if (ch == '{' || ch == '[') {
                client_end_message(c);
                return i;
            }
            json_scan_byte(s, ch);
            if (ch == '\n') {
                client_end_message(c);
                return i + 1;
            }
            continue;
        }
        json_scan_byte(s, ch);
        if (!s->depth && !s->quote) {
            client_end_message(c);
            return i + 1;
        }
    }
    c->msg_bytes += len;
    return len;
}

/*
 * The tokener rejected the message at buf[used] (@err): report it once and
 * start skipping.  Returns the bytes of @buf consumed.
 */
static size_t client_parse_error(MonitorClient *c, const char *buf,
                                 size_t used, size_t len,
                                 enum json_tokener_error err)
    TSA_REQUIRES(bql)
{
    size_t at = c->msg_bytes + used;
    unsigned char ch;

    json_scan_bytes(&c->scan, buf, used);
    debug_report("%s: JSON parse error at byte %zu: %s", c->name, at,
                 json_tokener_error_desc(err));
    monitor_client_send_error(c, "JSON parse error, %s (at byte %zu of the "
                              "message)", json_tokener_error_desc(err), at);
    json_tokener_reset(c->tok);
    c->msg_bytes = at;
    c->discarding = true;
    if (used >= len) {
        return used;
    }
    ch = buf[used];
    if (json_is_reset_byte(ch)) {
        client_end_message(c);
        return used + 1;
    }
    if (ch == '{' && c->scan.line_start && at > 0) {
        client_end_message(c);
        return used;
    }
    /* The offending byte belongs to the bad message. */
    json_scan_byte(&c->scan, ch);
    c->msg_bytes++;
    return used + 1;
}

/*
 * Feed bytes of the current message to the tokener, no more than the
 * message limit allows.  Returns the bytes of @buf consumed.  May close @c.
 */
static size_t client_parse(MonitorClient *c, const char *buf, size_t len)
    TSA_REQUIRES(bql)
{
    size_t chunk = MIN(len, (size_t)QMP_MAX_MESSAGE_BYTES + 1 - c->msg_bytes);
    struct json_object *obj;
    enum json_tokener_error err;
    size_t used;

    obj = json_tokener_parse_ex(c->tok, buf, chunk);
    err = json_tokener_get_error(c->tok);
    if (err == json_tokener_continue) {
        json_scan_bytes(&c->scan, buf, chunk);
        c->msg_bytes += chunk;
        if (c->msg_bytes > QMP_MAX_MESSAGE_BYTES) {
            client_oversized(c);
        }
        return chunk;
    }
    used = json_tokener_get_parse_end(c->tok);
    if (err != json_tokener_success) {
        return client_parse_error(c, buf, used, chunk, err);
    }
    json_scan_bytes(&c->scan, buf, used);
    /*
     * The tokener eats the blanks after a complete text (the newline
     * every client sends): they are not part of the message, or a message
     * of exactly the limit would be refused for its newline.
     */
    c->msg_bytes += used;
    for (size_t i = used; i > 0 && json_is_space(buf[i - 1]); i--) {
        c->msg_bytes--;
    }
    if (c->msg_bytes > QMP_MAX_MESSAGE_BYTES) {
        json_object_put(obj);
        client_oversized(c);
        return used;
    }
    client_end_message(c);
    /* obj is NULL for the JSON text "null": qmp_dispatch() refuses it. */
    monitor_client_handle_request(c, obj);
    json_object_put(obj);
    return used;
}

/* Consume @len bytes of input.  May close @c; the caller holds a ref. */
void monitor_input_feed(MonitorClient *c, const char *buf, size_t len)
    TSA_REQUIRES(bql)
{
    size_t off = 0;

    while (off < len && !c->closed) {
        if (c->discarding) {
            off += client_discard(c, buf + off, len - off);
            if (c->msg_bytes > QMP_MAX_MESSAGE_BYTES) {
                client_oversized(c);
            }
        } else if (c->msg_bytes == 0 && json_is_space(buf[off])) {
            /* Blanks between messages are not part of any message. */
            json_scan_byte(&c->scan, buf[off]);
            off++;
        } else {
            off += client_parse(c, buf + off, len - off);
        }
    }
}

/*
 * How many bytes at the end of @buf are an incomplete UTF-8 sequence.
 * json-c's UTF-8 validation (0.16) does not carry a sequence over from one
 * json_tokener_parse_ex() call to the next, so the tokener only ever gets
 * whole sequences.
 */
size_t monitor_utf8_incomplete_tail(const char *buf, size_t len)
{
    for (size_t k = 1; k <= MIN(len, 3); k++) {
        unsigned char b = buf[len - k];
        size_t need;

        if ((b & 0xc0) == 0x80) {
            continue;                   /* a continuation byte */
        }
        if (b >= 0xf0 && b <= 0xf7) {
            need = 4;
        } else if (b >= 0xe0) {
            need = b <= 0xef ? 3 : 1;
        } else if (b >= 0xc0) {
            need = 2;
        } else {
            need = 1;
        }
        return need > k ? k : 0;
    }
    return 0;
}
