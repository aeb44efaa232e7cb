#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""blockd gives back what it takes: after 10,000 NBD connections and 1,000
blockdev-add/blockdev-del cycles (with and without an export) its open
file descriptors (/proc/PID/fd) are exactly what they were before, and its
resident memory (VmRSS) grew by less than a stated bound.  Each test ends
with `quit` and a clean exit, so that in an ASan build LeakSanitizer
checks the whole run at exit (a leak makes the exit status non-zero, and
the harness checks it is 0).

100 blockdev-mirror jobs one after another (null-co and file nodes,
completed, cancelled before and after READY, some with an NBD export of the
source that the completion switches to the target) give back their fds
and memory the same way."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import assert_eq, main, nbd_available, skip, test  # noqa: E402
from nbdraw import CMD_DISC, CMD_READ, RawClient  # noqa: E402
from nbdserver import NbdDaemon, raw_over_file  # noqa: E402

MiB = 1024 * 1024
KiB = 1024
CONNECTIONS = 10000
CLIENT_THREADS = 4
NODE_CYCLES = 1000
# How long the daemon may take to close what a finished client left.
BOUND = 30
# RSS growth allowed over a whole test.  Freed memory is not always given
# back to the kernel: glibc keeps it in per-thread arenas and at the top of
# the heap, and the first connections of each iothread fill its pools and
# caches for good.  Measured (gcc, glibc 2.36, x86_64, 2 cores): 10,000
# connections +270..960 KiB, 1,000 node cycles +8..16 KiB after a warm-up;
# five rounds of 10,000 connections grew +436, +32, +144, +0, +4 KiB: a
# plateau (allocator caches), not a leak.  What must never
# happen is growth in proportion to the cycles: the bounds allow about 200
# bytes per connection and 1 KiB per node cycle, while the smallest real
# leak (a request structure, a node's options) is larger than that, and a
# connection's receive buffer alone is 256 KiB.
CONN_RSS_BOUND_KIB = 2 * 1024
NODE_RSS_BOUND_KIB = 1024
# Mirror jobs: MIRROR_RSS_BOUND_KIB (see test_100_mirror_jobs_...).
MIRROR_JOBS = 100


def asan_env():
    """The environment for the daemon: LeakSanitizer on (the default on
    Linux, stated so that a caller's ASAN_OPTIONS cannot turn it off
    unnoticed), and no MALLOC_PERTURB_ (meson sets it for tests): glibc
    then writes over every freed block, which makes the allocator's free
    lists resident, and RSS measures them instead of live memory (10,000
    connections: +5.7 MiB with it, +0.3 MiB without)."""
    env = dict(os.environ)
    env.pop('MALLOC_PERTURB_', None)
    opts = env.get('ASAN_OPTIONS', '')
    env['ASAN_OPTIONS'] = (opts + ':' if opts else '') + 'detect_leaks=1'
    return env


def sanitized():
    """True for an ASan (or TSan) build: RSS says nothing there (freed
    memory sits in the sanitizer's quarantine)."""
    with open(harness.blockd_binary(), 'rb') as f:
        data = f.read()
    # The instrumented code calls the runtime's init, linked statically
    # (clang) or not (gcc).
    return b'__asan_init' in data or b'__tsan_init' in data


def fds(pid):
    return sorted(os.listdir(f'/proc/{pid}/fd'), key=int)


def fd_targets(pid):
    out = {}
    for fd in fds(pid):
        try:
            out[fd] = os.readlink(f'/proc/{pid}/fd/{fd}')
        except FileNotFoundError:
            pass
    return out


def nbd_connections(pid, path):
    """The daemon's accepted connections on the UNIX socket @path: in
    /proc/net/unix they carry the listener's path without its listening
    flag (__SO_ACCEPTCON, 0x10000)."""
    inodes = {t[8:-1] for t in fd_targets(pid).values()
              if t.startswith('socket:[')}
    conns = []
    with open('/proc/net/unix') as f:
        for row in f.readlines()[1:]:
            fields = row.split()
            if len(fields) >= 8 and fields[7] == path and \
                    fields[6] in inodes and not int(fields[3], 16) & 0x10000:
                conns.append(fields[6])
    return conns


def wait_no_nbd_connections(pid, path):
    deadline = time.monotonic() + BOUND
    while nbd_connections(pid, path):
        assert time.monotonic() < deadline, \
            f'NBD connections not closed: {nbd_connections(pid, path)}'
        time.sleep(0.01)


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


def wait_fds(pid, baseline, what):
    """Poll (bounded) until the daemon holds exactly the fds it held at
    @baseline (a dict fd -> target); report the difference if not."""
    deadline = time.monotonic() + BOUND
    while True:
        now = fd_targets(pid)
        if sorted(now.values()) == sorted(baseline.values()):
            return
        if time.monotonic() > deadline:
            extra = sorted(set(now.items()) - set(baseline.items()))
            gone = sorted(set(baseline.items()) - set(now.items()))
            raise AssertionError(f'{what}: {len(now)} fds, baseline '
                                 f'{len(baseline)}; extra {extra[:20]}, '
                                 f'gone {gone[:20]}')
        time.sleep(0.01)


