/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The block graph: the graph rwlock across iothreads, drain propagation to
 * parents, permissions and their conflict messages, node replacement, and
 * moving subtrees between AioContexts.  Uses a test driver and a test
 * parent class that count what the graph asks of them.
 */
#include "util/osdep.h"

#include "block-helpers.h"
#include "block/block-global-state.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "util/aio-wait.h"
#include "util/atomic.h"
#include "util/coroutine.h"
#include "util/iothread.h"
#include "util/main-loop.h"

/* --- A test driver: optional "file" child, fixed size ------------------- */

static const OptDesc test_node_opts[] = {
    { "size", OPT_SIZE, .def = "1M" },
    { "file", OPT_NODE },
    { NULL }
};

static int test_node_open(BlockDriverState *bs, struct json_object *options,
                          int flags, Error **errp)
{
    struct json_object *file;

    GLOBAL_STATE_CODE();
    if (json_object_object_get_ex(options, "file", &file)) {
        if (!bdrv_open_child(options, "file", bs,
                             BDRV_CHILD_DATA | BDRV_CHILD_PRIMARY,
                             false, errp)) {
            return -EINVAL;
        }
    }
    bs->total_bytes = opts_get_int(options, "size", 1 << 20);
    return 0;
}

static const BlockDriver test_node_driver = {
    .format_name = "test-node",
    .opts = test_node_opts,
    .bdrv_open = test_node_open,
};

/* --- A test parent -------------------------------------------------------- */

typedef struct TestParent {
    const char *name;
    int begins, ends;       /* main loop */
    int busy;               /* atomic: drained_poll reports true while > 0 */
    bool refuse_move;
    AioContext *ctx;
    int moves;
} TestParent;

static char *tp_desc(BdrvChild *c)
{
    return g_strdup(((TestParent *)c->opaque)->name);
}

static void tp_drained_begin(BdrvChild *c)
{
    ((TestParent *)c->opaque)->begins++;
}

static bool tp_drained_poll(BdrvChild *c)
{
    return qatomic_read(&((TestParent *)c->opaque)->busy) > 0;
}

static void tp_drained_end(BdrvChild *c)
{
    ((TestParent *)c->opaque)->ends++;
}

static bool tp_can_set_ctx(BdrvChild *c, AioContext *ctx, GHashTable *visited,
                           Error **errp)
{
    TestParent *tp = c->opaque;

    if (tp->refuse_move) {
        error_setg(errp, "%s refuses to move", tp->name);
        return false;
    }
    return true;
}

static void tp_set_ctx(BdrvChild *c, AioContext *ctx, GHashTable *visited)
{
    TestParent *tp = c->opaque;

    tp->ctx = ctx;
    tp->moves++;
}

static AioContext *tp_get_ctx(BdrvChild *c)
{
    return ((TestParent *)c->opaque)->ctx;
}

static const BdrvChildClass test_parent_class = {
    .get_parent_desc = tp_desc,
    .drained_begin = tp_drained_begin,
    .drained_poll = tp_drained_poll,
    .drained_end = tp_drained_end,
    .can_set_aio_ctx = tp_can_set_ctx,
    .set_aio_ctx = tp_set_ctx,
    .get_parent_aio_context = tp_get_ctx,
};

static BdrvChild *attach_parent(BlockDriverState *bs, TestParent *tp,
                                uint64_t perm, uint64_t shared, Error **errp)
{
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    tp->ctx = bdrv_get_aio_context(bs);
    bdrv_graph_wrlock();
    c = bdrv_root_attach_child(bs, "root", &test_parent_class,
                               BDRV_CHILD_IMAGE, perm, shared, tp, errp);
    bdrv_graph_wrunlock();
    return c;
}

static void detach_parent(BdrvChild *c)
{
    GLOBAL_STATE_CODE();
    bdrv_graph_wrlock();
    bdrv_root_unref_child(c);
    bdrv_graph_wrunlock();
}

/* --- Graph lock ----------------------------------------------------------- */

typedef struct Reader {
    IOThread *io;
    Coroutine *co;          /* atomic: published when holding the lock */
    int locked;             /* atomic */
    int released;           /* atomic: set by the test to let go */
} Reader;

static void coroutine_fn reader_entry(void *opaque)
{
    Reader *r = opaque;

    bdrv_graph_co_rdlock();
    qatomic_set(&r->locked, 1);
    qatomic_store_release(&r->co, co_self());
    aio_wait_kick();
    co_yield();                     /* until the test wakes us */
    qatomic_set(&r->locked, 0);     /* before: the writer may enter at once */
    bdrv_graph_co_rdunlock();
}

static void start_reader_bh(void *opaque)
{
    co_enter(co_create(reader_entry, opaque));
}

