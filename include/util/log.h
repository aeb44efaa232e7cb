/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging to stderr with levels.  One line per message, prefixed with the
 * program name and the level ("blockd: warning: ...").  The level is set by
 * log_set_level() or the BLOCKD_LOG environment variable (error, warning,
 * info, debug); the default is info.
 *
 * Thread-safe: each message is written with a single write(2), so lines
 * from several threads never interleave.
 */
#ifndef UTIL_LOG_H
#define UTIL_LOG_H

#include "util/osdep.h"

typedef enum LogLevel {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARNING,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
} LogLevel;

void log_set_level(LogLevel level);
/* Parse "error", "warning", "info" or "debug"; false if unknown. */
bool log_parse_level(const char *name, LogLevel *level);
bool log_enabled(LogLevel level);
/* Name shown in front of every line; default "blockd". */
void log_set_program_name(const char *name);

void log_msg(LogLevel level, const char *fmt, ...) PRINTF_FMT(2, 3);
void log_vmsg(LogLevel level, const char *fmt, va_list ap) PRINTF_FMT(2, 0);

#define error_report(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define warn_report(...)  log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define info_report(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define debug_report(...) \
    do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

/* Log once per call site for the life of the process. */
#define log_once(level, ...) ({                                         \
    static bool log_once_done_;                                         \
    bool log_once_first_ = !__atomic_exchange_n(&log_once_done_, true,  \
                                                __ATOMIC_RELAXED);      \
    if (log_once_first_) {                                              \
        log_msg(level, __VA_ARGS__);                                    \
    }                                                                   \
    log_once_first_;                                                    \
})
#define warn_report_once(...) log_once(LOG_LEVEL_WARNING, __VA_ARGS__)
#define info_report_once(...) log_once(LOG_LEVEL_INFO, __VA_ARGS__)

#endif /* UTIL_LOG_H */
