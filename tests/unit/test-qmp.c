/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP over real sockets, in process: the wire protocol (greeting,
 * negotiation, ids, error classes and messages), the JSON stream (several
 * messages per write, one message over many writes, recovery from
 * malformed input, the message size limit), output flow control (a client
 * that stops reading is dropped, the others are served), events, socket
 * creation (mode, stale and live sockets), and the stdio monitor.
 *
 * The main thread runs the main loop (AIO_WAIT_WHILE on an atomic); each
 * test's client side runs in a helper thread with plain blocking sockets,
 * as a real client would.  Client sockets time out after a while, so that
 * a bug shows up as a failed assertion instead of a hung test.
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "qmp/control.h"
#include "qmp/qmp.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/main-loop.h"
#include "util/thread.h"

#define CLIENT_TIMEOUT_S 30

static char *tmpdir;
static unsigned path_counter;

static char *new_socket_path(void)
{
    return g_strdup_printf("%s/qmp-%u.sock", tmpdir, path_counter++);
}

/* --- Test commands ---------------------------------------------------------- */

/* Set while test-block waits; test-args counts how often it ran then. */
static int block_waiting;           /* atomic */
static int block_release;           /* atomic */
static int commands_inside_block;   /* main thread */

/* End test-block's wait.  Any thread. */
static void release_block(void)
{
    qatomic_set(&block_release, 1);
    aio_wait_kick();
}

/* Client side: wait until test-block (or test-block-bh's bottom half)
 * waits in its nested loop. */
static void wait_until_blocked(void)
{
    while (!qatomic_read(&block_waiting)) {
        sched_yield();
    }
}

static const OptDesc test_nested_schema[] = {
    { "direct", OPT_BOOL },
    { NULL }
};

static const OptDesc test_args_schema[] = {
    { "name", OPT_STRING, .required = true },
    { "count", OPT_INT },
    { "flag", OPT_BOOL },
    { "nested", OPT_OBJECT, .nested = test_nested_schema },
    { NULL }
};

/* Returns its (checked) arguments. */
static void qmp_test_args(struct json_object *args, struct json_object **ret,
                          Error **errp)
{
    if (qatomic_read(&block_waiting)) {
        commands_inside_block++;
    }
    *ret = json_object_get(args);
}

static const OptDesc test_emit_schema[] = {
    { "count", OPT_INT, .required = true },
    { "size", OPT_INT, .def = "0" },
    { NULL }
};

/* Emits @count TEST_EVENTs {"seq": i, "pad": @size bytes}. */
static void qmp_test_emit(struct json_object *args, struct json_object **ret,
                          Error **errp)
{
    int64_t count = opts_get_int(args, "count", 0);
    g_autofree char *pad = g_strnfill(opts_get_int(args, "size", 0), 'p');

    GLOBAL_STATE_CODE();
    for (int64_t i = 0; i < count; i++) {
        struct json_object *data = json_object_new_object();

        json_object_object_add(data, "seq", json_object_new_int64(i));
        json_object_object_add(data, "pad", json_object_new_string(pad));
        qmp_event_emit("TEST_EVENT", data);
    }
}

/* Run nested event-loop iterations until the client thread releases us. */
static void block_in_nested_loop(void)
{
    qatomic_set(&block_waiting, 1);
    AIO_WAIT_WHILE(main_context(), !qatomic_read(&block_release));
    /* Give every ready fd its chance to run a handler in here. */
    for (int i = 0; i < 100; i++) {
        aio_poll(main_context(), false);
    }
    qatomic_set(&block_waiting, 0);
}

static void qmp_test_block(struct json_object *args, struct json_object **ret,
                           Error **errp)
{
    block_in_nested_loop();
}

static void block_bh(void *opaque)
{
    block_in_nested_loop();
}

/*
 * Returns at once; a bottom half then waits in a nested loop, as a job's
 * completion does (job_exit() draining, bdrv_run_co()).
 */
static void qmp_test_block_bh(struct json_object *args,
                              struct json_object **ret, Error **errp)
{
    aio_bh_schedule_oneshot(main_context(), block_bh, NULL);
}

/* Releases test-block: may run while a command waits. */
static void qmp_test_release(struct json_object *args,
                             struct json_object **ret, Error **errp)
{
    if (!qatomic_read(&block_waiting)) {
        error_setg(errp, "nothing waits");
        return;
    }
    release_block();
}

static void qmp_test_hidden(struct json_object *args, struct json_object **ret,
                            Error **errp)
{
}

/* Returns {"strict": whether the arguments were checked as QMP JSON}. */
static void qmp_test_flags(struct json_object *args, struct json_object **ret,
                           Error **errp)
{
    struct json_object *obj = json_object_new_object();

    GLOBAL_STATE_CODE();
    json_object_object_add(obj, "strict", json_object_new_boolean(
                               qmp_current_opts_flags() & OPTS_STRICT_TYPES));
    *ret = obj;
}

static const QmpCommand test_commands[] = {
    { "test-args", test_args_schema, qmp_test_args, 0, "echo arguments" },
    { "test-emit", test_emit_schema, qmp_test_emit, 0, "emit events" },
    { "test-block", NULL, qmp_test_block, 0, "wait in a nested loop" },
    { "test-block-bh", NULL, qmp_test_block_bh, 0,
      "wait in a nested loop of a bottom half" },
    { "test-release", NULL, qmp_test_release, QMP_CMD_WHILE_WAITING,
      "release test-block" },
    { "x-test-hidden", NULL, qmp_test_hidden, QMP_CMD_HIDDEN, "hidden" },
    { "test-flags", NULL, qmp_test_flags, 0, "report the opts flags" },
    { NULL }
};

/* --- Client side (helper threads, blocking sockets) ------------------------ */

typedef struct TestConn {
    int fd;
    int out_fd;             /* where tc_send writes: fd, or a pipe */
    GString *in;            /* received bytes not yet returned */
    bool eof;
} TestConn;

