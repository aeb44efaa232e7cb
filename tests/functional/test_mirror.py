#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""blockdev-mirror against real files and a real NBD client.

- A 256 MiB image (file, cache.direct=on, aio=io_uring) exported from an
  iothread is mirrored while python3-libnbd writes random data to the
  export; after job-complete the target file holds exactly what the client
  wrote, and the export serves the target (a write after the switch lands
  in the target file, not the source).
- Cancel before READY, soft cancel after READY (completes without switch,
  target consistent), forced cancel after READY.
- Errors of a failing target (blkdebug inject-error) per on-target-error,
  and of a failing source (blkdebug under the source's format node, so
  under the mirror's filter) per on-source-error: report, stop (paused,
  io-status failed, job-resume goes on), ignore.
- quit while a mirror runs, before and after READY: exit status 0.
- Zero extents of the source are not written where the target already
  reads as zeroes (holes of a sparse target), and are where it does not.
- For each flow, the JOB_STATUS_CHANGE sequence and the BLOCK_JOB_* events
  equal qemu-storage-daemon's for the same QMP commands."""

import functools
import os
import random
import threading

from harness import (EXIT_TIMEOUT, QMPError, assert_eq, assert_in,
                     assert_qmp_error, libnbd, main, qsd_binary, read_file,
                     test)

MiB = 1024 * 1024
BIG = 256 * MiB
SMALL = 32 * MiB

# A mirror's JOB_STATUS_CHANGE sequences: it completes after READY (or
# is soft-cancelled then), it is cancelled or fails before READY, it
# pauses on an error (on-*-error=stop) and completes once resumed.
COMPLETES = ['created', 'running', 'ready', 'waiting', 'pending', 'concluded',
             'null']
ABORTS = ['created', 'running', 'aborting', 'concluded', 'null']
STOPS_THEN_COMPLETES = ['created', 'running', 'paused', 'running', 'ready',
                        'waiting', 'pending', 'concluded', 'null']


