/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Error reporting for the control path, in QEMU's style: a function that can
 * fail takes `Error **errp` as its last argument, returns false/NULL/-errno
 * on failure, and sets *errp to an Error that says what went wrong.  The I/O
 * path returns -errno instead and never allocates an Error.
 *
 * errp may be NULL (the caller does not care), &error_abort (a failure is a
 * bug: abort with the message) or &error_fatal (print and exit(1): only for
 * start-up code).  Setting an error where one is already set is a bug.
 *
 * Messages chain context outwards with error_prepend(): the innermost says
 * what failed, each caller adds where ("'file0': Could not open 'x': No such
 * file or directory").
 *
 * Thread-safe: an Error belongs to the thread that holds it.
 */
#ifndef UTIL_ERROR_H
#define UTIL_ERROR_H

#include "util/osdep.h"

/* QMP error classes, with QEMU's wire names (see error_class_name()). */
typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_ACTIVE,
    ERROR_CLASS_DEVICE_NOT_FOUND,
    ERROR_CLASS_KVM_MISSING,
} ErrorClass;

typedef struct Error Error;

extern Error *error_abort;
extern Error *error_fatal;

/* "GenericError", "CommandNotFound", ... */
const char *error_class_name(ErrorClass cls);

void error_setg_internal(Error **errp, ErrorClass cls, const char *src,
                         int line, const char *fmt, ...) PRINTF_FMT(5, 6);
void error_setg_errno_internal(Error **errp, int os_errno, const char *src,
                               int line, const char *fmt, ...)
    PRINTF_FMT(5, 6);

/* Set *errp to a GenericError with a printf-style message. */
#define error_setg(errp, ...) \
    error_setg_internal(errp, ERROR_CLASS_GENERIC_ERROR, __FILE__, __LINE__, \
                        __VA_ARGS__)
/* Set *errp with an explicit class. */
#define error_set(errp, cls, ...) \
    error_setg_internal(errp, cls, __FILE__, __LINE__, __VA_ARGS__)
/*
 * Like error_setg(), appending ": " and strerror(os_errno).  os_errno may be
 * given positive or negative.
 */
#define error_setg_errno(errp, os_errno, ...) \
    error_setg_errno_internal(errp, os_errno, __FILE__, __LINE__, __VA_ARGS__)

/* Prefix the message of *errp (if set) with a printf-style context. */
void error_prepend(Error **errp, const char *fmt, ...) PRINTF_FMT(2, 3);

/*
 * Move local_err into *dst_errp: frees it if dst_errp is NULL or already
 * holds an error, aborts or exits for &error_abort / &error_fatal.
 */
void error_propagate(Error **dst_errp, Error *local_err);
/* error_propagate() after prefixing local_err's message. */
void error_propagate_prepend(Error **dst_errp, Error *local_err,
                             const char *fmt, ...) PRINTF_FMT(3, 4);

const char *error_get_pretty(const Error *err);
ErrorClass error_get_class(const Error *err);
Error *error_copy(const Error *err);
void error_free(Error *err);
/* Assert that *errp is set, free it and set it to NULL (for tests). */
void error_free_or_abort(Error **errp);

/* Log the error (error_report level) and free it. */
void error_report_err(Error *err);
/* Log the error (warn_report level) and free it. */
void warn_report_err(Error *err);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Error, error_free)

#endif /* UTIL_ERROR_H */
