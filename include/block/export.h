/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block exports: a node made available to clients outside the daemon (NBD
 * for now), in the shape of QEMU's BlockExport.
 *
 * An export owns a BlockBackend on its node with the permissions QSD
 * takes (consistent read, plus write when writable; it shares everything
 * with other users of the node except what its type forbids: NBD forbids
 * resize), and one or more iothreads its connections run in.  The export
 * type's driver implements the protocol.
 *
 * Life cycle (main loop, BQL): blk_exp_add() creates it with one
 * reference, the registry's.  blk_exp_request_shutdown() (block-export-del,
 * nbd-server-stop, daemon shutdown) starts tearing it down: the type
 * disconnects its clients and the registry's reference is dropped; each
 * client holds a reference of its own.  When the last reference goes, a
 * bottom half in the main loop deletes the export (driver, BlockBackend,
 * iothread uses) and emits BLOCK_EXPORT_DELETED; until then the export is
 * listed with "shutting-down": true.
 *
 * Drains and AioContext moves of the node reach the export through its
 * BlockBackend's dev ops, which export.c owns and hands to the client
 * life cycle every export type shares (block/export/client.h): while the
 * node is drained the export's clients submit nothing new, and the export
 * reports busy until their block I/O is done; the BlockBackend does not
 * park requests (request queuing disabled), because the drain waits for
 * the export's own coroutines to finish theirs.
 *
 * Main loop (GLOBAL_STATE_CODE, TSA_REQUIRES(bql)) unless a function says
 * otherwise.
 */
#ifndef BLOCK_EXPORT_H
#define BLOCK_EXPORT_H

#include "block/block-common.h"
#include "util/iothread.h"
#include "util/opts.h"
#include "util/queue.h"

typedef struct BlockExport BlockExport;
typedef struct BlockExportDriver BlockExportDriver;
/* A client of an export (block/export/client.h, private to exports). */
typedef struct BlkExpClient BlkExpClient;

/*
 * Counters for query-block-exports.  An export keeps the totals of the
 * clients that are gone here (atomics); live clients keep their own
 * (written only in the thread they run in, so that the I/O path shares no
 * cache line between threads) and the driver adds them (get_stats).
 */
typedef struct BlockExportStats {
    uint64_t requests;          /* requests answered */
    uint64_t bytes_read;        /* data sent to clients */
    uint64_t bytes_written;     /* data received from clients and written */
} BlockExportStats;

struct BlockExport {
    const BlockExportDriver *drv;   /* immutable */
    char *id;                       /* immutable */
    BlockBackend *blk;              /* immutable while the export lives */
    bool writable;                  /* immutable */
    bool writethrough;              /* immutable: FUA on every write */
    bool fixed_iothread;            /* immutable: refuse AioContext moves */

    /*
     * The iothreads given to block-export-add (IOThread *), in order;
     * empty: the connections run in the node's context.  With more than
     * one, connections are spread over them round-robin and the export
     * holds a use reference on each (util/iothread.h).  immutable
     */
    GPtrArray *iothreads;
    unsigned next_iothread TSA_GUARDED_BY(bql);    /* round-robin cursor */

    int refcount TSA_GUARDED_BY(bql);
    bool shutting_down TSA_GUARDED_BY(bql);
    /*
     * Clients serving requests (the NBD transmission phase), for drains,
     * moves, query and safe removal; see block/export/client.h.
     */
    QLIST_HEAD(, BlkExpClient TSA_GUARDED_BY(bql)) client_list;
    unsigned clients TSA_GUARDED_BY(bql);      /* their number */
    bool quiesced TSA_GUARDED_BY(bql);         /* the node is drained */

    BlockExportStats stats;         /* atomics: totals of departed clients */

    /* In the registry. */
    QTAILQ_ENTRY(BlockExport TSA_GUARDED_BY(bql)) next;
};

/*
 * An export type.  Every callback runs in the main loop under the BQL,
 * outside coroutines; the drain callbacks must not poll.
 */
struct BlockExportDriver {
    const char *type;               /* "nbd" */
    size_t instance_size;           /* >= sizeof(BlockExport), which is first */
    /* Type-specific arguments of block-export-add (after the common ones). */
    const OptDesc *opts;

    /*
     * Set up after the common part (the BlockBackend is attached, the
     * export is not yet listed).  On failure, leave no trace: delete is
     * not called.
     */
    int (*create)(BlockExport *exp, struct json_object *args, Error **errp)
        BQL_PTR;
    /*
     * Disconnect what export.c does not know of (clients not yet attached,
     * e.g. in a handshake); the attached ones are closed by export.c.
     * Each client drops its reference when gone.  Optional.
     */
    void (*request_shutdown)(BlockExport *exp) BQL_PTR;
    /* The last reference is gone: free what create allocated. */
    void (*delete)(BlockExport *exp) BQL_PTR;
    /* Add type-specific members to a query-block-exports entry (or NULL). */
    void (*query)(BlockExport *exp, struct json_object *info) BQL_PTR;
    /* Add the counters of live clients to @stats (or NULL). */
    void (*get_stats)(BlockExport *exp, BlockExportStats *stats) BQL_PTR;
};

/* Register an export type; once per type, at start-up. */
void blk_exp_register_driver(const BlockExportDriver *drv) TSA_REQUIRES(bql);

/*
 * The argument schema of block-export-add: the common arguments and those
 * of every registered type.  Built on first use (after the types are
 * registered); lives as long as the process.
 */
const OptDesc *blk_exp_add_schema(void) TSA_REQUIRES(bql);

/*
 * block-export-add.  @args has been checked against blk_exp_add_schema().
 * Returns the new export (its reference is the registry's), or NULL with
 * @errp set and nothing changed.
 */
BlockExport *blk_exp_add(struct json_object *args, Error **errp)
    TSA_REQUIRES(bql);

BlockExport *blk_exp_find(const char *id) TSA_REQUIRES(bql);
/* Iterate over every export: exp = blk_exp_next(NULL) ... */
BlockExport *blk_exp_next(BlockExport *exp) TSA_REQUIRES(bql);

void blk_exp_ref(BlockExport *exp) TSA_REQUIRES(bql);
/* The last reference schedules the deletion (bottom half, main loop). */
void blk_exp_unref(BlockExport *exp) TSA_REQUIRES(bql);

/* Start removing @exp: disconnect its clients, drop the registry's ref. */
void blk_exp_request_shutdown(BlockExport *exp) TSA_REQUIRES(bql);

/*
 * Shut down every export of @type (NULL: of every type) and wait, running
 * the main loop, until all of them are deleted.
 */
void blk_exp_close_all_type(const char *type)
    TSA_REQUIRES(bql) GRAPH_UNLOCKED;
/* Shut down every export and wait until all are gone (daemon exit). */
void blk_exp_close_all(void) TSA_REQUIRES(bql) GRAPH_UNLOCKED;

/*
 * The AioContext the next client of @exp should run in: round-robin over
 * the export's iothreads when it has several, else the node's current
 * context.
 */
AioContext *blk_exp_next_aio_context(BlockExport *exp) TSA_REQUIRES(bql);

/* query-block-exports: a list of BlockExportInfo (new reference). */
struct json_object *blk_exp_query_all(void) TSA_REQUIRES(bql);

#endif /* BLOCK_EXPORT_H */