static void start_reader(Reader *r)
{
    aio_bh_schedule_oneshot(iothread_get_aio_context(r->io), start_reader_bh, r);
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&r->co));
}

typedef struct WriterProbe {
    Reader *readers;
    int n;
    bool writer_returned;   /* main loop */
    bool checked;
} WriterProbe;

/* Runs inside bdrv_graph_wrlock()'s wait: the writer must still wait. */
static void writer_probe_bh(void *opaque)
{
    WriterProbe *p = opaque;

    g_assert_false(p->writer_returned);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, p->n);
    for (int i = 0; i < p->n; i++) {
        g_assert_cmpint(qatomic_read(&p->readers[i].locked), ==, 1);
        aio_co_wake(p->readers[i].co);
    }
    p->checked = true;
}

static void test_wrlock_waits_for_readers_in_two_iothreads(void)
{
    Reader r[2] = { { 0 } };
    WriterProbe probe = { .readers = r, .n = 2 };

    GLOBAL_STATE_CODE();
    r[0].io = iothread_create("rd0", 0, &error_abort);
    r[1].io = iothread_create("rd1", 0, &error_abort);
    start_reader(&r[0]);
    start_reader(&r[1]);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 2);

    aio_bh_schedule_oneshot(main_context(), writer_probe_bh, &probe);
    bdrv_graph_wrlock();
    probe.writer_returned = true;
    g_assert_true(probe.checked);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    g_assert_cmpint(qatomic_read(&r[0].locked), ==, 0);
    g_assert_cmpint(qatomic_read(&r[1].locked), ==, 0);
    bdrv_graph_wrunlock();

    iothread_destroy(r[0].io);
    iothread_destroy(r[1].io);
}

/* Runs inside the first writer's wait: a second writer must abort. */
static void nested_writer_bh(void *opaque)
{
    GLOBAL_STATE_CODE();
    bdrv_graph_wrlock();
    bdrv_graph_wrunlock();
}

/*
 * Issue #12, finding 2: a main-loop callback that takes the write lock ran
 * a whole write section inside another writer's wait.  Such callbacks are
 * deferred work now; one that is not is caught at once.
 */
static void test_wrlock_inside_writer_wait_aborts(void)
{
    GLOBAL_STATE_CODE();
    if (g_test_subprocess()) {
        Reader r = { 0 };

        r.io = iothread_create("rd0", 0, &error_abort);
        start_reader(&r);
        aio_bh_schedule_oneshot(main_context(), nested_writer_bh, NULL);
        bdrv_graph_wrlock();        /* waits for r: runs the BH */
        g_assert_not_reached();
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*graph write lock taken inside another write "
                              "section*");
}

static void unref_bh(void *opaque)
{
    GLOBAL_STATE_CODE();
    bdrv_unref(opaque);
}

static int wait_done;

static void wait_done_bh(void *opaque)
{
    wait_done = 1;
}

/* A node freed inside someone's wait is the bug itself: it aborts. */
static void test_node_freed_inside_wait_aborts(void)
{
    GLOBAL_STATE_CODE();
    if (g_test_subprocess()) {
        BlockDriverState *bs = open_node(&error_abort,
            "{\"driver\": \"test-node\", \"node-name\": \"doomed\"}");

        aio_bh_schedule_oneshot(main_context(), unref_bh, bs);
        aio_bh_schedule_oneshot(main_context(), wait_done_bh, NULL);
        AIO_WAIT_WHILE(NULL, !wait_done);
        g_assert_not_reached();
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDIN);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*node 'doomed' freed inside a main-loop wait*");
}

/* The same unref as deferred work runs after the wait, at a safe point. */
static void test_node_unref_deferred_runs_after_wait(void)
{
    BlockDriverState *bs;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"later\"}");
    wait_done = 0;
    aio_wait_defer(unref_bh, bs);
    aio_bh_schedule_oneshot(main_context(), wait_done_bh, NULL);
    AIO_WAIT_WHILE(NULL, !wait_done);
    g_assert_true(bdrv_find_node("later") == bs);
    AIO_WAIT_WHILE_RUNNING_DEFERRED(bdrv_find_node("later") != NULL);
}

typedef struct LateReader {
    int attempting;         /* atomic */
    int acquired;           /* atomic */
} LateReader;

static void coroutine_fn late_reader_entry(void *opaque)
{
    LateReader *lr = opaque;

    qatomic_set(&lr->attempting, 1);
    bdrv_graph_co_rdlock();
    qatomic_set(&lr->acquired, 1);
    bdrv_graph_co_rdunlock();
    aio_wait_kick();
}

static void start_late_reader_bh(void *opaque)
{
    co_enter(co_create(late_reader_entry, opaque));
}

