#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The graph changes under an NBD export while fio writes through it and
verifies what it wrote: the exported node moves between iothreads and the
main loop (x-blockdev-set-iothread), a raw node and a filter above it
come and go (blockdev-add / blockdev-del), and so does a second export of
it, over and over.  With an export that follows its node from one event loop to
another, and with a multiqueue export (two iothreads, four connections).
fio's verification must be clean, every graph change must succeed, and
the daemon must exit 0.

    test_nbd_concurrency.py [--server=blockd|qsd] [TEST ...]

--server=qsd runs the same checks against qemu-storage-daemon (which has
no multiqueue NBD exports: those tests are skipped there; 7.2 aborts when
a client leaves an export in an iothread, and when blockdev-add attaches
to a node in an iothread).  The environment variable BLOCKD_TEST_SERVER
does the same.  BLOCKD_TEST_RUNTIME sets how long fio runs (seconds,
default 5).
"""

import json
import os
import signal
import subprocess
import time

from harness import (QMPError, SkipTest, assert_eq, main, require_program,
                     skip, test)
from nbdserver import (SERVER, NbdDaemon, check_server, raw_over_file,
                       server_binary)

require_program('fio')

MiB = 1024 * 1024
IMAGE_SIZE = 64 * MiB
RUNTIME = int(os.environ.get('BLOCKD_TEST_RUNTIME', '5'))
# Graph changes that must at least happen while fio runs.
MIN_ROUNDS = 20

def check_fio():
    r = subprocess.run(['fio', '--enghelp=nbd'], capture_output=True,
                       text=True)
    if r.returncode != 0 or 'uri' not in r.stdout:
        skip('fio lacks the nbd engine')


def start_daemon(env, export_iothreads):
    """A 64 MiB image exported as 'disk'; iothreads io0 and io1."""
    image = env.make_image(size=IMAGE_SIZE)
    if len(export_iothreads) == 1:
        export_iothreads = export_iothreads[0]
    srv = NbdDaemon(env, raw_over_file(image, ',aio=io_uring,cache.direct=on'),
                    iothread=export_iothreads, qsd_iothread=True,
                    iothreads=('io0', 'io1'), binary=server_binary())
    return srv.daemon, srv.uri


def start_fio(env, uri, jobs):
    """fio writing @jobs regions of 16 MiB, one connection each, verifying
    as it goes (verify_backlog) for RUNTIME seconds."""
    out = open(env.path('fio.json'), 'w+')
    proc = subprocess.Popen(
        ['fio', '--name=under-graph-changes', '--ioengine=nbd',
         f'--uri={uri}', '--rw=randwrite', '--bsrange=4k-64k',
         '--iodepth=16', '--size=16M', f'--numjobs={jobs}',
         '--offset_increment=16M', '--verify=crc32c', '--verify_fatal=1',
         '--verify_backlog=64', '--verify_state_save=0', '--time_based',
         f'--runtime={RUNTIME}',
         '--group_reporting', '--output-format=json'],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=env.dir, start_new_session=True)
    return proc, out


def kill_fio(proc):
    """Kill fio and its job processes (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def finish_fio(proc, out, jobs):
    """Wait for fio; its verification must be clean."""
    try:
        rc = proc.wait(timeout=RUNTIME + 120)
    except subprocess.TimeoutExpired:
        kill_fio(proc)
        raise AssertionError('fio did not finish')
    out.seek(0)
    text = out.read()
    out.close()
    if rc != 0 or 'verify' in text.split('{', 1)[0]:
        raise AssertionError(f'fio exited with {rc}:\n{text[:4000]}')
    result = json.loads(text[text.index('{'):])
    job = result['jobs'][0]
    assert_eq(job['error'], 0, 'fio error')
    assert job['write']['io_bytes'] > 0, 'fio wrote nothing'
    assert job['read']['io_bytes'] > 0, 'fio verified nothing'
    return job


def connected_clients(qmp):
    """Connections the export reports (blockd's x-blockd-clients), or None
    when the server does not say (QSD)."""
    for e in qmp.cmd('query-block-exports'):
        if e['id'] == 'exp0':
            return e.get('x-blockd-clients')
    raise AssertionError('export exp0 is gone')


def wait_connections(qmp, proc, jobs):
    """Bounded poll until fio's @jobs connections are up (when the server
    reports them), so that the graph changes happen under I/O."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        n = connected_clients(qmp)
        if n is None or n >= jobs:
            return
        time.sleep(0.01)
    raise AssertionError(f'fio did not connect {jobs} times')


# Graph changes, each a QMP command that must succeed.

def move(iothread):
    def step(qmp):
        # force: the export's BlockBackend uses disk0 (QEMU's guard).
        qmp.cmd('x-blockdev-set-iothread', node_name='disk0',
                iothread=iothread, force=True)
    step.__name__ = f'move to {iothread or "the main loop"}'
    return step


def add_parent(qmp):
    qmp.cmd('blockdev-add', driver='raw', node_name='top', file='disk0')


def del_parent(qmp):
    qmp.cmd('blockdev-del', node_name='top')


def qmp_call(qmp, command, args):
    """QMP.cmd for arguments it cannot take as keywords ('name')."""
    resp = qmp.cmd_raw(command, args)
    if 'error' in resp:
        raise QMPError(resp['error']['class'], resp['error']['desc'])
    return resp['return']


def add_filter(qmp):
    """A filter above the exported node (blkdebug without rules)."""
    qmp.cmd('blockdev-add', driver='blkdebug', node_name='filter',
            image='disk0')


def del_filter(qmp):
    qmp.cmd('blockdev-del', node_name='filter')


def add_export(qmp):
    """A second export of the node: another parent, read-only."""
    qmp_call(qmp, 'block-export-add',
             {'type': 'nbd', 'id': 'exp1', 'node-name': 'disk0',
              'name': 'second', 'writable': False})


def del_export(qmp):
    """Delete exp1 and wait until it is gone (deletion is asynchronous)."""
    qmp.cmd('block-export-del', id='exp1')
    while True:
        ev = qmp.event('BLOCK_EXPORT_DELETED')
        if ev['data']['id'] == 'exp1':
            return


MOVES = [move('io0'), move('io1'), move(None), move('io1'), move('io0'),
         move(None)]
PARENT = [add_parent, del_parent]
EXPORT = [add_export, del_export]


def churn(d, qmp, proc, steps):
    """Run @steps in a loop until fio ends; the number of rounds."""
    rounds = 0
    while proc.poll() is None:
        for step in steps:
            try:
                step(qmp)
            except Exception as e:
                raise AssertionError(f'round {rounds + 1}, '
                                     f'{step.__name__}: {e}') from None
        rounds += 1
        if not d.running:
            raise AssertionError(f'the daemon died after {rounds} rounds')
    return rounds


def run_under_fio(env, export_iothreads, jobs, steps, end_nodes=None):
    """Start the daemon, run fio with @jobs connections, loop @steps while
    it runs; fio's verification must pass and the daemon must exit 0."""
    d, uri = start_daemon(env, export_iothreads)
    qmp = env.qmp()
    proc, out = start_fio(env, uri, jobs)
    try:
        wait_connections(qmp, proc, jobs)
        rounds = churn(d, qmp, proc, steps)
    except BaseException:
        kill_fio(proc)
        out.close()
        raise
    job = finish_fio(proc, out, jobs)
    print(f'{rounds} rounds of graph changes under '
          f'{job["write"]["io_bytes"] // MiB} MiB of verified writes')
    assert rounds >= MIN_ROUNDS, f'only {rounds} rounds while fio ran'
    nodes = sorted(n['node-name'] for n in qmp.cmd('query-named-block-nodes'))
    assert_eq(nodes, ['disk0', 'file0'], 'nodes at the end')
    assert_eq([e['id'] for e in qmp.cmd('query-block-exports')], ['exp0'],
              'exports at the end')
    d.quit(qmp)


@test
def test_set_iothread_under_fio(env):
    """No export iothread: the export follows its node between the main
    loop, io0 and io1, and fio's connections with it."""
    run_under_fio(env, [], 2, MOVES)


@test
def test_parent_add_del_under_fio(env):
    """A raw node above the exported node (in io0) comes and goes."""
    run_under_fio(env, ['io0'], 2, PARENT)


@test
def test_filter_add_del_under_fio(env):
    """A filter node above the exported node (in io0) comes and goes,
    while the node also moves."""
    run_under_fio(env, ['io0'], 2, [add_filter, MOVES[1], del_filter,
                                    MOVES[0], add_filter, MOVES[2],
                                    del_filter])


@test
def test_export_add_del_under_fio(env):
    """A second export of the node comes and goes while the node moves."""
    run_under_fio(env, [], 2, [MOVES[0], add_export, MOVES[1], del_export,
                               MOVES[2], add_export, del_export])


@test
def test_graph_changes_under_fio(env):
    """All of it interleaved: moves, a parent node, a second export."""
    run_under_fio(env, [], 2, [MOVES[0], add_parent, MOVES[1], add_export,
                               add_filter, MOVES[2], del_parent, MOVES[3],
                               del_export, add_parent, MOVES[4], del_filter,
                               add_export, MOVES[5], del_export, del_parent])


def multiqueue(fn):
    def wrapper(env):
        if SERVER == 'qsd':
            raise SkipTest('QSD 7.2 has no multiqueue NBD exports')
        fn(env)
    wrapper.__name__ = fn.__name__
    return wrapper


@test
@multiqueue
def test_multiqueue_graph_changes_under_fio(env):
    """Two export iothreads, four connections; the node moves under them
    (the connections stay in io0 and io1), a filter and a second export
    come and go."""
    run_under_fio(env, ['io0', 'io1'], 4, [MOVES[2], add_export, add_filter,
                                           MOVES[1], del_export, MOVES[0],
                                           del_filter])


@test
@multiqueue
def test_multiqueue_parent_add_del_under_fio(env):
    """Two export iothreads, four connections, a raw node above the
    exported node that comes and goes."""
    run_under_fio(env, ['io0', 'io1'], 4, PARENT)


if __name__ == '__main__':
    check_server()
    check_fio()
    main()
