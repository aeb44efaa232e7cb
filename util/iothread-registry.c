/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The registry of user-created iothreads (see include/util/iothread.h):
 * a list in creation order, each with its count of use references.  It
 * lives here, below the block layer, so that exports and jobs find an
 * iothread by id and mark their use of it without reaching up into the
 * QMP layer, which owns object-add/-del and query-iothreads.
 *
 * Main-loop code throughout (BQL).
 */
#include "util/osdep.h"

#include "util/iothread.h"
#include "util/main-loop.h"

typedef struct RegisteredIOThread {
    IOThread *iothread;         /* immutable */
    unsigned uses;              /* BQL: iothread_ref_use() references */
} RegisteredIOThread;

/* RegisteredIOThread *, in creation order.  BQL */
static GPtrArray *registry TSA_GUARDED_BY(bql);

static RegisteredIOThread *registry_entry(IOThread *iothread)
    TSA_REQUIRES(bql)
{
    for (guint i = 0; registry && i < registry->len; i++) {
        RegisteredIOThread *r = registry->pdata[i];

        if (r->iothread == iothread) {
            return r;
        }
    }
    return NULL;
}

void iothread_register(IOThread *iothread)
{
    RegisteredIOThread *r = g_new0(RegisteredIOThread, 1);

    bql_assert_held();
    assert(!iothread_find(iothread_get_id(iothread)));
    if (!registry) {
        registry = g_ptr_array_new();
    }
    r->iothread = iothread;
    g_ptr_array_add(registry, r);
}

void iothread_unregister(IOThread *iothread)
{
    RegisteredIOThread *r;

    bql_assert_held();
    r = registry_entry(iothread);
    assert(r && r->uses == 0);
    g_ptr_array_remove(registry, r);
    g_free(r);
    if (!registry->len) {
        g_ptr_array_free(registry, true);
        registry = NULL;
    }
}

IOThread *iothread_find(const char *id)
{
    bql_assert_held();
    for (guint i = 0; registry && i < registry->len; i++) {
        RegisteredIOThread *r = registry->pdata[i];

        if (!strcmp(iothread_get_id(r->iothread), id)) {
            return r->iothread;
        }
    }
    return NULL;
}

IOThread *iothread_next(IOThread *prev)
{
    guint i = 0;

    bql_assert_held();
    if (!registry) {
        return NULL;
    }
    if (prev) {
        while (i < registry->len &&
               ((RegisteredIOThread *)registry->pdata[i])->iothread != prev) {
            i++;
        }
        i++;
    }
    return i < registry->len ?
        ((RegisteredIOThread *)registry->pdata[i])->iothread : NULL;
}

void iothread_ref_use(IOThread *iothread)
{
    RegisteredIOThread *r;

    bql_assert_held();
    r = registry_entry(iothread);
    assert(r);
    r->uses++;
}

void iothread_unref_use(IOThread *iothread)
{
    RegisteredIOThread *r;

    bql_assert_held();
    r = registry_entry(iothread);
    assert(r && r->uses > 0);
    r->uses--;
}

unsigned iothread_uses(IOThread *iothread)
{
    RegisteredIOThread *r;

    bql_assert_held();
    r = registry_entry(iothread);
    return r ? r->uses : 0;
}