static void test_reader_waits_for_writer(void)
{
    GLOBAL_STATE_CODE();
    IOThread *io = iothread_create("late", 0, &error_abort);
    LateReader lr = { 0 };

    bdrv_graph_wrlock();
    aio_bh_schedule_oneshot(iothread_get_aio_context(io),
                            start_late_reader_bh, &lr);
    /* Not polling the graph: just waiting for the reader to park. */
    while (!bdrv_graph_waiting_readers()) {
        g_assert_cmpint(qatomic_read(&lr.acquired), ==, 0);
        g_thread_yield();
    }
    g_assert_cmpint(qatomic_read(&lr.acquired), ==, 0);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    bdrv_graph_wrunlock();
    AIO_WAIT_WHILE(NULL, !qatomic_read(&lr.acquired));
    iothread_destroy(io);
}

typedef struct Migrant {
    AioContext *from, *to;
    int done;               /* atomic */
} Migrant;

static void coroutine_fn migrant_entry(void *opaque)
{
    Migrant *m = opaque;

    aio_co_reschedule_self(m->from);
    bdrv_graph_co_rdlock();
    aio_co_reschedule_self(m->to);
    bdrv_graph_co_rdunlock();
    aio_co_reschedule_self(main_context());
    qatomic_set(&m->done, 1);
}

static void test_reader_migrates_between_contexts(void)
{
    GLOBAL_STATE_CODE();
    IOThread *a = iothread_create("mig0", 0, &error_abort);
    IOThread *b = iothread_create("mig1", 0, &error_abort);
    Migrant m = {
        .from = iothread_get_aio_context(a),
        .to = iothread_get_aio_context(b),
    };

    co_enter(co_create(migrant_entry, &m));
    AIO_WAIT_WHILE(NULL, !qatomic_read(&m.done));
    /* +1 in one context, -1 in the other: balanced. */
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    bdrv_graph_wrlock();
    bdrv_graph_wrunlock();
    iothread_destroy(a);
    iothread_destroy(b);
}

typedef struct Orphan {
    IOThread *dying;
    AioContext *survivor;
    Coroutine *co;          /* atomic */
    int moved;              /* atomic */
    int done;               /* atomic */
} Orphan;

static void coroutine_fn orphan_entry(void *opaque)
{
    Orphan *o = opaque;

    aio_co_reschedule_self(iothread_get_aio_context(o->dying));
    bdrv_graph_co_rdlock();
    aio_co_reschedule_self(o->survivor);
    qatomic_set(&o->moved, 1);
    qatomic_store_release(&o->co, co_self());
    aio_wait_kick();
    co_yield();             /* hold the lock until the test wakes us */
    bdrv_graph_co_rdunlock();
    qatomic_set(&o->done, 1);
    aio_wait_kick();
}

static void test_dying_context_hands_off_count(void)
{
    GLOBAL_STATE_CODE();
    IOThread *survivor = iothread_create("survivor", 0, &error_abort);
    Orphan o = {
        .dying = iothread_create("dying", 0, &error_abort),
        .survivor = iothread_get_aio_context(survivor),
    };

    co_enter(co_create(orphan_entry, &o));
    AIO_WAIT_WHILE(NULL, !qatomic_load_acquire(&o.co));
    /* Locked in "dying", still held: the count must survive its death. */
    iothread_destroy(o.dying);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 1);
    aio_co_wake(o.co);
    AIO_WAIT_WHILE(NULL, !qatomic_read(&o.done));
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    iothread_destroy(survivor);
}

/*
 * Readers driven by hand from the test thread, in two contexts that no
 * thread runs: making a context current and entering the coroutine is
 * what running it in that context's thread would do.  The writer's sum
 * calls a hook after reading each context, so a reader can lock and
 * unlock exactly between two reads.
 */
typedef struct HandReaders {
    AioContext *a, *b;
    Coroutine *holder;      /* locked in a, until released */
    bool holder_released;
    bool migrated;          /* the migrant came and went inside a sum */
    bool writer_returned;
    bool released_while_writer_waited;
} HandReaders;

static void enter_in(AioContext *ctx, Coroutine *co)
{
    AioContext *home = aio_get_current_context();

    aio_context_set_current(ctx);
    co_enter(co);
    aio_context_set_current(home);
}

/* Lock, yield (the test moves us), unlock. */
static void coroutine_fn hand_reader_entry(void *opaque)
{
    bdrv_graph_co_rdlock();
    co_yield();
    bdrv_graph_co_rdunlock();
}

static void hand_readers_init(HandReaders *h)
{
    *h = (HandReaders) {
        .a = aio_context_new("hand-a", &error_abort),
        .b = aio_context_new("hand-b", &error_abort),
    };
}

