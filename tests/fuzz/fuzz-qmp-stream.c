/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for the QMP monitor's input stream: json-c's
 * incremental tokener, the resynchronisation scanner that recovers from
 * malformed input, the message size limit, and request dispatch.  The
 * scanner is private to qmp/monitor-json.c, so the harness drives a real
 * monitor in process: a UNIX socket listener on the main loop with only
 * the control commands registered (qmp_capabilities, query-version,
 * query-commands, quit, which fails without a quit handler), and one
 * client connection per input that writes the input in pieces whose sizes
 * come from the input's first byte, half-closes, and reads until the
 * server closes.  Invariants: every line the server sends is one JSON
 * object ending in CR LF; the first is the greeting; every other one is a
 * reply ("return" or "error") or an event; and the server always finishes
 * (a stuck exchange aborts after a bounded number of loop iterations).
 */
#include "util/osdep.h"

#include <sys/socket.h>
#include <sys/un.h>

#include "qmp/control.h"
#include "qmp/qmp.h"
#include "util/aio.h"
#include "util/main-loop.h"

/* Loop iterations without progress before the exchange counts as hung. */
#define FUZZ_MAX_IDLE_ITERATIONS 200000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fuzz_dir;
static char *fuzz_path;

static void fuzz_cleanup(void)
{
    monitor_cleanup();
    rmdir(fuzz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    main_loop_init();
    qmp_control_init();
    fuzz_dir = g_dir_make_tmp("fuzz-qmp-XXXXXX", NULL);
    assert(fuzz_dir);
    fuzz_path = g_strdup_printf("%s/qmp.sock", fuzz_dir);
    if (!monitor_add_unix(fuzz_path, 0, &error_abort)) {
        abort();
    }
    atexit(fuzz_cleanup);
    return 0;
}

static int fuzz_connect(void)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    assert(fd >= 0);
    g_strlcpy(addr.sun_path, fuzz_path, sizeof(addr.sun_path));
    /* The listener's backlog takes the connection at once. */
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        abort();
    }
    return fd;
}

static void check_line(const char *line, size_t len, bool first)
{
    struct json_tokener *tok = json_tokener_new_ex(256);
    struct json_object *obj = json_tokener_parse_ex(tok, line, len);
    int kinds = 0;

    if (!obj || json_tokener_get_parse_end(tok) != len ||
        !json_object_is_type(obj, json_type_object)) {
        abort();
    }
    if (first) {
        kinds = json_object_object_get_ex(obj, "QMP", NULL) ? 1 : 0;
    } else {
        kinds += json_object_object_get_ex(obj, "return", NULL);
        kinds += json_object_object_get_ex(obj, "error", NULL);
        kinds += json_object_object_get_ex(obj, "event", NULL);
    }
    if (kinds != 1) {
        abort();
    }
    json_object_put(obj);
    json_tokener_free(tok);
}

/* Every message ends in CR LF; the output ends with a complete message. */
static void check_output(const GString *out)
{
    size_t start = 0;
    bool first = true;

    while (start < out->len) {
        const char *nl = memchr(out->str + start, '\n', out->len - start);
        size_t end;

        if (!nl) {
            abort();            /* a truncated message */
        }
        end = nl - out->str;
        if (end == start || out->str[end - 1] != '\r') {
            abort();
        }
        check_line(out->str + start, end - 1 - start, first);
        first = false;
        start = end + 1;
    }
    if (first) {
        abort();                /* not even the greeting */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GString) out = g_string_new(NULL);
    size_t chunk, sent = 0;
    bool wr_closed = false;
    unsigned idle = 0;
    int fd;

    if (size < 1) {
        return 0;
    }
    /* Write sizes 1..256 split messages everywhere, as a real peer may. */
    chunk = (size_t)data[0] + 1;
    data++;
    size--;

    fd = fuzz_connect();
    for (;;) {
        bool progress = false;
        char buf[65536];
        ssize_t n;

        if (sent < size) {
            n = send(fd, data + sent, MIN(chunk, size - sent),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                sent = size;    /* the server closed on us (limit) */
            }
        }
        if (sent == size && !wr_closed) {
            shutdown(fd, SHUT_WR);
            wr_closed = true;
        }
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            break;
        }
        if (n > 0) {
            g_string_append_len(out, buf, n);
            progress = true;
        }
        progress |= aio_poll(main_context(), false);
        idle = progress ? 0 : idle + 1;
        if (idle > FUZZ_MAX_IDLE_ITERATIONS) {
            abort();            /* the monitor never finished */
        }
    }
    close(fd);
    check_output(out);
    return 0;
}