static void tc_set_timeout(int fd)
{
    struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static TestConn *tc_connect(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    TestConn *t = g_new0(TestConn, 1);

    t->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(t->fd, >=, 0);
    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    g_assert_cmpint(connect(t->fd, (struct sockaddr *)&addr, sizeof(addr)),
                    ==, 0);
    tc_set_timeout(t->fd);
    t->out_fd = t->fd;
    t->in = g_string_new(NULL);
    return t;
}

static void tc_free(TestConn *t)
{
    if (t->out_fd != t->fd) {
        close(t->out_fd);
    }
    close(t->fd);
    g_string_free(t->in, true);
    g_free(t);
}

/* Send all of @buf; false if the peer is gone. */
static bool tc_try_send(TestConn *t, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = t->out_fd == t->fd ? send(t->fd, p, len, MSG_NOSIGNAL)
                                       : write(t->out_fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

static void tc_send(TestConn *t, const char *text)
{
    g_assert_true(tc_try_send(t, text, strlen(text)));
}

/* Read more input; false at EOF or on a reset connection. */
static bool tc_fill(TestConn *t)
{
    char buf[65536];
    ssize_t n;

    do {
        n = read(t->fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        g_error("client: no input for %d seconds", CLIENT_TIMEOUT_S);
    }
    if (n <= 0) {
        g_assert_true(n == 0 || errno == ECONNRESET);
        t->eof = true;
        return false;
    }
    g_string_append_len(t->in, buf, n);
    return true;
}

/* The next message (one per line, "\r\n"-terminated), or NULL at EOF. */
static struct json_object *tc_recv(TestConn *t)
{
    char *nl;
    struct json_object *msg;

    while (!(nl = memchr(t->in->str, '\n', t->in->len))) {
        if (!tc_fill(t)) {
            g_assert_cmpuint(t->in->len, ==, 0);
            return NULL;
        }
    }
    g_assert_true(nl > t->in->str && nl[-1] == '\r');
    nl[-1] = '\0';
    msg = json_tokener_parse(t->in->str);
    g_assert_nonnull(msg);
    g_string_erase(t->in, 0, nl + 1 - t->in->str);
    return msg;
}

/* Read and throw away until the server closes; returns the bytes read. */
static size_t tc_drain_until_closed(TestConn *t)
{
    size_t total = t->in->len;

    g_string_truncate(t->in, 0);
    while (tc_fill(t)) {
        total += t->in->len;
        g_string_truncate(t->in, 0);
    }
    return total;
}

static struct json_object *tc_cmd(TestConn *t, const char *request)
{
    struct json_object *rsp;

    tc_send(t, request);
    rsp = tc_recv(t);
    g_assert_nonnull(rsp);
    return rsp;
}

static struct json_object *jget(struct json_object *obj, const char *key)
{
    struct json_object *val = NULL;

    g_assert_nonnull(obj);
    json_object_object_get_ex(obj, key, &val);
    return val;
}

static bool jhas(struct json_object *obj, const char *key)
{
    return json_object_object_get_ex(obj, key, NULL);
}

/* Assert @rsp is an error of @cls whose desc is @desc (or starts with it). */
static void check_error(struct json_object *rsp, const char *cls,
                        const char *desc, bool prefix)
{
    struct json_object *error = jget(rsp, "error");
    const char *got;

    if (!error) {
        g_error("expected an error, got %s", json_object_to_json_string(rsp));
    }
    g_assert_cmpstr(json_object_get_string(jget(error, "class")), ==, cls);
    got = json_object_get_string(jget(error, "desc"));
    if (prefix) {
        if (!g_str_has_prefix(got, desc)) {
            g_error("desc '%s' does not start with '%s'", got, desc);
        }
    } else {
        g_assert_cmpstr(got, ==, desc);
    }
}

/* Run @request, assert an error, free the reply. */
static void expect_error(TestConn *t, const char *request, const char *cls,
                         const char *desc)
{
    struct json_object *rsp = tc_cmd(t, request);

    check_error(rsp, cls, desc, false);
    json_object_put(rsp);
}

/* Assert a successful reply and return its "return" (borrowed). */
static struct json_object *check_return(struct json_object *rsp)
{
    if (!jhas(rsp, "return")) {
        g_error("expected a return, got %s", json_object_to_json_string(rsp));
    }
    return jget(rsp, "return");
}

static void expect_return(TestConn *t, const char *request)
{
    struct json_object *rsp = tc_cmd(t, request);

    check_return(rsp);
    json_object_put(rsp);
}

static void check_id(struct json_object *rsp, const char *id_json)
{
    struct json_object *want = json_tokener_parse(id_json);

    g_assert_true(json_object_equal(jget(rsp, "id"), want));
    json_object_put(want);
}

/* Receive the next message: the reply with id @id_json. */
static void recv_expect_id(TestConn *t, const char *id_json)
{
    struct json_object *rsp = tc_recv(t);

    check_id(rsp, id_json);
    json_object_put(rsp);
}

static void tc_read_greeting(TestConn *t)
{
    struct json_object *greeting = tc_recv(t);

    g_assert_nonnull(jget(greeting, "QMP"));
    json_object_put(greeting);
}

static void tc_negotiate(TestConn *t)
{
    tc_read_greeting(t);
    expect_return(t, "{\"execute\": \"qmp_capabilities\"}");
}

static TestConn *tc_open(const char *path)
{
    TestConn *t = tc_connect(path);

    tc_negotiate(t);
    return t;
}

/* --- Running a client script while the main loop runs ---------------------- */

typedef struct ClientRun {
    void (*fn)(void *opaque);
    void *opaque;
    int done;               /* atomic: written by the client thread */
} ClientRun;

static void *client_thread(void *arg)
{
    ClientRun *r = arg;

    r->fn(r->opaque);
    qatomic_set(&r->done, 1);
    /* Wakes the AIO_WAIT_WHILE() below; its smp_mb() orders the store. */
    aio_wait_kick();
    return NULL;
}

static void run_client(void (*fn)(void *opaque), void *opaque)
{
    ClientRun r = { .fn = fn, .opaque = opaque };
    pthread_t t;

    bd_thread_create(&t, "qmp-client", client_thread, &r, &error_abort);
    AIO_WAIT_WHILE(main_context(), !qatomic_read(&r.done));
    bd_thread_join(t);
}

/* A monitor on a fresh socket; returns its path. */
static char *start_monitor(void)
{
    char *path = new_socket_path();

    GLOBAL_STATE_CODE();
    g_assert_true(monitor_add_unix(path, 0, &error_abort));
    return path;
}

/* Close every monitor and client; the path must be gone. */
static void stop_monitors(const char *path)
{
    GLOBAL_STATE_CODE();
    monitor_cleanup();
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

/* Run @fn with the path of a fresh monitor, then close everything. */
static void run_with_monitor(void (*fn)(void *opaque))
{
    g_autofree char *path = start_monitor();

    run_client(fn, path);
    stop_monitors(path);
}

/* run_with_monitor() for the clients of test-block, its state reset. */
static void run_blocking_client(void (*fn)(void *opaque))
{
    commands_inside_block = 0;
    qatomic_set(&block_release, 0);
    run_with_monitor(fn);
}

/* --- Protocol ------------------------------------------------------------- */

static void greeting_client(void *opaque)
{
    TestConn *t = tc_connect(opaque);
    struct json_object *greeting = tc_recv(t);
    struct json_object *qmp = jget(greeting, "QMP");
    struct json_object *version = jget(qmp, "version");
    struct json_object *qemu = jget(version, "qemu");
    struct json_object *caps = jget(qmp, "capabilities");

    g_assert_cmpint(json_object_object_length(greeting), ==, 1);
    g_assert_cmpint(json_object_get_int(jget(qemu, "major")), ==,
                    QMP_COMPAT_QEMU_MAJOR);
    g_assert_cmpint(json_object_get_int(jget(qemu, "minor")), ==,
                    QMP_COMPAT_QEMU_MINOR);
    g_assert_cmpint(json_object_get_int(jget(qemu, "micro")), ==,
                    QMP_COMPAT_QEMU_MICRO);
    g_assert_cmpstr(json_object_get_string(jget(version, "package")), ==,
                    "blockd " BLOCKD_VERSION);
    g_assert_true(json_object_is_type(caps, json_type_array));
    g_assert_cmpint(json_object_array_length(caps), ==, 0);
    json_object_put(greeting);
    tc_free(t);
}

static void test_greeting(void)
{
    run_with_monitor(greeting_client);
}

static void negotiation_client(void *opaque)
{
    TestConn *t = tc_connect(opaque);
    const char *expecting =
        "Expecting capabilities negotiation with 'qmp_capabilities'";

    tc_read_greeting(t);
    expect_error(t, "{\"execute\": \"query-version\"}", "CommandNotFound",
                 expecting);
    expect_error(t, "{\"execute\": \"no-such-command\"}", "CommandNotFound",
                 expecting);
    /* Shape errors stay GenericError before negotiation too. */
    expect_error(t, "{\"exec-oob\": \"qmp_capabilities\"}", "GenericError",
                 "QMP input member 'exec-oob' is unexpected");
    expect_error(t, "{\"execute\": \"qmp_capabilities\", "
                 "\"arguments\": {\"enable\": [\"oob\"]}}", "GenericError",
                 "Capability 'oob' not available");
    expect_error(t, "{\"execute\": \"qmp_capabilities\", "
                 "\"arguments\": {\"enable\": \"oob\"}}", "GenericError",
                 "'enable': expected list");
    expect_error(t, "{\"execute\": \"qmp_capabilities\", "
                 "\"arguments\": {\"bogus\": 1}}", "GenericError",
                 "'bogus': unexpected parameter");
    expect_return(t, "{\"execute\": \"qmp_capabilities\", "
                  "\"arguments\": {\"enable\": []}}");
    expect_error(t, "{\"execute\": \"qmp_capabilities\"}", "CommandNotFound",
                 "Capabilities negotiation is already complete, command "
                 "ignored");
    expect_return(t, "{\"execute\": \"query-version\"}");
    tc_free(t);
}

static void test_negotiation_required(void)
{
    run_with_monitor(negotiation_client);
}

static void id_client(void *opaque)
{
    static const char *const ids[] = {
        "\"abc\"", "42", "-1.5", "{\"a\": [1, \"x\", null], \"b\": {}}",
        "[1, 2]", "null", "true",
    };
    TestConn *t = tc_open(opaque);

    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_autofree char *ok = g_strdup_printf(
            "{\"execute\": \"query-version\", \"id\": %s}", ids[i]);
        g_autofree char *bad = g_strdup_printf(
            "{\"id\": %s, \"execute\": \"no-such-command\"}", ids[i]);
        struct json_object *rsp;

        rsp = tc_cmd(t, ok);
        check_return(rsp);
        check_id(rsp, ids[i]);
        json_object_put(rsp);
        rsp = tc_cmd(t, bad);
        check_error(rsp, "CommandNotFound", "", true);
        check_id(rsp, ids[i]);
        json_object_put(rsp);
    }
    /* No id, no "id" member. */
    {
        struct json_object *rsp = tc_cmd(t, "{\"execute\": \"query-version\"}");

        g_assert_false(jhas(rsp, "id"));
        json_object_put(rsp);
    }
    tc_free(t);
}

static void test_id_echoed(void)
{
    run_with_monitor(id_client);
}

static void request_shape_client(void *opaque)
{
    TestConn *t = tc_open(opaque);
    struct json_object *rsp;

    rsp = tc_cmd(t, "[1, 2]");
    check_error(rsp, "GenericError", "QMP input must be a JSON object", false);
    g_assert_false(jhas(rsp, "id"));
    json_object_put(rsp);

    rsp = tc_cmd(t, "{\"id\": 7}");
    check_error(rsp, "GenericError", "QMP input lacks member 'execute'",
                false);
    check_id(rsp, "7");
    json_object_put(rsp);

    expect_error(t, "{\"execute\": 1}", "GenericError",
                 "QMP input member 'execute' must be a string");
    expect_error(t, "{\"execute\": \"query-version\", \"arguments\": []}",
                 "GenericError",
                 "QMP input member 'arguments' must be an object");
    expect_error(t, "{\"execute\": \"query-version\", \"foo\": 1}",
                 "GenericError", "QMP input member 'foo' is unexpected");
    expect_error(t, "{\"exec-oob\": \"query-version\"}", "GenericError",
                 "QMP input member 'exec-oob' is unexpected");
    tc_free(t);
}

static void test_request_shape(void)
{
    run_with_monitor(request_shape_client);
}

static void unknown_command_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    expect_error(t, "{\"execute\": \"no-such-command\"}", "CommandNotFound",
                 "The command no-such-command has not been found");
    tc_free(t);
}

static void test_unknown_command_class(void)
{
    run_with_monitor(unknown_command_client);
}

static void wrong_type_client(void *opaque)
{
    TestConn *t = tc_open(opaque);
    struct json_object *rsp;

    expect_error(t, "{\"execute\": \"test-args\", \"arguments\": "
                 "{\"name\": 1}}", "GenericError", "'name': expected string");
    /* QMP is strictly typed: no keyval conversion of "5" or "on". */
    expect_error(t, "{\"execute\": \"test-args\", \"arguments\": "
                 "{\"name\": \"x\", \"count\": \"5\"}}", "GenericError",
                 "'count': expected integer");
    expect_error(t, "{\"execute\": \"test-args\", \"arguments\": "
                 "{\"name\": \"x\", \"nested\": {\"direct\": \"on\"}}}",
                 "GenericError", "'nested.direct': expected boolean");
    rsp = tc_cmd(t, "{\"execute\": \"test-args\", \"arguments\": "
                 "{\"name\": \"x\", \"nested\": {\"direct\": true}}}");
    g_assert_true(json_object_get_boolean(
        jget(jget(check_return(rsp), "nested"), "direct")));
    json_object_put(rsp);
    tc_free(t);
}

static void test_args_wrong_type_names_key(void)
{
    run_with_monitor(wrong_type_client);
}

static void unknown_arg_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    expect_error(t, "{\"execute\": \"test-args\", \"arguments\": "
                 "{\"name\": \"x\", \"bogus\": 1}}", "GenericError",
                 "'bogus': unexpected parameter");
    expect_error(t, "{\"execute\": \"test-args\", \"arguments\": "
                 "{\"name\": \"x\", \"nested\": {\"zzz\": 1}}}",
                 "GenericError", "'nested.zzz': unexpected parameter");
    /* A command without a schema takes no arguments at all. */
    expect_error(t, "{\"execute\": \"query-version\", \"arguments\": "
                 "{\"x\": 1}}", "GenericError", "'x': unexpected parameter");
    expect_return(t, "{\"execute\": \"query-version\", \"arguments\": {}}");
    tc_free(t);
}

static void test_unknown_arg(void)
{
    run_with_monitor(unknown_arg_client);
}

static void missing_arg_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    expect_error(t, "{\"execute\": \"test-args\", \"arguments\": {}}",
                 "GenericError", "'name': missing required parameter");
    expect_error(t, "{\"execute\": \"test-args\"}",
                 "GenericError", "'name': missing required parameter");
    tc_free(t);
}

static void test_missing_arg(void)
{
    run_with_monitor(missing_arg_client);
}

/*
 * Send @bad followed by a valid command with id @id in one write: expect
 * exactly one parse error (without id), then the command's reply.
 */
static void check_recovers(TestConn *t, const char *bad, int id)
{
    g_autofree char *text = g_strdup_printf(
        "%s{\"execute\": \"query-version\", \"id\": %d}", bad, id);
    struct json_object *rsp;

    tc_send(t, text);
    rsp = tc_recv(t);
    check_error(rsp, "GenericError", "JSON parse error, ", true);
    g_assert_false(jhas(rsp, "id"));
    json_object_put(rsp);
    rsp = tc_recv(t);
    check_return(rsp);
    g_assert_cmpint(json_object_get_int(jget(rsp, "id")), ==, id);
    json_object_put(rsp);
}

static void malformed_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    /* A bad value: skipped to the end of its object. */
    check_recovers(t, "{\"execute\": foo}\n", 1);
    /* Stray closing brackets between messages. */
    check_recovers(t, "}}] ", 2);
    /* Garbage between messages, skipped up to the next message. */
    check_recovers(t, "hello world", 3);
    /* An error deep inside: the rest of the message, brackets and all. */
    check_recovers(t, "{\"execute\": \"x\", \"arguments\": {\"a\": [1, }}, "
                   "\"b\": \"}}\", \"id\": 99}", 4);
    /* An abandoned message: a '{' that begins a line starts over. */
    check_recovers(t, "{\"execute\": \"query-version\"\n", 5);
    /* A control character resets the parser at once. */
    check_recovers(t, "{\"execute\": \"query-version\", \x1b", 6);
    /* 0xff too, even inside an unterminated string. */
    check_recovers(t, "{\"execute\": \"query-ver\xff", 7);
    /* Invalid UTF-8 in a string. */
    check_recovers(t, "{\"execute\": \"qu\xc3\x28" "ery\"}", 8);
    /* Too deep. */
    {
        GString *deep = g_string_new("{\"execute\": \"test-args\", "
                                     "\"arguments\": {\"name\": ");
        for (int i = 0; i < 200; i++) {
            g_string_append_c(deep, '[');
        }
        for (int i = 0; i < 200; i++) {
            g_string_append_c(deep, ']');
        }
        g_string_append(deep, "}}");
        check_recovers(t, deep->str, 9);
        g_string_free(deep, true);
    }
    expect_return(t, "{\"execute\": \"query-version\"}");
    tc_free(t);
}