static void destroy_in(AioContext *ctx)
{
    AioContext *home = aio_get_current_context();

    aio_context_set_current(ctx);
    aio_context_destroy(ctx);
    aio_context_set_current(home);
}

static void hand_readers_cleanup(HandReaders *h)
{
    bdrv_graph_set_reader_count_hook(NULL, NULL);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    destroy_in(h->a);
    destroy_in(h->b);
}

/*
 * Runs inside the sum, after @read has been read: the first time it is
 * one of ours, the other one has not been read yet.  A reader locks in
 * @read and unlocks in the other: the sum sees its -1 and not its +1.
 */
static void migrate_between_reads(AioContext *read, void *opaque)
{
    HandReaders *h = opaque;
    Coroutine *co;

    if (h->migrated || (read != h->a && read != h->b)) {
        return;
    }
    h->migrated = true;
    co = co_create(hand_reader_entry, NULL);
    enter_in(read, co);                         /* locks in @read */
    enter_in(read == h->a ? h->b : h->a, co);   /* unlocks in the other */
}

/*
 * While the writer polls (has_writer clear), the sum can be negative: it
 * means "not zero yet", not a broken invariant.
 */
static void test_negative_sum_while_polling(void)
{
    HandReaders h;

    GLOBAL_STATE_CODE();
    hand_readers_init(&h);
    bdrv_graph_set_reader_count_hook(migrate_between_reads, &h);
    bdrv_graph_wrlock();
    g_assert_true(h.migrated);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    bdrv_graph_wrunlock();
    hand_readers_cleanup(&h);
}

/* A main-loop bottom half, so it runs only while the writer polls. */
static void release_holder_bh(void *opaque)
{
    HandReaders *h = opaque;

    h->released_while_writer_waited = !h->writer_returned;
    h->holder_released = true;
    enter_in(h->a, h->holder);                  /* unlocks in a */
}

/*
 * A reader holds the lock while another comes and goes inside the sum:
 * the polling sum reads 0 with a reader inside.  The writer must not
 * take that for "no readers": the re-check with has_writer set sees the
 * holder, and the writer goes on waiting until the holder leaves.
 */
static void test_transient_zero_keeps_writer_out(void)
{
    HandReaders h;

    GLOBAL_STATE_CODE();
    hand_readers_init(&h);
    h.holder = co_create(hand_reader_entry, NULL);
    enter_in(h.a, h.holder);                    /* locks in a, holds */
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 1);

    aio_bh_schedule_oneshot(main_context(), release_holder_bh, &h);
    bdrv_graph_set_reader_count_hook(migrate_between_reads, &h);
    bdrv_graph_wrlock();
    h.writer_returned = true;
    g_assert_true(h.migrated);
    g_assert_true(h.holder_released);
    g_assert_true(h.released_while_writer_waited);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    bdrv_graph_wrunlock();
    hand_readers_cleanup(&h);
}

typedef struct LockStress {
    int writer_active;      /* atomic */
    int violations;         /* atomic */
    int stop;               /* atomic */
    int running;            /* atomic: reader coroutines alive */
    long reads;             /* atomic */
} LockStress;

static void coroutine_fn stress_reader_entry(void *opaque)
{
    LockStress *s = opaque;

    while (!qatomic_read(&s->stop)) {
        bdrv_graph_co_rdlock();
        if (qatomic_read(&s->writer_active)) {
            qatomic_inc(&s->violations);
        }
        co_yield_to_loop:
        aio_co_reschedule_self(aio_get_current_context());
        if (qatomic_read(&s->writer_active)) {
            qatomic_inc(&s->violations);
        }
        bdrv_graph_co_rdunlock();
        qatomic_inc(&s->reads);
        /* Let the loop run (and the writer in) between iterations. */
        aio_bh_schedule_oneshot(aio_get_current_context(),
                                (AioBHFunc *)aio_co_wake, co_self());
        co_yield();
        (void)&&co_yield_to_loop;
    }
    qatomic_dec(&s->running);
    aio_wait_kick();
}

static void start_stress_readers_bh(void *opaque)
{
    for (int i = 0; i < 4; i++) {
        co_enter(co_create(stress_reader_entry, opaque));
    }
}

