/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Error objects for the control path (see include/util/error.h).
 *
 * An Error owns its message and remembers the source position that created
 * it, so that &error_abort can say where an "impossible" failure came from.
 * The two sentinels error_abort and error_fatal are never written: only their
 * addresses matter, and every path that could store into *errp checks for
 * them first.  Every function here leaves errno as it found it, so that
 * callers may write error_setg_errno(errp, errno, ...) and then return
 * -errno.
 */
#include "util/osdep.h"

#include "util/error.h"
#include "util/log.h"

struct Error {
    char *msg;
    ErrorClass cls;
    const char *src;    /* __FILE__ of the error_setg() call: static */
    int line;
};

Error *error_abort;
Error *error_fatal;

const char *error_class_name(ErrorClass cls)
{
    switch (cls) {
    case ERROR_CLASS_GENERIC_ERROR:
        return "GenericError";
    case ERROR_CLASS_COMMAND_NOT_FOUND:
        return "CommandNotFound";
    case ERROR_CLASS_DEVICE_NOT_ACTIVE:
        return "DeviceNotActive";
    case ERROR_CLASS_DEVICE_NOT_FOUND:
        return "DeviceNotFound";
    case ERROR_CLASS_KVM_MISSING:
        return "KVMMissing";
    }
    g_assert_not_reached();
}

/* &error_abort received an error: a bug.  Say where it was raised. */
NORETURN static void error_handle_abort(Error *err)
{
    log_msg(LOG_LEVEL_ERROR, "unexpected error at %s:%d: %s",
            err->src, err->line, err->msg);
    abort();
}

/* &error_fatal received an error: report it and end the process. */
NORETURN static void error_handle_fatal(Error *err)
{
    error_report("%s", err->msg);
    error_free(err);
    exit(1);
}

/*
 * Hand @err to a non-NULL @errp: act on the sentinels, or store it.
 * Setting an error on top of another is a bug in the caller.
 */
static void error_deliver(Error **errp, Error *err)
{
    if (errp == &error_abort) {
        error_handle_abort(err);
    }
    if (errp == &error_fatal) {
        error_handle_fatal(err);
    }
    assert(*errp == NULL);
    *errp = err;
}

static void error_setv(Error **errp, ErrorClass cls, const char *src,
                       int line, int os_errno, const char *fmt, va_list ap)
    PRINTF_FMT(6, 0);

static void error_setv(Error **errp, ErrorClass cls, const char *src,
                       int line, int os_errno, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    Error *err;

    if (!errp) {
        return;
    }
    err = g_new0(Error, 1);
    err->msg = g_strdup_vprintf(fmt, ap);
    if (os_errno) {
        char *with_errno = g_strdup_printf("%s: %s", err->msg,
                                           g_strerror(abs(os_errno)));

        g_free(err->msg);
        err->msg = with_errno;
    }
    err->cls = cls;
    err->src = src;
    err->line = line;
    error_deliver(errp, err);
    errno = saved_errno;
}

void error_setg_internal(Error **errp, ErrorClass cls, const char *src,
                         int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, cls, src, line, 0, fmt, ap);
    va_end(ap);
}

void error_setg_errno_internal(Error **errp, int os_errno, const char *src,
                               int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, ERROR_CLASS_GENERIC_ERROR, src, line, os_errno, fmt, ap);
    va_end(ap);
}

static void error_vprepend(Error *err, const char *fmt, va_list ap)
    PRINTF_FMT(2, 0);

static void error_vprepend(Error *err, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    GString *msg = g_string_new(NULL);

    g_string_append_vprintf(msg, fmt, ap);
    g_string_append(msg, err->msg);
    g_free(err->msg);
    err->msg = g_string_free(msg, FALSE);
    errno = saved_errno;
}

void error_prepend(Error **errp, const char *fmt, ...)
{
    va_list ap;

    if (!errp || !*errp) {
        return;
    }
    va_start(ap, fmt);
    error_vprepend(*errp, fmt, ap);
    va_end(ap);
}

void error_propagate(Error **dst_errp, Error *local_err)
{
    if (!local_err) {
        return;
    }
    /* The sentinels always read NULL, so they reach error_deliver(). */
    if (!dst_errp || *dst_errp) {
        /* Nobody wants it, or the first error wins: drop this one. */
        error_free(local_err);
        return;
    }
    error_deliver(dst_errp, local_err);
}

void error_propagate_prepend(Error **dst_errp, Error *local_err,
                             const char *fmt, ...)
{
    va_list ap;

    /* Format the context only if someone will read it. */
    if (local_err && dst_errp && !*dst_errp) {
        va_start(ap, fmt);
        error_vprepend(local_err, fmt, ap);
        va_end(ap);
    }
    error_propagate(dst_errp, local_err);
}

const char *error_get_pretty(const Error *err)
{
    assert(err);
    return err->msg;
}

ErrorClass error_get_class(const Error *err)
{
    assert(err);
    return err->cls;
}

Error *error_copy(const Error *err)
{
    Error *copy = g_new0(Error, 1);

    copy->msg = g_strdup(err->msg);
    copy->cls = err->cls;
    copy->src = err->src;
    copy->line = err->line;
    return copy;
}

void error_free(Error *err)
{
    if (err) {
        g_free(err->msg);
        g_free(err);
    }
}

void error_free_or_abort(Error **errp)
{
    assert(errp && *errp);
    error_free(*errp);
    *errp = NULL;
}

void error_report_err(Error *err)
{
    error_report("%s", err->msg);
    error_free(err);
}

void warn_report_err(Error *err)
{
    warn_report("%s", err->msg);
    error_free(err);
}