static void test_malformed_json_then_valid_command(void)
{
    run_with_monitor(malformed_client);
}

static void several_messages_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    tc_send(t, "  {\"execute\": \"query-version\", \"id\": 1}"
               "{\"execute\": \"no-such-command\", \"id\": 2}\n\n\t"
               "{'execute': 'query-version', 'id': 3} \r\n"
               "{\"execute\": \"test-args\", \"arguments\": {\"name\": \"n\"},"
               " \"id\": 4}");
    for (int id = 1; id <= 4; id++) {
        struct json_object *rsp = tc_recv(t);

        g_assert_cmpint(json_object_get_int(jget(rsp, "id")), ==, id);
        g_assert_true(jhas(rsp, id == 2 ? "error" : "return"));
        json_object_put(rsp);
    }
    tc_free(t);
}

static void test_several_messages_in_one_write(void)
{
    run_with_monitor(several_messages_client);
}

static void split_client(void *opaque)
{
    /* Multi-byte UTF-8 and escapes, to split inside them too. */
    const char *request =
        "{\"execute\": \"test-args\", \"arguments\": {\"name\": "
        "\"na\xc3\xafve \xe2\x98\x83 \\u00e9\\\"q\\\"\", \"count\": 12345}, "
        "\"id\": \"split\"}\r\n"
        "{\"execute\": \"query-version\", \"id\": 2}";
    TestConn *t = tc_open(opaque);
    struct json_object *rsp, *ret;

    for (const char *p = request; *p; p++) {
        g_assert_true(tc_try_send(t, p, 1));
        sched_yield();
    }
    rsp = tc_recv(t);
    ret = check_return(rsp);
    check_id(rsp, "\"split\"");
    g_assert_cmpstr(json_object_get_string(jget(ret, "name")), ==,
                    "na\xc3\xafve \xe2\x98\x83 \xc3\xa9\"q\"");
    g_assert_cmpint(json_object_get_int(jget(ret, "count")), ==, 12345);
    json_object_put(rsp);
    recv_expect_id(t, "2");
    tc_free(t);
}