static void test_rwlock_stress(void)
{
    IOThread *io[2];
    LockStress s = { .running = 8 };
    int rounds = 300 * stress_iterations();

    GLOBAL_STATE_CODE();
    io[0] = iothread_create("st0", 0, &error_abort);
    io[1] = iothread_create("st1", 0, &error_abort);
    for (int i = 0; i < 2; i++) {
        aio_bh_schedule_oneshot(iothread_get_aio_context(io[i]),
                                start_stress_readers_bh, &s);
    }
    for (int i = 0; i < rounds; i++) {
        bdrv_graph_wrlock();
        qatomic_set(&s.writer_active, 1);
        g_thread_yield();
        qatomic_set(&s.writer_active, 0);
        bdrv_graph_wrunlock();
        /* Let readers in between writers. */
        AIO_WAIT_WHILE(NULL, qatomic_read(&s.reads) < i);
    }
    qatomic_set(&s.stop, 1);
    AIO_WAIT_WHILE(NULL, qatomic_read(&s.running) > 0);
    g_assert_cmpint(s.violations, ==, 0);
    g_assert_cmpint(bdrv_graph_reader_count(), ==, 0);
    iothread_destroy(io[0]);
    iothread_destroy(io[1]);
}

/* --- Drain ------------------------------------------------------------------ */

static void test_drain_quiesces_parents_once(void)
{
    BlockDriverState *bs;
    TestParent tp = { .name = "tp" };
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"d0\"}");
    c = attach_parent(bs, &tp, 0, BLK_PERM_ALL, &error_abort);
    bdrv_drained_begin(bs);
    bdrv_drained_begin(bs);     /* nested: the parent is told once */
    g_assert_cmpint(tp.begins, ==, 1);
    g_assert_true(c->quiesced_parent);
    bdrv_drained_end(bs);
    g_assert_cmpint(tp.ends, ==, 0);
    bdrv_drained_end(bs);
    g_assert_cmpint(tp.ends, ==, 1);
    g_assert_false(c->quiesced_parent);

    detach_parent(c);
    bdrv_unref(bs);
}

static void test_drain_propagates_up_through_nodes(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *top = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"top\", \"file\": "
        "{\"driver\": \"test-node\", \"node-name\": \"bottom\"}}");
    BlockDriverState *bottom = bdrv_find_node("bottom");
    TestParent tp = { .name = "tp" };
    BdrvChild *c = attach_parent(top, &tp, 0, BLK_PERM_ALL, &error_abort);

    g_assert_nonnull(bottom);
    bdrv_drained_begin(bottom);
    g_assert_cmpint(qatomic_read(&top->quiesce_counter), ==, 1);
    g_assert_cmpint(tp.begins, ==, 1);
    bdrv_drained_end(bottom);
    g_assert_cmpint(qatomic_read(&top->quiesce_counter), ==, 0);
    g_assert_cmpint(tp.ends, ==, 1);

    detach_parent(c);
    bdrv_unref(top);
    /* The implicit child went away with its parent. */
    g_assert_null(bdrv_find_node("bottom"));
}

static void test_attach_to_drained_node_quiesces(void)
{
    BlockDriverState *bs;
    TestParent tp = { .name = "late" };
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"d1\"}");
    bdrv_drained_begin(bs);
    c = attach_parent(bs, &tp, 0, BLK_PERM_ALL, &error_abort);
    g_assert_cmpint(tp.begins, ==, 1);
    detach_parent(c);           /* detaching releases it at once */
    g_assert_cmpint(tp.ends, ==, 1);
    bdrv_drained_end(bs);
    bdrv_unref(bs);
}

typedef struct BusyRelease {
    TestParent *tp;
    bool drain_returned;
} BusyRelease;

static void busy_release_bh(void *opaque)
{
    BusyRelease *b = opaque;

    g_assert_false(b->drain_returned);
    qatomic_set(&b->tp->busy, 0);
    aio_wait_kick();
}

static void iothread_release_bh(void *opaque)
{
    /* Hop back: the release happens in the main loop, from an iothread. */
    aio_bh_schedule_oneshot(main_context(), busy_release_bh, opaque);
}

static void test_drain_waits_for_busy_parent(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"d2\"}");
    IOThread *io = iothread_create("rel", 0, &error_abort);
    TestParent tp = { .name = "busy", .busy = 1 };
    BusyRelease b = { .tp = &tp };
    BdrvChild *c = attach_parent(bs, &tp, 0, BLK_PERM_ALL, &error_abort);

    aio_bh_schedule_oneshot(iothread_get_aio_context(io), iothread_release_bh,
                            &b);
    bdrv_drained_begin(bs);
    b.drain_returned = true;
    g_assert_cmpint(qatomic_read(&tp.busy), ==, 0);
    bdrv_drained_end(bs);
    detach_parent(c);
    bdrv_unref(bs);
    iothread_destroy(io);
}

