/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * --config FILE: the whole start-up configuration as one JSON object.
 *
 *   {
 *     "object":     [ object-add arguments, ... ],
 *     "blockdev":   [ blockdev-add arguments, ... ],
 *     "nbd-server": nbd-server-start arguments (addr flat or legacy),
 *     "export":     [ block-export-add arguments, ... ],
 *     "chardev":    [ {"backend": "socket", "id": ..., "path": ...}, ... ],
 *     "monitor":    [ {"path": P} or {"chardev": ID}, ... ],
 *     "pidfile":    "PATH"
 *   }
 *
 * Every key is optional; any other key is refused.  Entries become steps
 * in a fixed order (object, blockdev, nbd-server, export, chardev,
 * monitor), whatever the order of the keys in the file, so that every
 * entry can refer to what the earlier kinds define.  Values carry their
 * JSON types, as QMP arguments do (OPTS_STRICT_TYPES).  The file is read
 * and checked completely before anything starts; its entries then run
 * where --config stands among the other options.
 *
 * Messages: "--config FILE: REASON" for the file as a whole,
 * "--config FILE: blockdev[1]: REASON" for one entry.
 */
#include "util/osdep.h"

#include <fcntl.h>

#include "daemon/daemon.h"

/* Far beyond any real configuration; refuses /dev/zero and the like. */
#define CONFIG_MAX_BYTES (16 * 1024 * 1024)

typedef struct ConfigKey {
    const char *name;
    DaemonStepKind kind;
    bool list;                  /* a list of entries, else one object */
} ConfigKey;

/* In the order the entries are applied. */
static const ConfigKey config_keys[] = {
    { "object",     DAEMON_STEP_OBJECT,     true },
    { "blockdev",   DAEMON_STEP_BLOCKDEV,   true },
    { "nbd-server", DAEMON_STEP_NBD_SERVER, false },
    { "export",     DAEMON_STEP_EXPORT,     true },
    { "chardev",    DAEMON_STEP_CHARDEV,    true },
    { "monitor",    DAEMON_STEP_MONITOR,    true },
};

/* Read all of @path as a NUL-terminated string. */
static char *config_read_file(const char *path, Error **errp)
{
    g_autoptr(GString) text = g_string_new(NULL);
    char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        error_setg_errno(errp, errno, "could not open the file");
        return NULL;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error_setg_errno(errp, errno, "could not read the file");
            close(fd);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        if (text->len + (size_t)n > CONFIG_MAX_BYTES) {
            error_setg(errp, "the file is larger than %d bytes",
                       CONFIG_MAX_BYTES);
            close(fd);
            return NULL;
        }
        g_string_append_len(text, buf, n);
    }
    close(fd);
    if (strlen(text->str) != text->len) {
        error_setg(errp, "invalid JSON: the file contains a NUL byte");
        return NULL;
    }
    return g_string_free(g_steal_pointer(&text), false);
}

static bool config_check_keys(struct json_object *root, Error **errp)
{
    json_object_object_foreach(root, key, val) {
        bool known = !strcmp(key, "pidfile");

        (void)val;
        for (size_t i = 0; !known && i < G_N_ELEMENTS(config_keys); i++) {
            known = !strcmp(key, config_keys[i].name);
        }
        if (!known) {
            error_setg(errp, "'%s': unexpected parameter", key);
            return false;
        }
    }
    return true;
}

/* Append the steps of one entry @val of @key. */
static bool config_add_entry(DaemonConfig *cfg, const char *prefix,
                             const ConfigKey *key, struct json_object *val,
                             const char *name, Error **errp)
{
    g_autofree char *where = g_strdup_printf("%s: %s", prefix, name);
    DaemonStep *step;

    if (!json_object_is_type(val, json_type_object)) {
        error_setg(errp, "%s: '%s': expected object", prefix, name);
        return false;
    }
    step = step_from_json(key->kind, val, where, errp);
    if (!step) {
        return false;
    }
    g_ptr_array_add(cfg->steps, step);
    return true;
}

static bool config_add_key(DaemonConfig *cfg, const char *prefix,
                           const ConfigKey *key, struct json_object *val,
                           Error **errp)
{
    if (!key->list) {
        return config_add_entry(cfg, prefix, key, val, key->name, errp);
    }
    if (!json_object_is_type(val, json_type_array)) {
        error_setg(errp, "%s: '%s': expected list", prefix, key->name);
        return false;
    }
    for (size_t i = 0; i < json_object_array_length(val); i++) {
        g_autofree char *name = g_strdup_printf("%s[%zu]", key->name, i);

        if (!config_add_entry(cfg, prefix, key,
                              json_object_array_get_idx(val, i), name,
                              errp)) {
            return false;
        }
    }
    return true;
}

static bool config_set_pidfile(DaemonConfig *cfg, const char *prefix,
                               struct json_object *val, Error **errp)
{
    const char *path;

    if (!json_object_is_type(val, json_type_string)) {
        error_setg(errp, "%s: 'pidfile': expected string", prefix);
        return false;
    }
    path = json_object_get_string(val);
    if (!*path) {
        error_setg(errp, "%s: 'pidfile': the path is empty", prefix);
        return false;
    }
    g_free(cfg->pidfile);
    g_free(cfg->pidfile_where);
    cfg->pidfile = g_canonicalize_filename(path, NULL);
    cfg->pidfile_where = g_strdup_printf("%s: pidfile", prefix);
    return true;
}

bool config_load(const char *path, DaemonConfig *cfg, Error **errp)
{
    g_autofree char *prefix = g_strdup_printf("--config %s", path);
    g_autofree char *text = NULL;
    struct json_object *root, *val;
    bool ok = false;

    text = config_read_file(path, errp);
    if (!text) {
        error_prepend(errp, "%s: ", prefix);
        return false;
    }
    root = daemon_json_parse(text, errp);
    if (!root) {
        error_prepend(errp, "%s: ", prefix);
        return false;
    }
    if (!config_check_keys(root, errp)) {
        error_prepend(errp, "%s: ", prefix);
        goto out;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(config_keys); i++) {
        if (json_object_object_get_ex(root, config_keys[i].name, &val) &&
            !config_add_key(cfg, prefix, &config_keys[i], val, errp)) {
            goto out;
        }
    }
    if (json_object_object_get_ex(root, "pidfile", &val) &&
        !config_set_pidfile(cfg, prefix, val, errp)) {
        goto out;
    }
    ok = true;
out:
    json_object_put(root);
    return ok;
}