static void test_message_split_across_writes(void)
{
    run_with_monitor(split_client);
}

static void oversized_client(void *opaque)
{
    TestConn *big = tc_open(opaque);
    TestConn *other = tc_open(opaque);
    const char *head = "{\"execute\": \"test-args\", \"arguments\": "
                       "{\"name\": \"";
    size_t chunk_len = 64 * 1024;
    g_autofree char *chunk = g_strnfill(chunk_len, 'a');
    struct json_object *rsp;
    size_t sent = 0;

    tc_send(big, head);
    /* Until the server gives up on us (or well past the limit). */
    while (sent < 2 * QMP_MAX_MESSAGE_BYTES &&
           tc_try_send(big, chunk, chunk_len)) {
        sent += chunk_len;
    }
    /* Maybe an error telling why, then the end of the connection. */
    rsp = tc_recv(big);
    if (rsp) {
        check_error(rsp, "GenericError", "Message too large", true);
        json_object_put(rsp);
        rsp = tc_recv(big);
    }
    g_assert_null(rsp);
    g_assert_true(big->eof);

    /* The other connection never noticed. */
    expect_return(other, "{\"execute\": \"query-version\"}");
    tc_free(big);
    tc_free(other);
}

static void test_oversized_message_closes_only_that_connection(void)
{
    run_with_monitor(oversized_client);
}

/*
 * A message of exactly the limit is fine, alone or followed by blanks (the
 * newline clients send is not part of the message: the tokener eats it
 * with the message, and it used to be counted).
 */
static void large_message_client(void *opaque)
{
    TestConn *t = tc_open(opaque);
    const char *head = "{\"execute\": \"test-args\", \"arguments\": "
                       "{\"name\": \"";
    const char *tail = "\"}, \"id\": 1}";
    size_t fill = QMP_MAX_MESSAGE_BYTES - strlen(head) - strlen(tail);
    g_autofree char *name = g_strnfill(fill, 'b');
    g_autofree char *msg = g_strconcat(head, name, tail, NULL);
    const char *const after[] = { "\n", "", "\r\n", " \t\n" };

    g_assert_cmpuint(strlen(msg), ==, QMP_MAX_MESSAGE_BYTES);
    for (size_t i = 0; i < G_N_ELEMENTS(after); i++) {
        g_autofree char *text = g_strconcat(msg, after[i], NULL);
        struct json_object *rsp = tc_cmd(t, text);

        g_assert_cmpuint(strlen(json_object_get_string(
                             jget(check_return(rsp), "name"))), ==, fill);
        json_object_put(rsp);
    }
    tc_free(t);
}

