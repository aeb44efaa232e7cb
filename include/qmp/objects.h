/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * User-created objects (qmp/cmd-objects.c): the iothreads of object-add
 * (qom-type "iothread"), object-del and query-iothreads.  They live in
 * util/iothread.h's registry, through which exports and jobs find an
 * iothread by id and mark that they run in it, so that object-del cannot
 * pull it from under them.
 *
 * An iothread is "in use", and object-del refuses to delete it, while any
 * node or BlockBackend has its AioContext as home, or while a user holds a
 * use reference (iothread_ref_use()).  Users whose work runs in an
 * iothread without a node living there (an export spreading connections
 * over several iothreads, a job) take such a reference.
 *
 * Everything here is main-loop code (GLOBAL_STATE_CODE).
 */
#ifndef QMP_OBJECTS_H
#define QMP_OBJECTS_H

#include "util/iothread.h"

/* Register object-add, object-del and query-iothreads.  Start-up. */
void qmp_objects_init(void) TSA_REQUIRES(bql);

/*
 * Stop and destroy every iothread (shutdown).  The caller has closed the
 * nodes and exports that ran in them, or moved them back to the main
 * loop: destroying a context that still has work registered aborts.
 */
void objects_cleanup(void) TSA_REQUIRES(bql);

#endif /* QMP_OBJECTS_H */