static void test_drain_all(void)
{
    BlockDriverState *a, *b, *late;
    TestParent ta = { .name = "ta" }, tb = { .name = "tb" };
    BdrvChild *ca, *cb;

    GLOBAL_STATE_CODE();
    a = open_node(&error_abort,
                  "{\"driver\": \"test-node\", \"node-name\": \"da\"}");
    b = open_node(&error_abort,
                  "{\"driver\": \"test-node\", \"node-name\": \"db\"}");
    ca = attach_parent(a, &ta, 0, BLK_PERM_ALL, &error_abort);
    cb = attach_parent(b, &tb, 0, BLK_PERM_ALL, &error_abort);
    /* Attaching took the write lock, which quiesces too: start from 0. */
    ta.begins = ta.ends = tb.begins = tb.ends = 0;
    bdrv_drain_all_begin();
    g_assert_cmpint(ta.begins, ==, 1);
    g_assert_cmpint(tb.begins, ==, 1);
    /* A node created during drain_all starts drained. */
    late = open_node(&error_abort,
                     "{\"driver\": \"test-node\", \"node-name\": \"dc\"}");
    g_assert_cmpint(qatomic_read(&late->quiesce_counter), ==, 1);
    bdrv_drain_all_end();
    g_assert_cmpint(ta.ends, ==, 1);
    g_assert_cmpint(tb.ends, ==, 1);
    g_assert_cmpint(qatomic_read(&late->quiesce_counter), ==, 0);

    detach_parent(ca);
    detach_parent(cb);
    bdrv_unref(a);
    bdrv_unref(b);
    bdrv_unref(late);
}

typedef struct CoDrain {
    BlockDriverState *bs;
    TestParent *tp;
    int begins_seen;
    int done;               /* atomic */
} CoDrain;

static void coroutine_fn co_drain_entry(void *opaque)
{
    CoDrain *d = opaque;

    bdrv_drained_begin(d->bs);      /* bounced to the main loop */
    d->begins_seen = d->tp->begins;
    bdrv_drained_end(d->bs);
    qatomic_set(&d->done, 1);
    aio_wait_kick();
}

static void test_drain_from_coroutine_in_iothread(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"d3\"}");
    IOThread *io = iothread_create("codrain", 0, &error_abort);
    TestParent tp = { .name = "tp" };
    BdrvChild *c = attach_parent(bs, &tp, 0, BLK_PERM_ALL, &error_abort);
    CoDrain d = { .bs = bs, .tp = &tp };

    aio_co_enter(iothread_get_aio_context(io), co_create(co_drain_entry, &d));
    AIO_WAIT_WHILE(NULL, !qatomic_read(&d.done));
    g_assert_cmpint(d.begins_seen, ==, 1);
    g_assert_cmpint(tp.ends, ==, 1);
    detach_parent(c);
    bdrv_unref(bs);
    iothread_destroy(io);
}

/* --- Permissions ----------------------------------------------------------- */

static void test_perm_conflict_names_both_users(void)
{
    BlockDriverState *bs;
    TestParent exp0 = { .name = "exp0" }, exp1 = { .name = "exp1" };
    BdrvChild *c0, *c1;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"file0\"}");
    /* exp0 writes and lets nobody else write. */
    c0 = attach_parent(bs, &exp0, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                       BLK_PERM_ALL & ~BLK_PERM_WRITE, &error_abort);
    c1 = attach_parent(bs, &exp1, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                       BLK_PERM_ALL, &err);
    g_assert_null(c1);
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Conflicts with use by exp0 as 'root', which does not "
                    "allow 'write' on file0");
    error_free(err);
    err = NULL;

    /* A reader that shares everything is fine. */
    c1 = attach_parent(bs, &exp1, BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL,
                       &error_abort);
    /* exp1 may not stop sharing write while exp0 writes. */
    bdrv_graph_rdlock_main_loop();
    g_assert_cmpint(bdrv_child_try_set_perm(c1, BLK_PERM_CONSISTENT_READ,
                                            BLK_PERM_ALL & ~BLK_PERM_WRITE,
                                            &err), <, 0);
    bdrv_graph_rdunlock_main_loop();
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Conflicts with use by exp1 as 'root', which does not "
                    "allow 'write' on file0");
    error_free(err);
    /* Nothing changed on failure. */
    g_assert_cmpuint(c1->shared_perm, ==, BLK_PERM_ALL);

    /* Once exp0 is gone, the writer can come. */
    detach_parent(c0);
    c0 = attach_parent(bs, &exp0, BLK_PERM_WRITE, BLK_PERM_ALL, &error_abort);
    detach_parent(c0);
    detach_parent(c1);
    bdrv_unref(bs);
}

static void test_perm_read_only_node_refuses_write(void)
{
    BlockDriverState *bs;
    TestParent tp = { .name = "writer" };
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"ro0\", "
        "\"read-only\": true}");
    g_assert_null(attach_parent(bs, &tp, BLK_PERM_WRITE, BLK_PERM_ALL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Block node 'ro0' is read-only: cannot take permission "
                    "'write'");
    error_free(err);
    bdrv_unref(bs);
}

