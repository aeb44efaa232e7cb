/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QEMU's rule for the names users give things (object ids, export ids,
 * job ids, chardev ids, node names): a letter, then letters, digits, '-',
 * '.' and '_'.  One check for every layer that names things.
 */
#ifndef UTIL_ID_H
#define UTIL_ID_H

#include "util/osdep.h"

/* Whether @id follows the rule (the empty string does not). */
bool id_wellformed(const char *id);

#endif /* UTIL_ID_H */