static void test_message_at_limit_accepted(void)
{
    run_with_monitor(large_message_client);
}

static void stalled_client(void *opaque)
{
    TestConn *stalled = tc_open(opaque);
    TestConn *good = tc_open(opaque);
    const int rounds = 48, per_round = 64;
    size_t stalled_bytes;

    /* 48 * 64 * 4 KiB = 12 MiB of events: far beyond the output limit. */
    for (int r = 0; r < rounds; r++) {
        struct json_object *rsp;

        tc_send(good, "{\"execute\": \"test-emit\", \"arguments\": "
                      "{\"count\": 64, \"size\": 4096}, \"id\": \"emit\"}");
        for (int i = 0; i < per_round; i++) {
            rsp = tc_recv(good);
            g_assert_cmpstr(json_object_get_string(jget(rsp, "event")), ==,
                            "TEST_EVENT");
            g_assert_cmpint(json_object_get_int(
                                jget(jget(rsp, "data"), "seq")), ==, i);
            json_object_put(rsp);
        }
        rsp = tc_recv(good);
        check_return(rsp);
        check_id(rsp, "\"emit\"");
        json_object_put(rsp);
    }
    /* The stalled client was dropped: what it can read ends early. */
    stalled_bytes = tc_drain_until_closed(stalled);
    g_assert_cmpuint(stalled_bytes, <,
                     (size_t)rounds * per_round * 4096);
    expect_return(good, "{\"execute\": \"query-version\"}");
    tc_free(stalled);
    tc_free(good);
}

static void test_stalled_client_dropped_others_served(void)
{
    run_with_monitor(stalled_client);
}

typedef struct TwoPaths {
    const char *a, *b;
} TwoPaths;

static void check_test_events(TestConn *t, int n)
{
    for (int i = 0; i < n; i++) {
        struct json_object *ev = tc_recv(t);

        g_assert_cmpstr(json_object_get_string(jget(ev, "event")), ==,
                        "TEST_EVENT");
        g_assert_cmpint(json_object_get_int(jget(jget(ev, "data"), "seq")),
                        ==, i);
        json_object_put(ev);
    }
}

static void events_client(void *opaque)
{
    TwoPaths *p = opaque;
    TestConn *a = tc_open(p->a);
    TestConn *b = tc_open(p->b);
    TestConn *a2 = tc_open(p->a);
    TestConn *unnegotiated = tc_connect(p->a);
    struct json_object *rsp;

    tc_read_greeting(unnegotiated);
    tc_send(a, "{\"execute\": \"test-emit\", \"arguments\": {\"count\": 3}}");
    check_test_events(a, 3);
    rsp = tc_recv(a);
    check_return(rsp);
    json_object_put(rsp);
    check_test_events(b, 3);
    check_test_events(a2, 3);
    /* The reply to qmp_capabilities is the first thing it ever gets. */
    rsp = tc_cmd(unnegotiated, "{\"execute\": \"qmp_capabilities\"}");
    check_return(rsp);
    json_object_put(rsp);
    /* And nothing was left over for the others either. */
    expect_return(b, "{\"execute\": \"query-version\"}");
    expect_return(a2, "{\"execute\": \"query-version\"}");
    tc_free(a);
    tc_free(b);
    tc_free(a2);
    tc_free(unnegotiated);
}

static void test_events_to_every_negotiated_client(void)
{
    g_autofree char *a = start_monitor();
    g_autofree char *b = start_monitor();
    TwoPaths p = { a, b };

    run_client(events_client, &p);
    stop_monitors(a);
    g_assert_false(g_file_test(b, G_FILE_TEST_EXISTS));
}

typedef struct SeenEvents {
    GPtrArray *msgs;        /* of struct json_object *, main thread */
} SeenEvents;

static void record_event(const char *event, struct json_object *msg,
                         void *opaque)
{
    SeenEvents *seen = opaque;

    g_assert_cmpstr(json_object_get_string(jget(msg, "event")), ==, event);
    if (seen->msgs) {
        g_ptr_array_add(seen->msgs, json_object_get(msg));
    }
}

static SeenEvents seen_events;

static void json_put_notify(gpointer obj)
{
    json_object_put(obj);
}

static void check_timestamp(struct json_object *msg)
{
    struct json_object *ts = jget(msg, "timestamp");
    int64_t now = g_get_real_time() / G_USEC_PER_SEC;
    int64_t secs, usecs;

    g_assert_nonnull(ts);
    g_assert_cmpint(json_object_object_length(ts), ==, 2);
    g_assert_true(json_object_is_type(jget(ts, "seconds"), json_type_int));
    g_assert_true(json_object_is_type(jget(ts, "microseconds"),
                                      json_type_int));
    secs = json_object_get_int64(jget(ts, "seconds"));
    usecs = json_object_get_int64(jget(ts, "microseconds"));
    g_assert_cmpint(secs, <=, now);
    g_assert_cmpint(secs, >=, now - 60);
    g_assert_cmpint(usecs, >=, 0);
    g_assert_cmpint(usecs, <, 1000000);
}

static void timestamp_client(void *opaque)
{
    TestConn *t = tc_open(opaque);
    struct json_object *ev, *rsp;

    tc_send(t, "{\"execute\": \"test-emit\", \"arguments\": {\"count\": 1}}");
    ev = tc_recv(t);
    g_assert_cmpint(json_object_object_length(ev), ==, 3);
    g_assert_cmpstr(json_object_get_string(jget(ev, "event")), ==,
                    "TEST_EVENT");
    g_assert_true(json_object_is_type(jget(ev, "data"), json_type_object));
    check_timestamp(ev);
    json_object_put(ev);
    rsp = tc_recv(t);
    check_return(rsp);
    json_object_put(rsp);
    tc_free(t);
}

static void test_event_timestamp_shape(void)
{
    struct json_object *msg;

    GLOBAL_STATE_CODE();
    /* Straight from qmp_event_emit(), with and without data. */
    seen_events.msgs = g_ptr_array_new_with_free_func(json_put_notify);
    qmp_event_emit("TEST_WITH_DATA", json_tokener_parse("{\"x\": 1}"));
    qmp_event_emit("TEST_NO_DATA", NULL);
    g_assert_cmpuint(seen_events.msgs->len, ==, 2);

    msg = g_ptr_array_index(seen_events.msgs, 0);
    g_assert_cmpint(json_object_object_length(msg), ==, 3);
    g_assert_cmpint(json_object_get_int(jget(jget(msg, "data"), "x")), ==, 1);
    check_timestamp(msg);
    msg = g_ptr_array_index(seen_events.msgs, 1);
    g_assert_cmpstr(json_object_get_string(jget(msg, "event")), ==,
                    "TEST_NO_DATA");
    g_assert_cmpint(json_object_object_length(msg), ==, 2);
    g_assert_false(jhas(msg, "data"));
    check_timestamp(msg);
    g_ptr_array_free(seen_events.msgs, true);
    seen_events.msgs = NULL;

    /* And on the wire. */
    run_with_monitor(timestamp_client);
}