static void test_perm_propagates_to_child(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *top = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"ptop\", \"file\": "
        "{\"driver\": \"test-node\", \"node-name\": \"pbottom\"}}");
    BlockDriverState *bottom = bdrv_find_node("pbottom");
    TestParent tp = { .name = "exp" };
    BdrvChild *c = attach_parent(top, &tp,
                                 BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE,
                                 BLK_PERM_ALL & ~BLK_PERM_RESIZE,
                                 &error_abort);

    g_assert_cmpuint(bottom->total_perm & BLK_PERM_WRITE, ==, BLK_PERM_WRITE);
    g_assert_cmpuint(bottom->total_shared & BLK_PERM_RESIZE, ==, 0);
    detach_parent(c);
    g_assert_cmpuint(bottom->total_perm, ==, 0);
    bdrv_unref(top);
}

/* --- Options and names ------------------------------------------------------ */

static void test_open_errors_name_the_key(void)
{
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    g_assert_null(open_node(&err,
        "{\"driver\": \"test-node\", \"node-name\": \"x\", "
        "\"cache\": {\"direct\": 1}}"));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "'cache.direct': expected boolean");
    error_free(err);
    err = NULL;

    g_assert_null(open_node(&err,
        "{\"driver\": \"test-node\", \"node-name\": \"x\", \"file\": "
        "{\"driver\": \"test-node\", \"bogus\": true}}"));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "'file.bogus': unexpected parameter");
    error_free(err);
    err = NULL;

    g_assert_null(open_node(&err,
        "{\"driver\": \"test-node\"}"));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "'node-name' must be specified for the root node");
    error_free(err);
    err = NULL;

    g_assert_null(open_node(&err,
        "{\"driver\": \"test-node\", \"node-name\": \"1bad\"}"));
    g_assert_cmpstr(error_get_pretty(err), ==, "Invalid node-name: '1bad'");
    error_free(err);
    err = NULL;

    g_assert_null(open_node(&err,
        "{\"driver\": \"test-node\", \"node-name\": \"x\", "
        "\"file\": \"nosuchnode\"}"));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "'file': no node named 'nosuchnode'");
    error_free(err);
    /* Nothing was left behind by the failures. */
    g_assert_null(bdrv_next_node(NULL));
}

static void test_open_duplicate_name_refused(void)
{
    BlockDriverState *bs;
    Error *err = NULL;

    GLOBAL_STATE_CODE();
    bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"dup\"}");
    g_assert_null(open_node(&err,
        "{\"driver\": \"test-node\", \"node-name\": \"dup\"}"));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Duplicate nodes with node-name='dup'");
    error_free(err);
    bdrv_unref(bs);
}

/* --- Replacing nodes ------------------------------------------------------- */

static void test_replace_node_inserts_filter(void)
{
    BlockDriverState *base, *filter;
    TestParent tp = { .name = "user" };
    BdrvChild *c;

    GLOBAL_STATE_CODE();
    base = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"base\"}");
    c = attach_parent(base, &tp, BLK_PERM_WRITE, BLK_PERM_ALL, &error_abort);
    filter = open_node(&error_abort,
                       "{\"driver\": \"test-node\", \"node-name\": \"flt\", "
                       "\"file\": \"base\"}");
    g_assert_cmpint(bdrv_replace_node(base, filter, &error_abort), ==, 0);
    bdrv_graph_rdlock_main_loop();
    g_assert_true(c->bs == filter);
    g_assert_true(filter->file->bs == base);
    bdrv_graph_rdunlock_main_loop();
    /* The user's write permission reached the base through the filter. */
    g_assert_cmpuint(base->total_perm & BLK_PERM_WRITE, ==, BLK_PERM_WRITE);

    /* And out again. */
    g_assert_cmpint(bdrv_replace_node(filter, base, &error_abort), ==, 0);
    bdrv_graph_rdlock_main_loop();
    g_assert_true(c->bs == base);
    bdrv_graph_rdunlock_main_loop();
    bdrv_unref(filter);
    g_assert_null(bdrv_find_node("flt"));
    detach_parent(c);
    bdrv_unref(base);
}

/* --- AioContext moves ------------------------------------------------------ */