def check_rss(pid, before, bound, what):
    after = rss_kib(pid)
    print(f'{what}: VmRSS {before} KiB -> {after} KiB '
          f'({after - before:+d} KiB)')
    if sanitized():
        print('  (sanitizer build: RSS not checked)')
        return
    assert after - before < bound, \
        f'{what}: RSS grew by {after - before} KiB (bound {bound} KiB)'


def start(env, extra=()):
    if not nbd_available(env):
        skip('this blockd has no NBD server')
    image = env.make_image(size=64 * MiB)
    srv = NbdDaemon(env, raw_over_file(image, ',aio=io_uring,cache.direct=on'),
                    writable=False, iothread=['io0', 'io1'],
                    iothreads=('io0', 'io1'), extra=extra,
                    daemon_env=asan_env())
    return srv.daemon, srv.sock


def quit_cleanly(env, d):
    """quit, and a clean exit: under ASan, LeakSanitizer found nothing."""
    d.quit(env.qmp())
    assert 'LeakSanitizer' not in d.stderr, d.stderr


def one_connection(sock, i):
    c = RawClient(sock)
    try:
        size, _ = c.handshake()
        offset = (i * 4096) % size
        c.request(CMD_READ, offset, 4096)
        error, _ = c.reply(4096)
        assert_eq(error, 0, f'connection {i}: read')
        if i % 2:
            c.request(CMD_DISC)     # half leave politely, half just go
    finally:
        c.close()


def connections(sock, n, threads):
    failures = []

    def worker(k):
        try:
            for i in range(k, n, threads):
                one_connection(sock, i)
        except Exception as e:
            failures.append(f'thread {k}: {e!r}')

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not failures, failures


@test
def test_10000_connections_give_back_fds_and_memory(env):
    d, sock = start(env)
    qmp = env.qmp()
    # Warm up: the first connections allocate what stays (thread-local
    # caches, pools of the iothreads' rings), which is not a leak.  The
    # baseline is taken once the daemon has closed every NBD connection
    # (the warm-up's, and the harness's readiness probe).
    connections(sock, 200, CLIENT_THREADS)
    wait_no_nbd_connections(d.pid, sock)
    baseline = fd_targets(d.pid)
    before = rss_kib(d.pid)
    start_t = time.monotonic()
    connections(sock, CONNECTIONS, CLIENT_THREADS)
    print(f'{CONNECTIONS} connections in {time.monotonic() - start_t:.1f} s '
          f'on {CLIENT_THREADS} threads')
    wait_fds(d.pid, baseline, f'after {CONNECTIONS} connections')
    print(f'fds: {len(baseline)} before and after')
    check_rss(d.pid, before, CONN_RSS_BOUND_KIB,
              f'{CONNECTIONS} connections')
    exports = qmp.cmd('query-block-exports')
    assert_eq(exports[0]['x-blockd-clients'], 0, 'clients left')
    quit_cleanly(env, d)


def node_cycle(env, qmp, i, with_export):
    """blockdev-add a file node (raw on top every other time) or a null-co
    node, maybe export it and remove the export, then blockdev-del."""
    kind = i % 3
    if kind == 2:
        qmp.cmd('blockdev-add', driver='null-co', node_name='n0',
                size=MiB)
        top = ['n0']
    else:
        qmp.cmd('blockdev-add', driver='file', node_name='f0',
                filename=env.path('cycle.raw'),
                aio='io_uring' if i % 2 else 'threads')
        top = ['f0']
        if kind == 1:
            qmp.cmd('blockdev-add', driver='raw', node_name='r0', file='f0')
            top = ['r0', 'f0']
    if with_export:
        args = {'type': 'nbd', 'id': 'cyc', 'node_name': top[0],
                'name': 'cyc', 'writable': True}
        if i % 4 == 0:
            args['iothread'] = 'io0'    # the node moves there and back
        qmp.cmd('block-export-add', **args)
        qmp.cmd('block-export-del', id='cyc')
        ev = qmp.event('BLOCK_EXPORT_DELETED')
        assert_eq(ev['data']['id'], 'cyc', 'deleted export')
        qmp.client.events.clear()       # nothing else is waited for
    for name in top:
        qmp.cmd('blockdev-del', node_name=name)


@test
def test_1000_node_cycles_give_back_fds_and_memory(env):
    d, sock = start(env)
    env.make_image('cycle.raw', size=MiB)
    qmp = env.qmp()
    for i in range(30):                         # warm up
        node_cycle(env, qmp, i, with_export=i % 2 == 0)
    baseline = fd_targets(d.pid)
    before = rss_kib(d.pid)
    start_t = time.monotonic()
    for i in range(NODE_CYCLES):
        node_cycle(env, qmp, i, with_export=i % 2 == 0)
    print(f'{NODE_CYCLES} node cycles in {time.monotonic() - start_t:.1f} s')
    wait_fds(d.pid, baseline, f'after {NODE_CYCLES} node cycles')
    print(f'fds: {len(baseline)} before and after')
    check_rss(d.pid, before, NODE_RSS_BOUND_KIB,
              f'{NODE_CYCLES} node cycles')
    nodes = {n['node-name'] for n in qmp.cmd('query-named-block-nodes')}
    assert_eq(nodes, {'file0', 'disk0'}, 'nodes left')
    assert_eq([e['id'] for e in qmp.cmd('query-block-exports')], ['exp0'],
              'exports left')
    quit_cleanly(env, d)