/* --- Sockets -------------------------------------------------------------- */

static unsigned socket_mode(const char *path)
{
    struct stat st;

    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    return st.st_mode & 07777;
}

static void greeting_only_client(void *opaque)
{
    TestConn *t = tc_connect(opaque);

    tc_read_greeting(t);
    tc_free(t);
}

static void test_socket_mode_0600(void)
{
    g_autofree char *path = start_monitor();
    g_autofree char *path2 = new_socket_path();
    Error *err = NULL;
    mode_t old_umask;

    GLOBAL_STATE_CODE();
    g_assert_cmphex(socket_mode(path), ==, 0600);
    /* An explicit mode is exact, whatever the umask takes away. */
    old_umask = umask(027);
    g_assert_true(monitor_add_unix(path2, 0660, &error_abort));
    umask(old_umask);
    g_assert_cmphex(socket_mode(path2), ==, 0660);
    run_client(greeting_only_client, path2);

    g_assert_false(monitor_add_unix("/nonexistent/x.sock", 04600, &err));
    error_free_or_abort(&err);
    stop_monitors(path);
    g_assert_false(g_file_test(path2, G_FILE_TEST_EXISTS));
}

static void test_stale_socket_replaced(void)
{
    g_autofree char *path = new_socket_path();
    g_autofree char *file = new_socket_path();
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    /* A socket file nobody listens on any more. */
    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    close(fd);
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_true(monitor_add_unix(path, 0, &error_abort));
    run_client(greeting_only_client, path);

    /* A file that is not a socket is never removed. */
    g_assert_true(g_file_set_contents(file, "precious", -1, NULL));
    g_assert_false(monitor_add_unix(file, 0, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "not a socket"));
    error_free(err);
    g_assert_true(g_file_test(file, G_FILE_TEST_IS_REGULAR));
    unlink(file);
    stop_monitors(path);
}

