/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The command line, as qemu-storage-daemon's for the options blockd
 * supports, plus --config.
 *
 * cli_parse() only parses: it walks argv with getopt_long() (so both
 * "--opt value" and "--opt=value" work, and unambiguous abbreviations as
 * in QSD), turns each option into a DaemonStep in argument order, reads
 * config files where they appear, and creates nothing.  -h and -V print
 * and exit at once, wherever they are.  Every error is one message that
 * names the option; the caller prints it and exits 1.  getopt's own
 * messages are off (opterr = 0) so that every message has blockd's form.
 */
#include "util/osdep.h"

#include <getopt.h>

#include "daemon/daemon.h"
#include "qmp/qmp.h"

enum {
    OPTION_BLOCKDEV = 256,
    OPTION_CHARDEV,
    OPTION_CONFIG,
    OPTION_DAEMONIZE,
    OPTION_EXPORT,
    OPTION_MONITOR,
    OPTION_NBD_SERVER,
    OPTION_OBJECT,
    OPTION_PIDFILE,
};

static const struct option cli_long_options[] = {
    { "blockdev",   required_argument, NULL, OPTION_BLOCKDEV },
    { "chardev",    required_argument, NULL, OPTION_CHARDEV },
    { "config",     required_argument, NULL, OPTION_CONFIG },
    { "daemonize",  no_argument,       NULL, OPTION_DAEMONIZE },
    { "export",     required_argument, NULL, OPTION_EXPORT },
    { "help",       no_argument,       NULL, 'h' },
    { "monitor",    required_argument, NULL, OPTION_MONITOR },
    { "nbd-server", required_argument, NULL, OPTION_NBD_SERVER },
    { "object",     required_argument, NULL, OPTION_OBJECT },
    { "pidfile",    required_argument, NULL, OPTION_PIDFILE },
    { "version",    no_argument,       NULL, 'V' },
    { NULL, 0, NULL, 0 }
};

/*
 * "-" first: non-option arguments come back as 1, in order, so that they
 * are refused where they are; ":" next: a missing argument is ':'.
 */
#define CLI_SHORT_OPTIONS "-:hV"

static void cli_help(void)
{
    printf(
"Usage: " DAEMON_PROGNAME " [options]\n"
"A block-layer daemon with qemu-storage-daemon's command line and QMP.\n"
"Options are processed in the order they are given: define things before\n"
"referring to them.\n"
"\n"
"  -h, --help             display this help and exit\n"
"  -V, --version          output version information and exit\n"
"\n"
"  --blockdev [driver=]<driver>[,node-name=<N>][,read-only=on|off]\n"
"             [,cache.direct=on|off][,cache.no-flush=on|off]\n"
"             [,discard=ignore|unmap][,driver specific parameters...]\n"
"  --blockdev <JSON object>\n"
"                         add a block node (QMP blockdev-add)\n"
"\n"
"  --chardev socket,id=<id>,path=<path>,server=on[,wait=off]\n"
"  --chardev stdio,id=<id>\n"
"                         define a character device for --monitor (UNIX\n"
"                         listening sockets and stdio only)\n"
"\n"
"  --config <file>        apply a JSON config file (keys object, blockdev,\n"
"                         nbd-server, export, chardev, monitor, pidfile)\n"
"\n"
"  --daemonize            run in the background; the parent exits once\n"
"                         start-up is complete, with the daemon's error if\n"
"                         it fails\n"
"\n"
"  --export [type=]nbd,id=<id>,node-name=<node>[,name=<export-name>]\n"
"           [,writable=on|off][,iothread=<id>][,fixed-iothread=on|off]\n"
"  --export <JSON object>\n"
"                         export a block node (QMP block-export-add;\n"
"                         requires --nbd-server)\n"
"\n"
"  --monitor [chardev=]<id>[,mode=control]\n"
"                         serve QMP on a character device\n"
"\n"
"  --nbd-server addr.type=unix,addr.path=<path>\n"
"               [,max-connections=<n>][,handshake-max-seconds=<n>]\n"
"  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>\n"
"               [,max-connections=<n>][,handshake-max-seconds=<n>]\n"
"                         start the NBD server (QMP nbd-server-start)\n"
"\n"
"  --object iothread,id=<id>[,poll-max-ns=<ns>]\n"
"  --object <JSON object>\n"
"                         create an object (QMP object-add)\n"
"\n"
"  --pidfile <path>       write the process id to <path> once start-up is\n"
"                         complete; locked while running, removed at exit\n"
"\n"
"Environment: BLOCKD_LOG=error|warning|info|debug sets the log level.\n");
}

static void cli_version(void)
{
    printf("%s %s\n", DAEMON_PROGNAME, BLOCKD_VERSION);
    printf("Compatible with qemu-storage-daemon %d.%d.%d "
           "(command line and QMP)\n",
           QMP_COMPAT_QEMU_MAJOR, QMP_COMPAT_QEMU_MINOR,
           QMP_COMPAT_QEMU_MICRO);
}

/* The long option whose value is @val, for messages. */
static const char *cli_option_name(int val)
{
    for (const struct option *o = cli_long_options; o->name; o++) {
        if (o->val == val) {
            return o->name;
        }
    }
    return "?";
}

