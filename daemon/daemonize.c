/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * --daemonize: run in the background, and let the command that started
 * blockd know whether start-up worked.
 *
 * The process forks twice (the middle child calls setsid() and exits, so
 * the daemon is in a session of its own and is not its leader: it can
 * never acquire a controlling terminal).  The original process stays in
 * the foreground, reading a pipe whose write end only the daemon keeps:
 *
 *   - the daemon writes one NUL byte once start-up is complete (every
 *     listener up, pid file written): the parent exits 0;
 *   - it writes the text of its start-up error instead: the parent prints
 *     it as "blockd: MESSAGE" and exits 1;
 *   - the pipe reaches end of file with neither (the daemon died): the
 *     parent says so and exits 1.
 *
 * The daemon keeps stdin, stdout and stderr until it is ready, so that
 * warnings during start-up reach the user; then they go to /dev/null.  It
 * does not chdir("/"): relative paths given later over QMP keep meaning
 * what they mean on the command line.
 *
 * Main thread, before any other thread exists (fork() copies only the
 * calling thread).
 */
#include "util/osdep.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "daemon/daemon.h"

/* Write end of the pipe to the waiting parent, in the daemon; else -1. */
static int daemonize_pipe_fd = -1;

static void daemonize_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;     /* the parent is gone: nobody to tell */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* The original process: wait for the daemon's verdict and exit with it. */
static NORETURN void daemonize_parent(int read_fd, pid_t middle)
{
    g_autoptr(GString) msg = g_string_new(NULL);
    sigset_t set;
    char buf[4096];
    ssize_t n;

    /* The shutdown signals are blocked (for the daemon): let ^C work. */
    sigemptyset(&set);
    pthread_sigmask(SIG_SETMASK, &set, NULL);

    while (waitpid(middle, NULL, 0) < 0 && errno == EINTR) {
        /* the middle child exits at once */
    }
    for (;;) {
        n = read(read_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        g_string_append_len(msg, buf, n);
    }
    if (msg->len == 1 && msg->str[0] == '\0') {
        exit(EXIT_SUCCESS);
    }
    if (msg->len > 0) {
        fprintf(stderr, "%s: %s\n", DAEMON_PROGNAME, msg->str);
    } else {
        fprintf(stderr, "%s: the daemon exited during start-up\n",
                DAEMON_PROGNAME);
    }
    exit(EXIT_FAILURE);
}

static NORETURN void daemonize_die(const char *what)
{
    g_autofree char *msg = g_strdup_printf("--daemonize: %s: %s", what,
                                           strerror(errno));

    daemon_report_startup_error(msg);
    _exit(EXIT_FAILURE);
}

void daemonize_start(void)
{
    int fds[2];
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        fprintf(stderr, "%s: --daemonize: pipe: %s\n", DAEMON_PROGNAME,
                strerror(errno));
        exit(EXIT_FAILURE);
    }
    fflush(NULL);   /* nothing buffered may be written twice */
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: --daemonize: fork: %s\n", DAEMON_PROGNAME,
                strerror(errno));
        exit(EXIT_FAILURE);
    }
    if (pid > 0) {
        close(fds[1]);
        daemonize_parent(fds[0], pid);
    }

    close(fds[0]);
    daemonize_pipe_fd = fds[1];
    if (setsid() < 0) {
        daemonize_die("setsid");
    }
    pid = fork();
    if (pid < 0) {
        daemonize_die("fork");
    }
    if (pid > 0) {
        _exit(EXIT_SUCCESS);    /* the middle child: the parent reaps it */
    }
}

/* Point @target_fd at /dev/null. */
static void daemonize_devnull(int target_fd, int flags)
{
    int fd = open("/dev/null", flags | O_CLOEXEC);

    if (fd < 0) {
        return;     /* keep what we have rather than lose the fd number */
    }
    if (fd != target_fd) {
        dup2(fd, target_fd);    /* dup2 clears O_CLOEXEC on target_fd */
        close(fd);
    }
}

void daemonize_ready(void)
{
    if (daemonize_pipe_fd < 0) {
        return;
    }
    fflush(NULL);
    daemonize_devnull(STDIN_FILENO, O_RDONLY);
    daemonize_devnull(STDOUT_FILENO, O_WRONLY);
    daemonize_devnull(STDERR_FILENO, O_WRONLY);
    /* Last: once the parent has exited, the caller may look for us. */
    daemonize_write_all(daemonize_pipe_fd, "", 1);
    close(daemonize_pipe_fd);
    daemonize_pipe_fd = -1;
}

void daemon_report_startup_error(const char *msg)
{
    if (daemonize_pipe_fd < 0) {
        fprintf(stderr, "%s: %s\n", DAEMON_PROGNAME, msg);
        return;
    }
    daemonize_write_all(daemonize_pipe_fd, msg, strlen(msg));
    close(daemonize_pipe_fd);
    daemonize_pipe_fd = -1;
}