static void test_socket_in_use_refused(void)
{
    g_autofree char *path = start_monitor();
    g_autofree char *other = new_socket_path();
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    /* Our own live monitor. */
    g_assert_false(monitor_add_unix(path, 0, &err));
    g_assert_nonnull(strstr(error_get_pretty(err),
                            "in use by a running server"));
    error_free(err);
    err = NULL;
    run_client(greeting_only_client, path);

    /* Someone else's live server. */
    g_strlcpy(addr.sun_path, other, sizeof(addr.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    g_assert_false(monitor_add_unix(other, 0, &err));
    g_assert_nonnull(strstr(error_get_pretty(err),
                            "in use by a running server"));
    error_free(err);
    close(fd);
    unlink(other);
    stop_monitors(path);
}

static void still_served_client(void *opaque)
{
    TestConn *t = opaque;

    expect_return(t, "{\"execute\": \"query-version\"}");
}

typedef struct Opener {
    const char *path;
    TestConn *conn;
} Opener;

static void open_client(void *opaque)
{
    Opener *o = opaque;

    o->conn = tc_open(o->path);
}

/* Clients stay when the listener goes; the socket file goes with it. */
static void test_stop_listening_keeps_clients(void)
{
    g_autofree char *path = start_monitor();
    Opener o = { .path = path };

    GLOBAL_STATE_CODE();
    run_client(open_client, &o);
    monitor_stop_listening();
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    run_client(still_served_client, o.conn);
    tc_free(o.conn);
    monitor_cleanup();
}

static void half_close_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    tc_send(t, "{\"execute\": \"query-version\", \"id\": 1}"
               "{\"execute\": \"query-version\", \"id\": 2}");
    shutdown(t->fd, SHUT_WR);
    for (int id = 1; id <= 2; id++) {
        recv_expect_id(t, id == 1 ? "1" : "2");
    }
    g_assert_null(tc_recv(t));
    tc_free(t);
}

static void test_half_close_gets_replies(void)
{
    run_with_monitor(half_close_client);
}

/* --- One command at a time ------------------------------------------------- */

static void one_at_a_time_client(void *opaque)
{
    TestConn *a = tc_open(opaque);
    TestConn *b = tc_open(opaque);

    tc_send(a, "{\"execute\": \"test-block\", \"id\": \"a\"}");
    wait_until_blocked();
    /* In b's socket before a's command is released: it must wait. */
    tc_send(b, "{\"execute\": \"test-args\", \"arguments\": "
               "{\"name\": \"b\"}, \"id\": \"b\"}");
    release_block();
    recv_expect_id(a, "\"a\"");
    recv_expect_id(b, "\"b\"");
    tc_free(a);
    tc_free(b);
}

static void test_one_command_at_a_time(void)
{
    run_blocking_client(one_at_a_time_client);
    g_assert_cmpint(commands_inside_block, ==, 0);
}

static void bh_nested_loop_client(void *opaque)
{
    TestConn *a = tc_open(opaque);
    TestConn *b = tc_open(opaque);
    struct json_object *rsp;

    rsp = tc_cmd(a, "{\"execute\": \"test-block-bh\", \"id\": \"a\"}");
    check_id(rsp, "\"a\"");
    json_object_put(rsp);
    wait_until_blocked();
    /* No command is running, but the loop is nested: b must wait. */
    tc_send(b, "{\"execute\": \"test-args\", \"arguments\": "
               "{\"name\": \"b\"}, \"id\": \"b\"}");
    release_block();
    recv_expect_id(b, "\"b\"");
    tc_free(a);
    tc_free(b);
}

/*
 * A bottom half that waits in a nested loop (a job's completion draining
 * its nodes) must not find a command running inside it: a job-cancel
 * there would free the job under the completion's feet.
 */
static void test_no_command_in_nested_loop_of_bh(void)
{
    run_blocking_client(bh_nested_loop_client);
    g_assert_cmpint(commands_inside_block, ==, 0);
}

/* --- Answered while a command waits --------------------------------------- */

/*
 * a's command waits in a nested loop until b's test-release, a command
 * flagged QMP_CMD_WHILE_WAITING, releases it: b is answered while a
 * waits, or nobody is ever answered.  c's queue (an ordinary command,
 * then a query) waits behind a's command and keeps its order; a's own
 * query, sent with its command, comes after the command's reply.
 */
static void while_waiting_client(void *opaque)
{
    TestConn *a = tc_open(opaque);
    TestConn *b = tc_open(opaque);
    TestConn *c = tc_open(opaque);
    struct json_object *rsp;

    tc_send(a, "{\"execute\": \"test-block\", \"id\": \"a\"}"
               "{\"execute\": \"query-version\", \"id\": \"a2\"}");
    wait_until_blocked();
    tc_send(c, "{\"execute\": \"test-args\", \"arguments\": "
               "{\"name\": \"c\"}, \"id\": \"c1\"}"
               "{\"execute\": \"query-version\", \"id\": \"c2\"}");
    /* A query first, answered in the wait, then the release. */
    rsp = tc_cmd(b, "{\"execute\": \"query-version\", \"id\": \"b1\"}");
    check_id(rsp, "\"b1\"");
    g_assert_true(qatomic_read(&block_waiting));
    json_object_put(rsp);
    rsp = tc_cmd(b, "{\"execute\": \"test-release\", \"id\": \"b2\"}");
    check_id(rsp, "\"b2\"");
    check_return(rsp);
    json_object_put(rsp);

    recv_expect_id(a, "\"a\"");
    recv_expect_id(a, "\"a2\"");
    recv_expect_id(c, "\"c1\"");
    recv_expect_id(c, "\"c2\"");
    tc_free(a);
    tc_free(b);
    tc_free(c);
}

static void test_answered_while_command_waits(void)
{
    run_blocking_client(while_waiting_client);
    g_assert_cmpint(commands_inside_block, ==, 0);
}

/*
 * Inside a bottom half's wait (a job's completion draining its nodes)
 * nothing runs, not even a command flagged QMP_CMD_WHILE_WAITING: a
 * query there would see the completion half done.  b's test-release,
 * sent while the bottom half waits, runs only after the client thread
 * released it, and finds nothing waiting.
 */
static void while_waiting_bh_client(void *opaque)
{
    TestConn *a = tc_open(opaque);
    TestConn *b = tc_open(opaque);
    struct json_object *rsp;

    rsp = tc_cmd(a, "{\"execute\": \"test-block-bh\", \"id\": \"a\"}");
    json_object_put(rsp);
    wait_until_blocked();
    tc_send(b, "{\"execute\": \"test-release\", \"id\": \"b\"}");
    release_block();
    rsp = tc_recv(b);
    check_id(rsp, "\"b\"");
    check_error(rsp, "GenericError", "nothing waits", false);
    json_object_put(rsp);
    tc_free(a);
    tc_free(b);
}

static void test_not_answered_while_bh_waits(void)
{
    run_blocking_client(while_waiting_bh_client);
}

/* --- Shutdown: no command is read once input is stopped ------------------- */

typedef struct StopInputRun {
    const char *path;
    int opened;             /* atomic: the client has negotiated */
    int stopped;            /* atomic: monitor_stop_input() has run */
    int sent;               /* atomic: the client's late command is sent */
    int done;               /* atomic: the client has checked everything */
} StopInputRun;

static void *stop_input_client(void *opaque)
{
    StopInputRun *r = opaque;
    TestConn *t = tc_open(r->path);
    struct json_object *msg;

    qatomic_set(&r->opened, 1);
    aio_wait_kick();
    while (!qatomic_read(&r->stopped)) {
        sched_yield();
    }
    tc_send(t, "{\"execute\": \"test-args\", \"arguments\": "
               "{\"name\": \"late\"}, \"id\": \"late\"}");
    qatomic_set(&r->sent, 1);
    aio_wait_kick();
    /* The event sent after the command was in the socket, then EOF. */
    msg = tc_recv(t);
    g_assert_nonnull(msg);
    g_assert_null(jget(msg, "return"));
    g_assert_cmpstr(json_object_get_string(jget(msg, "event")), ==,
                    "TEST_STOPPED");
    json_object_put(msg);
    g_assert_null(tc_recv(t));
    tc_free(t);
    qatomic_set(&r->done, 1);
    aio_wait_kick();
    return NULL;
}

/*
 * At shutdown the daemon cancels jobs and drains and closes nodes in the
 * outermost loop; a command read there would run against a graph being
 * torn down.  After monitor_stop_input() a command is never read, while
 * events still reach the client and the close flushes them.
 */
static void test_stop_input_at_shutdown(void)
{
    g_autofree char *path = start_monitor();
    StopInputRun r = { .path = path };
    pthread_t t;

    GLOBAL_STATE_CODE();
    bd_thread_create(&t, "qmp-client", stop_input_client, &r, &error_abort);
    AIO_WAIT_WHILE(main_context(), !qatomic_read(&r.opened));
    monitor_stop_input();
    qatomic_set(&r.stopped, 1);
    AIO_WAIT_WHILE(main_context(), !qatomic_read(&r.sent));
    /* Every ready handler gets its chance to read the command. */
    for (int i = 0; i < 100 && aio_poll(main_context(), false); i++) {
    }
    qmp_event_emit("TEST_STOPPED", json_object_new_object());
    stop_monitors(path);
    AIO_WAIT_WHILE(main_context(), !qatomic_read(&r.done));
    bd_thread_join(t);
}

/* --- Control commands ------------------------------------------------------ */

static void control_client(void *opaque)
{
    TestConn *t = tc_connect(opaque);
    struct json_object *greeting = tc_recv(t);
    struct json_object *rsp, *ret;
    bool seen_caps = false, seen_args = false;
    size_t n;

    expect_return(t, "{\"execute\": \"qmp_capabilities\"}");
    rsp = tc_cmd(t, "{\"execute\": \"query-version\"}");
    g_assert_true(json_object_equal(check_return(rsp),
                                    jget(jget(greeting, "QMP"), "version")));
    json_object_put(rsp);

    rsp = tc_cmd(t, "{\"execute\": \"query-commands\"}");
    ret = check_return(rsp);
    n = json_object_array_length(ret);
    for (size_t i = 0; i < n; i++) {
        const char *name = json_object_get_string(
            jget(json_object_array_get_idx(ret, i), "name"));

        seen_caps |= !strcmp(name, "qmp_capabilities");
        seen_args |= !strcmp(name, "test-args");
        g_assert_cmpstr(name, !=, "x-test-hidden");
    }
    g_assert_true(seen_caps && seen_args);
    json_object_put(rsp);
    /* Hidden, not gone. */
    expect_return(t, "{\"execute\": \"x-test-hidden\"}");
    rsp = tc_cmd(t, "{\"execute\": \"test-flags\"}");
    g_assert_true(json_object_get_boolean(jget(check_return(rsp), "strict")));
    json_object_put(rsp);
    json_object_put(greeting);
    tc_free(t);
}

static void test_control_queries(void)
{
    run_with_monitor(control_client);
}

static int quit_requests;           /* main thread */

static void quit_handler(void)
{
    quit_requests++;
}

static void quit_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    expect_return(t, "{\"execute\": \"quit\"}");
    tc_free(t);
}

static void quit_refused_client(void *opaque)
{
    TestConn *t = tc_open(opaque);

    expect_error(t, "{\"execute\": \"quit\"}", "GenericError",
                 "quit is not available: no shutdown handler is installed");
    tc_free(t);
}

static void test_control_quit(void)
{
    GLOBAL_STATE_CODE();
    run_with_monitor(quit_refused_client);
    qmp_set_quit_handler(quit_handler);
    run_with_monitor(quit_client);
    qmp_set_quit_handler(NULL);
    g_assert_cmpint(quit_requests, ==, 1);
}