# --- Mirror jobs -------------------------------------------------------------------

def mirror_cycle(env, qmp, i):
    """A mirror of a fresh source node to a fresh target node, 1 MiB of
    data each: null-co or file nodes (raw over file every other file cycle), an NBD
    export of the source every third cycle; completed (i % 4 == 0 or 2),
    force-cancelled after READY (1) or cancelled before READY (3, with a
    speed that keeps it from READY).  Then the export and the nodes go."""
    if i % 2:
        # A source that reads as data, so the job copies it all.
        for n, zeroes in (('src', False), ('tgt', True)):
            qmp.cmd('blockdev-add', driver='null-co', node_name=n, size=MiB,
                    read_zeroes=zeroes)
        nodes = ['src', 'tgt']
    else:
        for n in ('src', 'tgt'):
            qmp.cmd('blockdev-add', driver='file', node_name=n + 'f',
                    filename=env.path(f'mirror-{n}.raw'),
                    aio='io_uring' if i % 4 else 'threads')
            qmp.cmd('blockdev-add', driver='raw', node_name=n, file=n + 'f')
        nodes = ['src', 'tgt', 'srcf', 'tgtf']
    export = i % 3 == 0
    if export:
        qmp.cmd('block-export-add', type='nbd', id='cyc', node_name='src',
                name='cyc', writable=True, iothread='io0')
    kind = i % 4
    args = dict(job_id='mj', device='src', target='tgt', sync='full')
    if kind == 3:
        args['speed'] = 64 * KiB        # 16 s for 1 MiB: never READY here
    qmp.cmd('blockdev-mirror', **args)
    if kind == 3:
        qmp.cmd('job-cancel', id='mj')
    else:
        qmp.event('BLOCK_JOB_READY')
        if kind == 1:
            qmp.cmd('job-cancel', id='mj')
        else:
            qmp.cmd('job-complete', id='mj')
    qmp.job_statuses('mj', 'null')
    if export:
        qmp.cmd('block-export-del', id='cyc')
        qmp.event('BLOCK_EXPORT_DELETED')
    qmp.client.events.clear()           # nothing else is waited for
    for name in nodes:
        qmp.cmd('blockdev-del', node_name=name)


# RSS growth allowed over 100 mirror jobs, after 12 jobs of warm-up.
# Measured (gcc, glibc 2.36, x86_64, 2 cores): 100 jobs +236..240 KiB in
# several runs; 300 jobs +272 KiB, 600 jobs +276 KiB: a plateau (allocator
# arenas of the iothread, coroutine pools), not growth per job.  A job
# allocates its coroutine stacks, two backends, a bitmap, the filter node
# and copy buffers of up to 1 MiB each: keeping one buffer per job would be
# 100 MiB, a coroutine stack per job several MiB, both far past the bound.
# Leaks smaller than ~10 KiB per job are below what RSS can tell from the
# plateau; LeakSanitizer (ASan build, clean exit after quit) catches those.
MIRROR_RSS_BOUND_KIB = 1024


@test
def test_100_mirror_jobs_give_back_fds_and_memory(env):
    d, sock = start(env)
    env.make_image('mirror-tgt.raw', size=MiB)
    with open(env.path('mirror-src.raw'), 'wb') as f:
        f.write(os.urandom(MiB))        # data: every job copies 1 MiB
    qmp = env.qmp()
    for i in range(12):                         # warm up: every kind
        mirror_cycle(env, qmp, i)
    baseline = fd_targets(d.pid)
    before = rss_kib(d.pid)
    start_t = time.monotonic()
    for i in range(MIRROR_JOBS):
        mirror_cycle(env, qmp, i)
    print(f'{MIRROR_JOBS} mirror jobs in {time.monotonic() - start_t:.1f} s')
    wait_fds(d.pid, baseline, f'after {MIRROR_JOBS} mirror jobs')
    print(f'fds: {len(baseline)} before and after')
    check_rss(d.pid, before, MIRROR_RSS_BOUND_KIB,
              f'{MIRROR_JOBS} mirror jobs')
    assert_eq(qmp.cmd('query-jobs'), [], 'jobs left')
    nodes = {n['node-name'] for n in qmp.cmd('query-named-block-nodes')}
    assert_eq(nodes, {'file0', 'disk0'}, 'nodes left')
    assert_eq([e['id'] for e in qmp.cmd('query-block-exports')], ['exp0'],
              'exports left')
    quit_cleanly(env, d)


if __name__ == '__main__':
    main()