static void test_move_subtree_with_parent(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *top = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"mtop\", \"file\": "
        "{\"driver\": \"test-node\", \"node-name\": \"mbottom\"}}");
    BlockDriverState *bottom = bdrv_find_node("mbottom");
    IOThread *io = iothread_create("mv", 0, &error_abort);
    AioContext *ctx = iothread_get_aio_context(io);
    TestParent tp = { .name = "tp" };
    BdrvChild *c = attach_parent(top, &tp, 0, BLK_PERM_ALL, &error_abort);

    /* Asking through the bottom node moves the whole component. */
    g_assert_cmpint(bdrv_try_change_aio_context(bottom, ctx, NULL,
                                                &error_abort), ==, 0);
    g_assert_true(bdrv_get_aio_context(top) == ctx);
    g_assert_true(bdrv_get_aio_context(bottom) == ctx);
    g_assert_true(tp.ctx == ctx);
    g_assert_cmpint(tp.moves, ==, 1);
    /* Drained while moving, released after. */
    g_assert_cmpint(tp.begins, ==, tp.ends);

    g_assert_cmpint(bdrv_try_change_aio_context(top, main_context(), NULL,
                                                &error_abort), ==, 0);
    g_assert_true(bdrv_get_aio_context(bottom) == main_context());
    detach_parent(c);
    bdrv_unref(top);
    iothread_destroy(io);
}

static void test_move_refused_by_parent_changes_nothing(void)
{
    GLOBAL_STATE_CODE();
    BlockDriverState *bs = open_node(&error_abort,
        "{\"driver\": \"test-node\", \"node-name\": \"fixed\"}");
    IOThread *io = iothread_create("nomv", 0, &error_abort);
    TestParent tp = { .name = "exp0", .refuse_move = true };
    BdrvChild *c = attach_parent(bs, &tp, 0, BLK_PERM_ALL, &error_abort);
    Error *err = NULL;

    g_assert_cmpint(bdrv_try_change_aio_context(
                        bs, iothread_get_aio_context(io), NULL, &err), <, 0);
    g_assert_cmpstr(error_get_pretty(err), ==, "exp0 refuses to move");
    error_free(err);
    g_assert_true(bdrv_get_aio_context(bs) == main_context());
    g_assert_cmpint(tp.moves, ==, 0);
    detach_parent(c);
    bdrv_unref(bs);
    iothread_destroy(io);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    main_loop_init();
    GLOBAL_STATE_CODE();        /* main_loop_init() took the BQL */
    bdrv_init();
    bdrv_register(&test_node_driver);

    g_test_add_func("/graph-lock/wrlock-waits-for-readers-in-two-iothreads",
                    test_wrlock_waits_for_readers_in_two_iothreads);
    g_test_add_func("/graph-lock/reader-waits-for-writer",
                    test_reader_waits_for_writer);
    g_test_add_func("/graph-lock/reader-migrates-between-contexts",
                    test_reader_migrates_between_contexts);
    g_test_add_func("/graph-lock/dying-context-hands-off-count",
                    test_dying_context_hands_off_count);
    g_test_add_func("/graph-lock/negative-sum-while-polling",
                    test_negative_sum_while_polling);
    g_test_add_func("/graph-lock/transient-zero-keeps-writer-out",
                    test_transient_zero_keeps_writer_out);
    g_test_add_func("/graph-lock/stress", test_rwlock_stress);
    g_test_add_func("/graph-lock/wrlock-inside-writer-wait-aborts",
                    test_wrlock_inside_writer_wait_aborts);
    g_test_add_func("/graph/node-freed-inside-wait-aborts",
                    test_node_freed_inside_wait_aborts);
    g_test_add_func("/graph/node-unref-deferred-runs-after-wait",
                    test_node_unref_deferred_runs_after_wait);
    g_test_add_func("/drain/quiesces-parents-once",
                    test_drain_quiesces_parents_once);
    g_test_add_func("/drain/propagates-up-through-nodes",
                    test_drain_propagates_up_through_nodes);
    g_test_add_func("/drain/attach-to-drained-node-quiesces",
                    test_attach_to_drained_node_quiesces);
    g_test_add_func("/drain/waits-for-busy-parent",
                    test_drain_waits_for_busy_parent);
    g_test_add_func("/drain/all", test_drain_all);
    g_test_add_func("/drain/from-coroutine-in-iothread",
                    test_drain_from_coroutine_in_iothread);
    g_test_add_func("/perm/conflict-names-both-users",
                    test_perm_conflict_names_both_users);
    g_test_add_func("/perm/read-only-node-refuses-write",
                    test_perm_read_only_node_refuses_write);
    g_test_add_func("/perm/propagates-to-child",
                    test_perm_propagates_to_child);
    g_test_add_func("/open/errors-name-the-key",
                    test_open_errors_name_the_key);
    g_test_add_func("/open/duplicate-name-refused",
                    test_open_duplicate_name_refused);
    g_test_add_func("/replace/inserts-and-removes-filter",
                    test_replace_node_inserts_filter);
    g_test_add_func("/aio-context/move-subtree-with-parent",
                    test_move_subtree_with_parent);
    g_test_add_func("/aio-context/refused-by-parent-changes-nothing",
                    test_move_refused_by_parent_changes_nothing);
    return g_test_run();
}