/* qmp_run_command() as the command line uses it: keyval-typed input. */
static void test_run_command_keyval(void)
{
    struct json_object *args = json_tokener_parse(
        "{\"name\": \"k\", \"count\": \"7\", \"flag\": \"on\"}");
    struct json_object *ret;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    ret = qmp_run_command("test-args", args, 0, &error_abort);
    g_assert_cmpint(json_object_get_int(jget(ret, "count")), ==, 7);
    g_assert_true(json_object_get_boolean(jget(ret, "flag")));
    /* The caller's object is left as it was. */
    g_assert_true(json_object_is_type(jget(args, "count"), json_type_string));
    json_object_put(ret);

    g_assert_null(qmp_run_command("test-args", args, OPTS_STRICT_TYPES, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "'count': expected integer");
    error_free(err);
    err = NULL;
    /* Handlers learn how their arguments were typed. */
    ret = qmp_run_command("test-flags", NULL, 0, &error_abort);
    g_assert_false(json_object_get_boolean(jget(ret, "strict")));
    json_object_put(ret);
    ret = qmp_run_command("test-flags", NULL, OPTS_STRICT_TYPES,
                          &error_abort);
    g_assert_true(json_object_get_boolean(jget(ret, "strict")));
    json_object_put(ret);
    g_assert_cmpuint(qmp_current_opts_flags(), ==, 0);

    g_assert_null(qmp_run_command("nope", NULL, 0, &err));
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_COMMAND_NOT_FOUND);
    error_free(err);
    json_object_put(args);
}

/* --- stdio ------------------------------------------------------------------- */

typedef struct StdioPipes {
    int out_read;           /* what the monitor writes to stdout */
} StdioPipes;

static void stdio_client(void *opaque)
{
    StdioPipes *p = opaque;
    TestConn t = { .fd = p->out_read, .out_fd = p->out_read,
                   .in = g_string_new(NULL) };
    struct json_object *rsp;

    tc_read_greeting(&t);
    for (int id = 1; id <= 3; id++) {
        rsp = tc_recv(&t);
        check_id(rsp, id == 1 ? "1" : id == 2 ? "2" : "3");
        g_assert_true(jhas(rsp, id == 2 ? "error" : "return"));
        json_object_put(rsp);
    }
    g_string_free(t.in, true);
}

/*
 * stdin a regular file (which epoll cannot watch), stdout a pipe.  At the
 * end of input the client goes away; the process goes on.
 */
static void test_stdio_monitor(void)
{
    g_autofree char *input = g_strdup_printf("%s/stdin.json", tmpdir);
    int saved_in = dup(STDIN_FILENO), saved_out = dup(STDOUT_FILENO);
    int out_pipe[2], in_fd;
    StdioPipes p;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    g_assert_true(g_file_set_contents(input,
        "{\"execute\": \"qmp_capabilities\", \"id\": 1}\n"
        "{\"execute\": \"nope\", \"id\": 2}\n"
        "{\"execute\": \"query-version\", \"id\": 3}\n", -1, NULL));
    in_fd = open(input, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(in_fd, >=, 0);
    g_assert_cmpint(pipe2(out_pipe, O_CLOEXEC), ==, 0);
    fflush(stdout);
    dup2(in_fd, STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    close(in_fd);
    close(out_pipe[1]);

    g_assert_true(monitor_add_stdio(&error_abort));
    p.out_read = out_pipe[0];
    run_client(stdio_client, &p);
    g_assert_false(monitor_add_stdio(&err));
    error_free_or_abort(&err);
    monitor_cleanup();

    dup2(saved_in, STDIN_FILENO);
    dup2(saved_out, STDOUT_FILENO);
    close(saved_in);
    close(saved_out);
    close(out_pipe[0]);
    unlink(input);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    qmp_control_init();
    qmp_register_commands(test_commands);
    qmp_add_event_observer(record_event, &seen_events);
    tmpdir = g_dir_make_tmp("test-qmp-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);

    g_test_add_func("/qmp/greeting", test_greeting);
    g_test_add_func("/qmp/negotiation-required", test_negotiation_required);
    g_test_add_func("/qmp/id-echoed", test_id_echoed);
    g_test_add_func("/qmp/request-shape", test_request_shape);
    g_test_add_func("/qmp/unknown-command-class", test_unknown_command_class);
    g_test_add_func("/qmp/args-wrong-type-names-key",
                    test_args_wrong_type_names_key);
    g_test_add_func("/qmp/unknown-arg", test_unknown_arg);
    g_test_add_func("/qmp/missing-arg", test_missing_arg);
    g_test_add_func("/qmp/malformed-json-then-valid-command",
                    test_malformed_json_then_valid_command);
    g_test_add_func("/qmp/several-messages-in-one-write",
                    test_several_messages_in_one_write);
    g_test_add_func("/qmp/message-split-across-writes",
                    test_message_split_across_writes);
    g_test_add_func("/qmp/oversized-message-closes-only-that-connection",
                    test_oversized_message_closes_only_that_connection);
    g_test_add_func("/qmp/message-at-limit-accepted",
                    test_message_at_limit_accepted);
    g_test_add_func("/qmp/stalled-client-dropped-others-served",
                    test_stalled_client_dropped_others_served);
    g_test_add_func("/qmp/events-to-every-negotiated-client",
                    test_events_to_every_negotiated_client);
    g_test_add_func("/qmp/event-timestamp-shape", test_event_timestamp_shape);
    g_test_add_func("/qmp/socket-mode-0600", test_socket_mode_0600);
    g_test_add_func("/qmp/stale-socket-replaced", test_stale_socket_replaced);
    g_test_add_func("/qmp/socket-in-use-refused", test_socket_in_use_refused);
    g_test_add_func("/qmp/stop-listening-keeps-clients",
                    test_stop_listening_keeps_clients);
    g_test_add_func("/qmp/half-close-gets-replies",
                    test_half_close_gets_replies);
    g_test_add_func("/qmp/one-command-at-a-time", test_one_command_at_a_time);
    g_test_add_func("/qmp/stop-input-at-shutdown",
                    test_stop_input_at_shutdown);
    g_test_add_func("/qmp/no-command-in-nested-loop-of-bh",
                    test_no_command_in_nested_loop_of_bh);
    g_test_add_func("/qmp/answered-while-command-waits",
                    test_answered_while_command_waits);
    g_test_add_func("/qmp/not-answered-while-bh-waits",
                    test_not_answered_while_bh_waits);
    g_test_add_func("/qmp/control/queries", test_control_queries);
    g_test_add_func("/qmp/control/quit", test_control_quit);
    g_test_add_func("/qmp/run-command-keyval", test_run_command_keyval);
    g_test_add_func("/qmp/stdio-monitor", test_stdio_monitor);

    ret = g_test_run();
    monitor_cleanup();
    main_loop_cleanup();
    rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}
