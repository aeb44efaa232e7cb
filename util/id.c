/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * id_wellformed() (see include/util/id.h).
 */
#include "util/osdep.h"

#include "util/id.h"

bool id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}
