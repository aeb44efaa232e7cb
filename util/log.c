/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Levelled logging to stderr.  Every message becomes exactly one line,
 * "<program>: <level>: <message>\n", handed to the kernel in one write(2) so
 * that lines from concurrent threads never interleave.
 *
 * The threshold lives in one atomic integer.  It starts "unset" (-1); the
 * first reader parses BLOCKD_LOG and installs the result with a
 * compare-and-swap, so an earlier log_set_level() always wins over the
 * environment and the variable is consulted at most once in effect.  The
 * program name is guarded by a GLib mutex because it is a string that can be
 * replaced while another thread formats a line.  Logging never changes errno.
 */
#include "util/osdep.h"

#include "util/log.h"

#define LOG_LEVEL_UNSET (-1)

static int log_threshold = LOG_LEVEL_UNSET;     /* atomic */

static GMutex log_name_lock;
static char *log_program_name;  /* NULL means "blockd"; under log_name_lock */

static const char *const log_level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARNING] = "warning",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

bool log_parse_level(const char *name, LogLevel *level)
{
    for (size_t i = 0; i < G_N_ELEMENTS(log_level_names); i++) {
        if (!strcmp(name, log_level_names[i])) {
            *level = (LogLevel)i;
            return true;
        }
    }
    return false;
}

/* Called concurrently from any thread. */
static LogLevel log_get_threshold(void)
{
    int cur = __atomic_load_n(&log_threshold, __ATOMIC_RELAXED);
    const char *env;
    LogLevel parsed = LOG_LEVEL_INFO;
    bool bad_env;

    if (likely(cur != LOG_LEVEL_UNSET)) {
        return (LogLevel)cur;
    }

    env = getenv("BLOCKD_LOG");
    bad_env = env && *env && !log_parse_level(env, &parsed);

    /* Lose gracefully to log_set_level() or to another first reader. */
    cur = LOG_LEVEL_UNSET;
    if (!__atomic_compare_exchange_n(&log_threshold, &cur, (int)parsed, false,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        return (LogLevel)cur;
    }
    if (bad_env) {
        /* The threshold is set now, so this call cannot recurse here. */
        log_msg(LOG_LEVEL_WARNING, "BLOCKD_LOG=%s is not error, warning, "
                "info or debug; using info", env);
    }
    return parsed;
}

void log_set_level(LogLevel level)
{
    assert(level >= LOG_LEVEL_ERROR && level <= LOG_LEVEL_DEBUG);
    __atomic_store_n(&log_threshold, (int)level, __ATOMIC_RELAXED);
}

bool log_enabled(LogLevel level)
{
    return level <= log_get_threshold();
}

void log_set_program_name(const char *name)
{
    g_mutex_lock(&log_name_lock);
    g_free(log_program_name);
    log_program_name = g_strdup(name);
    g_mutex_unlock(&log_name_lock);
}

/* Write all of @buf, retrying on EINTR and short writes; errors are dropped. */
static void log_write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;     /* nowhere left to report it */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_vmsg(LogLevel level, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    GString *line;

    assert(level >= LOG_LEVEL_ERROR && level <= LOG_LEVEL_DEBUG);
    if (!log_enabled(level)) {
        return;
    }

    line = g_string_new(NULL);
    g_mutex_lock(&log_name_lock);
    g_string_append(line, log_program_name ? log_program_name : "blockd");
    g_mutex_unlock(&log_name_lock);
    g_string_append_printf(line, ": %s: ", log_level_names[level]);
    g_string_append_vprintf(line, fmt, ap);
    g_string_append_c(line, '\n');

    log_write_all(line->str, line->len);
    g_string_free(line, TRUE);
    errno = saved_errno;
}

void log_msg(LogLevel level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