/*
 * Why getopt refused the argument @arg ('?' with optopt == 0): unknown, or
 * an abbreviation of several options.
 */
static void cli_unknown_option(const char *arg, Error **errp)
{
    g_autofree char *name = NULL;
    const char *eq;
    int matches = 0;

    if (arg[0] != '-' || arg[1] != '-') {
        error_setg(errp, "invalid option '%s'", arg);
        return;
    }
    eq = strchr(arg, '=');
    name = g_strndup(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
    for (const struct option *o = cli_long_options; o->name; o++) {
        if (!strncmp(o->name, name, strlen(name))) {
            matches++;
        }
    }
    if (matches > 1) {
        error_setg(errp, "option '--%s' is ambiguous", name);
    } else {
        error_setg(errp, "unrecognized option '--%s'", name);
    }
}

/* Why getopt refused an option, as one message. */
static void cli_getopt_error(int c, int argc, char **argv, Error **errp)
{
    /* optind has moved past the offending argument. */
    const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";

    if (c == ':') {
        /* Only long options take arguments. */
        error_setg(errp, "option '--%s' requires an argument",
                   cli_option_name(optopt));
    } else if (optopt >= 256 || optopt == 'h' || optopt == 'V') {
        if (arg[0] == '-' && arg[1] == '-') {
            error_setg(errp, "option '--%s' doesn't allow an argument",
                       cli_option_name(optopt));
        } else {
            error_setg(errp, "invalid option '-%c'", optopt);
        }
    } else if (optopt) {
        error_setg(errp, "invalid option '-%c'", optopt);
    } else {
        cli_unknown_option(arg, errp);
    }
}

static DaemonStepKind cli_step_kind(int c)
{
    switch (c) {
    case OPTION_BLOCKDEV:   return DAEMON_STEP_BLOCKDEV;
    case OPTION_CHARDEV:    return DAEMON_STEP_CHARDEV;
    case OPTION_EXPORT:     return DAEMON_STEP_EXPORT;
    case OPTION_MONITOR:    return DAEMON_STEP_MONITOR;
    case OPTION_NBD_SERVER: return DAEMON_STEP_NBD_SERVER;
    case OPTION_OBJECT:     return DAEMON_STEP_OBJECT;
    default:
        g_assert_not_reached();
    }
}

static bool cli_set_pidfile(DaemonConfig *cfg, const char *path,
                            Error **errp)
{
    if (!*path) {
        error_setg(errp, "--pidfile: the path is empty");
        return false;
    }
    g_free(cfg->pidfile);
    g_free(cfg->pidfile_where);
    cfg->pidfile = g_canonicalize_filename(path, NULL);
    cfg->pidfile_where = g_strdup_printf("--pidfile %s", path);
    return true;
}

/* A stdio chardev cannot work once --daemonize has closed stdio. */
static bool cli_check_daemonize(DaemonConfig *cfg, Error **errp)
{
    if (!cfg->daemonize) {
        return true;
    }
    for (guint i = 0; i < cfg->steps->len; i++) {
        DaemonStep *step = cfg->steps->pdata[i];

        if (step->kind == DAEMON_STEP_CHARDEV &&
            chardev_args_is_stdio(step->args)) {
            error_setg(errp, "%s: stdio is not available with --daemonize",
                       step->where);
            return false;
        }
    }
    return true;
}

void daemon_config_init(DaemonConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->steps = g_ptr_array_new_with_free_func((GDestroyNotify)step_free);
}

void daemon_config_free(DaemonConfig *cfg)
{
    g_ptr_array_unref(cfg->steps);
    g_free(cfg->pidfile);
    g_free(cfg->pidfile_where);
    memset(cfg, 0, sizeof(*cfg));
}

bool cli_parse(int argc, char **argv, DaemonConfig *cfg, Error **errp)
{
    int c;

    opterr = 0;
    optind = 0;     /* full re-initialisation (GNU) */
    while ((c = getopt_long(argc, argv, CLI_SHORT_OPTIONS, cli_long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            cli_help();
            exit(EXIT_SUCCESS);
        case 'V':
            cli_version();
            exit(EXIT_SUCCESS);
        case 1:
            error_setg(errp, "unexpected argument '%s'", optarg);
            return false;
        case ':':
        case '?':
            cli_getopt_error(c, argc, argv, errp);
            return false;
        case OPTION_CONFIG:
            if (!config_load(optarg, cfg, errp)) {
                return false;
            }
            break;
        case OPTION_DAEMONIZE:
            cfg->daemonize = true;
            break;
        case OPTION_PIDFILE:
            if (!cli_set_pidfile(cfg, optarg, errp)) {
                return false;
            }
            break;
        default: {
            g_autofree char *where =
                g_strdup_printf("--%s %s", cli_option_name(c), optarg);
            DaemonStep *step = step_from_cli(cli_step_kind(c), optarg,
                                             where, errp);

            if (!step) {
                return false;
            }
            g_ptr_array_add(cfg->steps, step);
            break;
        }
        }
    }
    return cli_check_daemonize(cfg, errp);
}