def make_source(path, size, seed):
    """A sparse image with random data in a few extents; its bytes."""
    rng = random.Random(seed)
    data = bytearray(size)
    with open(path, 'wb') as f:
        f.truncate(size)
        for _ in range(8):
            off = rng.randrange(0, size // MiB) * MiB
            n = rng.randrange(1, 4) * MiB
            n = min(n, size - off)
            chunk = rng.randbytes(n)
            f.seek(off)
            f.write(chunk)
            data[off:off + n] = chunk
    return data


def make_target(path, size):
    with open(path, 'wb') as f:
        f.truncate(size)


def raw_over(node, file, dbg, errors):
    """raw @node over @file, or over blkdebug @dbg over @file with @errors
    (QEMU's blkdebug fires read_aio / write_aio when the format driver
    above it reads / writes)."""
    if errors is None:
        return ['--blockdev', f'driver=raw,node-name={node},file={file}']
    rule = ','.join(f'inject-error.0.{k}={v}' for k, v in errors.items())
    return ['--blockdev', f'driver=blkdebug,node-name={dbg},image={file},' +
            rule,
            '--blockdev', f'driver=raw,node-name={node},file={dbg}']


def daemon_args(env, src, tgt, target_errors=None, source_errors=None):
    """Source disk0 (raw over file0, or over blkdebug sdbg0 with
    @source_errors), target tgt0 (raw over file1, or over blkdebug dbg0
    with @target_errors), an iothread export of disk0."""
    args = ['--object', 'iothread,id=io0',
            '--blockdev', 'driver=file,node-name=file0,filename=' + src +
            ',cache.direct=on,aio=io_uring']
    args += raw_over('disk0', 'file0', 'sdbg0', source_errors)
    args += ['--blockdev', 'driver=file,node-name=file1,filename=' + tgt +
             ',cache.direct=on,aio=io_uring']
    args += raw_over('tgt0', 'file1', 'dbg0', target_errors)
    args += ['--nbd-server', 'addr.type=unix,addr.path=' +
             env.path('nbd.sock'),
             '--export', 'type=nbd,id=exp0,node-name=disk0,name=disk,'
             'writable=on,iothread=io0']
    return args


def make_images(env, seed, size=SMALL, tag=''):
    """A source (make_source() with @seed) and a sparse target of @size in
    the test directory, src@tag.raw and tgt@tag.raw: their paths and the
    source's bytes."""
    src, tgt = env.path(f'src{tag}.raw'), env.path(f'tgt{tag}.raw')
    model = make_source(src, size, seed)
    make_target(tgt, size)
    return src, tgt, model


def start_daemon(env, src, tgt, binary=None, target_errors=None,
                 source_errors=None):
    """@binary (blockd if None) with daemon_args(); the daemon, a QMP
    connection and its Events."""
    d = env.start(daemon_args(env, src, tgt, target_errors, source_errors),
                  binary=binary)
    qmp = env.qmp()
    return d, qmp, Events(qmp)


class Events:
    """Every event of a QMP connection, in order, as they are waited for."""

    def __init__(self, qmp):
        self.qmp = qmp
        self.seen = []

    def wait(self, name, **match):
        """The next event @name whose data has @match's items."""
        while True:
            ev = self.qmp.client.get_event(EXIT_TIMEOUT)
            assert ev is not None, \
                f'no {name} {match} within {EXIT_TIMEOUT} s; seen ' \
                f'{[(e["event"], e.get("data")) for e in self.seen]}'
            self.seen.append(ev)
            data = ev.get('data', {})
            if ev['event'] == name and \
                    all(data.get(k) == v for k, v in match.items()):
                return ev

    def status(self, status):
        return self.wait('JOB_STATUS_CHANGE', id='m0', status=status)

    def statuses(self):
        return [e['data']['status'] for e in self.seen
                if e['event'] == 'JOB_STATUS_CHANGE']

    def block_events(self):
        """BLOCK_JOB_* events, with what both daemons must agree on."""
        out = []
        for e in self.seen:
            if not e['event'].startswith('BLOCK_JOB_'):
                continue
            d = e['data']
            keep = {k: d[k] for k in ('type', 'device', 'operation',
                                      'action') if k in d}
            keep['has-error'] = 'error' in d
            out.append((e['event'], keep))
        return out


def first_of_each(events):
    """Runs of the same event collapsed: copies in flight may fail
    together, and how many there were is not part of the contract."""
    out = []
    for ev in events:
        if not out or out[-1] != ev:
            out.append(ev)
    return out


def run_flow(env, binary, flow, size=SMALL, target_errors=None,
             source_errors=None):
    """Start @binary on fresh images, run @flow(qmp, events, src, tgt),
    quit; the events seen and what @flow returned."""
    src, tgt, _ = make_images(env, 7, size,
                              tag='-qsd' if binary else '-blockd')
    d, qmp, events = start_daemon(env, src, tgt, binary, target_errors,
                                  source_errors)
    result = flow(qmp, events, src, tgt)
    d.quit(qmp)
    qmp.close()
    os.unlink(src)
    os.unlink(tgt)
    return events, result


def compare_with_qsd(env, flow, expected, **kw):
    """Run @flow on blockd and on QSD: same status sequence (@expected),
    the same BLOCK_JOB_* events and the same flow result (nodes, export,
    target contents).  blockd's events and flow result."""
    ours, result = run_flow(env, None, flow, **kw)
    theirs, their_result = run_flow(env, qsd_binary(), flow, **kw)
    assert_eq(result, their_result, 'flow result, blockd vs QSD')
    assert_eq(ours.statuses(), expected, 'blockd JOB_STATUS_CHANGE')
    assert_eq(theirs.statuses(), expected, 'QSD JOB_STATUS_CHANGE')
    assert_eq(first_of_each(ours.block_events()),
              first_of_each(theirs.block_events()), 'BLOCK_JOB_* events')
    return ours, result


def node_names(qmp):
    return sorted(n['node-name'] for n in qmp.cmd('query-named-block-nodes'))


def export_node(qmp):
    return qmp.cmd('query-block-exports')[0]['node-name']


# --- The main test: a mirror under NBD writes --------------------------------

class Writer(threading.Thread):
    """@count random writes through NBD, one after the other, recorded in
    @model once acknowledged."""

    def __init__(self, nbd, sock, model, seed, count):
        super().__init__()
        self.h = nbd.NBD()
        self.h.connect_unix(sock)
        self.model = model
        self.rng = random.Random(seed)
        self.count = count
        self.error = None

    def run(self):
        try:
            for _ in range(self.count):
                n = self.rng.randrange(1, 33) * 4096
                off = self.rng.randrange(0, (BIG - n) // 4096) * 4096
                data = self.rng.randbytes(n)
                self.h.pwrite(data, off)
                self.model[off:off + n] = data
            self.h.flush()
            self.h.shutdown()
        except Exception as e:      # reported by the test thread
            self.error = e


def write_through_nbd(nbd, env, model, seed, count):
    w = Writer(nbd, env.path('nbd.sock'), model, seed, count)
    w.start()
    return w


def join(writer):
    writer.join()
    if writer.error:
        raise writer.error


@test
def test_mirror_under_nbd_writes(env):
    nbd = libnbd()
    src, tgt, model = make_images(env, 1, BIG)
    d, qmp, events = start_daemon(env, src, tgt)

    # Phase 1: writes while the job copies.  The rate limit (16 s for the
    # image) keeps the job from finishing first; the check says so.
    writer = write_through_nbd(nbd, env, model, seed=2, count=600)
    qmp.cmd('blockdev-mirror', job_id='m0', device='disk0', target='tgt0',
            sync='full', speed=16 * MiB, filter_node_name='mtop')
    assert_in('mtop', node_names(qmp), 'the filter is in the graph')
    join(writer)
    assert_eq(qmp.cmd('query-jobs')[0]['status'], 'running',
              'the writes overlapped the copy')
    qmp.cmd('block-job-set-speed', device='m0', speed=0)
    events.wait('BLOCK_JOB_READY', device='m0')
    # Phase 2: writes to a READY job, copied as they come.
    join(write_through_nbd(nbd, env, model, seed=3, count=300))

    qmp.cmd('job-complete', id='m0')
    done = events.wait('BLOCK_JOB_COMPLETED', device='m0')
    assert 'error' not in done['data'], done
    assert_eq(done['data']['offset'], done['data']['len'], 'progress')
    events.status('null')
    assert_eq(events.statuses(), COMPLETES)
    assert 'mtop' not in node_names(qmp), 'the filter is gone'
    assert_eq(export_node(qmp), 'tgt0', 'the export serves the target')
    tgt_data = read_file(tgt)
    assert tgt_data == bytes(model), 'target differs from what was written'

    # The export now writes the target, and only the target.
    src_before = read_file(src)
    h = nbd.NBD()
    h.connect_unix(env.path('nbd.sock'))
    pattern = b'\xa5' * MiB
    h.pwrite(pattern, 17 * MiB)
    h.flush()
    assert_eq(h.pread(MiB, 17 * MiB), pattern, 'read back via NBD')
    h.shutdown()
    assert read_file(tgt)[17 * MiB:18 * MiB] == pattern, 'not in target'
    assert read_file(src) == src_before, 'the source changed after switch'

    d.quit(qmp)


# --- Flows compared with qemu-storage-daemon ------------------------------------

def start_mirror(qmp, **extra):
    args = dict(job_id='m0', device='disk0', target='tgt0', sync='full')
    args.update(extra)
    qmp.cmd('blockdev-mirror', **args)


def finish_when_ready(qmp, events, command='job-complete', **args):
    """Wait for BLOCK_JOB_READY, run @command with @args (job-complete of
    m0 by default), wait until m0 is gone."""
    events.wait('BLOCK_JOB_READY')
    qmp.cmd(command, **(args or {'id': 'm0'}))
    events.status('null')


def flow_complete(qmp, events, src, tgt):
    start_mirror(qmp)
    finish_when_ready(qmp, events)
    return export_node(qmp), read_file(src) == read_file(tgt)


@test
def test_complete_like_qsd(env):
    _, (node, same) = compare_with_qsd(env, flow_complete, COMPLETES)
    assert_eq(node, 'tgt0')
    assert same, 'target differs from source'


def flow_manual_finalize(qmp, events, src, tgt):
    start_mirror(qmp, auto_finalize=False, auto_dismiss=False,
                 filter_node_name='mtop')
    events.wait('BLOCK_JOB_READY')
    qmp.cmd('job-complete', id='m0')
    events.status('pending')
    node_pending = export_node(qmp)
    qmp.cmd('job-finalize', id='m0')
    events.status('concluded')
    qmp.cmd('job-dismiss', id='m0')
    events.status('null')
    return node_pending, export_node(qmp), read_file(src) == read_file(tgt)


@test
def test_manual_finalize_like_qsd(env):
    ours, (before, after, same) = compare_with_qsd(
        env, flow_manual_finalize, COMPLETES)
    # Until job-finalize the export is on the filter (as QEMU reports it).
    assert_eq((before, after), ('mtop', 'tgt0'),
              'the switch happens at job-finalize')
    assert same, 'target differs from source'
    assert_eq([e[0] for e in ours.block_events()],
              ['BLOCK_JOB_READY', 'BLOCK_JOB_PENDING', 'BLOCK_JOB_COMPLETED'])


def flow_job_nodes_busy(qmp, events, src, tgt):
    """Another job on a node a running mirror works on: the words of each
    refusal.  Nodes: the filter f0 over disk0, the target tgt0, and a
    spare node t2 of the same size."""
    start_mirror(qmp, speed=MiB, filter_node_name='f0')
    qmp.cmd('blockdev-add', driver='null-co', node_name='t2', size=SMALL)
    tries = [
        ('blockdev-mirror', {'job-id': 'm1', 'device': 'f0', 'target': 't2'}),
        ('blockdev-backup', {'job-id': 'b1', 'device': 'f0', 'target': 't2'}),
        ('blockdev-backup', {'job-id': 'b2', 'device': 'disk0', 'target': 't2'}),
        ('blockdev-mirror', {'job-id': 'm2', 'device': 't2', 'target': 'tgt0'}),
        ('blockdev-backup', {'job-id': 'b3', 'device': 't2', 'target': 'tgt0'}),
        ('blockdev-mirror', {'job-id': 'm3', 'device': 'disk0', 'target': 't2'}),
    ]
    out = []
    for command, args in tries:
        r = qmp.client.execute_raw(command, dict(args, sync='full'))
        out.append(r.get('error', {}).get('desc', 'ok'))
    qmp.cmd('job-cancel', id='m0')
    events.status('null')
    return out


@test
def test_job_nodes_busy_like_qsd(env):
    """As QEMU's op blockers: a mirror's filter, source and target refuse
    other jobs (busy, or not a root node for a mirror's source)."""
    _, refusals = run_flow(env, None, flow_job_nodes_busy)
    _, theirs = run_flow(env, qsd_binary(), flow_job_nodes_busy)
    assert_eq(refusals, theirs, 'refusals, blockd vs QSD')
    assert_eq(refusals, [
        'Need a root block node',
        "Node 'f0' is busy: block device is in use by block job: mirror",
        "Node 'disk0' is busy: block device is in use by block job: mirror",
        "Node 'tgt0' is busy: block device is in use by block job: mirror",
        "Node 'tgt0' is busy: block device is in use by block job: mirror",
        'Need a root block node'])


def flow_cancel_before_ready(qmp, events, src, tgt):
    start_mirror(qmp, speed=MiB)        # 32 s at least: never READY here
    qmp.cmd('job-cancel', id='m0')
    events.status('null')
    return export_node(qmp), node_names(qmp)


@test
def test_cancel_before_ready_like_qsd(env):
    ours, (node, names) = compare_with_qsd(
        env, flow_cancel_before_ready, ABORTS)
    assert_eq(node, 'disk0', 'the export still serves the source')
    assert_eq(names, ['disk0', 'file0', 'file1', 'tgt0'], 'filter removed')
    assert_eq([e[0] for e in ours.block_events()], ['BLOCK_JOB_CANCELLED'])


def flow_soft_cancel(qmp, events, src, tgt):
    start_mirror(qmp)
    finish_when_ready(qmp, events, 'block-job-cancel', device='m0')
    return export_node(qmp), read_file(src) == read_file(tgt)


@test
def test_soft_cancel_after_ready_like_qsd(env):
    ours, (node, same) = compare_with_qsd(env, flow_soft_cancel, COMPLETES)
    assert_eq(node, 'disk0', 'no switch on a soft cancel')
    assert same, 'target not consistent with the source'
    assert_eq([e[0] for e in ours.block_events()],
              ['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED'])


def flow_force_cancel(qmp, events, src, tgt):
    start_mirror(qmp)
    finish_when_ready(qmp, events, 'block-job-cancel', device='m0',
                      force=True)
    return export_node(qmp)


@test
def test_force_cancel_after_ready_like_qsd(env):
    ours, node = compare_with_qsd(
        env, flow_force_cancel,
        ['created', 'running', 'ready', 'aborting', 'concluded', 'null'])
    assert_eq(node, 'disk0')
    assert_eq([e[0] for e in ours.block_events()],
              ['BLOCK_JOB_READY', 'BLOCK_JOB_CANCELLED'])


# --- Target errors ----------------------------------------------------------------

def flow_error_report(qmp, events, src, tgt, side='target'):
    start_mirror(qmp, **{f'on_{side}_error': 'report'})
    done = events.wait('BLOCK_JOB_COMPLETED')
    events.status('null')
    return done['data'].get('error'), export_node(qmp)


@test
def test_target_error_report_like_qsd(env):
    ours, (error, node) = compare_with_qsd(
        env, flow_error_report, ABORTS,
        target_errors={'event': 'write_aio', 'errno': 5})
    assert_eq(error, 'Input/output error')
    assert_eq(node, 'disk0')
    errs = [e for e in ours.block_events() if e[0] == 'BLOCK_JOB_ERROR']
    assert errs, 'no BLOCK_JOB_ERROR'
    assert_eq(errs[0][1], {'device': 'm0', 'operation': 'write',
                           'action': 'report', 'has-error': False})


def flow_error_stop(qmp, events, src, tgt, side='target'):
    start_mirror(qmp, **{f'on_{side}_error': 'stop'})
    err = events.wait('BLOCK_JOB_ERROR')
    events.status('paused')
    job = qmp.cmd('query-block-jobs')[0]
    qmp.cmd('job-resume', id='m0')
    finish_when_ready(qmp, events)
    return (err['data']['action'], job['io-status'], job['status'],
            read_file(src) == read_file(tgt))


@test
def test_target_error_stop_like_qsd(env):
    _, (action, io_status, status, same) = compare_with_qsd(
        env, flow_error_stop, STOPS_THEN_COMPLETES,
        target_errors={'event': 'write_aio', 'errno': 5, 'once': 'on'})
    assert_eq((action, io_status, status), ('stop', 'failed', 'paused'))
    assert same, 'target differs after resume and complete'


def flow_error_ignore(qmp, events, src, tgt, side='target'):
    start_mirror(qmp, **{f'on_{side}_error': 'ignore'})
    err = events.wait('BLOCK_JOB_ERROR')
    finish_when_ready(qmp, events)
    return err['data']['action'], read_file(src) == read_file(tgt)


@test
def test_target_error_ignore_like_qsd(env):
    _, (action, same) = compare_with_qsd(
        env, flow_error_ignore, COMPLETES,
        target_errors={'event': 'write_aio', 'errno': 5, 'once': 'on'})
    assert_eq(action, 'ignore')
    assert same, 'the failed extent was not copied again'


# --- Source errors ----------------------------------------------------------------
# blkdebug under disk0, so under the mirror's filter: the job's reads of
# the source fail (block status still passes, so only data extents are
# read, as in QEMU).

def source_flow(flow):
    return functools.partial(flow, side='source')


@test
def test_source_error_report_like_qsd(env):
    ours, (error, node) = compare_with_qsd(
        env, source_flow(flow_error_report), ABORTS,
        source_errors={'event': 'read_aio', 'errno': 5})
    assert_eq(error, 'Input/output error')
    assert_eq(node, 'disk0')
    errs = [e for e in ours.block_events() if e[0] == 'BLOCK_JOB_ERROR']
    assert errs, 'no BLOCK_JOB_ERROR'
    assert_eq(errs[0][1], {'device': 'm0', 'operation': 'read',
                           'action': 'report', 'has-error': False})


@test
def test_source_error_stop_like_qsd(env):
    ours, (action, io_status, status, same) = compare_with_qsd(
        env, source_flow(flow_error_stop), STOPS_THEN_COMPLETES,
        source_errors={'event': 'read_aio', 'errno': 5, 'once': 'on'})
    assert_eq((action, io_status, status), ('stop', 'failed', 'paused'))
    assert same, 'target differs after resume and complete'
    errs = [e for e in ours.block_events() if e[0] == 'BLOCK_JOB_ERROR']
    assert_eq(errs[0][1]['operation'], 'read')


@test
def test_source_error_ignore_like_qsd(env):
    ours, (action, same) = compare_with_qsd(
        env, source_flow(flow_error_ignore), COMPLETES,
        source_errors={'event': 'read_aio', 'errno': 5, 'once': 'on'})
    assert_eq(action, 'ignore')
    assert same, 'the extent that failed to read was not copied again'
    errs = [e for e in ours.block_events() if e[0] == 'BLOCK_JOB_ERROR']
    assert_eq(errs[0][1]['operation'], 'read')


# --- quit while mirroring ----------------------------------------------------------

@test
def test_quit_before_ready(env):
    src, tgt, _ = make_images(env, 3)
    d, qmp, _ = start_daemon(env, src, tgt)
    start_mirror(qmp, speed=MiB)
    assert_eq(qmp.cmd('query-jobs')[0]['status'], 'running')
    d.quit(qmp)


@test
def test_quit_after_ready(env):
    src, tgt, _ = make_images(env, 4)
    d, qmp, events = start_daemon(env, src, tgt)
    start_mirror(qmp, copy_mode='write-blocking')
    events.wait('BLOCK_JOB_READY')
    d.quit(qmp)


# --- write-blocking mode -----------------------------------------------------------

@test
def test_write_blocking_writes_reach_target(env):
    """Once READY, a write acknowledged to the NBD client is already in the
    target file, written by the filter before the ack (the job, woken by
    the write, finds nothing dirty: progress stays complete)."""
    nbd = libnbd()
    src, tgt, _ = make_images(env, 5)
    d, qmp, events = start_daemon(env, src, tgt)
    start_mirror(qmp, copy_mode='write-blocking')
    events.wait('BLOCK_JOB_READY')
    h = nbd.NBD()
    h.connect_unix(env.path('nbd.sock'))
    for i in range(20):
        data = bytes([i + 1]) * 65536
        h.pwrite(data, i * MiB + 4096)
        with open(tgt, 'rb') as f:
            f.seek(i * MiB + 4096)
            assert_eq(f.read(65536) == data, True, f'write {i} in target')
    h.shutdown()
    job = qmp.cmd('query-jobs')[0]
    assert_eq(job['current-progress'], job['total-progress'],
              'nothing left for the job to copy')
    d.quit(qmp)


# --- replaces --------------------------------------------------------------------

@test
def test_replaces_node_below_filter(env):
    """device is a filter (blkdebug, no rules) over disk0, replaces=disk0:
    on completion the filter reads and writes the target, and the export
    above the filter with it."""
    nbd = libnbd()
    src, tgt, _ = make_images(env, 8)
    args = daemon_args(env, src, tgt)
    args[args.index('type=nbd,id=exp0,node-name=disk0,name=disk,'
                    'writable=on,iothread=io0')] = \
        'type=nbd,id=exp0,node-name=flt0,name=disk,writable=on,iothread=io0'
    args[args.index('--nbd-server'):args.index('--nbd-server')] = \
        ['--blockdev', 'driver=blkdebug,node-name=flt0,image=disk0']
    d = env.start(args)
    qmp = env.qmp()
    events = Events(qmp)
    qmp.cmd('blockdev-mirror', job_id='m0', device='flt0', target='tgt0',
            sync='full', replaces='disk0')
    finish_when_ready(qmp, events)
    assert_eq(export_node(qmp), 'flt0', 'the export stays on the filter')
    h = nbd.NBD()
    h.connect_unix(env.path('nbd.sock'))
    h.pwrite(b'\x5a' * 65536, 3 * MiB)
    h.flush()
    h.shutdown()
    assert read_file(tgt)[3 * MiB:3 * MiB + 65536] == b'\x5a' * 65536, \
        'the filter does not write the target'
    assert read_file(src)[3 * MiB:3 * MiB + 65536] != b'\x5a' * 65536, \
        'the filter still writes the source'
    d.quit(qmp)


# --- Targets that read as zeroes --------------------------------------------------

def mirror_and_complete(env, src, tgt, target_errors=None):
    """sync=full of @src to @tgt, complete; the BLOCK_JOB_* event names."""
    d, qmp, events = start_daemon(env, src, tgt, target_errors=target_errors)
    start_mirror(qmp, on_target_error='report')
    finish_when_ready(qmp, events)
    d.quit(qmp)
    return [e[0] for e in events.block_events()]


@test
def test_zero_extents_skipped_on_a_zero_target(env):
    """A fresh sparse target reads as zeroes where it has holes: the source's
    zero extents are not written there.  Every write-zeroes to the target
    fails (blkdebug), and the job still completes with the same bytes."""
    src, tgt, _ = make_images(env, 9)
    names = mirror_and_complete(env, src, tgt,
                                {'event': 'pwrite_zeroes', 'errno': 5})
    assert_eq(names, ['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED'],
              'no write-zeroes reached the target')
    assert read_file(src) == read_file(tgt), 'target differs from source'


@test
def test_zero_extents_written_over_target_data(env):
    """Where the target holds data, the source's zero extents are written:
    a target full of 0xff ends equal to the sparse source; and with its
    write-zeroes failing the job fails (the zeroes were not skipped)."""
    src, tgt = env.path('src.raw'), env.path('tgt.raw')
    make_source(src, SMALL, seed=10)
    with open(tgt, 'wb') as f:
        f.write(b'\xff' * SMALL)
    names = mirror_and_complete(env, src, tgt)
    assert_eq(names, ['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED'])
    assert read_file(src) == read_file(tgt), 'target differs from source'

    with open(tgt, 'wb') as f:
        f.write(b'\xff' * SMALL)
    d, qmp, events = start_daemon(
        env, src, tgt, target_errors={'event': 'pwrite_zeroes', 'errno': 5})
    start_mirror(qmp, on_target_error='report')
    done = events.wait('BLOCK_JOB_COMPLETED')
    assert_eq(done['data'].get('error'), 'Input/output error')
    d.quit(qmp)


# --- Bad arguments -------------------------------------------------------------------

BAD_ARGS = [
    (dict(device='nope', target='tgt0', sync='full'),
     "Cannot find device='nope' nor node-name='nope'"),
    (dict(device='disk0', target='nope', sync='full'),
     "Cannot find device='nope' nor node-name='nope'"),
    (dict(device='file0', target='tgt0', sync='full'),
     'Need a root block node'),
    (dict(device='disk0', target='disk0', sync='full'),
     "Can't mirror node into itself"),
    (dict(device='disk0', target='tgt0', sync='full', granularity=256),
     "Parameter 'granularity' expects a value in range [512B, 64MB]"),
    (dict(device='disk0', target='tgt0', sync='full', granularity=3072),
     "Parameter 'granularity' expects a power of 2"),
    (dict(device='disk0', target='tgt0', sync='full', buf_size=-1),
     "Invalid parameter 'buf-size'"),
    (dict(device='disk0', target='tgt0', sync='full', speed=-1),
     "Parameter 'speed' expects a non-negative value"),
    (dict(device='disk0', target='tgt0', sync='incremental'),
     "Sync mode 'incremental' not supported"),
    (dict(device='disk0', target='tgt0', sync='bitmap'),
     "Sync mode 'bitmap' not supported"),
    (dict(device='disk0', target='tgt0', sync='full', replaces='file1'),
     "Cannot replace 'file1' by a node mirrored from 'disk0', because it "
     "cannot be guaranteed that doing so would not lead to an abrupt "
     "change of visible data"),
]


def flow_wrong_target_size(qmp, events, src, tgt):
    qmp.cmd('blockdev-add', driver='null-co', node_name='small',
            size=SMALL // 2)
    start_mirror(qmp, target='small')
    done = events.wait('BLOCK_JOB_COMPLETED')
    events.status('null')
    return done['data'].get('error'), export_node(qmp)


@test
def test_wrong_target_size_like_qsd(env):
    """As QEMU: the command succeeds, the job fails."""
    _, (error, node) = compare_with_qsd(env, flow_wrong_target_size, ABORTS)
    assert_eq(error, 'Source and target image have different sizes')
    assert_eq(node, 'disk0')


@test
def test_bad_arguments_like_qsd(env):
    """QEMU's messages, compared with QSD's; nothing left behind."""
    results = {}
    for binary in [None, qsd_binary()]:
        tag = 'qsd' if binary else 'blockd'
        src, tgt, _ = make_images(env, 6, tag=f'-{tag}')
        d, qmp, _ = start_daemon(env, src, tgt, binary)
        got = []
        for args, _ in BAD_ARGS:
            e = assert_qmp_error(
                lambda: qmp.cmd('blockdev-mirror', job_id='m0', **args))
            got.append(e.desc)
        results[tag] = got
        assert_eq(qmp.cmd('query-jobs'), [], f'{tag}: no job left behind')
        d.quit(qmp)
    assert_eq(results['blockd'], [m for _, m in BAD_ARGS], 'blockd')
    assert_eq(results['blockd'], results['qsd'], 'blockd vs QSD')


@test
def test_bad_arguments(env):
    src, tgt, _ = make_images(env, 6)
    d, qmp, _ = start_daemon(env, src, tgt)
    for args, message in BAD_ARGS:
        assert_qmp_error(lambda: qmp.cmd('blockdev-mirror', **args), message)
    assert_eq(qmp.cmd('query-jobs'), [], 'no job left behind')
    assert_eq(node_names(qmp), ['disk0', 'file0', 'file1', 'tgt0'],
              'no filter left behind')
    # A filter name in use: refused, nothing changed.
    assert_qmp_error(lambda: start_mirror(qmp, filter_node_name='file1'),
                     "Duplicate nodes with node-name='file1'")
    assert_eq(node_names(qmp), ['disk0', 'file0', 'file1', 'tgt0'])
    # And the export still works on the source.
    assert_eq(export_node(qmp), 'disk0')
    start_mirror(qmp)
    # The target would not follow a resize of the source.
    assert_qmp_error(lambda: qmp.cmd('block_resize', node_name='disk0',
                                     size=2 * SMALL))
    try:
        start_mirror(qmp, job_id='m1')
    except QMPError:
        pass
    else:
        raise AssertionError('a second mirror of the same target started')
    d.quit(qmp)


if __name__ == '__main__':
    main()
